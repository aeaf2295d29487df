//! End-to-end tests of the `nomusic` binary on real files and real models.
//!
//! Models come from ../shared/models (NOMUSIC_MODEL_DIR), inputs from the audio-io fixtures
//! (every supported format) and the dev benchmark.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nomusic_audio_io::read_all;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared() -> PathBuf {
    repo().join("../shared")
}

fn fixture(name: &str) -> PathBuf {
    repo().join("crates/audio-io/tests/fixtures").join(name)
}

fn nomusic(args: &[&str]) -> Output {
    let cache = std::env::temp_dir().join("nomusic-test-empty-cache");
    Command::new(env!("CARGO_BIN_EXE_nomusic"))
        .args(args)
        .env("NOMUSIC_MODEL_DIR", shared().join("models"))
        .env("XDG_CACHE_HOME", cache)
        .output()
        .expect("run nomusic")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "nomusic failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn si_sdr(est: &[f32], reference: &[f32]) -> f64 {
    nomusic_dsp::metrics::si_sdr(est, reference).0
}

/// Lag (in samples, within +-max_lag) maximising the cross-correlation of `a` against `b`.
fn best_lag(a: &[f32], b: &[f32], max_lag: i64) -> i64 {
    let n = a.len().min(b.len()) as i64;
    (-max_lag..=max_lag)
        .max_by(|&l1, &l2| {
            let c = |lag: i64| -> f64 {
                (0..n)
                    .filter_map(|i| {
                        let j = i + lag;
                        (j >= 0 && j < n).then(|| a[j as usize] as f64 * b[i as usize] as f64)
                    })
                    .sum()
            };
            c(l1).total_cmp(&c(l2))
        })
        .unwrap()
}

#[test]
fn models_lists_every_model_with_its_location() {
    let out = nomusic(&["models"]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "nomusic",
        "deepfilternet3",
        "dtln",
        "gtcrn",
        "htdemucs",
        "htdemucs_ft",
    ] {
        assert!(text.contains(name), "{text}");
    }
    assert!(text.contains("shared/models"), "{text}");
    let builtin = text.lines().find(|l| l.starts_with("nomusic ")).unwrap();
    assert!(builtin.ends_with("built in"), "{builtin}");
    assert!(text.contains("default: nomusic"), "{text}");
}

#[test]
fn the_default_model_is_built_in_and_needs_no_download() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nomusic"))
            .args(args)
            .env("NOMUSIC_MODEL_DIR", tmp.path())
            .env("XDG_CACHE_HOME", tmp.path())
            .output()
            .unwrap()
    };
    let dst = tmp.path().join("speech.wav");
    ok(&run(&[
        "separate",
        s(&fixture("source.wav")),
        "-o",
        s(&dst),
        "--quiet",
    ]));
    let (info_in, planar_in) = read_all(&fixture("source.wav")).unwrap();
    let (info_out, planar_out) = read_all(&dst).unwrap();
    assert_eq!(info_out.sample_rate_hz, info_in.sample_rate_hz);
    assert_eq!(planar_out[0].len(), planar_in[0].len());
    let out = run(&["models", "fetch", "nomusic"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("built into this binary"));
    // Nothing was downloaded or installed.
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "only the output file"
    );
}

#[test]
fn missing_model_says_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nomusic"))
        .args([
            "separate",
            "--model",
            "deepfilternet3",
            s(&fixture("source.wav")),
            "-o",
            s(&tmp.path().join("x.wav")),
        ])
        .env("NOMUSIC_MODEL_DIR", tmp.path())
        .env("XDG_CACHE_HOME", tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nomusic models fetch deepfilternet3"), "{err}");
    assert!(!tmp.path().join("x.wav").exists());
}

#[test]
fn every_input_format_keeps_rate_channels_and_length() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "source.wav",
        "flac.flac",
        "mp3.mp3",
        "vorbis.ogg",
        "opus-mono.opus",
        "opus-stereo.opus",
        "opus.webm",
        "aac.m4a",
        "aiff.aiff",
        "video-aac.mp4",
        "video-vorbis.mkv",
        "video-opus.webm",
    ] {
        let input = fixture(name);
        let output = tmp.path().join(format!("{name}.wav"));
        let out = nomusic(&[
            "separate",
            s(&input),
            "-o",
            s(&output),
            "--model",
            "dtln",
            "--quiet",
        ]);
        ok(&out);
        let (info_in, planar_in) = read_all(&input).unwrap();
        let (info_out, planar_out) = read_all(&output).unwrap();
        assert_eq!(
            info_out.sample_rate_hz, info_in.sample_rate_hz,
            "{name}: rate"
        );
        assert_eq!(planar_out.len(), planar_in.len(), "{name}: channels");
        assert_eq!(planar_out[0].len(), planar_in[0].len(), "{name}: length");
    }
}

