//! [`BtfFile`]: the [`TypeSource`] over a real BTF blob (/sys/kernel/btf/vmlinux, or the .BTF
//! section of a vmlinux ELF given with `--btf`).
//!
//! A compact reader of the raw format (include/uapi/linux/btf.h): the blob is kept as one
//! buffer, the type section is indexed once into the offset of each type id, and names are
//! read from the string section when asked. Nothing else is materialized, so a 5.5 MB vmlinux
//! BTF costs about 6 MB (a general-purpose parser that builds hash tables of every type and
//! string costs 35-40 MB, which was most of the tool's peak RSS). Lookups by name are linear
//! scans; discovery makes a few dozen of them.
//!
//! Every read is bounds-checked: a truncated or corrupt blob is an error (one line) when it is
//! opened, or a missing type / empty name afterwards, never a panic.
use std::{fs::File, os::unix::fs::FileExt, path::Path};

use anyhow::{bail, Context, Result};

use super::btf::{Member, Ty, TypeSource};

const MAGIC: u16 = 0xeb9f;
/// Size of `struct btf_type` (name_off, info, size/type).
const TYPE_HDR: usize = 12;

// BTF_KIND_*
const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const FWD: u32 = 7;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const FUNC: u32 = 12;
const FUNC_PROTO: u32 = 13;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const FLOAT: u32 = 16;
const DECL_TAG: u32 = 17;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

/// Bytes that follow `struct btf_type` for a type of this kind with `vlen` entries; `None`
/// for a kind this reader does not know (the blob cannot be walked past it).
fn extra_size(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        PTR | FWD | TYPEDEF | VOLATILE | CONST | RESTRICT | FUNC | FLOAT | TYPE_TAG => 0,
        INT | VAR | DECL_TAG => 4,
        ARRAY => 12,
        STRUCT | UNION | DATASEC | ENUM64 => vlen * 12,
        ENUM | FUNC_PROTO => vlen * 8,
        _ => return None,
    })
}

/// A BTF blob, indexed by type id.
pub struct BtfFile {
    /// The whole blob, header included.
    data: Vec<u8>,
    big_endian: bool,
    /// Start and end of the string section in `data`.
    str_start: usize,
    str_end: usize,
    /// Offset in `data` of type id `i + 1` (id 0 is void and not stored).
    offsets: Vec<u32>,
}

/// The fixed part of a type: name offset, kind, kind_flag, vlen, size/type, and where its
/// trailing entries start.
#[derive(Clone, Copy)]
struct Head {
    name_off: u32,
    kind: u32,
    kind_flag: bool,
    vlen: usize,
    size_type: u32,
    rest: usize,
}

