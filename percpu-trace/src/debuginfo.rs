//! Source lines at `report` time: finds the debug vmlinux of the recorded kernel by its
//! build id, refuses one of another build, and adds `file:line` and inlined calls to the
//! recorded frames (as `scripts/decode_stacktrace.sh` and syzbot print them).
//!
//! A recording keeps each frame as the kernel's `%pS` (`function+0xoff/0xlen`) and its
//! running address. The KASLR offset is measured on the frames themselves (running address
//! minus offset minus the function's address in the vmlinux, for names that are unique
//! there), so no kallsyms of the traced host is needed and any machine with the debug
//! file can do it. A frame whose DWARF function is not its recorded function gets no line:
//! a wrong line is worse than none. Module frames are looked up in the module's own debug
//! file ([`crate::module_debug`]).
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use blazesym::{inspect, symbolize};

use crate::event::{Frame, InlinedFrame};

/// Stack id to frames, as recordings keep them (the report's `StackTable`; named here so
/// this file does not import the report that uses it).
pub type StackTable = std::collections::BTreeMap<u32, Vec<Frame>>;

/// Where the debug vmlinux was found, and whether its build id was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugFile {
    /// The file.
    pub path: PathBuf,
    /// Its build id matches the recorded kernel's (false: the recording has none).
    pub verified: bool,
}

/// The build id of an ELF file, lowercase hex (`None`: the file has none): the GNU note
/// in its SHT_NOTE sections. Read here rather than with blazesym's `read_elf_build_id`,
/// which on Debian's 7.2.13 vmlinux returns 8 bytes of another note (`00000080ffffffff`;
/// the kernel's `.notes` section holds Xen and Linux notes besides the build id).
pub fn file_build_id(path: &Path) -> Result<Option<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let bad = || anyhow::anyhow!("{}: not a 64-bit little-endian ELF file", path.display());
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut eh = [0u8; 64];
    f.read_exact(&mut eh).map_err(|_| bad())?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return Err(bad());
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let (shoff, shentsize, shnum) = (u64_at(&eh, 0x28), u16_at(&eh, 0x3a), u16_at(&eh, 0x3c));
    if shentsize != 64 {
        return Err(bad());
    }
    let mut shdrs = vec![0u8; usize::from(shnum) * 64];
    f.seek(SeekFrom::Start(shoff))?;
    f.read_exact(&mut shdrs).map_err(|_| bad())?;
    const SHT_NOTE: u32 = 7;
    for sh in shdrs.chunks_exact(64) {
        let (ty, off, size) = (u32_at(sh, 4), u64_at(sh, 0x18), u64_at(sh, 0x20));
        // Note sections are small; a huge one is a corrupt header.
        if ty != SHT_NOTE || size > 1 << 20 {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(off))?;
        if f.read_exact(&mut notes).is_ok() {
            if let Some(id) = crate::kernel::identity::gnu_build_id(&notes) {
                return Ok(Some(id));
            }
        }
    }
    Ok(None)
}

/// The paths a debug vmlinux is looked for, in order: by build id
/// (`/usr/lib/debug/.build-id/xx/yyyy.debug`), then by release
/// (`/usr/lib/debug/boot/vmlinux-<release>`, Debian's `-dbg` package), under `root`.
pub fn candidates(root: &Path, release: Option<&str>, build_id: Option<&str>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(id) = build_id.filter(|id| id.len() > 2) {
        v.push(root.join(format!(
            "usr/lib/debug/.build-id/{}/{}.debug",
            &id[..2],
            &id[2..]
        )));
    }
    if let Some(r) = release {
        v.push(root.join(format!("usr/lib/debug/boot/vmlinux-{r}")));
    }
    v
}

/// Checks `path` against the recorded build id. Errors are one line: another build's
/// file is refused, never used.
pub fn check(path: &Path, recorded: Option<&str>) -> Result<DebugFile> {
    let Some(want) = recorded else {
        return Ok(DebugFile {
            path: path.to_path_buf(),
            verified: false,
        });
    };
    match file_build_id(path)? {
        Some(have) if have == want => Ok(DebugFile {
            path: path.to_path_buf(),
            verified: true,
        }),
        Some(have) => bail!(
            "{}: build id {have} is not the recorded kernel's {want}: refused (a debug file \
             of another build gives wrong lines)",
            path.display()
        ),
        None => bail!(
            "{}: no build id, cannot check it against the recorded kernel's {want}: refused",
            path.display()
        ),
    }
}

