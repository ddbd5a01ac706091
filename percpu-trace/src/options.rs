//! Plain options of a live run, resolved once from the command line (cgroup path to id,
//! one finding filter), so the session code never sees clap types.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::{engine::FindingFilter, kernel::plan::AttachMode};

/// Where kernel facts come from and how to attach.
#[derive(Clone, Debug)]
pub struct KernelOptions {
    /// Which program family to attach.
    pub attach: AttachMode,
    /// BTF file to use instead of /sys/kernel/btf/vmlinux.
    pub btf: Option<PathBuf>,
}

/// Options of live tracing (record and the TUI).
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// Kernel facts and attach mode.
    pub kernel: KernelOptions,
    /// Event ring buffer size in MiB (a power of two).
    pub ring_buffer_mib: u32,
    /// Only this process (tgid), filtered in the kernel.
    pub pid: Option<u32>,
    /// Which findings the user wants to see (`--pid`, `--comm`, `--cgroup`): the engine's
    /// one filter, carried into recordings and reports.
    pub filter: FindingFilter,
    /// Say more at start (the attach plan).
    pub verbose: bool,
}

impl TraceOptions {
    /// Options from the command-line values; resolves `--cgroup` (a path under
    /// /sys/fs/cgroup or an id) to its id.
    pub fn resolve(
        kernel: KernelOptions,
        ring_buffer_mib: u32,
        pid: Option<u32>,
        comm: Option<String>,
        cgroup: Option<&str>,
    ) -> Result<Self> {
        Ok(TraceOptions {
            kernel,
            ring_buffer_mib,
            pid,
            filter: FindingFilter {
                pid,
                comm,
                cgroup: cgroup.map(cgroup_id).transpose()?,
            },
            verbose: false,
        })
    }
}

/// Resolves `--cgroup`: a numeric id, or the directory of a cgroup v2 group (absolute, or
/// relative to the cgroup2 mount): its inode number is the id the kernel side compares
/// (`bpf_get_current_cgroup_id()`). Anything else (a file, a directory outside cgroupfs,
/// a cgroup v1 hierarchy whose ids can never match) is refused in one line.
pub fn cgroup_id(arg: &str) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(id) = arg.parse::<u64>() {
        return Ok(id);
    }
    let form = "give a cgroup v2 directory (e.g. system.slice/foo.service, relative to the \
                cgroup2 mount) or a numeric cgroup id";
    if arg.is_empty() {
        bail!("--cgroup: empty; {form}");
    }
    let p = Path::new(arg);
    let mount = cgroup2_mount();
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        mount
            .as_deref()
            .unwrap_or(Path::new("/sys/fs/cgroup"))
            .join(p)
    };
    let md = std::fs::metadata(&full)
        .with_context(|| format!("--cgroup {arg}: no cgroup at {}; {form}", full.display()))?;
    let fs = fs_magic(&full).with_context(|| format!("--cgroup {arg}: {}", full.display()))?;
    match fs {
        CGROUP2_SUPER_MAGIC if md.is_dir() => Ok(md.ino()),
        CGROUP2_SUPER_MAGIC => bail!(
            "--cgroup {arg}: {} is a file, not a cgroup; {form}",
            full.display()
        ),
        CGROUP_SUPER_MAGIC => bail!(
            "--cgroup {arg}: {} is a cgroup v1 group, which the kernel side cannot match (it \
             compares cgroup v2 ids); {form}",
            full.display()
        ),
        _ => bail!(
            "--cgroup {arg}: {} is not in a cgroup filesystem; {form}",
            full.display()
        ),
    }
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;

/// `statfs(2)` filesystem type of `path`.
fn fs_magic(path: &Path) -> Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).context("path has a NUL byte")?;
    // SAFETY: zeroed statfs is a valid out buffer; `c` outlives the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64, not on every target
    Ok(st.f_type as i64)
}

/// Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
/// hybrid host), from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split_whitespace().next() != Some("cgroup2") {
            return None;
        }
        pre.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// Parses `-p`: a process id from 1 to this host's pid_max (0 would mean "every process"
/// in the kernel; above pid_max no process can have it).
pub fn parse_pid(s: &str) -> std::result::Result<u32, String> {
    let max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
        .unwrap_or(PID_MAX_LIMIT);
    match s.parse::<i64>() {
        Ok(n) if n > 0 && n <= max => Ok(n as u32),
        _ => Err(format!(
            "{s:?} is not a process id: give a number from 1 to {max} (pid_max)"
        )),
    }
}

