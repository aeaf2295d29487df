//! The processing thread: capture ring -> model -> drift-compensating resampler -> playback ring.
//!
//! It also closes the loop that keeps the latency steady. The two devices run on different
//! clocks, so the playback ring would slowly fill up (latency creeping up for minutes) or run dry.
//! Every few seconds the thread looks at the lowest fill the ring had in that time; when it leaves
//! a dead band around the target, the resampler's ratio is nudged in proportion (at most 1000 ppm,
//! inaudible), as PulseAudio's module-loopback does. Real crystals differ by tens of ppm (a few ms
//! per minute), so the loop can be slow and the dead band wide enough for scheduling jitter:
//! inside it the ratio is left alone, and two devices on one clock get a bit-exact copy of the
//! model's output.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nomusic_dsp::varispeed::VariableResampler;
use nomusic_engine::stream::StreamSeparator;

use crate::io::{Counters, Stamp};
use crate::LiveError;

/// The most the ratio is bent to correct the buffer, in parts per million.
const MAX_CORRECTION_PPM: f64 = 1000.0;
/// Correction per millisecond of error beyond the dead band: 5 ms beyond is corrected at
/// 100 ppm (0.1 ms per second).
const PPM_PER_MS: f64 = 20.0;
/// How long the lowest buffer fill is watched before the ratio is reconsidered.
const CONTROL_WINDOW: Duration = Duration::from_secs(4);

/// What the worker publishes once a second.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Snapshot {
    /// Seconds since the session started.
    pub t_s: f64,
    /// Measured capture-to-playback latency over the last second (ms): mean, min, max.
    pub latency_ms: Option<f64>,
    pub latency_min_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    /// Model (and resampling) time per model hop, and its share of the hop's duration.
    pub model_ms_per_hop: f64,
    pub model_load: f64,
    /// Playback buffer: lowest fill in the last second, and the target (ms).
    pub buffer_min_ms: f64,
    pub buffer_target_ms: f64,
    /// Clock drift between the devices (playback relative to capture), ppm, from their
    /// timestamps since the start; and the ratio correction applied now.
    pub drift_ppm: Option<f64>,
    pub correction_ppm: f64,
    /// Frames per second each device really runs at, on the process clock (from the fit).
    pub capture_hz: Option<f64>,
    pub playback_hz: Option<f64>,
    /// Output blocks dropped because the playback ring was full or far too deep.
    pub playback_overruns: u64,
    /// Longest gap between two capture blocks, and the longest model call, in the last second
    /// (ms): where a stall came from.
    pub capture_gap_max_ms: f64,
    pub model_call_max_ms: f64,
    /// Underruns so far (cumulative).
    pub underruns: u64,
    /// Scheduling the worker thread got: "realtime" (SCHED_FIFO), "raised" or "normal".
    pub priority: &'static str,
}

/// Asks for real-time scheduling for the worker thread (granted to root, to users with an
/// rtprio limit, or on Windows as a raised priority); falls back to the normal priority.
fn raise_priority() -> &'static str {
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    #[cfg(unix)]
    {
        use thread_priority::unix::{
            set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
            ThreadSchedulePolicy,
        };
        if let Ok(value) = ThreadPriorityValue::try_from(40u8) {
            let policy = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
            if set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Crossplatform(value),
                policy,
            )
            .is_ok()
            {
                return "realtime";
            }
        }
    }
    if thread_priority::set_current_thread_priority(ThreadPriority::Max).is_ok() {
        "raised"
    } else {
        "normal"
    }
}

/// Settings for one run of the worker.
pub struct WorkerConfig {
    pub capture_rate: u32,
    pub capture_channels: usize,
    pub playback_rate: u32,
    pub playback_channels: usize,
    /// Target for the lowest fill of the playback ring (frames at the playback rate).
    pub target_frames: usize,
    pub playback_capacity: usize,
    pub epoch: Instant,
    /// Model hop at the capture rate (frames), for the per-hop time.
    pub hop_frames: f64,
    /// How the playback side deepens its buffer after an underrun (see `PlaybackSide`).
    pub grow_frames: usize,
    pub max_start_frames: usize,
}

