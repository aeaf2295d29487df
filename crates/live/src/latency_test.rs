//! `nomusic latency-test`: play a test signal on one device, find it in what another captures,
//! and report the time between the two, from the devices' own timestamps.
//!
//! The signal is voice-like (a glottal pulse train with a wandering pitch through three vowel
//! formants, in bursts), so a route that has `nomusic live` in it passes it through like speech
//! rather than removing it as music or noise.

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
const BURST_S: f64 = 0.4;
const GAP_S: f64 = 0.8;
const LEAD_S: f64 = 0.5;

/// The test signal at `rate`: `BURSTS` voiced bursts separated by silence.
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
    // Formant resonators (two-pole), vowel /a/.
    let formants = [
        (730.0, 90.0, 1.0),
        (1090.0, 110.0, 0.6),
        (2440.0, 170.0, 0.3),
    ];
    for b in 0..BURSTS {
        let start = b * period;
        let mut excitation = vec![0f64; burst];
        let mut t = 0.0;
        let mut f0 = 110.0 + 60.0 * rand();
        while (t as usize) < burst {
            excitation[t as usize] = 1.0;
            f0 = (f0 + (rand() - 0.5) * 12.0).clamp(90.0, 220.0);
            t += fs / f0;
        }
        let mut voiced = vec![0f64; burst];
        for &(freq, bw, gain) in &formants {
            let r = (-std::f64::consts::PI * bw / fs).exp();
            let (a1, a2) = (
                -2.0 * r * (2.0 * std::f64::consts::PI * freq / fs).cos(),
                r * r,
            );
            let (mut y1, mut y2) = (0.0, 0.0);
            for (v, &e) in voiced.iter_mut().zip(&excitation) {
                let y = e * (1.0 - r) - a1 * y1 - a2 * y2;
                y2 = y1;
                y1 = y;
                *v += gain * y;
            }
        }
        let peak = voiced.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-9);
        let ramp = (0.02 * fs) as usize;
        for (i, v) in voiced.iter().enumerate() {
            let env = (i.min(burst - 1 - i) as f64 / ramp as f64).min(1.0);
            out[start + i] = (0.25 * env * v / peak) as f32;
        }
    }
    out
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
