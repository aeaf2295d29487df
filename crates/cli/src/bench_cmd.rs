//! `nomusic bench`: a model over a benchmark set, scored like score.py, with its speed.

use std::process::ExitCode;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nomusic_engine::bench::run_bench;
use serde_json::json;

use crate::args::BenchArgs;
use crate::models_cmd;

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let located = models_cmd::locate(&args.model)?;
    let name = located.spec.name;
    let factory = models_cmd::factory(located)?;
    let bar = ProgressBar::new(0);
    if args.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template"),
    );
    bar.set_prefix(format!("bench {name}"));
    let report = run_bench(
        &args.set,
        name,
        &factory,
        args.out.as_deref(),
        &mut |i, n, id| {
            bar.set_length(n as u64);
            bar.set_position(i as u64);
            bar.set_message(id.to_string());
        },
    )
    .with_context(|| format!("benchmark on {}", args.set.display()))?;
    bar.finish_and_clear();
    println!("model: {name}");
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let items: Vec<_> = report
            .items
            .iter()
            .map(|r| {
                json!({
                    "id": r.item.id, "smr_db": r.item.smr_db, "vocals": r.item.vocals,
                    "si_sdr": r.metrics.si_sdr, "si_sdri": r.metrics.si_sdri,
                    "resid_db": r.metrics.resid_db, "mo_atten_db": r.metrics.mo_atten_db,
                    "stoi": r.metrics.stoi, "duration_s": r.duration_s,
                    "processing_s": r.processing.as_secs_f64(),
                })
            })
            .collect();
        let summary: Vec<_> = report
            .summaries
            .iter()
            .map(|s| {
                json!({
                    "bucket": s.bucket.to_string(), "n": s.n, "si_sdr": s.si_sdr, "si_sdri": s.si_sdri,
                    "resid_db": s.resid_db, "mo_atten_db": s.mo_atten_db, "stoi": s.stoi,
                })
            })
            .collect();
        let doc = json!({
            "model": name, "items": items, "summary": summary,
            "real_time_factor": report.real_time_factor,
            "baseline_real_time_factor": report.baseline_real_time_factor,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
