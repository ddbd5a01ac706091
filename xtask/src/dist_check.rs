//! `cargo xtask dist-test`: proves the artefacts of `cargo xtask dist` do what they claim,
//! on an old userland rather than this machine's. Every check fails loudly; none is
//! skipped.
//!
//! - symbol versions: no artefact binary needs a glibc symbol newer than GLIBC_2.17;
//! - Debian 11 (bullseye, glibc 2.31, the oldest suite the registry still serves): a
//!   `debootstrap --variant=minbase` chroot with /proc and /sys bind-mounted runs the x86_64
//!   binary (`--version` naming the development build's commit and eBPF object, `man`,
//!   `check --json` identical to the development build's, and a
//!   5-second `record` whose report parses); the arm64 binary starts under qemu-user on an
//!   arm64 bullseye root;
//! - the .deb installs into a fresh chroot (binary, manual pages found by `man -w`,
//!   completions, unit) and `dpkg -r` removes every file again; the .rpm (`rpm -qlp`) and
//!   the tarball list the same files, for both architectures (zsh's directory differs by
//!   distribution convention).
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, ensure, Context, Result};

use crate::{
    build::root,
    dist::{self, exec as run_cmd, output, Target, GLIBC_FLOOR},
};

/// The suite of the old userland.
const SUITE: &str = "bullseye";

/// Runs every check (root: chroot, mounts, dpkg).
pub fn run() -> Result<()> {
    ensure!(
        crate::setup::is_root(),
        "dist-test makes chroots and mounts /proc and /sys: run it as root"
    );
    let t0 = Instant::now();
    // debootstrap (mostly downloads and unpacking) while the binaries compile; tools first,
    // so a missing debootstrap is installed, never skipped.
    crate::setup::ensure_dist()?;
    let roots = std::thread::spawn(|| -> Result<()> {
        base("amd64")?;
        base("arm64")?;
        Ok(())
    });
    let built = dist::run(&dist::DistArgs { arch: None });
    println!(
        "dist-test: artefacts built in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let roots = roots
        .join()
        .map_err(|_| anyhow::anyhow!("the debootstrap thread panicked"))?;
    built?;
    roots.context("making the bullseye roots")?;
    println!(
        "dist-test: artefacts and bullseye roots ready in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let x86 = Target::of("x86_64")?;
    let arm = Target::of("aarch64")?;
    for t in [x86, arm] {
        let (max, needed) = glibc_needs(&t.binary())?;
        println!(
            "dist-test: {}: highest glibc symbol version GLIBC_{}.{}, needs {}",
            t.arch,
            max.0,
            max.1,
            needed.join(" ")
        );
        ensure!(
            max <= GLIBC_FLOOR,
            "{} needs GLIBC_{}.{}, above the GLIBC_{}.{} floor",
            t.binary().display(),
            max.0,
            max.1,
            GLIBC_FLOOR.0,
            GLIBC_FLOOR.1
        );
    }
    let t1 = Instant::now();
    old_userland_x86(x86)?;
    old_userland_arm64(arm)?;
    deb_install_remove(x86)?;
    let n = package_lists_agree(x86)?;
    ensure!(
        package_lists_agree(arm)? == n,
        "the arm64 packages hold another number of files than the x86_64 ones"
    );
    println!(
        "dist-test: chroot and package checks passed in {:.0} s",
        t1.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The highest GLIBC_x.y version any symbol of `elf` needs, and its DT_NEEDED libraries
/// (`readelf` reads either architecture).
fn glibc_needs(elf: &Path) -> Result<((u32, u32), Vec<String>)> {
    let versions = output(
        Command::new("readelf").args(["-V", "-W"]).arg(elf),
        "readelf -V",
    )?;
    let dynamic = output(
        Command::new("readelf").args(["-d", "-W"]).arg(elf),
        "readelf -d",
    )?;
    let max = glibc_versions(&versions)
        .into_iter()
        .max()
        .with_context(|| format!("{}: no GLIBC symbol versions at all", elf.display()))?;
    let needed = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l[l.find('[')? + 1..l.find(']')?].to_string()))
        .collect();
    Ok((max, needed))
}

/// Every `GLIBC_x.y[.z]` named in `readelf -V` output, as (x, y) (a .z never raises it
/// past the next y).
fn glibc_versions(text: &str) -> Vec<(u32, u32)> {
    text.split(|c: char| c.is_whitespace())
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut it = v.split('.').map(|n| n.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .collect()
}

/// target/dist-chroot: the cached debootstrap trees and the chroots made from them.
fn chroot_dir() -> PathBuf {
    root().join("target/dist-chroot")
}

/// The Debian mirror apt already uses here (debootstrap needs one; read, not hard-coded).
fn mirror() -> Result<String> {
    let mut texts = vec![fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        for e in rd.flatten() {
            let p = e.path();
            if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("sources" | "list")
            ) {
                texts.push(fs::read_to_string(p).unwrap_or_default());
            }
        }
    }
    texts
        .iter()
        .flat_map(|t| t.split_whitespace())
        .find(|w| w.starts_with("http") && w.trim_end_matches('/').ends_with("/debian"))
        .map(|w| w.trim_end_matches('/').to_string())
        .context("no Debian mirror (a URI ending in /debian) in the apt sources")
}

/// The cached tarball of a minimal `SUITE` root for `deb_arch`: complete (with man-db,
/// for `man -w`) for the host's architecture; for another only debootstrap's first stage
/// (packages unpacked, which is what qemu-user's `-L` needs).
fn base(deb_arch: &str) -> Result<PathBuf> {
    let tar = chroot_dir().join(format!("{SUITE}-{deb_arch}.tar"));
    if tar.exists() {
        return Ok(tar);
    }
    let dir = chroot_dir().join(format!("debootstrap-{deb_arch}"));
    remove_tree(&dir)?;
    fs::create_dir_all(&dir)?;
    let t = Instant::now();
    let mut cmd = Command::new("debootstrap");
    cmd.args(["--variant=minbase", &format!("--arch={deb_arch}")]);
    if deb_arch == "amd64" {
        cmd.arg("--include=man-db");
    } else {
        cmd.arg("--foreign");
    }
    run_cmd(
        cmd.arg(SUITE).arg(&dir).arg(mirror()?),
        &format!("debootstrap {SUITE} {deb_arch}"),
    )?;
    println!(
        "dist-test: debootstrap {SUITE} {deb_arch}: {:.0} s (cached in {})",
        t.elapsed().as_secs_f64(),
        tar.display()
    );
    // The downloaded .debs are not part of a system (and would double the cache).
    if let Ok(rd) = fs::read_dir(dir.join("var/cache/apt/archives")) {
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "deb") {
                fs::remove_file(e.path())?;
            }
        }
    }
    let part = tar.with_extension("tar.part");
    run_cmd(
        Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .arg("-cf")
            .arg(&part)
            .arg("."),
        "tar (chroot cache)",
    )?;
    fs::rename(&part, &tar)?;
    remove_tree(&dir)?;
    Ok(tar)
}

