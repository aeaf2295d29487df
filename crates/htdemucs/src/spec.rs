//! STFT and inverse STFT with demucs' conventions (demucs/spec.py and
//! `HTDemucs._spec` / `HTDemucs._ispec` in demucs/htdemucs.py): periodic Hann window of
//! `nfft`, hop `nfft / 4`, "normalized" (frames scaled by `1 / sqrt(nfft)`), centred frames
//! with reflect padding, the Nyquist bin dropped, and an extra `3 * hop / 2` reflect padding
//! so that a signal of `L` frames gives exactly `ceil(L / hop)` spectrogram frames.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// FFT plans and window for one `nfft`; cheap to share, allocates per call.
pub struct Stft {
    nfft: usize,
    hop: usize,
    window: Vec<f32>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

/// A spectrogram of several channels: `re` and `im` are `[channel][bin][frame]`, flattened.
#[derive(Debug, Clone)]
pub struct Spectrogram {
    pub channels: usize,
    pub bins: usize,
    pub frames: usize,
    pub re: Vec<f32>,
    pub im: Vec<f32>,
}

/// torch's `F.pad(x, (left, right), mode="reflect")`; needs `left, right < x.len()`.
fn reflect_pad(x: &[f32], left: usize, right: usize) -> Vec<f32> {
    let n = x.len();
    debug_assert!(left < n && right < n);
    let mut out = Vec::with_capacity(n + left + right);
    out.extend((1..=left).rev().map(|i| x[i]));
    out.extend_from_slice(x);
    out.extend((0..right).map(|i| x[n - 2 - i]));
    out
}

/// demucs' `pad1d(..., mode="reflect")`: zero-extends inputs too short to reflect.
pub(crate) fn pad1d_reflect(x: &[f32], left: usize, right: usize) -> Vec<f32> {
    let max_pad = left.max(right);
    if x.len() <= max_pad {
        let extra = max_pad - x.len() + 1;
        let extra_right = right.min(extra);
        let extra_left = extra - extra_right;
        let mut z = vec![0.0; extra_left];
        z.extend_from_slice(x);
        z.resize(z.len() + extra_right, 0.0);
        reflect_pad(&z, left - extra_left, right - extra_right)
    } else {
        reflect_pad(x, left, right)
    }
}

impl Stft {
    pub fn new(nfft: usize) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        // torch.hann_window(nfft), periodic.
        let window = (0..nfft)
            .map(|n| {
                let phase = 2.0 * std::f64::consts::PI * n as f64 / nfft as f64;
                (0.5 - 0.5 * phase.cos()) as f32
            })
            .collect();
        Self {
            nfft,
            hop: nfft / 4,
            window,
            forward: planner.plan_fft_forward(nfft),
            inverse: planner.plan_fft_inverse(nfft),
        }
    }

    pub fn nfft(&self) -> usize {
        self.nfft
    }

    /// Frames of the spectrogram of a signal of `len` frames: `ceil(len / hop)`.
    pub fn frames_for(&self, len: usize) -> usize {
        len.div_ceil(self.hop)
    }

    /// `HTDemucs._spec` for each channel of `x` (all of one length).
    pub fn spec(&self, x: &[&[f32]]) -> Spectrogram {
        let (nfft, hop) = (self.nfft, self.hop);
        let len = x.first().map_or(0, |c| c.len());
        let frames = self.frames_for(len);
        let bins = nfft / 2;
        let scale = 1.0 / (nfft as f32).sqrt();
        let mut re = vec![0.0; x.len() * bins * frames];
        let mut im = vec![0.0; x.len() * bins * frames];
        let mut frame = self.forward.make_input_vec();
        let mut spectrum = self.forward.make_output_vec();
        let mut scratch = self.forward.make_scratch_vec();
        for (c, chan) in x.iter().enumerate() {
            let pad = hop / 2 * 3;
            let x1 = pad1d_reflect(chan, pad, pad + frames * hop - len);
            // torch.stft(center=True, pad_mode="reflect")
            let x2 = reflect_pad(&x1, nfft / 2, nfft / 2);
            for t in 0..frames {
                // Frames 0 and 1 (and the last two) of torch.stft are dropped.
                let start = (t + 2) * hop;
                for ((f, s), w) in frame
                    .iter_mut()
                    .zip(&x2[start..start + nfft])
                    .zip(&self.window)
                {
                    *f = s * w;
                }
                self.forward
                    .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                    .expect("buffer sizes come from the plan");
                let base = c * bins * frames + t;
                for (k, z) in spectrum[..bins].iter().enumerate() {
                    re[base + k * frames] = z.re * scale;
                    im[base + k * frames] = z.im * scale;
                }
            }
        }
        Spectrogram {
            channels: x.len(),
            bins,
            frames,
            re,
            im,
        }
    }

