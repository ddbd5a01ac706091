//! What `vm-test --kernel/--scenario/--attach` selects from the matrix.
use anyhow::{bail, Context, Result};

use super::{
    arm64::Arch,
    kernels::{self, Mode, ModeRun},
    scenarios::{self, Scenario, SCENARIOS},
};

/// The runs of a matrix line that `--attach` selects (all when empty).
pub fn modes(spec: &'static kernels::KernelSpec, want: &[Mode]) -> Result<Vec<ModeRun>> {
    if want.is_empty() {
        return Ok(spec
            .runs
            .iter()
            .map(|r| ModeRun {
                mode: r.mode,
                expect: r.expect,
            })
            .collect());
    }
    want.iter()
        .map(|&mode| {
            let run = spec.runs.iter().find(|r| r.mode == mode).or_else(|| {
                (mode == Mode::Kprobe)
                    .then(|| spec.runs.iter().find(|r| r.mode == Mode::Auto))
                    .flatten()
            });
            run.map(|r| ModeRun {
                mode,
                expect: r.expect,
            })
            .with_context(|| {
                format!(
                    "kernel {} has no expectations for --attach {} in the matrix",
                    spec.name,
                    mode.name()
                )
            })
        })
        .collect()
}

/// The matrix lines `--kernel` names (every CI line when none).
pub fn kernels(sel: Option<&str>, arch: Arch) -> Result<Vec<&'static kernels::KernelSpec>> {
    let matrix = arch.kernels();
    let Some(sel) = sel else {
        return Ok(matrix.iter().filter(|k| k.ci).collect());
    };
    let mut out: Vec<&'static kernels::KernelSpec> = Vec::new();
    for n in sel.split(',') {
        let hits: Vec<_> = matrix.iter().filter(|k| kernels::selects(k, n)).collect();
        if hits.is_empty() {
            bail!(
                "unknown kernel {n:?} (known: {}; or vulnerable, fixed, rt)",
                matrix.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
            );
        }
        for k in hits {
            if !out.iter().any(|x| x.name == k.name) {
                out.push(k);
            }
        }
    }
    Ok(out)
}

/// The scenarios `--scenario` names (every default one when none), in table order.
pub fn scenarios(sel: Option<&str>) -> Result<Vec<&'static Scenario>> {
    let Some(sel) = sel else {
        return Ok(SCENARIOS.iter().filter(|s| s.default).collect());
    };
    let mut v: Vec<&'static Scenario> = sel
        .split(',')
        .map(|n| {
            scenarios::by_name(n).with_context(|| {
                format!(
                    "unknown scenario {n:?} (known: {})",
                    SCENARIOS
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        })
        .collect::<Result<_>>()?;
    // Keep the table's order: it is the order that works best in one boot.
    v.sort_by_key(|s| SCENARIOS.iter().position(|x| x.name == s.name));
    v.dedup_by_key(|s| s.name);
    Ok(v)
}