/// A chroot made fresh from the cached tree; /proc and /sys (recursively, for tracefs)
/// are bound while it lives and unmounted when it is dropped.
struct Chroot {
    dir: PathBuf,
    mounted: bool,
}

impl Chroot {
    fn fresh(deb_arch: &str, name: &str) -> Result<Chroot> {
        let tar = base(deb_arch)?;
        let dir = chroot_dir().join(name);
        remove_tree(&dir)?;
        fs::create_dir_all(&dir)?;
        run_cmd(
            Command::new("tar").arg("-C").arg(&dir).arg("-xf").arg(&tar),
            "tar -x (chroot)",
        )?;
        Ok(Chroot {
            dir,
            mounted: false,
        })
    }

    fn mount(&mut self) -> Result<()> {
        self.mounted = true;
        run_cmd(
            Command::new("mount")
                .args(["--bind", "/proc"])
                .arg(self.dir.join("proc")),
            "mount /proc",
        )?;
        run_cmd(
            Command::new("mount")
                .args(["--rbind", "/sys"])
                .arg(self.dir.join("sys")),
            "mount /sys",
        )?;
        // Unmounting the chroot's /sys must never propagate to the host's.
        run_cmd(
            Command::new("mount")
                .arg("--make-rslave")
                .arg(self.dir.join("sys")),
            "mount --make-rslave",
        )
    }

