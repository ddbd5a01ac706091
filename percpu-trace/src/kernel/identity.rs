//! Which exact kernel build was traced: its GNU build id (`/sys/kernel/notes`), its taint
//! flags (`/proc/sys/kernel/tainted`, decoded as the kernel prints them) and the config
//! options that change the analysis (`/boot/config-<release>` or `/proc/config.gz`).
//! A maintainer asks for these before reading a report; the build id is also what picks
//! (and refuses) a debug vmlinux at report time ([`crate::report::debuginfo`]).
use std::{collections::BTreeMap, io::Read, path::Path};

use serde::{Deserialize, Serialize};

/// The config options a report shows: each changes what the tool can see or what a
/// finding means (PREEMPT_RT changes the mutex, KASAN/LOCKDEP the timing and lockdep's own
/// view, MEMCG the charged allocations, KALLSYMS_ALL/BTF/kprobes the attach plan).
pub const CONFIG_KEYS: &[&str] = &[
    "CONFIG_PREEMPT_RT",
    "CONFIG_KASAN",
    "CONFIG_MEMCG",
    "CONFIG_LOCKDEP",
    "CONFIG_PROVE_LOCKING",
    "CONFIG_KALLSYMS_ALL",
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_DEBUG_INFO_BTF_MODULES",
    "CONFIG_KPROBES",
    "CONFIG_KPROBE_EVENTS",
    "CONFIG_BPF_EVENTS",
    "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS",
];

/// The kernel's taint flags in bit order (kernel/panic.c `taint_flags`): the letter when
/// set, and the name its verbose form prints.
const TAINT_FLAGS: &[(char, &str)] = &[
    ('P', "PROPRIETARY_MODULE"),
    ('F', "FORCED_MODULE"),
    ('S', "CPU_OUT_OF_SPEC"),
    ('R', "FORCED_RMMOD"),
    ('M', "MACHINE_CHECK"),
    ('B', "BAD_PAGE"),
    ('U', "USER"),
    ('D', "DIE"),
    ('A', "OVERRIDDEN_ACPI_TABLE"),
    ('W', "WARN"),
    ('C', "CRAP"),
    ('I', "FIRMWARE_WORKAROUND"),
    ('O', "OOT_MODULE"),
    ('E', "UNSIGNED_MODULE"),
    ('L', "SOFTLOCKUP"),
    ('K', "LIVEPATCH"),
    ('X', "AUX"),
    ('T', "RANDSTRUCT"),
    ('N', "TEST"),
    ('J', "FWCTL"),
];

/// The config options of [`CONFIG_KEYS`] as read, and from where.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelConfig {
    /// The file read (`/boot/config-7.2.13+deb14-amd64`, `/proc/config.gz`).
    pub source: String,
    /// `CONFIG_X` -> `y`, `m`, a value, or `n` (unset or absent from the file).
    pub options: BTreeMap<String, String>,
}

/// Build id, taint and config of the traced kernel; each `None` when it could not be read
/// on the traced host (a recording made before these facts has no `KernelIdentity` at all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelIdentity {
    /// GNU build id, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// `/proc/sys/kernel/tainted` at the start of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taint: Option<u64>,
    /// The analysis-relevant config options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<KernelConfig>,
    /// GNU build id of each module loaded when the run started
    /// (`/sys/module/<mod>/notes/.note.gnu.build-id`), by module name: what picks (and
    /// refuses) a module's debug file at report time. Empty in older recordings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, String>,
}

impl KernelIdentity {
    /// What could not be read, for a report line ("build id", "taint", "config").
    pub fn missing(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.build_id.is_none() {
            v.push("build id");
        }
        if self.taint.is_none() {
            v.push("taint");
        }
        if self.config.is_none() {
            v.push("config");
        }
        v
    }
}

/// Reads the identity of the running kernel under `root` (`/` on a live host).
pub fn read(root: &Path, release: &str) -> KernelIdentity {
    let build_id = std::fs::read(root.join("sys/kernel/notes"))
        .ok()
        .and_then(|b| gnu_build_id(&b));
    let taint = std::fs::read_to_string(root.join("proc/sys/kernel/tainted"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let boot = root.join(format!("boot/config-{release}"));
    let config = match std::fs::read_to_string(&boot) {
        Ok(text) => Some(parse_config(&format!("/boot/config-{release}"), &text)),
        Err(_) => read_config_gz(&root.join("proc/config.gz"))
            .map(|text| parse_config("/proc/config.gz", &text)),
    };
    KernelIdentity {
        build_id,
        taint,
        config,
        modules: module_build_ids(&root.join("sys/module")),
    }
}

/// Most modules a header lists (a loaded kernel has a few hundred; the cap bounds a
/// header on a strange system).
const MAX_MODULES: usize = 4096;

/// The build id of every loaded module under `sys_module` (`/sys/module`): built-in
/// modules have no `notes` directory and are left out.
pub fn module_build_ids(sys_module: &Path) -> BTreeMap<String, String> {
    let Ok(dir) = std::fs::read_dir(sys_module) else {
        return BTreeMap::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let notes = std::fs::read(e.path().join("notes/.note.gnu.build-id")).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                gnu_build_id(&notes)?,
            ))
        })
        .take(MAX_MODULES)
        .collect()
}

