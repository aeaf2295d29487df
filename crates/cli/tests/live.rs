//! `nomusic live` end to end on a real PulseAudio server with two null sinks:
//! play a 60 s speech+music file (after 1 s of silence) into sink A, run `nomusic live` from A's
//! monitor to sink B, record B's monitor, and compare with `nomusic separate` of the same file.
//! (A sound that starts after digital silence starts on live mode's processing grid, so after
//! the 1 s of silence the two runs frame the audio identically.)
//!
//! Needs `pulseaudio`, `pactl`, `paplay` and `parec` (Debian: pulseaudio pulseaudio-utils). CI
//! sets NOMUSIC_REQUIRE_PULSE=1 so a machine without them fails instead of skipping.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nomusic_dsp::metrics::si_sdr;
use nomusic_dsp::resample::StreamResampler;
use nomusic_live::latency_test::best_lag;
use nomusic_live::worker::dead_band_ms;

const RATE: u32 = 48_000;

/// The tests here each run a PulseAudio server and real-time audio: one at a time, so that
/// they do not steal each other's CPU.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Skips (or, in CI, fails) when the PulseAudio tools are missing.
fn pulse_tools_present() -> bool {
    let required = std::env::var("NOMUSIC_REQUIRE_PULSE").is_ok_and(|v| v == "1");
    for tool in ["pulseaudio", "pactl", "paplay", "parec"] {
        if !have(tool) {
            assert!(
                !required,
                "{tool} is missing (install pulseaudio pulseaudio-utils)"
            );
            eprintln!("skipping: {tool} is not installed");
            return false;
        }
    }
    true
}

fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/dev")
}

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A private PulseAudio server with two float 48 kHz stereo null sinks; killed on drop.
struct Pulse {
    child: Child,
    runtime: PathBuf,
    home: PathBuf,
}