#[cfg(test)]
thread_local! {
    /// [`BtfFile::open`] calls on this thread: the tests check start-up reads the kernel BTF
    /// once (a parse is ~50 ms of a 2-vCPU host's start-up).
    static OPENS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many times [`BtfFile::open`] ran on this thread.
#[cfg(test)]
pub(crate) fn opens_on_this_thread() -> usize {
    OPENS.with(|n| n.get())
}

impl BtfFile {
    /// Reads raw BTF (/sys/kernel/btf/vmlinux) or the .BTF section of a vmlinux ELF.
    pub fn open(path: &Path) -> Result<Self> {
        #[cfg(test)]
        OPENS.with(|n| n.set(n.get() + 1));
        let what = || format!("reading BTF {}", path.display());
        let file = File::open(path).with_context(what)?;
        let mut magic = [0u8; 4];
        let is_elf = file.read_exact_at(&mut magic, 0).is_ok() && &magic == b"\x7fELF";
        let data = if is_elf {
            // Only the section is read: a vmlinux with debug info is hundreds of MB.
            let len = file.metadata().with_context(what)?.len();
            let read_at = |off: u64, n: usize| -> Option<Vec<u8>> {
                if off.checked_add(n as u64)? > len {
                    return None;
                }
                let mut buf = vec![0u8; n];
                file.read_exact_at(&mut buf, off).ok()?;
                Some(buf)
            };
            let (off, size) = elf_section(&read_at, ".BTF").with_context(|| {
                format!("{} is an ELF file without a .BTF section", path.display())
            })?;
            if size > crate::bounded::MAX_BTF {
                return Err(crate::bounded::too_large(
                    path,
                    ".BTF section",
                    crate::bounded::MAX_BTF,
                )
                .into());
            }
            let size = usize::try_from(size)
                .ok()
                .context("ELF .BTF section too large")?;
            read_at(off, size)
                .with_context(|| format!("{}: .BTF section out of the file", path.display()))?
        } else {
            // Bounded: a path like /dev/zero must not be read until memory runs out.
            crate::bounded::read_file(path, "BTF", crate::bounded::MAX_BTF).with_context(what)?
        };
        Self::from_bytes(data).with_context(|| format!("parsing BTF {}", path.display()))
    }

    /// Indexes a raw BTF blob.
    pub fn from_bytes(data: Vec<u8>) -> Result<Self> {
        let magic = data.get(..2).context("blob shorter than the BTF header")?;
        let big_endian = match [magic[0], magic[1]] {
            m if u16::from_le_bytes(m) == MAGIC => false,
            m if u16::from_be_bytes(m) == MAGIC => true,
            _ => bail!("bad magic (not BTF)"),
        };
        let mut f = BtfFile {
            data,
            big_endian,
            str_start: 0,
            str_end: 0,
            offsets: Vec::new(),
        };
        let hdr = |o: usize| f.u32_at(o).context("blob shorter than the BTF header");
        let (version, flags) = (f.data.get(2).copied(), f.data.get(3).copied());
        if version != Some(1) {
            bail!("unsupported BTF version {version:?}");
        }
        if flags != Some(0) {
            bail!("unsupported BTF flags {flags:?}");
        }
        let hdr_len = hdr(4)? as usize;
        let (type_off, type_len) = (hdr(8)? as usize, hdr(12)? as usize);
        let (str_off, str_len) = (hdr(16)? as usize, hdr(20)? as usize);
        if hdr_len < 24 {
            bail!("BTF header length {hdr_len} below 24");
        }
        let section = |off: usize, len: usize, what: &str| -> Result<(usize, usize)> {
            let start = hdr_len.checked_add(off);
            match start.and_then(|s| Some((s, s.checked_add(len)?))) {
                Some((s, e)) if e <= f.data.len() => Ok((s, e)),
                _ => bail!(
                    "{what} section ({off}+{len} after a {hdr_len}-byte header) is past the \
                     end of the {}-byte blob",
                    f.data.len()
                ),
            }
        };
        let (type_start, type_end) = section(type_off, type_len, "type")?;
        let (str_start, str_end) = section(str_off, str_len, "string")?;
        if u32::try_from(f.data.len()).is_err() {
            bail!("BTF blob over 4 GiB");
        }
        let mut offsets = Vec::with_capacity(type_len / 16);
        let mut at = type_start;
        while at < type_end {
            let id = offsets.len() + 1;
            let info = f
                .u32_at(at + 4)
                .filter(|_| at + TYPE_HDR <= type_end)
                .with_context(|| format!("type section ends inside type {id}"))?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let extra = extra_size(kind, vlen)
                .with_context(|| format!("type {id} has unknown kind {kind}"))?;
            offsets.push(at as u32);
            at += TYPE_HDR + extra;
        }
        if at != type_end {
            bail!("type section ends inside type {}", offsets.len());
        }
        offsets.shrink_to_fit();
        f.str_start = str_start;
        f.str_end = str_end;
        f.offsets = offsets;
        Ok(f)
    }

    fn u32_at(&self, o: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(o..o.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// The NUL-terminated string at `off` in the string section.
    fn str_bytes(&self, off: u32) -> Option<&[u8]> {
        let start = self.str_start.checked_add(off as usize)?;
        let s = self.data.get(start..self.str_end)?;
        Some(&s[..s.iter().position(|&c| c == 0)?])
    }

    /// The name at `off`, "" when it is not a valid string.
    fn name(&self, off: u32) -> String {
        String::from_utf8_lossy(self.str_bytes(off).unwrap_or_default()).into_owned()
    }

    fn head(&self, id: u32) -> Option<Head> {
        let at = *self.offsets.get((id as usize).checked_sub(1)?)? as usize;
        let info = self.u32_at(at + 4)?;
        Some(Head {
            name_off: self.u32_at(at)?,
            kind: (info >> 24) & 0x1f,
            kind_flag: info >> 31 == 1,
            vlen: (info & 0xffff) as usize,
            size_type: self.u32_at(at + 8)?,
            rest: at + TYPE_HDR,
        })
    }

    /// The `vlen` trailing entries of `h`, each `size` bytes, as their u32 words.
    fn entries<'a, const N: usize>(&'a self, h: &Head) -> impl Iterator<Item = [u32; N]> + 'a {
        let rest = h.rest;
        (0..h.vlen).map_while(move |i| {
            let mut w = [0u32; N];
            for (j, x) in w.iter_mut().enumerate() {
                *x = self.u32_at(rest + (i * N + j) * 4)?;
            }
            Some(w)
        })
    }

    /// Whether type `h` is listed under `name` (named types by their name; anonymous structs,
    /// unions and enums under "").
    fn has_name(&self, h: &Head, name: &[u8]) -> bool {
        if h.name_off == 0 {
            name.is_empty() && matches!(h.kind, STRUCT | UNION | ENUM | ENUM64)
        } else {
            self.str_bytes(h.name_off) == Some(name)
        }
    }
}

impl TypeSource for BtfFile {
    fn ids_by_name(&self, name: &str) -> Vec<u32> {
        let all = 1..=self.offsets.len() as u32;
        if name.contains('\0') {
            return Vec::new(); // no BTF name holds a NUL
        }
        if name.is_empty() {
            return all
                .filter(|&id| self.head(id).is_some_and(|h| self.has_name(&h, b"")))
                .collect();
        }
        // The string offsets naming `name` first: wherever `name\0` starts in the string
        // section (not only after a NUL: a name may be the tail of a longer string). Then
        // each type is an offset compare, not a string read: discovery makes a few dozen
        // lookups, and string compares over every type made them ~60 ms of start-up.
        let strings = &self.data[self.str_start..self.str_end];
        let mut needle = name.as_bytes().to_vec();
        needle.push(0);
        let offs: Vec<u32> = memchr::memmem::find_iter(strings, &needle)
            .map(|o| o as u32)
            .collect();
        if offs.is_empty() {
            return Vec::new();
        }
        // Only the first word of each type (its name offset) is read.
        self.offsets
            .iter()
            .zip(all)
            .filter(|&(&at, _)| {
                self.u32_at(at as usize)
                    .is_some_and(|n| n != 0 && offs.contains(&n))
            })
            .map(|(_, id)| id)
            .collect()
    }

    fn ty(&self, id: u32) -> Option<Ty> {
        if id == 0 {
            return Some(Ty::Other); // void
        }
        let h = self.head(id)?;
        Some(match h.kind {
            STRUCT | UNION => Ty::Struct {
                name: self.name(h.name_off),
                members: self
                    .entries::<3>(&h)
                    .map(|[name_off, type_id, offset]| Member {
                        name: self.name(name_off),
                        // With kind_flag the high 8 bits are the bitfield size.
                        bit_offset: if h.kind_flag {
                            offset & 0xff_ffff
                        } else {
                            offset
                        },
                        type_id,
                    })
                    .collect(),
            },
            FUNC => Ty::Func {
                name: self.name(h.name_off),
                proto: h.size_type,
            },
            FUNC_PROTO => Ty::Proto {
                params: self
                    .entries::<2>(&h)
                    .map(|[name_off, type_id]| {
                        if name_off == 0 && type_id == 0 {
                            "...".to_string()
                        } else {
                            self.name(name_off)
                        }
                    })
                    .collect(),
            },
            ENUM => Ty::Enum {
                name: self.name(h.name_off),
                values: self
                    .entries::<2>(&h)
                    .map(|[name_off, val]| (self.name(name_off), u64::from(val)))
                    .collect(),
            },
            ENUM64 => Ty::Enum {
                name: self.name(h.name_off),
                values: self
                    .entries::<3>(&h)
                    .map(|[name_off, lo, hi]| {
                        (self.name(name_off), u64::from(hi) << 32 | u64::from(lo))
                    })
                    .collect(),
            },
            PTR => Ty::Ptr {
                target: h.size_type,
            },
            TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => Ty::Alias {
                target: h.size_type,
            },
            _ => Ty::Other,
        })
    }

    fn anon_enums(&self) -> Vec<Ty> {
        self.ids_by_name("")
            .into_iter()
            .filter(|&id| {
                self.head(id)
                    .is_some_and(|h| matches!(h.kind, ENUM | ENUM64))
            })
            .filter_map(|id| self.ty(id))
            .collect()
    }
}

/// Offset and size of a section of a 64-bit little-endian ELF file, read through `read_at`
/// (offset, length -> bytes, `None` past the end).
fn elf_section(read_at: &dyn Fn(u64, usize) -> Option<Vec<u8>>, want: &str) -> Option<(u64, u64)> {
    let ident = read_at(0, 0x40)?;
    if ident.get(4) != Some(&2) || ident.get(5) != Some(&1) {
        return None; // not ELFCLASS64 / little-endian
    }
    let u16_at = |b: &[u8], o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |b: &[u8], o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |b: &[u8], o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let shoff = u64_at(&ident, 0x28)?;
    let shentsize = u64::from(u16_at(&ident, 0x3a)?);
    let shnum = u64::from(u16_at(&ident, 0x3c)?);
    let shstrndx = u64::from(u16_at(&ident, 0x3e)?);
    if shentsize < 0x40 {
        return None;
    }
    let sh = |i: u64| read_at(shoff.checked_add(i.checked_mul(shentsize)?)?, 0x40);
    let strtab = u64_at(&sh(shstrndx)?, 0x18)?;
    for i in 0..shnum {
        let hdr = sh(i)?;
        let name_at = strtab.checked_add(u64::from(u32_at(&hdr, 0)?))?;
        // The name followed by its NUL; a shorter read (end of file) is just not a match.
        if read_at(name_at, want.len() + 1)
            .is_some_and(|n| n.strip_suffix(&[0]).is_some_and(|n| n == want.as_bytes()))
        {
            return Some((u64_at(&hdr, 0x18)?, u64_at(&hdr, 0x20)?));
        }
    }
    None
}

#[cfg(test)]
#[path = "btf_file_tests.rs"]
mod tests;
