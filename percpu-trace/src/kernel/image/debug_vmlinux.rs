//! `check --kernel FILE --debug-vmlinux VMLINUX`: symbols and function code from the debug
//! vmlinux of the same build (Debian's `-dbg` package: the full ELF with its `.symtab`),
//! instead of the image's kallsyms. Refused unless it is that build: the GNU build ids must
//! be equal, or, when the image has none to compare, the `linux_banner` strings.
//!
//! The file is hundreds of MB; it is read through `object`'s read cache (the headers, the
//! symbol and string tables, the banner) and then by offset for each function's code, so
//! it never sits in memory whole.
use std::{fs::File, os::unix::fs::FileExt, path::Path};

use object::{
    Object, ObjectSection, ObjectSegment, ObjectSymbol, ReadCache, SectionIndex, SectionKind,
    SymbolKind,
};

/// One loaded range of the debug vmlinux: link-time address, file offset, length.
#[derive(Clone, Copy, Debug)]
struct Segment {
    vaddr: u64,
    off: u64,
    len: u64,
}

/// A debug vmlinux opened for symbols and code.
#[derive(Debug)]
pub struct DebugVmlinux {
    file: File,
    segments: Vec<Segment>,
    /// `uname -m` of the kernel it was built for.
    pub arch: &'static str,
    /// Its GNU build id, if it has one.
    pub build_id: Option<Vec<u8>>,
    /// Its `linux_banner` from "Linux version " on, if the symbol is there.
    pub banner: Option<String>,
    /// Its symbols as kallsyms text (`addr type name`), for the one parser.
    pub symbols: String,
    /// How many symbols `symbols` holds.
    pub count: usize,
}

impl DebugVmlinux {
    /// Opens `path`. Err: one line saying why it cannot be used.
    pub fn open(path: &Path) -> Result<DebugVmlinux, String> {
        let what = |e: &dyn std::fmt::Display| format!("--debug-vmlinux {}: {e}", path.display());
        let file = File::open(path).map_err(|e| what(&e))?;
        let cache = ReadCache::new(file);
        let f = object::File::parse(&cache).map_err(|e| what(&format!("not an ELF: {e}")))?;
        let arch = match f.architecture() {
            object::Architecture::X86_64 => "x86_64",
            object::Architecture::Aarch64 => "aarch64",
            a => return Err(what(&format!("ELF for {a:?}"))),
        };
        if f.section_by_name(".symtab").is_none() {
            return Err(what(&"no .symtab (a stripped vmlinux)"));
        }
        let segments: Vec<Segment> = f
            .segments()
            .map(|s| {
                let (off, len) = s.file_range();
                Segment {
                    vaddr: s.address(),
                    off,
                    len,
                }
            })
            .filter(|s| s.len > 0)
            .collect();
        let build_id = f.build_id().ok().flatten().map(<[u8]>::to_vec);
        let (symbols, count, banner_at) = symbol_text(&f);
        drop(f);
        let file = cache.into_inner();
        let mut d = DebugVmlinux {
            file,
            segments,
            arch,
            build_id,
            banner: None,
            symbols,
            count,
        };
        d.banner = banner_at
            .and_then(|a| d.read(a, 1024).ok())
            .map(|b| banner_line(&b));
        Ok(d)
    }

    /// `len` bytes at link-time address `addr` (fewer at the end of a segment).
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        for s in &self.segments {
            if addr >= s.vaddr && addr - s.vaddr < s.len {
                let n = (len as u64).min(s.len - (addr - s.vaddr)) as usize;
                let mut buf = vec![0; n];
                self.file
                    .read_exact_at(&mut buf, s.off + (addr - s.vaddr))
                    .map_err(|e| format!("debug vmlinux: {e}"))?;
                return Ok(buf);
            }
        }
        Err(format!(
            "{addr:#x} is not in the debug vmlinux's loaded bytes"
        ))
    }

    /// Whether this is the build of the image with `build_ids` (a raw arm64 Image holds the
    /// vDSO's too: the kernel's is one of them) and `banner`: Ok(how it was matched),
    /// Err(the one line refusing it).
    pub fn matches(
        &self,
        arch: &str,
        build_ids: &[Vec<u8>],
        banner: Option<&str>,
    ) -> Result<String, String> {
        if arch != self.arch {
            return Err(format!(
                "--debug-vmlinux is an {} kernel, the image {arch}",
                self.arch
            ));
        }
        if let (false, Some(b)) = (build_ids.is_empty(), self.build_id.as_deref()) {
            return if build_ids.iter().any(|a| a == b) {
                Ok(format!("build id {} matches the image's", hex(b)))
            } else {
                let ids: Vec<String> = build_ids.iter().map(|a| hex(a)).collect();
                Err(format!(
                    "--debug-vmlinux is another build: build id {}, the image's {}",
                    hex(b),
                    ids.join(" or ")
                ))
            };
        }
        match (banner, self.banner.as_deref()) {
            (Some(a), Some(b)) if a == b => Ok(format!(
                "no build id in the image; linux_banner matches: \"{b}\""
            )),
            (Some(a), Some(b)) => Err(format!(
                "--debug-vmlinux is another build: linux_banner \"{b}\", the image's \"{a}\""
            )),
            _ => Err(
                "--debug-vmlinux cannot be matched to the image: no build id or linux_banner in both"
                    .into(),
            ),
        }
    }
}