    /// `args` to run inside the chroot. PATH is the chroot's, and also where the host's
    /// `chroot` (/usr/sbin) is looked up.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("chroot");
        c.arg(&self.dir)
            .args(args)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("LANG", "C");
        c
    }

    /// Runs `args` inside the chroot; stdout on success.
    fn run(&self, args: &[&str]) -> Result<String> {
        output(
            &mut self.command(args),
            &format!("chroot: {}", args.join(" ")),
        )
    }

    fn put(&self, host: &Path, inside: &str) -> Result<()> {
        let dst = self.dir.join(inside.trim_start_matches('/'));
        fs::copy(host, &dst).with_context(|| format!("copying into {}", dst.display()))?;
        Ok(())
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        if self.mounted {
            for m in ["sys", "proc"] {
                let _ = Command::new("umount")
                    .args(["-R", "-l"])
                    .arg(self.dir.join(m))
                    .status();
            }
        }
    }
}

/// Mount points at or below `dir` (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == prefix || m.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect()
}

/// Removes a chroot tree, first unmounting whatever a crashed run left mounted in it;
/// refuses to delete while anything is still mounted there (that would be the host's
/// /sys or /proc).
fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for m in mounts_under(dir).iter().rev() {
        let _ = Command::new("umount").args(["-R", "-l", m]).status();
    }
    let left = mounts_under(dir);
    ensure!(
        left.is_empty(),
        "still mounted under {}: {left:?}; not deleting it",
        dir.display()
    );
    fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// The x86_64 binary on Debian 11: runs, its `check --json` equals the development
/// build's on this host, and a 5-second recording makes a report that parses.
fn old_userland_x86(t: Target) -> Result<()> {
    let mut c = Chroot::fresh(t.deb_arch, "run-x86_64")?;
    c.mount()?;
    c.put(&t.binary(), "/usr/local/bin/percpu-trace")?;
    let libc = c.run(&["ldd", "--version"])?;
    println!(
        "dist-test: chroot: {}",
        libc.lines().next().unwrap_or_default()
    );
    let version = c.run(&["percpu-trace", "--version"])?;
    ensure!(
        version.starts_with(&format!("percpu-trace {} (git ", dist::VERSION)),
        "--version in the chroot: {version:?}"
    );
    println!("dist-test: chroot: {}", version.trim());
    let man = c.run(&["percpu-trace", "man"])?;
    ensure!(
        man.contains(".TH percpu-trace 1 "),
        "man in the chroot: {man:.200}"
    );
    let dev = dev_build()?;
    // A drop-in for the development build: the same commit and the same eBPF object
    // (its SHA-256 is in --version), so the tests that load the dev build's programs
    // vouch for the shipped ones.
    let dev_version = output(
        Command::new(&dev).arg("--version"),
        "--version (host build)",
    )?;
    ensure!(
        version == dev_version,
        "the dist binary is not the development build's twin: {:?} in the chroot, {:?} here",
        version.trim(),
        dev_version.trim()
    );
    let want = output(
        Command::new(&dev).args(["check", "--json"]),
        "check --json (host build)",
    )?;
    let got = c.run(&["percpu-trace", "check", "--json"])?;
    if got != want {
        fs::write(chroot_dir().join("check-host.json"), &want)?;
        fs::write(chroot_dir().join("check-chroot.json"), &got)?;
        bail!(
            "check --json differs between the chroot and the host build (both saved in {})",
            chroot_dir().display()
        );
    }
    println!(
        "dist-test: chroot: check --json identical to the host build's ({} bytes)",
        got.len()
    );
    let st = c
        .command(&["percpu-trace", "record", "-d", "5s", "-o", "/tmp/rec.jsonl"])
        .status()
        .context("running record in the chroot")?;
    ensure!(
        matches!(st.code(), Some(0 | 1)),
        "record in the chroot failed ({st})"
    );
    // `report` exits 1 when the recording has findings (the exit contract), 2 on errors.
    let report = c
        .command(&[
            "percpu-trace",
            "report",
            "/tmp/rec.jsonl",
            "--format",
            "json",
        ])
        .output()
        .context("running report in the chroot")?;
    ensure!(
        matches!(report.status.code(), Some(0 | 1)),
        "report in the chroot failed ({}): {}",
        report.status,
        String::from_utf8_lossy(&report.stderr).trim()
    );
    let text = String::from_utf8_lossy(&report.stdout).into_owned();
    let v: serde_json::Value =
        serde_json::from_str(&text).context("the chroot's 5 s recording's report is not JSON")?;
    ensure!(v.is_object(), "report: {text:.200}");
    println!(
        "dist-test: chroot: record 5 s (exit {}), report parses ({} bytes)",
        st.code().unwrap_or(-1),
        text.len()
    );
    Ok(())
}

