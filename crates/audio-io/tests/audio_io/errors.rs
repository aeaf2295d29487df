//! Broken and unsupported inputs give clean errors (no panics) that name the file.

use std::path::Path;

use nomusic_audio_io::{AudioIoError, Decoder};

use crate::util::fixture;

/// Opens and decodes to the end; returns the first error.
fn decode_fully(path: &Path) -> Result<(), AudioIoError> {
    let mut decoder = Decoder::open(path)?;
    let mut buf = Vec::new();
    while decoder.read(&mut buf, 4096)? > 0 {
        buf.clear();
    }
    Ok(())
}

fn expect_error(path: &Path) -> AudioIoError {
    let err = decode_fully(path).expect_err("decoding should fail");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message lacks the path: {msg}"
    );
    err
}

#[test]
fn corrupt_flac_is_reported() {
    let err = expect_error(&fixture("corrupt.flac"));
    assert!(matches!(err, AudioIoError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().starts_with("corrupt audio in "), "{err}");
}

#[test]
fn truncated_flac_is_reported() {
    let err = expect_error(&fixture("truncated.flac"));
    assert!(matches!(err, AudioIoError::Corrupt { .. }), "{err:?}");
}

#[test]
fn truncated_mp3_is_reported() {
    let err = expect_error(&fixture("truncated.mp3"));
    assert!(matches!(err, AudioIoError::Corrupt { .. }), "{err:?}");
}

#[test]
fn text_file_with_audio_extension_is_unsupported() {
    let err = expect_error(&fixture("notaudio.wav"));
    assert!(
        matches!(err, AudioIoError::UnsupportedFormat { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("nomusic reads WAV, FLAC"), "{err}");
}

#[test]
fn unknown_extension_is_unsupported_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("document.xyz");
    std::fs::write(&path, b"just some bytes that are not audio at all").unwrap();
    let err = expect_error(&path);
    let msg = err.to_string();
    assert!(msg.starts_with("unsupported format: "), "{msg}");
    assert!(msg.contains("(.xyz)"), "{msg}");
}

#[test]
fn empty_file_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.mp3");
    std::fs::write(&path, b"").unwrap();
    expect_error(&path);
}

#[test]
fn missing_file_is_a_read_error() {
    let err = expect_error(Path::new("/nonexistent/dir/song.mp3"));
    assert!(matches!(err, AudioIoError::Read { .. }), "{err:?}");
}

#[test]
fn video_without_audio_has_no_audio_track() {
    let err = expect_error(&fixture("video-only.mkv"));
    assert!(matches!(err, AudioIoError::NoAudioTrack { .. }), "{err:?}");
    assert!(err.to_string().starts_with("no audio track in "), "{err}");
}
