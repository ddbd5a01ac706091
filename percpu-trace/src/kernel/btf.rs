//! Facts read from BTF: parameter names of probed functions, struct offsets, the gfp bit enum,
//! tracepoint record structs.
//!
//! Two readers implement [`TypeSource`]: [`super::btf_file::BtfFile`] over the real blob
//! (vmlinux BTF, or the .BTF section of a vmlinux ELF given with `--btf`) and
//! [`super::btf_dump::RawDump`] over the text of `bpftool btf dump ... format raw`, which is
//! what the test fixtures store (a few KB extracted from real kernels instead of 5 MB blobs). Everything above the trait is shared.
use anyhow::{bail, Result};

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
    /// A pointer to `target`.
    Ptr {
        /// Pointed-to type id.
        target: u32,
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

/// The `TP_PROTO` parameter names of tracepoint `name` (`template`: its event class), what a
/// raw tracepoint program receives in order: those of the kernel's `__bpf_trace_<name>`
/// (or `__bpf_trace_<template>`) function without its leading `__data`. The event itself
/// must exist (its `btf_trace_<name>` typedef, one per event) and take as many arguments
/// as that function, or the function is another event's: `Err` says why not.
pub fn trace_args(src: &dyn TypeSource, name: &str, template: &str) -> Result<Vec<String>> {
    let event = src
        .ids_by_name(&format!("btf_trace_{name}"))
        .into_iter()
        .find_map(|id| match src.ty(id)? {
            Ty::Alias { target } => match src.ty(target)? {
                Ty::Ptr { target } => match src.ty(target)? {
                    Ty::Proto { params } => Some(params.len()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        });
    let Some(arity) = event else {
        bail!("btf_trace_{name} is not in BTF");
    };
    let func = func_params(src, &format!("__bpf_trace_{name}"))
        .or_else(|_| func_params(src, &format!("__bpf_trace_{template}")))?;
    if func.len() != arity || func.first().map(String::as_str) != Some("__data") {
        bail!(
            "__bpf_trace_{name}/{template} takes ({}), the event {arity} argument(s)",
            func.join(", ")
        );
    }
    Ok(func[1..].to_vec())
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
