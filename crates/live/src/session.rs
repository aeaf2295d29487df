//! One `nomusic live` run: open both devices, start the worker, report once a second, and
//! survive devices that go away (wait, reopen, carry on).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{BufferSize, FromSample, SampleFormat, SizedSample, StreamConfig};
use nomusic_engine::stream::StreamSeparator;

use crate::devices::{self, DeviceEntry, Want};
use crate::io::{CaptureSide, Counters, PlaybackSide, Stamp};
use crate::worker::{Snapshot, Worker, WorkerConfig, WorkerRings};
use crate::LiveError;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Capture device: `loopback`, `default`, an id, or part of a name.
    pub input: String,
    /// Playback device: `default`, an id, or part of a name.
    pub output: String,
    /// Target depth of the jitter buffer (ms): the lowest the playback buffer may run.
    pub latency_ms: f64,
    /// Quality mode: a deeper buffer that never runs dry (overrides `latency_ms`).
    pub prebuffer_ms: Option<f64>,
    /// Play to the device being captured anyway (echo).
    pub force: bool,
    /// Stop after this long (tests, benchmarks).
    pub duration: Option<Duration>,
    /// Glitches in the first seconds (device start-up) are reported apart.
    pub warmup: Duration,
    /// Look for devices on every audio host, not only the default one.
    pub all_hosts: bool,
}

impl LiveConfig {
    fn target_ms(&self) -> f64 {
        self.prebuffer_ms.unwrap_or(self.latency_ms).max(1.0)
    }
}

/// A resolved pair of devices.
pub struct Route {
    pub capture: DeviceEntry,
    pub playback: DeviceEntry,
}

/// Finds both devices and refuses a route that would echo.
pub fn resolve_route(cfg: &LiveConfig) -> Result<Route, LiveError> {
    let all = devices::list(cfg.all_hosts)?;
    let capture = if cfg.input.eq_ignore_ascii_case("loopback") {
        devices::default_loopback(&all)?.1
    } else {
        devices::select(&all, &cfg.input, Want::Capture)?.clone()
    };
    let playback = devices::select(&all, &cfg.output, Want::Playback)?.clone();
    if let Some(heard) = devices::captured_output_id(&capture) {
        if heard == playback.id && !cfg.force {
            return Err(LiveError::Echo(format!(
                "the input {} captures what {} plays, and the output is that same device: you \
                 would hear everything twice (the original, then the processed copy), and the \
                 processed copy would be captured again. Route it instead:\n  \
                 - send the apps to a virtual device and capture that: on Linux `nomusic live \
                 --virtual-sink --output {}`; on Windows install VB-Cable, make \"CABLE Input\" \
                 the default output, and run `nomusic live --input \"CABLE Output\" --output \
                 <your speakers>`;\n  - or play to another device (`--output`, see `nomusic \
                 devices`).\nUse --force to run this route anyway.",
                capture.id, playback.id, playback.id
            )));
        }
    }
    Ok(Route { capture, playback })
}

/// Stream formats chosen for a route.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Formats {
    pub capture_rate: u32,
    pub capture_channels: u16,
    pub playback_rate: u32,
    pub playback_channels: u16,
}

/// Final numbers of a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LiveReport {
    pub input: String,
    pub output: String,
    pub seconds: f64,
    pub underruns: u64,
    pub underruns_after_warmup: u64,
    pub capture_overruns: u64,
    pub capture_overruns_after_warmup: u64,
    pub playback_overruns: u64,
    pub playback_overruns_after_warmup: u64,
    pub reopened: u32,
    pub captured_frames: u64,
    pub played_frames: u64,
    /// One snapshot per second.
    pub seconds_log: Vec<Snapshot>,
}

/// A capture stream: cpal's, or on Linux our own PulseAudio record stream.
pub(crate) enum CaptureStream {
    Cpal(cpal::Stream),
    #[cfg(target_os = "linux")]
    #[allow(dead_code)] // held for its Drop
    Pulse(crate::pulse_capture::PulseCapture),
}

