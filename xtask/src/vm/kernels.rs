//! The kernel matrix (data), and getting each kernel onto this machine through apt.
//!
//! A kernel is named by *series*, not version: Debian moves on and old packages stop being
//! downloadable, so each run picks the newest downloadable package of the series, records
//! the exact version, and checks the kernel's role from its BTF instead of trusting the name.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

pub use super::expectations::*;

/// What `check --json` must say about the fix series (`kernel.fix.present`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Has 9a5b183941b5 (NOIO balance worker) but not the fix series: findings expected.
    Vulnerable,
    /// Has the fix series (pcpu_get_vm_areas takes a gfp): no findings expected.
    Fixed,
}

/// `percpu-trace --attach` of a run (check and record alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Mode {
    /// What `auto` picks (fentry on Debian's kernels).
    Auto,
    /// kprobes/kretprobes (the path of kernels that refuse fentry).
    Kprobe,
    /// Tracepoints only (kernels without kprobes, like this machine's).
    Tracepoint,
}

impl Mode {
    /// Its name, as `--attach` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Kprobe => "kprobe",
            Mode::Tracepoint => "tracepoint",
        }
    }
}

/// One attach mode a kernel runs in, with what each scenario must show there.
pub struct ModeRun {
    /// `--attach` for `check` and `record`.
    pub mode: Mode,
    /// Per scenario; a scenario without a line gets only the common assertions.
    pub expect: &'static [Expect],
}

/// One line of the matrix.
pub struct KernelSpec {
    /// Name for `--kernel` (also accepted: `vulnerable`, `fixed`, `rt`).
    pub name: &'static str,
    /// Image package with `#` for each number that varies; the newest match wins.
    pub image: &'static str,
    /// Prefix that replaces the image package's prefix (up to the version) to name the
    /// modules package, when modules ship separately.
    pub modules: Option<(&'static str, &'static str)>,
    /// In the CI matrix (`cargo xtask vm-test` without --kernel).
    pub ci: bool,
    /// The kernel's role (the BTF must agree: pcpu_get_vm_areas has a gfp or not).
    pub fix: Fix,
    /// The verdict `check --json` must give (`kernel.fix.verdict`: not-affected, vulnerable,
    /// partially-fixed, likely-fixed, fixed or unknown); static evidence never says `fixed`.
    pub verdict: &'static str,
    /// Before the 6.10 renames (pcpu_alloc, __vmalloc_node_range; no pcpu_alloc_noprof in
    /// BTF): the tool must attach by the old names.
    pub old_names: bool,
    /// The verdict `check --probe` must reach on this kernel (None: not run). Run once per
    /// mode, in the 1-vCPU boot; a `fixed` expectation holds when the probe saw the
    /// populate path (chunk populations), else its output is shown instead.
    pub probe: Option<&'static str>,
    /// PREEMPT_RT: `check` must say so and use the rt_mutex owner word (bit 0 a flag).
    pub rt: bool,
    /// Attach modes it runs in, each with the expected findings per scenario.
    pub runs: &'static [ModeRun],
}

/// Runs in the mode `auto` picks only.
const AUTO_FIXED: &[ModeRun] = &[ModeRun {
    mode: Mode::Auto,
    expect: FIXED_RECURSION,
}];
const AUTO_VULNERABLE: &[ModeRun] = &[ModeRun {
    mode: Mode::Auto,
    expect: VULNERABLE_RECURSION,
}];
const AUTO_RT: &[ModeRun] = &[ModeRun {
    mode: Mode::Auto,
    expect: VULNERABLE_RECURSION_TRUTH,
}];
const AUTO_6_1: &[ModeRun] = &[ModeRun {
    mode: Mode::Auto,
    expect: VULNERABLE_6_1,
}];
/// Every mode: kprobe promises fentry's findings, tracepoint what `check` says it sees.
const ALL_MODES: &[ModeRun] = &[
    ModeRun {
        mode: Mode::Auto,
        expect: VULNERABLE_7_2,
    },
    ModeRun {
        mode: Mode::Kprobe,
        expect: VULNERABLE,
    },
    ModeRun {
        mode: Mode::Tracepoint,
        expect: VULNERABLE_TRACEPOINT,
    },
];

