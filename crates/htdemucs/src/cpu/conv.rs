//! Convolutions of one batch item as matrix products in the native layout (`(C, L)` for
//! time, `(C, F, T)` for the frequency branch), without permutes:
//!
//! * stride 1 (time convolutions, the 3x3 `rewrite`): im2col in blocks of output frames /
//!   rows, each column row a shifted copy of an input row, one product per block (1x1
//!   convolutions: one product, no copy);
//! * stride `S` along frequency (`(K, 1)` kernels) or time: im2col of whole `T`-long rows
//!   (plain copies) in blocks of output rows, one product per block;
//! * transposed, stride `S`: columns `W^T x` per block of input rows, overlap-added.
//!
//! Weights use the PyTorch layouts (`(C', C, K...)`, transposed `(C, C', K)`); the bias is
//! the initial value of the output, so it costs no extra pass.

use rayon::prelude::*;

use super::gemm::{matmul, MatRef, Threads};

/// Floats of im2col / column buffer per block (4 MiB; tiny in unit tests, so that they
/// cover the block edges).
const BLOCK_FLOATS: usize = if cfg!(test) { 50 } else { 1 << 20 };

/// `bias[i]` repeated `row_len` times for each `i`: an output initialised to its bias.
/// Filled in parallel, so that the page faults of a fresh buffer are too.
pub(crate) fn bias_rows(bias: &[f32], row_len: usize) -> Vec<f32> {
    let mut y = vec![0f32; bias.len() * row_len];
    if row_len > 0 {
        y.par_chunks_mut(row_len)
            .zip(bias)
            .for_each(|(row, &b)| row.fill(b));
    }
    y
}

/// `Conv1d` with stride 1 on `x: (C, L)`, `w: (C', C, K)`: returns `(C', L')`.
pub(crate) fn conv1d_s1(
    x: &[f32],
    (c, l): (usize, usize),
    w: &[f32],
    k: usize,
    bias: &[f32],
    padding: usize,
    dilation: usize,
) -> (Vec<f32>, usize) {
    let co = bias.len();
    let lp = l + 2 * padding;
    let lo = lp - dilation * (k - 1);
    let padded;
    let xp: &[f32] = if padding == 0 {
        x
    } else {
        let mut p = vec![0f32; c * lp];
        for (dst, src) in p.chunks_mut(lp).zip(x.chunks(l)) {
            dst[padding..padding + l].copy_from_slice(src);
        }
        padded = p;
        &padded
    };
    let mut y = bias_rows(bias, lo);
    if k == 1 {
        let b = MatRef::rows(xp, 0, lp);
        matmul(
            (co, lo, c),
            MatRef::rows(w, 0, c),
            b,
            &mut y,
            0,
            lo,
            true,
            Threads::All,
        );
        return (y, lo);
    }
    // im2col in blocks of output frames: cols[(ci, tap), j] = xp[ci, t0 + j + tap * D].
    let ck = c * k;
    let block = (BLOCK_FLOATS / ck).clamp(1, lo);
    let mut cols = vec![0f32; ck * block];
    for t0 in (0..lo).step_by(block) {
        let nb = block.min(lo - t0);
        cols[..ck * nb]
            .par_chunks_mut(k * nb)
            .enumerate()
            .for_each(|(ci, dst)| {
                for tap in 0..k {
                    let src = &xp[ci * lp + t0 + tap * dilation..][..nb];
                    dst[tap * nb..][..nb].copy_from_slice(src);
                }
            });
        let b = MatRef::rows(&cols, 0, nb);
        matmul(
            (co, nb, ck),
            MatRef::rows(w, 0, ck),
            b,
            &mut y,
            t0,
            lo,
            true,
            Threads::All,
        );
    }
    (y, lo)
}

