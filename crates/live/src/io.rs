//! The two audio callbacks. They only move samples between the device and lock-free SPSC rings
//! (rtrb), convert the sample format, stamp the time, and count glitches: no allocation, no lock,
//! no logging, no I/O.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cpal::{FromSample, InputCallbackInfo, OutputCallbackInfo, Sample};

/// When a block of frames met the device: `frame` is the running index of its first frame
/// (in ring frames), `ns` the time on the process clock (nanoseconds since the session epoch).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stamp {
    /// Frames the device has clocked before this block (capture: frames delivered; playback:
    /// frames requested, silence included). Measures the device's clock.
    pub device_frame: u64,
    /// Ring index of the block's first real frame (capture: written; playback: read).
    pub frame: u64,
    /// Capture: when the first frame was captured. Playback: when the first real frame will
    /// reach the speaker.
    pub ns: i64,
}

/// Glitch counters shared by the callbacks and the reporting thread.
#[derive(Debug, Default)]
pub struct Counters {
    /// Playback found the ring empty (faded out, then back in once refilled).
    pub underruns: AtomicU64,
    /// Capture found the ring full and dropped input.
    pub capture_overruns: AtomicU64,
    /// Frames the playback device requested.
    pub played_frames: AtomicU64,
    /// Frames the capture device delivered.
    pub captured_frames: AtomicU64,
    /// Playback is running (not waiting for its buffer to fill).
    pub playing: AtomicBool,
}

fn nanos_since(epoch: Instant) -> i64 {
    Instant::now().saturating_duration_since(epoch).as_nanos() as i64
}

/// Capture side: device -> ring.
pub struct CaptureSide {
    pub ring: rtrb::Producer<f32>,
    pub stamps: rtrb::Producer<Stamp>,
    pub counters: Arc<Counters>,
    pub channels: usize,
    pub rate_hz: u32,
    pub epoch: Instant,
    pub written: u64,
    pub device_frames: u64,
}

impl CaptureSide {
    /// cpal's callback.
    pub fn on_data<T>(&mut self, data: &[T], info: &InputCallbackInfo)
    where
        T: Sample,
        f32: FromSample<T>,
    {
        let ts = info.timestamp();
        let age = ts.callback.duration_since(ts.capture).as_nanos() as i64;
        let frames = data.len() / self.channels;
        self.push(frames, age, data.iter().map(|s| s.to_sample::<f32>()));
    }

    /// Raw little-endian float32 bytes (the PulseAudio record stream). `age_ns`: how long ago
    /// the last byte was captured.
    pub fn on_f32le(&mut self, bytes: &[u8], age_ns: i64) {
        let frames = bytes.len() / (4 * self.channels);
        let duration_ns = frames as i64 * 1_000_000_000 / self.rate_hz.max(1) as i64;
        self.push(
            frames,
            age_ns + duration_ns,
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }

    /// Writes `frames` frames of `samples` (interleaved), whose first frame was captured
    /// `age_ns` ago.
    fn push(&mut self, frames: usize, age_ns: i64, samples: impl Iterator<Item = f32>) {
        let fits = (self.ring.slots() / self.channels).min(frames);
        let _ = self.stamps.push(Stamp {
            device_frame: self.device_frames,
            frame: self.written,
            ns: nanos_since(self.epoch) - age_ns,
        });
        if let Ok(chunk) = self.ring.write_chunk_uninit(fits * self.channels) {
            chunk.fill_from_iter(samples);
        }
        if fits < frames {
            self.counters
                .capture_overruns
                .fetch_add(1, Ordering::Relaxed);
        }
        self.written += fits as u64;
        self.device_frames += frames as u64;
        self.counters
            .captured_frames
            .fetch_add(frames as u64, Ordering::Relaxed);
    }
}

/// Playback side: ring -> device, with the jitter buffer's start/stop logic.
pub struct PlaybackSide {
    pub ring: rtrb::Consumer<f32>,
    pub stamps: rtrb::Producer<Stamp>,
    pub counters: Arc<Counters>,
    pub channels: usize,
    pub epoch: Instant,
    /// Frames that must be buffered before playback (re)starts. Grows by `grow_frames` after
    /// each underrun, up to `max_start_frames`: a machine that stalls gets a deeper buffer.
    pub start_frames: usize,
    pub grow_frames: usize,
    pub max_start_frames: usize,
    pub playing: bool,
    /// Frames of fade-in still to apply after a (re)start.
    pub fade_in_left: usize,
    pub fade_frames: usize,
    pub read: u64,
    pub device_frames: u64,
}

impl PlaybackSide {
    pub fn on_data<T>(&mut self, out: &mut [T], info: &OutputCallbackInfo)
    where
        T: Sample + FromSample<f32>,
        f32: FromSample<T>,
    {
        let ts = info.timestamp();
        let ahead = ts.playback.duration_since(ts.callback).as_nanos() as i64;
        let now = nanos_since(self.epoch);
        let c = self.channels;
        let frames = out.len() / c;
        let available = self.ring.slots() / c;
        let device_frame = self.device_frames;
        self.device_frames += frames as u64;
        self.counters
            .played_frames
            .fetch_add(frames as u64, Ordering::Relaxed);
        if !self.playing {
            if available < self.start_frames {
                out.fill(T::EQUILIBRIUM);
                return;
            }
            self.playing = true;
            self.counters.playing.store(true, Ordering::Relaxed);
            self.fade_in_left = self.fade_frames;
        }
        let n = available.min(frames);
        let _ = self.stamps.push(Stamp {
            device_frame,
            frame: self.read,
            ns: now + ahead,
        });
        if let Ok(chunk) = self.ring.read_chunk(n * c) {
            let (a, b) = chunk.as_slices();
            for (i, (dst, &src)) in out.iter_mut().zip(a.iter().chain(b)).enumerate() {
                let frame = i / c;
                let mut g = 1.0;
                if self.fade_in_left > frame {
                    g = 1.0 - (self.fade_in_left - frame) as f32 / self.fade_frames as f32;
                }
                *dst = T::from_sample(src * g);
            }
            chunk.commit_all();
        }
        self.fade_in_left = self.fade_in_left.saturating_sub(n);
        self.read += n as u64;
        if n < frames {
            // Ran dry: fade the last frames we had to zero instead of stopping on a step, then
            // wait until the buffer is full again.
            let fade = n.min(self.fade_frames / 4).max(1).min(n);
            for f in 0..fade {
                let g = f as f32 / fade as f32;
                let frame = n - fade + f;
                for s in &mut out[frame * c..(frame + 1) * c] {
                    *s = T::from_sample(s.to_sample::<f32>() * (1.0 - g));
                }
            }
            out[n * c..].fill(T::EQUILIBRIUM);
            self.playing = false;
            self.start_frames = (self.start_frames + self.grow_frames).min(self.max_start_frames);
            self.counters.playing.store(false, Ordering::Relaxed);
            self.counters.underruns.fetch_add(1, Ordering::Relaxed);
        }
    }
}
