//! `nomusic separate`: many inputs, one clear line per failure, the others go on. Streaming
//! models run through `nomusic_engine::separate_file`, offline ones (HTDemucs) through
//! `nomusic_engine::separate_file_offline`; both take the same outputs and options.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use nomusic_audio_io::{OutputFormat, SampleFormat};
use nomusic_engine::{
    separate_file, separate_file_offline, EngineError, FileJob, LoadedModel, MixOptions,
};
use nomusic_models::demucs::{self, DemucsPass};
use nomusic_models::htdemucs::SeparateOptions;

use crate::args::{Format, SeparateArgs, Stem};
use crate::models_cmd;
use crate::progress::FileBar;

pub fn run(args: SeparateArgs) -> Result<ExitCode> {
    let inputs = expand_inputs(&args.inputs)?;
    let located = models_cmd::locate(&args.model)?;
    let model_name = located.spec.name;
    let offline = located.spec.kind.is_offline();
    let all_stems = args.stems.contains(&Stem::All);
    let want_speech = all_stems || args.stems.contains(&Stem::Speech);
    let want_music = all_stems || args.stems.contains(&Stem::Music);
    if !offline && all_stems {
        bail!("--stems all needs an htdemucs model (--model htdemucs or htdemucs_ft); {model_name} gives only speech and music");
    }
    if !offline && args.shifts.is_some() {
        bail!("--shifts applies to htdemucs models only");
    }
    let mut factory = None;
    let mut passes: Vec<DemucsPass> = Vec::new();
    let mut stem_names: Vec<String> = Vec::new();
    let mut loaded = LoadedModel::default();
    if offline {
        passes = demucs::passes(&located, all_stems)?;
        // Load the first model here, so that a broken checkpoint stops before any input; the
        // engine takes it from `loaded` for the first file (and keeps a single model for all).
        let first = loaded
            .take(&passes[0])
            .with_context(|| format!("loading model {model_name}"))?;
        if all_stems {
            stem_names = match passes[0].stem {
                None => first.sources().to_vec(),
                Some(_) => passes
                    .iter()
                    .filter_map(|p| p.stem.map(String::from))
                    .collect(),
            };
        }
        loaded.keep(&passes[0], first);
    } else {
        factory = Some(models_cmd::factory(located)?);
    }
    let demucs_options = SeparateOptions {
        shifts: args.shifts.unwrap_or(1),
        ..Default::default()
    };
    let format_kind = output_format_kind(&args);
    let format = output_format(format_kind, args.bits)?;
    let ext = match format_kind {
        Format::Wav => "wav",
        Format::Flac => "flac",
    };
    let out_dir = output_dir(&args, inputs.len())?;
    let plans = plan_outputs(
        &args,
        &inputs,
        out_dir.as_deref(),
        ext,
        want_speech,
        want_music,
        &stem_names,
    )?;

    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        // If a handler cannot be installed, Ctrl-C kills the process; temp files may remain.
        let _ = ctrlc::set_handler(move || cancel.store(true, Ordering::Relaxed));
    }

    let n_inputs = plans.len();
    let mut failed = 0usize;
    for (input, (speech_out, music_out, stems_out)) in plans {
        let input = &input;
        if let Some(parent) = speech_out
            .iter()
            .chain(music_out.iter())
            .chain(stems_out.iter().map(|(_, p)| p))
            .filter_map(|p| p.parent())
            .next()
        {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                if let Err(e) = std::fs::create_dir_all(parent) {
                    eprintln!(
                        "error: {}: cannot create {}: {e}",
                        input.display(),
                        parent.display()
                    );
                    failed += 1;
                    continue;
                }
            }
        }
        let job = FileJob {
            input: input.clone(),
            speech_out,
            music_out,
            format,
            mix: MixOptions {
                music_gain: args.music_gain.unwrap_or(0.0),
                music_stem: want_music,
            },
            output_rate_hz: args.sample_rate,
            mono: args.mono,
            stems_out,
        };
        let label = input.file_name().map_or_else(
            || input.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let bar = FileBar::new(&label, args.quiet || args.json);
        // A fresh model state per file; the factory hands out the preloaded instance first.
        let result = match &factory {
            Some(factory) => separate_file(&job, factory, &mut |p| bar.update(p), &cancel),
            None => separate_file_offline(
                &job,
                &passes,
                &mut loaded,
                &demucs_options,
                &mut |p| bar.update(p),
                &cancel,
            ),
        };
        bar.finish();
        match result {
            Ok(report) => {
                if args.json {
                    let mut v = serde_json::to_value(&report)?;
                    v["model"] = model_name.into();
                    println!("{v}");
                } else if !args.quiet {
                    if report.input_channels > 2 && report.channels == 1 && !args.mono {
                        eprintln!(
                            "note: {}: {} channels mixed down to mono for {model_name} (a \
                             stereo model; where the dialogue channel is, is not known)",
                            input.display(),
                            report.input_channels
                        );
                    }
                    for out in &report.outputs {
                        eprintln!(
                            "{} -> {} ({:.1} s, {:.2}x real time)",
                            input.display(),
                            out.display(),
                            report.duration_s,
                            1.0 / report.real_time_factor.max(1e-9)
                        );
                    }
                }
            }
            Err(EngineError::Interrupted) => {
                eprintln!("interrupted: {} left unwritten", input.display());
                return Ok(ExitCode::from(130));
            }
            Err(e) => {
                eprintln!("error: {}: {e}", input.display());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {n_inputs} inputs failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Every input with its outputs, decided before any file is written. An input given twice is
/// separated once. When an output folder receives inputs that share a name (`a/talk.wav`,
/// `b/talk.wav`), each input's outputs go into its folder's path below the folder the inputs
/// share (`OUT/a/talk.speech.wav`, `OUT/b/talk.speech.wav`). Two inputs that would still write
/// the same file, or an output that is another input, stop the run before it starts: nothing
/// is overwritten.
fn plan_outputs(
    args: &SeparateArgs,
    inputs: &[PathBuf],
    out_dir: Option<&Path>,
    ext: &str,
    speech: bool,
    music: bool,
    stems: &[String],
) -> Result<Vec<(PathBuf, OutputPaths)>> {
    // One key per input (a filesystem lookup), serving both the dedup and the overwrite check.
    let mut input_keys: HashMap<PathBuf, &Path> = HashMap::new();
    let inputs: Vec<&PathBuf> = inputs
        .iter()
        .filter(|p| match input_keys.entry(file_key(p)) {
            Entry::Vacant(e) => {
                e.insert(p.as_path());
                true
            }
            Entry::Occupied(_) => false,
        })
        .collect();
    let subdirs = match out_dir {
        Some(_) if !names_are_unique(&inputs) => Some(shared_parent_subdirs(&inputs)?),
        _ => None,
    };
    let mut written: HashMap<PathBuf, &Path> = HashMap::new();
    let mut plans = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let dir = match (out_dir, &subdirs) {
            (Some(dir), Some(sub)) => Some(dir.join(&sub[i])),
            (dir, _) => dir.map(Path::to_path_buf),
        };
        let paths = output_paths(args, input, dir.as_deref(), ext, speech, music, stems);
        let (s, m, st) = &paths;
        for out in s.iter().chain(m.iter()).chain(st.iter().map(|(_, p)| p)) {
            let key = file_key(out);
            if let Some(other) = input_keys.get(&key).filter(|o| **o != input.as_path()) {
                bail!(
                    "the output {} of {} is the input {}, which it would overwrite; nothing was \
                     separated (use -o to write the outputs elsewhere)",
                    out.display(),
                    input.display(),
                    other.display()
                );
            }
            if let Some(other) = written.insert(key, input) {
                bail!(
                    "{} and {} would both write {}; nothing was separated (rename one, or \
                     separate them in two runs)",
                    other.display(),
                    input.display(),
                    out.display()
                );
            }
        }
        plans.push(((*input).clone(), paths));
    }
    Ok(plans)
}

/// What identifies a file: its canonical path, or (for a file not there yet) its folder's
/// canonical path and its name; the path as given when neither exists.
fn file_key(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (parent.canonicalize(), p.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
    }
}

fn names_are_unique(inputs: &[&PathBuf]) -> bool {
    let mut names = HashSet::new();
    inputs
        .iter()
        .all(|p| names.insert(p.file_stem().map(|s| s.to_os_string())))
}

/// Each input's folder relative to the deepest folder all inputs share.
fn shared_parent_subdirs(inputs: &[&PathBuf]) -> Result<Vec<PathBuf>> {
    let parents: Vec<PathBuf> = inputs
        .iter()
        .map(|p| {
            let abs =
                std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))?;
            Ok(abs.parent().map(Path::to_path_buf).unwrap_or_default())
        })
        .collect::<Result<_>>()?;
    let mut shared: Vec<_> = parents[0].components().collect();
    for p in &parents[1..] {
        let n = shared
            .iter()
            .zip(p.components())
            .take_while(|(a, b)| *a == b)
            .count();
        shared.truncate(n);
    }
    let shared: PathBuf = shared.iter().collect();
    Ok(parents
        .iter()
        .map(|p| {
            p.strip_prefix(&shared)
                .map(Path::to_path_buf)
                .unwrap_or_default()
        })
        .collect())
}