/// `Conv2d` with a square `K x K` kernel, stride 1 and padding `P` on `x: (C, F, T)`,
/// `w: (C', C, K, K)`: returns `(C', F', T')`. im2col in blocks of output rows (each
/// column row a shifted copy of an input row), so the output is written once by a
/// product with `C * K * K` terms instead of `K * K` times by products with `C` terms.
pub(crate) fn conv2d_s1(
    x: &[f32],
    (c, f, t): (usize, usize, usize),
    w: &[f32],
    k: usize,
    bias: &[f32],
    padding: usize,
) -> (Vec<f32>, usize, usize) {
    let co = bias.len();
    let (fo, to) = (f + 2 * padding + 1 - k, t + 2 * padding + 1 - k);
    let ckk = c * k * k;
    let mut y = bias_rows(bias, fo * to);
    let block = (BLOCK_FLOATS / (ckk * to)).clamp(1, fo);
    let mut cols = vec![0f32; ckk * block * to];
    for f0 in (0..fo).step_by(block) {
        let nb = block.min(fo - f0);
        let width = nb * to;
        // cols[(ci, kf, kt), (j, tt)] = x[ci, f0 + j + kf - P, tt + kt - P]
        cols[..ckk * width]
            .par_chunks_mut(k * k * width)
            .enumerate()
            .for_each(|(ci, cols)| {
                for kf in 0..k {
                    for kt in 0..k {
                        let dst_row = &mut cols[(kf * k + kt) * width..][..width];
                        for j in 0..nb {
                            let dst = &mut dst_row[j * to..][..to];
                            let fi = (f0 + j + kf) as isize - padding as isize;
                            if fi < 0 || fi as usize >= f {
                                dst.fill(0.0);
                                continue;
                            }
                            let src = &x[(ci * f + fi as usize) * t..][..t];
                            // dst[tt] = src[tt + kt - P] where that index is inside the row.
                            let lo = padding.saturating_sub(kt).min(to);
                            let hi = (t + padding).saturating_sub(kt).clamp(lo, to);
                            dst[..lo].fill(0.0);
                            dst[hi..].fill(0.0);
                            dst[lo..hi].copy_from_slice(&src[lo + kt - padding..hi + kt - padding]);
                        }
                    }
                }
            });
        let a = MatRef::rows(w, 0, ckk);
        let b = MatRef::rows(&cols, 0, width);
        matmul(
            (co, width, ckk),
            a,
            b,
            &mut y,
            f0 * to,
            fo * to,
            true,
            Threads::All,
        );
    }
    (y, fo, to)
}

/// Strided convolution along `F` of `x: (C, F, T)` with `w: (C', C, K)` (a `(K, 1)` kernel
/// of stride `(S, 1)`, padding `(P, 0)`; with `T = 1` a strided `Conv1d`): returns
/// `(C', F', T)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_strided(
    x: &[f32],
    (c, f, t): (usize, usize, usize),
    w: &[f32],
    k: usize,
    bias: &[f32],
    stride: usize,
    padding: usize,
) -> (Vec<f32>, usize) {
    let co = bias.len();
    let fo = (f + 2 * padding - k) / stride + 1;
    let ck = c * k;
    let mut y = bias_rows(bias, fo * t);
    let block = (BLOCK_FLOATS / (ck * t)).clamp(1, fo);
    let mut cols = vec![0f32; ck * block * t];
    for f0 in (0..fo).step_by(block) {
        let nb = block.min(fo - f0);
        let width = nb * t;
        // cols[(ci, kk), (j, :)] = x[ci, (f0 + j) * S + kk - P, :]
        cols[..ck * width]
            .par_chunks_mut(k * width)
            .enumerate()
            .for_each(|(ci, cols)| {
                for kk in 0..k {
                    let dst_row = &mut cols[kk * width..][..width];
                    for j in 0..nb {
                        let dst = &mut dst_row[j * t..][..t];
                        let fi = ((f0 + j) * stride + kk) as isize - padding as isize;
                        if fi >= 0 && (fi as usize) < f {
                            dst.copy_from_slice(&x[(ci * f + fi as usize) * t..][..t]);
                        } else {
                            dst.fill(0.0);
                        }
                    }
                }
            });
        let a = MatRef::rows(w, 0, ck);
        let b = MatRef::rows(&cols, 0, width);
        matmul(
            (co, width, ck),
            a,
            b,
            &mut y,
            f0 * t,
            fo * t,
            true,
            Threads::All,
        );
    }
    (y, fo)
}

