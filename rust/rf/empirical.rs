//! The empirical kernel `(1/m) σ(X Wᵀ) σ(X Wᵀ)ᵀ`, accumulated over blocks of projection rows
//! (the portable path; the AVX-512 one is `simd`).

use super::activation::Activation;
use super::projection::{projection_rows, Projection, PROJECTION_BLOCK};
#[cfg(target_arch = "x86_64")]
use super::simd;
use crate::alloc::{check_dense_size, check_work, try_zeros};
use crate::error::{EtfError, Result};
use crate::linalg::Real;
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// A raw pointer that may cross threads (each thread writes disjoint blocks).
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(pub(crate) *mut T);

unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

/// Empirical random-feature kernel `K = (1/m) σ(X Wᵀ) σ(X Wᵀ)ᵀ` (`n × n`, in `T`), `X` `n × p`.
///
/// W is generated block by block (`PROJECTION_BLOCK` rows, reproducible from `seed`); for each
/// block the `block × n` features `σ(W_b Xᵀ)` are formed and their Gram added to the lower
/// triangle of `K` by column blocks in parallel. Extra memory: `O(block · (n + p))` beside `K`.
pub fn empirical_kernel<T: Real>(
    act: &Activation,
    x: ArrayView2<'_, T>,
    num_features: usize,
    proj: Projection,
    seed: u64,
) -> Result<Array2<T>> {
    let (n, p) = x.dim();
    if num_features == 0 {
        return Err(EtfError::Parameter("num_features must be positive".into()));
    }
    if p == 0 {
        return Err(EtfError::Shape("x must have at least one column".into()));
    }
    proj.validate()?;
    check_dense_size(PROJECTION_BLOCK, p, "a block of the projection")?;
    // W X^T for every block plus the Gram of the features: ~ m·n·(p + n/2) multiply-adds.
    check_work(
        num_features as u128 * n as u128 * (p as u128 + n as u128 / 2 + 1),
        "the empirical kernel",
    )?;
    if let Some(((i, j), _)) = x.indexed_iter().find(|(_, v)| !v.to_f64().is_finite()) {
        return Err(EtfError::NonFinite {
            what: "features".into(),
            row: i,
            col: j,
        });
    }
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().unwrap();
    check_dense_size(n, n, "the kernel")?;
    #[cfg(target_arch = "x86_64")]
    if T::PRECISION == crate::linalg::Precision::F32
        && std::mem::size_of::<T>() == 4
        && simd::available()
    {
        // SAFETY: T is f32 (same name, precision and size), so the slice and the vector may be
        // reinterpreted in place.
        let xf = unsafe { std::slice::from_raw_parts(xs.as_ptr() as *const f32, xs.len()) };
        let k = simd::empirical_kernel_f32(act, xf, n, p, num_features, proj, seed)?;
        let mut k = std::mem::ManuallyDrop::new(k);
        let mut k = unsafe { Vec::from_raw_parts(k.as_mut_ptr() as *mut T, k.len(), k.capacity()) };
        symmetrize_lower(&mut k, n);
        return finish_kernel(k, n);
    }
    portable_kernel(act, xs, n, p, num_features, proj, seed)
}

/// The portable path of [`empirical_kernel`] (any CPU, f32 or f64; inputs already checked):
/// per block of projection rows, `Z = σ(W_b Xᵀ)` by matrixmultiply's GEMM in column panels,
/// then its Gram added to the lower triangle of `K` by column blocks in parallel.
#[doc(hidden)]
pub fn portable_kernel<T: Real>(
    act: &Activation,
    xs: &[T],
    n: usize,
    p: usize,
    num_features: usize,
    proj: Projection,
    seed: u64,
) -> Result<Array2<T>> {
    let mut k: Vec<T> = try_zeros(n * n, "the kernel")?;
    let mut z: Vec<T> = try_zeros(PROJECTION_BLOCK * n, "a block of random features")?;
    let scale = 1.0 / num_features as f64;
    let mut r0 = 0;
    while r0 < num_features {
        let rows = PROJECTION_BLOCK.min(num_features - r0);
        let w: Vec<T> = projection_rows(proj, r0, rows, p, seed)?
            .into_iter()
            .map(T::from_f64)
            .collect();
        project_and_activate(act, &w, xs, rows, n, p, &mut z);
        add_scaled_gram(&z, rows, n, scale, &mut k);
        r0 += rows;
    }
    symmetrize_lower(&mut k, n);
    finish_kernel(k, n)
}

