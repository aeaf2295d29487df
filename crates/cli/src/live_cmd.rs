//! `nomusic devices`, `nomusic live` and `nomusic latency-test`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use nomusic_engine::{MixOptions, StreamSeparator};
use nomusic_live::devices::{self, Want};
use nomusic_live::session::{self, Event, LiveConfig, Route};
use nomusic_live::virtual_sink::VirtualSink;
use nomusic_live::{latency_test, LiveError};

use crate::args::{DevicesArgs, LatencyTestArgs, LiveArgs};
use crate::models_cmd;

pub fn devices(args: DevicesArgs) -> Result<ExitCode> {
    let list = devices::list(args.all_hosts)?;
    if list.is_empty() {
        println!("no audio devices found (is PulseAudio/PipeWire running, or ALSA configured?)");
    }
    for d in &list {
        let native = d
            .native
            .as_ref()
            .map(|(r, c, f)| format!("{r} Hz, {c} ch, {f}"))
            .unwrap_or_else(|| "?".into());
        if args.json {
            let v = serde_json::json!({
                "id": d.id, "name": d.name, "host": d.host, "role": d.role.to_string(),
                "default": d.is_default, "loopback": d.loopback,
                "rate": d.native.as_ref().map(|n| n.0),
                "channels": d.native.as_ref().map(|n| n.1),
                "format": d.native.as_ref().map(|n| n.2.clone()),
            });
            println!("{v}");
        } else {
            let mut marks = Vec::new();
            if d.is_default {
                marks.push("default");
            }
            if d.loopback {
                marks.push("loopback");
            }
            let marks = if marks.is_empty() {
                String::new()
            } else {
                format!(" [{}]", marks.join(", "))
            };
            println!(
                "{:<7} {:<40} {}{}  ({native}; {})",
                d.role, d.id, d.name, marks, d.host
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let _ = ctrlc::set_handler(move || s.store(true, Ordering::Relaxed));
    stop
}

pub fn live(args: LiveArgs) -> Result<ExitCode> {
    if !(1.0..=5000.0).contains(&args.latency_ms) {
        anyhow::bail!("--latency-ms must be between 1 and 5000");
    }
    if let Some(p) = args.prebuffer_ms {
        if !(1.0..=10_000.0).contains(&p) {
            anyhow::bail!("--prebuffer-ms must be between 1 and 10000");
        }
    }
    let located = models_cmd::locate(&args.model)?;
    let model_name = located.spec.name;
    let factory = models_cmd::factory(located)?;
    let stop = stop_flag();

    let mut sink = None;
    let mut input = args.input.clone();
    if args.virtual_sink {
        let mut s = VirtualSink::create("nomusic")?;
        if args.move_streams {
            let n = s.move_streams()?;
            eprintln!("nomusic: moved {n} playing stream(s) into the \"nomusic\" sink");
        } else {
            eprintln!(
                "nomusic: created the output device \"nomusic\": send your apps to it (e.g. in \
                 pavucontrol, or `pactl set-default-sink nomusic`), or rerun with --move-streams"
            );
        }
        input = s.monitor_id();
        sink = Some(s);
    }
    let cfg = LiveConfig {
        input,
        output: args.output.clone(),
        latency_ms: args.latency_ms,
        prebuffer_ms: args.prebuffer_ms,
        force: args.force,
        duration: args.duration.map(Duration::from_secs_f64),
        warmup: Duration::from_secs(3),
        all_hosts: args.all_hosts,
    };
    let route = session::resolve_route(&cfg)?;
    let options = MixOptions {
        music_gain: args.music_gain.unwrap_or(0.0),
        music_stem: false,
    };
    let make = |rate: u32, channels: usize| -> Result<StreamSeparator, LiveError> {
        Ok(StreamSeparator::new(&factory, rate, channels, options)?)
    };
    let show = args.stats;
    let mut on_event = |e: Event<'_>| match e {
        Event::Started(route, f) => eprintln!(
            "nomusic live: {} ({} Hz, {} ch) -> {} ({} Hz, {} ch), model {model_name}. Ctrl-C \
             stops.",
            route.capture.id,
            f.capture_rate,
            f.capture_channels,
            route.playback.id,
            f.playback_rate,
            f.playback_channels
        ),
        Event::Tick(s, c) => {
            if show {
                let lat = s
                    .latency_ms
                    .map(|l| format!("{l:5.1} ms"))
                    .unwrap_or_else(|| "   -- ".into());
                let drift = s
                    .drift_ppm
                    .map(|d| format!("{d:+6.0} ppm"))
                    .unwrap_or_else(|| "   -- ppm".into());
                eprint!(
                    "\rlatency {lat} | model {:.2} ms/hop ({:.0}% of budget) | buffer {:.0}/{:.0} \
                     ms | underruns {} | overruns {} | drift {drift} (corr {:+.0}) ",
                    s.model_ms_per_hop,
                    100.0 * s.model_load,
                    s.buffer_min_ms,
                    s.buffer_target_ms,
                    c.underruns.load(Ordering::Relaxed),
                    c.capture_overruns.load(Ordering::Relaxed) + s.playback_overruns,
                    s.correction_ppm,
                );
                let _ = std::io::stderr().flush();
            }
        }
        Event::Lost(id) => eprintln!("\nnomusic live: {id} went away; waiting for it to return"),
        Event::Reopened => eprintln!("nomusic live: devices back, carrying on"),
    };
    let report = session::run(&cfg, route, &make, &stop, &mut on_event)?;
    drop(sink);
    if show {
        eprintln!();
    }
    let lat: Vec<f64> = report
        .seconds_log
        .iter()
        .filter_map(|s| s.latency_ms)
        .collect();
    let mean = if lat.is_empty() {
        f64::NAN
    } else {
        lat.iter().sum::<f64>() / lat.len() as f64
    };
    eprintln!(
        "nomusic live: {:.0} s, mean latency {mean:.1} ms, underruns {} ({} after warm-up), \
         overruns {} ({} after warm-up), reopened {}",
        report.seconds,
        report.underruns,
        report.underruns_after_warmup,
        report.capture_overruns + report.playback_overruns,
        report.capture_overruns_after_warmup + report.playback_overruns_after_warmup,
        report.reopened
    );
    if let Some(path) = &args.stats_json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if stop.load(Ordering::Relaxed) {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn latency_test(args: LatencyTestArgs) -> Result<ExitCode> {
    let all = devices::list(args.all_hosts)?;
    let capture = devices::select(&all, &args.input, Want::Capture)?.clone();
    let playback = devices::select(&all, &args.output, Want::Playback)?.clone();
    eprintln!(
        "playing a test signal on {} and listening on {} (about 6 s)",
        playback.id, capture.id
    );
    let route = Route { capture, playback };
    let r = latency_test::run(&route)?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let spread = r
            .per_burst_ms
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "latency {:.1} ms (match {:.2}; per burst: {spread} ms)",
            r.latency_ms, r.match_strength
        );
    }
    Ok(ExitCode::SUCCESS)
}
