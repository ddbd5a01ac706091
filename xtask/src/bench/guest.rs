//! Per-program BPF cost in kprobe, fentry and tracepoint modes on the vulnerable Debian
//! kernel (7.2.x), booted with the VM harness' kernel, initramfs and qemu code.
//!
//! It uses the harness's own modules (`crate::vm::{initramfs, kernels, qemu}`). The guest
//! runs one `percpu-trace record --attach MODE` per mode around the same GFP_NOIO workload and
//! prints `bpftool prog show` before and after it on the console.
use crate::vm::{initramfs, kernels, qemu};

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::build;

/// Attach modes measured, in boot order.
const MODES: [&str; 3] = ["tracepoint", "kprobe", "fentry"];

/// Program name -> (run_time_ns, run_cnt) during the workload.
type ProgCosts = BTreeMap<String, (u64, u64)>;

/// What the guest measured.
pub struct GuestResult {
    /// Kernel package and release.
    kernel: String,
    /// Per mode: its programs' costs, or why the mode was not measured.
    modes: Vec<(String, Result<ProgCosts, String>)>,
    /// Per mode: the tool's summary line.
    summaries: BTreeMap<String, String>,
    /// Workload wall seconds per mode (emulated: compare modes only).
    secs: BTreeMap<String, f64>,
}

impl GuestResult {
    /// Markdown section body.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Kernel {} under qemu TCG (1 vCPU, 512 MiB). Same workload per mode: io.max on \
             the leaves of 2 cgroup chains x 200 deep on 9 disks (GFP_NOIO blkg_alloc), then \
             percpu arrays. Emulated time: compare the modes with each other.\n",
            self.kernel
        );
        s.push_str(&self.render_targets());
        let _ = writeln!(s, "| mode | program | runs | ns/run |\n|---|---|---|---|");
        for (mode, r) in &self.modes {
            match r {
                Ok(progs) => {
                    let (tn, tc) = progs
                        .values()
                        .fold((0u64, 0u64), |(a, b), (n, c)| (a + n, b + c));
                    for (name, (ns, cnt)) in progs {
                        let per = if *cnt > 0 {
                            format!("{:.0}", *ns as f64 / *cnt as f64)
                        } else {
                            "- (no runs)".into()
                        };
                        let _ = writeln!(s, "| {mode} | {name} | {cnt} | {per} |");
                    }
                    let _ = writeln!(
                        s,
                        "| {mode} | **all programs** | {tc} | {} |",
                        if tc > 0 {
                            format!("{:.0}", tn as f64 / tc as f64)
                        } else {
                            "-".into()
                        }
                    );
                }
                Err(e) => {
                    let _ = writeln!(s, "| {mode} | not measured: {e} | | |");
                }
            }
        }
        let _ = writeln!(s);
        for (mode, l) in &self.summaries {
            let secs = self
                .secs
                .get(mode)
                .map_or(String::new(), |t| format!(" (workload {t:.0} s emulated)"));
            let _ = writeln!(s, "- {mode}: `{l}`{secs}");
        }
        s
    }
}

impl GuestResult {
    /// Each of the tool's programs against the empty program on its hook in the same
    /// mode (`MODE-floor`, same workload, same boot): the issue-17 target is <= 2x.
    fn render_targets(&self) -> String {
        let mut s = String::new();
        let get = |m: &str| {
            self.modes
                .iter()
                .find(|x| x.0 == m)
                .and_then(|x| x.1.as_ref().ok())
        };
        let per = |(ns, cnt): &(u64, u64)| (*cnt > 0).then(|| *ns as f64 / *cnt as f64);
        let _ = writeln!(
            s,
            "| mode | program | ns/run | empty program ns/run | ratio | <= 2x |\n|---|---|---|---|---|---|"
        );
        for mode in MODES {
            let (Some(tool), Some(floor)) = (get(mode), get(&format!("{mode}-floor"))) else {
                let _ = writeln!(s, "| {mode} | not measured (see the table below) | | | | |");
                continue;
            };
            for (name, cost) in tool {
                // The floor's programs carry no BTF, so bpftool shows the kernel's
                // 15-character name; the tool's show in full.
                let short: String = name.chars().take(15).collect();
                let (Some(t), Some(f)) = (per(cost), floor.get(&short).and_then(per)) else {
                    continue;
                };
                let _ = writeln!(
                    s,
                    "| {mode} | {name} | {t:.0} | {f:.0} | {:.2}x | {} |",
                    t / f.max(1e-9),
                    if t <= 2.0 * f { "met" } else { "**missed**" }
                );
            }
        }
        let _ = writeln!(s);
        s
    }
}

