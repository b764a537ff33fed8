//! Dense linear algebra for Jacobian analysis (SVD, symmetric
//! eigendecomposition, thin QR), in f64 on the CPU through `faer`.
//! Matrices are row-major `Vec<f64>` with explicit `(rows, cols)`.

use faer::{Mat, Side};

/// A dense row-major matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// The values, row-major (`rows · cols`).
    pub data: Vec<f64>,
}

impl Dense {
    /// A `rows × cols` matrix from row-major values; panics on a length mismatch.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Dense {
        assert_eq!(
            data.len(),
            rows * cols,
            "Dense::new: {rows}×{cols} needs {} values",
            rows * cols
        );
        Dense { rows, cols, data }
    }
    /// [`Dense::new`] from f32 values.
    pub fn from_f32(rows: usize, cols: usize, data: &[f32]) -> Dense {
        Dense::new(rows, cols, data.iter().map(|&v| v as f64).collect())
    }
    /// The value at row `i`, column `j`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }
    /// Column `j` as a vector.
    pub fn col(&self, j: usize) -> Vec<f64> {
        (0..self.rows).map(|i| self.get(i, j)).collect()
    }
    /// The transpose.
    pub fn transpose(&self) -> Dense {
        let mut t = vec![0.0; self.data.len()];
        for i in 0..self.rows {
            for j in 0..self.cols {
                t[j * self.rows + i] = self.data[i * self.cols + j];
            }
        }
        Dense::new(self.cols, self.rows, t)
    }
    /// `self · other`.
    pub fn matmul(&self, other: &Dense) -> Dense {
        assert_eq!(
            self.cols, other.rows,
            "matmul: {}×{} · {}×{}",
            self.rows, self.cols, other.rows, other.cols
        );
        let c = self.to_faer() * other.to_faer();
        from_faer(&c)
    }
    /// Frobenius norm.
    pub fn frobenius(&self) -> f64 {
        self.data.iter().map(|v| v * v).sum::<f64>().sqrt()
    }
    /// Sum of the diagonal (of the leading square part when not square).
    pub fn trace(&self) -> f64 {
        (0..self.rows.min(self.cols)).map(|i| self.get(i, i)).sum()
    }
    fn to_faer(&self) -> Mat<f64> {
        Mat::from_fn(self.rows, self.cols, |i, j| self.data[i * self.cols + j])
    }
}

fn from_faer(m: &Mat<f64>) -> Dense {
    let (r, c) = (m.nrows(), m.ncols());
    let mut d = vec![0.0; r * c];
    for j in 0..c {
        for i in 0..r {
            d[i * c + j] = m[(i, j)];
        }
    }
    Dense::new(r, c, d)
}

/// A thin SVD `A = U·diag(s)·Vᵀ`, singular values non-increasing.
#[derive(Clone, Debug)]
pub struct Svd {
    /// `rows × r` (columns are the left singular vectors).
    pub u: Dense,
    /// The singular values, non-increasing (`r = min(rows, cols)` of them).
    pub s: Vec<f64>,
    /// `cols × r` (columns are the right singular vectors).
    pub v: Dense,
}

/// The linear-algebra routine failed (did not converge).
#[derive(Debug, thiserror::Error)]
#[error("{0} did not converge")]
pub struct LinalgError(pub &'static str);

/// Thin SVD of `a`.
pub fn svd(a: &Dense) -> Result<Svd, LinalgError> {
    let f = a.to_faer().thin_svd().map_err(|_| LinalgError("SVD"))?;
    let s = f.S().column_vector().iter().copied().collect();
    Ok(Svd {
        u: from_faer(&f.U().to_owned()),
        s,
        v: from_faer(&f.V().to_owned()),
    })
}

/// Singular values of `a`, non-increasing.
pub fn singular_values(a: &Dense) -> Result<Vec<f64>, LinalgError> {
    a.to_faer()
        .singular_values()
        .map_err(|_| LinalgError("SVD"))
}

/// Eigendecomposition of the symmetric part `(A + Aᵀ)/2` of a square matrix:
/// eigenvalues in non-increasing order and the eigenvectors as columns.
pub fn symmetric_eigen(a: &Dense) -> Result<(Vec<f64>, Dense), LinalgError> {
    assert_eq!(a.rows, a.cols, "symmetric_eigen needs a square matrix");
    let n = a.rows;
    let sym = Mat::from_fn(n, n, |i, j| 0.5 * (a.get(i, j) + a.get(j, i)));
    let e = sym
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| LinalgError("symmetric eigendecomposition"))?;
    let vals: Vec<f64> = e.S().column_vector().iter().copied().collect();
    let u = e.U();
    // faer sorts ascending: reverse.
    let order: Vec<usize> = (0..n).rev().collect();
    let mut vecs = vec![0.0; n * n];
    for (k, &src) in order.iter().enumerate() {
        for i in 0..n {
            vecs[i * n + k] = u[(i, src)];
        }
    }
    Ok((
        order.iter().map(|&i| vals[i]).collect(),
        Dense::new(n, n, vecs),
    ))
}

/// `‖A − Aᵀ‖_F / ‖A‖_F` (0 for a symmetric matrix).
pub fn asymmetry(a: &Dense) -> f64 {
    assert_eq!(a.rows, a.cols);
    let mut d = 0.0;
    for i in 0..a.rows {
        for j in 0..a.cols {
            let x = a.get(i, j) - a.get(j, i);
            d += x * x;
        }
    }
    d.sqrt() / a.frobenius().max(f64::MIN_POSITIVE)
}

/// An orthonormal basis of the column space of `a` (`rows × cols`,
/// rows ≥ cols): the thin Q of a Householder QR.
pub fn orthonormal_columns(a: &Dense) -> Dense {
    from_faer(&a.to_faer().qr().compute_thin_Q())
}
