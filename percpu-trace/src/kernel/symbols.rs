//! Kernel symbols from /proc/kallsyms (or System.map): the one parser of that format
//! ([`kallsyms_lines`], also used by `symbolize` for stacks), resolving probe targets across
//! versions and compiler clones, and the address of pcpu_alloc_mutex.
use std::{collections::HashSet, sync::Arc};

use serde::Serialize;

/// One vmlinux symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sym {
    /// Full name, suffixes included ("pcpu_free_pages.isra.0").
    pub name: String,
    /// Address (0 everywhere when kptr_restrict hides them).
    pub addr: u64,
    /// nm type letter ('T', 't', 'd', 'b', ...).
    pub kind: char,
}

/// vmlinux symbols indexed by base name (the name without compiler suffixes).
///
/// Compact: ~120k symbols are read and a handful looked up, so the names live in one string
/// and the index is a sorted Vec of 24-byte entries (about 5 MB for a distribution kernel,
/// where a map of owned names took about 20 MB).
#[derive(Clone, Debug, Default)]
pub struct SymbolTable {
    /// Every name, concatenated.
    names: String,
    /// Sorted by base name, file order within a base.
    entries: Vec<Entry>,
    /// Number of symbols read.
    pub count: usize,
    /// Every address read was zero (kptr_restrict, or not privileged).
    pub zeroed: bool,
}

/// One symbol of a [`SymbolTable`]: its name is `names[start..start + len]`, its base name
/// the first `base_len` bytes of that.
#[derive(Clone, Copy, Debug)]
struct Entry {
    addr: u64,
    start: u32,
    len: u32,
    base_len: u32,
    kind: char,
}

/// Splits "pcpu_alloc.isra.0" into ("pcpu_alloc", ".isra.0"); "foo.cold" into ("foo", ".cold").
/// Only GCC/LLVM clone suffixes are split; other dots stay in the name.
pub fn split_suffix(name: &str) -> (&str, &str) {
    const KINDS: &[&str] = &[
        "isra",
        "constprop",
        "part",
        "cold",
        "llvm",
        "lto_priv",
        "localalias",
    ];
    let mut base = name;
    while let Some(dot) = base.rfind('.') {
        let tail = &base[dot + 1..];
        if tail.chars().all(|c| c.is_ascii_digit()) && !tail.is_empty() {
            // ".isra.0": the number belongs to the kind before it.
            let before = &base[..dot];
            match before.rfind('.') {
                Some(d2) if KINDS.contains(&&before[d2 + 1..]) => base = &before[..d2],
                _ => break,
            }
        } else if KINDS.contains(&tail) {
            base = &base[..dot];
        } else {
            break;
        }
    }
    (base, &name[base.len()..])
}

/// One line of /proc/kallsyms or System.map: `address type name [module]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KallsymsLine<'a> {
    /// Address (0 when kptr_restrict hides it).
    pub addr: u64,
    /// nm type letter ('T', 't', 'd', 'b', ...).
    pub kind: char,
    /// Name, compiler suffixes included.
    pub name: &'a str,
    /// Module, without the brackets, for module symbols.
    pub module: Option<&'a str>,
}

impl KallsymsLine<'_> {
    /// A text (code) symbol.
    pub fn is_text(&self) -> bool {
        is_text(self.kind)
    }
}

/// The one kallsyms parser: every well-formed line of /proc/kallsyms or System.map text, in
/// file order. [`SymbolTable`] (discovery) and `symbolize::Symbolizer` (stacks) both read
/// through it and filter what they need; lines that are not `hex type name` are skipped.
pub fn kallsyms_lines(text: &str) -> impl Iterator<Item = KallsymsLine<'_>> {
    text.lines().filter_map(|line| {
        let mut it = line.split_whitespace();
        let addr = u64::from_str_radix(it.next()?, 16).ok()?;
        let kind = it.next()?.chars().next()?;
        let name = it.next()?;
        let module = it.next().map(|m| m.trim_matches(|c| c == '[' || c == ']'));
        Some(KallsymsLine {
            addr,
            kind,
            name,
            module,
        })
    })
}

