//! `cargo xtask vm-test`: the tool against real Debian kernels under qemu (TCG).
//!
//! For each kernel of the matrix ([`kernels::KERNELS`]): fetch it through apt (cached in
//! target/vm-cache), build an initramfs with busybox, the release tool, the static workload
//! binary and the needed modules, boot it once per machine shape with every selected
//! scenario of that shape, read /out back from a second disk, and assert on the tool's
//! output ([`assess`]). A guest that panics, hangs or overruns fails, with its console tail.
//!
//! Environment knobs (for development, not CI): `PT_VM_WORKLOAD_ONLY=1` runs the workloads
//! without the tool; `PT_VM_REPEAT=N` runs every scenario N times (hit-rate measurements);
//! `PT_GUEST_X=v` exports `X=v` in the guest (e.g. `PT_GUEST_REC_JITTER=40`: recursion's
//! jitter priority; `PT_GUEST_PT_TRUTH_SCHED=1`: where `truth` sees the workload sleep;
//! `PT_GUEST_PT_DEBUG_MISSES=1`: the tool prints each program's recursion misses).
//! Attach modes are matrix data ([`kernels::ModeRun`]); `--attach` picks some of them.
mod arm64;
mod assess;
mod btf_check;
mod data;
mod expectations;
pub(crate) mod initramfs;
pub(crate) mod kernels;
mod pid_check;
mod pool;
pub(crate) mod qemu;
mod rss;
mod scenarios;
mod select;
mod stack_check;
pub(crate) mod tool_json;
mod truth_check;

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

pub use arm64::Arch;
use kernels::{Kernel, Mode};
use scenarios::{Scenario, Shape};

/// Extra boots for a timing-dependent positive case that missed. With a per-attempt hit
/// rate p the false-failure rate is (1-p)^(1+RETRIES): 3 attempts keep it under 1 in 100
/// for any p >= 0.79 (the measured rates are in README.md).
pub const RETRIES: u32 = 2;

/// Extra boots for `recursion` (the `Many` shape): on a quiet machine the 7.2.13 kernel
/// hit in about three of four two-pass boots (README.md, "recursion"), so 5 attempts keep
/// a false failure under 1 in 1,000. Cheap in wall time: its retries run on one worker
/// while the other boots the rest of the matrix (pool.rs).
pub const MANY_RETRIES: u32 = 4;

/// Time for the kernel to boot and the tool's `check` to run, on top of the scenarios.
const BOOT_ALLOWANCE: Duration = Duration::from_secs(150);

/// `cargo xtask vm-test` options.
#[derive(Debug, clap::Args)]
pub struct VmTestArgs {
    /// Kernels by name or role, comma-separated (default: the CI matrix).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Scenarios, comma-separated (default: all).
    #[arg(long)]
    pub scenario: Option<String>,
    /// Guest architecture: aarch64 boots Debian's arm64 kernels with the cross-built tool.
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    pub arch: Arch,
    /// Attach modes, comma-separated (default: each kernel's modes in the matrix). A
    /// kernel without a line for `kprobe` runs it with its `auto` expectations (kprobe
    /// mode promises the same findings as fentry).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub attach: Vec<Mode>,
}

/// Wall time of each boot, by label.
type BootTimes = Vec<(String, f64)>;

/// One scenario's outcome over its attempts.
struct Outcome {
    kernel: String,
    scenario: &'static str,
    attempts: u32,
    hits: u32,
    secs: Vec<f64>,
    verdict: assess::Verdict,
}

