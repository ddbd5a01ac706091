//! The short-lived load `check --probe` runs in-process: two threads that create and close
//! BPF_MAP_TYPE_PERCPU_ARRAY maps with large values, so percpu chunks get populated (and
//! created) under pcpu_alloc_mutex while the probes watch. One thread enters the
//! IO_FLUSHER scope first (PR_SET_IO_FLUSHER: its allocations are NOIO), the other stays
//! unconstrained, because the two halves of the fix show in different holders: an
//! unconstrained holder's populate gfp (backing-noio) and the page-table scope the kernel
//! sets around populating (populate-gfp).
//!
//! Bounded: at most [`MAX_MAPS`] maps alive at once over both threads, each of at most
//! [`MAX_ENTRIES`] values of [`VALUE_SIZE`] bytes per possible CPU, fewer entries (then
//! smaller values) when the possible CPUs would take the total over [`MAX_BYTES`]; each
//! round's maps are closed together before the next; the whole load stops at its deadline.
use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use serde::Serialize;

/// Maps alive at once, over both threads.
pub const MAX_MAPS: u32 = 16;
/// Entries per map (one percpu allocation each).
pub const MAX_ENTRIES: u32 = 64;
/// Value size: 32 KiB, the largest percpu unit allocation, so chunk space runs out fast.
pub const VALUE_SIZE: u32 = 32 << 10;
/// Percpu memory held at once over all possible CPUs (a percpu value takes VALUE_SIZE on
/// every possible CPU).
pub const MAX_BYTES: u64 = 64 << 20;
/// Rounds per thread (each round: create its maps, then close them all).
const ROUNDS: u32 = 4;

// Syscall ABI numbers (uapi/linux/bpf.h, uapi/linux/prctl.h), stable across kernels.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
/// Not in every libc crate version.
const PR_SET_IO_FLUSHER: libc::c_int = 57;

/// The load's size, chosen from the possible CPUs within the bounds above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LoadSpec {
    /// Maps per thread and round.
    pub maps_per_thread: u32,
    /// Entries per map.
    pub entries: u32,
    /// Bytes per value (per CPU).
    pub value_size: u32,
    /// Possible CPUs (each percpu value is allocated on every one).
    pub possible_cpus: u32,
    /// Percpu bytes alive at most at once, over both threads and all CPUs.
    pub max_bytes_held: u64,
    /// The load stops creating maps after this long.
    pub deadline_ms: u64,
}

impl LoadSpec {
    /// The largest load within the bounds for `possible_cpus` CPUs: fewer entries first
    /// (32 KiB values are what exhausts chunk space), then smaller values.
    pub fn new(possible_cpus: u32, deadline: Duration) -> Self {
        let cpus = possible_cpus.max(1) as u64;
        let per_cpu = MAX_BYTES / cpus;
        let entries =
            (per_cpu / (MAX_MAPS as u64 * VALUE_SIZE as u64)).clamp(1, MAX_ENTRIES as u64);
        let value = (per_cpu / (MAX_MAPS as u64 * entries)).clamp(8, VALUE_SIZE as u64) & !7;
        LoadSpec {
            maps_per_thread: MAX_MAPS / 2,
            entries: entries as u32,
            value_size: value as u32,
            possible_cpus: cpus as u32,
            max_bytes_held: MAX_MAPS as u64 * entries * value * cpus,
            deadline_ms: deadline.as_millis() as u64,
        }
    }
}

/// What the load did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadResult {
    /// Maps created (and closed).
    pub maps: u64,
    /// Percpu allocations made (map entries created).
    pub allocations: u64,
    /// Rounds completed by the IO_FLUSHER thread and the unconstrained one.
    pub rounds: [u32; 2],
    /// Why the IO_FLUSHER thread did not run (PR_SET_IO_FLUSHER needs CAP_SYS_RESOURCE,
    /// which sandboxes drop); the unconstrained thread alone still shows both patches.
    pub io_flusher_error: Option<String>,
    /// How long it ran.
    pub elapsed_ms: u64,
}

/// Possible CPUs, from `/sys/devices/system/cpu/possible` ("0-3,8"); 1 if unreadable.
pub fn possible_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| parse_cpu_list(s.trim()))
        .unwrap_or(1)
}

