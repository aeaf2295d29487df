//! Every fixture decodes with the right format, length and content.

use nomusic_audio_io::{read_all, Decoder};

use crate::util::{best_lag, correlation_at, fixture, resample, source, SOURCE_FRAMES};

/// Lossy content must correlate at least this well with the source after alignment.
const MIN_CORRELATION: f64 = 0.9;
/// A decoded channel may correlate at most this well with the *other* source channel
/// (chirp vs. 440 Hz tone are nearly orthogonal); catches swapped channels.
const MAX_CROSS_CORRELATION: f64 = 0.3;
/// MP3 and Vorbis are trimmed to the exact length by symphonia (LAME/Xing gapless info, Ogg
/// granule positions); allow one MP3 granule in case an encoder writes no gapless info.
const GAPLESS_TOLERANCE_FRAMES: usize = 1152;
/// Largest encoder delay searched for when aligning lossy decodes (wide enough to catch AAC's
/// 1024 priming frames if they were not trimmed).
const MAX_SEARCH_LAG: isize = 2500;

fn assert_format(name: &str, rate: u32, channels: usize, codec: &str) -> Vec<Vec<f32>> {
    let (info, planar) = read_all(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(info.sample_rate_hz, rate, "{name}: {info:?}");
    assert_eq!(info.channels, channels, "{name}: {info:?}");
    assert_eq!(info.codec, codec, "{name}: {info:?}");
    assert_eq!(planar.len(), channels, "{name}");
    assert!(
        planar.iter().all(|p| p.len() == planar[0].len()),
        "{name}: ragged planes"
    );
    planar
}

fn assert_exact(name: &str, decoded: &[Vec<f32>], frames: usize) {
    let src = source();
    for ch in 0..2 {
        assert_eq!(decoded[ch].len(), frames, "{name} ch{ch}: length");
        assert_eq!(
            decoded[ch][..],
            src[ch][..frames],
            "{name} ch{ch}: samples differ"
        );
    }
}

/// Lossy stereo at the source rate: aligned correlation per channel, no channel swap.
/// Returns the lag (decoded frames of delay before the source starts).
fn assert_similar_stereo(name: &str, decoded: &[Vec<f32>]) -> isize {
    let src = source();
    // The chirp (left) has one sharp correlation peak; use it to find the codec delay.
    let (lag, corr_l) = best_lag(&decoded[0], &src[0], MAX_SEARCH_LAG);
    let corr_r = correlation_at(&decoded[1], &src[1], lag);
    assert!(
        corr_l > MIN_CORRELATION,
        "{name}: left correlation {corr_l:.3} at lag {lag}"
    );
    assert!(
        corr_r > MIN_CORRELATION,
        "{name}: right correlation {corr_r:.3} at lag {lag}"
    );
    let cross_l = correlation_at(&decoded[0], &src[1], lag).abs();
    let cross_r = correlation_at(&decoded[1], &src[0], lag).abs();
    assert!(
        cross_l < MAX_CROSS_CORRELATION && cross_r < MAX_CROSS_CORRELATION,
        "{name}: channels look swapped (cross correlation {cross_l:.3}, {cross_r:.3})"
    );
    lag
}

#[test]
fn wav_is_exact() {
    let decoded = assert_format("source.wav", 44_100, 2, "pcm_s16le");
    assert_exact("wav", &decoded, SOURCE_FRAMES);
}

#[test]
fn flac_is_exact() {
    let decoded = assert_format("flac.flac", 44_100, 2, "flac");
    assert_exact("flac", &decoded, SOURCE_FRAMES);
}

#[test]
fn aiff_is_exact() {
    let decoded = assert_format("aiff.aiff", 44_100, 2, "pcm_s16be");
    assert_exact("aiff", &decoded, SOURCE_FRAMES / 2);
}

#[test]
fn mp3_length_and_content() {
    let decoded = assert_format("mp3.mp3", 44_100, 2, "mp3");
    let len = decoded[0].len();
    assert!(
        len.abs_diff(SOURCE_FRAMES) <= GAPLESS_TOLERANCE_FRAMES,
        "mp3: {len} frames"
    );
    let lag = assert_similar_stereo("mp3", &decoded);
    assert!(
        lag.abs() <= 2,
        "mp3: gapless trimming should leave no delay, lag {lag}"
    );
}

#[test]
fn ogg_vorbis_length_and_content() {
    let decoded = assert_format("vorbis.ogg", 44_100, 2, "vorbis");
    let len = decoded[0].len();
    assert!(
        len.abs_diff(SOURCE_FRAMES) <= GAPLESS_TOLERANCE_FRAMES,
        "vorbis: {len} frames"
    );
    let lag = assert_similar_stereo("vorbis", &decoded);
    assert!(lag.abs() <= 2, "vorbis: lag {lag}");
}

/// AAC in MP4: the edit list says to skip the encoder's 1024 priming frames and to drop the
/// padding of the last packet, so the decode has the source's exact length and no delay.
fn assert_aac_gapless(name: &str) {
    let decoded = assert_format(name, 44_100, 2, "aac");
    assert_eq!(decoded[0].len(), SOURCE_FRAMES, "{name}: length");
    let lag = assert_similar_stereo(name, &decoded);
    assert!(lag.abs() <= 1, "{name}: priming not trimmed, lag {lag}");
    let d = Decoder::open(&fixture(name)).unwrap();
    assert_eq!(d.info().frames, Some(SOURCE_FRAMES as u64), "{name}");
}

#[test]
fn m4a_aac_gapless_exact_length_and_aligned() {
    assert_aac_gapless("aac.m4a");
}

#[test]
fn mp4_video_aac_track_gapless_exact_length_and_aligned() {
    assert_aac_gapless("video-aac.mp4");
}

#[test]
fn mkv_video_vorbis_track() {
    let decoded = assert_format("video-vorbis.mkv", 44_100, 2, "vorbis");
    let len = decoded[0].len();
    assert!(
        len.abs_diff(SOURCE_FRAMES) <= 2 * GAPLESS_TOLERANCE_FRAMES,
        "mkv: {len} frames"
    );
    assert_similar_stereo("mkv video", &decoded);
}

/// Opus decodes at 48 kHz: compare with the source resampled to 48 kHz. After pre-skip the
/// decode must line up with the source to within a sample, and have exactly its length.
fn assert_opus(name: &str, channels: usize, end_trimmed: bool) {
    let decoded = assert_format(name, 48_000, channels, "opus");
    let src = source();
    let expected_frames = SOURCE_FRAMES * 48_000 / 44_100;
    let len = decoded[0].len();
    if end_trimmed {
        assert_eq!(len, expected_frames, "{name}: length");
    } else {
        assert!(
            len >= expected_frames && len < expected_frames + 960,
            "{name}: {len}"
        );
    }
    let refs: Vec<Vec<f32>> = if channels == 2 {
        src.iter().map(|c| resample(c, 44_100, 48_000)).collect()
    } else {
        let mono: Vec<f32> = src[0]
            .iter()
            .zip(&src[1])
            .map(|(l, r)| 0.5 * (l + r))
            .collect();
        vec![resample(&mono, 44_100, 48_000)]
    };
    let (lag, corr) = best_lag(&decoded[0], &refs[0], 200);
    assert!(
        lag.abs() <= 1,
        "{name}: pre-skip not honoured, lag {lag} (corr {corr:.3})"
    );
    assert!(corr > MIN_CORRELATION, "{name}: correlation {corr:.3}");
    if channels == 2 {
        let corr_r = correlation_at(&decoded[1], &refs[1], lag);
        assert!(
            corr_r > MIN_CORRELATION,
            "{name}: right correlation {corr_r:.3}"
        );
        let cross = correlation_at(&decoded[0], &refs[1], lag).abs();
        assert!(
            cross < MAX_CROSS_CORRELATION,
            "{name}: channels swapped? {cross:.3}"
        );
    }
}

#[test]
fn ogg_opus_stereo_aligned_and_exact_length() {
    assert_opus("opus-stereo.opus", 2, true);
}

#[test]
fn ogg_opus_mono_aligned_and_exact_length() {
    assert_opus("opus-mono.opus", 1, true);
}

#[test]
fn webm_opus_audio_only_aligned() {
    assert_opus("opus.webm", 2, true);
}

#[test]
fn webm_video_opus_track_aligned() {
    assert_opus("video-opus.webm", 2, true);
}

#[test]
fn info_reports_container_and_length() {
    let d = Decoder::open(&fixture("flac.flac")).unwrap();
    assert_eq!(d.info().frames, Some(SOURCE_FRAMES as u64));
    assert_eq!(d.info().container, "flac");
    let d = Decoder::open(&fixture("opus-stereo.opus")).unwrap();
    assert_eq!(d.info().container, "ogg");
    assert_eq!(d.info().frames, Some(24_000));
    let d = Decoder::open(&fixture("video-aac.mp4")).unwrap();
    assert_eq!(d.info().container, "isomp4");
}

/// A tiny deterministic generator for chunk sizes.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, max: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize % max) + 1
    }
}

