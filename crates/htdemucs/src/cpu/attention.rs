//! Multi-head scaled dot-product attention on host buffers, straight from the projected
//! `(N, C)` queries / keys / values: each head is a column slice of them (a strided view,
//! no split or transpose copies). Work is split into blocks of query rows that run in
//! parallel, each holding a `rows x Nk` score block in cache instead of the whole
//! `Nq x Nk` matrix.

use rayon::prelude::*;

use super::gemm::{matmul, MatRef, Threads};
use super::{exp, simd, Kernel};

/// Query rows per parallel task.
const QUERY_BLOCK: usize = 128;

/// `softmax(scale * q_h k_h^T) v_h` for every head `h`, concatenated: `(Nq, C)`.
pub(crate) fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (nq, nk, c): (usize, usize, usize),
    heads: usize,
    scale: f32,
) -> Vec<f32> {
    let hd = c / heads;
    let mut out = vec![0f32; nq * c];
    out.par_chunks_mut(QUERY_BLOCK * c)
        .enumerate()
        .for_each(|(block, o)| {
            let r0 = block * QUERY_BLOCK;
            let rows = o.len() / c;
            let mut s = vec![0f32; rows * nk];
            for h in 0..heads {
                let qh = MatRef::rows(q, r0 * c + h * hd, c);
                let kt = MatRef::rows(k, h * hd, c).t();
                matmul((rows, nk, hd), qh, kt, &mut s, 0, nk, false, Threads::One);
                simd(SoftmaxRows {
                    scores: &mut s,
                    nk,
                    scale,
                });
                let vh = MatRef::rows(v, h * hd, c);
                let sm = MatRef::rows(&s, 0, nk);
                matmul((rows, hd, nk), sm, vh, o, h * hd, c, false, Threads::One);
            }
        });
    out
}

struct SoftmaxRows<'a> {
    scores: &'a mut [f32],
    nk: usize,
    scale: f32,
}

impl Kernel for SoftmaxRows<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        for row in self.scores.chunks_mut(self.nk) {
            softmax_scaled(row, self.scale);
        }
    }
}

/// In place `softmax(scale * row)`, `scale > 0`.
#[inline(always)]
pub(crate) fn softmax_scaled(row: &mut [f32], scale: f32) {
    let mut m = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            m[i] = m[i].max(c[i]);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&m)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sums = [0f32; 8];
    let mut chunks = row.chunks_exact_mut(8);
    for c in &mut chunks {
        for i in 0..8 {
            c[i] = exp((c[i] - max) * scale);
            sums[i] += c[i];
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp((*x - max) * scale);
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in row.iter_mut() {
        *x *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_matches_naive() {
        let (nq, nk, c, heads) = (70, 9, 6, 2);
        let gen = |n: usize, s: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 + s) * 0.913).sin()).collect()
        };
        let (q, k, v) = (gen(nq * c, 0.0), gen(nk * c, 3.0), gen(nk * c, 7.0));
        let scale = 0.6;
        let got = attention(&q, &k, &v, (nq, nk, c), heads, scale);
        let hd = c / heads;
        for h in 0..heads {
            for i in 0..nq {
                let s: Vec<f64> = (0..nk)
                    .map(|j| {
                        (0..hd)
                            .map(|d| f64::from(q[i * c + h * hd + d] * k[j * c + h * hd + d]))
                            .sum::<f64>()
                            * f64::from(scale)
                    })
                    .collect();
                let max = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let total: f64 = e.iter().sum();
                for d in 0..hd {
                    let want: f64 = (0..nk)
                        .map(|j| e[j] / total * f64::from(v[j * c + h * hd + d]))
                        .sum();
                    let got = got[i * c + h * hd + d];
                    assert!((f64::from(got) - want).abs() < 1e-5, "{h} {i} {d}");
                }
            }
        }
    }
}