/// Expands glob patterns that are not existing paths (shells on Windows do not expand them).
fn expand_inputs(raw: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for r in raw {
        let p = PathBuf::from(r);
        if p.exists() || !r.contains(['*', '?', '[']) {
            out.push(p);
            continue;
        }
        let matches: Vec<PathBuf> = glob::glob(r)
            .with_context(|| format!("bad glob pattern '{r}'"))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        if matches.is_empty() {
            bail!("no files match '{r}'");
        }
        out.extend(matches);
    }
    Ok(out)
}

fn output_format_kind(args: &SeparateArgs) -> Format {
    if let Some(f) = args.format {
        return f;
    }
    match args
        .output
        .as_ref()
        .and_then(|o| o.extension())
        .and_then(|e| e.to_str())
    {
        Some(e) if e.eq_ignore_ascii_case("flac") => Format::Flac,
        _ => Format::Wav,
    }
}

fn output_format(kind: Format, bits: u32) -> Result<OutputFormat> {
    Ok(match (kind, bits) {
        (Format::Wav, 16) => OutputFormat::Wav(SampleFormat::Pcm16),
        (Format::Wav, 24) => OutputFormat::Wav(SampleFormat::Pcm24),
        (Format::Wav, 32) => OutputFormat::Wav(SampleFormat::Float32),
        (Format::Flac, 16 | 24) => OutputFormat::Flac { bits },
        (Format::Wav, b) => bail!("WAV output is 16, 24 or 32 (float) bits, not {b}"),
        (Format::Flac, b) => bail!("FLAC output is 16 or 24 bits, not {b}"),
    })
}