/// The kernel's PID_MAX_LIMIT (4M), when /proc/sys/kernel/pid_max cannot be read.
const PID_MAX_LIMIT: i64 = 4 << 20;

/// Longest `-d`: a year (a longer run is a service without `-d`).
const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// Parses `-d`: a duration with a unit ("30s", "5m", "1h30m", "500ms"), more than zero and
/// at most a year.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let form = "give a duration with a unit, like 30s, 5m or 1h30m";
    if s.trim().parse::<f64>().is_ok() {
        return Err(format!("{s:?} has no unit: {form}"));
    }
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err(format!("{s:?} is zero: {form}")),
        Ok(d) if d > MAX_DURATION => Err(format!(
            "{s:?} is longer than a year: {form} (or leave -d out to run until stopped)"
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{s:?} is not a duration ({e}): {form}")),
    }
}

/// Parses `--metrics-max-requests`: from 1 to 10000 connections.
pub fn parse_max_requests(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?}: give a number of connections from 1 to 10000"
        )),
    }
}

/// The kernel's TASK_COMM_LEN less the NUL: the longest comm a task can have.
const COMM_MAX: usize = 15;

/// Parses `--comm`: a task name, `*` matching any run of characters; not empty, and not
/// more than the kernel's 15 characters besides the `*`s (no task could match).
pub fn parse_comm(s: &str) -> std::result::Result<String, String> {
    let literal = s.bytes().filter(|&b| b != b'*').count();
    if s.is_empty() {
        return Err("empty: give a task name (at most 15 characters, `*` matches any run)".into());
    }
    if literal > COMM_MAX {
        return Err(format!(
            "{s:?} has {literal} characters: a task name has at most {COMM_MAX} (the kernel \
             cuts comm there); give at most {COMM_MAX}, `*` matches any run"
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_ids_parse_or_fail_in_one_line() {
        assert_eq!(cgroup_id("1234").unwrap(), 1234);
        let e = cgroup_id("no/such/cgroup-xyz").unwrap_err();
        assert!(format!("{e:#}").contains("no cgroup at"), "{e:#}");
        assert!(format!("{e:#}").contains("/no/such/cgroup-xyz"), "{e:#}");
    }

    /// One line each, naming the valid form (all accepted before).
    #[test]
    fn bad_filters_and_durations_are_refused_naming_the_valid_form() {
        for arg in [
            "/etc",
            "../../../etc/passwd",
            "/sys/fs/cgroup/../../etc",
            "",
        ] {
            let e = format!("{:#}", cgroup_id(arg).unwrap_err());
            assert!(e.contains("cgroup v2 directory"), "{arg}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        // A cgroup v1 hierarchy, where the host has one.
        let v1 = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu"]
            .into_iter()
            .find(|p| fs_magic(Path::new(p)).ok() == Some(CGROUP_SUPER_MAGIC));
        if let Some(v1) = v1 {
            let e = format!("{:#}", cgroup_id(v1).unwrap_err());
            assert!(e.contains("cgroup v1"), "{e}");
        }
        // The v2 root is accepted, absolute and relative ("." is the mount itself).
        if let Some(m) = cgroup2_mount() {
            use std::os::unix::fs::MetadataExt;
            let ino = std::fs::metadata(&m).unwrap().ino();
            assert_eq!(cgroup_id(m.to_str().unwrap()).unwrap(), ino);
            assert_eq!(cgroup_id(".").unwrap(), ino);
        }
        for d in [
            "0s",
            "0",
            "1",
            "1.5",
            "18446744073709551615s",
            "400days",
            "soon",
            "",
        ] {
            let e = parse_duration(d).unwrap_err();
            assert!(e.contains("like 30s, 5m or 1h30m"), "{d}: {e}");
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for p in ["0", "-3", "99999999", "4294967296", "x"] {
            let e = parse_pid(p).unwrap_err();
            assert!(e.contains("give a number from 1 to"), "{p}: {e}");
        }
        assert_eq!(parse_pid("1"), Ok(1));
        for c in ["", "abcdefghijklmnop", "kworker/u16:12345"] {
            let e = parse_comm(c).unwrap_err();
            assert!(e.contains("at most 15"), "{c:?}: {e}");
        }
        assert_eq!(parse_comm("kworker/*").as_deref(), Ok("kworker/*"));
        assert!(parse_comm("*abcdefghijklmno*").is_ok());
    }
}
