//! Facts read from BTF: parameter names of probed functions, struct offsets, the gfp bit enum,
//! tracepoint record structs.
//!
//! Two readers implement [`TypeSource`]: [`BtfFile`] over the real blob (btf-rs; vmlinux
//! BTF, or the .BTF section of a vmlinux ELF given with `--btf`) and [`super::btf_dump::RawDump`] over the text
//! of `bpftool btf dump ... format raw`, which is what the test fixtures store (a few KB
//! extracted from real kernels instead of 5 MB blobs). Everything above the trait is shared.
use std::path::Path;

use anyhow::{bail, Context, Result};

/// A BTF type, reduced to what this tool reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ty {
    /// struct or union.
    Struct {
        /// Name, "" for anonymous.
        name: String,
        /// Members in order.
        members: Vec<Member>,
    },
    /// A function; `proto` is its FUNC_PROTO id.
    Func {
        /// Name.
        name: String,
        /// FUNC_PROTO type id.
        proto: u32,
    },
    /// Parameter names ("" for unnamed; "..." for variadic).
    Proto {
        /// Names in order.
        params: Vec<String>,
    },
    /// enum / enum64.
    Enum {
        /// Name, "" for anonymous.
        name: String,
        /// (name, value).
        values: Vec<(String, u64)>,
    },
    /// typedef, const, volatile, restrict, type tag: look through to `target`.
    Alias {
        /// Aliased type id.
        target: u32,
    },
    /// Anything else (int, pointer, array, ...).
    Other,
}

/// A struct member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Name, "" for an anonymous struct/union member.
    pub name: String,
    /// Offset in bits.
    pub bit_offset: u32,
    /// Type id.
    pub type_id: u32,
}

/// Read access to a set of BTF types.
pub trait TypeSource {
    /// Ids of the types with this name (all kinds).
    fn ids_by_name(&self, name: &str) -> Vec<u32>;
    /// The type with this id.
    fn ty(&self, id: u32) -> Option<Ty>;
    /// Anonymous enums (for the `___GFP_*_BIT` enum).
    fn anon_enums(&self) -> Vec<Ty>;
}

/// A BTF blob read with btf-rs.
pub struct BtfFile {
    btf: btf_rs::Btf,
}

impl BtfFile {
    /// Reads raw BTF (/sys/kernel/btf/vmlinux) or the .BTF section of a vmlinux ELF.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading BTF {}", path.display()))?;
        let raw = if bytes.starts_with(b"\x7fELF") {
            elf_section(&bytes, ".BTF").with_context(|| {
                format!("{} is an ELF file without a .BTF section", path.display())
            })?
        } else {
            &bytes[..]
        };
        let btf = btf_rs::Btf::from_bytes(raw)
            .map_err(|e| anyhow::anyhow!("parsing BTF {}: {e}", path.display()))?;
        Ok(BtfFile { btf })
    }

    fn name_of(&self, t: &dyn btf_rs::BtfType) -> String {
        self.btf.resolve_name(t).unwrap_or_default()
    }

    fn convert(&self, t: &btf_rs::Type) -> Ty {
        use btf_rs::{BtfType, Type};
        match t {
            Type::Struct(s) | Type::Union(s) => Ty::Struct {
                name: self.name_of(s),
                members: s
                    .members
                    .iter()
                    .map(|m| Member {
                        name: self.name_of(m),
                        bit_offset: m.bit_offset(),
                        type_id: m.get_type_id().unwrap_or(0),
                    })
                    .collect(),
            },
            Type::Func(f) => Ty::Func {
                name: self.name_of(f),
                proto: f.get_type_id().unwrap_or(0),
            },
            Type::FuncProto(p) => Ty::Proto {
                params: p
                    .parameters
                    .iter()
                    .map(|x| {
                        if x.is_variadic() {
                            "...".to_string()
                        } else {
                            self.name_of(x)
                        }
                    })
                    .collect(),
            },
            Type::Enum(e) => Ty::Enum {
                name: self.name_of(e),
                values: e
                    .members
                    .iter()
                    .map(|m| (self.name_of(m), u64::from(m.val())))
                    .collect(),
            },
            Type::Enum64(e) => Ty::Enum {
                name: self.name_of(e),
                values: e
                    .members
                    .iter()
                    .map(|m| (self.name_of(m), m.val()))
                    .collect(),
            },
            Type::Typedef(x) => Ty::Alias {
                target: x.get_type_id().unwrap_or(0),
            },
            Type::Volatile(x) | Type::Const(x) | Type::Restrict(x) => Ty::Alias {
                target: x.get_type_id().unwrap_or(0),
            },
            Type::TypeTag(x) => Ty::Alias {
                target: x.get_type_id().unwrap_or(0),
            },
            _ => Ty::Other,
        }
    }
}

impl TypeSource for BtfFile {
    fn ids_by_name(&self, name: &str) -> Vec<u32> {
        self.btf.resolve_ids_by_name(name).unwrap_or_default()
    }

    fn ty(&self, id: u32) -> Option<Ty> {
        self.btf
            .resolve_type_by_id(id)
            .ok()
            .map(|t| self.convert(&t))
    }

    fn anon_enums(&self) -> Vec<Ty> {
        self.btf
            .resolve_types_by_name("")
            .unwrap_or_default()
            .iter()
            .filter(|t| matches!(t, btf_rs::Type::Enum(_) | btf_rs::Type::Enum64(_)))
            .map(|t| self.convert(t))
            .collect()
    }
}

