//! Parity with the benchmark's reference scorer: the Rust metrics on the whole dev set against
//! `shared/bench/score.py`, for a few deterministic estimate sets. Needs the Python interpreter
//! of the project's virtualenv in `NOMUSIC_PYTHON` (scripts/test.sh sets it up).

use nomusic_dsp::metrics::{
    music_only_mask, score_item, summarize, summary_table, ItemMetrics, ScoredItem,
    DEV_SMR_BUCKETS_DB,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const BENCH_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/bench");
const SAMPLE_RATE_HZ: u32 = 16_000;
/// The tolerances the project promises (bench README).
const DB_TOLERANCE: f64 = 0.01;
const STOI_TOLERANCE: f64 = 0.005;

struct Item {
    id: String,
    smr_db: f64,
    vocals: bool,
    segments: Vec<(f64, f64)>,
    mixture: Vec<f32>,
    speech: Vec<f32>,
    music: Vec<f32>,
}

/// A PCM16 mono file as f32, exactly as soundfile reads it (sample / 32768).
fn read_pcm16(path: &Path) -> Vec<f32> {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, SAMPLE_RATE_HZ, 16),
        "{}",
        path.display()
    );
    reader
        .samples::<i16>()
        .map(|s| f32::from(s.expect("readable sample")) / 32768.0)
        .collect()
}

fn write_f32_wav(path: &Path, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE_HZ,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("create estimate WAV");
    for &s in samples {
        writer.write_sample(s).expect("write sample");
    }
    writer.finalize().expect("finalize estimate WAV");
}

fn load_dev_set(dev_dir: &Path) -> Vec<Item> {
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dev_dir.join("manifest.json")).expect("dev manifest"),
    )
    .expect("manifest JSON");
    manifest["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|it| {
            let dir = dev_dir.join(it["dir"].as_str().expect("dir"));
            let segments = it["speech_segments"]
                .as_array()
                .expect("speech_segments")
                .iter()
                .map(|s| {
                    (
                        s["start_s"].as_f64().expect("start_s"),
                        s["end_s"].as_f64().expect("end_s"),
                    )
                })
                .collect();
            Item {
                id: it["id"].as_str().expect("id").to_owned(),
                smr_db: it["smr_target_db"].as_f64().expect("smr_target_db"),
                vocals: it["music"]["vocals"].as_bool().expect("vocals"),
                segments,
                mixture: read_pcm16(&dir.join("mixture.wav")),
                speech: read_pcm16(&dir.join("speech.wav")),
                music: read_pcm16(&dir.join("music.wav")),
            }
        })
        .collect()
}