fn parse_cpu_list(s: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in s.split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

fn percpu_array(value_size: u32, entries: u32) -> io::Result<OwnedFd> {
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries, then
    // zeros (flags, inner map, numa node); the name sits at 28. The kernel accepts a larger
    // buffer whose unknown bytes are zero.
    #[repr(C, align(8))]
    struct Attr([u8; 128]);
    let mut attr = Attr([0; 128]);
    for (off, v) in [
        (0, BPF_MAP_TYPE_PERCPU_ARRAY),
        (4, 4),
        (8, value_size),
        (12, entries),
    ] {
        attr.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    attr.0[28..36].copy_from_slice(b"pt_probe");
    // SAFETY: attr is 128 writable bytes and its size is passed along.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            attr.0.as_mut_ptr(),
            attr.0.len() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Names the calling thread (the comm the events carry), best effort.
fn name_thread(name: &[u8]) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name[..n]);
    // SAFETY: buf is NUL-terminated and outlives the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Why a thread stopped before its first round.
struct NoScope(String);

/// One thread's rounds; `io_flusher` enters the NOIO scope first (this thread only: the
/// flag is per task and goes with the thread).
fn worker(
    spec: LoadSpec,
    io_flusher: bool,
    until: Instant,
) -> Result<std::result::Result<(u64, u32), NoScope>> {
    if io_flusher {
        name_thread(b"pt-probe-noio");
        // SAFETY: plain prctl with integer arguments.
        if unsafe { libc::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) } != 0 {
            return Ok(Err(NoScope(format!(
                "prctl(PR_SET_IO_FLUSHER): {}",
                io::Error::last_os_error()
            ))));
        }
    } else {
        name_thread(b"pt-probe-unc");
    }
    let mut maps = 0;
    let mut rounds = 0;
    while rounds < ROUNDS && Instant::now() < until {
        let mut held = Vec::with_capacity(spec.maps_per_thread as usize);
        for _ in 0..spec.maps_per_thread {
            if Instant::now() >= until {
                break;
            }
            match percpu_array(spec.value_size, spec.entries) {
                Ok(fd) => held.push(fd),
                Err(e) => bail!(
                    "creating a percpu array map ({} x {} B): {e}",
                    spec.entries,
                    spec.value_size
                ),
            }
        }
        maps += held.len() as u64;
        // Closed together: the round's memory goes back before the next round allocates.
        drop(held);
        rounds += 1;
    }
    Ok(Ok((maps, rounds)))
}

/// Runs both threads to completion (each stops at the deadline).
pub fn run(spec: LoadSpec) -> Result<LoadResult> {
    let start = Instant::now();
    let until = start + Duration::from_millis(spec.deadline_ms);
    let spawn = |io_flusher: bool| {
        std::thread::Builder::new()
            .name(
                if io_flusher {
                    "pt-probe-noio"
                } else {
                    "pt-probe-unc"
                }
                .into(),
            )
            .spawn(move || worker(spec, io_flusher, until))
    };
    let noio = spawn(true)?;
    let unc = spawn(false)?;
    type Handle = std::thread::JoinHandle<Result<std::result::Result<(u64, u32), NoScope>>>;
    let join = |h: Handle| {
        h.join()
            .map_err(|_| anyhow::anyhow!("a load thread of check --probe panicked"))?
    };
    // Join both before reporting either's error, so no thread outlives the probe.
    let (a, b) = (join(noio), join(unc));
    let (a, b) = (a?, b?);
    let b = b.map_err(|NoScope(e)| anyhow::anyhow!("{e}"))?;
    let (a, io_flusher_error) = match a {
        Ok(a) => (a, None),
        Err(NoScope(e)) => ((0, 0), Some(e)),
    };
    Ok(LoadResult {
        maps: a.0 + b.0,
        allocations: (a.0 + b.0) * spec.entries as u64,
        rounds: [a.1, b.1],
        io_flusher_error,
        elapsed_ms: start.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3"), Some(4));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
    }

    #[test]
    fn load_stays_within_bounds() {
        for cpus in [1, 2, 3, 4, 8, 64, 512, 4096, 100_000] {
            let s = LoadSpec::new(cpus, Duration::from_secs(2));
            assert!(s.maps_per_thread * 2 <= MAX_MAPS, "{s:?}");
            assert!(s.entries >= 1 && s.entries <= MAX_ENTRIES, "{s:?}");
            assert!(
                s.value_size >= 8 && s.value_size <= VALUE_SIZE && s.value_size.is_multiple_of(8)
            );
            assert!(s.max_bytes_held <= MAX_BYTES, "{s:?}");
        }
        // A 2-CPU host gets the whole load: 16 maps x 64 x 32 KiB per CPU.
        let s = LoadSpec::new(2, Duration::from_secs(2));
        assert_eq!((s.maps_per_thread, s.entries), (8, 64));
        assert_eq!(s.max_bytes_held, 64 << 20);
    }
}