/// The development build of this host (what `cargo test` built), for comparison.
fn dev_build() -> Result<PathBuf> {
    run_cmd(
        Command::new("cargo")
            .current_dir(root())
            .args(["build", "--locked", "-p", "percpu-trace"]),
        "cargo build -p percpu-trace",
    )?;
    Ok(root().join("target/debug/percpu-trace"))
}

/// The arm64 binary starts on an arm64 Debian 11 root under qemu-user.
fn old_userland_arm64(t: Target) -> Result<()> {
    let c = Chroot::fresh(t.deb_arch, "run-aarch64")?;
    let run = |args: &[&str]| {
        output(
            Command::new("qemu-aarch64-static")
                .arg("-L")
                .arg(&c.dir)
                .arg(t.binary())
                .args(args),
            "qemu-aarch64-static percpu-trace",
        )
    };
    let version = run(&["--version"])?;
    ensure!(
        version.starts_with(&format!("percpu-trace {} (git ", dist::VERSION)),
        "arm64 --version: {version:?}"
    );
    let pages = run(&["man", "--list"])?;
    ensure!(
        pages.contains("percpu-trace-record"),
        "arm64 man --list: {pages}"
    );
    println!(
        "dist-test: arm64 under qemu-user on {SUITE}: {}",
        version.trim()
    );
    Ok(())
}

/// Files (not directories) a .deb holds, as absolute paths.
fn deb_files(deb: &Path) -> Result<BTreeSet<String>> {
    let list = output(Command::new("dpkg-deb").arg("-c").arg(deb), "dpkg-deb -c")?;
    Ok(list
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect())
}

/// `dpkg -i` in a fresh chroot installs what the package promises (`man -w` finds the
/// pages), `dpkg -r` takes every file away again.
fn deb_install_remove(t: Target) -> Result<()> {
    let files = deb_files(&t.deb())?;
    for want in [
        "/usr/bin/percpu-trace",
        "/usr/share/man/man1/percpu-trace.1.gz",
        "/usr/share/man/man1/percpu-trace-record.1.gz",
        "/usr/share/bash-completion/completions/percpu-trace",
        "/usr/share/zsh/vendor-completions/_percpu-trace",
        "/usr/share/fish/vendor_completions.d/percpu-trace.fish",
        "/usr/lib/systemd/system/percpu-trace.service",
        "/usr/share/doc/percpu-trace/fleet.md",
        "/usr/share/doc/percpu-trace/copyright",
    ] {
        ensure!(files.contains(want), ".deb lacks {want}: {files:?}");
    }
    let c = Chroot::fresh(t.deb_arch, "deb")?;
    c.put(&t.deb(), "/tmp/percpu-trace.deb")?;
    c.run(&["dpkg", "-i", "/tmp/percpu-trace.deb"])?;
    for f in &files {
        ensure!(
            c.dir.join(f.trim_start_matches('/')).exists(),
            "dpkg -i did not install {f}"
        );
    }
    let page = c.run(&["man", "-w", "percpu-trace"])?;
    ensure!(
        page.trim() == "/usr/share/man/man1/percpu-trace.1.gz",
        "man -w percpu-trace: {page:?}"
    );
    c.run(&["man", "-w", "percpu-trace-record"])?;
    let unit = fs::read_to_string(c.dir.join("usr/lib/systemd/system/percpu-trace.service"))?;
    ensure!(
        unit.contains("ExecStart=/bin/sh -c 'exec /usr/bin/percpu-trace record"),
        "the packaged unit does not start /usr/bin/percpu-trace"
    );
    let version = c.run(&["percpu-trace", "--version"])?;
    c.run(&["dpkg", "-r", "percpu-trace"])?;
    let left: Vec<&String> = files
        .iter()
        .filter(|f| c.dir.join(f.trim_start_matches('/')).exists())
        .collect();
    ensure!(left.is_empty(), "dpkg -r left {left:?}");
    println!(
        "dist-test: .deb: dpkg -i installed {} files ({}; man -w finds the pages), dpkg -r removed them",
        files.len(),
        version.trim()
    );
    Ok(())
}