/// The worker's ends of the rings.
pub struct WorkerRings {
    pub capture: rtrb::Consumer<f32>,
    pub capture_stamps: rtrb::Consumer<Stamp>,
    pub playback: rtrb::Producer<f32>,
    pub playback_stamps: rtrb::Consumer<Stamp>,
}

/// Least-squares line through (time, frames): the device's real rate.
#[derive(Default)]
struct ClockFit {
    origin: Option<(i64, u64)>,
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
}

impl ClockFit {
    fn add(&mut self, ns: i64, frame: u64) {
        let (t0, f0) = *self.origin.get_or_insert((ns, frame));
        let x = (ns - t0) as f64 * 1e-9;
        let y = frame.wrapping_sub(f0) as f64;
        self.n += 1.0;
        self.sx += x;
        self.sy += y;
        self.sxx += x * x;
        self.sxy += x * y;
    }

    /// Frames per second, once the fit spans enough time to mean something.
    fn rate(&self) -> Option<f64> {
        let var = self.sxx - self.sx * self.sx / self.n;
        if self.n < 20.0 || var < 4.0 * self.n {
            // Timestamps spread over less than ~7 s.
            return None;
        }
        Some((self.sxy - self.sx * self.sy / self.n) / var)
    }
}

/// Playback clock relative to capture clock, in ppm (positive: playback runs faster).
fn drift_ppm_of(capture: &ClockFit, playback: &ClockFit, cfg: &WorkerConfig) -> Option<f64> {
    let (c, p) = (capture.rate()?, playback.rate()?);
    Some(((p / cfg.playback_rate as f64) / (c / cfg.capture_rate as f64) - 1.0) * 1e6)
}

/// Keeps the playback buffer where it settled, against clock drift, without reacting to jitter.
///
/// The reference is the mean fill of the first window after playback starts. When the mean
/// fill of a window leaves the dead band around it, the ratio is bent in proportion to how far
/// beyond the band it is; inside the band nothing happens. Devices on one clock therefore get no
/// correction at all (the output is an exact copy of what the model produced), and a real drift
/// of, say, 50 ppm (3 ms a minute) is held at the edge of the band. A fill far above the band
/// (the capture side stalled, then delivered a burst) is not worth minutes of slow correction:
/// the excess is dropped at once (counted as an overrun).
struct Controller {
    dead_band_ms: f64,
    /// The reference never settles above this: a buffer that was stuffed before playback began
    /// (a device slow to start pulling) is drained to a sane depth.
    max_reference_ms: f64,
    reference_ms: Option<f64>,
}

/// The controller's dead band (ms) around the settled buffer fill for a target of `target_ms`:
/// inside it the ratio is left alone, wide enough for scheduling jitter.
pub fn dead_band_ms(target_ms: f64) -> f64 {
    (0.5 * target_ms).max(10.0)
}

/// Beyond this much too full (ms), drop instead of bending the ratio.
const RESYNC_MS: f64 = 40.0;

impl Controller {
    fn new(dead_band_ms: f64, max_reference_ms: f64) -> Self {
        Self {
            dead_band_ms,
            max_reference_ms,
            reference_ms: None,
        }
    }

    /// The buffer was deepened by `ms` (after an underrun).
    fn raise(&mut self, ms: f64) {
        if let Some(r) = &mut self.reference_ms {
            *r += ms;
        }
    }

    /// The correction (ppm) for a window whose mean fill was `mean_fill_ms`, and how many ms
    /// of audio to drop now.
    fn update(&mut self, mean_fill_ms: f64) -> (f64, f64) {
        let reference = *self
            .reference_ms
            .get_or_insert(mean_fill_ms.min(self.max_reference_ms));
        let err = mean_fill_ms - reference;
        if err > RESYNC_MS + self.dead_band_ms {
            return (0.0, err);
        }
        let ppm = if err.abs() > self.dead_band_ms {
            PPM_PER_MS * (err - self.dead_band_ms * err.signum())
        } else {
            0.0
        };
        (ppm.clamp(-MAX_CORRECTION_PPM, MAX_CORRECTION_PPM), 0.0)
    }
}