#[test]
fn streaming_in_random_chunks_equals_read_all() {
    let names = [
        "source.wav",
        "flac.flac",
        "mp3.mp3",
        "vorbis.ogg",
        "aac.m4a",
        "video-aac.mp4",
        "opus-stereo.opus",
        "opus-mono.opus",
        "opus.webm",
        "video-vorbis.mkv",
    ];
    let mut rng = Lcg(7);
    for name in names {
        let (info, planar) = read_all(&fixture(name)).unwrap();
        let mut decoder = Decoder::open(&fixture(name)).unwrap();
        let mut streamed = Vec::new();
        loop {
            let max = rng.next(3000);
            let before = streamed.len();
            let got = decoder.read(&mut streamed, max).unwrap();
            assert_eq!(streamed.len() - before, got * info.channels, "{name}");
            if got == 0 {
                break;
            }
            assert!(got <= max, "{name}: {got} > {max}");
        }
        // Further reads stay at the end.
        assert_eq!(decoder.read(&mut streamed, 100).unwrap(), 0, "{name}");
        let frames = planar[0].len();
        assert_eq!(
            streamed.len(),
            frames * info.channels,
            "{name}: total length"
        );
        for (i, frame) in streamed.chunks_exact(info.channels).enumerate() {
            for (ch, &s) in frame.iter().enumerate() {
                assert_eq!(s, planar[ch][i], "{name}: frame {i} ch {ch}");
            }
        }
    }
}

#[test]
fn read_appends_without_clearing() {
    let mut decoder = Decoder::open(&fixture("source.wav")).unwrap();
    let mut buf = vec![9.0f32; 3];
    assert_eq!(decoder.read(&mut buf, 10).unwrap(), 10);
    assert_eq!(buf.len(), 3 + 20);
    assert_eq!(&buf[..3], &[9.0, 9.0, 9.0]);
}

#[test]
fn decoder_and_encoder_can_move_to_worker_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Decoder>();
    assert_send::<nomusic_audio_io::Encoder>();
}
