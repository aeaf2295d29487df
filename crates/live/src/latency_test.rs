//! `nomusic latency-test`: play a test signal on one device, find it in what another captures,
//! and report the time between the two, from the devices' own timestamps.
//!
//! The signal is synthetic speech (phrases of syllables: fricatives and plosives, then voiced
//! diphthongs with moving formants, along a falling intonation with pitch accents), so a route
//! that has `nomusic live` in it passes it through like speech rather than removing it as music
//! or noise. An earlier signal of held, steady vowels was taken for sung notes by the models
//! trained to remove singing.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{BufferSize, SampleFormat, StreamConfig};
use nomusic_dsp::varispeed::VariableResampler;
use realfft::RealFftPlanner;

use crate::io::{CaptureSide, Counters, Stamp};
use crate::session::{self, Route};
use crate::LiveError;

/// What the test found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencyResult {
    /// From the signal leaving the output device to it arriving at the input device (ms).
    pub latency_ms: f64,
    /// Normalised cross-correlation at the peak (1 = the signal came back unchanged).
    pub match_strength: f64,
    /// The same, measured on each burst alone (ms): shows whether the route is stable.
    pub per_burst_ms: Vec<f64>,
}

const BURSTS: usize = 4;
const BURST_S: f64 = 0.8;
const GAP_S: f64 = 0.6;
const LEAD_S: f64 = 0.5;

/// First three formants (Hz) of the vowels the test phrases are made of: /a/, /i/, /u/, /e/,
/// /o/, /ae/ and /er/ (Peterson and Barney's averages for men).
const VOWELS: [[f64; 3]; 7] = [
    [730.0, 1090.0, 2440.0],
    [270.0, 2290.0, 3010.0],
    [300.0, 870.0, 2240.0],
    [530.0, 1840.0, 2480.0],
    [570.0, 840.0, 2410.0],
    [660.0, 1720.0, 2410.0],
    [490.0, 1350.0, 1690.0],
];

/// The test signal at `rate`: `BURSTS` phrases of synthetic speech separated by silence.
pub fn test_signal(rate: u32) -> Vec<f32> {
    let fs = rate as f64;
    let period = ((BURST_S + GAP_S) * fs) as usize;
    let burst = (BURST_S * fs) as usize;
    let mut out = vec![0f32; period * BURSTS];
    let mut seed = 0x2545_f491_u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 10_000) as f64 / 10_000.0
    };
    for b in 0..BURSTS {
        let phrase = speech_phrase(&mut rand, fs, burst);
        let top = peak(&phrase);
        for (o, v) in out[b * period..].iter_mut().zip(&phrase) {
            *o = (0.25 * v / top) as f32;
        }
    }
    out
}

/// Largest magnitude in `v` (at least 1e-9, so it can divide).
fn peak(v: &[f64]) -> f64 {
    v.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-9)
}

/// A consonant before a syllable's vowel: noise through a resonator.
#[derive(Clone, Copy, PartialEq)]
enum Consonant {
    S,
    Sh,
    /// A plosive's release burst: short, and decaying rather than swelling.
    Plosive,
}

impl Consonant {
    /// Level (relative to the vowel) and centre of the noise (Hz).
    fn noise(self) -> (f64, f64) {
        match self {
            Consonant::S => (0.5, 5500.0),
            Consonant::Sh => (0.6, 3000.0),
            Consonant::Plosive => (0.6, 2000.0),
        }
    }
}

/// One syllable of a test phrase (times in seconds from the phrase's start).
struct Syllable {
    start: f64,
    consonant: Option<Consonant>,
    consonant_s: f64,
    vowel_s: f64,
    /// Formants glide from the first vowel to the second (a diphthong).
    from: [f64; 3],
    to: [f64; 3],
    /// Stress, 0 to 1: louder and a pitch accent.
    stress: f64,
}

