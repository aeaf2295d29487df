//! `Separator` on the tiny fixture model: lengths, streaming output equal to the collected
//! output, cancellation.

use candle_core::Device;
use nomusic_htdemucs::{Checkpoint, Error, SeparateOptions, Separator};

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