/// Boots the 7.2 guest once and measures every mode.
pub fn run(tool: &Path, quick: bool) -> Result<GuestResult> {
    let root = build::root();
    let cache = root.join("target/vm-cache");
    let dir = root.join("target/bench/guest");
    fs::create_dir_all(&dir)?;
    kernels::ensure_apt_sources()?;
    let spec = kernels::KERNELS
        .iter()
        .find(|k| k.name == "7.2")
        .context("no 7.2 kernel in the VM matrix")?;
    let k = kernels::prepare(spec, &cache)?;
    let workload = build_workload(&root)?;

    let mut ird = initramfs::Initramfs::default();
    ird.busybox(Path::new("/bin/busybox"))?;
    ird.char_dev("/dev/console", 5, 1);
    ird.char_dev("/dev/null", 1, 3);
    for d in ["/proc", "/sys", "/tmp"] {
        ird.dir(d);
    }
    ird.host_file("/bin/pt-workload", &workload, 0o755)?;
    ird.binary_with_libs("/bin/percpu-trace", tool)?;
    ird.binary_with_libs("/bin/bpftool", &which("bpftool")?)?;
    let modules = initramfs::add_modules(&mut ird, &k.modules_dir, &["null_blk"])?;
    ird.file("/init", init_script(&modules, quick).into_bytes(), 0o755);
    let initrd = dir.join("initrd.gz");
    ird.write_gz(&initrd)?;

    let log = dir.join("console.log");
    println!("bench: booting {} ({})", k.package, k.release);
    let boot = qemu::boot(&qemu::Machine {
        kernel: &k.vmlinuz,
        initrd: &initrd,
        cpus: 1,
        mem_mib: 512,
        disks: Vec::new(),
        // Each mode runs the workload twice (the tool, then the floor).
        limit: Duration::from_secs(if quick { 900 } else { 1800 }),
        log: &log,
        kernel_args: "",
    })?;
    if boot.timed_out {
        bail!("guest ran past its limit; console tail:\n{}", boot.tail(30));
    }
    let lines: Vec<&str> = boot.lines.iter().map(|(_, l)| l.as_str()).collect();
    Ok(parse_console(
        &lines,
        format!("{} {} ({})", k.package, k.version, k.release),
    ))
}

fn which(b: &str) -> Result<PathBuf> {
    let o = Command::new("sh")
        .args(["-c", &format!("command -v {b}")])
        .output()?;
    let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if p.is_empty() {
        bail!("{b} not found");
    }
    Ok(PathBuf::from(p))
}