/// Transposed convolution along `F` of `x: (C, F, T)` with `w: (C, C', K)`, stride `S`, no
/// padding (`ConvTranspose2d` with a `(K, 1)` kernel; with `T = 1` a `ConvTranspose1d`):
/// returns `(C', (F - 1) * S + K, T)`.
pub(crate) fn conv_tr_strided(
    x: &[f32],
    (c, f, t): (usize, usize, usize),
    w: &[f32],
    k: usize,
    bias: &[f32],
    stride: usize,
) -> (Vec<f32>, usize) {
    let co = bias.len();
    let fo = (f - 1) * stride + k;
    let cok = co * k;
    let mut y = bias_rows(bias, fo * t);
    let block = (BLOCK_FLOATS / (cok * t)).clamp(1, f);
    let mut cols = vec![0f32; cok * block * t];
    for f0 in (0..f).step_by(block) {
        let nb = block.min(f - f0);
        let width = nb * t;
        // cols[(o, kk), (j, :)] = sum_ci w[ci, o, kk] x[ci, f0 + j, :]
        let a = MatRef::rows(w, 0, cok).t();
        let b = MatRef::rows(x, f0 * t, f * t);
        matmul(
            (cok, width, c),
            a,
            b,
            &mut cols,
            0,
            width,
            false,
            Threads::All,
        );
        let cols = &cols;
        y.par_chunks_mut(fo * t)
            .enumerate()
            .for_each(|(o, y_plane)| {
                for kk in 0..k {
                    let src_row = &cols[(o * k + kk) * width..][..width];
                    for j in 0..nb {
                        let dst = &mut y_plane[((f0 + j) * stride + kk) * t..][..t];
                        for (d, s) in dst.iter_mut().zip(&src_row[j * t..][..t]) {
                            *d += s;
                        }
                    }
                }
            });
    }
    (y, fo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.7311).sin()).collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-4, "element {i}: {x} vs {y}");
        }
    }

    /// Direct definition of a 2-d convolution with per-axis stride / padding / dilation.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        x: &[f32],
        (c, f, t): (usize, usize, usize),
        w: &[f32],
        (co, kf, kt): (usize, usize, usize),
        bias: &[f32],
        (sf, st): (usize, usize),
        (pf, pt): (usize, usize),
        dt: usize,
    ) -> (Vec<f32>, usize, usize) {
        let fo = (f + 2 * pf - kf) / sf + 1;
        let to = (t + 2 * pt - dt * (kt - 1) - 1) / st + 1;
        let mut y = vec![0f32; co * fo * to];
        for o in 0..co {
            for i in 0..fo {
                for j in 0..to {
                    let mut acc = bias[o];
                    for ci in 0..c {
                        for a in 0..kf {
                            for b in 0..kt {
                                let fi = (i * sf + a) as isize - pf as isize;
                                let ti = (j * st + b * dt) as isize - pt as isize;
                                if fi >= 0 && ti >= 0 && (fi as usize) < f && (ti as usize) < t {
                                    acc += x[(ci * f + fi as usize) * t + ti as usize]
                                        * w[((o * c + ci) * kf + a) * kt + b];
                                }
                            }
                        }
                    }
                    y[(o * fo + i) * to + j] = acc;
                }
            }
        }
        (y, fo, to)
    }

    #[test]
    fn conv1d_s1_matches_naive() {
        let (c, l, co, k) = (3, 11, 4, 3);
        let (x, w, bias) = (data(c * l, 0.0), data(co * c * k, 5.0), data(co, 9.0));
        for (padding, dilation) in [(1, 1), (2, 2), (0, 1), (4, 4)] {
            let (y, lo) = conv1d_s1(&x, (c, l), &w, k, &bias, padding, dilation);
            let (want, _, to) = naive(
                &x,
                (c, 1, l),
                &w,
                (co, 1, k),
                &bias,
                (1, 1),
                (0, padding),
                dilation,
            );
            assert_eq!(lo, to);
            close(&y, &want);
        }
        let (y, _) = conv1d_s1(&x, (c, l), &w[..co * c], 1, &bias, 0, 1);
        let (want, _, _) = naive(
            &x,
            (c, 1, l),
            &w[..co * c],
            (co, 1, 1),
            &bias,
            (1, 1),
            (0, 0),
            1,
        );
        close(&y, &want);
    }

    #[test]
    fn conv2d_s1_matches_naive() {
        let (c, f, t, co) = (3, 5, 7, 2);
        let (x, w, bias) = (data(c * f * t, 1.0), data(co * c * 9, 2.0), data(co, 3.0));
        let (y, fo, to) = conv2d_s1(&x, (c, f, t), &w, 3, &bias, 1);
        let (want, wf, wt) = naive(&x, (c, f, t), &w, (co, 3, 3), &bias, (1, 1), (1, 1), 1);
        assert_eq!((fo, to), (wf, wt));
        close(&y, &want);
    }

    #[test]
    fn conv_strided_matches_naive() {
        let (c, f, t, co, k) = (3, 16, 5, 4, 8);
        let (x, w, bias) = (data(c * f * t, 4.0), data(co * c * k, 6.0), data(co, 7.0));
        for (stride, padding) in [(4, 2), (4, 0), (1, 0)] {
            let (y, fo) = conv_strided(&x, (c, f, t), &w, k, &bias, stride, padding);
            let (want, wf, _) = naive(
                &x,
                (c, f, t),
                &w,
                (co, k, 1),
                &bias,
                (stride, 1),
                (padding, 0),
                1,
            );
            assert_eq!(fo, wf);
            close(&y, &want);
        }
    }

    #[test]
    fn conv_tr_strided_matches_naive() {
        let (c, f, t, co, k, s) = (3, 6, 4, 2, 8, 4);
        let (x, w, bias) = (data(c * f * t, 8.0), data(c * co * k, 3.0), data(co, 1.0));
        let (y, fo) = conv_tr_strided(&x, (c, f, t), &w, k, &bias, s);
        assert_eq!(fo, (f - 1) * s + k);
        let mut want = vec![0f32; co * fo * t];
        for o in 0..co {
            for i in 0..fo {
                for j in 0..t {
                    want[(o * fo + i) * t + j] = bias[o];
                }
            }
            for ci in 0..c {
                for fi in 0..f {
                    for kk in 0..k {
                        for j in 0..t {
                            want[(o * fo + fi * s + kk) * t + j] +=
                                x[(ci * f + fi) * t + j] * w[(ci * co + o) * k + kk];
                        }
                    }
                }
            }
        }
        close(&y, &want);
    }
}
