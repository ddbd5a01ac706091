//! Assertions on what a scenario left in /out, per kernel role.
//!
//! They read only the tool's public interface: exit statuses, the recording's event lines
//! (`{"t":"event", ..., "kind":{"type":...}}`) and `report --format json` findings.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};
use serde_json::Value;

use super::kernels::Role;

/// Finding kinds the tool reports.
pub const KINDS: [&str; 3] = ["recursion", "window", "cross_task"];

/// The verdict on one scenario run.
#[derive(Default)]
pub struct Verdict {
    /// What went wrong; empty means pass.
    pub problems: Vec<String>,
    /// The failure is a miss of a timing-dependent positive case (worth another attempt),
    /// not an error.
    pub miss_only: bool,
    /// Short facts for the summary (counts).
    pub facts: Vec<String>,
}

impl Verdict {
    /// No problems.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
    fn fail(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
        self.miss_only = false;
    }
    fn miss(&mut self, p: impl Into<String>) {
        let first = self.problems.is_empty();
        self.problems.push(p.into());
        self.miss_only = first || self.miss_only;
    }
}

fn read_rc(p: &Path) -> Option<i32> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn tail(p: &Path, n: usize) -> String {
    let t = fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<_> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// Event kinds the kernel only produces with pcpu_alloc_mutex held.
const UNDER_MUTEX: [&str; 3] = ["chunk_populate", "chunk_create", "get_vm_areas"];
/// Count key of [`UNDER_MUTEX`] events recorded as not holding the mutex.
const NOT_HOLDING: &str = "invariant.under_mutex_event_not_holding";

/// Event counts by `kind.type` in a recording.
pub fn event_counts(rec: &Path) -> Result<BTreeMap<String, u64>> {
    let text = fs::read_to_string(rec).with_context(|| format!("reading {}", rec.display()))?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["t"] == "drops" {
            // Losses are facts worth seeing next to a miss (the last line has the totals).
            for (k, n) in v.as_object().into_iter().flatten() {
                if let Some(n) = n.as_u64().filter(|n| *n > 0) {
                    counts.insert(format!("drops.{k}"), n);
                }
            }
        } else if v["t"] == "event" {
            if let Some(k) = v["kind"]["type"].as_str() {
                *counts.entry(k.to_string()).or_default() += 1;
                // The kernel calls these only with pcpu_alloc_mutex held, so the tool's
                // owner check must say so for every one of them: an exact invariant that
                // needs no luck (an inverted owner check broke it 100%, while reclaim-timing
                // findings still appeared).
                if UNDER_MUTEX.contains(&k) && v["holds_mutex"] == Value::Bool(false) {
                    *counts.entry(NOT_HOLDING.to_string()).or_default() += 1;
                }
            }
        }
    }
    Ok(counts)
}

