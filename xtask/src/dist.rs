//! `cargo xtask dist`: the release artefacts under target/dist/, per architecture:
//! a binary that starts on glibc 2.17 or newer (cargo-zigbuild links against that glibc's
//! symbol versions), a tarball, a .deb (cargo-deb), an .rpm (cargo-generate-rpm), and one
//! SHA256SUMS for all of them. The packages' file lists are `[package.metadata.deb]` and
//! `[package.metadata.generate-rpm]` in percpu-trace/Cargo.toml; both read the tree staged
//! here (target/dist/stage/root, laid out under a prefix: bin/, share/, lib/systemd/).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{build::root, setup};

/// The oldest glibc the binaries must start on (RHEL/CentOS 7, Amazon Linux 2).
pub const GLIBC_FLOOR: (u32, u32) = (2, 17);

/// `cargo xtask dist` options.
#[derive(Debug, clap::Args)]
pub struct DistArgs {
    /// Only this architecture (x86_64 or aarch64); both when absent.
    #[arg(long)]
    pub arch: Option<String>,
}

/// Architectures and their names in each packaging world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// `uname -m`, Rust's arch and the rpm arch.
    pub arch: &'static str,
    /// Debian's architecture name.
    pub deb_arch: &'static str,
    /// Rust target triple.
    pub triple: &'static str,
}

/// Every architecture dist builds.
pub const TARGETS: &[Target] = &[
    Target {
        arch: "x86_64",
        deb_arch: "amd64",
        triple: "x86_64-unknown-linux-gnu",
    },
    Target {
        arch: "aarch64",
        deb_arch: "arm64",
        triple: "aarch64-unknown-linux-gnu",
    },
];

/// Package version (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Target {
    /// The target of `arch`.
    pub fn of(arch: &str) -> Result<Target> {
        TARGETS
            .iter()
            .find(|t| t.arch == arch)
            .copied()
            .with_context(|| format!("unsupported --arch {arch} (x86_64 or aarch64)"))
    }

    /// The bare binary in target/dist.
    pub fn binary(self) -> PathBuf {
        dist_dir().join(format!("percpu-trace-{VERSION}-{}", self.arch))
    }

    /// The tarball in target/dist.
    pub fn tarball(self) -> PathBuf {
        dist_dir().join(format!("percpu-trace-{VERSION}-{}.tar.gz", self.arch))
    }

    /// The .deb in target/dist.
    pub fn deb(self) -> PathBuf {
        dist_dir().join(format!("percpu-trace_{VERSION}-1_{}.deb", self.deb_arch))
    }

    /// The .rpm in target/dist.
    pub fn rpm(self) -> PathBuf {
        dist_dir().join(format!("percpu-trace-{VERSION}-1.{}.rpm", self.arch))
    }
}

/// target/dist.
pub fn dist_dir() -> PathBuf {
    root().join("target/dist")
}

/// Builds the artefacts of the requested architectures; the x86_64 binary is always built
/// (it generates the manual pages and completions, which do not depend on the arch).
pub fn run(args: &DistArgs) -> Result<()> {
    let targets = match &args.arch {
        Some(a) => vec![Target::of(a)?],
        None => TARGETS.to_vec(),
    };
    setup::ensure_dist()?;
    let host = binary(Target::of("x86_64")?)?;
    for t in targets {
        let bin = binary(t)?;
        stage(t, &bin, &host)?;
        package(t)?;
    }
    sums()
}

/// Builds (or reuses: cargo's own fingerprints) the portable binary of `t` and copies it
/// to target/dist. Its own target directory: zig as the linker and the glibc suffix must
/// not invalidate the development build's artefacts.
pub fn binary(t: Target) -> Result<PathBuf> {
    setup::ensure_zigbuild()?;
    let target_dir = root().join("target/dist-build");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .env("PATH", setup::zigbuild_path())
        .args(["zigbuild", "--release", "--locked", "-p", "percpu-trace"])
        .arg("--target")
        .arg(format!("{}.{}.{}", t.triple, GLIBC_FLOOR.0, GLIBC_FLOOR.1))
        .arg("--target-dir")
        .arg(&target_dir);
    if t.arch != std::env::consts::ARCH {
        // rustup has only the host's std; Debian's rustc-web has the arm64 one
        // (libstd-rust-web-dev:arm64), as for `cargo xtask build --arch aarch64`.
        setup::ensure_cross_aarch64()?;
        cmd.env("RUSTC", "/usr/bin/rustc");
    }
    exec(&mut cmd, &format!("cargo zigbuild ({})", t.arch))?;
    let built = target_dir.join(t.triple).join("release/percpu-trace");
    fs::create_dir_all(dist_dir())?;
    let out = t.binary();
    fs::copy(&built, &out).with_context(|| format!("copying {}", built.display()))?;
    Ok(out)
}

/// Stage directory the packages read (percpu-trace/Cargo.toml names these paths).
fn stage_dir() -> PathBuf {
    dist_dir().join("stage")
}

