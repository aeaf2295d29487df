//! DTLN: two-stage LSTM denoiser at 16 kHz on tract.
//!
//! Per hop of 128 samples, following DTLN's `real_time_processing_onnx.py`: the last 512 input
//! samples are transformed (no window), stage 1 predicts a mask from the magnitudes, the masked
//! spectrum is inverted, stage 2 maps that 512-sample block to a new block, and the blocks are
//! overlap-added with hop 128 (no window). A sample leaves the overlap-add 512 - 128 = 384
//! samples after it entered, which is the latency.
//!
//! Allocation: `new` builds everything. Per hop, tract allocates the output tensors of both
//! graphs (mask, LSTM states, time block) and its intermediate values; the input tensors are
//! reused in place and the LSTM states are fed back without copying.

use std::path::Path;
use std::sync::Arc;

use nomusic_dsp::stft::{rect_window, Complex32, StftAnalysis, StftSynthesis};
use realfft::{ComplexToReal, RealFftPlanner};
use tract_onnx::prelude::*;

use crate::separator::check_hop;
use crate::{ModelError, Separator};

const MODEL: &str = "dtln";
const SAMPLE_RATE_HZ: u32 = 16_000;
const BLOCK_LEN: usize = 512;
const HOP_LEN: usize = 128;
const BINS: usize = BLOCK_LEN / 2 + 1;
const STATE_SHAPE: [usize; 4] = [1, 2, 128, 2];

type Plan = Arc<TypedSimplePlan>;

/// The DTLN separator: one mono 16 kHz stream.
pub struct Dtln {
    stage1: TypedSimpleState,
    stage2: TypedSimpleState,
    analysis: StftAnalysis,
    overlap_add: StftSynthesis,
    ifft: Arc<dyn ComplexToReal<f32>>,
    ifft_scratch: Vec<Complex32>,
    spectrum: Vec<Complex32>,
    block: Vec<f32>,
    /// Stage 1 input `[1, 1, 257]`, reused every hop.
    magnitude: Arc<Tensor>,
    /// Stage 2 input `[1, 1, 512]`, reused every hop.
    time_block: Arc<Tensor>,
    lstm1: TValue,
    lstm2: TValue,
    zero_state: TValue,
}

fn load(path: &Path, inputs: [&[usize]; 2]) -> Result<Plan, ModelError> {
    let invalid = |e: TractError| ModelError::Invalid {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    };
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .map_err(invalid)?;
    for (ix, shape) in inputs.iter().enumerate() {
        model = model
            .with_input_fact(ix, f32::fact(shape.iter().copied()).into())
            .map_err(invalid)?;
    }
    let model = model.into_optimized().map_err(invalid)?;
    model.into_runnable().map_err(invalid)
}

fn inference(e: TractError) -> ModelError {
    ModelError::Inference {
        model: MODEL.into(),
        reason: format!("{e:#}"),
    }
}

/// Mutable f32 view of a tensor we hold the only reference to (cloned if tract kept one).
fn exclusive(t: &mut Arc<Tensor>) -> &mut Tensor {
    Arc::make_mut(t)
}

fn write(t: &mut Arc<Tensor>, data: impl IntoIterator<Item = f32>) -> Result<(), ModelError> {
    let mut view = exclusive(t).try_as_plain_ram_mut().map_err(inference)?;
    for (d, s) in view
        .as_slice_mut::<f32>()
        .map_err(inference)?
        .iter_mut()
        .zip(data)
    {
        *d = s;
    }
    Ok(())
}

fn read(t: &TValue) -> Result<&[f32], ModelError> {
    t.try_as_plain_ram()
        .and_then(|v| v.as_slice::<f32>())
        .map_err(inference)
}

