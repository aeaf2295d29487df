//! GTCRN: streaming grouped temporal convolutional recurrent network at 16 kHz on tract.
//!
//! The streaming export takes one STFT frame (`mix [1, 257, 1, 2]`, real and imaginary parts)
//! and three caches (convolution history, temporal-recurrent-attention state, inter-frame RNN
//! state), and returns the enhanced frame plus the updated caches. Frames are causal: each hop of
//! 256 samples completes a 512-sample frame of the last 512 inputs, analysed and synthesised with
//! a square-root periodic Hann window (power complementary at hop 256). The model has no
//! lookahead, so the latency is the STFT's, 512 - 256 = 256 samples.
//!
//! Allocation: `new` builds everything. Per hop, tract allocates the output tensors (frame and
//! caches) and its intermediate values, plus a fresh run state: with tract-onnx 0.23.9 a
//! `SimpleState` reused across runs of this graph leaks recurrent state from one run into the
//! next (identical inputs give different outputs on the second run), so every hop runs on a
//! state spawned from the plan. The frame input is reused in place and the caches are fed back
//! without copying.

use std::path::Path;
use std::sync::Arc;

use nomusic_dsp::stft::{sqrt_hann_window, Complex32, StftAnalysis, StftSynthesis};
use tract_onnx::prelude::*;

use crate::separator::check_hop;
use crate::{ModelError, Separator};

const MODEL: &str = "gtcrn";
const SAMPLE_RATE_HZ: u32 = 16_000;
const FFT_LEN: usize = 512;
const HOP_LEN: usize = 256;
const BINS: usize = FFT_LEN / 2 + 1;
const MIX_SHAPE: [usize; 4] = [1, BINS, 1, 2];
const CACHE_SHAPES: [&[usize]; 3] = [&[2, 1, 16, 16, 33], &[2, 3, 1, 1, 16], &[2, 1, 33, 16]];

/// The GTCRN separator: one mono 16 kHz stream.
pub struct Gtcrn {
    plan: Arc<TypedSimplePlan>,
    analysis: StftAnalysis,
    synthesis: StftSynthesis,
    spectrum: Vec<Complex32>,
    /// Model input `[1, 257, 1, 2]`, reused every hop.
    mix: Arc<Tensor>,
    caches: [TValue; 3],
    zero_caches: [TValue; 3],
}

fn inference(e: TractError) -> ModelError {
    ModelError::Inference {
        model: MODEL.into(),
        reason: format!("{e:#}"),
    }
}

fn missing() -> ModelError {
    ModelError::Inference {
        model: MODEL.into(),
        reason: "the model returned fewer outputs than expected".into(),
    }
}

impl Gtcrn {
    /// Loads the streaming export (`gtcrn.onnx` or `gtcrn_simple.onnx`).
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
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
            .map_err(invalid)?
            .with_input_fact(0, f32::fact(MIX_SHAPE).into())
            .map_err(invalid)?;
        for (ix, shape) in CACHE_SHAPES.iter().enumerate() {
            model = model
                .with_input_fact(ix + 1, f32::fact(shape.iter().copied()).into())
                .map_err(invalid)?;
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(invalid)?;
        let zero = |shape: &[usize]| -> Result<TValue, ModelError> {
            Ok(Tensor::zero::<f32>(shape).map_err(inference)?.into())
        };
        let zero_caches = [
            zero(CACHE_SHAPES[0])?,
            zero(CACHE_SHAPES[1])?,
            zero(CACHE_SHAPES[2])?,
        ];
        let window = sqrt_hann_window(FFT_LEN);
        let stft_err = |e: nomusic_dsp::stft::StftError| ModelError::Inference {
            model: MODEL.into(),
            reason: e.to_string(),
        };
        Ok(Self {
            plan,
            analysis: StftAnalysis::new(FFT_LEN, HOP_LEN, window.clone(), 1.0).map_err(stft_err)?,
            synthesis: StftSynthesis::new(FFT_LEN, HOP_LEN, window, 1.0 / FFT_LEN as f32)
                .map_err(stft_err)?,
            spectrum: vec![Complex32::default(); BINS],
            mix: Arc::new(Tensor::zero::<f32>(&MIX_SHAPE).map_err(inference)?),
            caches: zero_caches.clone(),
            zero_caches,
        })
    }

    fn step(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), ModelError> {
        self.analysis.process(input, &mut self.spectrum);
        {
            let mut view = Arc::make_mut(&mut self.mix)
                .try_as_plain_ram_mut()
                .map_err(inference)?;
            let mix = view.as_slice_mut::<f32>().map_err(inference)?;
            for (m, c) in mix.chunks_exact_mut(2).zip(&self.spectrum) {
                m[0] = c.re;
                m[1] = c.im;
            }
        }
        let [c0, c1, c2] = &self.caches;
        let mut out = self
            .plan
            .run(tvec![
                self.mix.clone().into_tvalue(),
                c0.clone(),
                c1.clone(),
                c2.clone()
            ])
            .map_err(inference)?;
        if out.len() < 4 {
            return Err(missing());
        }
        let mut outs = out.drain(..);
        let enh = outs.next().ok_or_else(missing)?;
        for c in self.caches.iter_mut() {
            *c = outs.next().ok_or_else(missing)?;
        }
        let enh = enh
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .map_err(inference)?;
        for (c, e) in self.spectrum.iter_mut().zip(enh.chunks_exact(2)) {
            *c = Complex32::new(e[0], e[1]);
        }
        self.synthesis.process(&self.spectrum, output);
        Ok(())
    }
}

impl Separator for Gtcrn {
    fn sample_rate_hz(&self) -> u32 {
        SAMPLE_RATE_HZ
    }

    fn hop_frames(&self) -> usize {
        HOP_LEN
    }

    fn latency_frames(&self) -> usize {
        FFT_LEN - HOP_LEN
    }

    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), ModelError> {
        check_hop(HOP_LEN, input, output)?;
        self.step(input, output)
    }

    fn reset(&mut self) {
        self.analysis.reset();
        self.synthesis.reset();
        self.caches = self.zero_caches.clone();
    }
}
