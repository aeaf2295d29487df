//! `nomusic live`: music removal on whatever the computer plays, as it plays.
//!
//! Capture (a loopback/monitor device or a virtual cable) -> lock-free ring -> worker thread
//! (model hop by hop, drift-compensating resampler) -> lock-free ring -> playback device.
//! See `session` for the run loop, `io` for the callbacks, `worker` for the processing thread,
//! `devices` for naming devices, `virtual_sink` for the Linux null sink and `latency_test` for
//! measuring a route's round trip.

pub mod devices;
pub mod io;
pub mod latency_test;
#[cfg(target_os = "linux")]
pub mod pulse_capture;
pub mod session;
pub mod virtual_sink;
pub mod worker;

/// Everything live mode can fail with, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{0}")]
    Device(String),
    #[error("refusing an echoing route: {0}")]
    Echo(String),
    #[error("virtual sink: {0}")]
    VirtualSink(String),
    #[error(transparent)]
    Engine(#[from] nomusic_engine::EngineError),
}