/// `len` samples of speech-like sound: syllables of about 0.2 s at 3 to 5 a second, each an
/// optional fricative or plosive then a voiced diphthong, with a falling intonation and pitch
/// accents. Models trained to remove music (sung notes are held, steady-pitched vowels) keep it,
/// as they keep real speech, so the signal comes back through `nomusic live`.
fn speech_phrase(rand: &mut impl FnMut() -> f64, fs: f64, len: usize) -> Vec<f64> {
    use std::f64::consts::PI;
    let dur = len as f64 / fs;
    let mut syllables = Vec::new();
    let mut pos = 0.02;
    while pos < dur - 0.15 {
        let consonant = [
            None,
            Some(Consonant::S),
            Some(Consonant::Sh),
            Some(Consonant::Plosive),
        ][(rand() * 4.0) as usize];
        let consonant_s = match consonant {
            None => 0.0,
            Some(Consonant::Plosive) => 0.03,
            Some(_) => 0.07 + 0.04 * rand(),
        };
        let mut vowel_s = 0.13 + 0.1 * rand();
        let from = VOWELS[(rand() * VOWELS.len() as f64) as usize];
        let to = VOWELS[(rand() * VOWELS.len() as f64) as usize];
        vowel_s = vowel_s.min(dur - 0.02 - pos - consonant_s);
        if vowel_s < 0.08 {
            break;
        }
        let stress = rand();
        syllables.push(Syllable {
            start: pos,
            consonant,
            consonant_s,
            vowel_s,
            from,
            to,
            stress,
        });
        pos += consonant_s + vowel_s + 0.02 + 0.04 * rand();
    }
    let f0_base = 120.0 * (1.0 + 0.3 * rand());

    // Per sample: voicing level, formants, frication level and centre.
    let mut voicing = vec![0f64; len];
    let mut formants = vec![VOWELS[0]; len];
    let mut frication = vec![0f64; len];
    let mut fric_hz = vec![5000f64; len];
    let at = |t: f64| ((t * fs) as usize).min(len);
    for s in &syllables {
        let (c0, v0, v1) = (
            at(s.start),
            at(s.start + s.consonant_s),
            at(s.start + s.consonant_s + s.vowel_s),
        );
        if let Some(consonant) = s.consonant {
            let (level, centre) = consonant.noise();
            let m = (v0 - c0).max(1) as f64;
            for i in c0..v0 {
                let k = (i - c0) as f64 / m;
                let shape = if consonant == Consonant::Plosive {
                    (-8.0 * k).exp()
                } else {
                    (PI * k).sin().powf(0.7)
                };
                frication[i] = frication[i].max(level * shape);
                fric_hz[i] = centre;
            }
        }
        let m = (v1 - v0) as f64;
        for i in v0..v1 {
            let k = (i - v0) as f64 / m;
            let glide = k * k * (3.0 - 2.0 * k);
            for (j, f) in formants[i].iter_mut().enumerate() {
                *f = s.from[j] + (s.to[j] - s.from[j]) * glide;
            }
            let attack = (k * m / (0.025 * fs)).min(1.0);
            let release = ((1.0 - k) * m / (0.05 * fs)).min(1.0);
            voicing[i] = voicing[i].max(attack * release * (0.7 + 0.3 * s.stress));
        }
        // Hold the last vowel's formants through the pause that follows.
        let last = formants[v1.saturating_sub(1)];
        formants[v1..].fill(last);
    }

    // The glottal source: Rosenberg pulses (opening 40 %, closing 20 % of each period) along a
    // falling pitch with an accent on each syllable, plus a little breath noise.
    let mut source = vec![0f64; len];
    let mut noise = vec![0f64; len];
    let mut phase = 0.0;
    for (i, (src, nz)) in source.iter_mut().zip(&mut noise).enumerate() {
        let t = i as f64 / fs;
        let mut f0 = f0_base * (1.0 - 0.3 * t / dur);
        for s in &syllables {
            let (centre, width) = (s.start + s.consonant_s + 0.4 * s.vowel_s, 0.6 * s.vowel_s);
            f0 *= 1.0 + 0.4 * s.stress * (-0.5 * ((t - centre) / width).powi(2)).exp();
        }
        phase += f0 / fs;
        if phase >= 1.0 {
            phase -= 1.0;
        }
        let pulse = if phase < 0.4 {
            PI / 0.4 * (PI * phase / 0.4).sin()
        } else if phase < 0.6 {
            -PI / 0.2 * (PI * (phase - 0.4) / 0.4).sin()
        } else {
            0.0
        };
        *nz = rand() - 0.5;
        *src = voicing[i] * (pulse / (PI / 0.2) + 0.05 * *nz);
    }
    let mut voiced = vec![0f64; len];
    for (j, (bw, gain)) in [(80.0, 1.0), (100.0, 0.7), (140.0, 0.35)]
        .into_iter()
        .enumerate()
    {
        resonate(&source, |i| (formants[i][j], bw), fs, gain, &mut voiced);
    }
    resonate(&source, |_| (3500.0, 250.0), fs, 0.15, &mut voiced);
    let excitation: Vec<f64> = noise.iter().zip(&frication).map(|(n, l)| n * l).collect();
    let mut fricative = vec![0f64; len];
    resonate(
        &excitation,
        |i| (fric_hz[i], (0.35 * fric_hz[i]).max(600.0)),
        fs,
        1.0,
        &mut fricative,
    );
    let (pv, pf) = (peak(&voiced), peak(&fricative));
    let ramp = 0.01 * fs;
    (0..len)
        .map(|i| {
            let env = (i.min(len - 1 - i) as f64 / ramp).min(1.0);
            env * (voiced[i] / pv + 0.35 * fricative[i] / pf)
        })
        .collect()
}

