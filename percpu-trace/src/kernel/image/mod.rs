//! Offline discovery: the same [`Kernel`] facts and fix verdict as live discovery, read from
//! a kernel package or image instead of the running machine ("one analysis, many sources").
//! `unpack` finds the image in a file, `layout` maps it, `kallsyms` decodes the kernel's own
//! symbol table from it (or `debug_vmlinux` gives symbols and code from the user's debug
//! vmlinux of the same build); this file builds the same `Inputs` `gather` builds and runs the same
//! `analyze`. No root is needed: nothing here touches the running kernel.
pub mod debug_vmlinux;
mod decompress;
pub mod kallsyms;
pub mod layout;
pub mod unpack;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    analyze::{analyze, Inputs},
    btf::TypeSource,
    btf_file::BtfFile,
    gather::{function_starts, read_fix_code},
    symbols::{self, SymbolTable},
    tracefs::Tracefs,
    BtfStatus, Fentry, Kernel, KernelMemory, Privileges, Support,
};

/// What the user gave besides the image.
#[derive(Clone, Debug, Default)]
pub struct ImageOptions {
    /// System.map to take symbol addresses from instead of the image's kallsyms.
    pub system_map: Option<PathBuf>,
    /// BTF (raw, or an ELF with .BTF) instead of the image's own.
    pub btf: Option<PathBuf>,
    /// Debug vmlinux of the same build: symbols and function code from it.
    pub debug_vmlinux: Option<PathBuf>,
}

/// One kernel read offline.
pub struct Offline {
    /// The file given.
    pub file: PathBuf,
    /// (Package, Version) when the file is a Debian package.
    pub package: Option<(String, String)>,
    /// How the image was reached inside the file, and how its symbols were read.
    pub steps: Vec<String>,
    /// The facts, from the same analysis as live discovery.
    pub kernel: Kernel,
}

/// Said when the image's kallsyms cannot be decoded. `__ksymtab` is no fallback for this
/// analysis (checked in Debian's -dbg System.maps of 6.1 and 7.x, amd64 and arm64): of the
/// functions whose code it reads, only `pcpu_alloc_noprof` (7.x) and 6.1's
/// `__alloc_percpu_gfp` (a wrapper of the static `pcpu_alloc`) are exported, never the
/// static `pcpu_populate_chunk`, and an export gives where a function starts, not where it
/// ends (the scans would run into the functions after it).
pub const NO_SYMBOLS: &str = "no symbol addresses, so the facts read from code (the \
     regression by code, populate-gfp, backing-noio) are unknown; BTF facts stand; \
     give --system-map or --debug-vmlinux";

/// Reads `file` and analyses the kernel in it. Err: one line saying why not.
pub fn inspect(file: &Path, opts: &ImageOptions) -> Result<Offline, String> {
    let un = unpack::open(file)?;
    let mut steps = un.steps;
    let image = layout::Image::parse(un.image)?;
    steps.push(image.format.clone());
    let (release, version) = image
        .banner()
        .ok_or("no \"Linux version\" banner in the image: not a Linux kernel")?;
    let (btf, btf_status): (Box<dyn TypeSource>, BtfStatus) = match &opts.btf {
        Some(p) => (
            Box::new(BtfFile::open(p).map_err(|e| format!("{e:#}"))?),
            BtfStatus {
                path: Some(p.clone()),
                from_user: true,
                error: None,
            },
        ),
        None => {
            let raw = image.btf().ok_or(
                "the kernel has no BTF (.BTF section): built without CONFIG_DEBUG_INFO_BTF; give --btf",
            )?;
            let b = BtfFile::from_bytes(raw.to_vec()).map_err(|e| format!("image BTF: {e:#}"))?;
            (
                Box::new(b),
                BtfStatus {
                    path: Some(PathBuf::from(format!("{} (.BTF)", file.display()))),
                    from_user: false,
                    error: None,
                },
            )
        }
    };
    let dbg = match &opts.debug_vmlinux {
        Some(p) => {
            let d = debug_vmlinux::DebugVmlinux::open(p)?;
            let how = d.matches(
                &image.arch,
                &image.build_ids(),
                image.banner_text().as_deref(),
            )?;
            steps.push(format!(
                "symbols and code from {} ({} symbols): {how}",
                p.display(),
                d.count
            ));
            Some(d)
        }
        None => None,
    };
    let text = match (&opts.system_map, &dbg) {
        (Some(p), _) => {
            let t = std::fs::read_to_string(p)
                .map_err(|e| format!("--system-map {}: {e}", p.display()))?;
            steps.push(format!("symbols from {}", p.display()));
            t
        }
        (None, Some(d)) => d.symbols.clone(),
        (None, None) => {
            let (d, map) = image.rodata();
            match kallsyms::decode(d, &map) {
                Ok(k) => {
                    steps.push(format!(
                        "kallsyms decoded from the image: {} symbols, {}",
                        k.symbols.len(),
                        k.mode.describe()
                    ));
                    symbol_text(&k.symbols)
                }
                // The BTF facts stand without symbols; the code facts become unknown
                // (analyze says so per patch), never guessed.
                Err(e) => {
                    steps.push(format!("{e}: {NO_SYMBOLS}"));
                    String::new()
                }
            }
        }
    };
    let table = Arc::new(SymbolTable::parse(&text));
    let starts = function_starts(&text);
    drop(text);
    let arch = image.arch.clone();
    let (mem, source): (Box<dyn KernelMemory>, &str) = match dbg {
        Some(d) => (
            Box::new(move |addr: u64, len: usize| d.read(addr, len)),
            "debug vmlinux text",
        ),
        None => (
            Box::new(move |addr: u64, len: usize| image.read(addr, len)),
            "image text",
        ),
    };
    let mut fix_code = read_fix_code(&starts, &table, &arch, &mut Ok(mem));
    // The same reader as live; the bytes came from the image (or the debug vmlinux), and
    // the evidence says so.
    let read = [fix_code.pcpu_alloc.as_mut(), fix_code.populate.as_mut()];
    for f in read
        .into_iter()
        .flatten()
        .chain(fix_code.map_pages.iter_mut())
    {
        f.source = source.into();
    }
    let offline = |what: &str| format!("offline image: {what} not probed");
    let inputs = Inputs {
        release,
        build: Some(version),
        fix_code,
        arch,
        privileges: Privileges::default(),
        btf: Some(btf),
        btf_status,
        kallsyms_path: file.to_path_buf(),
        kallsyms: Ok(table),
        kptr_restrict: None,
        system_map: Err("offline image: pcpu_alloc_mutex from the image's own symbols".into()),
        filter_functions: None,
        kprobe_blacklist: None,
        kprobes: Support {
            available: false,
            detail: offline("kprobes"),
        },
        fentry: Fentry::NotProbed {
            reason: offline("fentry"),
        },
        tracefs: Tracefs {
            path: None,
            mounted_by_us: false,
            error: Some(offline("tracefs")),
        },
        formats: None,
        lockdown: None,
        realtime: None,
    };
    let mut kernel = analyze(inputs);
    // Every piece of evidence names where it came from: here, the image.
    for p in &mut kernel.fix.patches {
        p.evidence = format!(
            "image: {}",
            p.evidence.replace("uname -v ", "linux_banner ")
        );
    }
    if let Some(vm) = kernel
        .fix
        .patches
        .iter()
        .find(|p| p.id == super::PatchId::VmAreasGfp)
    {
        kernel.fix.detail = vm.evidence.clone();
    }
    Ok(Offline {
        file: file.to_path_buf(),
        package: un.package,
        steps,
        kernel,
    })
}

