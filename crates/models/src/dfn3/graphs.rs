//! Loading DeepFilterNet3's three ONNX graphs as pulsed (frame-by-frame) tract models.
//!
//! The graphs are exported for a whole sequence of `S` frames; their time convolutions look
//! back (and, through padding, ahead) over several frames. Like libDF's `tract.rs`, we declare
//! `S` as the streaming axis and let tract-pulse turn every convolution into a stateful op that
//! consumes one frame per call and keeps its own history.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_pulse::internal::ToDim;
use tract_pulse::model::{PulsedModel, PulsedModelExt};

/// One pulsed graph, ready to run, and the delay (in frames) tract reports on its first output.
pub struct PulsedGraph {
    pub plan: Arc<TypedSimplePlan>,
    pub delay_frames: usize,
}

/// Dimension of an input: fixed, or the streaming axis.
#[derive(Clone, Copy)]
pub enum Dim {
    Fixed(usize),
    Stream,
}

/// Loads `onnx` with named inputs of the given shapes and pulses it one frame at a time.
pub fn pulsed(
    onnx: &[u8],
    inputs: &[(&str, &[Dim])],
    outputs: &[&str],
) -> TractResult<PulsedGraph> {
    let mut model = tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .model_for_read(&mut &*onnx)?;
    let s = model.symbols.sym("S");
    for (ix, (_, shape)) in inputs.iter().enumerate() {
        let dims: TVec<TDim> = shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => n.to_dim(),
                Dim::Stream => s.to_dim(),
            })
            .collect();
        model = model.with_input_fact(ix, f32::fact(dims).into())?;
    }
    model = model.with_input_names(inputs.iter().map(|(n, _)| *n))?;
    model.select_outputs_by_name(outputs.iter().copied())?;
    model.analyse(true)?;
    let mut typed = model.into_typed()?;
    typed.declutter()?;
    let pulsed = PulsedModel::new(&typed, s, &1usize.to_dim())?;
    let delay_frames = pulsed
        .output_fact(0)?
        .stream
        .as_ref()
        .map(|st| st.delay)
        .unwrap_or(0);
    let typed = pulsed.into_typed()?.into_optimized()?;
    Ok(PulsedGraph {
        plan: typed.into_runnable()?,
        delay_frames,
    })
}
