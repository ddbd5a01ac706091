//! Installs the toolchain the eBPF build needs (see ../shared/TOOLCHAIN.md), idempotently,
//! one line per step. Debian's rustc-web + rust-web-src give `-Z build-std=core` for
//! bpfel-unknown-none without rustup downloads; bpf-linker links the object with LLVM 22.
use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

/// Debian packages: the eBPF toolchain, then what the tests use (qemu, initramfs tools,
/// tmux for the TUI end-to-end test, bpftool for detach checks, prometheus for the metrics).
const APT_PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "/usr/bin/rustc"),
    (
        "rust-web-src",
        "/usr/lib/rustlib/src/rust/library/core/Cargo.toml",
    ),
    ("llvm-22-dev", "/usr/lib/llvm-22/bin/llvm-config"),
    ("libpolly-22-dev", "/usr/lib/llvm-22/lib/libPolly.a"),
    ("libzstd-dev", "/usr/include/zstd.h"),
    ("zlib1g-dev", "/usr/include/zlib.h"),
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("busybox-static", "/bin/busybox"),
    ("cpio", "/usr/bin/cpio"),
    ("e2fsprogs", "/sbin/mke2fs"),
    ("xz-utils", "/usr/bin/xz"),
    ("zstd", "/usr/bin/zstd"),
    ("tmux", "/usr/bin/tmux"),
    ("bpftool", "/usr/sbin/bpftool"),
    // The real Prometheus server and promtool: the host smoke test scrapes the recorder
    // with it, and tests/prometheus_rules.rs checks the shipped rules.
    ("prometheus", "/usr/bin/promtool"),
];

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Installs everything missing, saying what it does.
pub fn run() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(_, probe)| !Path::new(probe).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        println!("setup: Debian packages present");
    } else {
        println!("setup: installing {}", missing.join(" "));
        apt(&["update", "-qq"])?;
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&missing);
        apt(&args)?;
    }
    if bpf_linker_ok() {
        println!("setup: bpf-linker {BPF_LINKER_VERSION} present");
    } else {
        println!("setup: cargo install bpf-linker {BPF_LINKER_VERSION} (llvm-22, ~1 min)");
        let path = format!(
            "/usr/lib/llvm-22/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let st = Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("PATH", path)
            .status()
            .context("running cargo install")?;
        if !st.success() {
            bail!("cargo install bpf-linker failed ({st}); it needs llvm-22-dev and libpolly-22-dev from apt");
        }
    }
    println!("setup: done");
    Ok(())
}

/// Runs [`run`] only when something is missing, so other commands stay quiet and fast.
pub fn ensure() -> Result<()> {
    if APT_PACKAGES.iter().all(|(_, p)| Path::new(p).exists()) && bpf_linker_ok() {
        return Ok(());
    }
    run()
}

/// Debian packages for building the aarch64 binary on x86_64 and booting arm64 guests,
/// with the probe path of each.
const ARM64_PACKAGES: &[(&str, &str)] = &[
    (
        "libstd-rust-web-dev:arm64",
        "/usr/lib/rustlib/aarch64-unknown-linux-gnu/lib",
    ),
    ("gcc-aarch64-linux-gnu", "/usr/bin/aarch64-linux-gnu-gcc"),
    (
        "libc6-dev-arm64-cross",
        "/usr/aarch64-linux-gnu/lib/libc.so",
    ),
    // For `vm-test --arch aarch64`.
    ("qemu-system-arm", "/usr/bin/qemu-system-aarch64"),
];

/// Installs the arm64 cross-build and qemu packages when missing (adds the arm64 dpkg
/// architecture).
pub fn ensure_cross_aarch64() -> Result<()> {
    let missing: Vec<&str> = ARM64_PACKAGES
        .iter()
        .filter(|(_, probe)| !Path::new(probe).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: arm64 cross build: installing {}", missing.join(" "));
    let st = Command::new("dpkg")
        .args(["--add-architecture", "arm64"])
        .status()
        .context("running dpkg --add-architecture arm64")?;
    if !st.success() {
        bail!("dpkg --add-architecture arm64 failed ({st})");
    }
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)
}

/// Debian packages `cargo xtask dist` and its checks use: rpm (rpmbuild-free: only
/// `rpm -qlp` to list what cargo-generate-rpm made), debootstrap for the old-userland
/// chroots, qemu-user-static to start the arm64 binary, readelf for symbol versions.
const DIST_APT: &[(&str, &str)] = &[
    ("debootstrap", "/usr/sbin/debootstrap"),
    ("rpm", "/usr/bin/rpm"),
    ("qemu-user-static", "/usr/bin/qemu-aarch64-static"),
    ("binutils", "/usr/bin/readelf"),
];

