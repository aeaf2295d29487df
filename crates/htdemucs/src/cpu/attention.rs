//! Multi-head scaled dot-product attention on host buffers, straight from the projected
//! `(N, C)` queries / keys / values: each head is a column slice of them (a strided view,
//! no split or transpose copies). Work is split into blocks of query rows that run in
//! parallel, each holding a `rows x Nk` score block in cache instead of the whole
//! `Nq x Nk` matrix.

use rayon::prelude::*;

use super::gemm::{matmul, MatRef, Threads};
use super::{exp, simd, Kernel};

/// Query rows per parallel task, at most (the blocks are evened out so that each of
/// rayon's threads gets as many). 384 rather than 128: fewer, larger products (the keys and
/// values are packed once per block and head) made the transformer 7-8 % faster at 1 and
/// 2 threads, for a `rows x Nk` score block of about 3.6 MiB per thread (Nk = 2688). Tiny
/// in unit tests, so that they cover several blocks and a ragged last one.
const QUERY_BLOCK: usize = if cfg!(test) { 16 } else { 384 };

/// Rows per query block for `nq` rows over `threads` threads: at most `max_rows`, with a
/// block count that is a multiple of `threads` (else the last block runs alone).
fn block_rows(nq: usize, threads: usize, max_rows: usize) -> usize {
    let max_rows = max_rows.max(1);
    let threads = threads.max(1);
    let blocks = nq.div_ceil(max_rows).div_ceil(threads) * threads;
    nq.div_ceil(blocks.max(1)).max(1)
}

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
    let rows_per_block = block_rows(nq, rayon::current_num_threads(), QUERY_BLOCK);
    out.par_chunks_mut(rows_per_block * c)
        .enumerate()
        .for_each(|(block, o)| {
            let r0 = block * rows_per_block;
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
    fn query_blocks_are_even() {
        assert_eq!(block_rows(2688, 2, 384), 336); // 8 blocks, not 7 of 384
        assert_eq!(block_rows(1344, 2, 384), 336);
        assert_eq!(block_rows(2688, 2, 128), 123); // 22 blocks, not 21 of 128
        assert_eq!(block_rows(256, 1, 128), 128);
        assert_eq!(block_rows(5, 4, 16), 2);
        assert_eq!(block_rows(0, 2, 16), 1);
        for (nq, threads, max) in [(2688, 2, 384), (1344, 3, 128), (70, 2, 16), (1, 8, 16)] {
            let rows = block_rows(nq, threads, max);
            assert!(rows <= max && rows * nq.div_ceil(rows) >= nq);
        }
    }

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
