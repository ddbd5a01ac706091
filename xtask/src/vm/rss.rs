//! The recorder's memory in the guests: its peak RSS (VmHWM), saved by the guest script
//! from /proc/PID/status just before it stops the recorder, must stay under a limit.
use std::{fs, path::Path};

/// Most the recorder may use at its peak (VmHWM), in a 512 MiB guest as on a host: it runs
/// when a host is short of memory (issue 16's target).
pub const MAX_RSS_KIB: u64 = 50 * 1024;

/// The bound for the guest's architecture (`uname -m`): the same everywhere since
/// 2026-12-02 (arm64 7.3 went from 52.2 MB to 40.7 MB once aya stopped parsing the whole
/// kernel BTF for fentry and discovery kept one kallsyms table).
pub fn max_rss_kib(_arch: &str) -> u64 {
    MAX_RSS_KIB
}

/// The recorder's peak RSS, from the `VmHWM` line the guest saved before stopping it.
pub fn peak_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The recorder's peak RSS as a fact (`Ok`) or why it fails (`Err`): unknown, or over
/// [`MAX_RSS_KIB`].
pub fn assess_rss(d: &Path) -> Result<String, String> {
    let status = fs::read_to_string(d.join("rss.txt")).unwrap_or_default();
    let arch = status
        .lines()
        .find_map(|l| l.strip_prefix("Arch:"))
        .map_or("x86_64", str::trim);
    // A scenario that asks for a bigger ring (recursion) maps it into the recorder, twice
    // (the kernel maps a ring's data pages twice, so a record never wraps): that share of
    // the RSS is the ring the run asked for, not the recorder's own memory.
    let ring_kib = fs::read_to_string(d.join("ring_mib"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(0, |mib| 2 * mib * 1024);
    let max = max_rss_kib(arch) + ring_kib;
    // Where the peak was reached: by the time the probes were attached, or later.
    let at_attach = status
        .lines()
        .find_map(|l| l.strip_prefix("AttachVmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .map_or(String::new(), |n| format!(" ({n}kB at attach)"));
    match peak_rss_kib(&status) {
        Some(kib) if kib < max && ring_kib > 0 => Ok(format!(
            "VmHWM={kib}kB{at_attach}, {ring_kib}kB of it the requested ring"
        )),
        Some(kib) if kib < max => Ok(format!("VmHWM={kib}kB{at_attach}")),
        Some(kib) => Err(format!(
            "record peak RSS {kib} kB (VmHWM{at_attach}), the limit on {arch} is {max} kB"
        )),
        None => Err("no VmHWM of the recorder (rss.txt missing or unreadable)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_from_proc_status() {
        let st = "VmHWM:\t   34312 kB\nVmRSS:\t   30000 kB\n";
        assert_eq!(peak_rss_kib(st), Some(34312));
        assert_eq!(peak_rss_kib("VmRSS: 1 kB"), None);
        assert_eq!(peak_rss_kib(""), None);
        assert_eq!(max_rss_kib("x86_64"), 51_200);
        assert_eq!(max_rss_kib("aarch64"), 51_200);
    }

    #[test]
    fn a_requested_ring_counts_twice_and_only_it() {
        let d = std::env::temp_dir().join(format!("rss-ring-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        // The 2026-12-07 recursion boot with a 256 MiB ring: 540,852 kB at its peak.
        fs::write(d.join("rss.txt"), "VmHWM:\t  540852 kB\n").unwrap();
        assert!(assess_rss(&d).is_err(), "no ring asked for: over the limit");
        fs::write(d.join("ring_mib"), "256\n").unwrap();
        assert!(assess_rss(&d).is_ok());
        // The recorder's own memory is still bounded: 60 MiB more than the ring fails.
        fs::write(d.join("rss.txt"), "VmHWM:\t  585000 kB\n").unwrap();
        assert!(assess_rss(&d).is_err());
        let _ = fs::remove_dir_all(&d);
    }
}
