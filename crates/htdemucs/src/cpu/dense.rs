//! Token-wise layers of the transformer on host buffers of `(N, C)` rows: `Linear` with
//! its bias as the product's initial value, `LayerNorm`, and the LayerScale'd residual
//! add, each one pass over the data.

use rayon::prelude::*;

use super::gemm::{matmul, MatRef, Threads};
use super::{simd, Kernel};

/// Rows per parallel task of the row-wise kernels.
const ROWS_PER_TASK: usize = 64;

/// `nn.Linear`: `x (N, in) @ w^T + b` with `w: (out, in)`.
pub(crate) fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, cin: usize) -> Vec<f32> {
    let n = x.len() / cin;
    let cout = w.len() / cin;
    let mut y = match b {
        Some(b) => b.repeat(n),
        None => vec![0f32; n * cout],
    };
    let a = MatRef::rows(x, 0, cin);
    let wt = MatRef::rows(w, 0, cin).t();
    matmul(
        (n, cout, cin),
        a,
        wt,
        &mut y,
        0,
        cout,
        b.is_some(),
        Threads::All,
    );
    y
}

struct LayerNormRows<'a> {
    rows: &'a mut [f32],
    c: usize,
    w: &'a [f32],
    b: &'a [f32],
    eps: f32,
}

impl Kernel for LayerNormRows<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let n = self.c as f32;
        for row in self.rows.chunks_mut(self.c) {
            let mean = row.iter().sum::<f32>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(self.w).zip(self.b) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

/// `nn.LayerNorm(C)` of every row of `x`.
pub(crate) fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
    let c = w.len();
    let mut y = x.to_vec();
    y.par_chunks_mut(ROWS_PER_TASK * c)
        .for_each(|rows| simd(LayerNormRows { rows, c, w, b, eps }));
    y
}

struct AddScaled<'a> {
    x: &'a mut [f32],
    y: &'a [f32],
    scale: Option<&'a [f32]>,
}

impl Kernel for AddScaled<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        match self.scale {
            Some(s) => {
                for (xr, yr) in self.x.chunks_mut(s.len()).zip(self.y.chunks(s.len())) {
                    for ((x, y), s) in xr.iter_mut().zip(yr).zip(s) {
                        *x += s * y;
                    }
                }
            }
            None => {
                for (x, y) in self.x.iter_mut().zip(self.y) {
                    *x += y;
                }
            }
        }
    }
}

/// `x += scale * y` per row (`scale` over the `c` columns; none: plain add).
pub(crate) fn add_scaled(x: &mut [f32], y: &[f32], scale: Option<&[f32]>, c: usize) {
    x.par_chunks_mut(ROWS_PER_TASK * c)
        .zip(y.par_chunks(ROWS_PER_TASK * c))
        .for_each(|(x, y)| simd(AddScaled { x, y, scale }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_and_layer_norm_match_naive() {
        let (n, cin, cout) = (5, 4, 3);
        let x: Vec<f32> = (0..n * cin).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..cout * cin).map(|i| (i as f32 * 0.91).cos()).collect();
        let b = [0.5, -1.0, 2.0];
        let y = linear(&x, &w, Some(&b), cin);
        for i in 0..n {
            for o in 0..cout {
                let want = b[o]
                    + (0..cin)
                        .map(|k| x[i * cin + k] * w[o * cin + k])
                        .sum::<f32>();
                assert!((y[i * cout + o] - want).abs() < 1e-5);
            }
        }
        let (g, beta) = ([1.0, 2.0, 0.5, -1.0], [0.1, 0.2, 0.3, 0.4]);
        let z = layer_norm(&x, &g, &beta, 1e-5);
        for i in 0..n {
            let row = &x[i * cin..][..cin];
            let mean = row.iter().sum::<f32>() / cin as f32;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / cin as f32;
            for k in 0..cin {
                let want = (row[k] - mean) / (var + 1e-5).sqrt() * g[k] + beta[k];
                assert!((z[i * cin + k] - want).abs() < 1e-5);
            }
        }
        let mut acc = x.clone();
        add_scaled(&mut acc, &x, Some(&g), cin);
        assert!((acc[5] - x[5] * (1.0 + g[1])).abs() < 1e-6);
    }
}
