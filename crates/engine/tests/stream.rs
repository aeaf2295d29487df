//! The streaming pipeline: exact alignment across resampling, chunk-size independence, stems.
//!
//! These tests use a transparent stand-in model (a pure delay with a gain, at a rate of our
//! choosing) so that what the engine adds is all that is measured; the real models are tested
//! end to end in the CLI tests.

use nomusic_engine::{MixOptions, StreamSeparator};
use nomusic_models::{ModelError, Separator};
use proptest::prelude::*;

/// Output = `gain` x input delayed by `latency` frames.
struct DelayGain {
    rate: u32,
    hop: usize,
    latency: usize,
    gain: f32,
    line: Vec<f32>,
}

impl DelayGain {
    fn boxed(rate: u32, hop: usize, latency: usize, gain: f32) -> Box<dyn Separator> {
        Box::new(Self {
            rate,
            hop,
            latency,
            gain,
            line: vec![0.0; latency],
        })
    }
}

impl Separator for DelayGain {
    fn sample_rate_hz(&self) -> u32 {
        self.rate
    }
    fn hop_frames(&self) -> usize {
        self.hop
    }
    fn latency_frames(&self) -> usize {
        self.latency
    }
    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), ModelError> {
        self.line.extend_from_slice(input);
        for (o, x) in output.iter_mut().zip(self.line.drain(..self.hop)) {
            *o = self.gain * x;
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.line = vec![0.0; self.latency];
    }
}

fn run(
    model_rate: u32,
    rate: u32,
    channels: usize,
    input: &[f32],
    chunks: &[usize],
    options: MixOptions,
) -> (Vec<f32>, Vec<f32>) {
    let factory = move || Ok(DelayGain::boxed(model_rate, 160, 333, 0.5));
    let mut sep = StreamSeparator::new(&factory, rate, channels, options).unwrap();
    let (mut speech, mut music) = (Vec::new(), Vec::new());
    let mut at = 0;
    let mut i = 0;
    while at < input.len() {
        let frames = chunks[i % chunks.len()].max(1);
        let end = (at + frames * channels).min(input.len());
        sep.process(&input[at..end], &mut speech, Some(&mut music))
            .unwrap();
        at = end;
        i += 1;
    }
    sep.finish(&mut speech, Some(&mut music)).unwrap();
    (speech, music)
}

fn peak_index(x: &[f32], channels: usize, ch: usize) -> usize {
    x.iter()
        .skip(ch)
        .step_by(channels)
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap()
        .0
}

#[test]
fn impulse_comes_out_at_the_same_sample_at_every_rate() {
    for (model_rate, rate) in [
        (16_000, 16_000),
        (16_000, 44_100),
        (48_000, 44_100),
        (16_000, 48_000),
        (48_000, 22_050),
    ] {
        let frames = rate as usize;
        let mut x = vec![0.0f32; frames];
        let at = 12_345;
        x[at] = 1.0;
        let (speech, music) = run(
            model_rate,
            rate,
            1,
            &x,
            &[4096],
            MixOptions {
                music_stem: true,
                ..Default::default()
            },
        );
        assert_eq!(speech.len(), x.len(), "{model_rate}/{rate}: length");
        assert_eq!(music.len(), x.len());
        assert_eq!(
            peak_index(&speech, 1, 0),
            at,
            "{model_rate} Hz model, {rate} Hz stream"
        );
    }
}

#[test]
fn stereo_stays_stereo_and_channels_do_not_mix() {
    let rate = 44_100;
    let frames = 30_000;
    let mut x = vec![0.0f32; frames * 2];
    x[2 * 10_000] = 1.0; // left impulse
    x[2 * 20_000 + 1] = -1.0; // right impulse
    let (speech, _) = run(16_000, rate, 2, &x, &[1000, 3], MixOptions::default());
    assert_eq!(speech.len(), x.len());
    assert_eq!(peak_index(&speech, 2, 0), 10_000);
    assert_eq!(peak_index(&speech, 2, 1), 20_000);
    assert!(
        speech[2 * 10_000] > 0.0 && speech[2 * 20_000 + 1] < 0.0,
        "polarity kept"
    );
}

#[test]
fn music_stem_is_mixture_minus_speech_and_gain_ducks() {
    let rate = 16_000;
    let x: Vec<f32> = (0..20_000)
        .map(|i| ((i as f32) * 0.05).sin() * 0.5)
        .collect();
    let (speech, music) = run(
        16_000,
        rate,
        1,
        &x,
        &[777],
        MixOptions {
            music_stem: true,
            ..Default::default()
        },
    );
    for i in 0..x.len() {
        assert!((speech[i] + music[i] - x[i]).abs() < 1e-6);
    }
    // The stand-in model halves its input: speech = x/2 once aligned.
    for i in 1000..19_000 {
        assert!((speech[i] - 0.5 * x[i]).abs() < 1e-5, "at {i}");
    }
    let g = 0.2;
    let (ducked, _) = run(
        16_000,
        rate,
        1,
        &x,
        &[777],
        MixOptions {
            music_gain: g,
            music_stem: false,
        },
    );
    for i in 1000..19_000 {
        let want = speech[i] + g * music[i];
        assert!((ducked[i] - want).abs() < 1e-6, "at {i}");
    }
}

#[test]
fn resampled_band_limited_signal_is_preserved() {
    // 1 kHz tone at 44.1 kHz through a 16 kHz model that halves it: back aligned at half level.
    let rate = 44_100;
    let x: Vec<f32> = (0..rate)
        .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate as f32).sin() * 0.5)
        .collect();
    let (speech, _) = run(16_000, rate, 1, &x, &[512], MixOptions::default());
    let (a, b) = (&x[5000..40_000], &speech[5000..40_000]);
    let err: f32 = a.iter().zip(b).map(|(p, q)| (0.5 * p - q).powi(2)).sum();
    let sig: f32 = a.iter().map(|p| (0.5 * p).powi(2)).sum();
    let snr = 10.0 * (sig / err).log10();
    // Two passes through the Kaiser (beta 5) FIR resampler: about 0.2% passband ripple.
    assert!(snr > 50.0, "SNR {snr} dB");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn streaming_equals_whole_input(chunks in proptest::collection::vec(1usize..5000, 1..12), stereo in any::<bool>()) {
        let channels = if stereo { 2 } else { 1 };
        let frames = 25_000;
        let x: Vec<f32> = (0..frames * channels).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.8).collect();
        let opts = MixOptions { music_stem: true, music_gain: 0.1 };
        let (whole_s, whole_m) = run(16_000, 44_100, channels, &x, &[1 << 30], opts);
        let (part_s, part_m) = run(16_000, 44_100, channels, &x, &chunks, opts);
        prop_assert_eq!(whole_s, part_s);
        prop_assert_eq!(whole_m, part_m);
    }
}
