//! The one interface every model implements: a streaming, mono, hop-by-hop speech extractor.
//!
//! The engine (files, live, server) only ever talks to a `Separator`. A model consumes exactly
//! `hop_frames()` input frames per call and produces the same number of speech frames; the
//! speech for input frame `n` comes out at output frame `n + latency_frames()`.

use crate::ModelError;

/// A streaming speech/music separator for one mono channel at `sample_rate_hz()`.
///
/// `process_hop` must not allocate on the hot path once the model is built; per-stream state
/// lives in the implementing struct, so one instance serves exactly one channel of one stream.
pub trait Separator: Send {
    /// The rate the model runs at (audio is resampled to it by the engine).
    fn sample_rate_hz(&self) -> u32;
    /// Frames consumed and produced by one `process_hop` call.
    fn hop_frames(&self) -> usize;
    /// Algorithmic delay in frames: speech for input frame `n` is output frame `n + latency`.
    fn latency_frames(&self) -> usize;
    /// Process one hop: `input.len() == output.len() == hop_frames()`; `output` receives speech.
    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), ModelError>;
    /// Forget all stream state, as if newly built.
    fn reset(&mut self);
}

/// Checks that both buffers of a `process_hop` call hold exactly `hop` frames.
pub(crate) fn check_hop(hop: usize, input: &[f32], output: &[f32]) -> Result<(), ModelError> {
    match [input.len(), output.len()]
        .into_iter()
        .find(|&len| len != hop)
    {
        Some(got) => Err(ModelError::HopLength { expected: hop, got }),
        None => Ok(()),
    }
}