#[test]
fn default_model_on_stereo_44k_flac_is_aligned_and_removes_music() {
    let item = shared().join("bench/dev/dev_00/44k");
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("speech.flac");
    let out = nomusic(&[
        "separate",
        s(&item.join("mixture.flac")),
        "-o",
        s(&output),
        "--quiet",
    ]);
    ok(&out);
    let (info, est) = read_all(&output).unwrap();
    let (_, speech) = read_all(&item.join("speech.flac")).unwrap();
    let (_, mix) = read_all(&item.join("mixture.flac")).unwrap();
    assert_eq!(info.sample_rate_hz, 44_100);
    assert_eq!(est.len(), 2, "stereo stays stereo");
    assert_eq!(est[0].len(), mix[0].len());
    // Aligned to the sample with the clean speech.
    let (a, b) = (&est[0][44_100..44_100 * 5], &speech[0][44_100..44_100 * 5]);
    assert_eq!(
        best_lag(a, b, 40),
        0,
        "output is sample-aligned with the input"
    );
    let gain = si_sdr(&est[0], &speech[0]) - si_sdr(&mix[0], &speech[0]);
    assert!(gain > 5.0, "SI-SDR improvement {gain:.2} dB");
}

#[test]
fn a_bad_input_fails_alone_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let outdir = tmp.path().join("out");
    let text = tmp.path().join("notes.txt");
    std::fs::write(&text, "not audio").unwrap();
    let out = nomusic(&[
        "separate",
        s(&fixture("corrupt.flac")),
        s(&fixture("source.wav")),
        s(&tmp.path().join("missing.wav")),
        s(&text),
        "-o",
        s(&outdir),
        "--model",
        "gtcrn",
        "--quiet",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code says something failed"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 3, "{err}");
    assert!(error_lines.iter().any(|l| l.contains("corrupt.flac")));
    assert!(error_lines.iter().any(|l| l.contains("missing.wav")));
    assert!(error_lines.iter().any(|l| l.contains("notes.txt")));
    let written: Vec<_> = std::fs::read_dir(&outdir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        written,
        vec![std::ffi::OsString::from("source.speech.wav")],
        "only the good output, no temp files"
    );
}

#[test]
fn never_overwrites_an_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.wav");
    std::fs::copy(fixture("source.wav"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let out = nomusic(&[
        "separate",
        s(&input),
        "-o",
        s(&input),
        "--model",
        "gtcrn",
        "--quiet",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("overwrite"));
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

#[test]
fn same_named_inputs_in_different_folders_get_their_own_subfolders() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in ["show/ep1", "show/ep2"] {
        std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
        std::fs::copy(fixture("source.wav"), tmp.path().join(dir).join("talk.wav")).unwrap();
    }
    let outdir = tmp.path().join("out");
    ok(&nomusic(&[
        "separate",
        s(&tmp.path().join("show/ep1/talk.wav")),
        s(&tmp.path().join("show/ep2/talk.wav")),
        "-o",
        s(&outdir),
        "--model",
        "gtcrn",
        "--quiet",
    ]));
    for dir in ["ep1", "ep2"] {
        let out = outdir.join(dir).join("talk.speech.wav");
        assert!(out.is_file(), "{} missing", out.display());
    }
    assert!(!outdir.join("talk.speech.wav").exists());
}

#[test]
fn inputs_that_would_write_the_same_file_stop_the_run_before_it_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let wav = tmp.path().join("talk.wav");
    let flac = tmp.path().join("talk.flac");
    std::fs::copy(fixture("source.wav"), &wav).unwrap();
    std::fs::copy(fixture("flac.flac"), &flac).unwrap();
    let out = nomusic(&["separate", s(&wav), s(&flac), "--model", "gtcrn", "--quiet"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("would both write") && err.contains("talk.speech.wav"),
        "{err}"
    );
    assert!(
        !tmp.path().join("talk.speech.wav").exists(),
        "nothing separated"
    );

    // An output that is another input: that input is left as it was.
    let other = tmp.path().join("talk.speech.wav");
    std::fs::copy(fixture("flac.flac"), &other).unwrap();
    let before = std::fs::read(&other).unwrap();
    let out = nomusic(&[
        "separate",
        s(&wav),
        s(&other),
        "--model",
        "gtcrn",
        "--quiet",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("would overwrite"));
    assert_eq!(std::fs::read(&other).unwrap(), before);
    assert!(
        !tmp.path().join("talk.speech.speech.wav").exists(),
        "nothing separated"
    );
}

#[test]
fn resamples_output_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixture("source.wav");
    let (info, planar) = read_all(&input).unwrap();
    let n = planar[0].len() as u64;
    for rate in [16_000u32, 48_000] {
        let output = tmp.path().join(format!("{rate}.wav"));
        ok(&nomusic(&[
            "separate",
            s(&input),
            "-o",
            s(&output),
            "--model",
            "dtln",
            "--sample-rate",
            &rate.to_string(),
            "--quiet",
        ]));
        let (out_info, out) = read_all(&output).unwrap();
        assert_eq!(out_info.sample_rate_hz, rate);
        let want = (n * rate as u64 + info.sample_rate_hz as u64 / 2) / info.sample_rate_hz as u64;
        assert_eq!(out[0].len() as u64, want, "{rate} Hz length");
    }
}

#[test]
fn stems_add_up_to_the_mixture_and_json_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let input = shared().join("bench/dev/dev_03/mixture.wav");
    let output = tmp.path().join("x.wav");
    let out = nomusic(&[
        "separate",
        s(&input),
        "-o",
        s(&output),
        "--model",
        "dtln",
        "--stems",
        "speech,music",
        "--bits",
        "32",
        "--json",
    ]);
    ok(&out);
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["model"], "dtln");
    assert!(v["real_time_factor"].as_f64().unwrap() > 0.0);
    assert!((v["duration_s"].as_f64().unwrap() - 10.0).abs() < 3.0);
    let (_, mix) = read_all(&input).unwrap();
    let (_, speech) = read_all(&output).unwrap();
    let (_, music) = read_all(&tmp.path().join("x.music.wav")).unwrap();
    for i in 0..mix[0].len() {
        assert!(
            (speech[0][i] + music[0][i] - mix[0][i]).abs() < 1e-5,
            "sample {i}"
        );
    }
}

#[test]
fn eval_scores_a_pair() {
    let item = shared().join("bench/dev/dev_05");
    let out = nomusic(&[
        "eval",
        "--reference",
        s(&item.join("speech.wav")),
        "--estimate",
        s(&item.join("mixture.wav")),
        "--mixture",
        s(&item.join("mixture.wav")),
        "--json",
    ]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["si_sdri"].as_f64().unwrap().abs() < 1e-9,
        "the mixture improves nothing"
    );
    assert!(v["mo_atten_db"].as_f64().unwrap().abs() < 1e-6);
    assert!(v["stoi"].as_f64().unwrap() > 0.3);
}

#[cfg(unix)]
#[test]
fn ctrl_c_leaves_no_partial_output() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("long.wav");
    {
        // Five minutes of noise at 48 kHz stereo: long enough to be interrupted mid-way.
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&input, spec).unwrap();
        let mut state = 12345u32;
        for _ in 0..48_000 * 300 * 2 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            w.write_sample((state >> 20) as i16 - 2048).unwrap();
        }
        w.finalize().unwrap();
    }
    let outdir = tmp.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nomusic"))
        .args([
            "separate",
            s(&input),
            "-o",
            s(&outdir.join("x.wav")),
            "--quiet",
        ])
        .env("NOMUSIC_MODEL_DIR", shared().join("models"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the output's temporary file exists, i.e. processing has started.
    while std::fs::read_dir(&outdir).unwrap().next().is_none() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("nomusic exited ({status}) before writing anything");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(&outdir).unwrap().collect();
    assert!(left.is_empty(), "nothing may be left behind: {left:?}");
}

// HTDemucs through the CLI, on the tiny random-weight checkpoint the htdemucs crate tests with
// (the release checkpoints are not in the repository; see `nomusic models fetch htdemucs`).

fn tiny_demucs() -> PathBuf {
    repo().join("crates/htdemucs/tests/data/tiny.safetensors")
}

/// A float WAV of `frames` frames: two tones and a little noise-like ripple per channel.
fn write_wav(path: &Path, rate: u32, channels: u16, frames: usize) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..frames {
        let t = i as f32 / rate as f32;
        for c in 0..channels {
            let v = 0.3 * (2.0 * std::f32::consts::PI * (220.0 + 110.0 * c as f32) * t).sin()
                + 0.1 * (2.0 * std::f32::consts::PI * 1234.0 * t).sin()
                + 0.02 * ((i * 7919 + c as usize * 104_729) % 1000) as f32 / 1000.0;
            w.write_sample(v).unwrap();
        }
    }
    w.finalize().unwrap();
}