/// The text of a kallsyms file, shared (several MB: printed by its size only). An
/// `Arc<String>`, not `Arc<str>`: moving the text in must not copy it (a second copy while
/// discovery's other inputs are alive would be the tool's peak memory).
#[derive(Clone)]
pub struct KallsymsText(pub Arc<String>);

impl std::fmt::Debug for KallsymsText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KallsymsText({} bytes)", self.0.len())
    }
}

impl SymbolTable {
    /// Parses /proc/kallsyms or System.map text. Module symbols (a `[module]` column) and
    /// `__pfx_` padding symbols are skipped: every probe target is in vmlinux.
    pub fn parse(text: &str) -> Self {
        Self::parse_noting(text, |_| {})
    }

    /// [`Self::parse`], calling `each` with every vmlinux line (`__pfx_` padding included)
    /// on the way: discovery takes the function starts from the same pass (a second pass
    /// over the kallsyms text was ~30 ms of start-up).
    pub fn parse_noting(text: &str, mut each: impl FnMut(&KallsymsLine<'_>)) -> Self {
        let mut t = SymbolTable {
            zeroed: true,
            ..Default::default()
        };
        for l in kallsyms_lines(text) {
            if l.module.is_some() {
                continue;
            }
            each(&l);
            if l.name.starts_with("__pfx_") {
                continue;
            }
            let (Ok(start), Ok(len)) = (u32::try_from(t.names.len()), u32::try_from(l.name.len()))
            else {
                break; // over 4 GiB of names: not a kallsyms file
            };
            t.count += 1;
            if l.addr != 0 {
                t.zeroed = false;
            }
            t.names.push_str(l.name);
            t.entries.push(Entry {
                addr: l.addr,
                start,
                len,
                base_len: split_suffix(l.name).0.len() as u32,
                kind: l.kind,
            });
        }
        // Stable: symbols of one base stay in file order.
        let names = &t.names;
        t.entries
            .sort_by(|a, b| Self::base_of(names, a).cmp(Self::base_of(names, b)));
        t.names.shrink_to_fit();
        t.entries.shrink_to_fit();
        if t.count == 0 {
            t.zeroed = false;
        }
        t
    }

    fn base_of<'a>(names: &'a str, e: &Entry) -> &'a str {
        &names[e.start as usize..(e.start + e.base_len) as usize]
    }

    fn sym(&self, e: &Entry) -> Sym {
        Sym {
            name: self.names[e.start as usize..(e.start + e.len) as usize].to_string(),
            addr: e.addr,
            kind: e.kind,
        }
    }

    fn family_entries(&self, base: &str) -> &[Entry] {
        let lo = self
            .entries
            .partition_point(|e| Self::base_of(&self.names, e) < base);
        let n = self.entries[lo..]
            .iter()
            .take_while(|e| Self::base_of(&self.names, e) == base)
            .count();
        &self.entries[lo..lo + n]
    }

    /// Exact lookup.
    pub fn get(&self, name: &str) -> Option<Sym> {
        self.family_entries(split_suffix(name).0)
            .iter()
            .find(|e| &self.names[e.start as usize..(e.start + e.len) as usize] == name)
            .map(|e| self.sym(e))
    }

    /// Every symbol with this base name (clones included), in file order.
    pub fn family(&self, base: &str) -> Vec<Sym> {
        self.family_entries(base)
            .iter()
            .map(|e| self.sym(e))
            .collect()
    }
}

/// How a wanted function was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resolution {
    /// The exact name.
    Exact,
    /// A compiler clone such as `.isra.0` / `.constprop.0`: the entry point is real, but the
    /// compiler may have dropped or reordered parameters.
    Clone {
        /// The suffix.
        suffix: String,
    },
    /// Only a `.part.N` piece exists: the function's entry was inlined into its callers and
    /// the piece is not the function (arguments do not match).
    PartOnly {
        /// The part symbols.
        parts: Vec<String>,
    },
    /// Several candidates and no way to choose.
    Ambiguous {
        /// The candidates.
        names: Vec<String>,
    },
    /// Not in kallsyms (renamed in this version, inlined everywhere, or not built).
    Missing,
}

