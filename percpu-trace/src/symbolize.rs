//! Kernel address to `function+0xoff/0xlen [module]`, the way the kernel's %pS prints it,
//! plus source file:line and inlined calls when a vmlinux with DWARF is at hand.
//!
//! Names, offsets, lengths and modules come from /proc/kallsyms, read through the tool's one
//! kallsyms parser ([`crate::kernel::symbols::kallsyms_lines`]). The kernel computes a
//! symbol's length as the distance to the next symbol (kallsyms_lookup_size_offset), so this
//! does the same: exact, no vmlinux needed, and module symbols come with their module name.
//! blazesym's kallsyms source reports neither a length nor a module, which is why it is not
//! used for that part; blazesym reads the vmlinux ELF/DWARF only ([`Symbolizer::attach_vmlinux`]),
//! at the link-time address (running address minus the KASLR offset measured on `_stext`).
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};
use blazesym::{inspect, symbolize};

use crate::{debuginfo::fill_frame, event::Frame, kernel::symbols::kallsyms_lines};

/// One text symbol, its name in [`Symbolizer::names`]: 16 bytes, not three allocations
/// (Debian kernels have about 150,000 text symbols, and the table lives as long as the run).
#[derive(Clone, Copy, Debug)]
struct Sym {
    addr: u64,
    /// Start of the name in `names`.
    name_off: u32,
    name_len: u16,
    /// 0: vmlinux; n: `modules[n - 1]`.
    module: u16,
}

/// vmlinux debug info: file:line and inlined calls for vmlinux text.
struct DebugInfo {
    source: symbolize::source::Source<'static>,
    /// Running address minus link-time address.
    kaslr_offset: u64,
    symbolizer: symbolize::Symbolizer,
}

/// Text symbols of the running kernel, sorted by address, and optionally its vmlinux DWARF.
#[derive(Default)]
pub struct Symbolizer {
    text: TextSymbols,
    debug: Option<DebugInfo>,
}

/// The kallsyms part of a [`Symbolizer`]: plain data, so it can be read on another thread
/// while the probes attach (the DWARF part cannot move between threads).
#[derive(Default)]
pub struct TextSymbols {
    syms: Vec<Sym>,
    /// Every symbol name, back to back.
    names: String,
    /// Module names, in order of first appearance.
    modules: Vec<String>,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer")
            .field("syms", &self.text.syms.len())
            .field("dwarf", &self.debug.as_ref().map(|d| d.kaslr_offset))
            .finish()
    }
}

impl TextSymbols {
    /// Reads a kallsyms file. Fails when every address is zero (kptr_restrict hides them).
    pub fn read(path: &Path) -> Result<Self> {
        // Line by line: the whole text (several MB) need not be in memory with the table;
        // bounded, so a file that is not a real kallsyms cannot grow it without end.
        let mut s = TextSymbols::default();
        crate::bounded::kallsyms_lines(path, |line| s.add_lines(&String::from_utf8_lossy(line)))
            .with_context(|| format!("reading {}", path.display()))?;
        s.finished(path)
    }

    /// The text symbols of kallsyms text already read (`path`: where from, for the error),
    /// as [`Self::read`] would give them from that file.
    pub fn from_text(text: &str, path: &Path) -> Result<Self> {
        let mut s = TextSymbols::default();
        s.add_lines(text);
        s.finished(path)
    }

    /// Sorts the symbols added so far; fails when there are none (`path`: where they came
    /// from, for the error).
    fn finished(mut self, path: &Path) -> Result<Self> {
        self.finish();
        if self.syms.is_empty() {
            bail!(
                "{}: no usable text symbols (kptr_restrict zeroes the addresses?)",
                path.display()
            );
        }
        Ok(self)
    }

    /// Adds the text symbols of some kallsyms lines (unsorted until [`Self::finish`]).
    fn add_lines(&mut self, text: &str) {
        for l in kallsyms_lines(text).filter(|l| l.addr != 0 && l.is_text()) {
            let module = match l.module {
                None => 0,
                Some(m) => match self.modules.iter().position(|x| x == m) {
                    Some(i) => i + 1,
                    None => {
                        self.modules.push(m.to_string());
                        self.modules.len()
                    }
                },
            };
            // Past these bounds (never seen: names are at most 512 bytes, a few thousand
            // modules) the symbol is left out rather than mislabelled.
            let (Ok(name_off), Ok(name_len), Ok(module)) = (
                u32::try_from(self.names.len()),
                u16::try_from(l.name.len()),
                u16::try_from(module),
            ) else {
                continue;
            };
            self.names.push_str(l.name);
            self.syms.push(Sym {
                addr: l.addr,
                name_off,
                name_len,
                module,
            });
        }
    }

