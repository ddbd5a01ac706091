//! `cargo xtask kernel-table [--write]`: the offline verdict of the newest Debian kernel
//! package of each series (6.1, 6.12, 7.x) in each flavour (plain, cloud, rt) on amd64 and
//! arm64, plus the oldest 6.1 package still downloadable, as a markdown table (with the
//! time and peak RSS of each run: the offline benchmark). `--write` puts it into README.md
//! between the `kernel-table` markers.
use std::fs;

use anyhow::{bail, Context, Result};

use crate::{
    build::root,
    offline::{patch_state, run_offline, PATCHES},
    vm::kernels,
};

/// `cargo xtask kernel-table` options.
#[derive(Debug, clap::Args)]
pub struct KernelTableArgs {
    /// Replace the table in README.md (between the kernel-table markers).
    #[arg(long)]
    pub write: bool,
}

const START: &str = "<!-- kernel-table:start (cargo xtask kernel-table --write) -->";
const END: &str = "<!-- kernel-table:end -->";

/// Package patterns (`#`: a number) per series; `{f}` is the flavour prefix, `{a}` the arch.
const SERIES: &[(&str, &str)] = &[
    ("6.1", "linux-image-6.1.0-#-{f}{a}-unsigned"),
    ("6.12", "linux-image-6.12.#+deb#-{f}{a}-unsigned"),
    ("7.x", "linux-binary-7.#.#+deb#-{f}{a}"),
];
const FLAVOURS: &[(&str, &str)] = &[("plain", ""), ("cloud", "cloud-"), ("rt", "rt-")];
const ARCHES: &[&str] = &["amd64", "arm64"];

/// Every package matching `pattern` that apt knows, oldest first.
fn candidates(pattern: &str) -> Vec<String> {
    let prefix = &pattern[..pattern.find('#').unwrap_or(pattern.len())];
    let mut v: Vec<(Vec<u64>, String)> = kernels::apt_names(prefix)
        .into_iter()
        .filter_map(|n| Some((kernels::match_pattern(pattern, &n)?, n)))
        .collect();
    v.sort();
    v.into_iter().map(|(_, n)| n).collect()
}

/// Runs it.
pub fn run(args: &KernelTableArgs) -> Result<()> {
    let bin = crate::vm::build_tool()?;
    let debs = root().join("target/vm-cache/debs");
    fs::create_dir_all(&debs)?;
    kernels::ensure_apt_sources()?;
    let mut rows = Vec::new();
    let mut wanted: Vec<(String, &str, &str, Vec<String>)> = Vec::new();
    for a in ARCHES {
        for (series, pat) in SERIES {
            for (flavour, f) in FLAVOURS {
                let pattern = pat.replace("{f}", f).replace("{a}", a);
                let mut c = candidates(&pattern);
                c.reverse(); // newest first
                wanted.push((format!("{series} {flavour}"), a, "newest", c));
            }
        }
    }
    let oldest = candidates("linux-image-6.1.0-#-amd64-unsigned");
    wanted.push(("6.1 plain".into(), "amd64", "oldest", oldest));
    for (what, arch, which, cands) in wanted {
        if cands.is_empty() {
            rows.push(format!(
                "| {arch} | {what} ({which}) | none in apt | | | | | | | | |"
            ));
            continue;
        }
        // The first downloadable one in order (apt may still list a removed package).
        let mut got = None;
        for pkg in &cands {
            let q = if arch == "arm64" {
                format!("{pkg}:arm64")
            } else {
                pkg.clone()
            };
            if let Ok(deb) = kernels::download(&q, &debs) {
                got = Some(deb);
                break;
            }
        }
        let deb = got.with_context(|| format!("no downloadable package for {what} {arch}"))?;
        let run = run_offline(&bin, &deb)?;
        let k = &run.doc["kernel"];
        let img = &run.doc["image"];
        let states: Vec<String> = PATCHES.iter().map(|p| patch_state(&run.doc, p)).collect();
        let row = format!(
            "| {arch} | {what} ({which}) | {} {} | {} | **{}** | {} | {:.1} s | {:.0} MiB |",
            img["package"].as_str().unwrap_or("?"),
            img["package_version"].as_str().unwrap_or("?"),
            k["release"].as_str().unwrap_or("?"),
            k["fix"]["verdict"].as_str().unwrap_or("?"),
            states.join(" | "),
            run.secs,
            run.rss_mib
        );
        println!("{row}");
        rows.push(row);
    }
    let table = format!(
        "| arch | series, flavour | package | release | offline verdict | {} | time | peak RSS |\n|---|---|---|---|---|---|---|---|---|---|---|\n{}\n",
        PATCHES.join(" | "),
        rows.join("\n")
    );
    println!("\n{table}");
    if args.write {
        let path = root().join("README.md");
        let text = fs::read_to_string(&path)?;
        let (Some(s), Some(e)) = (text.find(START), text.find(END)) else {
            bail!("README.md has no {START} ... {END} markers");
        };
        let new = format!("{}{START}\n{table}{}", &text[..s], &text[e..]);
        fs::write(&path, new)?;
        println!("kernel-table: README.md updated");
    }
    Ok(())
}
