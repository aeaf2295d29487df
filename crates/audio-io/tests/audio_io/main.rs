//! Integration tests for nomusic-audio-io, compiled into one binary. The fixtures come from
//! `tools/make-fixtures.sh`: one 0.5 s, 44.1 kHz stereo source (left: chirp, right: 440 Hz tone)
//! converted into every supported format.

mod decode;
mod encode;
mod errors;
mod util;