impl CaptureStream {
    /// Starts delivering (our PulseAudio stream runs from the moment it is opened).
    pub(crate) fn play(&self) -> Result<(), cpal::Error> {
        match self {
            CaptureStream::Cpal(c) => c.play(),
            #[cfg(target_os = "linux")]
            CaptureStream::Pulse(_) => Ok(()),
        }
    }
}

struct Running {
    _capture: CaptureStream,
    _playback: cpal::Stream,
    worker: std::thread::JoinHandle<Result<StreamSeparator, LiveError>>,
    stop: Arc<AtomicBool>,
}

/// Device loss flags set by the error callbacks.
const LOST_CAPTURE: u8 = 1;
const LOST_PLAYBACK: u8 = 2;

fn is_loss(kind: cpal::ErrorKind) -> bool {
    matches!(
        kind,
        cpal::ErrorKind::DeviceNotAvailable
            | cpal::ErrorKind::StreamInvalidated
            | cpal::ErrorKind::HostUnavailable
    )
}

fn is_pulse(entry: &DeviceEntry) -> bool {
    entry.host.to_lowercase().contains("pulse")
}

pub(crate) fn formats_of(
    route: &Route,
) -> Result<(Formats, SampleFormat, SampleFormat), LiveError> {
    let ci = route
        .capture
        .device
        .default_input_config()
        .or_else(|_| route.capture.device.default_output_config())
        .map_err(|e| LiveError::Device(format!("{}: {e}", route.capture.id)))?;
    let po = route
        .playback
        .device
        .default_output_config()
        .map_err(|e| LiveError::Device(format!("{}: {e}", route.playback.id)))?;
    // PulseAudio converts any format; ask it for float so nothing is quantised on our side.
    let cfmt = if is_pulse(&route.capture) {
        SampleFormat::F32
    } else {
        ci.sample_format()
    };
    let pfmt = if is_pulse(&route.playback) {
        SampleFormat::F32
    } else {
        po.sample_format()
    };
    Ok((
        Formats {
            capture_rate: ci.sample_rate(),
            capture_channels: ci.channels(),
            playback_rate: po.sample_rate(),
            playback_channels: po.channels(),
        },
        cfmt,
        pfmt,
    ))
}

/// Callback sizes. PulseAudio capture does not go through cpal (see `pulse_capture`) and asks
/// for 10 ms fragments. Playback asks for 10 ms periods (a 20 ms server-side queue). Other hosts
/// keep their defaults (WASAPI shared mode: ~10 ms).
fn buffer_sizes(route: &Route, f: &Formats) -> (BufferSize, BufferSize, usize) {
    let period = (f.playback_rate / 100) as usize;
    (
        BufferSize::Default,
        playback_buffer_size(route, f.playback_rate),
        period,
    )
}

/// Playback period: 10 ms on PulseAudio, the host's default elsewhere.
pub(crate) fn playback_buffer_size(route: &Route, rate: u32) -> BufferSize {
    if is_pulse(&route.playback) {
        BufferSize::Fixed(rate / 100)
    } else {
        BufferSize::Default
    }
}

fn build_capture<T>(
    device: &cpal::Device,
    config: &StreamConfig,
    mut side: CaptureSide,
    lost: Arc<AtomicU8>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    device.build_input_stream::<T, _, _>(
        *config,
        move |data, info| side.on_data(data, info),
        move |err| {
            if is_loss(err.kind()) {
                lost.fetch_or(LOST_CAPTURE, Ordering::Relaxed);
            }
        },
        Some(Duration::from_secs(5)),
    )
}