impl Pulse {
    fn start(dir: &Path) -> Pulse {
        let runtime = dir.join("rt");
        let home = dir.join("home");
        std::fs::create_dir_all(&runtime).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let child = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--load=module-native-protocol-unix",
                "--load=module-null-sink sink_name=nm_a rate=48000 format=float32le channels=2",
                "--load=module-null-sink sink_name=nm_b rate=48000 format=float32le channels=2",
            ])
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("HOME", &home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pulseaudio");
        let p = Pulse {
            child,
            runtime,
            home,
        };
        let t0 = Instant::now();
        while !p
            .cmd("pactl")
            .arg("info")
            .output()
            .unwrap()
            .status
            .success()
        {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "pulseaudio did not come up"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("XDG_RUNTIME_DIR", &self.runtime)
            .env("HOME", &self.home)
            .env_remove("PULSE_SERVER")
            .env_remove("PULSE_RUNTIME_PATH");
        c
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_mono(path: &Path) -> Vec<f32> {
    let mut r = hound::WavReader::open(path).unwrap();
    match r.spec().sample_format {
        hound::SampleFormat::Int => r
            .samples::<i32>()
            .map(|s| s.unwrap() as f32 / 32768.0)
            .collect(),
        hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.unwrap()).collect(),
    }
}

/// 1 s of silence, then 60 s of bench mixtures at 48 kHz, different items on left and right.
fn make_input(path: &Path) -> usize {
    let mut items = Vec::new();
    for i in 0..24 {
        let p = bench_dir().join(format!("dev_{i:02}/mixture.wav"));
        let x = read_mono(&p);
        let mut rs = StreamResampler::new(16_000, RATE).unwrap();
        let mut y = Vec::new();
        let mut padded = x;
        padded.extend(std::iter::repeat_n(0.0, 4096));
        rs.process(&padded, &mut y);
        let d = rs.delay_frames();
        items.push(y[d..].to_vec());
    }
    let want = 60 * RATE as usize;
    let channel = |offset: usize| {
        let mut out = Vec::with_capacity(want);
        let mut k = offset;
        while out.len() < want {
            out.extend_from_slice(&items[k % items.len()]);
            k += 1;
        }
        out.truncate(want);
        out
    };
    let (l, r) = (channel(0), channel(7));
    // Live mode restarts its processing grid where sound begins after digital silence; the
    // offline run sees that first sound at frame RATE (a multiple of the grid) too.
    assert!(
        l[0] != 0.0 || r[0] != 0.0,
        "the content must start on its first frame"
    );
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for _ in 0..RATE {
        w.write_sample(0f32).unwrap();
        w.write_sample(0f32).unwrap();
    }
    for (a, b) in l.iter().zip(&r) {
        w.write_sample(*a).unwrap();
        w.write_sample(*b).unwrap();
    }
    w.finalize().unwrap();
    want + RATE as usize
}

fn read_stereo_f32(path: &Path) -> (Vec<f32>, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap();
    assert_eq!(r.spec().channels, 2);
    let s: Vec<f32> = r.samples::<f32>().map(|s| s.unwrap()).collect();
    (
        s.iter().step_by(2).copied().collect(),
        s.iter().skip(1).step_by(2).copied().collect(),
    )
}

#[test]
fn live_matches_offline_through_pulseaudio() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let required = std::env::var("NOMUSIC_REQUIRE_PULSE").is_ok_and(|v| v == "1");
    for tool in ["pulseaudio", "pactl", "paplay", "parec"] {
        if !have(tool) {
            assert!(
                !required,
                "{tool} is missing (install pulseaudio pulseaudio-utils)"
            );
            eprintln!("skipping: {tool} is not installed");
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let input = dir.join("input.wav");
    let total_frames = make_input(&input);
    let nomusic = env!("CARGO_BIN_EXE_nomusic");
    let models = model_dir();

    // Offline reference.
    let offline = dir.join("offline.wav");
    let out = Command::new(nomusic)
        .args(["separate", "--quiet", "--bits", "32", "-o"])
        .arg(&offline)
        .arg(&input)
        .env("NOMUSIC_MODEL_DIR", &models)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ref_l, ref_r) = read_stereo_f32(&offline);
    assert_eq!(ref_l.len(), total_frames);

    // Every bar must hold within one attempt; a second or third attempt only absorbs a stall of
    // the shared 2-core VM (seen as one ~20 ms slip of the whole output), printed when it happens.
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let sub = dir.join(format!("attempt-{attempt}"));
        std::fs::create_dir_all(&sub).unwrap();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            live_vs_offline_attempt(&sub, &input, total_frames, &ref_l, &ref_r)
        }));
        match run {
            Ok(()) => return,
            Err(_) if attempt < ATTEMPTS => {
                eprintln!("attempt {attempt} of {ATTEMPTS} failed (above); trying again")
            }
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

/// One live run of `input` through PulseAudio, checked against the offline result.
/// Jitter buffer target of the live-vs-offline run (`nomusic live --latency-ms`, its default).
const TARGET_MS: f64 = 40.0;

fn live_vs_offline_attempt(
    dir: &Path,
    input: &Path,
    total_frames: usize,
    ref_l: &[f32],
    ref_r: &[f32],
) {
    let nomusic = env!("CARGO_BIN_EXE_nomusic");
    let models = model_dir();
    let pulse = Pulse::start(dir);
    // Something already plays into A (silence), as on a desktop: A is running before live starts
    // and stays running after the file, so the sink's start/stop is not part of the measurement.
    let (mut keepalive, feeder) = play_silence(&pulse, "nm_a", 120);
    let recording = dir.join("recording.raw");
    let mut rec = pulse
        .cmd("parec")
        .args([
            "-d",
            "nm_b.monitor",
            "--format=float32le",
            "--rate=48000",
            "--channels=2",
            "--latency-msec=20",
        ])
        .stdout(std::fs::File::create(&recording).unwrap())
        .spawn()
        .unwrap();
    let stats = dir.join("stats.json");
    let run_s = total_frames as f64 / RATE as f64 + 8.0;
    let live = pulse
        .cmd(nomusic)
        .args([
            "live",
            "--input",
            "nm_a.monitor",
            "--output",
            "nm_b",
            "--duration",
        ])
        .arg(format!("{run_s}"))
        .arg("--latency-ms")
        .arg(format!("{TARGET_MS}"))
        .arg("--stats-json")
        .arg(&stats)
        .env("NOMUSIC_MODEL_DIR", &models)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let played = pulse
        .cmd("paplay")
        .args(["-d", "nm_a"])
        .arg(input)
        .status()
        .unwrap();
    assert!(played.success());
    let live_out = live.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&live_out.stderr).into_owned();
    assert!(live_out.status.success(), "nomusic live failed:\n{log}");
    let _ = Command::new("kill")
        .args(["-INT", &rec.id().to_string()])
        .status();
    let _ = rec.wait();
    let _ = keepalive.kill();
    let _ = keepalive.wait();
    let _ = feeder.join();
    drop(pulse);

    // The recording, aligned to the offline result by cross-correlation.
    let raw = std::fs::read(&recording).unwrap();
    let samples: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let rec_l: Vec<f32> = samples.iter().step_by(2).copied().collect();
    let rec_r: Vec<f32> = samples.iter().skip(1).step_by(2).copied().collect();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    for s in report["seconds_log"].as_array().unwrap() {
        eprintln!(
            "t {:5.1} s  latency {:6.1} ms  buffer min {:5.1} ms  model load {:.2}  drift {:?} ppm  correction {} ppm",
            s["t_s"].as_f64().unwrap_or(0.0),
            s["latency_ms"].as_f64().unwrap_or(f64::NAN),
            s["buffer_min_ms"].as_f64().unwrap_or(f64::NAN),
            s["model_load"].as_f64().unwrap_or(f64::NAN),
            s["drift_ppm"].as_f64(),
            s["correction_ppm"]
        );
    }
    let (lag, strength) = best_lag(&rec_l, ref_l);
    eprintln!("{log}\nlag {lag} frames, match {strength:.4}");
    assert!(
        rec_l.len() >= lag + ref_l.len(),
        "recording too short: {} frames, needs {}",
        rec_l.len(),
        lag + ref_l.len()
    );
    let n = ref_l.len();
    let (sdr_l, _) = si_sdr(&rec_l[lag..lag + n], ref_l);
    let (sdr_r, _) = si_sdr(&rec_r[lag..lag + n], ref_r);
    eprintln!("SI-SDR live vs offline: left {sdr_l:.1} dB, right {sdr_r:.1} dB");

    // No gap, no repeated block: every 1 s window sits at the same lag.
    let win = RATE as usize;
    let mut moved = Vec::new();
    for w in 1..n / win {
        let r = &ref_l[w * win..(w + 1) * win];
        // Windows louder than -40 dBFS RMS (quieter ones are mostly removed music).
        if r.iter().map(|v| v * v).sum::<f32>() < win as f32 * 1e-4 {
            continue;
        }
        let from = lag + w * win - win / 4;
        let (l, s) = best_lag(&rec_l[from..from + win + win / 2], r);
        if l != win / 4 {
            moved.push((w, l as i64 - (win / 4) as i64, s));
        }
    }
    assert!(moved.is_empty(), "windows off the global lag: {moved:?}");
    assert!(
        sdr_l >= 25.0 && sdr_r >= 25.0,
        "live vs offline {sdr_l:.1}/{sdr_r:.1} dB"
    );

    // Glitches and latency from nomusic's own measurements.
    for key in [
        "underruns_after_warmup",
        "capture_overruns_after_warmup",
        "playback_overruns_after_warmup",
    ] {
        assert_eq!(report[key], 0, "{key}: {report}");
    }
    let lat: Vec<f64> = report["seconds_log"]
        .as_array()
        .unwrap()
        .iter()
        .skip(3)
        .filter_map(|s| s["latency_ms"].as_f64())
        .collect();
    assert!(
        lat.len() > 50,
        "latency measured in {} seconds only",
        lat.len()
    );
    let max = lat.iter().cloned().fold(f64::MIN, f64::max);
    let first: f64 = lat[..10].iter().sum::<f64>() / 10.0;
    let last: f64 = lat[lat.len() - 10..].iter().sum::<f64>() / 10.0;
    eprintln!("latency: first 10 s {first:.1} ms, last 10 s {last:.1} ms, max {max:.1} ms");
    assert!(max <= 150.0, "latency up to {max:.1} ms");
    // The drift controller leaves the buffer alone inside a dead band around where it settled
    // (20 ms at this 40 ms target), so that devices on one clock get a bit-exact copy of the
    // model's output (checked above). Inside the band the measured latency may wander (by 5-8 ms
    // over a minute on these null sinks, whose timers the timestamps see ~100 ppm apart); beyond
    // it is a creep the controller failed to stop.
    let band = dead_band_ms(TARGET_MS);
    assert!(
        (last - first).abs() < band,
        "latency crept from {first:.1} to {last:.1} ms, beyond the controller's {band} ms dead band"
    );
}

