//! Short screen formats (durations, counts, uptime) and the few per-app lookups the panes
//! share. Finding wording is not here: it comes from [`crate::report::wording`].
use crate::{engine::Activity, kernel::decode};

use super::super::app::App;

/// Nanoseconds as a short duration: "850ns", "12.3µs", "4.5ms", "1.20s", "3m05s".
pub fn fmt_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}ms", ns as f64 / 1e6),
        1_000_000_000..60_000_000_000 => format!("{:.2}s", ns as f64 / 1e9),
        _ => {
            let s = ns / 1_000_000_000;
            format!("{}m{:02}s", s / 60, s % 60)
        }
    }
}

/// A count with a k/M suffix past 10,000.
pub fn fmt_count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..10_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// A duration as "h:mm:ss".
pub(crate) fn fmt_uptime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A gfp mask by name only, with the traced kernel's layout (the columns are too narrow
/// for the report's "name (0x...)" form).
pub(crate) fn gfp(app: &App, g: u32) -> String {
    decode::format_gfp(g, &app.header.context.run.gfp_layout)
}

/// A timestamp relative to the first event seen: "+1.2ms".
pub(crate) fn rel(app: &App, ts: u64) -> String {
    let base = app.base_ns.unwrap_or(ts);
    format!("+{}", fmt_ns(ts.saturating_sub(base)))
}

/// What a task is doing, as the mutex panel and the tasks table say it.
pub(crate) fn activity(a: Activity) -> &'static str {
    match a {
        Activity::Idle => "idle",
        Activity::Allocating => "allocating",
        Activity::CreatingChunk => "creating a chunk",
        Activity::Populating => "populating a chunk",
        Activity::Reclaiming => "in reclaim",
        Activity::Waiting => "waiting for the mutex",
    }
}