/// Finds the debug file: `explicit` (`--debug-vmlinux`, an error when refused) or the
/// first candidate that exists; an automatic candidate of another build is skipped, and
/// said in the returned notes.
pub fn find(
    explicit: Option<&Path>,
    root: &Path,
    release: Option<&str>,
    build_id: Option<&str>,
) -> Result<(Option<DebugFile>, Vec<String>)> {
    if let Some(p) = explicit {
        return Ok((Some(check(p, build_id)?), Vec::new()));
    }
    let mut notes = Vec::new();
    for c in candidates(root, release, build_id) {
        if !c.exists() {
            continue;
        }
        match check(&c, build_id) {
            Ok(d) => return Ok((Some(d), notes)),
            Err(e) => notes.push(format!("{e:#}")),
        }
    }
    Ok((None, notes))
}

/// The one line a report prints when there is no debug file: how to get one.
pub fn how_to_get(release: Option<&str>, build_id: Option<&str>) -> String {
    let pkg = match release {
        Some(r) => format!("linux-image-{r}-dbg"),
        None => "linux-image-<release>-dbg".to_string(),
    };
    let by_id = build_id
        .map(|id| format!(" (build id {id})"))
        .unwrap_or_default();
    format!(
        "no debug vmlinux of this kernel{by_id} here: install the distribution's debug \
         package ({pkg} on Debian) or pass --debug-vmlinux FILE for file:line"
    )
}

/// Strips the build directory from a DWARF path so it reads as in the kernel tree:
/// `/build/linux/debian/build/build_amd64_none_amd64/mm/percpu.c` -> `mm/percpu.c`.
pub fn tree_path(p: &str) -> String {
    if let Some(i) = p.find("debian/build/build_") {
        if let Some(j) = p[i + "debian/build/build_".len()..].find('/') {
            return p[i + "debian/build/build_".len() + j + 1..].to_string();
        }
    }
    // Other builds: the path below the first top-level kernel directory.
    const TOP: &[&str] = &[
        "arch", "block", "crypto", "drivers", "fs", "include", "init", "io_uring", "ipc", "kernel",
        "lib", "mm", "net", "security", "sound", "virt",
    ];
    if p.starts_with('/') {
        let parts: Vec<&str> = p.split('/').collect();
        if let Some(i) = parts.iter().position(|c| TOP.contains(c)) {
            return parts[i..].join("/");
        }
    }
    p.to_string()
}

/// The address in `elf` (`file`, for errors) of each of `names` that is unique there:
/// link-time for a vmlinux, section offset for a module.
pub fn unique_addresses(
    elf: inspect::source::Elf,
    names: &[&str],
    file: &Path,
) -> Result<HashMap<String, u64>> {
    let inspector = inspect::Inspector::new();
    let found = inspector
        .lookup(&inspect::source::Source::Elf(elf), names)
        .with_context(|| format!("reading symbols of {}", file.display()))?;
    Ok(names
        .iter()
        .zip(&found)
        .filter(|(_, v)| v.len() == 1)
        .map(|(n, v)| (n.to_string(), v[0].addr))
        .collect())
}

/// Adds source lines to every vmlinux frame of `stacks` from the DWARF in `vmlinux`.
/// Returns how many frames got a line, and how many vmlinux frames there were.
pub fn annotate(stacks: &mut StackTable, vmlinux: &Path) -> Result<(usize, usize)> {
    let frames = || stacks.values().flatten().filter(|f| is_vmlinux(f));
    let mut names: Vec<&str> = frames().filter_map(|f| f.function.as_deref()).collect();
    names.sort_unstable();
    names.dedup();
    let link = unique_addresses(inspect::source::Elf::new(vmlinux), &names, vmlinux)?;
    let kaslr = kaslr_offset(frames(), &link);
    let ssrc = symbolize::source::Source::Elf(symbolize::source::Elf::new(vmlinux));
    let symbolizer = symbolize::Symbolizer::new();
    let (mut located, mut total) = (0, 0);
    for f in stacks.values_mut().flatten().filter(|f| is_vmlinux(f)) {
        total += 1;
        let Some(func) = f.function.clone() else {
            continue;
        };
        let vaddr = match (kaslr, link.get(&func)) {
            (Some(k), _) if f.addr != 0 => f.addr.wrapping_sub(k),
            (_, Some(a)) => a + f.offset,
            _ => continue,
        };
        if locate(&symbolizer, &ssrc, vaddr, &func, f) {
            located += 1;
        }
    }
    Ok((located, total))
}

