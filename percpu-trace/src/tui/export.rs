//! The export key: the selected finding or all findings as a text report (the report
//! module's lockdep-shaped renderer), written where the user says.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

use crate::report::{self, Format};

use super::app::App;

/// Reports are plain text: what a kernel engineer pastes into a mail or a bug.
const FORMAT: Format = Format::Text;

/// The path offered in the export prompt: a file in the current directory, named after the
/// finding (kind and signature) or, for all findings, after the time, so exports do not
/// overwrite each other by accident.
pub fn default_path(app: &App, all: bool) -> PathBuf {
    let ext = FORMAT.extension();
    let name = match app.selected_finding() {
        Some((_, f)) if !all => format!("percpu-trace-{}-{:016x}.{ext}", f.kind, f.signature),
        _ => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            format!("percpu-trace-report-{secs}.{ext}")
        }
    };
    PathBuf::from(name)
}

/// The report text for one finding (`Some(index into App::findings)`) or all of them.
pub fn render(app: &App, finding: Option<usize>) -> Result<String> {
    let mut ctx = app.header.context.clone();
    let span = app
        .findings()
        .iter()
        .map(|f| f.last_seen_ns)
        .max()
        .zip(app.base_ns)
        .map(|(last, first)| last.saturating_sub(first));
    ctx.events = app.events;
    ctx.drops = app.losses().clone();
    // Live: how long the UI ran; replay: the recording's own span.
    ctx.duration_ns = if app.is_replay() {
        span.or(ctx.duration_ns)
    } else {
        Some(u64::try_from(app.uptime.as_nanos()).unwrap_or(u64::MAX))
    };
    // "All" is every finding the run selected (`--comm`/`--cgroup`, which the report's
    // filters line names); the `/` prompt only narrows the screen.
    let chosen: Vec<_> = match finding {
        Some(i) => vec![app
            .findings()
            .get(i)
            .ok_or_else(|| anyhow!("the selected finding is gone (cleared?)"))?
            .clone()],
        None => app.engine().selected().map(|(_, f)| f.clone()).collect(),
    };
    Ok(report::render(FORMAT, &ctx, &chosen, &app.stacks))
}

/// Renders and writes; the error is one line naming the path.
pub fn write(app: &App, path: &Path, finding: Option<usize>) -> Result<PathBuf> {
    if path == Path::new("-") {
        // stdout is the screen while the UI runs.
        return Err(anyhow!(
            "cannot write report to stdout from the UI: give a file name"
        ));
    }
    let text = render(app, finding)?;
    if path.is_dir() {
        return Err(anyhow!(
            "cannot write report to {}: it is a directory",
            path.display()
        ));
    }
    report::write_report(path, &text)?;
    Ok(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}
