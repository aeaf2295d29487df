//! `nomusic models`: list models, fetch one; and the model loading every command shares.

use std::process::ExitCode;

use anyhow::{Context, Result};
use nomusic_models::fetch::{self, FetchEvent, Source};
use nomusic_models::registry::{self, Checksum, LocatedModel, ModelDirs};
use nomusic_models::{ModelError, Separator};

use crate::args::{ModelArgs, ModelsAction, ModelsArgs};
use crate::progress::download_bar;

pub fn run(args: ModelsArgs) -> Result<ExitCode> {
    match args.action.unwrap_or(ModelsAction::List) {
        ModelsAction::List => list(),
        ModelsAction::Fetch {
            name,
            mirror,
            quiet,
        } => fetch_model(&name, mirror, quiet),
    }
}

fn list() -> Result<ExitCode> {
    let dirs = ModelDirs::from_env();
    println!(
        "{:<16} {:>8} {:>9} {:<18} {:>8}  LOCAL",
        "NAME", "RATE", "LATENCY", "LICENCE", "SIZE"
    );
    for spec in registry::all() {
        let local = match dirs.locate(spec) {
            Ok(_) if spec.builtin => "built in".to_string(),
            Ok(found) => found
                .files
                .first()
                .and_then(|f| f.parent())
                .map_or(String::new(), |p| p.display().to_string()),
            Err(_) => "not installed (nomusic models fetch ".to_string() + spec.name + ")",
        };
        let latency = spec
            .latency_ms
            .map_or_else(|| "offline".to_string(), |ms| format!("{ms:.0}ms"));
        let (bytes, exact) = spec.size_bytes();
        let size = format!(
            "{}{:.1}MB",
            if exact { "" } else { "~" },
            bytes as f64 / 1e6
        );
        println!(
            "{:<16} {:>6}Hz {:>9} {:<18} {:>8}  {}",
            spec.name, spec.sample_rate_hz, latency, spec.licence, size, local
        );
    }
    println!(
        "\ndefault: {}; search path: NOMUSIC_MODEL_DIR, then {}",
        registry::DEFAULT_MODEL,
        dirs.cache.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn fetch_model(name: &str, mirror: Option<String>, quiet: bool) -> Result<ExitCode> {
    let spec = registry::lookup(name)?;
    if spec.builtin {
        if !quiet {
            println!("{} is built into this binary: nothing to fetch", spec.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let dirs = ModelDirs::from_env();
    let source = mirror.map_or(Source::Upstream, Source::Mirror);
    let bar = download_bar(quiet);
    let dir = fetch::fetch(spec, &dirs.cache, &source, &mut |ev| match ev {
        FetchEvent::Start {
            file,
            total_bytes,
            resumed_from,
        } => {
            bar.set_message(file.to_string());
            bar.set_length(total_bytes);
            bar.set_position(resumed_from);
        }
        FetchEvent::Progress { done_bytes, .. } => bar.set_position(done_bytes),
        FetchEvent::Verified { file } => {
            if !quiet {
                let what = match spec
                    .files
                    .iter()
                    .find(|f| f.name == file)
                    .map(|f| f.checksum)
                {
                    Some(Checksum::Sha256Prefix(p)) => {
                        format!("sha256 starts with {p} as published upstream")
                    }
                    _ => "sha256 verified".to_string(),
                };
                bar.println(format!("{file}: {what}"));
            }
        }
    })
    .with_context(|| format!("fetching {}", spec.name))?;
    bar.finish_and_clear();
    if !quiet {
        println!("{} installed in {}", spec.name, dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Finds the model the flags name (explicit path first, then the search directories).
pub fn locate(args: &ModelArgs) -> Result<LocatedModel> {
    let spec = registry::lookup(&args.model)?;
    let located = match &args.model_path {
        Some(path) => registry::locate_at(spec, path)?,
        None => ModelDirs::from_env().locate(spec)?,
    };
    Ok(located)
}

/// Loads the model (so a broken file fails before any work starts) and returns a factory
/// handing out that instance first and building one more per further channel. Offline
/// models cannot stream and are refused.
pub fn factory(
    located: LocatedModel,
) -> Result<impl Fn() -> Result<Box<dyn Separator>, ModelError>> {
    if located.spec.kind.is_offline() {
        return Err(ModelError::Offline {
            name: located.spec.name.to_string(),
        }
        .into());
    }
    let first = registry::build(&located)
        .with_context(|| format!("loading model {}", located.spec.name))?;
    let first = std::cell::RefCell::new(Some(first));
    Ok(move || match first.borrow_mut().take() {
        Some(model) => Ok(model),
        None => registry::build(&located),
    })
}
