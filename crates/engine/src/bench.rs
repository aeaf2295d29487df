//! The benchmark runner: a model over a benchmark set laid out like `shared/bench/dev`, scored
//! exactly as `score.py` scores it, with the real-time factor measured beside a fixed baseline
//! workload run in the same process (so speed can be compared across machines as a ratio).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nomusic_audio_io::{read_all, Encoder, OutputFormat, SampleFormat};
use nomusic_dsp::metrics::{self, ItemMetrics, ScoredItem, Summary};
use nomusic_dsp::resample::StreamResampler;
use serde::Deserialize;

use crate::stream::{MixOptions, ModelFactory, StreamSeparator};
use crate::EngineError;

/// One item of a benchmark set.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchItem {
    pub id: String,
    pub dir: PathBuf,
    pub smr_db: f64,
    pub vocals: bool,
    /// Speech turns in seconds (for the music-only mask).
    pub speech_segments: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct Manifest {
    items: Vec<ManifestItem>,
}

#[derive(Deserialize)]
struct ManifestItem {
    id: String,
    dir: String,
    smr_target_db: f64,
    music: ManifestMusic,
    speech_segments: Vec<ManifestSegment>,
}

#[derive(Deserialize)]
struct ManifestMusic {
    #[serde(default)]
    vocals: bool,
}

#[derive(Deserialize)]
struct ManifestSegment {
    start_s: f64,
    end_s: f64,
}

/// Reads `manifest.json` of a benchmark set.
pub fn load_set(set_dir: &Path) -> Result<Vec<BenchItem>, EngineError> {
    let path = set_dir.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| EngineError::Config(format!("cannot read {}: {e}", path.display())))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
        EngineError::Config(format!(
            "{} is not a benchmark manifest: {e}",
            path.display()
        ))
    })?;
    Ok(manifest
        .items
        .into_iter()
        .map(|it| BenchItem {
            dir: set_dir.join(&it.dir),
            id: it.id,
            smr_db: it.smr_target_db,
            vocals: it.music.vocals,
            speech_segments: it
                .speech_segments
                .iter()
                .map(|s| (s.start_s, s.end_s))
                .collect(),
        })
        .collect())
}

/// Per-item result.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemResult {
    pub item: BenchItem,
    pub metrics: ItemMetrics,
    pub duration_s: f64,
    pub processing: Duration,
}

/// A whole benchmark run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub model: String,
    pub items: Vec<ItemResult>,
    pub summaries: Vec<Summary>,
    /// Model processing time over audio duration (the model's pipeline only: resampling to
    /// the model rate, the model, resampling back).
    pub real_time_factor: f64,
    /// The same for the baseline workload (an STFT analysis and synthesis at 48 kHz with a
    /// 20 ms window, the minimum any full-band streaming model does).
    pub baseline_real_time_factor: f64,
}

impl BenchReport {
    /// Model time over baseline time.
    pub fn speed_ratio(&self) -> f64 {
        self.real_time_factor / self.baseline_real_time_factor
    }

    /// The score.py table followed by the speed lines.
    pub fn table(&self) -> String {
        format!(
            "{}\nreal-time factor: {:.4} (one thread; baseline STFT workload {:.4}, ratio {:.1}x)\n",
            metrics::summary_table(&self.summaries),
            self.real_time_factor,
            self.baseline_real_time_factor,
            self.speed_ratio()
        )
    }
}