/// Adds `gain` times `x` through a two-pole resonator whose centre and bandwidth (Hz) may move
/// from sample to sample, scaled to a gain of about 1 at the centre.
fn resonate(x: &[f64], at: impl Fn(usize) -> (f64, f64), fs: f64, gain: f64, out: &mut [f64]) {
    use std::f64::consts::PI;
    let (mut y1, mut y2) = (0.0, 0.0);
    for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
        let (freq, bw) = at(i);
        let r = (-PI * bw / fs).exp();
        let w = 2.0 * PI * freq / fs;
        let g = (1.0 - r) * (1.0 + r * r - 2.0 * r * (2.0 * w).cos()).sqrt();
        let y = g * v + 2.0 * r * w.cos() * y1 - r * r * y2;
        y2 = y1;
        y1 = y;
        *o += gain * y;
    }
}

/// Plays the signal on `route.playback`, records `route.capture`, and measures the delay.
pub fn run(route: &Route) -> Result<LatencyResult, LiveError> {
    let (formats, cfmt, pfmt) = session::formats_of(route)?;
    if pfmt != SampleFormat::F32 {
        return Err(LiveError::Device(format!(
            "{}: latency-test needs a float output format (has {pfmt})",
            route.playback.id
        )));
    }
    let (crate_, cch) = (formats.capture_rate, formats.capture_channels as usize);
    let (prate, pch) = (formats.playback_rate, formats.playback_channels as usize);
    let signal = test_signal(prate);
    let total_s = LEAD_S + signal.len() as f64 / prate as f64 + 1.5;
    let lead = (LEAD_S * prate as f64) as usize;

    let epoch = Instant::now();
    let since = move || Instant::now().saturating_duration_since(epoch).as_nanos() as i64;
    let start_ns = Arc::new(AtomicI64::new(i64::MIN));
    let (cap_prod, mut cap_cons) =
        rtrb::RingBuffer::<f32>::new(((total_s + 2.0) * crate_ as f64) as usize * cch);
    let (st_prod, mut st_cons) = rtrb::RingBuffer::<Stamp>::new(8192);

    let mut played = 0usize;
    let start_set = start_ns.clone();
    let sig = signal.clone();
    let play = route
        .playback
        .device
        .build_output_stream::<f32, _, _>(
            StreamConfig {
                channels: pch as u16,
                sample_rate: prate,
                buffer_size: session::playback_buffer_size(route, prate),
            },
            move |out: &mut [f32], info| {
                let ts = info.timestamp();
                let ahead = ts.playback.duration_since(ts.callback).as_nanos() as i64;
                let now = since();
                for (i, frame) in out.chunks_exact_mut(pch).enumerate() {
                    let n = played + i;
                    if n == lead {
                        let at = now + ahead + (i as f64 * 1e9 / prate as f64) as i64;
                        start_set.store(at, Ordering::Relaxed);
                    }
                    let v = n.checked_sub(lead).and_then(|k| sig.get(k)).copied();
                    frame.fill(v.unwrap_or(0.0));
                }
                played += out.len() / pch;
            },
            |_| {},
            Some(Duration::from_secs(5)),
        )
        .map_err(|e| LiveError::Device(format!("cannot open {}: {e}", route.playback.id)))?;
    // The same capture path as `nomusic live` (PulseAudio's own record stream on Linux).
    let side = CaptureSide {
        ring: cap_prod,
        stamps: st_prod,
        counters: Arc::new(Counters::default()),
        channels: cch,
        rate_hz: crate_,
        epoch,
        written: 0,
        device_frames: 0,
    };
    let config = StreamConfig {
        channels: cch as u16,
        sample_rate: crate_,
        buffer_size: BufferSize::Default,
    };
    let lost = Arc::new(AtomicU8::new(0));
    let cap = match session::open_capture(route, &config, cfmt, side, &lost)? {
        Ok(c) => c,
        Err(e) => {
            return Err(LiveError::Device(format!(
                "cannot open {}: {e}",
                route.capture.id
            )))
        }
    };
    cap.play()
        .and_then(|_| play.play())
        .map_err(|e| LiveError::Device(format!("cannot start the streams: {e}")))?;
    std::thread::sleep(Duration::from_secs_f64(total_s));
    drop(play);
    drop(cap);

    let mut recording = Vec::new();
    while let Ok(chunk) = cap_cons.read_chunk(cap_cons.slots()) {
        if chunk.is_empty() {
            break;
        }
        let (a, b) = chunk.as_slices();
        recording.extend_from_slice(a);
        recording.extend_from_slice(b);
        chunk.commit_all();
    }
    let recording: Vec<f32> = recording
        .chunks_exact(cch)
        .map(|f| f.iter().sum::<f32>() / cch as f32)
        .collect();
    let mut stamps = Vec::new();
    while let Ok(s) = st_cons.pop() {
        stamps.push((s.frame, s.ns));
    }
    let start = start_ns.load(Ordering::Relaxed);
    if start == i64::MIN || stamps.is_empty() {
        return Err(LiveError::Device(
            "the devices did not run long enough to play and record the test signal".into(),
        ));
    }
    // The signal at the capture rate.
    let reference = if crate_ == prate {
        signal
    } else {
        let mut r = VariableResampler::new(prate, crate_, 1);
        let mut out = Vec::new();
        let mut padded = signal;
        padded.extend(std::iter::repeat_n(0.0, 64));
        r.process(&padded, &mut out);
        out
    };
    let capture_ns = |frame: f64| -> f64 {
        let s = stamps
            .iter()
            .rev()
            .find(|s| s.0 as f64 <= frame)
            .unwrap_or(&stamps[0]);
        s.1 as f64 + (frame - s.0 as f64) * 1e9 / crate_ as f64
    };
    let (lag, strength) = best_lag(&recording, &reference);
    if strength < 0.3 {
        return Err(LiveError::Device(format!(
            "the test signal did not come back (best match {strength:.2}): check that {} \
             really hears {} (routing, mute, volume)",
            route.capture.id, route.playback.id
        )));
    }
    let latency_ms = (capture_ns(lag as f64) - start as f64) * 1e-6;
    let burst_len = (BURST_S * crate_ as f64) as usize;
    let period = ((BURST_S + GAP_S) * crate_ as f64) as usize;
    let mut per_burst_ms = Vec::new();
    for b in 0..BURSTS {
        let from = lag + b * period;
        let window_from = from.saturating_sub(crate_ as usize / 10);
        let window_to = (from + burst_len + crate_ as usize / 10).min(recording.len());
        if window_to <= window_from + burst_len {
            continue;
        }
        let (l, s) = best_lag(
            &recording[window_from..window_to],
            &reference[b * period..b * period + burst_len],
        );
        if s > 0.3 {
            let frame = (window_from + l - b * period) as f64;
            per_burst_ms.push((capture_ns(frame) - start as f64) * 1e-6);
        }
    }
    Ok(LatencyResult {
        latency_ms,
        match_strength: strength,
        per_burst_ms,
    })
}