/// `percpu-trace report --from REC --format json`, run on the host (replaying a recording
/// needs no kernel).
pub fn report(tool: &Path, rec: &Path) -> Result<Value> {
    let out = Command::new(tool)
        .args(["report", "--format", "json", "--from"])
        .arg(rec)
        .output()
        .context("running percpu-trace report")?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "report --format json gave no JSON ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// Finding counts by kind in a report.
pub fn finding_counts(report: &Value) -> Result<BTreeMap<String, u64>> {
    let findings = report["findings"]
        .as_array()
        .context("report JSON has no `findings` array")?;
    let mut counts = BTreeMap::new();
    for f in findings {
        let k = f["kind"].as_str().unwrap_or("?").to_string();
        *counts.entry(k).or_default() += 1;
    }
    Ok(counts)
}

/// The attached target of the pcpu_alloc entry probe (`observation.probes`), if any.
pub fn pcpu_alloc_target(report: &Value) -> Option<String> {
    report
        .pointer("/observation/probes")?
        .as_array()?
        .iter()
        .find(|p| p["point"] == "pcpu_alloc entry" && p["state"] == "attached")
        .and_then(|p| p["target"].as_str().map(String::from))
}

/// Whether `check --json` says the fix series is present: `kernel.fix.present`, else the
/// first boolean (or object with a boolean `present`) whose key mentions "fix".
pub fn fix_present(v: &Value) -> Option<bool> {
    if let Some(b) = v.pointer("/kernel/fix/present").and_then(Value::as_bool) {
        return Some(b);
    }
    match v {
        Value::Object(m) => m
            .iter()
            .find_map(|(k, x)| {
                let b = x
                    .as_bool()
                    .or_else(|| x.get("present").and_then(Value::as_bool));
                b.filter(|_| k.to_ascii_lowercase().contains("fix"))
            })
            .or_else(|| m.values().find_map(fix_present)),
        Value::Array(a) => a.iter().find_map(fix_present),
        _ => None,
    }
}

/// Checks `check --json` of one boot.
pub fn assess_check(out: &Path, role: Role) -> Verdict {
    let mut v = Verdict::default();
    match read_rc(&out.join("check.rc")) {
        Some(0) => {}
        rc => v.fail(format!(
            "check exited {rc:?}: {}",
            tail(&out.join("check.err"), 3)
        )),
    }
    let json = fs::read(out.join("check.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let Some(json) = json else {
        v.fail("check --json gave no JSON");
        return v;
    };
    let fix = fix_present(&json);
    v.facts.push(format!("fix={fix:?}"));
    match (role, fix) {
        (Role::Fixed, Some(true)) | (Role::Vulnerable, Some(false)) | (Role::Old, _) => {}
        (Role::Fixed, f) => v.fail(format!("check must report the fix present, says {f:?}")),
        (Role::Vulnerable, f) => v.fail(format!("check must report the fix absent, says {f:?}")),
    }
    v
}

/// Paths of one run's results.
pub struct Run<'a> {
    /// Scenario name.
    pub scenario: &'a str,
    /// Its result directory.
    pub dir: PathBuf,
    /// Host percpu-trace binary (for `report`); None when the tool was not run.
    pub tool: Option<&'a Path>,
}

/// Assesses one scenario run for a kernel of `role`.
pub fn assess(run: &Run, role: Role) -> Verdict {
    let mut v = Verdict::default();
    let d = &run.dir;
    if !d.is_dir() {
        v.fail("no results (the guest did not get to this scenario)");
        return v;
    }
    if run.scenario == "detach" {
        if run.tool.is_some() {
            assess_detach(d, &mut v);
        }
        return v;
    }
    if d.join("workload.rc").exists() || run.scenario != "idle" {
        match read_rc(&d.join("workload.rc")) {
            Some(0) => {}
            rc => v.fail(format!(
                "workload exited {rc:?}: {}",
                tail(&d.join("workload.out"), 3)
            )),
        }
        v.facts.push(tail(&d.join("workload.out"), 1));
    }
    let Some(tool) = run.tool else {
        // Workload-only mode: report the tracefs ground truth instead.
        let truth = fs::read_to_string(d.join("truth.txt")).unwrap_or_default();
        let keep = ["populate", "holding", "CROSS", "contention"];
        let lines: Vec<&str> = truth
            .lines()
            .filter(|l| keep.iter().any(|k| l.contains(k)))
            .collect();
        v.facts.push(format!("truth: {}", lines.join(", ")));
        return v;
    };
    match read_rc(&d.join("record.rc")) {
        Some(0 | 1) => {}
        rc => v.fail(format!(
            "record exited {rc:?} (0 or 1 expected): {}",
            tail(&d.join("record.err"), 4)
        )),
    }
    let rec = d.join("rec.jsonl");
    let events = match event_counts(&rec) {
        Ok(c) => c,
        Err(e) => {
            v.fail(format!("{e:#}"));
            return v;
        }
    };
    let (findings, target) =
        match report(tool, &rec).and_then(|r| Ok((finding_counts(&r)?, pcpu_alloc_target(&r)))) {
            Ok(c) => c,
            Err(e) => {
                v.fail(format!("{e:#}"));
                return v;
            }
        };
    // Without the pcpu_alloc entry probe no constraint is known: say which name was used,
    // and on 6.1 it must be an old one.
    match (&target, role) {
        (None, _) => v.fail("the pcpu_alloc entry probe is not attached"),
        (Some(t), Role::Old) if t.contains("_noprof") => {
            v.fail(format!("old kernel, new name attached: {t}"))
        }
        (Some(t), Role::Vulnerable | Role::Fixed) if !t.contains("pcpu_alloc_noprof") => v.fail(
            format!("pcpu_alloc entry attached as {t}, expected pcpu_alloc_noprof"),
        ),
        _ => {}
    }
    v.facts
        .push(format!("entry={}", target.as_deref().unwrap_or("-")));
    let ev = |k: &str| events.get(k).copied().unwrap_or(0);
    let fi = |k: &str| findings.get(k).copied().unwrap_or(0);
    let constrained = ev("pcpu_alloc_enter") + ev("pcpu_alloc_done");
    v.facts.push(format!(
        "constrained_allocs={constrained} populate={} create={} vm_areas={} pgtable={} reclaim={} contention={} findings={findings:?}",
        ev("chunk_populate"),
        ev("chunk_create"),
        ev("get_vm_areas"),
        ev("pgtable_alloc"),
        ev("reclaim_begin"),
        ev("contention_begin"),
    ));
    let drops: Vec<String> = events
        .iter()
        .filter(|(k, _)| k.starts_with("drops."))
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    if !drops.is_empty() {
        v.facts.push(drops.join(" "));
    }
    if ev(NOT_HOLDING) > 0 {
        v.fail(format!(
            "{} populate/create/get_vm_areas events recorded as not holding pcpu_alloc_mutex (the kernel always holds it there)",
            ev(NOT_HOLDING)
        ));
    }
    let any_finding: u64 = KINDS.iter().map(|k| fi(k)).sum();
    match (run.scenario, role) {
        ("idle", _) if any_finding > 0 => {
            v.fail(format!("idle guest produced findings {findings:?}"))
        }
        ("idle", _) => {}
        (_, Role::Old) => {}
        (_, Role::Fixed) => {
            if constrained == 0 {
                v.fail("no constrained percpu allocation recorded");
            }
            if any_finding > 0 {
                v.fail(format!("fixed kernel produced findings {findings:?}"));
            }
        }
        ("noio-scope", Role::Vulnerable) => {
            if constrained == 0 || ev("chunk_populate") == 0 {
                v.fail("the IO_FLUSHER task's allocations and populates were not recorded");
            }
            // Its nested GFP_KERNEL allocations are NOIO through the scope: not a window.
            if fi("window") > 0 {
                v.fail(format!(
                    "scope-constrained task reported as a same-task window {findings:?}"
                ));
            }
        }
        ("noio-gfp", Role::Vulnerable) => {
            if constrained == 0 {
                v.fail("no GFP_NOIO percpu allocation recorded");
            } else if fi("window") == 0 {
                v.miss("no `window` finding");
            }
        }
        ("contention", Role::Vulnerable) => {
            if ev("contention_begin") == 0 {
                v.fail("no contention on pcpu_alloc_mutex recorded");
            } else if fi("cross_task") == 0 {
                v.miss("no `cross_task` finding");
            }
        }
        _ => {}
    }
    v
}

fn assess_detach(d: &Path, v: &mut Verdict) {
    for (sig, ok_rc) in [("TERM", &[0, 1][..]), ("KILL", &[137][..])] {
        if read_rc(&d.join(format!("{sig}.attach.rc"))) != Some(0) {
            v.fail(format!(
                "SIG{sig}: the tool never attached: {}",
                tail(&d.join(format!("{sig}.attach")), 2)
            ));
            continue;
        }
        match read_rc(&d.join(format!("{sig}.rc"))) {
            Some(rc) if ok_rc.contains(&rc) => {}
            rc => v.fail(format!(
                "SIG{sig}: exit {rc:?}, expected {ok_rc:?}: {}",
                tail(&d.join(format!("{sig}.err")), 3)
            )),
        }
        if read_rc(&d.join(format!("{sig}.compare.rc"))) != Some(0) {
            v.fail(format!(
                "SIG{sig}: left behind: {}",
                tail(&d.join(format!("{sig}.compare")), 6)
            ));
        }
        let ke = fs::read_to_string(d.join(format!("{sig}.kprobe_events"))).unwrap_or_default();
        if !ke.trim().is_empty() {
            v.fail(format!("SIG{sig}: kprobe_events not empty: {}", ke.trim()));
        }
        v.facts.push(format!(
            "SIG{sig}: {}",
            tail(&d.join(format!("{sig}.attach")), 1)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fix_field_is_found() {
        let v: Value = serde_json::json!({"kernel": {"release": "7.3"}, "facts": {"percpu_fix_present": true}});
        assert_eq!(fix_present(&v), Some(true));
        assert_eq!(fix_present(&serde_json::json!({"a": 1})), None);
        let check = serde_json::json!({"kernel": {"fix": {"present": false, "detail": "x"}}});
        assert_eq!(fix_present(&check), Some(false));
    }

    #[test]
    fn misses_are_retryable_only_alone() {
        let mut v = Verdict::default();
        v.miss("no window");
        assert!(v.miss_only);
        v.fail("record crashed");
        assert!(!v.miss_only);
    }
}
