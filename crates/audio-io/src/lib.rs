//! Audio file input and output for nomusic.
//!
//! - [`Decoder`] streams any supported input (WAV, FLAC, MP3, Ogg Vorbis/Opus, WebM/MKV,
//!   MP4/M4A with AAC, AIFF, and the audio track of videos) as interleaved `f32` frames.
//!   Symphonia demuxes and decodes; Opus packets go to the system libopus.
//!   Encoder delay and padding are trimmed (Opus pre-skip and WebM `DiscardPadding`, the MP4
//!   edit list or `iTunSMPB` tag), so lossy decodes line up with their source.
//! - [`Encoder`] streams interleaved `f32` frames to WAV (16/24-bit integer or 32-bit float) or
//!   FLAC (16/24-bit), through a temporary file that is renamed into place by
//!   [`Encoder::finish`], so a failed run never leaves a half-written output.
//! - [`read_all`] is the whole-file convenience for tests and metrics.

mod decode;
mod encode;
mod error;
mod flac;
mod mkv_discard;
mod mp4_edit;
mod opus;

pub use decode::{read_all, AudioInfo, Decoder, MAX_CONSECUTIVE_BAD_PACKETS};
pub use encode::{Encoder, OutputFormat, SampleFormat};
pub use error::{AudioIoError, SUPPORTED_INPUTS};