    /// Sorts by address (in place: no scratch copy of the table) and trims the spare room.
    fn finish(&mut self) {
        self.syms.sort_unstable_by_key(|s| (s.addr, s.name_off));
        self.syms.shrink_to_fit();
        self.names.shrink_to_fit();
    }

    fn name(&self, s: &Sym) -> &str {
        let start = s.name_off as usize;
        self.names
            .get(start..start + usize::from(s.name_len))
            .unwrap_or("")
    }

    fn module(&self, s: &Sym) -> Option<&str> {
        usize::from(s.module)
            .checked_sub(1)
            .and_then(|i| self.modules.get(i))
            .map(String::as_str)
    }
}

impl From<TextSymbols> for Symbolizer {
    fn from(text: TextSymbols) -> Self {
        Symbolizer { text, debug: None }
    }
}

impl Symbolizer {
    /// Reads a kallsyms file. Fails when every address is zero (kptr_restrict hides them).
    pub fn from_kallsyms(path: &Path) -> Result<Self> {
        TextSymbols::read(path).map(Symbolizer::from)
    }

    /// Parses kallsyms text; zero addresses and non-text symbols are skipped. `__pfx_`
    /// padding symbols are kept: the kernel counts them when it measures a length.
    pub fn parse(text: &str) -> Self {
        let mut t = TextSymbols::default();
        t.add_lines(text);
        t.finish();
        Symbolizer::from(t)
    }

    /// Where Debian installs the debug vmlinux of the running kernel
    /// (`linux-image-$(uname -r)-dbg`), when it is there.
    pub fn debian_vmlinux() -> Option<PathBuf> {
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        let p = PathBuf::from(format!("/usr/lib/debug/boot/vmlinux-{}", release.trim()));
        p.exists().then_some(p)
    }

    /// Adds source locations from `vmlinux` (an ELF with DWARF, of the kernel whose kallsyms
    /// was read). The KASLR offset is `_stext` in kallsyms minus `_stext` in vmlinux, as
    /// for System.map, so no /proc/kcore is needed.
    pub fn attach_vmlinux(&mut self, vmlinux: &Path) -> Result<()> {
        self.attach_elf(vmlinux, &["_stext", "_text"])
    }

    /// [`Self::attach_vmlinux`] with the KASLR offset measured on the first of `anchors`
    /// present in kallsyms (the test uses a symbol of its own binary).
    fn attach_elf(&mut self, vmlinux: &Path, anchors: &[&str]) -> Result<()> {
        let running = anchors
            .iter()
            .find_map(|n| {
                self.text
                    .syms
                    .iter()
                    .find(|s| self.text.name(s) == *n && s.module == 0)
            })
            .ok_or_else(|| anyhow!("no {anchors:?} in kallsyms to measure the KASLR offset"))?;
        let inspector = inspect::Inspector::new();
        let src = inspect::source::Source::Elf(inspect::source::Elf::new(vmlinux));
        let found = inspector
            .lookup(&src, &[self.text.name(running)])
            .with_context(|| format!("reading symbols of {}", vmlinux.display()))?;
        let link = found
            .first()
            .and_then(|v| v.first())
            .map(|s| s.addr)
            .ok_or_else(|| {
                anyhow!(
                    "{}: no {} symbol",
                    vmlinux.display(),
                    self.text.name(running)
                )
            })?;
        self.debug = Some(DebugInfo {
            source: symbolize::source::Source::Elf(symbolize::source::Elf::new(vmlinux)),
            kaslr_offset: running.addr.wrapping_sub(link),
            symbolizer: symbolize::Symbolizer::new(),
        });
        Ok(())
    }

    /// Symbolizes one address.
    pub fn frame(&self, addr: u64) -> Frame {
        let idx = self.text.syms.partition_point(|s| s.addr <= addr);
        if idx == 0 {
            return Frame {
                addr,
                ..Default::default()
            };
        }
        let s = &self.text.syms[idx - 1];
        let len = self.text.syms.get(idx).map(|next| next.addr - s.addr);
        let mut f = Frame {
            addr,
            function: Some(self.text.name(s).to_string()),
            offset: addr - s.addr,
            len,
            module: self.text.module(s).map(str::to_string),
            ..Default::default()
        };
        // Module text is not in vmlinux.
        if let (Some(d), 0) = (&self.debug, s.module) {
            d.locate(addr.wrapping_sub(d.kaslr_offset), &mut f);
        }
        f
    }
}