/// `Some(dir)` when outputs go into a folder.
fn output_dir(args: &SeparateArgs, n_inputs: usize) -> Result<Option<PathBuf>> {
    let Some(out) = &args.output else {
        return Ok(None);
    };
    let looks_like_dir = out.is_dir() || out.as_os_str().to_string_lossy().ends_with(['/', '\\']);
    if n_inputs > 1 || looks_like_dir {
        if out.exists() && !out.is_dir() {
            bail!(
                "-o {} is a file, but {n_inputs} inputs need a folder",
                out.display()
            );
        }
        std::fs::create_dir_all(out)
            .with_context(|| format!("creating output folder {}", out.display()))?;
        return Ok(Some(out.clone()));
    }
    Ok(None)
}

/// Speech, music and further stems (`NAME.drums.wav`, ...) of one input.
type OutputPaths = (Option<PathBuf>, Option<PathBuf>, Vec<(String, PathBuf)>);

fn output_paths(
    args: &SeparateArgs,
    input: &Path,
    out_dir: Option<&Path>,
    ext: &str,
    speech: bool,
    music: bool,
    stems: &[String],
) -> OutputPaths {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let named = |dir: &Path, what: &str| dir.join(format!("{stem}.{what}.{ext}"));
    let (s, m, stems) = match (out_dir, &args.output) {
        (Some(dir), _) => (
            named(dir, "speech"),
            named(dir, "music"),
            stems.iter().map(|n| (n.clone(), named(dir, n))).collect(),
        ),
        (None, Some(file)) => {
            // One input, -o names the speech file; the music and stems go beside it.
            let base = file.with_extension("");
            let beside = |what: &str| PathBuf::from(format!("{}.{what}.{ext}", base.display()));
            (
                file.clone(),
                beside("music"),
                stems.iter().map(|n| (n.clone(), beside(n))).collect(),
            )
        }
        (None, None) => {
            let dir = input.parent().unwrap_or(Path::new("."));
            (
                named(dir, "speech"),
                named(dir, "music"),
                stems.iter().map(|n| (n.clone(), named(dir, n))).collect(),
            )
        }
    };
    (speech.then_some(s), music.then_some(m), stems)
}