/// The matrix. Adding a kernel is one line.
#[rustfmt::skip]
pub const KERNELS: &[KernelSpec] = &[
    KernelSpec { name: "7.2", image: "linux-binary-7.2.#+deb#-amd64", modules: Some(("linux-binary-", "linux-modules-")), ci: true, fix: Fix::Vulnerable, verdict: "vulnerable", old_names: false, probe: Some("vulnerable"), rt: false, runs: ALL_MODES },
    KernelSpec { name: "7.3", image: "linux-binary-7.3.#+deb#-amd64", modules: Some(("linux-binary-", "linux-modules-")), ci: true, fix: Fix::Fixed, verdict: "likely-fixed", old_names: false, probe: Some("fixed"), rt: false, runs: AUTO_FIXED },
    KernelSpec { name: "6.1", image: "linux-image-6.1.0-#-amd64-unsigned", modules: None, ci: true, fix: Fix::Vulnerable, verdict: "vulnerable", old_names: true, probe: None, rt: false, runs: AUTO_6_1 },
    KernelSpec { name: "6.12", image: "linux-image-6.12.#+deb13-amd64-unsigned", modules: None, ci: true, fix: Fix::Vulnerable, verdict: "vulnerable", old_names: false, probe: None, rt: false, runs: AUTO_VULNERABLE },
    KernelSpec { name: "7.2-rt", image: "linux-binary-7.2.#+deb#-rt-amd64", modules: Some(("linux-binary-", "linux-modules-")), ci: true, fix: Fix::Vulnerable, verdict: "vulnerable", old_names: false, probe: None, rt: true, runs: AUTO_RT },
];

/// Whether `sel` (a `--kernel` word) names this line: its name, `vulnerable`/`fixed`, `rt`.
pub fn selects(k: &KernelSpec, sel: &str) -> bool {
    k.name == sel || sel == fix_name(k.fix) || (sel == "rt" && k.rt)
}

/// `vulnerable` or `fixed`.
pub fn fix_name(f: Fix) -> &'static str {
    match f {
        Fix::Vulnerable => "vulnerable",
        Fix::Fixed => "fixed",
    }
}

/// A kernel ready to boot.
pub struct Kernel {
    /// The matrix line.
    pub spec: &'static KernelSpec,
    /// Image package name actually used.
    pub package: String,
    /// Debian package version actually used.
    pub version: String,
    /// `uname -r` of the kernel.
    pub release: String,
    /// bzImage to boot.
    pub vmlinuz: PathBuf,
    /// Directory holding `kernel/` with the modules.
    pub modules_dir: PathBuf,
    /// pcpu_get_vm_areas parameter count from BTF (None: not in BTF).
    pub get_vm_areas_params: Option<u32>,
    /// pcpu_alloc_noprof is in BTF (the 6.10+ name).
    pub has_alloc_noprof: bool,
}

const SOURCES: &str = "/etc/apt/sources.list.d/percpu-trace-kernels.sources";
const PREFS: &str = "/etc/apt/preferences.d/percpu-trace-kernels";
const SUITES: &[&str] = &["trixie", "trixie-backports", "sid", "bookworm-backports"];

/// Makes Debian's kernel suites known to apt, pinned at priority 1 so nothing on this
/// machine is ever upgraded from them; `apt-get update` only when they are new.
pub fn ensure_apt_sources() -> Result<()> {
    let sources = format!(
        "# Added by `cargo xtask vm-test`: Debian kernel packages for the qemu tests.\n\
         # Pinned to priority 1 in {PREFS}: packages are only downloaded, never installed.\n\
         Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {}\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        SUITES.join(" ")
    );
    let prefs: String =
        std::iter::once("# Added by `cargo xtask vm-test`: download-only suites.\n".to_string())
            .chain(
                SUITES
                    .iter()
                    .map(|s| format!("\nPackage: *\nPin: release n={s}\nPin-Priority: 1\n")),
            )
            .collect();
    let mut changed = false;
    for (path, text) in [(PREFS, &prefs), (SOURCES, &sources)] {
        if fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
            fs::write(path, text).with_context(|| format!("writing {path} (needs root)"))?;
            changed = true;
        }
    }
    if changed || apt_names("linux-binary-7.").is_empty() {
        println!("vm: apt-get update (kernel suites added)");
        run(
            Command::new("apt-get").args(["update", "-qq"]),
            "apt-get update",
        )?;
    }
    Ok(())
}

