//! Plain options of a live run, resolved once from the command line (cgroup path to id,
//! one finding filter), so the session code never sees clap types.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

/// Resolves `--cgroup`: a numeric id, or a path under /sys/fs/cgroup (its inode number is
/// the cgroup v2 id).
pub fn cgroup_id(arg: &str) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(id) = arg.parse::<u64>() {
        return Ok(id);
    }
    let p = Path::new(arg);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new("/sys/fs/cgroup").join(p)
    };
    let md = std::fs::metadata(&full)
        .with_context(|| format!("--cgroup {arg}: no cgroup at {}", full.display()))?;
    Ok(md.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_ids_parse_or_fail_in_one_line() {
        assert_eq!(cgroup_id("1234").unwrap(), 1234);
        let e = cgroup_id("no/such/cgroup-xyz").unwrap_err();
        assert!(format!("{e:#}").contains("no cgroup at /sys/fs/cgroup/no/such/cgroup-xyz"));
    }
}
