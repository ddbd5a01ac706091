//! Thin wrappers over the few system calls and /proc knobs the workloads use.
use std::{
    fs, io,
    process::{Child, Command},
    time::Duration,
};

use anyhow::{bail, Context, Result};

/// `PR_SET_IO_FLUSHER` (linux/prctl.h): not in every libc crate version.
const PR_SET_IO_FLUSHER: libc::c_int = 57;

/// Puts the whole process in a NOIO memalloc scope (PF_MEMALLOC_NOIO), as loop devices and
/// FUSE daemons do: every allocation its system calls make loses __GFP_IO and __GFP_FS.
pub fn set_io_flusher() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) };
    if r != 0 {
        bail!("prctl(PR_SET_IO_FLUSHER): {}", io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread (or `pid`, 0 for self) to one CPU.
pub fn pin(pid: libc::pid_t, cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity({pid}, cpu {cpu}): {}",
                io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// SCHED_FIFO at `prio` for the calling process, or SCHED_OTHER when `prio` is 0.
pub fn set_fifo(prio: i32) -> Result<()> {
    let policy = if prio > 0 {
        libc::SCHED_FIFO
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: param is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        bail!(
            "sched_setscheduler(prio {prio}): {}",
            io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Removes the memlock limit (pre-5.11 kernels charge BPF maps to it).
pub fn unlimit_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid rlimit pointer. Failure only matters on old kernels, where map creation
    // will then report EPERM itself.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

/// Number of online CPUs.
pub fn ncpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// Writes a /proc or /sys knob, returning the old value so the caller can restore it.
pub fn write_knob(path: &str, value: &str) -> Result<String> {
    let old = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    fs::write(path, value).with_context(|| format!("writing {value:?} to {path}"))?;
    Ok(old.trim().to_string())
}

/// Pid of the first task whose comm is `comm`.
pub fn find_task(comm: &str) -> Option<libc::pid_t> {
    let dir = fs::read_dir("/proc").ok()?;
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .find(|pid| fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
}

/// Sleeps in short steps until `deadline` (used by loops that must stop on time).
pub fn remaining(deadline: std::time::Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(std::time::Instant::now())
        .filter(|d| !d.is_zero())
}

/// Sets the task's comm (15 bytes at most), so traces and the tool's reports name each
/// workload role.
pub fn set_comm(name: &str) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr(), 0, 0, 0) };
}

/// Sets every CPU's fair-server runtime (debugfs, 6.12+) to 0; returns the old values for
/// [`restore_knobs`]. Nothing to do on kernels without it.
pub fn fair_server_off() -> Vec<(String, String)> {
    fair_server_off_on(None)
}

/// [`fair_server_off`] for one CPU only (`Some(cpu)`), or every CPU (`None`).
pub fn fair_server_off_on(cpu: Option<usize>) -> Vec<(String, String)> {
    let mut old = Vec::new();
    let Ok(dir) = fs::read_dir("/sys/kernel/debug/sched/fair_server") else {
        return old;
    };
    for e in dir.flatten() {
        if cpu.is_some_and(|c| e.file_name().to_str() != Some(&format!("cpu{c}"))) {
            continue;
        }
        let p = e.path().join("runtime").to_string_lossy().into_owned();
        match write_knob(&p, "0") {
            Ok(v) => old.push((p, v)),
            Err(e) => eprintln!("fair server: {e:#}"),
        }
    }
    old
}

/// Writes back values saved by [`write_knob`] callers.
pub fn restore_knobs(saved: &[(String, String)]) {
    for (p, v) in saved {
        if let Err(e) = fs::write(p, v) {
            eprintln!("restoring {p}: {e}");
        }
    }
}

/// Runs this binary again with `args` (children are separate processes so each can have its
/// own scope, CPU and scheduling policy).
pub fn spawn(args: &[String]) -> Result<Child> {
    let exe = std::env::current_exe().context("current_exe")?;
    Command::new(exe)
        .args(args)
        .spawn()
        .context("spawning a workload child")
}