/// `Z (rows × n) = σ(W_b Xᵀ)` into `z`, in parallel over column panels of `Z`.
fn project_and_activate<T: Real>(
    act: &Activation,
    w: &[T],
    xs: &[T],
    rows: usize,
    n: usize,
    p: usize,
    z: &mut [T],
) {
    // Z (rows × n) = W_b Xᵀ, then σ in place; parallel over column panels of Z.
    let zp = SyncPtr(z.as_mut_ptr());
    let panels = n.div_ceil(256);
    (0..panels).into_par_iter().for_each(|pi| {
        let c0 = pi * 256;
        let cols = 256.min(n - c0);
        #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its raw field
        let zp = zp;
        // SAFETY: panel `pi` writes only columns c0..c0+cols of Z.
        unsafe {
            T::gemm(
                rows,
                p,
                cols,
                T::from_f64(1.0),
                w.as_ptr(),
                p as isize,
                1,
                xs.as_ptr().add(c0 * p),
                1,
                p as isize,
                T::from_f64(0.0),
                zp.0.add(c0),
                n as isize,
                1,
            );
            for r in 0..rows {
                for c in c0..c0 + cols {
                    let v = zp.0.add(r * n + c);
                    *v = T::from_f64(act.apply((*v).to_f64()));
                }
            }
        }
    });
}

/// `K[lower] += scale · Zᵀ Z` (`Z`: `rows × n`), by column blocks of `K`.
fn add_scaled_gram<T: Real>(z: &[T], rows: usize, n: usize, scale: f64, k: &mut [T]) {
    // K[lower] += Zᵀ Z / m by column blocks of K.
    let kp = SyncPtr(k.as_mut_ptr());
    let nb = n.div_ceil(128);
    let zr = z;
    (0..nb).into_par_iter().for_each(|bi| {
        let j0 = bi * 128;
        let b = 128.min(n - j0);
        #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its raw field
        let kp = kp;
        // SAFETY: block `bi` writes only K[j0.., j0..j0+b], disjoint across blocks.
        unsafe {
            T::gemm(
                n - j0,
                rows,
                b,
                T::from_f64(scale),
                zr.as_ptr().add(j0),
                1,
                n as isize,
                zr.as_ptr().add(j0),
                n as isize,
                1,
                T::from_f64(1.0),
                kp.0.add(j0 * n + j0),
                n as isize,
                1,
            );
        }
    });
}

/// Copies the lower triangle of the row-major `n × n` kernel to its upper triangle, in
/// parallel over row blocks, tile by tile (each block writes only its own rows).
pub(crate) fn symmetrize_lower<T: Real>(k: &mut [T], n: usize) {
    const B: usize = 64;
    let kp = SyncPtr(k.as_mut_ptr());
    (0..n.div_ceil(B)).into_par_iter().for_each(|bi| {
        #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its raw field
        let kp = kp;
        let i0 = bi * B;
        let i1 = (i0 + B).min(n);
        let mut j0 = i0;
        while j0 < n {
            let j1 = (j0 + B).min(n);
            for i in i0..i1 {
                for j in j0.max(i + 1)..j1 {
                    // SAFETY: writes K[i, j] (j > i, a row of this block), reads the lower
                    // triangle, which no block writes.
                    unsafe { *kp.0.add(i * n + j) = *kp.0.add(j * n + i) };
                }
            }
            j0 = j1;
        }
    });
}

/// Rejects a non-finite kernel (the activation overflowed) and shapes the result.
pub(crate) fn finish_kernel<T: Real>(k: Vec<T>, n: usize) -> Result<Array2<T>> {
    let bad = k
        .par_chunks(n.max(1))
        .enumerate()
        .find_map_first(|(i, row)| {
            row.iter()
                .position(|v| !v.to_f64().is_finite())
                .map(|j| (i, j))
        });
    if let Some((i, j)) = bad {
        return Err(EtfError::Numerical(format!(
            "the random-feature kernel is not finite at ({i}, {j}): the activation overflows {} \
             at this input scale; rescale the inputs",
            T::NAME
        )));
    }
    Ok(Array2::from_shape_vec((n, n), k).unwrap())
}