fn read_config_gz(path: &Path) -> Option<String> {
    let f = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    // /proc/config.gz is a few hundred KB unpacked; the cap keeps a bad file bounded.
    flate2::read::GzDecoder::new(f)
        .take(16 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The GNU build id (note type 3, name "GNU") in a sequence of ELF notes, as
/// `/sys/kernel/notes` holds them (native endianness, 4-byte alignment).
pub fn gnu_build_id(notes: &[u8]) -> Option<String> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let u32_at = |off: usize| -> Option<u32> {
        let b = notes.get(off..off + 4)?;
        Some(u32::from_ne_bytes(b.try_into().ok()?))
    };
    let align = |n: usize| n.checked_add(3).map(|x| x & !3);
    let mut off = 0usize;
    while off + 12 <= notes.len() {
        let namesz = u32_at(off)? as usize;
        let descsz = u32_at(off + 4)? as usize;
        let ty = u32_at(off + 8)?;
        let name_at = off + 12;
        let desc_at = name_at.checked_add(align(namesz)?)?;
        let end = desc_at.checked_add(align(descsz)?)?;
        let name = notes.get(name_at..name_at + namesz)?;
        if ty == NT_GNU_BUILD_ID && name == b"GNU\0" {
            let desc = notes.get(desc_at..desc_at + descsz)?;
            return (!desc.is_empty()).then(|| hex(desc));
        }
        off = end;
    }
    None
}

/// Lowercase hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The [`CONFIG_KEYS`] options of a kernel config text; absent or `is not set` is `n`.
pub fn parse_config(source: &str, text: &str) -> KernelConfig {
    let mut options: BTreeMap<String, String> = CONFIG_KEYS
        .iter()
        .map(|k| (k.to_string(), "n".to_string()))
        .collect();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            if let Some(slot) = options.get_mut(k.trim()) {
                *slot = v.trim().to_string();
            }
        }
    }
    KernelConfig {
        source: source.to_string(),
        options,
    }
}

/// One taint flag that is set: its letter (`None` for a bit past the known flags) and
/// the name the kernel's verbose form prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaintFlag {
    /// Bit number in the mask.
    pub bit: u32,
    /// `W`; `None` past the flags this tool knows.
    pub letter: Option<char>,
    /// `WARN`; `bit 40` past the known flags.
    pub name: String,
}

/// A taint mask decoded as the kernel prints it: the one decoding every report renders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Taint {
    /// `/proc/sys/kernel/tainted`.
    pub mask: u64,
    /// The oops header's words: `Not tainted`, or `Tainted: G        W  O` (one column per
    /// flag, its letter when set, `G` for an untainted proprietary column, trailing blanks
    /// trimmed).
    pub columns: String,
    /// The flags that are set, in bit order.
    pub flags: Vec<TaintFlag>,
}

impl Taint {
    /// [`Taint::columns`] followed by the verbose names (`[W]=WARN, [O]=OOT_MODULE`).
    pub fn text(&self) -> String {
        if self.flags.is_empty() {
            return self.columns.clone();
        }
        let names: Vec<String> = self
            .flags
            .iter()
            .map(|f| match f.letter {
                Some(c) => format!("[{c}]={}", f.name),
                None => f.name.clone(),
            })
            .collect();
        format!("{} ({})", self.columns, names.join(", "))
    }
}

/// Decodes a taint mask (kernel/panic.c `taint_flags`). Bits past the known flags are
/// named by number.
pub fn decode_taint(mask: u64) -> Taint {
    let mut cols = String::new();
    let mut flags = Vec::new();
    for bit in 0..64u32 {
        let known = TAINT_FLAGS.get(bit as usize);
        let set = mask & (1 << bit) != 0;
        if let Some((c, _)) = known {
            cols.push(match (set, bit) {
                (true, _) => *c,
                (false, 0) => 'G',
                (false, _) => ' ',
            });
        }
        if set {
            flags.push(TaintFlag {
                bit,
                letter: known.map(|(c, _)| *c),
                name: known.map_or_else(|| format!("bit {bit}"), |(_, n)| n.to_string()),
            });
        }
    }
    let columns = if mask == 0 {
        "Not tainted".to_string()
    } else {
        format!("Tainted: {}", cols.trim_end())
    };
    Taint {
        mask,
        columns,
        flags,
    }
}

/// The taint mask as the kernel prints it in an oops header (`Not tainted`, or
/// `Tainted: G        W   O`), followed by the verbose names (`[W]=WARN, [O]=OOT_MODULE`):
/// [`Taint::text`] of [`decode_taint`].
pub fn taint_string(mask: u64) -> String {
    decode_taint(mask).text()
}

