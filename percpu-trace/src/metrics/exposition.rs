//! The classic Prometheus text format (0.0.4) from prometheus-client's OpenMetrics text.
//!
//! The two formats differ in what matters to a parser of the old one (`promtool check
//! metrics`, older scrapers): OpenMetrics names a counter family without `_total` in its
//! `# HELP`/`# TYPE` lines while its samples carry it, so a 0.0.4 parser sees samples of an
//! undeclared family without help; and `# UNIT`/`# EOF` lines exist only in OpenMetrics.
//! Everything else (gauges, histograms with a `+Inf` bucket, label escaping) is the same.
use std::collections::HashSet;

/// Rewrites OpenMetrics text (as [`super::Metrics::encode`] makes it) into the 0.0.4
/// format: counter families named with `_total`, `_created` samples, `# UNIT` and
/// `# EOF` dropped, the `unknown` type called `untyped`.
pub fn classic_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) {
                    format!("{name}_total")
                } else {
                    name.to_string()
                };
                let tail = if p == "# TYPE " && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                };
                out.push_str(&format!("{p}{name} {tail}\n"));
            }
            None if line.starts_with('#') => {}
            None => {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                let is_created = name
                    .strip_suffix("_created")
                    .is_some_and(|base| counters.contains(base));
                if !is_created {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_total_families_and_openmetrics_only_lines_go() {
        let om = "# HELP x_events Events.\n# TYPE x_events counter\nx_events_total{kind=\"a\"} 3\n\
                  x_events_created 17.0\n# HELP x_hold_seconds Holds.\n# TYPE x_hold_seconds histogram\n\
                  # UNIT x_hold_seconds seconds\nx_hold_seconds_bucket{le=\"+Inf\"} 0\n\
                  # TYPE x_u unknown\nx_u 1\n# EOF\n";
        assert_eq!(
            classic_text(om),
            "# HELP x_events_total Events.\n# TYPE x_events_total counter\n\
             x_events_total{kind=\"a\"} 3\n# HELP x_hold_seconds Holds.\n\
             # TYPE x_hold_seconds histogram\nx_hold_seconds_bucket{le=\"+Inf\"} 0\n\
             # TYPE x_u untyped\nx_u 1\n"
        );
    }
}