/// Finds a section of a 64-bit little-endian ELF file.
fn elf_section<'a>(b: &'a [u8], want: &str) -> Option<&'a [u8]> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return None; // not ELFCLASS64 / little-endian
    }
    let shoff = u64_at(0x28)? as usize;
    let shentsize = u16_at(0x3a)? as usize;
    let shnum = u16_at(0x3c)? as usize;
    let shstrndx = u16_at(0x3e)? as usize;
    let sh = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(sh(shstrndx) + 0x18)? as usize;
    for i in 0..shnum {
        let name_off = u32_at(sh(i))? as usize;
        let name_bytes = b.get(strtab + name_off..)?;
        let end = name_bytes.iter().position(|&c| c == 0)?;
        if &name_bytes[..end] == want.as_bytes() {
            let off = u64_at(sh(i) + 0x18)? as usize;
            let size = u64_at(sh(i) + 0x20)? as usize;
            return b.get(off..off.checked_add(size)?);
        }
    }
    None
}

// ------------------------------------------------------------------ queries

/// Parameter names of a function, by BTF FUNC name. `Err` explains why not.
pub fn func_params(src: &dyn TypeSource, name: &str) -> Result<Vec<String>> {
    let mut protos: Vec<Vec<String>> = Vec::new();
    for id in src.ids_by_name(name) {
        if let Some(Ty::Func { proto, .. }) = src.ty(id) {
            if let Some(Ty::Proto { params }) = src.ty(proto) {
                if !protos.contains(&params) {
                    protos.push(params);
                }
            }
        }
    }
    match protos.len() {
        0 => bail!("{name} is not in BTF"),
        1 => Ok(protos.remove(0)),
        _ => bail!("{name} has {} different prototypes in BTF", protos.len()),
    }
}

/// Position of the first parameter whose name is one of `names`.
pub fn param_index(params: &[String], names: &[&str]) -> Option<u32> {
    params
        .iter()
        .position(|p| names.contains(&p.as_str()))
        .map(|i| i as u32)
}

/// Follows typedef/const/volatile to the underlying type.
fn resolve(src: &dyn TypeSource, mut id: u32) -> Option<Ty> {
    for _ in 0..16 {
        match src.ty(id)? {
            Ty::Alias { target } => id = target,
            t => return Some(t),
        }
    }
    None
}

/// The struct (not union, not forward declaration) of this name with members.
fn find_struct(src: &dyn TypeSource, name: &str) -> Option<Vec<Member>> {
    src.ids_by_name(name)
        .into_iter()
        .find_map(|id| match src.ty(id)? {
            Ty::Struct { members, .. } if !members.is_empty() => Some(members),
            _ => None,
        })
}

/// Byte offset of `member` in `members`, looking into anonymous struct/union members.
fn member_offset_in(
    src: &dyn TypeSource,
    members: &[Member],
    member: &str,
    depth: u32,
) -> Option<(u32, u32)> {
    if let Some(m) = members.iter().find(|m| m.name == member) {
        return Some((m.bit_offset, m.type_id));
    }
    if depth == 0 {
        return None;
    }
    for m in members.iter().filter(|m| m.name.is_empty()) {
        if let Some(Ty::Struct { members: inner, .. }) = resolve(src, m.type_id) {
            if let Some((off, t)) = member_offset_in(src, &inner, member, depth - 1) {
                return Some((m.bit_offset + off, t));
            }
        }
    }
    None
}

/// Byte offset of a (possibly nested: `["rtmutex", "owner"]`) member of a named struct.
pub fn member_offset(src: &dyn TypeSource, strukt: &str, path: &[&str]) -> Option<u32> {
    let mut members = find_struct(src, strukt)?;
    let mut bits = 0u32;
    for (i, part) in path.iter().enumerate() {
        let (off, type_id) = member_offset_in(src, &members, part, 4)?;
        bits += off;
        if i + 1 < path.len() {
            match resolve(src, type_id)? {
                Ty::Struct { members: inner, .. } => members = inner,
                _ => return None,
            }
        }
    }
    bits.is_multiple_of(8).then_some(bits / 8)
}

/// Names of the members of a struct (top level).
pub fn struct_members(src: &dyn TypeSource, strukt: &str) -> Option<Vec<String>> {
    find_struct(src, strukt).map(|m| m.into_iter().map(|m| m.name).collect())
}

/// The members of the anonymous `___GFP_*_BIT` enum (6.10 and later).
pub fn gfp_bit_enum(src: &dyn TypeSource) -> Option<Vec<(String, u64)>> {
    src.anon_enums().into_iter().find_map(|t| match t {
        Ty::Enum { values, .. } if values.iter().any(|(n, _)| n == "___GFP_IO_BIT") => Some(values),
        _ => None,
    })
}

/// Field offsets of `struct trace_event_raw_<template>`, the record of a tracepoint.
pub fn trace_event_struct(src: &dyn TypeSource, template: &str) -> Option<Vec<(String, u32)>> {
    let members = find_struct(src, &format!("trace_event_raw_{template}"))?;
    Some(
        members
            .into_iter()
            .filter(|m| m.bit_offset.is_multiple_of(8))
            .map(|m| (m.name, m.bit_offset / 8))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_without_btf_is_an_error() {
        assert!(elf_section(b"\x7fELF\x02\x01", ".BTF").is_none());
    }
}
