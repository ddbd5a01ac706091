//! Source lines for module frames at `report` time: finds each module's debug file by the
//! module's recorded build id (`/usr/lib/debug/.build-id/xx/yyyy.debug`) or by the
//! distribution's layout (`/usr/lib/debug/lib/modules/<release>/kernel/.../<mod>.ko`,
//! Debian's `-dbg` package; `<mod>.ko.debug` elsewhere), refuses one of another build, and
//! adds `file:line` and inlined calls like vmlinux frames ([`crate::debuginfo`]).
//!
//! A module's debug file is a relocatable object: its functions sit at offsets in their
//! text section, which is what blazesym reads (it applies the file's DWARF relocations).
//! A frame's address in it is the function's symbol value plus the recorded offset; the
//! running address is not used (a module loads anywhere). As for vmlinux, a frame whose
//! DWARF function is not its recorded function gets no line.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
};

use anyhow::Result;
use blazesym::{inspect, symbolize};

use crate::{
    debuginfo::{self, StackTable},
    event::Frame,
};

/// Pseudo-modules of kallsyms that have no debug file (`[bpf]`: BPF programs and
/// trampolines).
const NOT_MODULES: &[&str] = &["bpf", "kprobe", "ftrace"];

/// How many directories deep the layout search goes below `lib/modules/<release>`
/// (`kernel/drivers/block/null_blk/null_blk.ko` is 5).
const MAX_DEPTH: usize = 8;

/// Adds source lines to the frames of every module in `stacks`; returns one note per
/// module (`ext4: 8 of 8 frame(s) from FILE (build id matches)`, or why it has none).
/// `recorded`: module name -> build id from the recording (empty for older ones).
pub fn annotate(
    stacks: &mut StackTable,
    root: &Path,
    release: Option<&str>,
    recorded: &BTreeMap<String, String>,
) -> Vec<String> {
    let modules: BTreeSet<String> = stacks
        .values()
        .flatten()
        .filter_map(|f| f.module.clone())
        .filter(|m| !NOT_MODULES.contains(&m.as_str()))
        .collect();
    if modules.is_empty() {
        return Vec::new();
    }
    let layout = release.map(|r| layout_files(root, r)).unwrap_or_default();
    modules
        .iter()
        .map(|m| {
            let want = recorded.get(m).map(String::as_str);
            let found = find(root, m, want, &layout);
            let note = match found {
                Found::File(file) => match annotate_module(stacks, m, &file.path) {
                    Ok((located, total)) => format!(
                        "{located} of {total} frame(s) from {} ({})",
                        file.path.display(),
                        if file.verified {
                            "build id matches"
                        } else {
                            "NOT checked: the recording has no build id for it"
                        }
                    ),
                    Err(e) => format!("{e:#}"),
                },
                Found::Refused(why) => why,
                Found::None => missing(root, release, m, want),
            };
            format!("{m}: {note}")
        })
        .collect()
}

enum Found {
    File(debuginfo::DebugFile),
    /// Every candidate was of another build (or had no build id): one line.
    Refused(String),
    None,
}

/// The debug file of module `m`: by recorded build id, then by the layout; a candidate
/// of another build is refused, never used.
fn find(root: &Path, m: &str, want: Option<&str>, layout: &HashMap<String, PathBuf>) -> Found {
    let mut candidates = Vec::new();
    if let Some(id) = want.filter(|id| id.len() > 2) {
        candidates.push(root.join(format!(
            "usr/lib/debug/.build-id/{}/{}.debug",
            &id[..2],
            &id[2..]
        )));
    }
    candidates.extend(layout.get(&normalize(m)).cloned());
    let mut refused = Vec::new();
    for c in candidates.into_iter().filter(|c| c.exists()) {
        match debuginfo::check(&c, want) {
            Ok(d) => return Found::File(d),
            Err(e) => refused.push(format!("{e:#}").replace("recorded kernel", "recorded module")),
        }
    }
    if refused.is_empty() {
        Found::None
    } else {
        Found::Refused(refused.join("; "))
    }
}

/// The one line for a module without a debug file here: where it was looked for.
fn missing(root: &Path, release: Option<&str>, m: &str, want: Option<&str>) -> String {
    let r = release.unwrap_or("<release>");
    let by_id = want
        .map(|id| format!(" (build id {id})"))
        .unwrap_or_default();
    format!(
        "no debug file{by_id} under {}: install the distribution's debug package \
         (linux-image-{r}-dbg on Debian has lib/modules/{r}/kernel/.../{m}.ko)",
        root.join("usr/lib/debug").display()
    )
}

