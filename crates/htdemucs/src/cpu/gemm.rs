//! A safe, bounds-checked front for the `gemm` crate's f32 matrix product (the kernel that
//! candle's CPU matmul runs too). It takes any row and column strides, so the convolutions
//! multiply shifted or strided windows of a buffer in place instead of copying them into
//! candle tensors first.
//!
//! The only `unsafe` of the crate: the call into `gemm::gemm`, after checking that every
//! element the product reads or writes lies inside the slices it was given.
#![allow(unsafe_code)]

/// A read-only strided matrix: element `(i, j)` is `data[offset + i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with row stride `rs` starting at `offset`.
    pub fn rows(data: &'a [f32], offset: usize, rs: usize) -> Self {
        Self {
            data,
            offset,
            rs,
            cs: 1,
        }
    }

    /// The transpose of this view.
    pub fn t(self) -> Self {
        Self {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    fn check(&self, rows: usize, cols: usize, what: &str) {
        let last = self.offset + (rows - 1) * self.rs + (cols - 1) * self.cs;
        assert!(
            last < self.data.len(),
            "gemm: {what} view ({rows}x{cols}, offset {}, strides {}/{}) overruns {} elements",
            self.offset,
            self.rs,
            self.cs,
            self.data.len()
        );
    }
}

/// Whether a product may split its work over rayon's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// This thread only (the caller already runs products in parallel).
    One,
    /// All of rayon's current pool.
    All,
}

/// `c[c_offset + i * c_rs + j] (+)= sum_p a(i, p) * b(p, j)` for an `m x n` block of `c`;
/// with `accumulate` the product is added to what `c` holds, else it replaces it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    (m, n, k): (usize, usize, usize),
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    c_offset: usize,
    c_rs: usize,
    accumulate: bool,
    threads: Threads,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(m == 1 || c_rs >= n, "gemm: output rows overlap");
    let c_last = c_offset + (m - 1) * c_rs + n - 1;
    assert!(c_last < c.len(), "gemm: output block overruns its buffer");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[c_offset + i * c_rs..][..n].fill(0.0);
            }
        }
        return;
    }
    a.check(m, k, "left");
    b.check(k, n, "right");
    let parallelism = match threads {
        Threads::All if rayon::current_num_threads() > 1 => gemm::Parallelism::Rayon(0),
        _ => gemm::Parallelism::None,
    };
    // SAFETY: every index the product touches was bounds-checked above (strides are
    // non-negative, so the extreme element of each view is its last one); `c` is borrowed
    // mutably, so it cannot alias `a` or `b`, and its rows do not overlap.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr().add(c_offset),
            1,
            c_rs as isize,
            accumulate,
            a.data.as_ptr().add(a.offset),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(b.offset),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_product_matches_naive() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..60).map(|i| (i as f32 * 0.11).cos()).collect();
        // a: transposed view with offset; b: row stride 9, offset 2.
        let av = MatRef {
            data: &a,
            offset: 1,
            rs: 1,
            cs: 6,
        };
        let bv = MatRef::rows(&b, 2, 9);
        let mut c = vec![1.0f32; 4 + m * 8];
        matmul((m, n, k), av, bv, &mut c, 4, 8, true, Threads::All);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0
                    + (0..k)
                        .map(|p| a[1 + i + p * 6] * b[2 + p * 9 + j])
                        .sum::<f32>();
                let got = c[4 + i * 8 + j];
                assert!((got - want).abs() < 1e-5, "({i}, {j}): {got} vs {want}");
            }
        }
        assert_eq!(c[4 + 7], 1.0, "padding column untouched");
    }
}