/// Lays out the files of `t` under stage/root (tarball, prefix layout) and the unit for
/// the packages (binary in /usr/bin) under stage/pkg.
fn stage(t: Target, bin: &Path, host: &Path) -> Result<()> {
    let stage = stage_dir();
    let _ = fs::remove_dir_all(&stage);
    let r = stage.join("root");
    let doc = r.join("share/doc/percpu-trace");
    for d in [
        "bin",
        "share/man/man1",
        "share/bash-completion/completions",
        "share/zsh/site-functions",
        "share/fish/vendor_completions.d",
        "share/doc/percpu-trace",
        "lib/systemd/system",
    ] {
        fs::create_dir_all(r.join(d))?;
    }
    fs::create_dir_all(stage.join("pkg"))?;
    fs::copy(bin, r.join("bin/percpu-trace"))?;
    let pages = output(
        Command::new(host).args(["man", "--list"]),
        "percpu-trace man --list",
    )?;
    for page in pages.lines().filter(|l| !l.is_empty()) {
        let roff = output(Command::new(host).args(["man", page]), "percpu-trace man")?;
        let path = r.join(format!("share/man/man1/{page}.1"));
        fs::write(&path, roff)?;
        // -n: no name or time stamp inside, so the packages are reproducible.
        exec(Command::new("gzip").args(["-9nf"]).arg(&path), "gzip")?;
    }
    for (shell, rel) in [
        ("bash", "share/bash-completion/completions/percpu-trace"),
        ("zsh", "share/zsh/site-functions/_percpu-trace"),
        ("fish", "share/fish/vendor_completions.d/percpu-trace.fish"),
    ] {
        let s = output(
            Command::new(host).args(["completions", shell]),
            "percpu-trace completions",
        )?;
        fs::write(r.join(rel), s)?;
    }
    let unit = fs::read_to_string(root().join("dist/percpu-trace.service"))?;
    fs::write(r.join("lib/systemd/system/percpu-trace.service"), &unit)?;
    fs::write(
        stage.join("pkg/percpu-trace.service"),
        unit.replace("/usr/local/bin/percpu-trace", "/usr/bin/percpu-trace"),
    )?;
    for (src, name) in [
        ("docs/fleet.md", "fleet.md"),
        ("README.md", "README.md"),
        ("LICENSE-MIT", "LICENSE-MIT"),
        ("LICENSE-APACHE", "LICENSE-APACHE"),
    ] {
        fs::copy(root().join(src), doc.join(name)).with_context(|| format!("copying {src}"))?;
    }
    println!("dist: staged {} files for {}", count(&r)?, t.arch);
    Ok(())
}

fn count(dir: &Path) -> Result<usize> {
    let mut n = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        n += if e.file_type()?.is_dir() {
            count(&e.path())?
        } else {
            1
        };
    }
    Ok(n)
}

/// Tarball, .deb and .rpm of the staged tree.
fn package(t: Target) -> Result<()> {
    let top = format!("percpu-trace-{VERSION}-{}", t.arch);
    exec(
        Command::new("tar")
            .arg("-C")
            .arg(stage_dir())
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .args(["--mtime=@0", "--transform"])
            .arg(format!("s,^root,{top},"))
            .arg("-czf")
            .arg(t.tarball())
            .arg("root"),
        "tar",
    )?;
    exec(
        Command::new("cargo")
            .current_dir(root())
            .args(["deb", "-p", "percpu-trace", "--no-build", "--no-strip"])
            .args(["--target", t.triple, "--output"])
            .arg(t.deb()),
        "cargo deb",
    )?;
    exec(
        Command::new("cargo")
            .current_dir(root())
            .args(["generate-rpm", "-p", "percpu-trace", "--arch", t.arch])
            // Not "auto": that depends on whether this machine has rpm's find-requires.
            .args(["--auto-req", "builtin"])
            .args(["--target", t.triple, "--output"])
            .arg(t.rpm()),
        "cargo generate-rpm",
    )?;
    for f in [t.binary(), t.tarball(), t.deb(), t.rpm()] {
        println!(
            "dist: {} ({} KiB)",
            f.display(),
            fs::metadata(&f)?.len() / 1024
        );
    }
    Ok(())
}

/// SHA256SUMS of every artefact in target/dist (as `sha256sum -c` reads it).
fn sums() -> Result<()> {
    let mut names: Vec<String> = fs::read_dir(dist_dir())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "SHA256SUMS")
        .collect();
    names.sort();
    let out = output(
        Command::new("sha256sum")
            .current_dir(dist_dir())
            .args(&names),
        "sha256sum",
    )?;
    fs::write(dist_dir().join("SHA256SUMS"), out)?;
    println!("dist: {}", dist_dir().join("SHA256SUMS").display());
    Ok(())
}

/// Runs `cmd`, failing with `what` when it fails.
pub fn exec(cmd: &mut Command, what: &str) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout, failing with `what` and its stderr when it fails.
pub fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let o = cmd.output().with_context(|| format!("running {what}"))?;
    if !o.status.success() {
        bail!(
            "{what} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}
