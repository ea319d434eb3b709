//! Random-feature kernels (Tiomoko Ali et al., fixed random classifier; Liao & Couillet 2018). Samples are rows.
//!
//! - [`Activation`]: σ, with `F_k(τ) = τ^{-k/2} E[σ(√τ ξ) He_k(ξ)]` by quadrature for any σ
//!   and in closed form where one exists, and the coefficients `d0, d1, d2`.
//! - [`expected_kernel`]: `K_ij = E_w[σ(wᵀx_i) σ(wᵀx_j)]` for Gaussian `w`, closed forms or the
//!   Hermite (Mehler) series.
//! - [`empirical_kernel`]: `(1/m) σ(X Wᵀ) σ(X Wᵀ)ᵀ` in blocks of projection rows, generated
//!   block by block from the seed (never holding the `n × m` features nor `W`).
//!
//! One file per step: [`activation`], [`moments`], [`expected`], [`projection`], [`empirical`]
//! (and the AVX-512 float32 kernel in `simd`).

pub mod activation;
pub mod empirical;
pub mod expected;
pub mod moments;
pub mod projection;
#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(test)]
mod tests;

pub use activation::Activation;
pub use empirical::{empirical_kernel, portable_kernel};
pub use expected::expected_kernel;
pub use moments::{
    closed_form_moments, coefficients, hermite_moments, hermite_moments_normalized, moments,
    quadrature_moments, D2Convention, GaussianQuadrature, MAX_SERIES_ORDER,
};
pub use projection::{projection_rows, Projection, PROJECTION_BLOCK};
