//! The tool's `recursion` count against tracefs ground truth taken in the same run.
//!
//! `pt-workload truth` (kprobe events, not BPF) counts every try_to_free_pages entered by
//! the io.max writer while it owns pcpu_alloc_mutex with __GFP_IO or __GFP_FS allowed: the
//! raw recursion hits. The tool reports each such reclaim as one occurrence of a
//! `recursion` finding, so the two counts must be equal: every raw hit found, none invented.
//! One exception, said in the fact: when the recording lost events (the recipe's SCHED_FIFO
//! writer keeps the reader off the only CPU for the whole pass, and a 4 MiB ring then
//! overflows: 201,037 lost in one 7.2.13 boot), a hit whose events were lost cannot be
//! reported, so fewer is allowed there; more, never.
use std::{fs, path::Path};

use serde_json::Value;

/// The raw-hit key of `truth`'s summary lines (`COMM KEY N`).
const RAW_KEY: &str = "RECURSION_reclaim_io_fs_holding_by_noio_writer";

/// Raw recursion hits in a `truth` summary.
pub fn raw_hits(truth: &str) -> u64 {
    truth
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (_comm, key, n) = (it.next()?, it.next()?, it.next()?);
            (key == RAW_KEY).then(|| n.parse::<u64>().ok()).flatten()
        })
        .sum()
}

/// Occurrences of `recursion` findings in a `report --format json`, and how many distinct.
pub fn reported(report: &Value) -> (u64, u64) {
    let rec = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["kind"] == "recursion");
    rec.fold((0, 0), |(n, d), f| {
        (n + f["count"].as_u64().unwrap_or(0), d + 1)
    })
}

/// Compares the run in `dir` (its truth.txt) with its report. Ok: a fact for the summary;
/// Err: the problem (the counts differ, or there is no ground truth).
pub fn compare(dir: &Path, report: &Value) -> Result<String, String> {
    let truth = fs::read_to_string(dir.join("truth.txt")).map_err(|e| {
        let err = fs::read_to_string(dir.join("truth.err")).unwrap_or_default();
        format!("no ground truth (truth.txt: {e}): {}", err.trim())
    })?;
    let raw = raw_hits(&truth);
    let (tool, distinct) = reported(report);
    let lost = report
        .pointer("/observation/events_lost")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let fact = format!(
        "recursion: raw (truth) {raw}, reported {tool} ({distinct} distinct), events lost {lost}"
    );
    if raw == tool {
        Ok(fact)
    } else if tool < raw && lost > 0 {
        Ok(format!(
            "{fact}: {} raw hit(s) not reported, allowed only because events were lost",
            raw - tool
        ))
    } else {
        Err(format!(
            "{fact}: the tool must report every raw hit and none other"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_compared() {
        let truth = "pt-rec-writer direct_reclaim 900\npt-rec-writer RECURSION_reclaim_io_fs_holding_by_noio_writer 3\n";
        assert_eq!(raw_hits(truth), 3);
        let report = serde_json::json!({"findings": [
            {"kind": "recursion", "count": 2}, {"kind": "window", "count": 9},
            {"kind": "recursion", "count": 1}]});
        assert_eq!(reported(&report), (3, 2));
        let d = std::env::temp_dir().join(format!("pt-truth-check-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("truth.txt"), truth).unwrap();
        assert!(compare(&d, &report).is_ok());
        // One invented (or one missed) is an error.
        let more = serde_json::json!({"findings": [{"kind": "recursion", "count": 4}]});
        assert!(compare(&d, &more).is_err());
        let none = serde_json::json!({"findings": []});
        assert!(compare(&d, &none).is_err());
        // Fewer only when events were lost (and said); more is never allowed.
        let lossy = |n: u64| {
            serde_json::json!({"observation": {"events_lost": 500},
                "findings": [{"kind": "recursion", "count": n}]})
        };
        assert!(compare(&d, &lossy(2))
            .unwrap()
            .contains("allowed only because"));
        assert!(compare(&d, &lossy(4)).is_err());
        fs::remove_file(d.join("truth.txt")).unwrap();
        assert!(compare(&d, &report).is_err(), "no truth: an error");
        let _ = fs::remove_dir_all(&d);
    }
}