    /// `HTDemucs._ispec`: one signal of `length` frames per channel of `z`.
    pub fn ispec(&self, z: &Spectrogram, length: usize) -> Vec<Vec<f32>> {
        let (nfft, hop) = (self.nfft, self.hop);
        let (bins, frames) = (z.bins, z.frames);
        assert_eq!(bins, nfft / 2, "spectrogram bins do not match nfft");
        // Two zero frames are added on each side; they only count in the window envelope.
        let n_frames = frames + 4;
        let ola_len = nfft + hop * (n_frames - 1);
        let mut envelope = vec![0.0f32; ola_len];
        for j in 0..n_frames {
            for (e, w) in envelope[j * hop..j * hop + nfft]
                .iter_mut()
                .zip(&self.window)
            {
                *e += w * w;
            }
        }
        let pad = hop / 2 * 3;
        let offset = pad + nfft / 2;
        // normalized=True undoes the 1/sqrt(nfft), irfft divides by nfft.
        let scale = (nfft as f32).sqrt() / nfft as f32;
        let mut spectrum = self.inverse.make_input_vec();
        let mut frame = self.inverse.make_output_vec();
        let mut scratch = self.inverse.make_scratch_vec();
        let mut out = Vec::with_capacity(z.channels);
        for c in 0..z.channels {
            let mut ola = vec![0.0f32; ola_len];
            for t in 0..frames {
                let base = c * bins * frames + t;
                for (k, s) in spectrum[..bins].iter_mut().enumerate() {
                    *s = Complex32::new(z.re[base + k * frames], z.im[base + k * frames]);
                }
                // irfft ignores the imaginary parts of the DC and Nyquist bins.
                spectrum[0].im = 0.0;
                spectrum[bins] = Complex32::new(0.0, 0.0);
                self.inverse
                    .process_with_scratch(&mut spectrum, &mut frame, &mut scratch)
                    .expect("buffer sizes come from the plan");
                let start = (t + 2) * hop;
                for ((o, s), w) in ola[start..start + nfft]
                    .iter_mut()
                    .zip(&frame)
                    .zip(&self.window)
                {
                    *o += s * w * scale;
                }
            }
            let signal = (0..length)
                .map(|k| {
                    let i = k + offset;
                    if i < ola_len && envelope[i] > 1e-11 {
                        ola[i] / envelope[i]
                    } else {
                        0.0
                    }
                })
                .collect();
            out.push(signal);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_pad_matches_torch() {
        // F.pad(torch.arange(5.), (3, 2), mode="reflect") == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2]
        let x = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(
            reflect_pad(&x, 3, 2),
            [3.0, 2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]
        );
    }

    #[test]
    fn spec_then_ispec_is_identity() {
        let stft = Stft::new(256);
        let x: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 113) as f32 / 113.0 - 0.5)
            .collect();
        let z = stft.spec(&[&x]);
        assert_eq!(z.frames, 1000usize.div_ceil(64));
        let y = stft.ispec(&z, x.len());
        // The dropped Nyquist bin and the cropped edge frames cost a little.
        let err: f32 = x
            .iter()
            .zip(&y[0])
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>();
        let energy: f32 = x.iter().map(|a| a * a).sum();
        assert!(err / energy < 1e-2, "relative error {}", err / energy);
    }
}
