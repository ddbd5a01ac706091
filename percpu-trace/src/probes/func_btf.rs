//! The kernel BTF aya needs to load fentry/fexit programs, without parsing all of it.
//!
//! aya's `FEntry::load`/`FExit::load` use the `Btf` they are given for one thing: the id of
//! the target FUNC, which becomes the program's `attach_btf_id` (the kernel then checks the
//! program against its own BTF). Parsing the whole kernel BTF with aya builds every type,
//! member and parameter (tens of MB on Debian's arm64 kernels, the tool's peak memory in
//! fentry mode), so instead the ids are found with `kernel::btf_file` (one pass over the
//! raw file) and aya gets a BTF blob that holds, at exactly those ids, FUNCs with those
//! names, and a 12-byte placeholder at every other id.
use std::path::Path;

use anyhow::{bail, Context, Result};
use aya::Btf;

use crate::kernel::{
    btf::{Ty, TypeSource},
    btf_file::BtfFile,
};

/// BTF_KIND_PTR: the smallest type record (no data after its 12 bytes).
const KIND_PTR: u32 = 2;
/// BTF_KIND_FUNC.
const KIND_FUNC: u32 = 12;
/// Function linkage "global" (a FUNC's vlen).
const LINKAGE_GLOBAL: u32 = 1;
/// The id past which the kernel BTF cannot be (a bound on the blob, 12 bytes per id).
const MAX_ID: u32 = 4_000_000;

/// A `Btf` in which each of `functions` has its id in the kernel BTF at `file`.
pub fn for_functions(file: &Path, functions: &[&str]) -> Result<Btf> {
    let src = BtfFile::open(file).with_context(|| format!("reading {}", file.display()))?;
    // A name with no FUNC is left out: aya then refuses that one program at load, as it
    // would with the whole BTF, and the others attach.
    let ids: Vec<(u32, &str)> = functions
        .iter()
        .filter_map(|&name| {
            src.ids_by_name(name)
                .into_iter()
                .find(|&i| matches!(src.ty(i), Some(Ty::Func { .. })))
                .map(|id| (id, name))
        })
        .collect();
    drop(src);
    let blob = blob(&ids)?;
    Btf::parse(&blob, aya::Endianness::default()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Raw BTF: header, type records for ids 1..=max (FUNCs at `ids`, placeholders elsewhere),
/// then the names.
fn blob(ids: &[(u32, &str)]) -> Result<Vec<u8>> {
    let max = ids.iter().map(|&(i, _)| i).max().unwrap_or(0);
    if max > MAX_ID {
        bail!("function type ids out of range: {ids:?}");
    }
    let mut strings = vec![0u8];
    let mut name_off = std::collections::HashMap::new();
    for &(id, name) in ids {
        name_off.insert(id, strings.len() as u32);
        strings.extend_from_slice(name.as_bytes());
        strings.push(0);
    }
    let type_len = max as usize * 12;
    let mut out = Vec::with_capacity(24 + type_len + strings.len());
    let word = |out: &mut Vec<u8>, w: u32| out.extend_from_slice(&w.to_ne_bytes());
    // struct btf_header: magic, version, flags, hdr_len, type_off, type_len, str_off, str_len.
    out.extend_from_slice(&0xeb9fu16.to_ne_bytes());
    out.extend_from_slice(&[1, 0]);
    for w in [
        24,
        0,
        type_len as u32,
        type_len as u32,
        strings.len() as u32,
    ] {
        word(&mut out, w);
    }
    for id in 1..=max {
        match name_off.get(&id) {
            Some(&off) => {
                word(&mut out, off);
                word(&mut out, KIND_FUNC << 24 | LINKAGE_GLOBAL);
                word(&mut out, 0);
            }
            None => {
                word(&mut out, 0);
                word(&mut out, KIND_PTR << 24);
                word(&mut out, 0);
            }
        }
    }
    out.extend_from_slice(&strings);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya_obj::btf::BtfKind;

    #[test]
    fn functions_keep_their_ids() {
        let b = blob(&[(5, "pcpu_alloc_noprof"), (2, "try_to_free_pages")]).unwrap();
        let btf = Btf::parse(&b, aya::Endianness::default()).unwrap();
        assert_eq!(
            btf.id_by_type_name_kind("pcpu_alloc_noprof", BtfKind::Func)
                .unwrap(),
            5
        );
        assert_eq!(
            btf.id_by_type_name_kind("try_to_free_pages", BtfKind::Func)
                .unwrap(),
            2
        );
        assert!(btf.id_by_type_name_kind("other", BtfKind::Func).is_err());
    }

    #[test]
    fn ids_out_of_range_are_refused() {
        assert!(blob(&[(MAX_ID + 1, "f")]).is_err());
        // No function found: a BTF with none, so each program fails on its own at load.
        let none = Btf::parse(&blob(&[]).unwrap(), aya::Endianness::default()).unwrap();
        assert!(none.id_by_type_name_kind("f", BtfKind::Func).is_err());
    }

    /// On a kernel with BTF, the ids agree with aya's own full parse.
    #[test]
    fn agrees_with_a_full_parse_on_this_kernel() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            panic!("no /sys/kernel/btf/vmlinux on this machine: the comparison cannot run");
        }
        let names = [
            "try_to_free_pages",
            "pcpu_alloc_noprof",
            "pcpu_create_chunk",
        ];
        let full = Btf::from_sys_fs().unwrap();
        let present: Vec<&str> = names
            .into_iter()
            .filter(|n| full.id_by_type_name_kind(n, BtfKind::Func).is_ok())
            .collect();
        assert!(!present.is_empty());
        let small = for_functions(path, &present).unwrap();
        for n in present {
            assert_eq!(
                small.id_by_type_name_kind(n, BtfKind::Func).unwrap(),
                full.id_by_type_name_kind(n, BtfKind::Func).unwrap(),
                "{n}"
            );
        }
    }
}