/// Maps playback ring frames back to capture ring frames.
#[derive(Clone, Copy)]
struct Anchor {
    out_frame: u64,
    in_pos: f64,
}

pub struct Worker {
    cfg: WorkerConfig,
    rings: WorkerRings,
    counters: Arc<Counters>,
    published: Arc<Mutex<Snapshot>>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    pub fn new(
        cfg: WorkerConfig,
        rings: WorkerRings,
        counters: Arc<Counters>,
        published: Arc<Mutex<Snapshot>>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            cfg,
            rings,
            counters,
            published,
            stop,
        }
    }

    /// Runs until `stop` is set; hands the separator back (its state carries over a reopen).
    pub fn run(mut self, mut sep: StreamSeparator) -> Result<StreamSeparator, LiveError> {
        let priority = raise_priority();
        let cfg = &self.cfg;
        let cc = cfg.capture_channels;
        let pc = cfg.playback_channels;
        let mut resampler = VariableResampler::new(cfg.capture_rate, cfg.playback_rate, cc);
        let ms_per_out_frame = 1000.0 / cfg.playback_rate as f64;
        let target_ms = cfg.target_frames as f64 * ms_per_out_frame;
        let dead_band_ms = dead_band_ms(target_ms);
        let nominal_step = cfg.capture_rate as f64 / cfg.playback_rate as f64;

        let mut input = Vec::with_capacity(8192 * cc);
        let mut speech = Vec::with_capacity(16384 * cc);
        let mut resampled = Vec::with_capacity(16384 * cc);
        let mut mapped = Vec::with_capacity(16384 * pc);
        let mut written: u64 = 0;
        let mut anchors: VecDeque<Anchor> = VecDeque::new();
        let mut capture_stamps: VecDeque<Stamp> = VecDeque::new();
        let (mut capture_clock, mut playback_clock) = (ClockFit::default(), ClockFit::default());
        let mut window_start = Instant::now();
        let mut min_fill = usize::MAX;
        let start_ms = (cfg.target_frames + cfg.grow_frames) as f64 * ms_per_out_frame;
        let mut control = Controller::new(dead_band_ms, start_ms + 2.0 * dead_band_ms);
        let (mut fill_sum, mut fill_n) = (0.0f64, 0u64);
        let mut control_start = Instant::now();
        let mut fits_settled = false;
        let mut drop_left = 0usize;
        // More than this waiting in the capture ring means the worker fell behind.
        let backlog_limit = (cfg.capture_rate as usize / 5).max(2 * cfg.target_frames);
        let mut underruns_seen = 0u64;
        // Onset re-alignment (see above): silence needed first, the grid, and how far capture
        // frame numbers and separator frame numbers have moved apart.
        let realign_after = cfg.capture_rate as usize;
        let grid = sep.grid_frames();
        let mut silent_frames = 0usize;
        let mut index_offset = 0i64;
        let mut silence_pad = Vec::new();
        let mut pending_speech = Vec::new();
        let mut start_frames = cfg.target_frames + cfg.grow_frames;
        let (mut lat_sum, mut lat_n, mut lat_min, mut lat_max) = (0.0, 0u32, f64::MAX, f64::MIN);
        let (mut model_time, mut model_frames) = (Duration::ZERO, 0u64);
        let mut playback_overruns = 0u64;
        let (mut gap_max, mut call_max) = (0f64, 0f64);
        let mut fade_in = 0usize;
        let fade_frames = (cfg.playback_rate / 200) as usize; // 5 ms

        while !self.stop.load(Ordering::Relaxed) {
            // Timestamps from the callbacks.
            while let Ok(s) = self.rings.capture_stamps.pop() {
                capture_clock.add(s.ns, s.device_frame);
                if let Some(prev) = capture_stamps.back() {
                    gap_max = gap_max.max((s.ns - prev.ns) as f64 * 1e-6);
                }
                capture_stamps.push_back(s);
            }
            while let Ok(s) = self.rings.playback_stamps.pop() {
                playback_clock.add(s.ns, s.device_frame);
                if let Some(lat) = latency_of(&s, &anchors, &capture_stamps, nominal_step, cfg) {
                    lat_sum += lat;
                    lat_n += 1;
                    lat_min = lat_min.min(lat);
                    lat_max = lat_max.max(lat);
                }
                while anchors.len() > 2 && anchors[1].out_frame <= s.frame {
                    anchors.pop_front();
                }
            }
            while capture_stamps.len() > 512 {
                capture_stamps.pop_front();
            }

            let mut available = self.rings.capture.slots() / cc;
            if available > backlog_limit {
                // The model cannot keep up (or the thread was starved): drop the backlog rather
                // than let the latency grow. Counted as a capture overrun.
                let drop = available - cfg.capture_rate as usize / 50;
                if let Ok(chunk) = self.rings.capture.read_chunk(drop * cc) {
                    chunk.commit_all();
                }
                index_offset += drop as i64;
                available -= drop;
                self.counters
                    .capture_overruns
                    .fetch_add(1, Ordering::Relaxed);
            }
            if available == 0 {
                std::thread::sleep(Duration::from_millis(1));
            } else {
                let take = available.min(8192);
                input.clear();
                if let Ok(chunk) = self.rings.capture.read_chunk(take * cc) {
                    let (a, b) = chunk.as_slices();
                    input.extend_from_slice(a);
                    input.extend_from_slice(b);
                    chunk.commit_all();
                }
                // A sound that starts after digital silence restarts on the processing grid, so
                // its output is exactly what `nomusic separate` gives for a file starting there.
                let onset = input
                    .chunks_exact(cc)
                    .position(|f| f.iter().any(|&v| v != 0.0));
                let mut skip = 0;
                match onset {
                    Some(f) if silent_frames + f >= realign_after && grid <= realign_after => {
                        let phase = ((sep.frames_in() + f as u64) % grid as u64) as usize;
                        if phase != 0 && phase <= f {
                            skip = phase;
                            index_offset += phase as i64;
                        } else if phase != 0 {
                            let pad = grid - phase;
                            silence_pad.clear();
                            silence_pad.resize(pad * cc, 0.0);
                            speech.clear();
                            sep.process(&silence_pad, &mut speech, None)?;
                            pending_speech.extend_from_slice(&speech);
                            index_offset -= pad as i64;
                        }
                        silent_frames = input.len() / cc - f;
                        silent_frames = trailing_silence(&input, cc).min(silent_frames);
                    }
                    Some(_) => silent_frames = trailing_silence(&input, cc),
                    None => silent_frames += input.len() / cc,
                }
                let t0 = Instant::now();
                speech.clear();
                speech.append(&mut pending_speech);
                sep.process(&input[skip * cc..], &mut speech, None)?;
                model_time += t0.elapsed();
                call_max = call_max.max(t0.elapsed().as_secs_f64() * 1e3);
                model_frames += take as u64;

                resampled.clear();
                let mut in_pos = resampler.input_position();
                resampler.process(&speech, &mut resampled);
                map_channels(&resampled, cc, &mut mapped, pc);
                if fade_in > 0 {
                    apply_fade_in(&mut mapped, pc, &mut fade_in, fade_frames);
                }

                let fill = (cfg.playback_capacity - self.rings.playback.slots()) / pc;
                min_fill = min_fill.min(fill);
                fill_sum += fill as f64;
                fill_n += 1;
                if drop_left > 0 {
                    // Resync: drop output, fade the next block in.
                    let n = drop_left.min(mapped.len() / pc);
                    mapped.drain(..n * pc);
                    drop_left -= n;
                    fade_in = fade_frames;
                    if !mapped.is_empty() {
                        apply_fade_in(&mut mapped, pc, &mut fade_in, fade_frames);
                    }
                    in_pos += n as f64 * nominal_step;
                }
                let frames = mapped.len() / pc;
                if frames > 0 {
                    let free = self.rings.playback.slots() / pc;
                    if free < frames {
                        // The device stopped pulling (or the buffer is absurdly deep): drop
                        // this block and fade the next one in.
                        playback_overruns += 1;
                        fade_in = fade_frames;
                    } else if let Ok(chunk) = self.rings.playback.write_chunk_uninit(frames * pc) {
                        chunk.fill_from_iter(mapped.iter().copied());
                        anchors.push_back(Anchor {
                            out_frame: written,
                            in_pos: in_pos + index_offset as f64,
                        });
                        written += frames as u64;
                    }
                }
            }

            let underruns = self.counters.underruns.load(Ordering::Relaxed);
            while underruns_seen < underruns {
                // The playback side deepened its buffer: follow it.
                underruns_seen += 1;
                let grown = (start_frames + cfg.grow_frames).min(cfg.max_start_frames);
                control.raise((grown - start_frames) as f64 * ms_per_out_frame);
                start_frames = grown;
            }

            if window_start.elapsed() >= Duration::from_secs(1) {
                window_start = Instant::now();
                let playing = self.counters.playing.load(Ordering::Relaxed);
                let min_ms = if min_fill == usize::MAX {
                    0.0
                } else {
                    min_fill as f64 * ms_per_out_frame
                };
                if !playing {
                    // Waiting for the buffer to fill (start, or after an underrun): the fill
                    // means nothing yet. The reference stays: a backlog delivered after a stall
                    // shows as too full and is dropped.
                    (fill_sum, fill_n) = (0.0, 0);
                    control_start = Instant::now();
                } else if control_start.elapsed() >= CONTROL_WINDOW {
                    if !fits_settled {
                        // Measure the clocks from here: start-up bursts would bias the fits.
                        capture_clock = ClockFit::default();
                        playback_clock = ClockFit::default();
                        fits_settled = true;
                    }
                    let mean_fill_ms = fill_sum / fill_n.max(1) as f64 * ms_per_out_frame;
                    let (ppm, drop_ms) = control.update(mean_fill_ms);
                    resampler.set_correction_ppm(ppm);
                    if drop_ms > 0.0 {
                        drop_left = (drop_ms / ms_per_out_frame) as usize;
                        playback_overruns += 1;
                    }
                    (fill_sum, fill_n) = (0.0, 0);
                    control_start = Instant::now();
                }
                let drift_ppm = drift_ppm_of(&capture_clock, &playback_clock, cfg);
                let audio_s = model_frames as f64 / cfg.capture_rate as f64;
                let hops = model_frames as f64 / cfg.hop_frames;
                let snap = Snapshot {
                    t_s: cfg.epoch.elapsed().as_secs_f64(),
                    latency_ms: (lat_n > 0).then(|| lat_sum / lat_n as f64),
                    latency_min_ms: (lat_n > 0).then_some(lat_min),
                    latency_max_ms: (lat_n > 0).then_some(lat_max),
                    model_ms_per_hop: if hops > 0.0 {
                        model_time.as_secs_f64() * 1000.0 / hops
                    } else {
                        0.0
                    },
                    model_load: if audio_s > 0.0 {
                        model_time.as_secs_f64() / audio_s
                    } else {
                        0.0
                    },
                    buffer_min_ms: min_ms,
                    buffer_target_ms: (start_frames - cfg.grow_frames) as f64 * ms_per_out_frame,
                    drift_ppm,
                    correction_ppm: resampler.correction_ppm(),
                    capture_hz: capture_clock.rate(),
                    playback_hz: playback_clock.rate(),
                    playback_overruns,
                    capture_gap_max_ms: gap_max,
                    model_call_max_ms: call_max,
                    underruns,
                    priority,
                };
                (gap_max, call_max) = (0.0, 0.0);
                if let Ok(mut p) = self.published.lock() {
                    *p = snap;
                }
                min_fill = usize::MAX;
                (lat_sum, lat_n, lat_min, lat_max) = (0.0, 0, f64::MAX, f64::MIN);
                (model_time, model_frames) = (Duration::ZERO, 0);
            }
        }
        Ok(sep)
    }
}