/// Module names use `_` where file names may use `-` (`dm-mod.ko` is `dm_mod`).
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Every `<mod>.ko` / `<mod>.ko.debug` below `usr/lib/debug/lib/modules/<release>`, by
/// normalized module name (the first found wins; a distribution ships one per name).
fn layout_files(root: &Path, release: &str) -> HashMap<String, PathBuf> {
    let mut out = HashMap::new();
    let mut dirs = vec![(
        root.join(format!("usr/lib/debug/lib/modules/{release}")),
        0usize,
    )];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            // Never follow a symlinked directory (no loops); files may be links.
            let Ok(ty) = e.file_type() else { continue };
            if ty.is_dir() {
                if depth < MAX_DEPTH {
                    dirs.push((path, depth + 1));
                }
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(m) = name
                .strip_suffix(".ko.debug")
                .or_else(|| name.strip_suffix(".ko"))
            {
                out.entry(normalize(m)).or_insert(path);
            }
        }
    }
    out
}

/// Adds source lines to the frames of module `m` from its debug file; returns how many
/// got one, and how many frames of `m` there were.
fn annotate_module(stacks: &mut StackTable, m: &str, file: &Path) -> Result<(usize, usize)> {
    let in_module = |f: &Frame| f.module.as_deref() == Some(m) && f.function.is_some();
    let mut names: Vec<&str> = stacks
        .values()
        .flatten()
        .filter(|f| in_module(f))
        .filter_map(|f| f.function.as_deref())
        .collect();
    names.sort_unstable();
    names.dedup();
    // The symbol table, not DWARF: in a relocatable object blazesym's DWARF lookup by
    // name gives some functions address 0 (seen on Debian's ext4.ko).
    let mut elf = inspect::source::Elf::new(file);
    elf.debug_syms = false;
    let link = debuginfo::unique_addresses(elf, &names, file)?;
    let ssrc = symbolize::source::Source::Elf(symbolize::source::Elf::new(file));
    let symbolizer = symbolize::Symbolizer::new();
    let (mut located, mut total) = (0, 0);
    for f in stacks.values_mut().flatten().filter(|f| in_module(f)) {
        total += 1;
        let Some(func) = f.function.clone() else {
            continue;
        };
        let Some(start) = link.get(&func) else {
            continue;
        };
        if debuginfo::locate(&symbolizer, &ssrc, start + f.offset, &func, f) {
            located += 1;
        }
    }
    Ok((located, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(module: &str, function: &str) -> Frame {
        Frame {
            addr: 0xffff_ffff_c000_1000,
            function: Some(function.into()),
            offset: 1,
            len: Some(0x10),
            module: Some(module.into()),
            ..Default::default()
        }
    }

    /// Without a debug file a module is named in one line saying where it was looked for;
    /// BPF programs are not modules and are not named.
    #[test]
    fn a_missing_module_debug_file_is_one_line() {
        let root = std::env::temp_dir().join(format!("pt-nomod-{}", std::process::id()));
        let mut t = StackTable::new();
        t.insert(1, vec![frame("ext4", "ext4_map_blocks"), frame("bpf", "x")]);
        let notes = annotate(&mut t, &root, Some("7.2.13+deb14-amd64"), &BTreeMap::new());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("ext4: no debug file under "),
            "{notes:?}"
        );
        assert!(notes[0].contains("linux-image-7.2.13+deb14-amd64-dbg"));
        assert_eq!(t[&1][0].file, None);
    }

    /// A module debug file of another build (here this test binary, placed where Debian
    /// puts `null_blk.ko`) is refused by build id in one line, and gives no line.
    #[test]
    fn a_module_debug_file_of_another_build_is_refused() {
        let root = std::env::temp_dir().join(format!("pt-othermod-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir =
            root.join("usr/lib/debug/lib/modules/7.2.13+deb14-amd64/kernel/drivers/block/null_blk");
        std::fs::create_dir_all(&dir).unwrap();
        let exe = std::env::current_exe().unwrap();
        std::os::unix::fs::symlink(&exe, dir.join("null_blk.ko")).unwrap();
        let mut t = StackTable::new();
        t.insert(1, vec![frame("null_blk", "null_queue_rq")]);
        let other = "22".repeat(20);
        let recorded = BTreeMap::from([("null_blk".to_string(), other.clone())]);
        let notes = annotate(&mut t, &root, Some("7.2.13+deb14-amd64"), &recorded);
        assert_eq!(notes.len(), 1);
        let n = &notes[0];
        assert!(n.starts_with("null_blk: ") && n.contains("refused"), "{n}");
        assert!(n.contains(&other) && n.contains("recorded module"), "{n}");
        assert_eq!(n.lines().count(), 1);
        assert_eq!(t[&1][0].file, None, "no line from a refused file");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn layout_names_are_normalized() {
        assert_eq!(normalize("dm-mod"), "dm_mod");
        assert_eq!(normalize("null_blk"), "null_blk");
    }
}