#[test]
fn htdemucs_mono_16k_in_mono_16k_out_and_speech_plus_music_is_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("talk.wav");
    write_wav(&input, 16_000, 1, 12_345);
    let out = nomusic(&[
        "separate",
        s(&input),
        "-o",
        s(&tmp.path().join("out/")),
        "--model",
        "htdemucs",
        "--model-path",
        s(&tiny_demucs()),
        "--stems",
        "speech,music",
        "--shifts",
        "0",
        "--bits",
        "32",
        "--json",
    ]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], "htdemucs");
    let (_, mix) = read_all(&input).unwrap();
    let (info, speech) = read_all(&tmp.path().join("out/talk.speech.wav")).unwrap();
    let (_, music) = read_all(&tmp.path().join("out/talk.music.wav")).unwrap();
    assert_eq!((info.sample_rate_hz, info.channels), (16_000, 1));
    assert_eq!(speech[0].len(), mix[0].len());
    assert_eq!(music[0].len(), mix[0].len());
    assert!(
        speech[0].iter().any(|v| v.abs() > 1e-4),
        "speech is not silent"
    );
    for i in 0..mix[0].len() {
        assert!(
            (speech[0][i] + music[0][i] - mix[0][i]).abs() < 1e-5,
            "sample {i}"
        );
    }
}