/// The config options in one line: `PREEMPT_RT=n KASAN=n MEMCG=y ...` (in
/// [`CONFIG_KEYS`] order).
pub fn config_line(c: &KernelConfig) -> String {
    CONFIG_KEYS
        .iter()
        .filter_map(|k| {
            c.options
                .get(*k)
                .map(|v| format!("{}={v}", k.trim_start_matches("CONFIG_")))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], ty: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((name.len() as u32).to_ne_bytes());
        v.extend((desc.len() as u32).to_ne_bytes());
        v.extend(ty.to_ne_bytes());
        v.extend(name);
        v.resize(v.len().next_multiple_of(4), 0);
        v.extend(desc);
        v.resize(v.len().next_multiple_of(4), 0);
        v
    }

    #[test]
    fn build_id_is_the_gnu_note_among_others() {
        // /sys/kernel/notes holds Xen and Linux notes besides the build id.
        let mut notes = note(b"Xen\0", 5, b"xen-3.0\0");
        notes.extend(note(b"Linux\0", 0x100, &[1, 2, 3]));
        notes.extend(note(b"GNU\0", 3, &[0xde, 0xad, 0xbe, 0xef, 0x01]));
        assert_eq!(gnu_build_id(&notes).as_deref(), Some("deadbeef01"));
        assert_eq!(gnu_build_id(&notes[..notes.len() - 8]), None, "cut short");
        assert_eq!(gnu_build_id(&note(b"GNU\0", 1, &[1])), None, "not type 3");
        assert_eq!(gnu_build_id(&[]), None);
    }

    #[test]
    fn taint_as_the_kernel_prints_it() {
        assert_eq!(taint_string(0), "Not tainted");
        // WARN (bit 9) and OOT_MODULE (bit 12).
        assert_eq!(
            taint_string((1 << 9) | (1 << 12)),
            "Tainted: G        W  O ([W]=WARN, [O]=OOT_MODULE)"
        );
        assert_eq!(
            taint_string(1 | (1 << 40)),
            "Tainted: P ([P]=PROPRIETARY_MODULE, bit 40)"
        );
    }

    #[test]
    fn config_keeps_only_the_options_that_matter() {
        let c = parse_config(
            "/boot/config-x",
            "# CONFIG_PREEMPT_RT is not set\nCONFIG_MEMCG=y\nCONFIG_KPROBES=y\n\
             CONFIG_HZ=250\nCONFIG_DEBUG_INFO_BTF=y\n",
        );
        assert_eq!(c.options.len(), CONFIG_KEYS.len());
        assert_eq!(c.options["CONFIG_MEMCG"], "y");
        assert_eq!(c.options["CONFIG_PREEMPT_RT"], "n");
        assert_eq!(c.options["CONFIG_KASAN"], "n", "absent is n");
        assert!(!c.options.contains_key("CONFIG_HZ"));
        assert!(config_line(&c).starts_with("PREEMPT_RT=n KASAN=n MEMCG=y "));
    }

    /// Module build ids ride in the header's identity; an identity written before them
    /// (no `modules` key) still reads, with none.
    #[test]
    fn module_build_ids_are_backward_compatible() {
        let old: KernelIdentity = serde_json::from_str(r#"{"build_id":"ab","taint":0}"#).unwrap();
        assert!(old.modules.is_empty());
        assert!(!serde_json::to_string(&old).unwrap().contains("modules"));
        let new = KernelIdentity {
            modules: [("ext4".to_string(), "cd".repeat(20))].into(),
            ..old
        };
        let text = serde_json::to_string(&new).unwrap();
        assert_eq!(serde_json::from_str::<KernelIdentity>(&text).unwrap(), new);
    }

    #[test]
    fn reads_a_host_tree() {
        let dir = std::env::temp_dir().join(format!("pt-identity-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sys/kernel")).unwrap();
        std::fs::create_dir_all(dir.join("proc/sys/kernel")).unwrap();
        std::fs::write(dir.join("sys/kernel/notes"), note(b"GNU\0", 3, &[0xab; 20])).unwrap();
        std::fs::write(dir.join("proc/sys/kernel/tainted"), "512\n").unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"CONFIG_PREEMPT_RT=y\n").unwrap();
        std::fs::write(dir.join("proc/config.gz"), gz.finish().unwrap()).unwrap();
        let id = read(&dir, "7.2.13+deb14-rt-amd64");
        assert_eq!(id.build_id.as_deref(), Some(&*"ab".repeat(20)));
        assert_eq!(id.taint, Some(512));
        let c = id.config.unwrap();
        assert_eq!(c.source, "/proc/config.gz");
        assert_eq!(c.options["CONFIG_PREEMPT_RT"], "y");
        assert!(read(&dir.join("nothing"), "x").missing().len() == 3);
        assert!(id.modules.is_empty());
        // A loaded module has notes; a built-in one has none and is left out.
        let notes = dir.join("sys/module/null_blk/notes");
        std::fs::create_dir_all(&notes).unwrap();
        std::fs::create_dir_all(dir.join("sys/module/printk/parameters")).unwrap();
        std::fs::write(
            notes.join(".note.gnu.build-id"),
            note(b"GNU\0", 3, &[0xcd; 20]),
        )
        .unwrap();
        let id = read(&dir, "7.2.13+deb14-rt-amd64");
        assert_eq!(
            id.modules.into_iter().collect::<Vec<_>>(),
            [("null_blk".to_string(), "cd".repeat(20))]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