fn is_vmlinux(f: &Frame) -> bool {
    f.module.is_none() && f.function.is_some()
}

/// The offset most frames agree on (running minus link-time address).
fn kaslr_offset<'a>(
    frames: impl Iterator<Item = &'a Frame>,
    link: &HashMap<String, u64>,
) -> Option<u64> {
    let mut votes: HashMap<u64, usize> = HashMap::new();
    for f in frames.filter(|f| f.addr != 0) {
        if let Some(a) = f.function.as_ref().and_then(|n| link.get(n)) {
            *votes
                .entry(f.addr.wrapping_sub(f.offset).wrapping_sub(*a))
                .or_default() += 1;
        }
    }
    votes
        .into_iter()
        .max_by_key(|(k, n)| (*n, *k))
        .map(|(k, _)| k)
}

/// Fills `f`'s file, line and inlined calls when the DWARF at `vaddr` is in `func` (also
/// for module frames, [`crate::module_debug`]).
pub(crate) fn locate(
    s: &symbolize::Symbolizer,
    src: &symbolize::source::Source<'_>,
    vaddr: u64,
    func: &str,
    f: &mut Frame,
) -> bool {
    let Ok(symbolize::Symbolized::Sym(sym)) =
        s.symbolize_single(src, symbolize::Input::VirtOffset(vaddr))
    else {
        return false;
    };
    if sym.name != func {
        return false;
    }
    if sym.code_info.is_none() {
        return false;
    }
    fill_frame(&sym, f);
    true
}

/// Copies a DWARF lookup's file:line (build directory stripped, [`tree_path`]) and inlined
/// calls into `f`: the one conversion for the live symbolizer and report-time annotation.
pub fn fill_frame(sym: &symbolize::Sym<'_>, f: &mut Frame) {
    if let Some(ci) = &sym.code_info {
        f.file = Some(tree_path(&ci.to_path().display().to_string()));
        f.line = ci.line;
    }
    f.inlined = sym
        .inlined
        .iter()
        .map(|i| InlinedFrame {
            function: i.name.to_string(),
            file: i
                .code_info
                .as_ref()
                .map(|c| tree_path(&c.to_path().display().to_string())),
            line: i.code_info.as_ref().and_then(|c| c.line),
        })
        .collect();
}