/// A probe target looked up in kallsyms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedSymbol {
    /// The name the tool looked for (the first alternative that matched, or the preferred one).
    pub wanted: String,
    /// The kallsyms name to attach to, when usable.
    pub symbol: Option<String>,
    /// Its address (None when unknown or hidden; JSON: a hex string).
    #[serde(with = "crate::hex::opt")]
    pub addr: Option<u64>,
    /// How it was found.
    pub resolution: Resolution,
    /// Listed in available_filter_functions (None when that file was not readable): false means
    /// notrace, so fentry cannot attach (kprobes still can unless blacklisted).
    pub ftrace: Option<bool>,
    /// In the kprobe blacklist (None when the blacklist was not readable).
    pub kprobe_blacklisted: Option<bool>,
}

impl ResolvedSymbol {
    /// True when a kprobe may be attached to `symbol`.
    pub fn attachable(&self) -> bool {
        self.symbol.is_some() && self.kprobe_blacklisted != Some(true)
    }
}

/// The lines of a kallsyms-format file (System.map) whose symbol name `keep` accepts, read
/// line by line so the whole file is never in memory.
pub fn read_lines_matching(
    path: &std::path::Path,
    keep: impl Fn(&str) -> bool,
) -> std::io::Result<String> {
    let mut out = String::new();
    // Bounded line by line and in total (a System.map is ~10 MB, its lines short).
    crate::bounded::kallsyms_lines(path, |line| {
        let line = String::from_utf8_lossy(line);
        if kallsyms_lines(&line).next().is_some_and(|l| keep(l.name)) {
            out.push_str(&line);
            out.push('\n');
        }
    })?;
    Ok(out)
}

/// vmlinux names from available_filter_functions ("name" or "name [module]") that `keep`
/// accepts (the file lists every traceable function: tens of thousands).
pub fn parse_filter_functions(text: &str, keep: impl Fn(&str) -> bool) -> HashSet<String> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            (it.next().is_none() && keep(name)).then(|| name.to_string())
        })
        .collect()
}

/// Names from debugfs kprobes/blacklist ("0xstart-0xend\tname").
pub fn parse_kprobe_blacklist(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// Resolves the first of `alternatives` present in `table` (in order of preference).
pub fn resolve(
    table: &SymbolTable,
    alternatives: &[&str],
    ftrace: Option<&HashSet<String>>,
    blacklist: Option<&HashSet<String>>,
) -> ResolvedSymbol {
    let mut first_part: Option<ResolvedSymbol> = None;
    for &want in alternatives {
        let family = table.family(want);
        let fam: Vec<&Sym> = family.iter().filter(|s| is_text(s.kind)).collect();
        let exact: Vec<&&Sym> = fam.iter().filter(|s| s.name == want).collect();
        let clones: Vec<&&Sym> = fam
            .iter()
            .filter(|s| {
                let suf = split_suffix(&s.name).1;
                !suf.is_empty() && !suf.contains(".cold") && !suf.contains(".part")
            })
            .collect();
        let parts: Vec<String> = fam
            .iter()
            .filter(|s| split_suffix(&s.name).1.contains(".part"))
            .map(|s| s.name.clone())
            .collect();
        let mk = |sym: Option<&Sym>, resolution: Resolution| ResolvedSymbol {
            wanted: want.to_string(),
            symbol: sym.map(|s| s.name.clone()),
            addr: sym.map(|s| s.addr).filter(|&a| a != 0),
            resolution,
            ftrace: match (sym, ftrace) {
                (Some(s), Some(set)) => Some(set.contains(&s.name)),
                _ => None,
            },
            kprobe_blacklisted: match (sym, blacklist) {
                (Some(s), Some(set)) => Some(set.contains(&s.name)),
                _ => None,
            },
        };
        if exact.len() == 1 {
            return mk(Some(exact[0]), Resolution::Exact);
        }
        if exact.len() > 1 {
            // Two static functions of the same name: a kprobe by name would pick one blindly.
            let names = exact
                .iter()
                .map(|s| format!("{}@{:#x}", s.name, s.addr))
                .collect();
            return mk(None, Resolution::Ambiguous { names });
        }
        match clones.len() {
            1 => {
                let suffix = split_suffix(&clones[0].name).1.to_string();
                return mk(Some(clones[0]), Resolution::Clone { suffix });
            }
            0 => {}
            _ => {
                let names = clones.iter().map(|s| s.name.clone()).collect();
                return mk(None, Resolution::Ambiguous { names });
            }
        }
        if !parts.is_empty() && first_part.is_none() {
            first_part = Some(mk(None, Resolution::PartOnly { parts }));
        }
    }
    first_part.unwrap_or_else(|| ResolvedSymbol {
        wanted: alternatives
            .first()
            .copied()
            .unwrap_or_default()
            .to_string(),
        symbol: None,
        addr: None,
        resolution: Resolution::Missing,
        ftrace: None,
        kprobe_blacklisted: None,
    })
}

fn is_text(kind: char) -> bool {
    matches!(kind, 'T' | 't' | 'W' | 'w')
}

/// Where the pcpu_alloc_mutex address came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MutexSource {
    /// /proc/kallsyms (CONFIG_KALLSYMS_ALL).
    Kallsyms,
    /// System.map, shifted by the KASLR offset measured on `_stext`.
    SystemMap {
        /// Path read.
        path: String,
        /// Offset added (running minus System.map).
        kaslr_offset: i64,
    },
    /// Decoded from the code of the functions that lock it (`mutex_scan`), read through
    /// the `read_kmem` BPF program, and checked to look like a struct mutex.
    CodeScan {
        /// Functions whose code was scanned.
        functions: Vec<String>,
        /// Lock calls that passed this address.
        agreeing_calls: usize,
    },
}