/// Capture-to-playback latency of the first frame of a playback block, in ms.
fn latency_of(
    played: &Stamp,
    anchors: &VecDeque<Anchor>,
    captured: &VecDeque<Stamp>,
    nominal_step: f64,
    cfg: &WorkerConfig,
) -> Option<f64> {
    let anchor = anchors.iter().rev().find(|a| a.out_frame <= played.frame)?;
    let in_pos = anchor.in_pos + (played.frame - anchor.out_frame) as f64 * nominal_step;
    if in_pos < 0.0 {
        return None;
    }
    let stamp = captured.iter().rev().find(|s| (s.frame as f64) <= in_pos)?;
    let capture_ns =
        stamp.ns as f64 + (in_pos - stamp.frame as f64) * 1e9 / cfg.capture_rate as f64;
    Some((played.ns as f64 - capture_ns) * 1e-6)
}

/// Frames of exact silence at the end of interleaved `x`.
fn trailing_silence(x: &[f32], channels: usize) -> usize {
    x.chunks_exact(channels)
        .rev()
        .take_while(|f| f.iter().all(|&v| v == 0.0))
        .count()
}

/// Interleaved `from` channels -> `to` channels: copy, duplicate mono, or average down.
fn map_channels(input: &[f32], from: usize, out: &mut Vec<f32>, to: usize) {
    out.clear();
    if from == to {
        out.extend_from_slice(input);
        return;
    }
    for frame in input.chunks_exact(from) {
        if from == 1 {
            out.extend(std::iter::repeat_n(frame[0], to));
        } else if to == 1 {
            out.push(frame.iter().sum::<f32>() / from as f32);
        } else {
            out.extend((0..to).map(|c| frame[c.min(from - 1)]));
        }
    }
}

