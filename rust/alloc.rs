//! Size and memory guards: every object built from user sizes is checked against these before
//! anything is allocated, so a request the machine cannot satisfy becomes a typed
//! [`EtfError::Dimension`] instead of an abort (or the out-of-memory killer).

use crate::error::{EtfError, Result};

/// Physical memory of this machine in bytes (Linux: `MemTotal` of `/proc/meminfo`), if known.
pub fn physical_memory() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The memory one object built from user sizes may take: three quarters of the machine's
/// physical memory (where it is known). Under Linux's overcommit a reservation above it would
/// succeed and the process would be killed while zero-filling, so it is refused up front.
pub fn memory_budget() -> Option<u128> {
    physical_memory().map(|m| m / 4 * 3)
}

/// Refuses an object of `bytes` bytes above [`memory_budget`], before any allocation.
pub fn check_memory(bytes: u128, what: &str) -> Result<()> {
    match memory_budget() {
        Some(budget) if bytes > budget => Err(EtfError::Dimension(format!(
            "{what} needs {:.1} GiB, more than this machine can hold ({:.1} GiB: 3/4 of its \
             physical memory)",
            bytes as f64 / (1u64 << 30) as f64,
            budget as f64 / (1u64 << 30) as f64
        ))),
        _ => Ok(()),
    }
}

/// A zero-filled vector allocated fallibly: a request the machine cannot satisfy becomes an
/// error instead of aborting the process.
pub fn try_zeros<T: Clone + Default>(n: usize, what: &str) -> Result<Vec<T>> {
    check_memory(n as u128 * std::mem::size_of::<T>() as u128, what)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        EtfError::Dimension(format!(
            "{what} needs {n} values ({:.1} GiB), which cannot be allocated",
            (n as f64) * std::mem::size_of::<T>() as f64 / (1u64 << 30) as f64
        ))
    })?;
    v.resize(n, T::default());
    Ok(v)
}

/// Refuses dense objects above `2^31` elements (16 GiB of f64) before any allocation.
pub fn check_dense_size(rows: usize, cols: usize, what: &str) -> Result<()> {
    let n = rows as u128 * cols as u128;
    if n > MAX_DENSE {
        return Err(EtfError::Dimension(format!(
            "{what} would be {rows} × {cols} = {n} values ({:.1} GiB of f64); too large",
            n as f64 * 8.0 / (1u64 << 30) as f64
        )));
    }
    Ok(())
}

/// Largest number of elements of one dense object built from user sizes (`2^31`, 16 GiB of f64).
pub const MAX_DENSE: u128 = 1 << 31;

/// Largest number of elements of a frame or projection matrix returned whole (`2^28`, 2 GiB of
/// f64): larger ones are refused up front rather than risking an allocation failure mid-way.
pub const MAX_FRAME: u128 = 1 << 28;

/// Refuses a returned matrix of more than [`MAX_FRAME`] elements.
pub fn check_frame_size(rows: usize, cols: usize, what: &str) -> Result<()> {
    let n = rows as u128 * cols as u128;
    if n > MAX_FRAME {
        return Err(EtfError::Dimension(format!(
            "{what} would be {rows} × {cols} = {n} values ({:.1} GiB of f64); too large (at \
             most 2^28 values)",
            n as f64 * 8.0 / (1u64 << 30) as f64
        )));
    }
    Ok(())
}

/// Largest amount of work (multiply-adds) accepted for one call: `2^40` ≈ 1.1e12, minutes of
/// compute on a two-core machine (a few seconds per 1e10). More is refused up front instead of
/// running for hours with the GIL released.
pub const MAX_WORK: u128 = 1 << 40;

/// Refuses a computation of more than [`MAX_WORK`] multiply-adds before starting it.
pub fn check_work(work: u128, what: &str) -> Result<()> {
    if work > MAX_WORK {
        return Err(EtfError::Dimension(format!(
            "{what} would take about {work:.3e} multiply-adds (more than 2^40); refused",
            work = work as f64
        )));
    }
    Ok(())
}

/// Checks that `bytes` could be allocated right now (a fallible reservation, released at once):
/// a dense routine of a library that aborts on allocation failure is only called after it.
pub fn probe_alloc(bytes: u128, what: &str) -> Result<()> {
    let fail = || {
        EtfError::Dimension(format!(
            "{what} needs {:.1} GiB of working memory, which cannot be allocated",
            bytes as f64 / (1u64 << 30) as f64
        ))
    };
    let n = usize::try_from(bytes).map_err(|_| fail())?;
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(n).map_err(|_| fail())?;
    Ok(())
}
