//! Starting and stopping the tracers under test, and reading their programs' run time from
//! the kernel's BPF statistics (`kernel.bpf_stats_enabled=1`, read with bpftool).
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// What runs beside the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tracer {
    /// Nothing: the baseline.
    None,
    /// `percpu-trace record`.
    PercpuTrace,
    /// `bpftrace percpu.bt`.
    Bpftrace,
    /// `bpftrace empty.bt`: an empty program on every tracepoint the tracers use (the
    /// floor a program on that tracepoint cannot go below).
    Floor,
}

impl Tracer {
    /// Column name.
    pub fn name(self) -> &'static str {
        match self {
            Tracer::None => "no tracer",
            Tracer::PercpuTrace => "percpu-trace",
            Tracer::Bpftrace => "bpftrace",
            Tracer::Floor => "empty program",
        }
    }
}

/// Paths and parameters the tracers need.
pub struct Setup {
    /// The release binary.
    pub tool: PathBuf,
    /// The bpftrace script.
    pub script: PathBuf,
    /// The floor's bpftrace script (empty programs).
    pub floor_script: PathBuf,
    /// pcpu_alloc_mutex's address (the bpftrace script's filter).
    pub mutex_addr: u64,
    /// Scratch directory for outputs.
    pub dir: PathBuf,
}

/// A tracer that is attached and running.
pub struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

/// How a tracer run ended.
pub struct Stopped {
    /// Its stderr (percpu-trace's summary line is there).
    pub stderr: String,
}

/// Starts `t` and waits until its probes are attached (None for [`Tracer::None`]).
pub fn start(t: Tracer, s: &Setup, tag: &str) -> Result<Option<Running>> {
    let (mut cmd, ready): (Command, fn(&str, &str) -> bool) = match t {
        Tracer::None => return Ok(None),
        Tracer::PercpuTrace => {
            let mut c = Command::new(&s.tool);
            c.args(["record", "--duration", "3600s", "--output"])
                .arg(s.dir.join(format!("{tag}.jsonl")));
            (c, |_, err| err.contains("probes attached"))
        }
        Tracer::Bpftrace => {
            let mut c = Command::new("bpftrace");
            // Positional parameters are parsed as signed 64-bit numbers: pass the kernel
            // address as its two's-complement value, which the script casts back to u64.
            // "--" keeps the negative number from being read as an option.
            c.arg(&s.script)
                .arg("--")
                .arg((s.mutex_addr as i64).to_string());
            (c, |out, _| out.contains("Attaching"))
        }
        Tracer::Floor => {
            let mut c = Command::new("bpftrace");
            c.arg(&s.floor_script);
            (c, |out, _| out.contains("Attaching"))
        }
    };
    let out = s.dir.join(format!("{tag}.out"));
    let err = s.dir.join(format!("{tag}.err"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out)?)
        .stderr(fs::File::create(&err)?)
        .spawn()
        .with_context(|| format!("starting {}", t.name()))?;
    let mut r = Running { child, out, err };
    let t0 = Instant::now();
    loop {
        let o = fs::read_to_string(&r.out).unwrap_or_default();
        let e = fs::read_to_string(&r.err).unwrap_or_default();
        if ready(&o, &e) {
            break;
        }
        if let Some(st) = r.child.try_wait()? {
            bail!("{} exited before attaching ({st}): {}{}", t.name(), o, e);
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = r.child.kill();
            bail!("{} did not attach within 120 s: {}{}", t.name(), o, e);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // bpftrace prints "Attaching" before the last attach completes; give both a moment.
    std::thread::sleep(Duration::from_millis(500));
    Ok(Some(r))
}

impl Running {
    /// The tracer's pid (to find its programs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT (both tracers finish cleanly on it), then waits.
    pub fn stop(mut self) -> Result<Stopped> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let t0 = Instant::now();
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Stopped {
            stderr: fs::read_to_string(&self.err).unwrap_or_default(),
        })
    }
}

/// Run statistics of one BPF program.
#[derive(Clone, Debug, Default)]
pub struct ProgStat {
    /// Program name as the kernel knows it (truncated to 15 characters).
    pub name: String,
    /// Cumulative run time.
    pub run_time_ns: u64,
    /// Cumulative runs.
    pub run_cnt: u64,
}

/// Programs `pid` holds open, by id.
pub fn prog_stats(pid: u32) -> Result<BTreeMap<u64, ProgStat>> {
    let ids = prog_ids(pid)?;
    let out = Command::new("bpftool")
        .args(["--json", "prog", "show"])
        .output()
        .context("running bpftool (apt-get install bpftool)")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_prog_stats(&String::from_utf8_lossy(&out.stdout), &ids)
}

