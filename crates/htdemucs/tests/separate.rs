//! `Separator` on the tiny fixture model: lengths, streaming output equal to the collected
//! output, cancellation.

use candle_core::Device;
use nomusic_htdemucs::{
    Checkpoint, Error, FrameSource, MixStatsBuilder, SeparateOptions, Separator,
};

fn separator() -> Separator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tiny.safetensors");
    Separator::new(
        Checkpoint::read(path)
            .unwrap()
            .into_model(&Device::Cpu)
            .unwrap(),
    )
}

fn input(frames: usize) -> Vec<Vec<f32>> {
    (0..2)
        .map(|c| {
            (0..frames)
                .map(|i| (((i * 7 + c * 13) % 101) as f32 / 101.0 - 0.5) * 0.4)
                .collect()
        })
        .collect()
}

#[test]
fn output_has_input_length_and_streams_in_order() {
    let sep = separator();
    let frames = sep.segment_frames() * 3 + 123; // several overlapping segments
    let x = input(frames);
    let chans: Vec<&[f32]> = x.iter().map(|c| c.as_slice()).collect();
    let opts = SeparateOptions::default();
    let stems = sep.separate(&chans, &opts, |_| true).unwrap();
    assert_eq!(stems.names, ["drums", "bass", "other", "vocals"]);
    for stem in &stems.audio {
        assert_eq!(stem.len(), 2);
        assert!(stem
            .iter()
            .all(|c| c.len() == frames && c.iter().all(|v| v.is_finite())));
    }
    let mut next = 0;
    let mut streamed = vec![vec![Vec::new(); 2]; 4];
    sep.separate_streaming(
        &chans,
        &opts,
        |_| true,
        |start, block| {
            assert_eq!(start, next);
            next += block[0][0].len();
            for (s, b) in streamed.iter_mut().zip(block) {
                for (c, bc) in s.iter_mut().zip(b) {
                    c.extend_from_slice(bc);
                }
            }
        },
    )
    .unwrap();
    assert_eq!(next, frames);
    assert_eq!(streamed, stems.audio);
}

#[test]
fn shifts_keep_the_length() {
    let sep = separator();
    let x = input(sep.segment_frames() + 500);
    let chans: Vec<&[f32]> = x.iter().map(|c| c.as_slice()).collect();
    let opts = SeparateOptions {
        shifts: 2,
        ..Default::default()
    };
    let stems = sep.separate(&chans, &opts, |_| true).unwrap();
    assert!(stems.audio.iter().flatten().all(|c| c.len() == x[0].len()));
}

#[test]
fn progress_can_cancel() {
    let sep = separator();
    let x = input(sep.segment_frames() * 2);
    let chans: Vec<&[f32]> = x.iter().map(|c| c.as_slice()).collect();
    let err = sep
        .separate(&chans, &SeparateOptions::default(), |_| false)
        .err();
    assert!(matches!(err, Some(Error::Cancelled)));
}

#[test]
fn wrong_channel_count_is_an_input_error() {
    let sep = separator();
    let mono = vec![0.0f32; 1000];
    let err = sep
        .separate(&[&mono], &SeparateOptions::default(), |_| true)
        .err();
    assert!(matches!(err, Some(Error::Input(_))));
}

/// A source that hands out at most 1000 frames per read, as a decoder would.
struct Trickle<'a> {
    x: &'a [Vec<f32>],
    at: usize,
}

impl FrameSource for Trickle<'_> {
    fn read(&mut self, out: &mut [Vec<f32>], max_frames: usize) -> nomusic_htdemucs::Result<usize> {
        let n = max_frames.min(1000).min(self.x[0].len() - self.at);
        for (o, c) in out.iter_mut().zip(self.x) {
            o.extend_from_slice(&c[self.at..self.at + n]);
        }
        self.at += n;
        Ok(n)
    }
}

#[test]
fn a_source_read_in_pieces_gives_the_in_memory_result() {
    let sep = separator();
    let x = input(sep.segment_frames() * 2 + 777);
    let chans: Vec<&[f32]> = x.iter().map(|c| c.as_slice()).collect();
    for shifts in [0, 2] {
        let opts = SeparateOptions {
            shifts,
            ..Default::default()
        };
        let whole = sep.separate(&chans, &opts, |_| true).unwrap();
        let mut stats = MixStatsBuilder::default();
        stats.push(&chans);
        let mut got = vec![vec![Vec::new(); 2]; 4];
        let mut next = 0;
        let mut last = None;
        sep.separate_source(
            &mut Trickle { x: &x, at: 0 },
            2,
            x[0].len(),
            stats.finish(),
            &opts,
            |p| {
                last = Some(p);
                true
            },
            |start, block| {
                assert_eq!(start, next);
                next += block[0][0].len();
                for (s, b) in got.iter_mut().zip(block) {
                    for (c, bc) in s.iter_mut().zip(b) {
                        c.extend_from_slice(bc);
                    }
                }
            },
        )
        .unwrap();
        let last = last.unwrap();
        assert_eq!(last.segments_done, last.segments_total);
        assert_eq!(last.segments_total, sep.segments_for(x[0].len(), &opts));
        for (a, b) in got.iter().flatten().zip(whole.audio.iter().flatten()) {
            assert_eq!(a.len(), b.len());
            let err = a
                .iter()
                .zip(b)
                .map(|(u, v)| (u - v).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-5, "shifts {shifts}: {err}");
        }
    }
}
