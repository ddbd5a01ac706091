//! `cargo xtask kernel-table [--write]`: the offline verdict of the newest Debian kernel
//! package of each series (6.1, 6.12, 7.x) in each flavour (plain, cloud, rt) on amd64 and
//! arm64, plus the oldest 6.1 package still downloadable, as a markdown table, and the time
//! and peak RSS of each run (the offline benchmark). `--write` puts the table into README.md
//! and the benchmark into BENCHMARKS.md, each between its markers.
use std::{collections::HashMap, fmt::Write as _, fs};

use anyhow::{Context, Result};

use crate::{
    build::root,
    marked::Marked,
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

/// The README's verdict table.
const README_TABLE: Marked = Marked {
    start: "<!-- kernel-table:start (cargo xtask kernel-table --write) -->",
    end: "<!-- kernel-table:end -->",
};

/// BENCHMARKS.md's offline section (`bench` keeps it when it rewrites the file).
pub const OFFLINE_BENCH: Marked = Marked {
    start: "<!-- offline-bench:start (cargo xtask kernel-table --write) -->",
    end: "<!-- offline-bench:end -->",
};

/// The targets for one package: seconds, MiB.
const TARGET_SECS: f64 = 10.0;
const TARGET_MIB: f64 = 300.0;

/// Package patterns (`#`: a number) per series; `{f}` is the flavour prefix, `{a}` the arch.
const SERIES: &[(&str, &str)] = &[
    ("6.1", "linux-image-6.1.0-#-{f}{a}-unsigned"),
    ("6.12", "linux-image-6.12.#+deb#-{f}{a}-unsigned"),
    ("7.x", "linux-binary-7.#.#+deb#-{f}{a}"),
];
const FLAVOURS: &[(&str, &str)] = &[("plain", ""), ("cloud", "cloud-"), ("rt", "rt-")];
const ARCHES: &[&str] = &["amd64", "arm64"];

/// Every package matching `pattern` that apt knows, oldest first (`apt-cache pkgnames` is
/// slow: one call per prefix, remembered in `seen`).
fn candidates(pattern: &str, seen: &mut HashMap<String, Vec<String>>) -> Vec<String> {
    let prefix = &pattern[..pattern.find('#').unwrap_or(pattern.len())];
    let names = seen
        .entry(prefix.to_string())
        .or_insert_with(|| kernels::apt_names(prefix));
    let mut v: Vec<(Vec<u64>, String)> = names
        .iter()
        .filter_map(|n| Some((kernels::match_pattern(pattern, n)?, n.clone())))
        .collect();
    v.sort();
    v.into_iter().map(|(_, n)| n).collect()
}

/// One measured package.
struct Bench {
    arch: &'static str,
    package: String,
    secs: f64,
    rss_mib: f64,
}

/// Runs it.
pub fn run(args: &KernelTableArgs) -> Result<()> {
    let bin = crate::vm::build_tool()?;
    let debs = root().join("target/vm-cache/debs");
    fs::create_dir_all(&debs)?;
    kernels::ensure_apt_sources()?;
    let load_before = loadavg();
    let mut seen = HashMap::new();
    let mut rows = Vec::new();
    let mut benches = Vec::new();
    let mut wanted: Vec<(String, &'static str, &str, Vec<String>)> = Vec::new();
    for a in ARCHES {
        for (series, pat) in SERIES {
            for (flavour, f) in FLAVOURS {
                let pattern = pat.replace("{f}", f).replace("{a}", a);
                let mut c = candidates(&pattern, &mut seen);
                c.reverse(); // newest first
                wanted.push((format!("{series} {flavour}"), a, "newest", c));
            }
        }
    }
    let oldest = candidates("linux-image-6.1.0-#-amd64-unsigned", &mut seen);
    wanted.push(("6.1 plain".into(), "amd64", "oldest", oldest));
    for (what, arch, which, cands) in wanted {
        if cands.is_empty() {
            rows.push(format!(
                "| {arch} | {what} ({which}) | none in apt | | | | | | |"
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
        let package = format!(
            "{} {}",
            img["package"].as_str().unwrap_or("?"),
            img["package_version"].as_str().unwrap_or("?")
        );
        let states: Vec<String> = PATCHES.iter().map(|p| patch_state(&run.doc, p)).collect();
        let row = format!(
            "| {arch} | {what} ({which}) | {package} | {} | **{}** | {} |",
            k["release"].as_str().unwrap_or("?"),
            k["fix"]["verdict"].as_str().unwrap_or("?"),
            states.join(" | "),
        );
        println!("{row} {:.1} s, {:.0} MiB", run.secs, run.rss_mib);
        rows.push(row);
        if !benches.iter().any(|b: &Bench| b.package == package) {
            benches.push(Bench {
                arch,
                package,
                secs: run.secs,
                rss_mib: run.rss_mib,
            });
        }
    }
    let table = format!(
        "| arch | series, flavour | package | release | offline verdict | {} |\n|---|---|---|---|---|---|---|---|---|\n{}\n",
        PATCHES.join(" | "),
        rows.join("\n")
    );
    println!("\n{table}");
    let bench = bench_section(&benches, &load_before);
    println!("{bench}");
    if args.write {
        for (file, marked, body) in [
            ("README.md", &README_TABLE, &table),
            ("BENCHMARKS.md", &OFFLINE_BENCH, &bench),
        ] {
            let path = root().join(file);
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            fs::write(&path, marked.put(&text, body))?;
            println!("kernel-table: {file} updated");
        }
    }
    Ok(())
}

/// The 1-minute load average (the machine is shared; a busy one slows the runs).
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// BENCHMARKS.md's offline section: each package's time and peak RSS, and the worst of them
/// against the targets.
fn bench_section(b: &[Bench], load_before: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Offline verdicts (`check --kernel`, issue 23)\n");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        s,
        "Wall time and peak RSS (the child's ru_maxrss) of `percpu-trace check --json --kernel \
         PACKAGE` (release build), one package at a time: the packages of README's kernel table \
         ({cpus} CPUs, load average {load_before} at the start, \
         {}). Target: under {TARGET_SECS:.0} s and {TARGET_MIB:.0} MiB per package.\n",
        utc_now()
    );
    let worst_secs = b.iter().map(|x| x.secs).fold(0.0, f64::max);
    let worst_mib = b.iter().map(|x| x.rss_mib).fold(0.0, f64::max);
    let met = |ok: bool| if ok { "met" } else { "**missed**" };
    let _ = writeln!(
        s,
        "Slowest {worst_secs:.1} s ({}), largest {worst_mib:.0} MiB ({}), over {} packages.\n",
        met(worst_secs < TARGET_SECS),
        met(worst_mib < TARGET_MIB),
        b.len()
    );
    let _ = writeln!(
        s,
        "| arch | package | seconds | peak RSS |\n|---|---|---|---|"
    );
    for x in b {
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {:.0} MiB |",
            x.arch, x.package, x.secs, x.rss_mib
        );
    }
    s
}

/// Today's date (UTC) from `date`, which every machine running xtask has.
fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