fn apply_fade_in(x: &mut [f32], channels: usize, left: &mut usize, total: usize) {
    for frame in x.chunks_exact_mut(channels) {
        if *left == 0 {
            break;
        }
        let g = 1.0 - *left as f32 / total as f32;
        frame.iter_mut().for_each(|s| *s *= g);
        *left -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_mapping() {
        let mut out = Vec::new();
        map_channels(&[1.0, 2.0], 1, &mut out, 2);
        assert_eq!(out, [1.0, 1.0, 2.0, 2.0]);
        map_channels(&[1.0, 3.0], 2, &mut out, 1);
        assert_eq!(out, [2.0]);
        map_channels(&[1.0, 3.0], 2, &mut out, 2);
        assert_eq!(out, [1.0, 3.0]);
    }

    #[test]
    fn controller_ignores_jitter_and_corrects_drift() {
        let mut c = Controller::new(20.0, 90.0);
        // Settles at 35 ms; jitter of +-15 ms changes nothing.
        assert_eq!(c.update(35.0), (0.0, 0.0));
        for f in [20.0, 50.0, 41.0, 29.0] {
            assert_eq!(c.update(f), (0.0, 0.0));
        }
        // 30 ms too full: drain (positive ppm), 10 ms beyond the band; too empty: fill.
        assert!((c.update(65.0).0 - 10.0 * PPM_PER_MS).abs() < 1e-9);
        assert!((c.update(0.0).0 + 15.0 * PPM_PER_MS).abs() < 1e-9);
        // Far too full: drop the excess at once.
        assert_eq!(c.update(235.0), (0.0, 200.0));
        // A buffer stuffed before playback began is brought down to the sane maximum.
        let mut c = Controller::new(20.0, 90.0);
        assert_eq!(c.update(1150.0), (0.0, 1060.0));
    }

    #[test]
    fn clock_fit_finds_the_rate() {
        let mut fit = ClockFit::default();
        for i in 0..2000u64 {
            // 48 010 frames per second, blocks of 480 frames (20 s), 1 ms of timestamp jitter.
            let t = i as f64 * 480.0 / 48_010.0;
            let jitter = if i % 2 == 0 { 0.001 } else { -0.001 };
            fit.add(((t + jitter) * 1e9) as i64, i * 480);
        }
        let rate = fit.rate().unwrap();
        assert!((rate - 48_010.0).abs() < 5.0, "{rate}");
    }
}