/// kallsyms text (`addr type name` lines) for the one parser, `symbols::kallsyms_lines`.
pub fn symbol_text(syms: &[kallsyms::Symbol]) -> String {
    let mut t = String::with_capacity(syms.len() * 40);
    for s in syms {
        let _ = writeln!(t, "{:016x} {} {}", s.addr, s.kind, s.name);
    }
    t
}

/// The files to read for `check --kernel`: each FILE, and in each directory the files that
/// look like kernels (Debian image packages, vmlinuz/vmlinux/Image files), sorted; -dbg,
/// headers and modules packages are skipped.
pub fn kernel_files(args: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let rd = std::fs::read_dir(a).map_err(|e| format!("{}: {e}", a.display()))?;
            let mut found: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && looks_like_kernel(p))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(format!("{}: no kernel package or image in it", a.display()));
            }
            out.extend(found);
        } else {
            out.push(a.clone());
        }
    }
    Ok(out)
}

fn looks_like_kernel(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if let Some(stem) = name.strip_suffix(".deb") {
        let pkg = stem.split('_').next().unwrap_or(stem);
        return (pkg.starts_with("linux-image-") || pkg.starts_with("linux-binary-"))
            && !pkg.ends_with("-dbg");
    }
    ["vmlinuz", "vmlinux", "bzImage", "Image"]
        .iter()
        .any(|k| name.starts_with(k))
}

/// Where System.map symbols agree with the decoded ones: (agreeing, differing names).
pub fn compare_with_system_map(
    decoded: &str,
    system_map: &str,
    names: &[&str],
) -> (usize, Vec<String>) {
    let pick = |text: &str| -> Vec<(String, u64)> {
        symbols::kallsyms_lines(text)
            .filter(|l| names.contains(&l.name))
            .map(|l| (l.name.to_string(), l.addr))
            .collect()
    };
    let (a, b) = (pick(decoded), pick(system_map));
    let mut agree = 0;
    let mut differ = Vec::new();
    for n in names {
        let x: Vec<u64> = a.iter().filter(|(m, _)| m == n).map(|(_, v)| *v).collect();
        let y: Vec<u64> = b.iter().filter(|(m, _)| m == n).map(|(_, v)| *v).collect();
        if !x.is_empty() && x == y {
            agree += 1;
        } else {
            differ.push(format!("{n}: image {x:x?}, System.map {y:x?}"));
        }
    }
    (agree, differ)
}

/// The detail under a single kernel's line: how it was read, each patch's state and
/// evidence, and that no attach plan was made.
pub fn detail_text(o: &Offline) -> String {
    let mut t = String::new();
    for s in &o.steps {
        let _ = writeln!(t, "  read: {s}");
    }
    for p in &o.kernel.fix.patches {
        let _ = writeln!(t, "  {:<13} {:<8} {}", p.id.id(), p.state.id(), p.evidence);
    }
    let _ = writeln!(t, "  plan: {}", super::check::OFFLINE_PLAN);
    t
}

/// One line per kernel: file, release, arch, verdict, each patch's state.
pub fn summary_line(o: &Offline) -> String {
    let k = &o.kernel;
    let patches: Vec<String> = k
        .fix
        .patches
        .iter()
        .map(|p| format!("{} {}", p.id.id(), p.state.id()))
        .collect();
    format!(
        "{}: Linux {} {}: {} ({})",
        o.file.display(),
        k.release,
        k.arch,
        k.fix.verdict,
        patches.join(", ")
    )
}
