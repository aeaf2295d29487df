//! Command-line flags (first stage: raw values; the commands build real objects from them).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "nomusic",
    version,
    about = "Removes background music and keeps speech"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Separate files: write the speech (and optionally the music) of each input.
    Separate(SeparateArgs),
    /// List the models, or fetch one.
    Models(ModelsArgs),
    /// Run a model over a benchmark set and score it.
    Bench(BenchArgs),
    /// Score one estimate against its clean reference.
    Eval(EvalArgs),
    /// List audio devices (inputs, outputs, loopback/monitor sources) with their ids.
    Devices(DevicesArgs),
    /// Remove the music from live audio: capture a device, play the speech to another.
    Live(LiveArgs),
    /// Measure a route's latency: play a test signal on OUTPUT, find it in INPUT.
    LatencyTest(LatencyTestArgs),
}

#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// One JSON object per device.
    #[arg(long)]
    pub json: bool,
    /// Also list the devices of the other audio hosts (e.g. ALSA beside PulseAudio).
    #[arg(long)]
    pub all_hosts: bool,
}

#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Capture device: `loopback` (what the default output plays), `default`, an id from
    /// `nomusic devices`, or a unique part of a name.
    #[arg(short, long, default_value = "loopback")]
    pub input: String,
    /// Playback device: `default`, an id, or a unique part of a name (e.g. "CABLE Input").
    #[arg(short, long, default_value = "default")]
    pub output: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Keep the music at this level instead of removing it, e.g. -15dB.
    #[arg(long, value_name = "DB", allow_hyphen_values = true, value_parser = parse_gain_db)]
    pub music_gain: Option<f32>,
    /// Jitter buffer target in ms: the least audio kept queued for the output device (it grows
    /// by 10 ms after each underrun, up to 200 ms).
    #[arg(long, default_value_t = 40.0, value_name = "MS")]
    pub latency_ms: f64,
    /// Quality mode: keep this much (ms, e.g. 500) queued so the output never runs dry, at the
    /// cost of that much more delay. Overrides --latency-ms.
    #[arg(long, value_name = "MS")]
    pub prebuffer_ms: Option<f64>,
    /// Linux: create a null sink "nomusic" for apps to play into, capture its monitor, and
    /// remove it on exit.
    #[arg(long)]
    pub virtual_sink: bool,
    /// With --virtual-sink: make it the default output and move playing apps into it.
    #[arg(long, requires = "virtual_sink")]
    pub move_streams: bool,
    /// Run even when the output is the device being captured (you will hear an echo).
    #[arg(long)]
    pub force: bool,
    /// Show a stats line, updated once a second.
    #[arg(long)]
    pub stats: bool,
    /// Write the run's stats (per second, and totals) as JSON to this file at exit.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Look for the devices on every audio host, not only the default one.
    #[arg(long)]
    pub all_hosts: bool,
}

#[derive(Debug, Args)]
pub struct LatencyTestArgs {
    /// Device that hears the signal (e.g. the monitor of where nomusic plays).
    #[arg(short, long)]
    pub input: String,
    /// Device the signal is played on.
    #[arg(short, long)]
    pub output: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Look for the devices on every audio host, not only the default one.
    #[arg(long)]
    pub all_hosts: bool,
}

/// Which model to use and where to find it.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model name (see `nomusic models`).
    #[arg(long, short = 'm', default_value = nomusic_models::registry::DEFAULT_MODEL)]
    pub model: String,
    /// Use the model's files at this path (a file, or a directory holding them) instead of
    /// searching NOMUSIC_MODEL_DIR and the cache.
    #[arg(long, value_name = "PATH")]
    pub model_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Stem {
    Speech,
    Music,
    /// Speech, music and every stem of an htdemucs model (NAME.drums.wav, NAME.bass.wav,
    /// NAME.other.wav, NAME.vocals.wav).
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Wav,
    Flac,
}

#[derive(Debug, Args)]
pub struct SeparateArgs {
    /// Input files or glob patterns (WAV, FLAC, MP3, Ogg Vorbis/Opus, WebM/MKV, MP4/M4A, AIFF).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// Output file (one input) or folder (several inputs, or a path ending in '/'; inputs that
    /// share a name get subfolders named after their folders, e.g. OUT/ep1/talk.speech.wav).
    /// Default: beside each input, as NAME.speech.wav.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Stems to write.
    #[arg(long, value_delimiter = ',', default_value = "speech")]
    pub stems: Vec<Stem>,
    /// htdemucs models: average this many passes with random time shifts of up to 0.5 s
    /// (each costs a full pass; 0 = one pass without shift) [default: 1, as demucs]
    #[arg(long, value_name = "N")]
    pub shifts: Option<usize>,
    /// Keep the music at this level in the speech output instead of removing it, e.g. -15dB.
    #[arg(long, value_name = "DB", allow_hyphen_values = true, value_parser = parse_gain_db)]
    pub music_gain: Option<f32>,
    /// Output format when OUT does not name one by extension.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Bits per sample: 16 or 24 (WAV, FLAC), 32 (WAV float).
    #[arg(long, default_value_t = 16)]
    pub bits: u32,
    /// Output sample rate (default: the input's).
    #[arg(long, value_name = "HZ")]
    pub sample_rate: Option<u32>,
    /// Mix the output down to mono.
    #[arg(long)]
    pub mono: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print one JSON summary per file on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub action: Option<ModelsAction>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// List the models (the default).
    List,
    /// Download a model into the cache, verified by sha256 (resumes an interrupted download).
    Fetch {
        name: String,
        /// Download from this mirror (holding MIRROR/NAME/FILE) instead of upstream.
        #[arg(long, env = "NOMUSIC_MODEL_MIRROR")]
        mirror: Option<String>,
        #[arg(short, long)]
        quiet: bool,
    },
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark set directory (holding manifest.json), laid out like shared/bench/dev.
    #[arg(long, value_name = "DIR")]
    pub set: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Write each estimate to DIR/<id>.wav.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write per-item and summary results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The clean speech.
    #[arg(long)]
    pub reference: PathBuf,
    /// The separated speech to score.
    #[arg(long)]
    pub estimate: PathBuf,
    /// The mixture (enables SI-SDRi, residual and music-only attenuation).
    #[arg(long)]
    pub mixture: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Parses "-15dB", "-15 dB", "-15" (dB) or "-inf" into a linear gain.
pub fn parse_gain_db(s: &str) -> Result<f32, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("dB")
        .or_else(|| t.strip_suffix("db"))
        .or_else(|| t.strip_suffix("DB"))
        .unwrap_or(t)
        .trim();
    if t == "-inf" {
        return Ok(0.0);
    }
    let db: f32 = t
        .parse()
        .map_err(|_| format!("'{s}' is not a level in dB (e.g. -15dB)"))?;
    if db > 0.0 {
        return Err(format!(
            "music gain {db} dB would boost the music; give 0 dB or less"
        ));
    }
    Ok(10f32.powf(db / 20.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gains_parse() {
        assert!((parse_gain_db("-20dB").unwrap() - 0.1).abs() < 1e-6);
        assert!((parse_gain_db("-6 dB").unwrap() - 0.501).abs() < 1e-3);
        assert_eq!(parse_gain_db("-inf").unwrap(), 0.0);
        assert!(parse_gain_db("loud").is_err());
        assert!(parse_gain_db("+3dB").is_err());
    }
}
