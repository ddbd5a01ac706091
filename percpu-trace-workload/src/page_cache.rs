//! Page cache for reclaim to take: reading a file over and over.
use std::{
    fs,
    io::Read,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use crate::sys;

/// Reads `file` for `secs` (0: once); returns the bytes read.
pub fn churn(file: &PathBuf, secs: u64) -> Result<u64> {
    churn_with(file, secs, false)
}

/// Reads `file` for `secs` (0: once). `small`: POSIX_FADV_RANDOM, so the page cache is made
/// of single pages (no readahead into large folios): reclaim then frees about
/// SWAP_CLUSTER_MAX pages a call, not one 2 MiB folio.
pub fn churn_with(file: &PathBuf, secs: u64, small: bool) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let mut f = fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        if small {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor; advice only.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        }
        loop {
            let n = f.read(&mut buf).context("reading")?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if secs > 0 && sys::remaining(deadline).is_none() {
                return Ok(total);
            }
        }
        if secs == 0 || sys::remaining(deadline).is_none() {
            return Ok(total);
        }
    }
}
