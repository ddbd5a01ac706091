//! The export key: the selected finding or all findings as a text report (the report
//! module's lockdep-shaped renderer), written where the user says.
//!
//! Pure of the UI state: the runner (`tui::export_request`) builds an [`Export`] from
//! the [`super::App`], so this module does not import `app` and `app` can import it for
//! [`default_path`] without a cycle.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

use crate::{
    engine::Finding,
    report::{self, Format, ReportContext, StackTable},
};

/// Reports are plain text: what a kernel engineer pastes into a mail or a bug.
const FORMAT: Format = Format::Text;

/// The path offered in the export prompt: a file in the current directory, named after
/// `selected` (kind and signature) unless `all`, else after the time, so exports do not
/// overwrite each other by accident.
pub fn default_path(selected: Option<&Finding>, all: bool) -> PathBuf {
    let ext = FORMAT.extension();
    let name = match selected {
        Some(f) if !all => format!("percpu-trace-{}-{:016x}.{ext}", f.kind, f.signature),
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

/// Everything one export reports.
pub struct Export<'a> {
    /// What was traced and how, with this session's counts filled in.
    pub context: ReportContext,
    /// All findings, in the engine's order.
    pub findings: &'a [Finding],
    /// Indexes into `findings` the run selected (`--comm`/`--cgroup`): what "all" exports.
    pub selected: Vec<usize>,
    /// Stack id to frames.
    pub stacks: &'a StackTable,
    /// `Some(index into findings)` for one finding, `None` for all of them.
    pub finding: Option<usize>,
}

impl Export<'_> {
    /// The report text.
    pub fn render(&self) -> Result<String> {
        let chosen = match self.finding {
            Some(i) => std::slice::from_ref(
                self.findings
                    .get(i)
                    .ok_or_else(|| anyhow!("the selected finding is gone (cleared?)"))?,
            ),
            None => {
                let all: Vec<Finding> = self
                    .selected
                    .iter()
                    .filter_map(|&i| self.findings.get(i).cloned())
                    .collect();
                return Ok(report::render(FORMAT, &self.context, &all, self.stacks));
            }
        };
        Ok(report::render(FORMAT, &self.context, chosen, self.stacks))
    }

    /// Renders and writes to `path`; the error is one line naming the path.
    pub fn write(&self, path: &Path) -> Result<PathBuf> {
        if path == Path::new("-") {
            // stdout is the screen while the UI runs.
            return Err(anyhow!(
                "cannot write report to stdout from the UI: give a file name"
            ));
        }
        let text = self.render()?;
        if path.is_dir() {
            return Err(anyhow!(
                "cannot write report to {}: it is a directory",
                path.display()
            ));
        }
        report::write_report(path, &text)?;
        Ok(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
    }
}
