//! Encoder round trips and the temporary-file-then-rename behaviour.

use std::path::Path;

use nomusic_audio_io::{read_all, AudioIoError, Encoder, OutputFormat, SampleFormat};

/// A deterministic test signal, interleaved: a sweep per channel at different speeds, plus
/// full-scale and over-range samples at the start to exercise clamping.
fn signal(frames: usize, channels: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(frames * channels);
    for n in 0..frames {
        for ch in 0..channels {
            let t = n as f32 / 48_000.0;
            let f = 300.0 * (ch + 1) as f32;
            out.push(0.8 * (2.0 * std::f32::consts::PI * f * t * (1.0 + t)).sin());
        }
    }
    out
}

/// Writes `samples` in uneven pieces and finishes.
fn write_file(path: &Path, format: OutputFormat, channels: usize, samples: &[f32]) {
    let mut enc = Encoder::create(path, format, 48_000, channels).unwrap();
    let mut rest = samples;
    let mut piece = 7 * channels;
    while !rest.is_empty() {
        let take = piece.min(rest.len());
        enc.write(&rest[..take]).unwrap();
        rest = &rest[take..];
        piece = (piece * 3 + channels * 101) % (9000 * channels) + channels;
    }
    enc.finish().unwrap();
}

fn interleave(planar: &[Vec<f32>]) -> Vec<f32> {
    let frames = planar[0].len();
    (0..frames)
        .flat_map(|i| planar.iter().map(move |p| p[i]))
        .collect()
}

fn quantized(samples: &[f32], bits: u32) -> Vec<f32> {
    let scale = (1u32 << (bits - 1)) as f32;
    samples
        .iter()
        .map(|&x| (x.clamp(-1.0, 1.0) * scale).round().min(scale - 1.0) / scale)
        .collect()
}

fn round_trip(name: &str, format: OutputFormat, channels: usize, frames: usize) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let samples = signal(frames, channels);
    write_file(&path, format, channels, &samples);
    let (info, planar) = read_all(&path).unwrap();
    assert_eq!(info.sample_rate_hz, 48_000, "{name}");
    assert_eq!(info.channels, channels, "{name}");
    assert_eq!(planar[0].len(), frames, "{name}: length");
    interleave(&planar)
}

#[test]
fn wav16_round_trip_is_exact_after_quantisation() {
    let back = round_trip("a.wav", OutputFormat::Wav(SampleFormat::Pcm16), 2, 10_000);
    assert_eq!(back, quantized(&signal(10_000, 2), 16));
}

#[test]
fn wav24_round_trip_is_exact_after_quantisation() {
    let back = round_trip("a.wav", OutputFormat::Wav(SampleFormat::Pcm24), 2, 10_000);
    assert_eq!(back, quantized(&signal(10_000, 2), 24));
}

#[test]
fn wav_float_round_trip_is_bit_exact() {
    let back = round_trip("a.wav", OutputFormat::Wav(SampleFormat::Float32), 3, 5_000);
    assert_eq!(back, signal(5_000, 3));
}

#[test]
fn flac16_round_trip_is_exact_after_quantisation() {
    // 10_000 frames: two full 4096-frame blocks and a short last one.
    let back = round_trip("a.flac", OutputFormat::Flac { bits: 16 }, 2, 10_000);
    assert_eq!(back, quantized(&signal(10_000, 2), 16));
}

#[test]
fn flac24_round_trip_is_exact_after_quantisation() {
    let back = round_trip("a.flac", OutputFormat::Flac { bits: 24 }, 1, 9_000);
    assert_eq!(back, quantized(&signal(9_000, 1), 24));
}

#[test]
fn flac_states_its_length_and_is_byte_exact_multiple_of_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.flac");
    write_file(&path, OutputFormat::Flac { bits: 16 }, 2, &signal(8192, 2));
    let decoder = nomusic_audio_io::Decoder::open(&path).unwrap();
    assert_eq!(decoder.info().frames, Some(8192));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..4], b"fLaC");
}

#[test]
fn integer_formats_clamp() {
    for format in [
        OutputFormat::Wav(SampleFormat::Pcm16),
        OutputFormat::Flac { bits: 16 },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if matches!(format, OutputFormat::Wav(_)) {
            "c.wav"
        } else {
            "c.flac"
        });
        let samples = [1.5, -1.5, 1.0, -1.0, f32::NAN, 0.0];
        let mut enc = Encoder::create(&path, format, 8_000, 1).unwrap();
        enc.write(&samples).unwrap();
        enc.finish().unwrap();
        let (_, planar) = read_all(&path).unwrap();
        let top = 32767.0 / 32768.0;
        assert_eq!(
            planar[0],
            vec![top, -1.0, top, -1.0, 0.0, 0.0],
            "{format:?}"
        );
    }
}

#[test]
fn empty_output_is_valid() {
    for name in ["e.wav", "e.flac"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let format = OutputFormat::from_path_and_bits(&path, 16).unwrap();
        Encoder::create(&path, format, 44_100, 2)
            .unwrap()
            .finish()
            .unwrap();
        assert!(path.is_file(), "{name}");
    }
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn drop_without_finish_leaves_nothing() {
    for name in ["d.wav", "d.flac"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let format = OutputFormat::from_path_and_bits(&path, 16).unwrap();
        let mut enc = Encoder::create(&path, format, 44_100, 2).unwrap();
        enc.write(&signal(5000, 2)).unwrap();
        let during = dir_entries(dir.path());
        assert_eq!(during.len(), 1, "{during:?}");
        assert!(during[0].starts_with(&format!(".{name}.")) && during[0].ends_with(".tmp"));
        drop(enc);
        assert!(
            dir_entries(dir.path()).is_empty(),
            "{name}: temp file left behind"
        );
    }
}

#[test]
fn finish_leaves_exactly_the_file_and_replaces_an_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.flac");
    std::fs::write(&path, b"old contents").unwrap();
    write_file(&path, OutputFormat::Flac { bits: 16 }, 2, &signal(1000, 2));
    assert_eq!(dir_entries(dir.path()), vec!["out.flac".to_string()]);
    assert_eq!(read_all(&path).unwrap().1[0].len(), 1000);
}

#[test]
fn missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/out.wav");
    let err =
        Encoder::create(&path, OutputFormat::Wav(SampleFormat::Pcm16), 44_100, 2).unwrap_err();
    assert!(
        matches!(err, AudioIoError::OutputDirMissing { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("out.wav") && msg.contains("does not exist"),
        "{msg}"
    );
}

#[test]
fn unwritable_directory_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores permissions; only check where they apply.
    if std::fs::write(locked.join("probe"), b"x").is_ok() {
        return;
    }
    let path = locked.join("out.wav");
    let err =
        Encoder::create(&path, OutputFormat::Wav(SampleFormat::Pcm16), 44_100, 2).unwrap_err();
    assert!(matches!(err, AudioIoError::Create { .. }), "{err:?}");
    assert!(err.to_string().contains("out.wav"));
}

#[test]
fn bad_sample_count_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.wav");
    let mut enc =
        Encoder::create(&path, OutputFormat::Wav(SampleFormat::Pcm16), 44_100, 2).unwrap();
    assert!(matches!(
        enc.write(&[0.0; 3]),
        Err(AudioIoError::InvalidOutput { .. })
    ));
    assert!(Encoder::create(&path, OutputFormat::Flac { bits: 20 }, 44_100, 2).is_err());
    assert!(Encoder::create(&path, OutputFormat::Wav(SampleFormat::Pcm16), 44_100, 0).is_err());
}
