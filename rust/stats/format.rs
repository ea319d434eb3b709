//! The versioned little-endian bytes of [`CollapseStats`], with an FNV-1a checksum (the one
//! checksum of the crate: the transfer statistics' format wraps these bytes and uses it too).
//!
//! Layout: magic `ETFCSTAT`, `u32` version, `u32` flags, `u64` K, `u64` p, then the shift (when
//! flagged), counts, class sums, squared norms, unit sums, zero rows, the lower triangle of the
//! scatter and of each per-class scatter (when flagged), and the `u64` checksum of all before it.

use super::sums::Sums;
use super::CollapseStats;
use crate::alloc::{check_dense_size, try_zeros};
use crate::error::{EtfError, Result};
use crate::linalg::Precision;

/// Format version written by [`CollapseStats::to_bytes`] (version 1, without the precision
/// flag, is still read, as float64 statistics).
pub const FORMAT_VERSION: u32 = 2;
pub(crate) const MAGIC: &[u8; 8] = b"ETFCSTAT";
pub(crate) const FLAG_SHIFT: u32 = 1;
pub(crate) const FLAG_CLASS_SCATTER: u32 = 2;
/// Version 2: the statistics were built (at least partly) from float32 input.
pub(crate) const FLAG_FLOAT32: u32 = 4;

/// FNV-1a-64 of `data`: the checksum every serialised state of the crate ends with.
pub fn checksum(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn corrupt(m: &str) -> EtfError {
    EtfError::Corrupt(format!("invalid CollapseStats bytes: {m}"))
}

/// What the header of a blob says, checked against its length and checksum.
struct Header {
    k: usize,
    p: usize,
    has_shift: bool,
    track: bool,
    float32: bool,
}

/// Parses and checks the header (with checked arithmetic), the length it implies and the
/// checksum, before anything is allocated.
fn read_header(bytes: &[u8]) -> Result<Header> {
    if bytes.len() < 40 {
        return Err(corrupt(&format!(
            "{} bytes is too short for the header",
            bytes.len()
        )));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt("wrong magic (not an etfcore CollapseStats blob)"));
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let version = u32_at(8);
    if version != 1 && version != FORMAT_VERSION {
        return Err(EtfError::Incompatible(format!(
            "CollapseStats format version {version} is not supported (this etfcore reads \
             versions 1 to {FORMAT_VERSION})"
        )));
    }
    let flags = u32_at(12);
    let known = if version == 1 {
        FLAG_SHIFT | FLAG_CLASS_SCATTER
    } else {
        FLAG_SHIFT | FLAG_CLASS_SCATTER | FLAG_FLOAT32
    };
    if flags & !known != 0 {
        return Err(corrupt(&format!("unknown flags {flags:#x}")));
    }
    let (k64, p64) = (u64_at(16), u64_at(24));
    if k64 == 0 || p64 == 0 {
        return Err(corrupt(&format!(
            "implausible num_classes={k64}, dim={p64}"
        )));
    }
    let has_shift = flags & FLAG_SHIFT != 0;
    let track = flags & FLAG_CLASS_SCATTER != 0;
    // Sizes in checked u128 arithmetic: a header whose sizes overflow cannot match any length.
    let (k, p) = (k64 as u128, p64 as u128);
    let tri = p * (p + 1) / 2;
    let words = || -> Option<u128> {
        (if has_shift { p } else { 0 })
            .checked_add(3 * k)? // counts, squared norms, zero rows
            .checked_add((2 * k).checked_mul(p)?)? // class sums, unit sums
            .checked_add(tri)?
            .checked_add(if track { k.checked_mul(tri)? } else { 0 })
    };
    let expected = words().and_then(|w| w.checked_mul(8)?.checked_add(40));
    if expected != Some(bytes.len() as u128) {
        return Err(corrupt(&format!(
            "length {} but the header implies {}",
            bytes.len(),
            expected.map_or("more than 2^128".to_string(), |e| e.to_string())
        )));
    }
    // Every size is now bounded by the length of the input.
    let (k, p) = (k as usize, p as usize);
    check_dense_size(p, p, "the scatter")?;
    if track {
        check_dense_size(k * p, p, "the per-class scatters")?;
    }
    let body = &bytes[..bytes.len() - 8];
    if checksum(body) != u64_at(bytes.len() - 8) {
        return Err(corrupt("checksum mismatch (truncated or modified)"));
    }
    Ok(Header {
        k,
        p,
        has_shift,
        track,
        float32: flags & FLAG_FLOAT32 != 0,
    })
}

/// A cursor over the body of a checked blob.
struct Reader<'a> {
    bytes: &'a [u8],
    off: usize,
}

