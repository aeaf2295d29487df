//! Progress bars: position in audio time, speed in multiples of real time, and ETA.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nomusic_engine::Progress;

/// A bar for one file, measured in audio seconds.
pub struct FileBar {
    bar: ProgressBar,
    started: Instant,
}

impl FileBar {
    pub fn new(label: &str, quiet: bool) -> Self {
        let bar = ProgressBar::new(0);
        if quiet {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {msg} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Self {
            bar,
            started: Instant::now(),
        }
    }

    pub fn update(&self, p: Progress) {
        let rate = p.sample_rate_hz.max(1) as f64;
        let done_s = p.frames_done as f64 / rate;
        // The bar counts milliseconds of audio, so the ETA follows the audio position.
        self.bar.set_length(
            p.frames_total
                .map_or(0, |t| (t as f64 / rate * 1000.0) as u64),
        );
        self.bar.set_position((done_s * 1000.0) as u64);
        let speed = done_s / self.started.elapsed().as_secs_f64().max(1e-9);
        let total = p
            .frames_total
            .map(|t| format!(" / {}", clock(t as f64 / rate)))
            .unwrap_or_default();
        let segments = p
            .segments
            .map(|(done, all)| format!("  segment {done}/{all}"))
            .unwrap_or_default();
        self.bar.set_message(format!(
            "{}{total}{segments}  {speed:.1}x real time",
            clock(done_s)
        ));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A byte-counting bar for downloads.
pub fn download_bar(quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// `m:ss` or `h:mm:ss`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}
