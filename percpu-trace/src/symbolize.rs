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

use crate::{
    event::{Frame, InlinedFrame},
    kernel::symbols::kallsyms_lines,
};

#[derive(Clone, Debug)]
struct Sym {
    addr: u64,
    name: String,
    module: Option<String>,
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
    syms: Vec<Sym>,
    debug: Option<DebugInfo>,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer")
            .field("syms", &self.syms.len())
            .field("dwarf", &self.debug.as_ref().map(|d| d.kaslr_offset))
            .finish()
    }
}

impl Symbolizer {
    /// Reads a kallsyms file. Fails when every address is zero (kptr_restrict hides them).
    pub fn from_kallsyms(path: &Path) -> Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let s = Self::parse(&text);
        if s.syms.is_empty() {
            bail!(
                "{}: no usable text symbols (kptr_restrict zeroes the addresses?)",
                path.display()
            );
        }
        Ok(s)
    }

    /// Parses kallsyms text; zero addresses and non-text symbols are skipped. `__pfx_`
    /// padding symbols are kept: the kernel counts them when it measures a length.
    pub fn parse(text: &str) -> Self {
        let mut syms: Vec<Sym> = kallsyms_lines(text)
            .filter(|l| l.addr != 0 && l.is_text())
            .map(|l| Sym {
                addr: l.addr,
                name: l.name.to_string(),
                module: l.module.map(str::to_string),
            })
            .collect();
        syms.sort_by_key(|s| s.addr);
        Symbolizer { syms, debug: None }
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
                self.syms
                    .iter()
                    .find(|s| s.name == *n && s.module.is_none())
            })
            .ok_or_else(|| anyhow!("no {anchors:?} in kallsyms to measure the KASLR offset"))?;
        let inspector = inspect::Inspector::new();
        let src = inspect::source::Source::Elf(inspect::source::Elf::new(vmlinux));
        let found = inspector
            .lookup(&src, &[running.name.as_str()])
            .with_context(|| format!("reading symbols of {}", vmlinux.display()))?;
        let link = found
            .first()
            .and_then(|v| v.first())
            .map(|s| s.addr)
            .ok_or_else(|| anyhow!("{}: no {} symbol", vmlinux.display(), running.name))?;
        self.debug = Some(DebugInfo {
            source: symbolize::source::Source::Elf(symbolize::source::Elf::new(vmlinux)),
            kaslr_offset: running.addr.wrapping_sub(link),
            symbolizer: symbolize::Symbolizer::new(),
        });
        Ok(())
    }

    /// Symbolizes one address.
    pub fn frame(&self, addr: u64) -> Frame {
        let idx = self.syms.partition_point(|s| s.addr <= addr);
        if idx == 0 {
            return Frame {
                addr,
                ..Default::default()
            };
        }
        let s = &self.syms[idx - 1];
        let len = self.syms.get(idx).map(|next| next.addr - s.addr);
        let mut f = Frame {
            addr,
            function: Some(s.name.clone()),
            offset: addr - s.addr,
            len,
            module: s.module.clone(),
            ..Default::default()
        };
        // Module text is not in vmlinux.
        if let (Some(d), None) = (&self.debug, &s.module) {
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
        if let Some(ci) = &sym.code_info {
            f.file = Some(ci.to_path().display().to_string());
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
                    .map(|c| c.to_path().display().to_string()),
                line: i.code_info.as_ref().and_then(|c| c.line),
            })
            .collect();
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

    #[test]
    fn zeroed_addresses_are_unusable() {
        let s = Symbolizer::parse("0000000000000000 T _stext\n0000000000000000 t x\n");
        assert!(s.syms.is_empty());
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