fn build_playback<T>(
    device: &cpal::Device,
    config: &StreamConfig,
    mut side: PlaybackSide,
    lost: Arc<AtomicU8>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
    f32: FromSample<T>,
{
    device.build_output_stream::<T, _, _>(
        *config,
        move |data, info| side.on_data(data, info),
        move |err| {
            if is_loss(err.kind()) {
                lost.fetch_or(LOST_PLAYBACK, Ordering::Relaxed);
            }
        },
        Some(Duration::from_secs(5)),
    )
}

macro_rules! dispatch {
    ($fmt:expr, $f:ident, $($arg:expr),*) => {
        match $fmt {
            SampleFormat::F32 => $f::<f32>($($arg),*),
            SampleFormat::I16 => $f::<i16>($($arg),*),
            SampleFormat::I32 => $f::<i32>($($arg),*),
            SampleFormat::U16 => $f::<u16>($($arg),*),
            SampleFormat::U8 => $f::<u8>($($arg),*),
            other => {
                return Err(LiveError::Device(format!("sample format {other} is not supported")))
            }
        }
    };
}

/// Opens the capture side: PulseAudio sources through `pulse_capture` on Linux, anything else
/// through cpal.
pub(crate) fn open_capture(
    route: &Route,
    config: &StreamConfig,
    format: SampleFormat,
    side: CaptureSide,
    lost: &Arc<AtomicU8>,
) -> Result<Result<CaptureStream, cpal::Error>, LiveError> {
    #[cfg(target_os = "linux")]
    if is_pulse(&route.capture) {
        let source = route
            .capture
            .id
            .split_once(':')
            .map_or(route.capture.id.as_str(), |(_, name)| name);
        let fragment = config.sample_rate / 100;
        return crate::pulse_capture::PulseCapture::open(
            source,
            config.sample_rate,
            config.channels,
            fragment,
            side,
            lost.clone(),
            LOST_CAPTURE,
        )
        .map(|c| Ok(CaptureStream::Pulse(c)));
    }
    Ok(dispatch!(
        format,
        build_capture,
        &route.capture.device,
        config,
        side,
        lost.clone()
    )
    .map(CaptureStream::Cpal))
}

#[allow(clippy::too_many_arguments)]
fn start(
    route: &Route,
    cfg: &LiveConfig,
    sep: StreamSeparator,
    formats: Formats,
    cfmt: SampleFormat,
    pfmt: SampleFormat,
    counters: &Arc<Counters>,
    published: &Arc<Mutex<Snapshot>>,
    lost: &Arc<AtomicU8>,
    epoch: Instant,
) -> Result<Running, LiveError> {
    let (cap_buf, play_buf, period) = buffer_sizes(route, &formats);
    let cc = formats.capture_channels as usize;
    let pc = formats.playback_channels as usize;
    let target_frames = (cfg.target_ms() * formats.playback_rate as f64 / 1000.0).round() as usize;
    let capture_capacity = 2 * formats.capture_rate as usize * cc;
    let playback_capacity =
        (target_frames * 4).max(formats.playback_rate as usize) * pc + 8192 * pc;
    let (cap_prod, cap_cons) = rtrb::RingBuffer::<f32>::new(capture_capacity);
    let (cs_prod, cs_cons) = rtrb::RingBuffer::<Stamp>::new(256);
    let (play_prod, play_cons) = rtrb::RingBuffer::<f32>::new(playback_capacity);
    let (ps_prod, ps_cons) = rtrb::RingBuffer::<Stamp>::new(256);

    let capture_side = CaptureSide {
        ring: cap_prod,
        stamps: cs_prod,
        counters: counters.clone(),
        channels: cc,
        rate_hz: formats.capture_rate,
        epoch,
        written: 0,
        device_frames: 0,
    };
    let playback_side = PlaybackSide {
        ring: play_cons,
        stamps: ps_prod,
        counters: counters.clone(),
        channels: pc,
        epoch,
        start_frames: target_frames + period,
        grow_frames: period,
        max_start_frames: (target_frames + period).max(formats.playback_rate as usize / 5),
        playing: false,
        fade_in_left: 0,
        fade_frames: (formats.playback_rate / 200) as usize,
        read: 0,
        device_frames: 0,
    };
    let cap_config = StreamConfig {
        channels: formats.capture_channels,
        sample_rate: formats.capture_rate,
        buffer_size: cap_buf,
    };
    let play_config = StreamConfig {
        channels: formats.playback_channels,
        sample_rate: formats.playback_rate,
        buffer_size: play_buf,
    };
    let device_err = |which: &DeviceEntry, e: cpal::Error| {
        LiveError::Device(format!("cannot open {}: {e}", which.id))
    };
    let playback = (|| {
        Ok::<_, LiveError>(dispatch!(
            pfmt,
            build_playback,
            &route.playback.device,
            &play_config,
            playback_side,
            lost.clone()
        ))
    })();
    let playback = match playback {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(device_err(&route.playback, e)),
        Err(e) => return Err(e),
    };
    let capture = match open_capture(route, &cap_config, cfmt, capture_side, lost) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(device_err(&route.capture, e)),
        Err(e) => return Err(e),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let hop_frames =
        sep.model_hop_frames() as f64 * formats.capture_rate as f64 / sep.model_rate_hz() as f64;
    let worker = Worker::new(
        WorkerConfig {
            capture_rate: formats.capture_rate,
            capture_channels: cc,
            playback_rate: formats.playback_rate,
            playback_channels: pc,
            target_frames,
            playback_capacity,
            epoch,
            hop_frames,
            grow_frames: period,
            max_start_frames: (target_frames + period).max(formats.playback_rate as usize / 5),
        },
        WorkerRings {
            capture: cap_cons,
            capture_stamps: cs_cons,
            playback: play_prod,
            playback_stamps: ps_cons,
        },
        counters.clone(),
        published.clone(),
        stop.clone(),
    );
    let worker = std::thread::Builder::new()
        .name("nomusic-live".into())
        .spawn(move || worker.run(sep))
        .map_err(|e| LiveError::Device(format!("cannot start the worker: {e}")))?;
    let started = playback.play().and_then(|_| capture.play());
    if let Err(e) = started {
        stop.store(true, Ordering::Relaxed);
        let _ = worker.join();
        return Err(LiveError::Device(format!("cannot start the streams: {e}")));
    }
    Ok(Running {
        _capture: capture,
        _playback: playback,
        worker,
        stop,
    })
}

/// Events for the caller's display.
pub enum Event<'a> {
    /// Streams are running with these formats.
    Started(&'a Route, Formats),
    /// Once a second.
    Tick(&'a Snapshot, &'a Counters),
    /// A device went away; waiting for it.
    Lost(&'a str),
    Reopened,
}

/// Runs live separation until `stop` is set or `cfg.duration` has passed.
pub fn run(
    cfg: &LiveConfig,
    route: Route,
    sep_factory: &dyn Fn(u32, usize) -> Result<StreamSeparator, LiveError>,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<LiveReport, LiveError> {
    let (formats, cfmt, pfmt) = formats_of(&route)?;
    let mut sep = sep_factory(formats.capture_rate, formats.capture_channels as usize)?;
    let counters = Arc::new(Counters::default());
    let published = Arc::new(Mutex::new(Snapshot::default()));
    let lost = Arc::new(AtomicU8::new(0));
    let epoch = Instant::now();
    let mut report = LiveReport {
        input: route.capture.id.clone(),
        output: route.playback.id.clone(),
        ..Default::default()
    };
    let mut route = route;
    let mut at_warmup: Option<(u64, u64, u64)> = None;
    let mut last_tick = Instant::now();
    let mut extra_overruns = 0u64;
    let presence_host = (is_pulse(&route.capture) || is_pulse(&route.playback))
        .then(cpal::default_host)
        .filter(|h| h.id().name().to_lowercase().contains("pulse"));
    let mut last_presence = Instant::now();
    let mut missing_before = 0u8;
    'session: loop {
        let running = start(
            &route, cfg, sep, formats, cfmt, pfmt, &counters, &published, &lost, epoch,
        )?;
        on_event(Event::Started(&route, formats));
        let outcome = loop {
            std::thread::sleep(Duration::from_millis(50));
            if stop.load(Ordering::Relaxed) || cfg.duration.is_some_and(|d| epoch.elapsed() >= d) {
                break None;
            }
            if running.worker.is_finished() {
                break None;
            }
            let l = lost.swap(0, Ordering::Relaxed);
            if l != 0 {
                break Some(l);
            }
            // PulseAudio moves a stream whose device disappears to the default device instead of
            // ending it (cpal's playback streams cannot ask otherwise), which could even feed
            // the output back into the input: check once a second that both devices still exist.
            // (One host, kept open: a new server connection per check would pile up.) A device
            // must be missing from a listing that has devices of its host in it, twice in a row.
            if let Some(host) = presence_host.as_ref() {
                if last_presence.elapsed() >= Duration::from_secs(1) {
                    last_presence = Instant::now();
                    let all = devices::list_on(host);
                    let missing = |e: &DeviceEntry| {
                        all.iter().any(|d| d.host == e.host)
                            && !all.iter().any(|d| d.id == e.id && d.role == e.role)
                    };
                    let gone = (if missing(&route.capture) {
                        LOST_CAPTURE
                    } else {
                        0
                    }) | (if missing(&route.playback) {
                        LOST_PLAYBACK
                    } else {
                        0
                    });
                    if gone != 0 && gone == missing_before {
                        break Some(gone);
                    }
                    missing_before = gone;
                }
            }
            if last_tick.elapsed() >= Duration::from_secs(1) {
                last_tick = Instant::now();
                let snap = published.lock().map(|s| s.clone()).unwrap_or_default();
                if at_warmup.is_none() && epoch.elapsed() >= cfg.warmup {
                    at_warmup = Some((
                        counters.underruns.load(Ordering::Relaxed),
                        counters.capture_overruns.load(Ordering::Relaxed),
                        snap.playback_overruns + extra_overruns,
                    ));
                }
                on_event(Event::Tick(&snap, &counters));
                let mut logged = snap.clone();
                logged.playback_overruns += extra_overruns;
                report.seconds_log.push(logged);
            }
        };
        // Close the devices first, then stop the worker: the other order would let playback
        // run dry in its last callbacks and count an underrun that nobody hears.
        let Running {
            _capture,
            _playback,
            worker,
            stop: worker_stop,
        } = running;
        drop(_playback);
        drop(_capture);
        worker_stop.store(true, Ordering::Relaxed);
        let snap = published.lock().map(|s| s.clone()).unwrap_or_default();
        let joined = worker
            .join()
            .map_err(|_| LiveError::Device("the processing thread panicked".into()))?;
        extra_overruns += snap.playback_overruns;
        sep = joined?;
        let Some(which) = outcome else {
            break 'session;
        };
        let name = if which & LOST_CAPTURE != 0 {
            route.capture.id.clone()
        } else {
            route.playback.id.clone()
        };
        on_event(Event::Lost(&name));
        // Wait for both devices to be there again, then carry on with the same model state.
        loop {
            if stop.load(Ordering::Relaxed) || cfg.duration.is_some_and(|d| epoch.elapsed() >= d) {
                break 'session;
            }
            std::thread::sleep(Duration::from_millis(500));
            let all = match presence_host.as_ref() {
                Some(host) => devices::list_on(host),
                None => match devices::list(cfg.all_hosts) {
                    Ok(all) => all,
                    Err(_) => continue,
                },
            };
            let capture = all
                .iter()
                .find(|d| d.id == route.capture.id && d.role == route.capture.role);
            let playback = all
                .iter()
                .find(|d| d.id == route.playback.id && d.role == route.playback.role);
            if let (Some(c), Some(p)) = (capture, playback) {
                route = Route {
                    capture: c.clone(),
                    playback: p.clone(),
                };
                break;
            }
        }
        missing_before = 0;
        report.reopened += 1;
        on_event(Event::Reopened);
    }
    report.seconds = epoch.elapsed().as_secs_f64();
    report.underruns = counters.underruns.load(Ordering::Relaxed);
    report.capture_overruns = counters.capture_overruns.load(Ordering::Relaxed);
    report.playback_overruns = extra_overruns;
    let (u0, c0, p0) = at_warmup.unwrap_or((report.underruns, report.capture_overruns, 0));
    report.underruns_after_warmup = report.underruns - u0;
    report.capture_overruns_after_warmup = report.capture_overruns - c0;
    report.playback_overruns_after_warmup = report.playback_overruns.saturating_sub(p0);
    report.captured_frames = counters.captured_frames.load(Ordering::Relaxed);
    report.played_frames = counters.played_frames.load(Ordering::Relaxed);
    Ok(report)
}
