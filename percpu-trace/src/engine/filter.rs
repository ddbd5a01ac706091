//! Which findings a user asked to see: `--pid`, `--comm`, `--cgroup` on the command line
//! and the TUI's `/` prompt use this one type and one matching rule.
//!
//! Events are never filtered before the engine (`--pid` aside, which the kernel applies):
//! a cross-task finding needs the holder's events even when only the waiter matches. A
//! finding matches when one of its tasks matches every given criterion.
//!
//! The comm rule: equal to the pattern, where `*` in the pattern matches any run of
//! characters (`kworker/*`, `*flusher*`). Exact by default because `--comm` is how a fleet
//! alert is scoped, and a substring would silently widen it.
use serde::{Deserialize, Serialize};

use super::Finding;

/// A conjunction of optional criteria on a task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingFilter {
    /// Thread or process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Comm pattern (exact, `*` wildcards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// cgroup v2 id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<u64>,
}

impl FindingFilter {
    /// Parses the TUI prompt's `pid:N comm:S cg:N`; a bare number is a pid, bare text a
    /// comm pattern.
    pub fn parse(text: &str) -> Result<FindingFilter, String> {
        let mut f = FindingFilter::default();
        for tok in text.split_whitespace() {
            let (key, val) = tok.split_once(':').unwrap_or(("", tok));
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("{key}: {v:?} is not a number"))
            };
            let pid = |v: &str| -> Result<u32, String> {
                u32::try_from(num(v)?).map_err(|_| "pid too large".to_string())
            };
            match key {
                "pid" | "p" => f.pid = Some(pid(val)?),
                "comm" | "c" => f.comm = Some(val.to_string()),
                "cg" | "cgroup" => f.cgroup = Some(num(val)?),
                "" if val.bytes().all(|b| b.is_ascii_digit()) => f.pid = Some(pid(val)?),
                "" => f.comm = Some(val.to_string()),
                other => return Err(format!("unknown filter key {other:?} (pid:, comm:, cg:)")),
            }
        }
        Ok(f)
    }

    /// No criterion.
    pub fn is_empty(&self) -> bool {
        self.pid.is_none() && self.comm.is_none() && self.cgroup.is_none()
    }

    /// Both filters at once (a criterion given in both: `other`'s wins for the pid and
    /// cgroup, which cannot both hold; the comm patterns must both match).
    pub fn and(&self, other: &FindingFilter) -> FindingFilter {
        FindingFilter {
            pid: other.pid.or(self.pid),
            comm: match (&self.comm, &other.comm) {
                (Some(a), Some(b)) if a != b => Some(format!("{a}\u{0}{b}")),
                (a, b) => b.clone().or_else(|| a.clone()),
            },
            cgroup: other.cgroup.or(self.cgroup),
        }
    }

    /// Whether a task matches; `cgroup: None` (not known for that row) fails a cgroup filter.
    pub fn matches(&self, pid: u32, tgid: u32, comm: &str, cgroup: Option<u64>) -> bool {
        self.pid.is_none_or(|p| p == pid || p == tgid)
            && self
                .comm
                .as_deref()
                .is_none_or(|c| c.split('\u{0}').all(|pat| comm_matches(pat, comm)))
            && self.cgroup.is_none_or(|c| cgroup == Some(c))
    }

    /// Whether any task of a finding matches.
    pub fn matches_finding(&self, f: &Finding) -> bool {
        self.is_empty()
            || f.tasks
                .iter()
                .any(|t| self.matches(t.pid, t.tgid, &t.comm, Some(t.cgroup_id)))
    }

    /// Human form (`pid:12 comm:kworker/* cg:55`), for titles and reports.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = self.pid {
            parts.push(format!("pid:{p}"));
        }
        if let Some(c) = &self.comm {
            for pat in c.split('\u{0}') {
                parts.push(format!("comm:{pat}"));
            }
        }
        if let Some(c) = self.cgroup {
            parts.push(format!("cg:{c}"));
        }
        parts.join(" ")
    }

    /// The command-line form (`--pid 12`, `--comm x`, `--cgroup 55`), as reports list them.
    pub fn as_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(p) = self.pid {
            v.push(format!("--pid {p}"));
        }
        if let Some(c) = &self.comm {
            for pat in c.split('\u{0}') {
                v.push(format!("--comm {pat}"));
            }
        }
        if let Some(c) = self.cgroup {
            v.push(format!("--cgroup {c}"));
        }
        v
    }
}

/// `comm` equals `pat`, where each `*` in `pat` matches any run of characters.
pub fn comm_matches(pat: &str, comm: &str) -> bool {
    let parts: Vec<&str> = pat.split('*').collect();
    if parts.len() == 1 {
        return pat == comm;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !comm.starts_with(first) || comm.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &comm[first.len()..];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_is_exact_unless_the_pattern_has_a_star() {
        // The TUI used to match substrings while `record --comm` matched exactly; the one
        // rule is exact, with `*` for the wider match.
        assert!(comm_matches("kworker/0:1", "kworker/0:1"));
        assert!(!comm_matches("kworker", "kworker/0:1"));
        assert!(comm_matches("kworker/*", "kworker/0:1"));
        assert!(comm_matches("*flusher*", "pt-io-flusher"));
        assert!(comm_matches("*", ""));
        assert!(!comm_matches("a*a", "a"));
        assert!(comm_matches("a*b*c", "axxbyyc"));
        assert!(!comm_matches("a*b*c", "axxcyyb"));
    }

    #[test]
    fn parse_and_combine() {
        let f = FindingFilter::parse("pid:12 comm:x cg:5").unwrap();
        assert_eq!(f.describe(), "pid:12 comm:x cg:5");
        assert_eq!(FindingFilter::parse("34").unwrap().pid, Some(34));
        assert!(FindingFilter::parse("zz:1").is_err());
        let run = FindingFilter {
            comm: Some("a*".into()),
            ..Default::default()
        };
        let both = run.and(&FindingFilter::parse("*z").unwrap());
        assert!(both.matches(1, 1, "abz", None));
        assert!(!both.matches(1, 1, "ab", None));
        assert!(!both.matches(1, 1, "bz", None));
        assert_eq!(both.as_args(), vec!["--comm a*", "--comm *z"]);
    }
}