impl Reader<'_> {
    fn u64s(&mut self, n: usize) -> Vec<u64> {
        let b = &self.bytes[self.off..self.off + 8 * n];
        self.off += 8 * n;
        b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
    fn f64s(&mut self, n: usize) -> Result<Vec<f64>> {
        let v: Vec<f64> = self.u64s(n).into_iter().map(f64::from_bits).collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(corrupt("non-finite value"));
        }
        Ok(v)
    }
    /// A full `p × p` matrix from its packed lower triangle (the upper one left at zero).
    fn lower(&mut self, p: usize) -> Result<Vec<f64>> {
        let packed = self.f64s(p * (p + 1) / 2)?;
        let mut s = try_zeros(p * p, "the scatter")?;
        let mut it = packed.into_iter();
        for i in 0..p {
            for j in 0..=i {
                s[i * p + j] = it.next().unwrap_or(0.0);
            }
        }
        Ok(s)
    }
}

/// The body of a blob whose header was checked: the statistics, not yet validated.
fn read_body(bytes: &[u8], h: &Header) -> Result<CollapseStats> {
    let (k, p) = (h.k, h.p);
    let mut rd = Reader { bytes, off: 32 };
    let shift = if h.has_shift { Some(rd.f64s(p)?) } else { None };
    let counts = rd.u64s(k);
    let class_sums = rd.f64s(k * p)?;
    let class_sq_norms = rd.f64s(k)?;
    let class_unit_sums = rd.f64s(k * p)?;
    let class_zero_rows = rd.u64s(k);
    let scatter = rd.lower(p)?;
    let class_scatter = if h.track {
        let mut cs = Vec::new();
        cs.try_reserve_exact(k * p * p)
            .map_err(|_| corrupt("per-class scatters too large to allocate"))?;
        for _ in 0..k {
            cs.extend(rd.lower(p)?);
        }
        Some(cs)
    } else {
        None
    };
    let has_samples = counts.iter().any(|&c| c > 0);
    let precision = match (has_samples, h.float32) {
        (false, false) => None,
        (false, true) => return Err(corrupt("a precision flag without samples")),
        (true, true) => Some(Precision::F32),
        (true, false) => Some(Precision::F64),
    };
    Ok(CollapseStats {
        num_classes: k,
        dim: p,
        shift,
        sums: Sums {
            dim: p,
            counts,
            class_sums,
            class_sq_norms,
            class_unit_sums,
            class_zero_rows,
            scatter,
            class_scatter,
        },
        precision,
        scratch: super::Scratch::default(),
    })
}

impl CollapseStats {
    /// Serialises to a versioned little-endian format with an FNV-1a checksum.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (k, p) = (self.num_classes, self.dim);
        let mut out = Vec::with_capacity(64 + 8 * (3 * k * p + p * p / 2 + 4 * k + p));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let mut flags = 0u32;
        if self.shift.is_some() {
            flags |= FLAG_SHIFT;
        }
        if self.sums.class_scatter.is_some() {
            flags |= FLAG_CLASS_SCATTER;
        }
        if self.precision == Some(Precision::F32) {
            flags |= FLAG_FLOAT32;
        }
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(k as u64).to_le_bytes());
        out.extend_from_slice(&(p as u64).to_le_bytes());
        let put = |out: &mut Vec<u8>, v: &[f64]| {
            v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
        if let Some(s) = &self.shift {
            put(&mut out, s);
        }
        self.sums
            .counts
            .iter()
            .for_each(|c| out.extend_from_slice(&c.to_le_bytes()));
        put(&mut out, &self.sums.class_sums);
        put(&mut out, &self.sums.class_sq_norms);
        put(&mut out, &self.sums.class_unit_sums);
        self.sums
            .class_zero_rows
            .iter()
            .for_each(|c| out.extend_from_slice(&c.to_le_bytes()));
        let lower = |out: &mut Vec<u8>, s: &[f64]| {
            for i in 0..p {
                for j in 0..=i {
                    out.extend_from_slice(&s[i * p + j].to_le_bytes());
                }
            }
        };
        lower(&mut out, &self.sums.scatter);
        if let Some(cs) = &self.sums.class_scatter {
            for c in 0..k {
                lower(&mut out, &cs[c * p * p..(c + 1) * p * p]);
            }
        }
        let sum = checksum(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Parses bytes written by [`to_bytes`](Self::to_bytes) (format version 1 or 2), validating
    /// the header with checked arithmetic, the length, the checksum and every invariant of the
    /// state before anything is allocated or returned.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let header = read_header(bytes)?;
        let s = read_body(bytes, &header)?;
        s.check_invariants().map_err(|m| corrupt(&m))?;
        Ok(s)
    }
}