/// Runs the VM test matrix; fails if any scenario fails.
pub fn vm_test(args: VmTestArgs) -> Result<()> {
    let started = Instant::now();
    let kernels = select::kernels(args.kernel.as_deref(), args.arch)?;
    let scenarios = select::scenarios(args.scenario.as_deref())?;
    let with_tool = std::env::var("PT_VM_WORKLOAD_ONLY").map_or(true, |v| v != "1");
    let repeat: usize = std::env::var("PT_VM_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);

    let root = root();
    let cache = root.join("target/vm-cache");
    let results = root.join("target/vm-results");
    fs::create_dir_all(&cache)?;
    kernels::ensure_apt_sources()?;
    let workload = match args.arch {
        Arch::X86_64 => build_workload()?,
        Arch::Aarch64 => arm64::build_workload(&target_dir())?,
    };
    // The host's build runs `report` on the recordings (replay needs no kernel); the
    // guest gets its own architecture's build.
    let tool = if with_tool { Some(build_tool()?) } else { None };
    let guest_tool = match (args.arch, &tool) {
        (Arch::Aarch64, Some(_)) => Some(arm64::build_tool()?),
        _ => tool.clone(),
    };
    let userland = match args.arch {
        Arch::X86_64 => None,
        Arch::Aarch64 => Some(arm64::userland(&cache)?),
    };
    let data = data::image(&cache)?;
    println!(
        "vm: binaries and data image ready after {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // Every kernel first (download, unpack, BTF), then the boots: they run `jobs` at a
    // time, each qemu on one host thread (single-threaded TCG), longest first.
    let mut prepared = Vec::new();
    let mut kernel_times = Vec::new();
    for spec in kernels {
        let t = Instant::now();
        let modes = select::modes(spec, &args.attach)?;
        let k = kernels::prepare(spec, &cache)?;
        println!(
            "vm: kernel {} = {} {} ({}; BTF: pcpu_get_vm_areas {:?} params, pcpu_alloc_noprof {}) ready in {:.0} s",
            spec.name,
            k.package,
            k.version,
            k.release,
            k.get_vm_areas_params,
            k.has_alloc_noprof,
            t.elapsed().as_secs_f64()
        );
        let btf = btf_check::dump(&cache, &k)?;
        kernel_times.push((
            format!("{} {} ({})", args.arch.uname(), spec.name, k.version),
            t.elapsed().as_secs_f64(),
        ));
        prepared.push((k, btf, modes));
    }
    let mut jobs = Vec::new();
    for (k, btf, modes) in &prepared {
        for run in modes {
            let ctx = Ctx {
                k,
                workload: &workload,
                tool: tool.as_deref(),
                data: &data,
                results: &results,
                arch: args.arch,
                guest_tool: guest_tool.as_deref(),
                userland: userland.as_deref(),
                btf,
                mode: run.mode,
                expect: run.expect,
            };
            // A costly scenario runs by default only where the line expects something of
            // it; named with --scenario it runs anyway (common assertions only).
            let here: Vec<&'static Scenario> = scenarios
                .iter()
                .copied()
                .filter(|s| {
                    args.scenario.is_some()
                        || !s.where_expected
                        || run.expect.iter().any(|e| e.scenario == s.name)
                })
                .collect();
            let mut shapes: Vec<Shape> = here.iter().map(|s| s.shape).collect();
            shapes.sort();
            shapes.dedup();
            for shape in shapes {
                let mine: Vec<&'static Scenario> = here
                    .iter()
                    .copied()
                    .filter(|s| s.shape == shape)
                    .flat_map(|s| std::iter::repeat_n(s, repeat))
                    .collect();
                jobs.push((ctx, shape, mine));
            }
        }
    }
    // Longest boots first, two at a time (pool.rs).
    let parallel = pool::parallel_boots();
    println!("vm: {} boots, {parallel} at a time", jobs.len());
    let mut outcomes = Vec::new();
    let mut boots = Vec::new();
    for (o, b) in pool::run_all(
        &jobs,
        parallel,
        |j| j.1.expected_secs(),
        |(ctx, shape, mine)| run_with_retries(ctx, *shape, mine),
    )? {
        outcomes.extend(o);
        boots.extend(b);
    }
    let summary = summarize(&outcomes, &boots, &kernel_times, started.elapsed());
    print!("{summary}");
    fs::create_dir_all(&results)?;
    let name = match args.arch {
        Arch::X86_64 => "summary.txt".to_string(),
        a => format!("summary-{}.txt", a.uname()),
    };
    fs::write(results.join(name), &summary)?;
    let failed = outcomes.iter().filter(|o| !o.verdict.passed()).count();
    if failed > 0 {
        bail!(
            "{failed} VM scenario(s) failed (details above; logs in {})",
            results.display()
        );
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Ctx<'a> {
    k: &'a Kernel,
    workload: &'a Path,
    /// The host's build (runs `report`).
    tool: Option<&'a Path>,
    data: &'a Path,
    results: &'a Path,
    arch: Arch,
    /// The build that runs in the guest (the host's on x86_64).
    guest_tool: Option<&'a Path>,
    /// Unpacked arm64 busybox/libc (None: the host's files serve the guest).
    userland: Option<&'a Path>,
    /// The kernel's BTF as bpftool raw text (for [`btf_check`]).
    btf: &'a str,
    /// `--attach` of this boot's `check` and `record`.
    mode: Mode,
    /// What each scenario must show in this mode.
    expect: &'static [kernels::Expect],
}

impl Ctx<'_> {
    /// The kernel's label in results: its name, and the mode unless `auto`.
    fn label(&self) -> String {
        match self.mode {
            Mode::Auto => self.k.spec.name.to_string(),
            m => format!("{}/{}", self.k.spec.name, m.name()),
        }
    }
}

/// Boots once with all `scenarios`, then again with only the timing-dependent ones that
/// missed, up to [`RETRIES`] ([`MANY_RETRIES`] for the `Many` shape) times.
fn run_with_retries(
    ctx: &Ctx,
    shape: Shape,
    scenarios: &[&'static Scenario],
) -> Result<(Vec<Outcome>, BootTimes)> {
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut boot_times = Vec::new();
    let mut pending: Vec<usize> = (0..scenarios.len()).collect();
    let retries = if shape == Shape::Many {
        MANY_RETRIES
    } else {
        RETRIES
    };
    for attempt in 0..=retries {
        if pending.is_empty() {
            break;
        }
        let runs: Vec<&'static Scenario> = pending.iter().map(|&i| scenarios[i]).collect();
        let (verdicts, secs, boot_secs) = boot_once(ctx, shape, &runs, attempt)?;
        boot_times.push((
            format!("{} {:?} attempt {}", ctx.label(), shape, attempt + 1),
            boot_secs,
        ));
        let mut next = Vec::new();
        for ((&i, v), s) in pending.iter().zip(verdicts).zip(secs) {
            if attempt == 0 {
                outcomes.push(Outcome {
                    kernel: ctx.label(),
                    scenario: scenarios[i].name,
                    attempts: 0,
                    hits: 0,
                    secs: Vec::new(),
                    verdict: assess::Verdict::default(),
                });
            }
            let o = &mut outcomes[i];
            o.attempts += 1;
            o.hits += u32::from(v.passed());
            o.secs.extend(s);
            let retry = !v.passed() && v.miss_only && scenarios[i].timing && attempt < retries;
            if retry {
                println!(
                    "vm: {} on {}: {} - trying again in a fresh boot",
                    o.scenario,
                    o.kernel,
                    v.problems.join("; ")
                );
                next.push(i);
            }
            o.verdict = v;
        }
        pending = next;
    }
    Ok((outcomes, boot_times))
}

/// One boot: returns a verdict per run, the seconds each took, and the boot's wall time.
fn boot_once(
    ctx: &Ctx,
    shape: Shape,
    runs: &[&'static Scenario],
    attempt: u32,
) -> Result<(Vec<assess::Verdict>, Vec<Option<f64>>, f64)> {
    let k = ctx.k;
    let mut tag = format!(
        "{}-{:?}-{}",
        ctx.label().replace('/', "-"),
        shape,
        attempt + 1
    )
    .to_lowercase();
    if ctx.arch != Arch::X86_64 {
        // Beside, not over, the x86_64 results of the same kernel series.
        tag = format!("{}-{tag}", ctx.arch.uname());
    }
    let dir = ctx.results.join(&tag);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;

    let named: Vec<(&'static Scenario, String)> = runs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = runs[..i].iter().filter(|x| x.name == s.name).count();
            let d = if n == 0 {
                s.name.to_string()
            } else {
                format!("{}.{}", s.name, n + 1)
            };
            (*s, d)
        })
        .collect();
    let mut ird = initramfs::Initramfs::default();
    match ctx.userland {
        Some(u) => arm64::add_busybox(&mut ird, u)?,
        None => ird.busybox(Path::new("/bin/busybox"))?,
    }
    ird.char_dev("/dev/console", 5, 1);
    ird.char_dev("/dev/null", 1, 3);
    for d in ["/proc", "/sys", "/tmp", "/mnt", "/out"] {
        ird.dir(d);
    }
    // Static: runs without any library.
    ird.host_file("/bin/pt-workload", ctx.workload, 0o755)?;
    match (ctx.guest_tool, ctx.userland) {
        (Some(tool), Some(u)) => arm64::add_binary(&mut ird, "/bin/percpu-trace", tool, u)?,
        (Some(tool), None) => ird.binary_with_libs("/bin/percpu-trace", tool)?,
        (None, _) => {}
    }
    // virtio_pci (a module on 6.1, built into 7.x) and virtio_blk for the disks, crc32c
    // (ext4 asks the crypto API for it on 6.1: no modprobe here to load it), ext4 (with its dependencies) to mount them, null_blk for
    // more request queues in noio-gfp.
    let modules = initramfs::add_modules(
        &mut ird,
        &k.modules_dir,
        &[
            "virtio_pci",
            "virtio_blk",
            "crc32c_generic",
            "ext4",
            "null_blk",
        ],
    )?;
    let plan = scenarios::InitPlan {
        modules: &modules,
        runs: &named,
        with_tool: ctx.tool.is_some(),
        module_params: shape.module_params(),
        attach: ctx.mode.name(),
        probe: ctx.tool.is_some() && k.spec.probe.is_some() && shape == Shape::Narrow,
        owner_off: btf_check::mutex_owner_off(ctx.btf).0.unwrap_or(0),
        guest_env: &guest_env(),
        positive: &ctx
            .expect
            .iter()
            .filter(|e| !e.findings.is_empty())
            .map(|e| e.scenario)
            .collect::<Vec<_>>(),
    };
    ird.file("/init", scenarios::init_script(&plan).into_bytes(), 0o755);
    let initrd = dir.join("initrd.gz");
    ird.write_gz(&initrd)?;

    let out_img = dir.join("out.img");
    fs::File::create(&out_img)?.set_len(256 << 20)?;
    run_cmd(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-O", "^has_journal"])
            .arg(&out_img),
        "mke2fs (out disk)",
    )?;

    let limit = BOOT_ALLOWANCE + runs.iter().map(|s| s.limit).sum::<Duration>();
    let (cpus, mem) = shape.machine();
    let names: Vec<&str> = named.iter().map(|(_, d)| d.as_str()).collect();
    println!(
        "vm: boot {tag}: {} ({cpus} vCPU, {mem} MiB, limit {} s): {}",
        k.release,
        limit.as_secs(),
        names.join(", ")
    );
    let log = dir.join("console.log");
    let machine = qemu::Machine {
        kernel: &k.vmlinuz,
        initrd: &initrd,
        cpus,
        mem_mib: mem,
        disks: vec![(ctx.data.to_path_buf(), true), (out_img.clone(), false)],
        limit,
        log: &log,
        kernel_args: shape.kernel_args(),
    };
    let boot = match ctx.arch {
        Arch::X86_64 => qemu::boot(&machine)?,
        Arch::Aarch64 => qemu::boot_with(&machine, arm64::qemu_command(), arm64::KERNEL_ARGS)?,
    };

    let out = dir.join("out");
    fs::create_dir_all(&out)?;
    let _ = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", out.display()))
        .arg(&out_img)
        .output();
    let _ = fs::remove_file(&out_img);

    // Whole-boot failures apply to every run of the boot.
    let mut boot_problems = Vec::new();
    let done = boot.lines.iter().any(|(_, l)| l == "@@PT done");
    if boot.timed_out {
        boot_problems.push(format!("guest ran past its {} s limit", limit.as_secs()));
    }
    if let Some((_, l)) = boot.lines.iter().find(|(_, l)| is_crash(l)) {
        boot_problems.push(format!("guest crashed: {l}"));
    }
    if !done && boot_problems.is_empty() {
        boot_problems.push("guest stopped before finishing (no `@@PT done`)".into());
    }
    for (_, l) in boot
        .lines
        .iter()
        .filter(|(_, l)| l.starts_with("@@PT FAIL"))
    {
        boot_problems.push(l[5..].to_string());
    }
    if !boot_problems.is_empty() {
        println!(
            "vm: boot {tag} failed: {}\n  console tail ({}):\n{}",
            boot_problems.join("; "),
            log.display(),
            boot.tail(40)
        );
    }
    let check = ctx.tool.map(|_| {
        let mut c = assess::assess_check(&out, k.spec, ctx.mode);
        btf_check::check(&out, ctx.btf, ctx.arch, &mut c);
        c
    });

    let mut verdicts = Vec::new();
    let mut secs = Vec::new();
    for (sc, d) in &named {
        let mut v = assess::assess(
            &assess::Run {
                scenario: sc.name,
                dir: out.join(d),
                tool: ctx.tool,
            },
            k.spec,
            ctx.mode,
            ctx.expect.iter().find(|e| e.scenario == sc.name),
        );
        let begin = boot
            .lines
            .iter()
            .find(|(_, l)| *l == format!("@@PT begin {d}"))
            .map(|x| x.0);
        let end = boot
            .lines
            .iter()
            .find(|(_, l)| *l == format!("@@PT end {d}"))
            .map(|x| x.0);
        let took = begin.zip(end).map(|(b, e)| e - b);
        if !boot_problems.is_empty() {
            v.problems.extend(boot_problems.iter().cloned());
            v.miss_only = false;
        }
        if let Some(c) = &check {
            // Every scenario depends on `check` being right; report it on each.
            v.problems
                .extend(c.problems.iter().map(|p| format!("check: {p}")));
            if !c.passed() {
                v.miss_only = false;
            }
            v.facts.extend(c.facts.iter().cloned());
        }
        let status = if v.passed() { "ok" } else { "FAIL" };
        println!(
            "vm: {:<4} {:<14} {status:<4} {:>6} | {} {}",
            ctx.label(),
            d,
            took.map_or("-".into(), |t| format!("{t:.0}s")),
            v.facts.join(" | "),
            v.problems.join("; ")
        );
        verdicts.push(v);
        secs.push(took);
    }
    println!("vm: boot {tag} took {:.0} s", boot.elapsed.as_secs_f64());
    Ok((verdicts, secs, boot.elapsed.as_secs_f64()))
}

/// `PT_GUEST_X=v` host variables, as (X, v); values that are not plain words are left out
/// (they go into a shell script).
fn guest_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter_map(|(k, v)| Some((k.strip_prefix("PT_GUEST_")?.to_string(), v)))
        .filter(|(k, v)| {
            let word = |x: &str| {
                !x.is_empty()
                    && x.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            };
            word(k) && word(v)
        })
        .collect()
}

/// Console lines that mean the guest kernel broke.
fn is_crash(l: &str) -> bool {
    [
        "Kernel panic",
        "BUG:",
        "Oops:",
        "general protection fault",
        "Attempted to kill init",
    ]
    .iter()
    .any(|p| l.contains(p))
}

fn summarize(
    outcomes: &[Outcome],
    boots: &[(String, f64)],
    kernels: &[(String, f64)],
    total: Duration,
) -> String {
    let mut s = String::from("\nvm-test summary\n");
    let _ = writeln!(
        s,
        "{:<17} {:<12} {:<5} {:>8} {:>14}",
        "kernel", "scenario", "pass", "hits", "secs/attempt"
    );
    for o in outcomes {
        let secs: Vec<String> = o.secs.iter().map(|t| format!("{t:.0}")).collect();
        let _ = writeln!(
            s,
            "{:<17} {:<12} {:<5} {:>8} {:>14}{}",
            o.kernel,
            o.scenario,
            if o.verdict.passed() { "yes" } else { "NO" },
            format!("{}/{}", o.hits, o.attempts),
            secs.join(","),
            if o.verdict.passed() {
                String::new()
            } else {
                format!("  {}", o.verdict.problems.join("; "))
            }
        );
    }
    for (b, t) in boots {
        let _ = writeln!(s, "boot {b}: {t:.0} s");
    }
    for (k, t) in kernels {
        let _ = writeln!(s, "kernel {k}: {t:.0} s (download, unpack, BTF)");
    }
    let _ = writeln!(s, "total {:.0} s", total.as_secs_f64());
    s
}

/// Workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn run_cmd(cmd: &mut Command, what: &str) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

/// The x86_64 tool as it ships: `cargo xtask dist`'s binary (glibc >= 2.17, same eBPF
/// object as the development build), so what the VMs test is what users install. It is
/// glibc-linked; its libraries go into the initramfs.
pub(crate) fn build_tool() -> Result<PathBuf> {
    crate::dist::binary(crate::dist::Target::of("x86_64")?)
}

/// The workload, linked statically so the initramfs needs no libc for it. An explicit
/// --target keeps RUSTFLAGS away from build scripts and proc macros.
fn build_workload() -> Result<PathBuf> {
    const TARGET: &str = "x86_64-unknown-linux-gnu";
    run_cmd(
        Command::new("cargo")
            .current_dir(root())
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args([
                "build",
                "--release",
                "--locked",
                "-p",
                "percpu-trace-workload",
                "--target",
                TARGET,
            ]),
        "cargo build percpu-trace-workload",
    )?;
    Ok(target_dir().join(TARGET).join("release/pt-workload"))
}