#[test]
fn htdemucs_stems_all_writes_the_four_stems_beside_speech_and_music() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("song.wav");
    write_wav(&input, 44_100, 2, 20_000);
    let out = nomusic(&[
        "separate",
        s(&input),
        "--model",
        "htdemucs",
        "--model-path",
        s(&tiny_demucs()),
        "--stems",
        "all",
        "--shifts",
        "0",
        "-q",
    ]);
    ok(&out);
    let mut lens = Vec::new();
    for stem in ["speech", "music", "drums", "bass", "other", "vocals"] {
        let (info, audio) = read_all(&tmp.path().join(format!("song.{stem}.wav"))).unwrap();
        assert_eq!(info.channels, 2, "{stem}");
        lens.push(audio[0].len());
    }
    assert!(lens.iter().all(|&n| n == 20_000), "{lens:?}");
    let (_, speech) = read_all(&tmp.path().join("song.speech.wav")).unwrap();
    let (_, vocals) = read_all(&tmp.path().join("song.vocals.wav")).unwrap();
    assert_eq!(speech, vocals, "the speech is the vocals stem");
}

#[test]
fn htdemucs_ft_loads_each_stem_model_from_the_model_dir_layout() {
    let tmp = tempfile::tempdir().unwrap();
    // NOMUSIC_MODEL_DIR layout, safetensors conversions named after each model's signature.
    let dir = tmp.path().join("models/htdemucs_ft");
    std::fs::create_dir_all(&dir).unwrap();
    for sig in ["f7e0c4bc", "d12395a8", "92cfc3b6", "04573f0d"] {
        std::fs::copy(tiny_demucs(), dir.join(format!("{sig}.safetensors"))).unwrap();
    }
    let input = tmp.path().join("clip.wav");
    write_wav(&input, 22_050, 2, 6_000);
    let out = Command::new(env!("CARGO_BIN_EXE_nomusic"))
        .args(["separate", s(&input), "-m", "htdemucs_ft", "--stems", "all"])
        .args(["--shifts", "0", "-q"])
        .env("NOMUSIC_MODEL_DIR", tmp.path().join("models"))
        .env("XDG_CACHE_HOME", tmp.path())
        .output()
        .unwrap();
    ok(&out);
    for stem in ["speech", "music", "drums", "bass", "other", "vocals"] {
        let (info, audio) = read_all(&tmp.path().join(format!("clip.{stem}.wav"))).unwrap();
        assert_eq!(
            (info.sample_rate_hz, audio[0].len()),
            (22_050, 6_000),
            "{stem}"
        );
    }
}

#[test]
fn htdemucs_truncated_checkpoint_fails_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(tiny_demucs()).unwrap();
    let cut = tmp.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let input = tmp.path().join("x.wav");
    write_wav(&input, 16_000, 1, 4_000);
    let out = nomusic(&[
        "separate",
        s(&input),
        "--model",
        "htdemucs",
        "--model-path",
        s(&cut),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated") && err.contains("cut.safetensors"),
        "{err}"
    );
    assert!(!tmp.path().join("x.speech.wav").exists());
    // A release name whose checksum part does not match the content.
    let wrong = tmp.path().join("955717e8-8726e21a.th");
    std::fs::copy(tiny_demucs(), &wrong).unwrap();
    let out = nomusic(&[
        "separate",
        s(&input),
        "-m",
        "htdemucs",
        "--model-path",
        s(&wrong),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wrong signature") && err.contains("8726e21a"),
        "{err}"
    );
}

#[test]
fn live_refuses_an_offline_model() {
    let out = nomusic(&[
        "live",
        "--model",
        "htdemucs",
        "--model-path",
        s(&tiny_demucs()),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("htdemucs is an offline model")
            && err.contains("(the default, nomusic) for live"),
        "{err}"
    );
}