pub(crate) fn apt_names(prefix: &str) -> Vec<String> {
    Command::new("apt-cache")
        .args(["pkgnames", prefix])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The numbers that `pattern`'s `#`s stand for in `name`, or None when it does not match.
pub fn match_pattern(pattern: &str, name: &str) -> Option<Vec<u64>> {
    let mut nums = Vec::new();
    let mut rest = name;
    let mut parts = pattern.split('#').peekable();
    while let Some(lit) = parts.next() {
        rest = rest.strip_prefix(lit)?;
        if parts.peek().is_some() {
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            nums.push(rest[..end].parse().ok()?);
            rest = &rest[end..];
        }
    }
    rest.is_empty().then_some(nums)
}

pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

fn deb_in(dir: &Path, pkg: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
        })
}

/// Downloads (apt verifies it against the signed Release file) unless already cached.
/// `pkg` may carry an architecture (`libc6:arm64`); the .deb's name does not, so keep
/// other architectures' packages of the same name in another `debs` directory.
pub(crate) fn download(pkg: &str, debs: &Path) -> Result<PathBuf> {
    let name = pkg.split(':').next().unwrap_or(pkg);
    if let Some(p) = deb_in(debs, name) {
        return Ok(p);
    }
    fs::create_dir_all(debs)?;
    let out = Command::new("apt-get")
        .current_dir(debs)
        .args(["download", "-q", pkg])
        .output()
        .context("running apt-get download")?;
    if !out.status.success() {
        bail!(
            "apt-get download {pkg}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    deb_in(debs, name).with_context(|| format!("apt-get download {pkg} left no .deb"))
}

/// Resolves, downloads, unpacks and checks one kernel of the matrix.
pub fn prepare(spec: &'static KernelSpec, cache: &Path) -> Result<Kernel> {
    let prefix = &spec.image[..spec.image.find('#').unwrap_or(spec.image.len())];
    let debs = cache.join("debs");
    // apt's view, plus what is already cached (so a run works offline, or while another
    // apt-get is rewriting the package lists).
    let cached = fs::read_dir(&debs)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some(e.file_name().to_str()?.split('_').next()?.to_string()));
    let mut candidates: Vec<(Vec<u64>, String)> = apt_names(prefix)
        .into_iter()
        .chain(cached)
        .filter_map(|n| Some((match_pattern(spec.image, &n)?, n)))
        .collect();
    candidates.sort();
    candidates.dedup();
    if candidates.is_empty() {
        bail!("no package matches {} in apt (apt-get update?)", spec.image);
    }
    let mut errors = Vec::new();
    // Newest first; a package apt still names may no longer be downloadable.
    for (_, pkg) in candidates.iter().rev() {
        let modules_pkg = spec.modules.map(|(from, to)| pkg.replacen(from, to, 1));
        let got = download(pkg, &debs).and_then(|image| {
            let modules = modules_pkg
                .as_deref()
                .map(|m| download(m, &debs))
                .transpose()?;
            Ok((image, modules))
        });
        match got {
            Ok((image, modules)) => return unpack(spec, pkg, &image, modules.as_deref(), cache),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    bail!(
        "no downloadable package for {}: {}",
        spec.image,
        errors.join("; ")
    )
}

fn unpack(
    spec: &'static KernelSpec,
    pkg: &str,
    image: &Path,
    modules: Option<&Path>,
    cache: &Path,
) -> Result<Kernel> {
    let dir = cache.join("kernels").join(pkg);
    let stamp = dir.join(".unpacked");
    if !stamp.exists() {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        for deb in std::iter::once(image).chain(modules) {
            run(Command::new("dpkg").arg("-x").arg(deb).arg(&dir), "dpkg -x")?;
        }
        fs::write(&stamp, "")?;
    }
    let version = deb_version(image)?;
    // 7.x packages put everything under /usr/lib/modules/REL (vmlinuz included); 6.x images
    // use /boot/vmlinuz-REL and /lib/modules/REL.
    let mut found = None;
    for base in ["usr/lib/modules", "lib/modules"] {
        if let Ok(rd) = fs::read_dir(dir.join(base)) {
            for e in rd.flatten() {
                if e.path().join("kernel").is_dir() {
                    found = Some((e.file_name().to_string_lossy().into_owned(), e.path()));
                }
            }
        }
    }
    let (release, modules_dir) =
        found.with_context(|| format!("no modules directory in {}", dir.display()))?;
    let vmlinuz = [
        modules_dir.join("vmlinuz"),
        dir.join(format!("boot/vmlinuz-{release}")),
    ]
    .into_iter()
    .find(|p| p.exists())
    .with_context(|| format!("no vmlinuz for {release} in {}", dir.display()))?;
    let raw = btf_dump(&vmlinuz, &dir.join("vmlinux"))?;
    let k = Kernel {
        spec,
        package: pkg.to_string(),
        version,
        release,
        vmlinuz,
        modules_dir,
        get_vm_areas_params: func_params(&raw, "pcpu_get_vm_areas"),
        has_alloc_noprof: func_params(&raw, "pcpu_alloc_noprof").is_some(),
    };
    check_role(&k)?;
    Ok(k)
}

fn deb_version(deb: &Path) -> Result<String> {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg("Version")
        .output()
        .context("dpkg-deb -f")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn check_role(k: &Kernel) -> Result<()> {
    let fix = if k.get_vm_areas_params == Some(5) {
        Fix::Fixed
    } else {
        Fix::Vulnerable
    };
    if fix != k.spec.fix || k.has_alloc_noprof == k.spec.old_names {
        bail!(
            "{} ({}) is listed as {}{} but its BTF says {}{} (pcpu_get_vm_areas params: {:?}, pcpu_alloc_noprof: {}); fix the matrix",
            k.package,
            k.version,
            fix_name(k.spec.fix),
            if k.spec.old_names { " with old names" } else { "" },
            fix_name(fix),
            if k.has_alloc_noprof { "" } else { " with old names" },
            k.get_vm_areas_params,
            k.has_alloc_noprof
        );
    }
    Ok(())
}

/// The BTF of a Debian bzImage as `bpftool btf dump format raw` text: the vmlinux (with
/// .BTF) is the zstd frame inside the bzImage. The vmlinux is cached at `vmlinux`.
pub(crate) fn btf_dump(vmlinuz: &Path, vmlinux: &Path) -> Result<String> {
    if !vmlinux.exists() {
        let data = fs::read(vmlinuz)?;
        // 7.x bzImages carry a zstd-compressed vmlinux, 6.1 an xz one; take the first
        // frame that decodes to an ELF file.
        const CODECS: &[(&str, &[u8])] =
            &[("zstd", &[0x28, 0xb5, 0x2f, 0xfd]), ("xz", b"\xfd7zXZ\x00")];
        let mut elf = None;
        for (tool, magic) in CODECS {
            let Some(off) = data.windows(magic.len()).position(|w| w == *magic) else {
                continue;
            };
            let tmp = vmlinux.with_extension("part");
            fs::write(&tmp, &data[off..])?;
            // Both tools complain about the bytes after the frame, but decode it whole.
            let out = Command::new(tool)
                .args(["-d", "-c", "-q"])
                .arg(&tmp)
                .output()
                .with_context(|| format!("running {tool}"))?;
            fs::remove_file(&tmp)?;
            if out.stdout.len() > 1 << 20 && out.stdout.starts_with(b"\x7fELF") {
                elf = Some(out.stdout);
                break;
            }
        }
        // arm64 images are an uncompressed Image: no vmlinux inside, but its raw .BTF
        // section is, which bpftool reads as well (cached under the same name).
        let elf = elf
            .or_else(|| raw_btf(&data).map(<[u8]>::to_vec))
            .with_context(|| {
                format!(
                    "{}: no zstd or xz vmlinux and no BTF inside",
                    vmlinuz.display()
                )
            })?;
        fs::write(vmlinux, elf)?;
    }
    let out = Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(vmlinux)
        .args(["format", "raw"])
        .output()
        .context("running bpftool")?;
    if !out.status.success() {
        bail!(
            "bpftool btf dump {}: {}",
            vmlinux.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The raw BTF inside an uncompressed arm64 Image (the kernel's .BTF section), found by
/// its magic and cut to the length its header declares.
pub fn raw_btf(image: &[u8]) -> Option<&[u8]> {
    const MAGIC: [u8; 4] = [0x9f, 0xeb, 0x01, 0x00];
    let mut from = 0;
    while let Some(i) = image[from..].windows(4).position(|w| w == MAGIC) {
        let off = from + i;
        let u32_at = |o: usize| -> Option<usize> {
            let b = image.get(off + o..off + o + 4)?;
            Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
        };
        // btf_header: magic u16, version u8, flags u8, hdr_len, type_off, type_len,
        // str_off, str_len (u32 each); the sections follow the header.
        if let (Some(hdr), Some(toff), Some(tlen), Some(soff), Some(slen)) =
            (u32_at(4), u32_at(8), u32_at(12), u32_at(16), u32_at(20))
        {
            let len = hdr + (toff + tlen).max(soff + slen);
            // A real vmlinux BTF is megabytes; a stray magic is not.
            if hdr == 24 && tlen > 1 << 20 && off + len <= image.len() {
                return Some(&image[off..off + len]);
            }
        }
        from = off + 1;
    }
    None
}

/// From `bpftool btf dump format raw` text: `[N] FUNC 'name' type_id=M`, then
/// `[M] FUNC_PROTO ... vlen=K`.
pub fn func_params(raw: &str, func: &str) -> Option<u32> {
    let needle = format!("FUNC '{func}' type_id=");
    let proto = raw.lines().find_map(|l| {
        l.split_once(&needle)
            .map(|(_, r)| r.split_whitespace().next().unwrap_or("").to_string())
    })?;
    let head = format!("[{proto}] FUNC_PROTO ");
    let line = raw.lines().find(|l| l.starts_with(&head))?;
    line.rsplit_once("vlen=")?.1.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(
            match_pattern(
                "linux-binary-7.2.#+deb#-amd64",
                "linux-binary-7.2.13+deb14-amd64"
            ),
            Some(vec![13, 14])
        );
        assert_eq!(
            match_pattern(
                "linux-binary-7.2.#+deb#-amd64",
                "linux-binary-7.2.13+deb14-cloud-amd64"
            ),
            None
        );
        assert_eq!(
            match_pattern(
                "linux-image-6.1.0-#-amd64-unsigned",
                "linux-image-6.1.0-56-amd64-unsigned"
            ),
            Some(vec![56])
        );
        assert_eq!(
            match_pattern(
                "linux-image-6.1.0-#-amd64-unsigned",
                "linux-image-6.1.0-56-rt-amd64-unsigned"
            ),
            None
        );
    }

    #[test]
    fn finds_btf_by_header() {
        let mut img = vec![0u8; 64];
        // A stray magic with a nonsense header first.
        img.extend_from_slice(&[0x9f, 0xeb, 0x01, 0x00, 9, 9, 9, 9]);
        let at = img.len();
        let tlen = (1u32 << 20) + 8;
        for (i, v) in [0x0001eb9fu32, 24, 0, tlen, tlen, 16].iter().enumerate() {
            if i == 0 {
                img.extend_from_slice(&[0x9f, 0xeb, 0x01, 0x00]);
            } else {
                img.extend_from_slice(&v.to_le_bytes());
            }
        }
        img.resize(at + 24 + tlen as usize + 16 + 100, 0);
        let btf = raw_btf(&img).expect("found");
        assert_eq!(btf.len(), 24 + tlen as usize + 16);
        assert_eq!(btf.as_ptr(), img[at..].as_ptr());
    }

    #[test]
    fn btf_text() {
        let raw = "[7] FUNC 'pcpu_get_vm_areas' type_id=5 linkage=static\n[5] FUNC_PROTO '(anon)' ret_type_id=1 vlen=4\n";
        assert_eq!(func_params(raw, "pcpu_get_vm_areas"), Some(4));
        assert_eq!(func_params(raw, "nope"), None);
    }
}
