//! Kernel address to `function+0xoff/0xlen [module]`, the way the kernel's %pS prints it.
//!
//! The kernel computes a symbol's length as the distance to the next symbol in kallsyms
//! (kallsyms_lookup_size_offset), so this does the same from /proc/kallsyms: exact, no
//! vmlinux or debug info needed, and module symbols come with their module name.
use std::{fs, path::Path};

use anyhow::{bail, Context, Result};

use crate::event::Frame;

#[derive(Clone, Debug)]
struct Sym {
    addr: u64,
    name: String,
    module: Option<String>,
}

/// Text symbols of the running kernel, sorted by address.
#[derive(Clone, Debug, Default)]
pub struct Symbolizer {
    syms: Vec<Sym>,
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

    /// Parses kallsyms text; zero addresses and non-text symbols are skipped.
    pub fn parse(text: &str) -> Self {
        let mut syms: Vec<Sym> = text
            .lines()
            .filter_map(|line| {
                let mut it = line.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let ty = it.next()?;
                let name = it.next()?;
                let module = it
                    .next()
                    .map(|m| m.trim_matches(|c| c == '[' || c == ']').to_string());
                let text = matches!(ty, "t" | "T" | "w" | "W");
                (addr != 0 && text).then(|| Sym {
                    addr,
                    name: name.to_string(),
                    module,
                })
            })
            .collect();
        syms.sort_by_key(|s| s.addr);
        Symbolizer { syms }
    }

    /// Symbolizes one address.
    pub fn frame(&self, addr: u64) -> Frame {
        let idx = self.syms.partition_point(|s| s.addr <= addr);
        if idx == 0 {
            return Frame {
                addr,
                function: None,
                offset: 0,
                len: None,
                module: None,
            };
        }
        let s = &self.syms[idx - 1];
        let len = self.syms.get(idx).map(|next| next.addr - s.addr);
        Frame {
            addr,
            function: Some(s.name.clone()),
            offset: addr - s.addr,
            len,
            module: s.module.clone(),
        }
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
}
