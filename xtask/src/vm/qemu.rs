//! Booting a guest under qemu (TCG) with a serial console and a hard time limit.
use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

/// Guest shape and files.
pub struct Machine<'a> {
    /// bzImage.
    pub kernel: &'a Path,
    /// gzip'd cpio.
    pub initrd: &'a Path,
    /// vCPUs.
    pub cpus: u32,
    /// MiB of RAM.
    pub mem_mib: u32,
    /// Raw disks, in order (vda, vdb, ...), with whether writes are discarded (snapshot).
    pub disks: Vec<(PathBuf, bool)>,
    /// Wall-clock limit for the whole boot.
    pub limit: Duration,
    /// Console log file.
    pub log: &'a Path,
    /// Kernel parameters of this machine shape (e.g. `maxcpus=1`), added to the common ones.
    pub kernel_args: &'a str,
}

/// How a boot ended.
pub struct Boot {
    /// Console lines with the seconds since start at which the host read them.
    pub lines: Vec<(f64, String)>,
    /// qemu was killed at the time limit.
    pub timed_out: bool,
    /// Total wall time.
    pub elapsed: Duration,
}

impl Boot {
    /// Last `n` console lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..]
            .iter()
            .map(|(_, l)| format!("  | {l}\n"))
            .collect()
    }
}

/// Boots an x86_64 guest and waits until it powers off, panics (panic=-1 + -no-reboot end
/// qemu) or the limit passes (then qemu is killed).
pub fn boot(m: &Machine) -> Result<Boot> {
    let mut cmd = Command::new("qemu-system-x86_64");
    // Multi-threaded TCG oopsed while the guest patched its own code (static keys, kprobes);
    // single-threaded TCG still runs several vCPUs, interleaved.
    let accel = if m.cpus > 1 {
        "tcg,thread=single"
    } else {
        "tcg"
    };
    cmd.args(["-accel", accel, "-cpu", "max"]);
    boot_with(m, cmd, "console=ttyS0")
}

/// [`boot`] for any architecture: `cmd` is the qemu binary with its machine, CPU and
/// accelerator arguments; `kernel_args` the guest's console and any architecture-specific
/// kernel parameters (the common ones are added here).
pub fn boot_with(m: &Machine, mut cmd: Command, kernel_args: &str) -> Result<Boot> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.args([
        "-nographic",
        "-no-reboot",
        "-nodefaults",
        "-serial",
        "stdio",
    ])
    .args(["-m", &m.mem_mib.to_string(), "-smp", &m.cpus.to_string()])
    .arg("-kernel")
    .arg(m.kernel)
    .arg("-initrd")
    .arg(m.initrd)
    .arg("-append")
    .arg(format!(
        "{kernel_args} quiet panic=-1 oops=panic {}",
        m.kernel_args
    ));
    for (disk, snapshot) in &m.disks {
        let snap = if *snapshot { ",snapshot=on" } else { "" };
        cmd.arg("-drive").arg(format!(
            "file={},if=virtio,format=raw{snap}",
            disk.display()
        ));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {program}"))?;
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<String>();
    for pipe in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
                let l = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_string();
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut log =
        fs::File::create(m.log).with_context(|| format!("creating {}", m.log.display()))?;
    let mut lines = Vec::new();
    let mut timed_out = false;
    loop {
        let left = m.limit.checked_sub(start.elapsed()).unwrap_or_default();
        match rx.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(l) => {
                // Markers may share a line with firmware escape sequences.
                let l = match l.find("@@PT ") {
                    Some(i) => l[i..].to_string(),
                    None => l,
                };
                let t = start.elapsed().as_secs_f64();
                writeln!(log, "[{t:7.1}] {l}")?;
                if let Some(m) = l.strip_prefix("@@PT ") {
                    println!("    [{t:6.1}s] {m}");
                }
                lines.push((t, l));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if start.elapsed() >= m.limit {
                    timed_out = true;
                    // Our own child, by its id.
                    let _ = child.kill();
                    break;
                }
            }
        }
    }
    let _ = child.wait();
    Ok(Boot {
        lines,
        timed_out,
        elapsed: start.elapsed(),
    })
}