/// Uniform noise in [-1, 1) from a fixed-seed 64-bit LCG.
fn lcg_noise(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A centred (zero-delay) 5-tap low-pass, zero outside the signal.
fn low_pass(x: &[f32]) -> Vec<f32> {
    const TAPS: [f32; 5] = [0.1, 0.2, 0.4, 0.2, 0.1];
    (0..x.len())
        .map(|i| {
            TAPS.iter()
                .enumerate()
                .filter_map(|(k, t)| (i + k).checked_sub(2).and_then(|j| x.get(j)).map(|v| t * v))
                .sum()
        })
        .collect()
}

type MakeEstimate = fn(usize, &Item) -> Vec<f32>;

/// The kinds of estimate, each a function of (item index, item). Some are longer or shorter than
/// the mixture, to check the cutting and padding.
const ESTIMATE_KINDS: [(&str, MakeEstimate); 5] = [
    ("speech_plus_0.3_music", |_, it| {
        it.speech
            .iter()
            .zip(&it.music)
            .map(|(s, m)| s + 0.3 * m)
            .collect()
    }),
    ("low_passed_mixture_long", |i, it| {
        let mut est = low_pass(&it.mixture);
        est.extend(lcg_noise(321, i as u64).iter().map(|v| 0.01 * v));
        est
    }),
    ("half_speech_lcg_noise_short", |i, it| {
        let n = it.mixture.len() - 777;
        let noise = lcg_noise(n, 1000 + i as u64);
        it.speech[..n]
            .iter()
            .zip(&noise)
            .map(|(s, v)| 0.5 * s + 0.003 * v)
            .collect()
    }),
    // Music kept only during speech: the music-only stretches are silent (MO-att floor).
    ("music_during_speech_only", |_, it| {
        let mask = music_only_mask(it.mixture.len(), &it.segments, SAMPLE_RATE_HZ);
        it.speech
            .iter()
            .zip(&it.music)
            .zip(&mask)
            .map(|((s, m), &mo)| if mo { *s } else { s + 0.5 * m })
            .collect()
    }),
    ("mixture", |_, it| it.mixture.clone()),
];

/// Estimate sets (one score.py run each): set `k` gives item `i` the kind
/// `(i + offset_k) % ESTIMATE_KINDS.len()`, so every kind meets every SMR and each item is scored
/// with two different kinds. Two runs keep the test quick (score.py's STOI is the slow part).
const ESTIMATE_SETS: [(&str, usize); 2] = [("set_a", 0), ("set_b", 2)];

fn kind_of(set_offset: usize, item_index: usize) -> (&'static str, MakeEstimate) {
    ESTIMATE_KINDS[(item_index + set_offset) % ESTIMATE_KINDS.len()]
}

fn python() -> String {
    std::env::var("NOMUSIC_PYTHON").unwrap_or_else(|_| {
        panic!(
            "NOMUSIC_PYTHON is not set: this test compares against score.py and needs the \
             project's Python environment. Run scripts/test.sh (or `bash scripts/test-deps.sh` \
             and set NOMUSIC_PYTHON=$PWD/.venv/bin/python)."
        )
    })
}

/// score.py writes NaN for PESQ (not installed) and for empty music-only masks: bare tokens that
/// strict JSON (serde_json) rejects. They only ever appear as values.
fn parse_python_json(text: &str) -> Value {
    let text = text
        .replace("-Infinity", "null")
        .replace("Infinity", "null")
        .replace("NaN", "null");
    serde_json::from_str(&text).expect("score.py JSON")
}

/// Worst |Rust - score.py| per metric, with the item where it happened.
#[derive(Default)]
struct Worst(Vec<(&'static str, f64, String)>);

impl Worst {
    fn record(&mut self, metric: &'static str, delta: f64, at: String) {
        match self.0.iter_mut().find(|(m, _, _)| *m == metric) {
            Some(entry) if entry.1 < delta => *entry = (metric, delta, at),
            Some(_) => {}
            None => self.0.push((metric, delta, at)),
        }
    }
}

fn compare(
    worst: &mut Worst,
    failures: &mut Vec<String>,
    at: &str,
    metric: &'static str,
    rust: Option<f64>,
    python: &Value,
    tolerance: f64,
) {
    let delta = match (rust, python.as_f64()) {
        (Some(r), Some(p)) => (r - p).abs(),
        (None, None) => 0.0,
        (r, _) => {
            failures.push(format!("{at} {metric}: rust {r:?}, score.py {python}"));
            return;
        }
    };
    worst.record(metric, delta, at.to_owned());
    if delta.is_nan() || delta > tolerance {
        failures.push(format!(
            "{at} {metric}: rust {rust:?}, score.py {python}, |delta| {delta:.2e} > {tolerance}"
        ));
    }
}

fn fields(m: &ItemMetrics) -> [(&'static str, Option<f64>, f64); 5] {
    [
        ("si_sdr", Some(m.si_sdr), DB_TOLERANCE),
        ("si_sdri", Some(m.si_sdri), DB_TOLERANCE),
        ("resid_db", Some(m.resid_db), DB_TOLERANCE),
        ("mo_atten_db", m.mo_atten_db, DB_TOLERANCE),
        ("stoi", Some(m.stoi), STOI_TOLERANCE),
    ]
}

#[test]
fn rust_metrics_match_score_py_on_the_dev_set() {
    let python = python();
    let bench = PathBuf::from(BENCH_DIR);
    let dev_dir = bench.join("dev");
    let items = load_dev_set(&dev_dir);
    assert_eq!(items.len(), 24, "dev set items");

    // Write every estimate set, start score.py on each, and score in Rust while it runs.
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("metrics_score_py");
    let mut runs: Vec<(&str, usize, Child, PathBuf, Vec<ScoredItem>)> = Vec::new();
    let mut rust_time = std::time::Duration::ZERO;
    for (name, offset) in ESTIMATE_SETS {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).expect("estimate dir");
        let estimates: Vec<Vec<f32>> = items
            .iter()
            .enumerate()
            .map(|(i, it)| kind_of(offset, i).1(i, it))
            .collect();
        for (it, est) in items.iter().zip(&estimates) {
            write_f32_wav(&dir.join(format!("{}.wav", it.id)), est);
        }
        let json_path = work.join(format!("{name}.json"));
        let _ = std::fs::remove_file(&json_path);
        let child = Command::new(&python)
            .arg(bench.join("score.py"))
            .arg(&dev_dir)
            .arg(&dir)
            .arg("--json")
            .arg(&json_path)
            .stdout(Stdio::piped())
            // PESQ is absent, so score.py warns about empty means: keep stderr for failures.
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} (NOMUSIC_PYTHON): {e}"));
        let started = std::time::Instant::now();
        let scored = items
            .iter()
            .zip(&estimates)
            .map(|(it, est)| {
                let mask = music_only_mask(it.mixture.len(), &it.segments, SAMPLE_RATE_HZ);
                let metrics = score_item(
                    est,
                    &it.speech,
                    &it.music,
                    &it.mixture,
                    &mask,
                    SAMPLE_RATE_HZ,
                )
                .expect("dev items are aligned");
                ScoredItem {
                    smr_db: it.smr_db,
                    vocals: it.vocals,
                    metrics,
                }
            })
            .collect();
        rust_time += started.elapsed();
        runs.push((name, offset, child, json_path, scored));
    }

    let mut worst = Worst::default();
    let mut failures = Vec::new();
    for (name, offset, child, json_path, scored) in runs {
        let output = child.wait_with_output().expect("wait for score.py");
        assert!(
            output.status.success(),
            "score.py failed on {name}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let reference = parse_python_json(&std::fs::read_to_string(&json_path).expect("json"));
        let rows = reference["items"].as_array().expect("items");
        assert_eq!(rows.len(), items.len(), "{name}: score.py items");
        for (i, ((row, it), s)) in rows.iter().zip(&items).zip(&scored).enumerate() {
            assert_eq!(row["id"].as_str(), Some(it.id.as_str()));
            let at = format!("{name}/{} ({})", it.id, kind_of(offset, i).0);
            for (metric, rust, tol) in fields(&s.metrics) {
                compare(
                    &mut worst,
                    &mut failures,
                    &at,
                    metric,
                    rust,
                    &row[metric],
                    tol,
                );
            }
        }
        // The bucket means as well (same keys, same counts, same values).
        let summary = reference["summary"].as_object().expect("summary");
        let ours = summarize(&scored, &DEV_SMR_BUCKETS_DB);
        // The printed table, PESQ column aside (score.py prints nan there, Rust n/a).
        let without_pesq = |table: &str| -> Vec<String> {
            table
                .lines()
                .map(|line| {
                    let line = line.trim_end().trim_end_matches('|').trim_end();
                    line.rsplit_once('|')
                        .map_or(line, |(rest, _)| rest)
                        .to_owned()
                })
                .collect()
        };
        assert_eq!(
            without_pesq(&summary_table(&ours)),
            without_pesq(&String::from_utf8_lossy(&output.stdout)),
            "{name}: summary table"
        );
        let keys: Vec<String> = ours.iter().map(|s| s.bucket.to_string()).collect();
        let mut theirs: Vec<String> = summary.keys().cloned().collect();
        let mut sorted_keys = keys.clone();
        theirs.sort();
        sorted_keys.sort();
        assert_eq!(sorted_keys, theirs, "{name}: summary buckets");
        for (s, key) in ours.iter().zip(&keys) {
            let row = &summary[key];
            assert_eq!(row["n"].as_u64(), Some(s.n as u64), "{name}/{key}: n");
            let m = ItemMetrics {
                si_sdr: s.si_sdr,
                si_sdri: s.si_sdri,
                resid_db: s.resid_db,
                mo_atten_db: s.mo_atten_db,
                stoi: s.stoi,
            };
            let at = format!("{name}/summary[{key}]");
            for (metric, rust, tol) in fields(&m) {
                compare(
                    &mut worst,
                    &mut failures,
                    &at,
                    metric,
                    rust,
                    &row[metric],
                    tol,
                );
            }
        }
    }
    println!(
        "Rust scored {} items in {:.2} s",
        items.len() * ESTIMATE_SETS.len(),
        rust_time.as_secs_f64()
    );
    for (metric, delta, at) in &worst.0 {
        println!("max |rust - score.py| {metric:<12} {delta:.3e} at {at}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