impl DebugInfo {
    /// Fills `f.file`, `f.line` and `f.inlined` from the DWARF at link-time address `vaddr`;
    /// leaves them empty when the address has no debug info.
    fn locate(&self, vaddr: u64, f: &mut Frame) {
        let Ok(symbolize::Symbolized::Sym(sym)) = self
            .symbolizer
            .symbolize_single(&self.source, symbolize::Input::VirtOffset(vaddr))
        else {
            return;
        };
        fill_frame(&sym, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81000000 T _stext
ffffffff812a0000 t pcpu_populate_chunk
ffffffff812a03c0 T pcpu_alloc_noprof
ffffffff812a0c00 d pcpu_alloc_mutex
ffffffffc0100000 t null_add_dev\t[null_blk]
ffffffffc0100200 t null_exit\t[null_blk]
";

    #[test]
    fn offsets_and_lengths_like_percent_ps() {
        let s = Symbolizer::parse(KALLSYMS);
        assert_eq!(
            s.frame(0xffffffff812a004a).to_string(),
            "pcpu_populate_chunk+0x4a/0x3c0"
        );
        assert_eq!(
            s.frame(0xffffffffc0100010).to_string(),
            "null_add_dev+0x10/0x200 [null_blk]"
        );
        assert_eq!(s.frame(0x10).function, None);
    }

    /// Stack symbols built from discovery's kallsyms text are those read from the file,
    /// and fail the same way when every address is zero.
    #[test]
    fn symbols_from_text_are_those_read_from_the_file() {
        let dir = std::env::temp_dir().join(format!("pt-textsyms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kallsyms");
        std::fs::write(&path, KALLSYMS).unwrap();
        let (read, built) = (
            TextSymbols::read(&path).unwrap(),
            TextSymbols::from_text(KALLSYMS, &path).unwrap(),
        );
        let frames = |t: TextSymbols| {
            let s = Symbolizer::from(t);
            [
                0xffffffff812a004a,
                0xffffffffc0100010,
                0xffffffff812a0c00,
                0x10,
            ]
            .map(|a| s.frame(a).to_string())
        };
        assert_eq!(frames(read), frames(built));
        let zeroed = "0000000000000000 T _stext\n";
        std::fs::write(&path, zeroed).unwrap();
        let (e1, e2) = (
            TextSymbols::read(&path).err().unwrap(),
            TextSymbols::from_text(zeroed, &path).err().unwrap(),
        );
        assert_eq!(format!("{e1:#}"), format!("{e2:#}"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zeroed_addresses_are_unusable() {
        let s = Symbolizer::parse("0000000000000000 T _stext\n0000000000000000 t x\n");
        assert!(s.text.syms.is_empty());
    }

    /// A function of this test binary stands in for kernel text: its link-time address is
    /// `_stext` of the fake kallsyms shifted by a made-up KASLR offset.
    #[no_mangle]
    #[inline(never)]
    extern "C" fn percpu_trace_symbolize_probe() -> u32 {
        std::hint::black_box(7)
    }

    #[test]
    fn source_lines_from_dwarf() {
        assert_eq!(percpu_trace_symbolize_probe(), 7);
        let exe = std::env::current_exe().unwrap();
        let inspector = inspect::Inspector::new();
        let found = inspector
            .lookup(
                &inspect::source::Source::Elf(inspect::source::Elf::new(&exe)),
                &["percpu_trace_symbolize_probe"],
            )
            .unwrap();
        let link = found[0][0].addr;
        let shift = 0x1000_0000u64;
        let kallsyms = format!(
            "{:016x} t percpu_trace_symbolize_probe\n{:016x} t after\n",
            link + shift,
            link + shift + 0x100
        );
        let mut s = Symbolizer::parse(&kallsyms);
        assert!(s.attach_vmlinux(&exe).is_err(), "a binary without _stext");
        s.attach_elf(&exe, &["percpu_trace_symbolize_probe"])
            .unwrap();
        let f = s.frame(link + shift + 1);
        assert_eq!(f.function.as_deref(), Some("percpu_trace_symbolize_probe"));
        assert_eq!(f.offset, 1);
        assert!(
            f.file
                .as_deref()
                .is_some_and(|p| p.ends_with("symbolize.rs")),
            "{f:?}"
        );
        assert!(f.line.is_some());
    }
}