impl Dtln {
    /// Loads the two DTLN stages (`model_1.onnx`: magnitude mask, `model_2.onnx`: time stage).
    pub fn from_files(model_1: &Path, model_2: &Path) -> Result<Self, ModelError> {
        let stage1 = load(model_1, [&[1, 1, BINS], &STATE_SHAPE])?;
        let stage2 = load(model_2, [&[1, 1, BLOCK_LEN], &STATE_SHAPE])?;
        let state = |p: &Plan, path: &Path| {
            TypedSimpleState::new(p).map_err(|e| ModelError::Invalid {
                path: path.to_path_buf(),
                reason: format!("{e:#}"),
            })
        };
        let zero = |shape: &[usize]| Tensor::zero::<f32>(shape).map_err(inference);
        let zero_state: TValue = zero(&STATE_SHAPE)?.into();
        let ifft = RealFftPlanner::<f32>::new().plan_fft_inverse(BLOCK_LEN);
        let ifft_scratch = ifft.make_scratch_vec();
        let stft_err = |e: nomusic_dsp::stft::StftError| ModelError::Inference {
            model: MODEL.into(),
            reason: e.to_string(),
        };
        Ok(Self {
            stage1: state(&stage1, model_1)?,
            stage2: state(&stage2, model_2)?,
            analysis: StftAnalysis::new(BLOCK_LEN, HOP_LEN, rect_window(BLOCK_LEN), 1.0)
                .map_err(stft_err)?,
            overlap_add: StftSynthesis::new(BLOCK_LEN, HOP_LEN, rect_window(BLOCK_LEN), 1.0)
                .map_err(stft_err)?,
            ifft,
            ifft_scratch,
            spectrum: vec![Complex32::default(); BINS],
            block: vec![0.0; BLOCK_LEN],
            magnitude: Arc::new(zero(&[1, 1, BINS])?),
            time_block: Arc::new(zero(&[1, 1, BLOCK_LEN])?),
            lstm1: zero_state.clone(),
            lstm2: zero_state.clone(),
            zero_state,
        })
    }

    fn step(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), ModelError> {
        self.analysis.process(input, &mut self.spectrum);
        write(&mut self.magnitude, self.spectrum.iter().map(|c| c.norm()))?;

        let mut out = self
            .stage1
            .run(tvec![
                self.magnitude.clone().into_tvalue(),
                self.lstm1.clone()
            ])
            .map_err(inference)?;
        self.lstm1 = out.pop().ok_or_else(|| inference(anyhow_missing()))?;
        let mask = out.pop().ok_or_else(|| inference(anyhow_missing()))?;
        for (c, &m) in self.spectrum.iter_mut().zip(read(&mask)?) {
            *c *= m;
        }
        self.spectrum[0].im = 0.0;
        self.spectrum[BINS - 1].im = 0.0;
        // Lengths are fixed at construction, so the transform cannot fail.
        let _ = self.ifft.process_with_scratch(
            &mut self.spectrum,
            &mut self.block,
            &mut self.ifft_scratch,
        );
        let norm = 1.0 / BLOCK_LEN as f32;
        write(&mut self.time_block, self.block.iter().map(|x| x * norm))?;

        let mut out = self
            .stage2
            .run(tvec![
                self.time_block.clone().into_tvalue(),
                self.lstm2.clone()
            ])
            .map_err(inference)?;
        self.lstm2 = out.pop().ok_or_else(|| inference(anyhow_missing()))?;
        let estimate = out.pop().ok_or_else(|| inference(anyhow_missing()))?;
        self.overlap_add.process_frame(read(&estimate)?, output);
        Ok(())
    }
}

fn anyhow_missing() -> TractError {
    TractError::msg("model returned fewer outputs than expected")
}

impl Separator for Dtln {
    fn sample_rate_hz(&self) -> u32 {
        SAMPLE_RATE_HZ
    }

    fn hop_frames(&self) -> usize {
        HOP_LEN
    }

    fn latency_frames(&self) -> usize {
        BLOCK_LEN - HOP_LEN
    }

    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), ModelError> {
        check_hop(HOP_LEN, input, output)?;
        self.step(input, output)
    }

    fn reset(&mut self) {
        self.analysis.reset();
        self.overlap_add.reset();
        self.lstm1 = self.zero_state.clone();
        self.lstm2 = self.zero_state.clone();
    }
}
