//! Builds the eBPF object from `percpu-trace-ebpf` and leaves it in OUT_DIR for
//! `include_bytes_aligned!`, so the binary is self-contained.
//!
//! The eBPF crate needs `-Z build-std=core` for bpfel-unknown-none, which only Debian's
//! rustc-web with its matching rust-web-src can do here (see ../shared/TOOLCHAIN.md);
//! `cargo xtask setup` installs both and bpf-linker.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

const BPF_RUSTC: &str = "/usr/bin/rustc";

fn main() -> Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.parent().context("workspace root")?.to_path_buf();
    let ebpf_dir = root.join("percpu-trace-ebpf");
    for p in [
        ebpf_dir.join("src"),
        ebpf_dir.join("Cargo.toml"),
        root.join("percpu-trace-common/src"),
        root.join("percpu-trace-common/Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-env-changed=PERCPU_TRACE_BPF_OBJECT");

    let out = PathBuf::from(env::var("OUT_DIR")?).join("percpu-trace.bpf.o");
    // An escape hatch for packagers who build the object elsewhere.
    if let Ok(prebuilt) = env::var("PERCPU_TRACE_BPF_OBJECT") {
        std::fs::copy(&prebuilt, &out).with_context(|| format!("copying {prebuilt}"))?;
    } else {
        build_object(&root, &out)?;
    }
    version(&root, &out)
}

/// `--version`: the crate version, the git commit it was built from and the embedded eBPF
/// object's SHA-256 (prefix), so a bug report names exactly what ran. `PERCPU_TRACE_GIT`
/// overrides the commit for builds outside a git checkout (distribution packages).
fn version(root: &Path, obj: &Path) -> Result<()> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(std::fs::read(obj)?);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rerun-if-env-changed=PERCPU_TRACE_GIT");
    let commit = match env::var("PERCPU_TRACE_GIT") {
        Ok(c) => c,
        Err(_) => {
            let git = |args: &[&str]| -> Option<String> {
                let o = Command::new("git")
                    .current_dir(root)
                    .args(args)
                    .output()
                    .ok()?;
                o.status
                    .success()
                    .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
            };
            // Rebuild when HEAD moves: HEAD itself and the branch it points to.
            for p in [
                git(&["rev-parse", "--git-path", "HEAD"]),
                git(&["symbolic-ref", "-q", "HEAD"])
                    .and_then(|r| git(&["rev-parse", "--git-path", &r])),
                git(&["rev-parse", "--git-path", "packed-refs"]),
            ]
            .into_iter()
            .flatten()
            {
                let p = root.join(p);
                if p.exists() {
                    println!("cargo:rerun-if-changed={}", p.display());
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!(
        "cargo:rustc-env=PERCPU_TRACE_VERSION={} (git {commit}, eBPF object sha256 {})",
        env::var("CARGO_PKG_VERSION")?,
        &hex[..16]
    );
    Ok(())
}

/// Builds the eBPF crate for the target's architecture and copies the object to `out`.
fn build_object(root: &Path, out: &Path) -> Result<()> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH")?;
    let endian = env::var("CARGO_CFG_TARGET_ENDIAN")?;
    let bpf_target = if endian == "big" {
        "bpfeb-unknown-none"
    } else {
        "bpfel-unknown-none"
    };
    check_toolchain()?;

    let target_root = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target_dir = target_root.join(format!("bpf-{arch}"));
    let rustflags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".into(),
        "-Clink-arg=--btf".into(),
    ]
    .join("\x1f");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--package",
            "percpu-trace-ebpf",
            "--release",
            "-Z",
            "build-std=core",
        ])
        .args(["--target", bpf_target])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC", BPF_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env("PATH", path_with_cargo_bin());
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    // What configures the outer build's target toolchain must not reach this one: with
    // cargo-zigbuild's linker and unstable target-applies-to-host settings inherited, the
    // object's crate hashes (in its debug info) differed from the development build's, so
    // the shipped binary would not embed the very object the tests load.
    for (var, _) in env::vars_os() {
        let name = var.to_string_lossy();
        if [
            "CARGO_TARGET_",
            "CARGO_UNSTABLE_",
            "CARGO_ZIGBUILD",
            "__CARGO_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || name == "RUSTC_LINKER"
        {
            cmd.env_remove(&var);
        }
    }
    let status = cmd.status().context("running cargo for the eBPF crate")?;
    if !status.success() {
        bail!("building percpu-trace-ebpf failed ({status}); run `cargo xtask setup` if the toolchain is missing");
    }
    let obj = target_dir.join(bpf_target).join("release/percpu-trace");
    std::fs::copy(&obj, out).with_context(|| format!("copying {}", obj.display()))?;
    Ok(())
}

fn check_toolchain() -> Result<()> {
    if !Path::new(BPF_RUSTC).exists() || !Path::new("/usr/lib/rustlib/src/rust/library").exists() {
        bail!("Debian's rustc-web and rust-web-src are needed to build the eBPF object: run `cargo xtask setup`");
    }
    let linker_ok = Command::new("bpf-linker")
        .arg("--version")
        .env("PATH", path_with_cargo_bin())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !linker_ok {
        bail!("bpf-linker is not installed: run `cargo xtask setup`");
    }
    Ok(())
}

/// PATH with ~/.cargo/bin, where `cargo install` puts bpf-linker.
fn path_with_cargo_bin() -> String {
    let path = env::var("PATH").unwrap_or_default();
    let home = env::var("CARGO_HOME")
        .ok()
        .or_else(|| env::var("HOME").ok().map(|h| format!("{h}/.cargo")))
        .unwrap_or_default();
    format!("{home}/bin:{path}")
}