/// A frame as `decode_stacktrace.sh`/syzbot print it: the inlined calls first, innermost
/// first, each `function file:line [inline]`, then `function+0xoff/0xlen file:line`.
/// Without a source line, just the `%pS` form.
pub fn frame_lines(f: &Frame) -> Vec<String> {
    let loc = |file: &Option<String>, line: Option<u32>| match (file, line) {
        (Some(p), Some(l)) => format!(" {p}:{l}"),
        (Some(p), None) => format!(" {p}"),
        _ => String::new(),
    };
    let mut v: Vec<String> = f
        .inlined
        .iter()
        .rev()
        .map(|i| format!("{}{} [inline]", i.function, loc(&i.file, i.line)))
        .collect();
    v.push(format!("{f}{}", loc(&f.file, f.line)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_dirs_are_stripped() {
        assert_eq!(
            tree_path("/build/reproducible-path/linux-7.2.13/debian/build/build_amd64_none_amd64/mm/percpu.c"),
            "mm/percpu.c"
        );
        assert_eq!(
            tree_path("debian/build/build_amd64_none_amd64/include/linux/sched/mm.h"),
            "include/linux/sched/mm.h"
        );
        assert_eq!(tree_path("/home/me/src/linux/mm/percpu.c"), "mm/percpu.c");
        assert_eq!(tree_path("mm/percpu.c"), "mm/percpu.c");
    }

    #[test]
    fn inlined_frames_print_like_syzbot() {
        let f = Frame {
            addr: 1,
            function: Some("pcpu_alloc_noprof".into()),
            offset: 0x162,
            len: Some(0x8a0),
            file: Some("mm/percpu.c".into()),
            line: Some(1753),
            inlined: vec![
                InlinedFrame {
                    function: "pcpu_populate".into(),
                    file: Some("mm/percpu.c".into()),
                    line: Some(10),
                },
                InlinedFrame {
                    function: "inner".into(),
                    file: Some("include/x.h".into()),
                    line: Some(3),
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            frame_lines(&f),
            [
                "inner include/x.h:3 [inline]",
                "pcpu_populate mm/percpu.c:10 [inline]",
                "pcpu_alloc_noprof+0x162/0x8a0 mm/percpu.c:1753",
            ]
        );
    }

    #[test]
    fn candidates_by_build_id_then_release() {
        let c = candidates(Path::new("/"), Some("7.2.13+deb14-amd64"), Some("abcdef"));
        assert_eq!(
            c,
            [
                PathBuf::from("/usr/lib/debug/.build-id/ab/cdef.debug"),
                PathBuf::from("/usr/lib/debug/boot/vmlinux-7.2.13+deb14-amd64"),
            ]
        );
    }

    #[no_mangle]
    #[inline(never)]
    extern "C" fn percpu_trace_debuginfo_probe() -> u32 {
        std::hint::black_box(11)
    }

    /// This test binary stands in for a vmlinux: one of its functions, "running" at a
    /// made-up KASLR offset, gets its file:line; a frame whose recorded function is not the
    /// DWARF's at that address gets none, and module frames are left alone.
    #[test]
    fn frames_get_lines_with_the_offset_measured_on_them() {
        assert_eq!(percpu_trace_debuginfo_probe(), 11);
        let exe = std::env::current_exe().unwrap();
        let inspector = inspect::Inspector::new();
        let found = inspector
            .lookup(
                &inspect::source::Source::Elf(inspect::source::Elf::new(&exe)),
                &["percpu_trace_debuginfo_probe"],
            )
            .unwrap();
        let link = found[0][0].addr;
        let running = link + 0x2000_0000;
        let frame = |function: &str, module: Option<&str>| Frame {
            addr: running + 1,
            function: Some(function.into()),
            offset: 1,
            len: Some(0x10),
            module: module.map(Into::into),
            ..Default::default()
        };
        let mut t = StackTable::new();
        t.insert(
            1,
            vec![
                frame("percpu_trace_debuginfo_probe", None),
                frame("not_the_function_there", None),
                frame("percpu_trace_debuginfo_probe", Some("null_blk")),
            ],
        );
        assert_eq!(annotate(&mut t, &exe).unwrap(), (1, 2));
        let f = &t[&1];
        assert!(
            f[0].file
                .as_deref()
                .is_some_and(|p| p.ends_with("debuginfo.rs"))
                && f[0].line.is_some(),
            "{:?}",
            f[0]
        );
        assert_eq!(f[1].file, None, "a wrong line is worse than none");
        assert_eq!(
            f[2].file, None,
            "module frames are not looked up in vmlinux"
        );
    }

    /// This test binary stands in for a debug file: its own build id is accepted, any
    /// other refused in one line.
    #[test]
    fn another_build_is_refused() {
        let exe = std::env::current_exe().unwrap();
        let Some(own) = file_build_id(&exe).unwrap() else {
            panic!("the test binary has no build id; cannot test refusal");
        };
        let blazesym = blazesym::helper::read_elf_build_id(&exe).unwrap().unwrap();
        assert_eq!(own, crate::kernel::identity::hex(&blazesym));
        assert!(file_build_id(Path::new("/proc/self/status")).is_err());
        assert!(check(&exe, Some(&own)).unwrap().verified);
        let other = "00".repeat(20);
        let e = check(&exe, Some(&other)).unwrap_err().to_string();
        assert!(e.contains("refused") && e.contains(&other), "{e}");
        assert_eq!(e.lines().count(), 1);
        // An explicit file of another build is an error; an automatic one a note.
        assert!(find(Some(&exe), Path::new("/"), None, Some(&other)).is_err());
        assert!(!check(&exe, None).unwrap().verified);
    }
}