/// Looks pcpu_alloc_mutex up in System.map and shifts it by the KASLR offset, measured as
/// the difference of `_stext` (or `_text`) between kallsyms and System.map.
pub fn mutex_from_system_map(
    kallsyms: &SymbolTable,
    map: &SymbolTable,
) -> Result<(u64, i64), String> {
    let m = map
        .get("pcpu_alloc_mutex")
        .ok_or_else(|| "pcpu_alloc_mutex is not in System.map either".to_string())?;
    let anchor = ["_stext", "_text"]
        .iter()
        .find_map(|n| Some((kallsyms.get(n)?.addr, map.get(n)?.addr)))
        .ok_or_else(|| {
            "no _stext/_text in both kallsyms and System.map to measure the KASLR offset"
                .to_string()
        })?;
    if anchor.0 == 0 {
        return Err("kallsyms addresses are hidden, so the KASLR offset cannot be measured".into());
    }
    let off = anchor.0.wrapping_sub(anchor.1) as i64;
    Ok((m.addr.wrapping_add(off as u64), off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(split_suffix("pcpu_alloc.isra.0"), ("pcpu_alloc", ".isra.0"));
        assert_eq!(
            split_suffix("f.constprop.0.isra.0"),
            ("f", ".constprop.0.isra.0")
        );
        assert_eq!(
            split_suffix("pcpu_alloc_noprof.cold"),
            ("pcpu_alloc_noprof", ".cold")
        );
        assert_eq!(split_suffix("f.part.3"), ("f", ".part.3"));
        assert_eq!(split_suffix("plain"), ("plain", ""));
        assert_eq!(split_suffix("a.b"), ("a.b", ""));
    }

    #[test]
    fn families_keep_file_order_and_skip_modules() {
        let t = SymbolTable::parse(
            "0000000000000030 t f.isra.0\n\
             0000000000000010 T g\n\
             0000000000000020 T f\n\
             0000000000000040 t f.cold\n\
             0000000000000050 t __pfx_f\n\
             0000000000000060 t f\t[some_module]\n\
             0000000000000070 d fa\n",
        );
        assert_eq!(t.count, 5);
        assert!(!t.zeroed);
        let names: Vec<String> = t.family("f").into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["f.isra.0", "f", "f.cold"]);
        assert_eq!(
            t.get("f.cold"),
            Some(Sym {
                name: "f.cold".into(),
                addr: 0x40,
                kind: 't'
            })
        );
        assert_eq!(t.get("fa").map(|s| s.kind), Some('d'));
        assert_eq!(t.get("f.part.0"), None);
        assert!(t.family("").is_empty() && t.family("h").is_empty());
        assert!(SymbolTable::parse("").family("f").is_empty());
    }

    #[test]
    fn resolves_clones_and_skips_cold() {
        let t = SymbolTable::parse(
            "ffffffff81000000 T _stext\n\
             ffffffff81212a72 t pcpu_alloc_noprof.cold\n\
             ffffffff815c4c20 T pcpu_alloc_noprof\n\
             ffffffff815c4000 t __pfx_pcpu_create_chunk\n\
             ffffffff815c4070 t pcpu_create_chunk.isra.0\n\
             ffffffff815c5000 t two.constprop.0\n\
             ffffffff815c6000 t two.constprop.1\n\
             ffffffff815c7000 t piece.part.0\n\
             ffffffffc0000000 t pcpu_populate_chunk\t[some_module]\n",
        );
        let r = resolve(&t, &["pcpu_alloc_noprof", "pcpu_alloc"], None, None);
        assert_eq!(r.symbol.as_deref(), Some("pcpu_alloc_noprof"));
        assert_eq!(r.resolution, Resolution::Exact);
        assert_eq!(r.addr, Some(0xffffffff815c4c20));
        let c = resolve(&t, &["pcpu_create_chunk"], None, None);
        assert_eq!(c.symbol.as_deref(), Some("pcpu_create_chunk.isra.0"));
        assert_eq!(
            c.resolution,
            Resolution::Clone {
                suffix: ".isra.0".into()
            }
        );
        assert!(matches!(
            resolve(&t, &["two"], None, None).resolution,
            Resolution::Ambiguous { .. }
        ));
        let p = resolve(&t, &["piece"], None, None);
        assert!(matches!(p.resolution, Resolution::PartOnly { .. }));
        assert!(!p.attachable());
        // Module symbols are not vmlinux functions.
        assert_eq!(
            resolve(&t, &["pcpu_populate_chunk"], None, None).resolution,
            Resolution::Missing
        );
        assert!(!t.zeroed);
    }

    #[test]
    fn zeroed_and_traceability() {
        let t =
            SymbolTable::parse("0000000000000000 T try_to_free_pages\n0000000000000000 T _stext\n");
        assert!(t.zeroed);
        let ff = parse_filter_functions("try_to_free_pages\nfoo [mod]\n", |_| true);
        let bl = parse_kprobe_blacklist("0xffffffff81000000-0xffffffff81000010\tother\n");
        let r = resolve(&t, &["try_to_free_pages"], Some(&ff), Some(&bl));
        assert_eq!(r.addr, None);
        assert_eq!(r.ftrace, Some(true));
        assert_eq!(r.kprobe_blacklisted, Some(false));
        assert!(r.attachable());
    }

    #[test]
    fn system_map_lines_are_kept_by_name() {
        let p = std::env::temp_dir().join(format!("pt-sysmap-{}", std::process::id()));
        std::fs::write(
            &p,
            "ffffffff81000000 T _stext\nffffffff82000000 d pcpu_alloc_mutex\nffffffff83000000 t other\nbad line\n",
        )
        .unwrap();
        let kept = read_lines_matching(&p, |n| n == "_stext" || n == "pcpu_alloc_mutex").unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(
            kept,
            "ffffffff81000000 T _stext\nffffffff82000000 d pcpu_alloc_mutex\n"
        );
    }

    #[test]
    fn kaslr_shift() {
        let running = SymbolTable::parse("ffffffff9a000000 T _stext\n");
        let map =
            SymbolTable::parse("ffffffff81000000 T _stext\nffffffff83a1b2c0 d pcpu_alloc_mutex\n");
        let (addr, off) = mutex_from_system_map(&running, &map).unwrap();
        assert_eq!(off, 0x19000000);
        assert_eq!(addr, 0xffffffff9ca1b2c0);
        let nomutex = SymbolTable::parse("ffffffff81000000 T _stext\n");
        assert!(mutex_from_system_map(&running, &nomutex).is_err());
    }
}
