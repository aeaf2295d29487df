//! Linux: capture from a PulseAudio/PipeWire source with buffer attributes that do not drop audio.
//!
//! cpal's PulseAudio host opens a record stream with `BufferSize::Fixed(n)` as a server-side queue
//! of exactly one fragment (`max_length = fragsize`): whenever the client thread is a little late
//! (a loaded machine), the server has nowhere to put the next block and drops it. On this
//! project's machine that lost 0.1-0.7 % of the audio under load (and ~40 % at other sizes), and
//! `BufferSize::Default` means ~150 ms blocks. This opens the same kind of stream through the same
//! pure-Rust client (the `pulseaudio` crate cpal uses), asking for small fragments (low latency)
//! but the server's largest queue (no loss when late).

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use pulseaudio::protocol;

use crate::io::CaptureSide;
use crate::LiveError;

/// A running record stream; stops and deletes itself on drop.
pub struct PulseCapture {
    stream: pulseaudio::RecordStream,
    stop: Arc<AtomicBool>,
    latency_thread: Option<std::thread::JoinHandle<()>>,
}

impl PulseCapture {
    /// Opens `source` (a PulseAudio source name, e.g. `alsa_output.pci.analog-stereo.monitor`)
    /// as float32 at `rate` with `channels`, delivering blocks of about `fragment_frames`.
    /// Sets `lost |= lost_flag` when the stream or server goes away.
    pub fn open(
        source: &str,
        rate: u32,
        channels: u16,
        fragment_frames: u32,
        mut side: CaptureSide,
        lost: Arc<AtomicU8>,
        lost_flag: u8,
    ) -> Result<Self, LiveError> {
        let fail = |what: &str, e: pulseaudio::ClientError| {
            LiveError::Device(format!("PulseAudio: {what} {source}: {e}"))
        };
        let name = CString::new(format!("nomusic-{}", std::process::id())).expect("no NUL");
        let client = pulseaudio::Client::from_env(&name)
            .map_err(|e| fail("cannot connect to the server for", e))?;
        let frame_bytes = 4 * channels as u32;
        let channel_map = match channels {
            1 => protocol::ChannelMap::mono(),
            2 => protocol::ChannelMap::stereo(),
            n => {
                return Err(LiveError::Device(format!(
                    "{source}: capturing {n} channels is not supported (mono or stereo)"
                )))
            }
        };
        let params = protocol::RecordStreamParams {
            sample_spec: protocol::SampleSpec {
                format: protocol::SampleFormat::Float32Le,
                channels: channels as u8,
                sample_rate: rate,
            },
            channel_map,
            source_name: Some(
                CString::new(source)
                    .map_err(|_| LiveError::Device(format!("bad source name {source:?}")))?,
            ),
            buffer_attr: protocol::stream::BufferAttr {
                // The server's largest queue: a late client gets its audio late, never lost.
                max_length: u32::MAX,
                fragment_size: fragment_frames * frame_bytes,
                ..Default::default()
            },
            flags: protocol::stream::StreamFlags {
                adjust_latency: true,
                // If the source goes away, end the stream (we wait and reopen) instead of letting
                // the server move it to another source.
                no_move: true,
                ..Default::default()
            },
            ..Default::default()
        };
        // Capture age of the newest byte: server-side latency, refreshed every 100 ms.
        let latency_ns = Arc::new(AtomicU64::new(0));
        let latency_cb = latency_ns.clone();
        let callback = move |buf: &[u8]| {
            side.on_f32le(buf, latency_cb.load(Ordering::Relaxed) as i64);
        };
        let stream = block_on(client.create_record_stream(params, callback))
            .map_err(|e| fail("cannot record from", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (stop_t, stream_t) = (stop.clone(), stream.clone());
        let bytes_per_s = (rate * frame_bytes) as f64;
        let latency_thread = std::thread::Builder::new()
            .name("nomusic-pulse-timing".into())
            .spawn(move || {
                let mut last = Instant::now();
                while !stop_t.load(Ordering::Relaxed) {
                    match block_on(stream_t.timing_info()) {
                        Ok(t) => {
                            let queued = (t.write_offset - t.read_offset).max(0) as f64;
                            let ns = t.source_usec as f64 * 1e3 + queued / bytes_per_s * 1e9;
                            latency_ns.store(ns as u64, Ordering::Relaxed);
                            last = Instant::now();
                        }
                        Err(_) => {
                            if last.elapsed() > Duration::from_millis(500) {
                                lost.fetch_or(lost_flag, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
            .map_err(|e| LiveError::Device(format!("cannot start a thread: {e}")))?;
        block_on(stream.started()).map_err(|e| fail("no audio from", e))?;
        Ok(Self {
            stream,
            stop,
            latency_thread: Some(latency_thread),
        })
    }
}

impl Drop for PulseCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.latency_thread.take() {
            let _ = t.join();
        }
        let _ = block_on(self.stream.clone().delete());
    }
}
