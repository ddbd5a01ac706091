//! Assertions on what a scenario left in /out, per kernel role.
//!
//! They read only the tool's public interface: exit statuses, the recording's event lines
//! (`{"t":"event", ..., "kind":{"type":...}}`), `report --format json` (findings, the
//! reconciled fix verdict, the activity counts) and the text report.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};
use serde_json::Value;

use super::kernels::{fix_name, After, Expect, KernelSpec, Mode};

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
                for key in super::stack_check::keys(&v) {
                    *counts.entry(key.to_string()).or_default() += 1;
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

/// The attached target of probe point `point` (`observation.probes`), if attached.
pub fn attached_target(report: &Value, point: &str) -> Option<String> {
    report
        .pointer("/observation/probes")?
        .as_array()?
        .iter()
        .find(|p| p["point"] == point && p["state"] == "attached")
        .and_then(|p| p["target"].as_str().map(String::from))
}

/// The verdict `check --json` gives (`kernel.fix.verdict`).
pub fn check_verdict(v: &Value) -> Option<&str> {
    v.pointer("/kernel/fix/verdict").and_then(Value::as_str)
}

/// `percpu-trace report --from REC` (text), run on the host.
pub fn report_text(tool: &Path, rec: &Path) -> Result<String> {
    let out = Command::new(tool)
        .args(["report", "--from"])
        .arg(rec)
        .output()
        .context("running percpu-trace report")?;
    // The exit contract (as `record`'s): 0 no findings, 1 findings, 2 an error.
    if !matches!(out.status.code(), Some(0 | 1)) {
        anyhow::bail!(
            "report (text) exited {} (0 or 1 expected): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks the report's reconciled fix verdict (`kernel.fix`) against `after`, for a kernel
/// whose check-time verdict is `static_verdict`.
pub fn assess_after(report: &Value, static_verdict: &str, after: After, v: &mut Verdict) {
    let fix = &report["kernel"]["fix"];
    let got = fix["verdict"].as_str().unwrap_or("?");
    let upgraded = fix["upgraded_by_run"].as_bool();
    v.facts.push(format!("report verdict={got}"));
    match after {
        After::Any => {}
        After::Same if got != static_verdict || upgraded != Some(false) => v.fail(format!(
            "report: fix verdict {got} (upgraded_by_run {upgraded:?}), expected {static_verdict} unchanged by the run: {}",
            fix["run_note"].as_str().unwrap_or("-")
        )),
        After::Same => {}
        // Another verdict than the static one or the upgraded one is an error; staying at
        // the static one is a run that did not show the patches at work (worth a boot).
        After::Upgraded(want) if got == want && upgraded == Some(true) => {}
        After::Upgraded(want) if got == static_verdict => v.miss(format!(
            "report: fix verdict stayed {got}, expected the run to upgrade it to {want}"
        )),
        After::Upgraded(want) => v.fail(format!(
            "report: fix verdict {got} (upgraded_by_run {upgraded:?}), expected {want} upgraded by the run: {}",
            fix["run_note"].as_str().unwrap_or("-")
        )),
    }
}

/// Checks that the report shows the slow-path counts `keys` above 0 in
/// `observation.activity`, and that the text report has its "what was seen" section.
pub fn assess_activity(report: &Value, text: &str, keys: &[&str], v: &mut Verdict) {
    if keys.is_empty() {
        return;
    }
    let activity = report.pointer("/observation/activity");
    let n = |k: &str| activity.and_then(|a| a[k].as_u64());
    v.facts.push(
        keys.iter()
            .map(|k| format!("{k}={}", n(k).map_or("-".into(), |x| x.to_string())))
            .collect::<Vec<_>>()
            .join(" "),
    );
    for k in keys {
        match n(k) {
            Some(x) if x > 0 => {}
            Some(_) => v.miss(format!("report: observation.activity.{k} is 0")),
            None => v.fail(format!("report: no observation.activity.{k}")),
        }
    }
    if !text.contains("\nwhat was seen:\n") {
        v.fail("text report has no \"what was seen:\" section");
    }
}

/// The plan's attachment kind (`how`) of probe point `point` in `check --json`.
fn planned_how<'a>(check: &'a Value, point: &str) -> Option<&'a str> {
    check["plan"]["probes"]
        .as_array()?
        .iter()
        .find(|p| p["point"] == point)?["attachment"]["how"]
        .as_str()
}

/// The mutex owner mask `check` must use: flags in bits 0-2, on PREEMPT_RT bit 0 only.
pub fn owner_mask(rt: bool) -> u64 {
    if rt {
        !1
    } else {
        !7
    }
}

/// Checks `check --json --attach MODE` of one boot against the matrix line.
pub fn assess_check(out: &Path, spec: &KernelSpec, mode: Mode) -> Verdict {
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
    let fix = check_verdict(&json);
    if fix != Some(spec.verdict) {
        v.fail(format!(
            "check must give the fix verdict {} ({} kernel), says {}",
            spec.verdict,
            fix_name(spec.fix),
            fix.unwrap_or("nothing (no kernel.fix.verdict)")
        ));
    }
    // PREEMPT_RT and the owner word: the BPF programs decide "holds the mutex" with
    // exactly this mask (the offset is compared with BTF in btf_check).
    let rt = json.pointer("/kernel/preempt_rt").and_then(Value::as_bool);
    if rt != Some(spec.rt) {
        v.fail(format!(
            "check must say preempt_rt={}, says {rt:?}",
            spec.rt
        ));
    }
    let mask = super::tool_json::json_u64(&json["config"]["mutex_owner_mask"]);
    if mask != Some(owner_mask(spec.rt)) {
        v.fail(format!(
            "config.mutex_owner_mask is {}, expected {:#x} ({})",
            mask.map_or("absent".into(), |m| format!("{m:#x}")),
            owner_mask(spec.rt),
            if spec.rt {
                "rt_mutex: bit 0 is a flag"
            } else {
                "mutex: bits 0-2 are flags"
            }
        ));
    }
    let plan_mode = json["plan"]["mode"].as_str().unwrap_or("?");
    // `auto` picks fentry on every Debian kernel of the matrix (they all load it).
    let want_mode = match mode {
        Mode::Auto => "fentry",
        m => m.name(),
    };
    if plan_mode != want_mode {
        v.fail(format!(
            "check --attach {}: plan mode {plan_mode}, expected {want_mode}",
            mode.name()
        ));
    }
    let entry = planned_how(&json, "pcpu_alloc entry");
    let after_unlock = planned_how(&json, "percpu_alloc_percpu (after unlock)");
    let (want_entry, want_tp) = match mode {
        // What tracepoint mode promises: no pcpu_alloc entry (so no nested allocation
        // attributed to a constrained caller), constrained allocations after unlock.
        Mode::Tracepoint => ("unavailable", "tracepoint"),
        Mode::Kprobe => ("kprobe", "unavailable"),
        Mode::Auto => ("fentry", "unavailable"),
    };
    if entry != Some(want_entry) || after_unlock != Some(want_tp) {
        v.fail(format!(
            "plan: pcpu_alloc entry {entry:?} (expected {want_entry}), percpu_alloc_percpu {after_unlock:?} (expected {want_tp})"
        ));
    }
    if out.join("probe.rc").exists() {
        assess_probe(out, spec, &mut v);
    }
    v.facts.push(format!(
        "check: verdict={} rt={rt:?} owner_mask={:#x} mode={plan_mode}",
        fix.unwrap_or("-"),
        mask.unwrap_or(0)
    ));
    v
}

/// Checks `check --probe --json` of one boot (`probe.*`) against the line's `probe`
/// verdict. Expecting `fixed` (an upgrade by the probe's own events) needs the populate
/// path seen: without a chunk population the output is shown, not failed.
fn assess_probe(out: &Path, spec: &KernelSpec, v: &mut Verdict) {
    let Some(want) = spec.probe else { return };
    if read_rc(&out.join("probe.rc")) != Some(0) {
        v.fail(format!(
            "check --probe exited {:?}: {}",
            read_rc(&out.join("probe.rc")),
            tail(&out.join("probe.err"), 2)
        ));
        return;
    }
    let json = fs::read(out.join("probe.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let Some(p) = json
        .as_ref()
        .map(|j| &j["probe"])
        .filter(|p| p["ran"] == true)
    else {
        v.fail("check --probe --json has no probe object that ran");
        return;
    };
    let n = |k: &str| p[k].as_u64().unwrap_or(0);
    let obs = |k: &str| p["observed"][k].as_u64().unwrap_or(0);
    let got = p["verdict_after"].as_str().unwrap_or("?");
    v.facts.push(format!(
        "probe: {}->{got} mode={} allocations={} populates={} creates={} populate_noio={} populate_io_fs={} pgtable_scope_inside={} pgtable_unscoped={}",
        p["verdict_before"].as_str().unwrap_or("?"),
        p["attach_mode"].as_str().unwrap_or("?"),
        n("allocations"),
        n("populates"),
        n("chunk_creates"),
        obs("populate_noio"),
        obs("populate_io_fs"),
        obs("pgtable_scope_inside"),
        obs("pgtable_unscoped"),
    ));
    if n("allocations") == 0 {
        v.fail("check --probe made no percpu allocation");
    }
    let upgrade = want != spec.verdict;
    if got == want && (!upgrade || p["upgraded"] == true) {
        return;
    }
    if upgrade && got == spec.verdict && n("populates") == 0 {
        v.facts.push(format!(
            "probe: populate path not seen, {got} stands: {}",
            p["cannot_show"].as_str().unwrap_or("-")
        ));
        return;
    }
    v.fail(format!(
        "check --probe: verdict {got}, expected {want}: {}",
        p["note"].as_str().unwrap_or("no note")
    ));
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

/// Assesses one scenario run on the kernel of `spec`, attached in `mode`, against its
/// matrix expectation (None: only the common assertions).
pub fn assess(run: &Run, spec: &KernelSpec, mode: Mode, expect: Option<&Expect>) -> Verdict {
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
    match super::rss::assess_rss(d) {
        Ok(fact) => v.facts.push(fact),
        Err(e) => v.fail(e),
    }
    let rec = d.join("rec.jsonl");
    let events = match event_counts(&rec) {
        Ok(c) => c,
        Err(e) => {
            v.fail(format!("{e:#}"));
            return v;
        }
    };
    let (report_json, findings, target, after_unlock) = match report(tool, &rec).and_then(|r| {
        Ok((
            finding_counts(&r)?,
            attached_target(&r, "pcpu_alloc entry"),
            attached_target(&r, "percpu_alloc_percpu (after unlock)"),
            r,
        ))
    }) {
        Ok((f, t, a, r)) => (r, f, t, a),
        Err(e) => {
            v.fail(format!("{e:#}"));
            return v;
        }
    };
    // Without the pcpu_alloc entry probe no constraint is known on entry: say which name
    // was used (an old one on 6.1); tracepoint mode must use the after-unlock tracepoint.
    match (mode, &target) {
        (Mode::Tracepoint, Some(t)) => {
            v.fail(format!("tracepoint mode attached pcpu_alloc entry as {t}"))
        }
        (Mode::Tracepoint, None) if after_unlock.is_none() => {
            v.fail("tracepoint mode: percpu_alloc_percpu is not attached")
        }
        (Mode::Tracepoint, None) => {}
        (_, None) => v.fail("the pcpu_alloc entry probe is not attached"),
        (_, Some(t)) if spec.old_names && t.contains("_noprof") => {
            v.fail(format!("old kernel, new name attached: {t}"))
        }
        (_, Some(t)) if !spec.old_names && !t.contains("pcpu_alloc_noprof") => v.fail(format!(
            "pcpu_alloc entry attached as {t}, expected pcpu_alloc_noprof"
        )),
        _ => {}
    }
    v.facts.push(format!(
        "entry={}",
        target.as_deref().or(after_unlock.as_deref()).unwrap_or("-")
    ));
    let ev = |k: &str| events.get(k).copied().unwrap_or(0);
    let fi = |k: &str| findings.get(k).copied().unwrap_or(0);
    v.facts.push(format!(
        "enter={} done={} populate={} create={} vm_areas={} pgtable={} reclaim={} contention={} findings={findings:?}",
        ev("pcpu_alloc_enter"),
        ev("pcpu_alloc_done"),
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
    match super::stack_check::check(d, &events) {
        Ok(fact) => v.facts.extend(fact),
        Err(p) => v.fail(p),
    }
    match super::pid_check::check(d, &report_json) {
        Ok(Some(fact)) => v.facts.push(fact),
        Ok(None) => {}
        Err(p) => v.fail(p),
    }
    // Ground truth beside the tool (recursion): the counts must agree, hit or not.
    if d.join("truth.err").exists() {
        match super::truth_check::compare(d, &report_json) {
            Ok(fact) => v.facts.push(fact),
            Err(p) => v.fail(p),
        }
    }
    let Some(x) = expect else { return v };
    // Errors first, then misses: a miss alone is worth another boot, an error is not.
    for k in x.events {
        if ev(k) == 0 {
            v.fail(format!("no `{k}` event recorded"));
        }
    }
    for k in x.no_events {
        if ev(k) > 0 {
            v.fail(format!(
                "{} `{k}` events recorded in {} mode, which does not attach that probe",
                ev(k),
                mode.name()
            ));
        }
    }
    for k in x.never {
        if fi(k) > 0 {
            v.fail(format!("`{k}` reported, not expected here: {findings:?}"));
        }
    }
    match report_text(tool, &rec) {
        Ok(text) => assess_activity(&report_json, &text, x.activity, &mut v),
        Err(e) => v.fail(format!("{e:#}")),
    }
    assess_after(&report_json, spec.verdict, x.after, &mut v);
    for k in x.findings {
        if fi(k) == 0 {
            v.miss(format!("no `{k}` finding"));
        }
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
    fn verdict_field_is_read() {
        let check =
            serde_json::json!({"kernel": {"fix": {"present": true, "verdict": "likely-fixed"}}});
        assert_eq!(check_verdict(&check), Some("likely-fixed"));
        // The old bit alone is not a verdict.
        let old = serde_json::json!({"kernel": {"fix": {"present": true}}});
        assert_eq!(check_verdict(&old), None);
    }

    fn report_with(verdict: &str, upgraded: bool) -> Value {
        serde_json::json!({"kernel": {"fix": {"verdict": verdict, "static_verdict": "likely-fixed", "upgraded_by_run": upgraded}},
            "observation": {"activity": {"constrained_took_mutex": 3, "chunk_populates_by_constrained_holder": 0}}})
    }

    #[test]
    fn report_verdict_after_the_run() {
        let mut v = Verdict::default();
        assess_after(
            &report_with("fixed", true),
            "likely-fixed",
            After::Upgraded("fixed"),
            &mut v,
        );
        assert!(v.passed());
        // Not upgraded: a miss (another boot may show the patches at work).
        let mut v = Verdict::default();
        assess_after(
            &report_with("likely-fixed", false),
            "likely-fixed",
            After::Upgraded("fixed"),
            &mut v,
        );
        assert!(!v.passed() && v.miss_only);
        // Changed to something else: an error.
        let mut v = Verdict::default();
        assess_after(
            &report_with("partially-fixed", false),
            "likely-fixed",
            After::Upgraded("fixed"),
            &mut v,
        );
        assert!(!v.passed() && !v.miss_only);
        let mut v = Verdict::default();
        assess_after(
            &report_with("fixed", true),
            "likely-fixed",
            After::Same,
            &mut v,
        );
        assert!(!v.passed());
        let mut v = Verdict::default();
        assess_after(
            &report_with("partially-fixed", false),
            "vulnerable",
            After::Any,
            &mut v,
        );
        assert!(v.passed());
    }

    #[test]
    fn slow_path_counts_must_show() {
        let r = report_with("fixed", true);
        let text = "x\nwhat was seen:\n  a 1\n";
        let mut v = Verdict::default();
        assess_activity(&r, text, &["constrained_took_mutex"], &mut v);
        assert!(v.passed());
        assess_activity(&r, text, &["chunk_populates_by_constrained_holder"], &mut v);
        assert!(!v.passed() && v.miss_only);
        let mut v = Verdict::default();
        assess_activity(&r, "no section", &["constrained_took_mutex"], &mut v);
        assert!(!v.passed());
        let mut v = Verdict::default();
        assess_activity(&r, text, &["no_such_key"], &mut v);
        assert!(!v.miss_only);
    }

    #[test]
    fn misses_are_retryable_only_alone() {
        let mut v = Verdict::default();
        v.miss("no window");
        assert!(v.miss_only);
        v.fail("record crashed");
        assert!(!v.miss_only);
    }

    #[test]
    fn probe_verdicts() {
        let spec = &crate::vm::kernels::KERNELS[1]; // 7.3: likely-fixed, probe must say fixed
        let d = std::env::temp_dir().join(format!("pt-assess-probe-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let case = |after: &str, populates: u64| {
            fs::write(d.join("probe.rc"), "0\n").unwrap();
            let p = serde_json::json!({"probe": {"ran": true, "verdict_before": "likely-fixed",
                "verdict_after": after, "upgraded": after == "fixed", "allocations": 512,
                "populates": populates, "observed": {}}});
            fs::write(d.join("probe.json"), p.to_string()).unwrap();
            let mut v = Verdict::default();
            assess_probe(&d, spec, &mut v);
            v.passed()
        };
        assert!(case("fixed", 9));
        assert!(!case("likely-fixed", 9), "populates seen: must be fixed");
        assert!(
            case("likely-fixed", 0),
            "populate path not seen: shown, not failed"
        );
        assert!(!case("partially-fixed", 0));
        let _ = fs::remove_dir_all(&d);
    }
}