/// `paplay` of `seconds` of digital silence into `sink`, fed from a thread.
fn play_silence(pulse: &Pulse, sink: &str, seconds: usize) -> (Child, std::thread::JoinHandle<()>) {
    let mut player = pulse
        .cmd("paplay")
        .args([
            "-d",
            sink,
            "--raw",
            "--format=float32le",
            "--rate=48000",
            "--channels=2",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = player.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        let second = vec![0u8; 48_000 * 8];
        for _ in 0..seconds {
            if stdin.write_all(&second).is_err() {
                break;
            }
        }
    });
    (player, feeder)
}

fn sinks(pulse: &Pulse) -> String {
    let out = pulse
        .cmd("pactl")
        .args(["list", "short", "sinks"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn devices_routes_and_the_virtual_sink() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !pulse_tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(tmp.path());
    let nomusic = env!("CARGO_BIN_EXE_nomusic");
    let models = model_dir();

    // Devices: ids, roles, defaults.
    let out = pulse
        .cmd(nomusic)
        .args(["devices", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |id: &str| lines.iter().find(|d| d["id"] == id).cloned();
    assert_eq!(find("pulseaudio:nm_a").unwrap()["role"], "output");
    assert_eq!(find("pulseaudio:nm_a.monitor").unwrap()["role"], "monitor");
    assert_eq!(find("pulseaudio:nm_b").unwrap()["rate"], 48000);

    // Capturing the output it plays to is refused, with the routing explained.
    // `nomusic live ARGS --duration 1` must fail; its stderr.
    let live_fails = |args: &[&str]| {
        let out = pulse
            .cmd(nomusic)
            .arg("live")
            .args(args)
            .args(["--duration", "1"])
            .env("NOMUSIC_MODEL_DIR", &models)
            .output()
            .unwrap();
        assert!(!out.status.success(), "live {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = live_fails(&["--input", "nm_b.monitor", "--output", "nm_b"]);
    assert!(
        err.contains("echo") && err.contains("--virtual-sink"),
        "{err}"
    );

    // An ambiguous name lists the candidates; a missing one says so.
    let err = live_fails(&["--input", "monitor", "--output", "nm_b"]);
    assert!(
        err.contains("matches 2") && err.contains("nm_a.monitor"),
        "{err}"
    );
    assert!(live_fails(&["--output", "no-such-device"]).contains("no output device matches"));

    // The virtual sink exists while live runs and is gone after Ctrl-C, and the streams moved
    // into it go back.
    let mut player = pulse
        .cmd("paplay")
        .args([
            "-d",
            "nm_a",
            "--raw",
            "--format=float32le",
            "--rate=48000",
            "--channels=2",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let feeder = {
        let mut stdin = player.stdin.take().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            let second = vec![0u8; 48_000 * 8];
            for _ in 0..30 {
                if stdin.write_all(&second).is_err() {
                    break;
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let live = pulse
        .cmd(nomusic)
        .args([
            "live",
            "--virtual-sink",
            "--move-streams",
            "--output",
            "nm_b",
        ])
        .env("NOMUSIC_MODEL_DIR", &models)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !sinks(&pulse).contains("nomusic") {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no nomusic sink appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let inputs = pulse
        .cmd("pactl")
        .args(["list", "short", "sink-inputs"])
        .output()
        .unwrap();
    let nomusic_index = sinks(&pulse)
        .lines()
        .find(|l| l.contains("nomusic"))
        .and_then(|l| l.split('\t').next().map(str::to_string))
        .unwrap();
    let inputs = String::from_utf8_lossy(&inputs.stdout).into_owned();
    assert!(
        inputs
            .lines()
            .any(|l| l.split('\t').nth(1) == Some(nomusic_index.as_str())),
        "the player was not moved into the nomusic sink:\n{inputs}"
    );
    let _ = Command::new("kill")
        .args(["-INT", &live.id().to_string()])
        .status();
    let out = live.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !sinks(&pulse).contains("nomusic"),
        "the sink was left behind"
    );
    let _ = player.kill();
    let _ = player.wait();
    let _ = feeder.join();
}

#[test]
fn latency_test_finds_the_signal_through_live() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !pulse_tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(tmp.path());
    let nomusic = env!("CARGO_BIN_EXE_nomusic");
    let models = model_dir();
    let run = |input: &str, output: &str| -> serde_json::Value {
        let out = pulse
            .cmd(nomusic)
            .args([
                "latency-test",
                "--json",
                "--input",
                input,
                "--output",
                output,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
    };
    // Straight through a sink to its monitor.
    let direct = run("nm_a.monitor", "nm_a");
    let direct_ms = direct["latency_ms"].as_f64().unwrap();
    eprintln!("direct: {direct}");
    assert!(direct["match_strength"].as_f64().unwrap() > 0.9, "{direct}");
    assert!((-20.0..60.0).contains(&direct_ms), "{direct}");

    // Through nomusic live: the speech-like signal passes the model, later by live's latency.
    let spawned = Instant::now();
    let live = pulse
        .cmd(nomusic)
        .args(["live", "--input", "nm_a.monitor", "--output", "nm_b"])
        .args(["--duration", "20", "--stats-json"])
        .arg(tmp.path().join("stats.json"))
        .env("NOMUSIC_MODEL_DIR", &models)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let measure_from = spawned.elapsed().as_secs_f64();
    let through = run("nm_b.monitor", "nm_a");
    let measure_to = spawned.elapsed().as_secs_f64();
    eprintln!("through live: {through}");
    let _ = live.wait_with_output();
    let through_ms = through["latency_ms"].as_f64().unwrap();
    // The signal is synthetic speech, which the model keeps (offline it matches 1.00 through
    // every model the project ships or fine-tunes from; 0.99 here on an idle machine). The
    // margin is for a loaded one: with two training runs beside the tests, live's buffer
    // deepened after underruns and the match fell to 0.53.
    assert!(
        through["match_strength"].as_f64().unwrap() > 0.4,
        "{through}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("stats.json")).unwrap())
            .unwrap();
    // Live's own readings while the latency test ran. Its clock starts after the spawn (model
    // load, device open), so a reading at live's t_s was taken at spawn + t_s + startup: the
    // window reaches a few seconds back. Live's latency moves when the machine is busy (the
    // playback buffer grows after a stall), so one reading is compared with live's range at
    // the time, not with its median over the whole run.
    let during: Vec<(f64, f64)> = report["seconds_log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            let t = s["t_s"].as_f64().unwrap();
            (measure_from - 3.0..=measure_to + 1.0).contains(&t)
        })
        .filter_map(|s| Some((s["latency_min_ms"].as_f64()?, s["latency_max_ms"].as_f64()?)))
        .collect();
    assert!(
        !during.is_empty(),
        "live logged no latency between {measure_from:.1} and {measure_to:.1} s: {report}"
    );
    let low = during.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let high = during.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
    eprintln!("live's own latency during the test: {low:.1}..{high:.1} ms");
    // The round trip is live's latency plus the direct path, within the direct path's spread.
    let via_live = through_ms - direct_ms;
    assert!(
        (low - 40.0..=high + 40.0).contains(&via_live),
        "latency-test {through_ms:.1} ms - direct {direct_ms:.1} ms is outside live's own \
         {low:.1}..{high:.1} ms (+-40 ms) while it measured"
    );
}

#[test]
fn live_waits_for_a_vanished_output_and_carries_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !pulse_tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(tmp.path());
    let stats = tmp.path().join("stats.json");
    let live = pulse
        .cmd(env!("CARGO_BIN_EXE_nomusic"))
        .args(["live", "--input", "nm_a.monitor", "--output", "nm_b"])
        .args(["--duration", "26", "--stats-json"])
        .arg(&stats)
        .env("NOMUSIC_MODEL_DIR", model_dir())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let modules = pulse
        .cmd("pactl")
        .args(["list", "short", "modules"])
        .output()
        .unwrap();
    let modules = String::from_utf8_lossy(&modules.stdout).into_owned();
    let index = modules
        .lines()
        .find(|l| l.contains("sink_name=nm_b"))
        .and_then(|l| l.split('\t').next())
        .unwrap()
        .to_string();
    assert!(pulse
        .cmd("pactl")
        .args(["unload-module", &index])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_secs(3));
    assert!(pulse
        .cmd("pactl")
        .args(["load-module", "module-null-sink", "sink_name=nm_b"])
        .args(["rate=48000", "format=float32le", "channels=2"])
        .status()
        .unwrap()
        .success());
    let out = live.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("went away") && log.contains("devices back"),
        "{log}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(report["reopened"], 1, "{report}");
    // It carries on: latency measured again in the last seconds, and sane (a buffer stuffed
    // while the new stream started is drained within one 4 s control window).
    let last: Vec<f64> = report["seconds_log"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .take(3)
        .filter_map(|s| s["latency_ms"].as_f64())
        .collect();
    assert_eq!(last.len(), 3, "{report}");
    assert!(last.iter().all(|&l| l < 150.0), "{last:?}");
}