/// python3-venv, for the cargo-zigbuild venv.
const VENV_PROBE: &str = "/usr/share/doc/python3-venv";

/// cargo-zigbuild from PyPI; its `ziglang` dependency is the zig toolchain.
const ZIGBUILD_VERSION: &str = "0.24.0";
/// Packaging tools, pinned and built `--locked`.
const CARGO_TOOLS: &[(&str, &str)] = &[("cargo-deb", "3.8.0"), ("cargo-generate-rpm", "0.21.1")];

/// Installs what `cargo xtask dist` needs when missing: the portable build
/// ([`ensure_zigbuild`]), the packages above and the pinned cargo packaging tools.
pub fn ensure_dist() -> Result<()> {
    ensure_zigbuild()?;
    let missing: Vec<&str> = DIST_APT
        .iter()
        .filter(|(_, probe)| !Path::new(probe).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if !missing.is_empty() {
        println!("setup: dist: installing {}", missing.join(" "));
        apt(&["update", "-qq"])?;
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&missing);
        apt(&args)?;
    }
    for (krate, version) in CARGO_TOOLS {
        if tool_has_version(krate, version) {
            continue;
        }
        println!("setup: cargo install {krate} {version} --locked (a few minutes)");
        let st = Command::new("cargo")
            .args(["install", krate, "--version", version, "--locked"])
            .status()
            .context("running cargo install")?;
        if !st.success() {
            bail!("cargo install {krate} failed ({st})");
        }
    }
    Ok(())
}

/// Installs what the portable binaries need when missing (every test binary is one, see
/// `dist::binary`): the eBPF toolchain ([`ensure`]), python3-venv, and cargo-zigbuild
/// with zig from PyPI in a venv of its own.
pub fn ensure_zigbuild() -> Result<()> {
    ensure()?;
    if !Path::new(VENV_PROBE).exists() {
        println!("setup: dist: installing python3-venv");
        apt(&["update", "-qq"])?;
        apt(&[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "python3-venv",
        ])?;
    }
    let venv = zigbuild_venv();
    if !tool_has_version(
        &venv.join("bin/cargo-zigbuild").to_string_lossy(),
        ZIGBUILD_VERSION,
    ) {
        // A venv of its own: Debian's python refuses `pip install` into the system
        // (PEP 668), and the pinned version stays independent of anything else.
        println!(
            "setup: cargo-zigbuild {ZIGBUILD_VERSION} (brings zig as ziglang) into {}",
            venv.display()
        );
        let st = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("running python3 -m venv")?;
        if !st.success() {
            bail!("python3 -m venv failed ({st}); python3-venv is needed");
        }
        let st = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "-q",
                &format!("cargo-zigbuild=={ZIGBUILD_VERSION}"),
            ])
            .status()
            .context("running pip")?;
        if !st.success() {
            bail!("pip install cargo-zigbuild failed ({st})");
        }
    }
    Ok(())
}

/// The venv holding cargo-zigbuild and zig; kept outside the work tree so a fresh clone
/// (CI) reuses it.
fn zigbuild_venv() -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    Path::new(&home).join(".local/share/percpu-trace/zigbuild")
}

/// PATH with the cargo-zigbuild venv first, for `cargo zigbuild`.
pub fn zigbuild_path() -> String {
    format!(
        "{}:{}",
        zigbuild_venv().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// True when `tool --version` runs and names `version`.
fn tool_has_version(tool: &str, version: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(version))
        .unwrap_or(false)
}

fn apt(args: &[&str]) -> Result<()> {
    let mut cmd = if is_root() {
        Command::new("apt-get")
    } else {
        let mut c = Command::new("sudo");
        c.arg("apt-get");
        c
    };
    let st = cmd
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get (is this Debian?)")?;
    if !st.success() {
        bail!(
            "apt-get {} failed ({st}); check the apt sources and network access to deb.debian.org",
            args.join(" ")
        );
    }
    Ok(())
}

fn bpf_linker_ok() -> bool {
    let home = std::env::var("CARGO_HOME")
        .or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.cargo")))
        .unwrap_or_default();
    let linker = Path::new(&home).join("bin/bpf-linker");
    Command::new(linker)
        .arg("--version")
        .output()
        .map(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        })
        .unwrap_or(false)
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