/// Static workload binary, built like the VM harness builds it.
fn build_workload(root: &Path) -> Result<PathBuf> {
    const TARGET: &str = "x86_64-unknown-linux-gnu";
    let st = Command::new("cargo")
        .current_dir(root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "percpu-trace-workload",
        ])
        .args(["--target", TARGET])
        .status()?;
    if !st.success() {
        bail!("building percpu-trace-workload failed ({st})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join(TARGET).join("release/pt-workload"))
}

fn init_script(modules: &[String], quick: bool) -> String {
    let mut s = String::from(
        r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
say() { echo "@@PT $*"; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
"#,
    );
    for m in modules {
        let params = if m == "null_blk" { "nr_devices=8" } else { "" };
        let _ = writeln!(s, "insmod /lib/modules/{m}.ko {params}");
    }
    let depth = if quick { 100 } else { 200 };
    let _ = write!(
        s,
        r#"echo 1 > /proc/sys/kernel/bpf_stats_enabled
say boot $(uname -r)
for mode in {modes}; do
  percpu-trace record --attach $mode --duration 900s --output /tmp/$mode.jsonl > /tmp/$mode.out 2> /tmp/$mode.err &
  P=$!
  i=0
  while ! grep -q "probes attached" /tmp/$mode.err && [ $i -lt 300 ] && kill -0 $P 2>/dev/null; do sleep 0.5; i=$((i+1)); done
  if ! grep -q "probes attached" /tmp/$mode.err; then
    say bench $mode failed $(tail -n 3 /tmp/$mode.err | tr '\n' ' ')
    kill -KILL $P 2>/dev/null; wait $P
    continue
  fi
  sleep 1
  bpftool prog show | while read -r l; do say bench $mode before $l; done
  T0=$(date +%s)
  pt-workload noio-gfp --disks all --chains 2 --depth {depth} --prio 50 --prefix $mode- > /tmp/w.out 2>&1
  pt-workload percpu-arrays --maps 8 --entries 64 --rounds 1 --label $mode >> /tmp/w.out 2>&1
  T1=$(date +%s)
  bpftool prog show | while read -r l; do say bench $mode after $l; done
  say bench $mode ids $(cat /proc/$P/fdinfo/* 2>/dev/null | grep prog_id: | cut -d: -f2)
  say bench $mode secs $((T1-T0))
  kill -INT $P; wait $P
  say bench $mode summary $(grep "summary:" /tmp/$mode.err)
  # The floor: empty programs on the same hooks, same workload.
  F=$mode-floor
  pt-workload floor --attach $mode > /tmp/$F.out 2>&1 &
  P=$!
  i=0
  while ! grep -q "floor:" /tmp/$F.out && [ $i -lt 120 ] && kill -0 $P 2>/dev/null; do sleep 0.5; i=$((i+1)); done
  if ! grep -q "floor:" /tmp/$F.out; then
    say bench $F failed $(tail -n 3 /tmp/$F.out | tr '\n' ' ')
    kill -KILL $P 2>/dev/null; wait $P
    continue
  fi
  bpftool prog show | while read -r l; do say bench $F before $l; done
  T0=$(date +%s)
  pt-workload noio-gfp --disks all --chains 2 --depth {depth} --prio 50 --prefix $F- > /tmp/w.out 2>&1
  pt-workload percpu-arrays --maps 8 --entries 64 --rounds 1 --label $F >> /tmp/w.out 2>&1
  T1=$(date +%s)
  bpftool prog show | while read -r l; do say bench $F after $l; done
  say bench $F ids $(cat /proc/$P/fdinfo/* 2>/dev/null | grep prog_id: | cut -d: -f2)
  say bench $F secs $((T1-T0))
  kill -TERM $P; wait $P
done
say done
poweroff -f
"#,
        modes = MODES.join(" "),
    );
    s
}

/// One `bpftool prog show` snapshot: id -> (name, run_time_ns, run_cnt).
type Snapshot = BTreeMap<u64, (String, u64, u64)>;

/// Reads the `@@PT bench MODE ...` lines back.
fn parse_console(lines: &[&str], kernel: String) -> GuestResult {
    let mut snaps: BTreeMap<(String, String), Snapshot> = BTreeMap::new();
    let mut ids: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut secs = BTreeMap::new();
    let mut summaries = BTreeMap::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    for l in lines {
        let Some(rest) = l.strip_prefix("@@PT bench ") else {
            continue;
        };
        let mut w = rest.splitn(3, ' ');
        let (Some(mode), Some(what)) = (w.next(), w.next()) else {
            continue;
        };
        let tail = w.next().unwrap_or("");
        match what {
            "before" | "after" => {
                let key = (mode.to_string(), what.to_string());
                parse_bpftool_line(tail, snaps.entry(key).or_default());
            }
            "ids" => {
                ids.insert(
                    mode.to_string(),
                    tail.split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect(),
                );
            }
            "secs" => {
                if let Ok(x) = tail.trim().parse() {
                    secs.insert(mode.to_string(), x);
                }
            }
            "summary" => {
                summaries.insert(mode.to_string(), tail.to_string());
            }
            "failed" => {
                failed.insert(mode.to_string(), tail.to_string());
            }
            _ => {}
        }
    }
    let modes = MODES
        .iter()
        .flat_map(|m| [m.to_string(), format!("{m}-floor")])
        .map(|m| {
            let r = if let Some(e) = failed.get(&m) {
                Err(format!("the tool did not attach: {e}"))
            } else if let (Some(b), Some(a), Some(mine)) = (
                snaps.get(&(m.clone(), "before".into())),
                snaps.get(&(m.clone(), "after".into())),
                ids.get(&m),
            ) {
                let mut progs = BTreeMap::new();
                for (id, (name, ns, cnt)) in a {
                    if !mine.contains(id) {
                        continue;
                    }
                    let (bn, bc) = b.get(id).map_or((0, 0), |x| (x.1, x.2));
                    let e: &mut (u64, u64) = progs.entry(name.clone()).or_default();
                    e.0 += ns.saturating_sub(bn);
                    e.1 += cnt.saturating_sub(bc);
                }
                Ok(progs)
            } else {
                Err(
                    "no output from the guest for this mode (see target/bench/guest/console.log)"
                        .to_string(),
                )
            };
            (m, r)
        })
        .collect();
    GuestResult {
        kernel,
        modes,
        summaries,
        secs,
    }
}

/// Folds one line of plain `bpftool prog show` output into `snap`: program lines start
/// with "ID: type  name NAME ... run_time_ns N run_cnt M"; other lines are skipped.
fn parse_bpftool_line(l: &str, snap: &mut Snapshot) {
    let w: Vec<&str> = l.split_whitespace().collect();
    if let Some(id) = w
        .first()
        .and_then(|f| f.strip_suffix(':'))
        .and_then(|f| f.parse::<u64>().ok())
    {
        let after = |k: &str| {
            w.iter()
                .position(|x| *x == k)
                .and_then(|i| w.get(i + 1))
                .copied()
        };
        let name = after("name").unwrap_or("?").to_string();
        let ns = after("run_time_ns")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cnt = after("run_cnt").and_then(|v| v.parse().ok()).unwrap_or(0);
        snap.insert(id, (name, ns, cnt));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_to_costs() {
        let lines = [
            "@@PT bench kprobe before 12: kprobe  name pcpu_alloc_enter  tag 1  gpl run_time_ns 100 run_cnt 2",
            "@@PT bench kprobe after 12: kprobe  name pcpu_alloc_enter  tag 1  gpl run_time_ns 700 run_cnt 5",
            "@@PT bench kprobe after 13: kprobe  name other  tag 1  gpl run_time_ns 9 run_cnt 9",
            "@@PT bench kprobe ids  12",
            "@@PT bench kprobe secs 30",
            "@@PT bench fentry failed EPERM",
        ];
        let g = parse_console(&lines, "k".into());
        let kp = &g.modes.iter().find(|m| m.0 == "kprobe").unwrap().1;
        let progs = kp.as_ref().unwrap();
        assert_eq!(progs.len(), 1);
        assert_eq!(progs["pcpu_alloc_enter"], (600, 3));
        assert!(g.modes.iter().find(|m| m.0 == "fentry").unwrap().1.is_err());
        assert_eq!(g.secs["kprobe"], 30.0);
        // The floor of the same mode, compared by program name.
        let mut with_floor = lines.to_vec();
        with_floor.extend([
            "@@PT bench kprobe-floor before 40: kprobe  name pcpu_alloc_ente  tag 2  gpl run_time_ns 0 run_cnt 0",
            "@@PT bench kprobe-floor after 40: kprobe  name pcpu_alloc_ente  tag 2  gpl run_time_ns 300 run_cnt 3",
            "@@PT bench kprobe-floor ids 40",
        ]);
        let t = parse_console(&with_floor, "k".into()).render_targets();
        assert!(
            t.contains("| kprobe | pcpu_alloc_enter | 200 | 100 | 2.00x | met |"),
            "{t}"
        );
    }
}
