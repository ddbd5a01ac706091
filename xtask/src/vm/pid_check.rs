//! contention-pid (issue 24): with `--pid` of a holder, the report must still make the
//! cross_task whose waiter is another process, and show only findings of the selected one.
use std::{fs, path::Path};

use serde_json::Value;

/// Checks the report of a run made with `--pid` (the pid in `selected.pid` of the run's
/// directory). `Ok(None)`: not such a run. `Err`: what is wrong.
pub fn check(dir: &Path, report: &Value) -> Result<Option<String>, String> {
    let Ok(text) = fs::read_to_string(dir.join("selected.pid")) else {
        return Ok(None);
    };
    let selected: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("selected.pid holds {text:?}, not a pid"))?;
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    let tgids = |f: &Value, role: &str| -> Vec<u64> {
        f["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["role"] == role)
            .filter_map(|t| t["tgid"].as_u64())
            .collect()
    };
    let mut across = 0;
    for f in &findings {
        let holders = tgids(f, "holder");
        let waiters = tgids(f, "waiter");
        let callers = tgids(f, "caller");
        if !holders
            .iter()
            .chain(&waiters)
            .chain(&callers)
            .any(|&t| t == selected)
        {
            return Err(format!(
                "--pid {selected}: a {} finding involves none of it (holders {holders:?}, waiters {waiters:?}, callers {callers:?})",
                f["kind"]
            ));
        }
        if f["kind"] == "cross_task"
            && holders.contains(&selected)
            && waiters.iter().any(|&w| w != selected)
        {
            across += 1;
        }
    }
    if across == 0 {
        return Err(format!(
            "--pid {selected} (a holder): no cross_task with a waiter of another process ({} finding(s))",
            findings.len()
        ));
    }
    Ok(Some(format!(
        "--pid {selected}: {across} cross_task finding(s) with the selected holder and another process's waiter"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir_with(pid: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pid-check-{}-{pid}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("selected.pid"), pid).unwrap();
        d
    }

    fn finding(kind: &str, holder: u64, waiter: u64) -> Value {
        json!({"kind": kind, "tasks": [
            {"role": "holder", "tgid": holder}, {"role": "waiter", "tgid": waiter}]})
    }

    #[test]
    fn a_selected_holder_needs_another_process_waiting() {
        let d = dir_with("154\n");
        let ok = json!({"findings": [finding("cross_task", 154, 155)]});
        assert!(check(&d, &ok).unwrap().is_some());
        // What the kernel-side filter used to give: nothing at all.
        assert!(check(&d, &json!({"findings": []})).is_err());
        // A finding of other processes only: the filter leaked.
        let leak =
            json!({"findings": [finding("cross_task", 154, 155), finding("cross_task", 156, 155)]});
        assert!(check(&d, &leak).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn runs_without_a_selection_are_not_checked() {
        let d = std::env::temp_dir().join(format!("pid-check-none-{}", std::process::id()));
        assert_eq!(check(&d, &json!({})), Ok(None));
    }
}