/// Runs `factory`'s model over every item of the set in `set_dir`, writes each estimate to
/// `estimates_dir/<id>.wav` (float, the mixture's rate) when given, and scores it.
pub fn run_bench(
    set_dir: &Path,
    model_name: &str,
    factory: &ModelFactory<'_>,
    estimates_dir: Option<&Path>,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<BenchReport, EngineError> {
    let items = load_set(set_dir)?;
    if items.is_empty() {
        return Err(EngineError::Config(format!(
            "{} lists no items",
            set_dir.display()
        )));
    }
    if let Some(dir) = estimates_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| EngineError::Config(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut results = Vec::with_capacity(items.len());
    let (mut total_audio_s, mut total_proc, mut total_base) = (0.0, Duration::ZERO, Duration::ZERO);
    for (i, item) in items.iter().enumerate() {
        progress(i, items.len(), &item.id);
        let (info, mix) = read_all(&item.dir.join("mixture.wav"))?;
        let (_, speech) = read_all(&item.dir.join("speech.wav"))?;
        let (_, music) = read_all(&item.dir.join("music.wav"))?;
        let rate = info.sample_rate_hz;
        let (mix, speech, music) = (&mix[0], &speech[0], &music[0]);

        let mut sep = StreamSeparator::new(factory, rate, 1, MixOptions::default())?;
        let mut est = Vec::with_capacity(mix.len());
        let t0 = Instant::now();
        sep.process(mix, &mut est, None)?;
        sep.finish(&mut est, None)?;
        let processing = t0.elapsed();
        total_proc += processing;
        total_base += baseline_workload(mix, rate)?;
        total_audio_s += mix.len() as f64 / rate as f64;

        if let Some(dir) = estimates_dir {
            let mut enc = Encoder::create(
                &dir.join(format!("{}.wav", item.id)),
                OutputFormat::Wav(SampleFormat::Float32),
                rate,
                1,
            )?;
            enc.write(&est)?;
            enc.finish()?;
        }
        let mask = metrics::music_only_mask(mix.len(), &item.speech_segments, rate);
        let m = metrics::score_item(&est, speech, music, mix, &mask, rate)
            .map_err(|e| EngineError::Config(format!("scoring {}: {e}", item.id)))?;
        results.push(ItemResult {
            item: item.clone(),
            metrics: m,
            duration_s: mix.len() as f64 / rate as f64,
            processing,
        });
    }
    progress(items.len(), items.len(), "");
    let scored: Vec<ScoredItem> = results
        .iter()
        .map(|r| ScoredItem {
            smr_db: r.item.smr_db,
            vocals: r.item.vocals,
            metrics: r.metrics,
        })
        .collect();
    let mut buckets: Vec<f64> = results.iter().map(|r| r.item.smr_db).collect();
    buckets.sort_by(f64::total_cmp);
    buckets.dedup();
    Ok(BenchReport {
        model: model_name.to_string(),
        summaries: metrics::summarize(&scored, &buckets),
        items: results,
        real_time_factor: total_proc.as_secs_f64() / total_audio_s,
        baseline_real_time_factor: total_base.as_secs_f64() / total_audio_s,
    })
}

/// The baseline: resample to 48 kHz, STFT analysis and synthesis with a 960-point window and
/// 480-frame hop, resample back. Returns the time it took.
fn baseline_workload(x: &[f32], rate: u32) -> Result<Duration, EngineError> {
    use nomusic_dsp::stft::{vorbis_window, Complex32, StftAnalysis, StftSynthesis};
    let t0 = Instant::now();
    let mut up = StreamResampler::new(rate, 48_000)?;
    let mut down = StreamResampler::new(48_000, rate)?;
    let mut x48 = Vec::new();
    up.process(x, &mut x48);
    let stft_err = |e| EngineError::Config(format!("baseline STFT: {e}"));
    let mut ana = StftAnalysis::new(960, 480, vorbis_window(960), 1.0).map_err(stft_err)?;
    let mut syn =
        StftSynthesis::new(960, 480, vorbis_window(960), 1.0 / 960.0).map_err(stft_err)?;
    let mut spec = vec![Complex32::default(); ana.bins()];
    let mut y48 = vec![0.0f32; x48.len()];
    for (xi, yo) in x48.chunks_exact(480).zip(y48.chunks_exact_mut(480)) {
        ana.process(xi, &mut spec);
        syn.process(&spec, yo);
    }
    let mut y = Vec::new();
    down.process(&y48, &mut y);
    std::hint::black_box(&y);
    Ok(t0.elapsed())
}