/// The .deb, the .rpm and the tarball of `t` hold the same files; returns how many.
fn package_lists_agree(t: Target) -> Result<usize> {
    let rpm: BTreeSet<String> = output(Command::new("rpm").arg("-qlp").arg(t.rpm()), "rpm -qlp")?
        .lines()
        .map(str::to_string)
        .collect();
    let tar = output(Command::new("tar").arg("-tzf").arg(t.tarball()), "tar -tzf")?;
    let n = lists_agree(&deb_files(&t.deb())?, &rpm, &tarball_files(&tar))
        .with_context(|| format!("{} packages", t.arch))?;
    println!(
        "dist-test: {}: the .deb, rpm -qlp and the tarball list the same {n} files",
        t.arch
    );
    Ok(n)
}

/// Files of a tarball (`tar -t` output) as the packages install them: the top directory
/// (`percpu-trace-VERSION-ARCH/`) stands for the /usr prefix.
fn tarball_files(listing: &str) -> BTreeSet<String> {
    listing
        .lines()
        .filter(|l| !l.ends_with('/'))
        .filter_map(|l| l.split_once('/'))
        .map(|(_, rel)| format!("/usr/{rel}"))
        .collect()
}

/// Fails unless the three file lists name the same files, after the conventions that
/// differ on purpose: Debian's zsh reads vendor completions from vendor-completions (RPM
/// distributions and the tarball: site-functions), and only the .deb has Debian's
/// copyright file (the licences themselves are in all three).
fn lists_agree(
    deb: &BTreeSet<String>,
    rpm: &BTreeSet<String>,
    tar: &BTreeSet<String>,
) -> Result<usize> {
    let deb: BTreeSet<String> = deb
        .iter()
        .filter(|f| *f != "/usr/share/doc/percpu-trace/copyright")
        .map(|f| f.replace("/zsh/vendor-completions/", "/zsh/site-functions/"))
        .collect();
    for (name, other) in [("rpm", rpm), ("tarball", tar)] {
        ensure!(
            *other == deb,
            "{name} and .deb differ: only {name} {:?}, only .deb {:?}",
            other.difference(&deb).collect::<Vec<_>>(),
            deb.difference(other).collect::<Vec<_>>()
        );
    }
    Ok(deb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_version_needs() {
        let t = "  0x0010:   Name: GLIBC_2.2.5  Flags: none  Version: 3\n  0x0020:   Name: GLIBC_2.17  Flags: none\n Name: GLIBC_2.3.4 GLIBC_PRIVATE";
        let v = glibc_versions(t);
        assert_eq!(v.iter().max(), Some(&(2, 17)));
        assert!(v.contains(&(2, 2)) && v.contains(&(2, 3)));
        assert!((2, 28) > GLIBC_FLOOR && (2, 9) < GLIBC_FLOOR);
    }

    fn set(files: &[&str]) -> BTreeSet<String> {
        files.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn package_lists() {
        let tar = tarball_files(
            "percpu-trace-0.1.0-x86_64/\npercpu-trace-0.1.0-x86_64/bin/\npercpu-trace-0.1.0-x86_64/bin/percpu-trace\npercpu-trace-0.1.0-x86_64/share/zsh/site-functions/_percpu-trace\n",
        );
        assert_eq!(
            tar,
            set(&[
                "/usr/bin/percpu-trace",
                "/usr/share/zsh/site-functions/_percpu-trace"
            ])
        );
        let deb = set(&[
            "/usr/bin/percpu-trace",
            "/usr/share/zsh/vendor-completions/_percpu-trace",
            "/usr/share/doc/percpu-trace/copyright",
        ]);
        assert_eq!(lists_agree(&deb, &tar, &tar).unwrap(), 2);
        // A file missing from one package, or one only it has, fails.
        let short = set(&["/usr/bin/percpu-trace"]);
        let err = lists_agree(&deb, &short, &tar).unwrap_err().to_string();
        assert!(err.contains("only .deb [\"/usr/share/zsh/site-functions/_percpu-trace\"]"));
        let mut extra = tar.clone();
        extra.insert("/usr/share/man/man1/x.1.gz".into());
        assert!(lists_agree(&deb, &tar, &extra).is_err());
    }
}
