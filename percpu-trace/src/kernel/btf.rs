//! Facts read from BTF: parameter names of probed functions, struct offsets, the gfp bit enum,
//! tracepoint record structs.
//!
//! Two readers implement [`TypeSource`]: [`BtfFile`] over the real blob (btf-rs; vmlinux
//! BTF, or the .BTF section of a vmlinux ELF given with `--btf`) and [`RawDump`] over the text
//! of `bpftool btf dump ... format raw`, which is what the test fixtures store (a few KB
//! extracted from real kernels instead of 5 MB blobs). Everything above the trait is shared.
use std::{collections::HashMap, path::Path};

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

/// Types parsed from `bpftool btf dump file X format raw` text (possibly filtered).
#[derive(Default)]
pub struct RawDump {
    types: HashMap<u32, (String, Ty)>,
    by_name: HashMap<String, Vec<u32>>,
}

impl RawDump {
    /// Parses the listing. Unknown lines are ignored; it never fails, a missing type is just
    /// not found later.
    pub fn parse(text: &str) -> Self {
        let mut d = RawDump::default();
        let mut cur: Option<(u32, String, String, String)> = None; // id, kind, name, header rest
        let mut body: Vec<&str> = Vec::new();
        for line in text.lines().chain(std::iter::once("[0] END ''")) {
            if line.starts_with('[') {
                if let Some((id, kind, name, rest)) = cur.take() {
                    d.add(id, &kind, name, &rest, &body);
                }
                body.clear();
                cur = parse_header(line);
            } else if line.starts_with('\t') || line.starts_with(' ') {
                body.push(line.trim());
            }
        }
        d
    }

    fn add(&mut self, id: u32, kind: &str, name: String, rest: &str, body: &[&str]) {
        let name = if name == "(anon)" {
            String::new()
        } else {
            name
        };
        let ty = match kind {
            "STRUCT" | "UNION" => Ty::Struct {
                name: name.clone(),
                members: body
                    .iter()
                    .filter_map(|l| {
                        Some(Member {
                            name: quoted(l)?.replace("(anon)", ""),
                            bit_offset: kv(l, "bits_offset")?,
                            type_id: kv(l, "type_id")?,
                        })
                    })
                    .collect(),
            },
            "FUNC" => Ty::Func {
                name: name.clone(),
                proto: kv(rest, "type_id").unwrap_or(0),
            },
            "FUNC_PROTO" => Ty::Proto {
                params: body
                    .iter()
                    .map(|l| {
                        if l.starts_with("'(anon)' type_id=0") {
                            "...".into()
                        } else {
                            quoted(l).unwrap_or_default()
                        }
                    })
                    .collect(),
            },
            "ENUM" | "ENUM64" => Ty::Enum {
                name: name.clone(),
                values: body
                    .iter()
                    .filter_map(|l| {
                        Some((
                            quoted(l)?,
                            l.split("val=").nth(1)?.trim().parse::<i64>().ok()? as u64,
                        ))
                    })
                    .collect(),
            },
            "TYPEDEF" | "CONST" | "VOLATILE" | "RESTRICT" | "TYPE_TAG" => Ty::Alias {
                target: kv(rest, "type_id").unwrap_or(0),
            },
            _ => Ty::Other,
        };
        self.by_name.entry(name.clone()).or_default().push(id);
        self.types.insert(id, (name, ty));
    }
}

fn parse_header(line: &str) -> Option<(u32, String, String, String)> {
    let close = line.find(']')?;
    let id = line[1..close].parse().ok()?;
    let rest = line[close + 1..].trim_start();
    let (kind, rest) = rest.split_once(' ')?;
    let name = quoted(rest)?;
    let after = rest.splitn(3, '\'').nth(2).unwrap_or("").to_string();
    Some((id, kind.to_string(), name, after))
}

fn quoted(s: &str) -> Option<String> {
    let a = s.find('\'')?;
    let b = s[a + 1..].find('\'')?;
    Some(s[a + 1..a + 1 + b].to_string())
}

fn kv<T: std::str::FromStr>(s: &str, key: &str) -> Option<T> {
    s.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

impl TypeSource for RawDump {
    fn ids_by_name(&self, name: &str) -> Vec<u32> {
        self.by_name.get(name).cloned().unwrap_or_default()
    }

    fn ty(&self, id: u32) -> Option<Ty> {
        self.types.get(&id).map(|(_, t)| t.clone())
    }

    fn anon_enums(&self) -> Vec<Ty> {
        self.ids_by_name("")
            .iter()
            .filter_map(|&i| self.ty(i))
            .filter(|t| matches!(t, Ty::Enum { .. }))
            .collect()
    }
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

    const SAMPLE: &str = "[9] INT 'unsigned int' size=4 bits_offset=0 nr_bits=32 encoding=(none)\n\
[92] TYPEDEF 'atomic64_t' type_id=91\n\
[91] STRUCT '(anon)' size=8 vlen=1\n\
\t'counter' type_id=37 bits_offset=0\n\
[321] TYPEDEF 'atomic_long_t' type_id=92\n\
[395] STRUCT 'mutex' size=32 vlen=2\n\
\t'owner' type_id=321 bits_offset=0\n\
\t'wait_lock' type_id=145 bits_offset=64\n\
[500] STRUCT 'task_struct' size=100 vlen=2\n\
\t'(anon)' type_id=501 bits_offset=64\n\
\t'flags' type_id=9 bits_offset=352\n\
[501] UNION '(anon)' size=8 vlen=1\n\
\t'pid' type_id=9 bits_offset=32\n\
[600] FUNC_PROTO '(anon)' ret_type_id=0 vlen=3\n\
\t'a' type_id=9\n\
\t'gfp' type_id=9\n\
\t'(anon)' type_id=0\n\
[601] FUNC 'f' type_id=600 linkage=static\n\
[700] ENUM '(anon)' encoding=UNSIGNED size=4 vlen=2\n\
\t'___GFP_IO_BIT' val=6\n\
\t'___GFP_FS_BIT' val=7\n";

    #[test]
    fn raw_dump_queries() {
        let d = RawDump::parse(SAMPLE);
        assert_eq!(func_params(&d, "f").unwrap(), vec!["a", "gfp", "..."]);
        assert!(func_params(&d, "nope").is_err());
        assert_eq!(
            param_index(&func_params(&d, "f").unwrap(), &["gfp", "gfp_mask"]),
            Some(1)
        );
        assert_eq!(member_offset(&d, "task_struct", &["flags"]), Some(44));
        assert_eq!(member_offset(&d, "task_struct", &["pid"]), Some(12));
        assert_eq!(member_offset(&d, "mutex", &["owner"]), Some(0));
        assert_eq!(member_offset(&d, "mutex", &["wait_lock"]), Some(8));
        assert_eq!(member_offset(&d, "mutex", &["owner", "counter"]), Some(0));
        assert_eq!(member_offset(&d, "mutex", &["nope"]), None);
        assert_eq!(gfp_bit_enum(&d).unwrap().len(), 2);
    }

    #[test]
    fn elf_without_btf_is_an_error() {
        assert!(elf_section(b"\x7fELF\x02\x01", ".BTF").is_none());
    }
}