/// The `Linux version ...` line at the start of `b` (up to a newline or NUL).
pub fn banner_line(b: &[u8]) -> String {
    let end = b
        .iter()
        .position(|&c| c == b'\n' || c == 0)
        .unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim_end().to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The ELF symbols as kallsyms lines with nm's type letters, the count, and the address of
/// `linux_banner`. Left out, as `scripts/kallsyms.c` leaves them out: section and file
/// symbols, undefined ones, arm64 mapping symbols (`$x`, `$d`) and local labels (`.L`).
fn symbol_text<'d, R: object::ReadRef<'d>>(
    f: &object::File<'d, R>,
) -> (String, usize, Option<u64>) {
    use std::fmt::Write as _;
    let kinds: std::collections::HashMap<SectionIndex, SectionKind> =
        f.sections().map(|s| (s.index(), s.kind())).collect();
    let mut out = String::new();
    let mut n = 0;
    let mut banner = None;
    for s in f.symbols() {
        let Ok(name) = s.name() else { continue };
        if name.is_empty()
            || name.starts_with('$')
            || name.starts_with(".L")
            || s.is_undefined()
            || matches!(s.kind(), SymbolKind::Section | SymbolKind::File)
        {
            continue;
        }
        let section = s.section_index().and_then(|i| kinds.get(&i));
        let letter = match (s.kind(), section) {
            (_, None) => 'a',
            (SymbolKind::Text, _) | (_, Some(SectionKind::Text)) => 't',
            (_, Some(SectionKind::UninitializedData | SectionKind::UninitializedTls)) => 'b',
            (_, Some(SectionKind::ReadOnlyData | SectionKind::ReadOnlyString)) => 'r',
            _ => 'd',
        };
        let letter = if s.is_global() || s.is_weak() {
            letter.to_ascii_uppercase()
        } else {
            letter
        };
        if name == "linux_banner" {
            banner = Some(s.address());
        }
        let _ = writeln!(out, "{:016x} {letter} {name}", s.address());
        n += 1;
    }
    (out, n, banner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> DebugVmlinux {
        DebugVmlinux {
            file: File::open("/dev/null").unwrap(),
            segments: Vec::new(),
            arch: "x86_64",
            build_id: Some(vec![0xf8, 0xda]),
            banner: Some("Linux version 7.2.13+deb14-amd64 (x) #1 SMP Debian 7.2.13-1".into()),
            symbols: String::new(),
            count: 0,
        }
    }

    #[test]
    fn same_build_by_id_or_banner() {
        let d = fake();
        assert!(d
            .matches("x86_64", &[vec![0x01], vec![0xf8, 0xda]], None)
            .unwrap()
            .contains("build id f8da"));
        let b = d.banner.clone();
        assert!(d.matches("x86_64", &[], b.as_deref()).is_ok());
    }

    #[test]
    fn another_build_is_refused_in_one_line() {
        let d = fake();
        for e in [
            d.matches("x86_64", &[vec![0x01]], d.banner.as_deref()),
            d.matches(
                "x86_64",
                &[],
                Some("Linux version 7.3.4+deb13-amd64 (x) #1"),
            ),
            d.matches("aarch64", &[vec![0xf8, 0xda]], None),
            d.matches("x86_64", &[], None),
        ] {
            let e = e.unwrap_err();
            assert!(
                e.starts_with("--debug-vmlinux ") && !e.contains('\n'),
                "{e}"
            );
        }
    }

    #[test]
    fn not_an_elf_or_missing_is_an_error() {
        let dir = std::env::temp_dir().join(format!("pt-dbgvml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("junk");
        std::fs::write(&p, b"not an elf at all").unwrap();
        assert!(DebugVmlinux::open(&p).unwrap_err().contains("not an ELF"));
        assert!(DebugVmlinux::open(&dir.join("absent")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tiny() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/offline/tiny-vmlinux/tiny.elf")
    }

    #[test]
    fn symbols_code_and_identity_from_a_small_elf() {
        let d = DebugVmlinux::open(&tiny()).unwrap();
        assert_eq!(d.arch, "x86_64");
        // What `nm tiny.elf` prints.
        for line in [
            "0000000000401000 T pcpu_alloc",
            "000000000040100e T pcpu_populate_chunk",
            "0000000000402000 R linux_banner",
            "0000000000403000 b counter",
        ] {
            assert!(
                d.symbols.lines().any(|l| l == line),
                "{line}\n{}",
                d.symbols
            );
        }
        assert!(!d.symbols.contains("tiny.c"), "file symbols are left out");
        assert_eq!(
            d.build_id.as_deref().map(hex).as_deref(),
            Some("dcf73f2eb8c82f360551ed7233b21d4d33bf583e")
        );
        let banner = d.banner.clone().unwrap();
        assert!(
            banner.starts_with("Linux version 6.1.0-99-amd64 ") && banner.ends_with("(2026-12-01)")
        );
        // The code at a symbol is the file's bytes at its offset (.text at 0x1000 in the file).
        let elf = std::fs::read(tiny()).unwrap();
        assert_eq!(d.read(0x401000, 14).unwrap(), &elf[0x1000..0x100e]);
        assert!(d.read(0x10, 4).is_err());
        assert!(d.matches("x86_64", &[], Some(&banner)).is_ok());
        assert!(d.matches("x86_64", &[vec![1; 20]], Some(&banner)).is_err());
    }

    #[test]
    fn banner_stops_at_newline() {
        assert_eq!(
            banner_line(b"Linux version 6.1 #1\n\0xx"),
            "Linux version 6.1 #1"
        );
    }
}