/// Ids of the BPF programs `pid` has file descriptors for. Debian's bpftool is built
/// without the `pids` field, and fdinfo also works where bpftool would not.
pub fn prog_ids(pid: u32) -> Result<BTreeSet<u64>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = BTreeSet::new();
    for e in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(text) = fs::read_to_string(e?.path()) else {
            continue;
        };
        ids.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse::<u64>().ok()),
        );
    }
    Ok(ids)
}

/// Parses `bpftool --json prog show` output, keeping the programs in `ids`.
pub fn parse_prog_stats(json: &str, ids: &BTreeSet<u64>) -> Result<BTreeMap<u64, ProgStat>> {
    let v: Value = serde_json::from_str(json).context("parsing bpftool JSON")?;
    let mut m = BTreeMap::new();
    for p in v.as_array().into_iter().flatten() {
        let Some(id) = p["id"].as_u64().filter(|id| ids.contains(id)) else {
            continue;
        };
        m.insert(
            id,
            ProgStat {
                name: p["name"].as_str().unwrap_or("?").to_string(),
                run_time_ns: p["run_time_ns"].as_u64().unwrap_or(0),
                run_cnt: p["run_cnt"].as_u64().unwrap_or(0),
            },
        );
    }
    Ok(m)
}

/// Per-program differences `after - before` (programs with runs only).
pub fn delta(before: &BTreeMap<u64, ProgStat>, after: &BTreeMap<u64, ProgStat>) -> Vec<ProgStat> {
    after
        .iter()
        .map(|(id, a)| {
            let b = before.get(id).cloned().unwrap_or_default();
            ProgStat {
                name: a.name.clone(),
                run_time_ns: a.run_time_ns.saturating_sub(b.run_time_ns),
                run_cnt: a.run_cnt.saturating_sub(b.run_cnt),
            }
        })
        .collect()
}

/// `percpu-trace: summary: N events in T s, M events lost (reason: n, ...)` (or "no events
/// lost"; older tools: `N events, M lost {...}`) -> (N, M).
pub fn parse_summary(stderr: &str) -> Option<(u64, u64)> {
    let l = stderr
        .lines()
        .find(|l| l.starts_with("percpu-trace: summary:"))?;
    // Each number is the word before its name, so the line can gain words without
    // breaking this: the first "events" is the count, the one followed by "lost" the loss.
    let w: Vec<&str> = l
        .split_whitespace()
        .map(|x| x.trim_end_matches(','))
        .collect();
    let events = w
        .iter()
        .position(|x| *x == "events")
        .and_then(|i| w.get(i.checked_sub(1)?)?.parse().ok())?;
    let lost = w.windows(3).find_map(|x| match x {
        ["no", "events", "lost"] => Some(0),
        [n, "events", "lost"] => n.parse().ok(),
        _ => None,
    });
    // The old form: "M lost {...}".
    let old = || {
        let i = w.iter().position(|x| *x == "lost")?;
        w.get(i.checked_sub(1)?)?.parse().ok()
    };
    Some((events, lost.or_else(old)?))
}

/// Sets a sysctl file, returning the old value.
pub fn set_sysctl(path: &Path, v: &str) -> Result<String> {
    let old = fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string();
    fs::write(path, v).with_context(|| format!("writing {}", path.display()))?;
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line() {
        let e = "x\npercpu-trace: summary: 1234 events, 5 lost {\"ring\":5}, findings: 0\n";
        assert_eq!(parse_summary(e), Some((1234, 5)));
        // The line `record` prints today (with the run's length).
        let now = "percpu-trace: summary: 1234 events in 6.7s, 5 lost {\"ringbuf_full\":5}, \
                   findings: none (10 percpu allocations, 0 constrained, 0 of them took the mutex)";
        assert_eq!(parse_summary(now), Some((1234, 5)));
        // Losses said the way perf says them (issue 26).
        let perf_like = "percpu-trace: summary: 1234 events in 6.7s, 5 events lost \
                         (ringbuf_full: 5), 2 stacks lost (stack: 2), findings: none";
        assert_eq!(parse_summary(perf_like), Some((1234, 5)));
        let clean = "percpu-trace: summary: 0 events in 3.8s, no events lost, findings: none \
                     (12053 percpu allocations, 12008 constrained, 0 of them took the mutex)";
        assert_eq!(parse_summary(clean), Some((0, 0)));
        assert_eq!(parse_summary("nothing"), None);
    }

    #[test]
    fn prog_stats_by_id() {
        let j = r#"[{"id":7,"name":"a","run_time_ns":100,"run_cnt":4},
                   {"id":8,"name":"b","run_time_ns":5,"run_cnt":1},
                   {"id":9,"name":"c"}]"#;
        let m = parse_prog_stats(j, &BTreeSet::from([7])).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[&7].run_cnt, 4);
        let mut a = m.clone();
        a.get_mut(&7).unwrap().run_time_ns = 160;
        a.get_mut(&7).unwrap().run_cnt = 6;
        let d = delta(&m, &a);
        assert_eq!((d[0].run_time_ns, d[0].run_cnt), (60, 2));
    }
}