/// Lag (in `haystack` frames) where `needle` fits best, and the normalised correlation there.
pub fn best_lag(haystack: &[f32], needle: &[f32]) -> (usize, f64) {
    if haystack.len() < needle.len() || needle.is_empty() {
        return (0, 0.0);
    }
    let n = (haystack.len() + needle.len()).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let mut a = vec![0f64; n];
    let mut b = vec![0f64; n];
    a.iter_mut().zip(haystack).for_each(|(d, &s)| *d = s as f64);
    b.iter_mut().zip(needle).for_each(|(d, &s)| *d = s as f64);
    let mut fa = fwd.make_output_vec();
    let mut fb = fwd.make_output_vec();
    fwd.process(&mut a, &mut fa).expect("fft sizes");
    fwd.process(&mut b, &mut fb).expect("fft sizes");
    for (x, y) in fa.iter_mut().zip(&fb) {
        *x *= y.conj();
    }
    let mut corr = vec![0f64; n];
    inv.process(&mut fa, &mut corr).expect("fft sizes");
    let max_lag = haystack.len() - needle.len();
    // Energy of each haystack window, for the normalisation.
    let mut prefix = vec![0f64; haystack.len() + 1];
    for (i, &v) in haystack.iter().enumerate() {
        prefix[i + 1] = prefix[i] + (v as f64) * (v as f64);
    }
    let needle_energy: f64 = needle.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let mut best = (0, 0.0);
    for (lag, &c) in corr.iter().enumerate().take(max_lag + 1) {
        let e = prefix[lag + needle.len()] - prefix[lag];
        let score = c / n as f64 / (e * needle_energy).sqrt().max(1e-12);
        if score > best.1 {
            best = (lag, score);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Level (dB, 10 ms frames) of one burst of the signal, relative to its loudest frame.
    fn levels(burst: &[f32], frame: usize) -> Vec<f64> {
        let db: Vec<f64> = burst
            .chunks_exact(frame)
            .map(|f| {
                10.0 * (f.iter().map(|v| (v * v) as f64).sum::<f64>() / frame as f64 + 1e-12)
                    .log10()
            })
            .collect();
        let top = db.iter().cloned().fold(f64::MIN, f64::max);
        db.iter().map(|v| v - top).collect()
    }

    /// Pitch (Hz) of a window, from the highest autocorrelation peak between 70 and 400 Hz.
    fn pitch(w: &[f32], rate: f64) -> f64 {
        let ac = |lag: usize| -> f64 { w.iter().zip(&w[lag..]).map(|(a, b)| (a * b) as f64).sum() };
        let (best, _) = ((rate / 400.0) as usize..=(rate / 70.0) as usize)
            .map(|lag| (lag, ac(lag)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        rate / best as f64
    }

    #[test]
    fn each_burst_is_syllables_with_a_moving_pitch() {
        // Sung notes are held vowels at a steady pitch, and the models remove them as music:
        // the test phrases must not look like that.
        let rate = 16_000;
        let s = test_signal(rate);
        let (burst, period) = (
            (BURST_S * rate as f64) as usize,
            ((BURST_S + GAP_S) * rate as f64) as usize,
        );
        for b in 0..BURSTS {
            let one = &s[b * period..b * period + burst];
            // Syllables: loud stretches, each ended by a dip of 25 dB or more.
            let db = levels(one, rate as usize / 100);
            let (mut syllables, mut inside) = (0, false);
            for &v in &db {
                if !inside && v > -12.0 {
                    syllables += 1;
                    inside = true;
                } else if inside && v < -25.0 {
                    inside = false;
                }
            }
            assert!(
                (2..=5).contains(&syllables),
                "burst {b}: {syllables} syllables, levels {db:?}"
            );
            // Intonation: the pitch of the voiced 40 ms windows spans 20 % or more.
            let win = rate as usize / 25;
            let pitches: Vec<f64> = one
                .chunks_exact(win)
                .zip(levels(one, win))
                .filter(|(_, l)| *l > -15.0)
                .map(|(w, _)| pitch(w, rate as f64))
                .collect();
            let lo = pitches.iter().cloned().fold(f64::MAX, f64::min);
            let hi = pitches.iter().cloned().fold(0.0, f64::max);
            assert!(
                (80.0..260.0).contains(&lo) && (80.0..260.0).contains(&hi) && hi / lo > 1.2,
                "burst {b}: pitches {pitches:?}"
            );
        }
    }

    #[test]
    fn finds_a_delayed_copy() {
        let s = test_signal(16_000);
        let mut hay = vec![0f32; 1234];
        hay.extend(s.iter().map(|v| v * 0.5));
        hay.extend(vec![0f32; 500]);
        let (lag, strength) = best_lag(&hay, &s);
        assert_eq!(lag, 1234);
        assert!(strength > 0.99, "{strength}");
    }
}
