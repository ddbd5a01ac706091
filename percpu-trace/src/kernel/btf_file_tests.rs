//! Tests of [`super::BtfFile`] on hand-made blobs.
use super::super::btf::{func_params, gfp_bit_enum, member_offset, struct_members};
use super::*;

/// Builds a little-endian BTF blob.
#[derive(Default)]
struct Blob {
    strs: Vec<u8>,
    types: Vec<u8>,
}

impl Blob {
    fn new() -> Self {
        Blob {
            strs: vec![0],
            types: Vec::new(),
        }
    }
    fn s(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strs.len() as u32;
        self.strs.extend_from_slice(s.as_bytes());
        self.strs.push(0);
        off
    }
    fn words(&mut self, w: &[u32]) {
        for x in w {
            self.types.extend_from_slice(&x.to_le_bytes());
        }
    }
    fn ty(&mut self, name: &str, kind: u32, kflag: bool, vlen: u32, size_type: u32) {
        let n = self.s(name);
        let info = (u32::from(kflag) << 31) | (kind << 24) | vlen;
        self.words(&[n, info, size_type]);
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        let tl = self.types.len() as u32;
        for w in [24, 0, tl, tl, self.strs.len() as u32] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&self.types);
        b.extend_from_slice(&self.strs);
        b
    }
}

/// One type of every kind, with the ones this tool reads made checkable.
fn sample() -> Vec<u8> {
    let mut b = Blob::new();
    // [1] int
    b.ty("int", INT, false, 0, 4);
    b.words(&[32]);
    // [2] ptr -> int
    b.ty("", PTR, false, 0, 1);
    // [3] array of int
    b.ty("", ARRAY, false, 0, 0);
    b.words(&[1, 1, 4]);
    // [4] struct with a bitfield (kind_flag): a at bit 0, b:3 at bit 35, c at 64
    b.ty("bits", STRUCT, true, 3, 16);
    let (a, bb, c) = (b.s("a"), b.s("b"), b.s("c"));
    b.words(&[a, 1, 0, bb, 1, (3 << 24) | 35, c, 1, 64]);
    // [5] anonymous union
    b.ty("", UNION, false, 1, 4);
    let u = b.s("u");
    b.words(&[u, 1, 0]);
    // [6] anonymous enum
    b.ty("", ENUM, false, 2, 4);
    let (io, fs) = (b.s("___GFP_IO_BIT"), b.s("___GFP_FS_BIT"));
    b.words(&[io, 6, fs, 0xffff_fff9]);
    // [7] fwd
    b.ty("fwd", FWD, false, 0, 0);
    // [8] typedef -> [4]
    b.ty("bits_t", TYPEDEF, false, 0, 4);
    // [9] volatile, [10] const, [11] restrict, all -> [8]
    b.ty("", VOLATILE, false, 0, 8);
    b.ty("", CONST, false, 0, 9);
    b.ty("", RESTRICT, false, 0, 10);
    // [12] proto (int x, struct bits *p, ...)
    b.ty("", FUNC_PROTO, false, 3, 1);
    let (x, p) = (b.s("x"), b.s("p"));
    b.words(&[x, 1, p, 2, 0, 0]);
    // [13] func f -> [12]
    b.ty("f", FUNC, false, 0, 12);
    // [14] var
    b.ty("v", VAR, false, 0, 1);
    b.words(&[1]);
    // [15] datasec with 2 entries
    b.ty(".data", DATASEC, false, 2, 8);
    b.words(&[14, 0, 4, 14, 4, 4]);
    // [16] float
    b.ty("double", FLOAT, false, 0, 8);
    // [17] decl tag on [13]
    b.ty("tag", DECL_TAG, false, 0, 13);
    b.words(&[u32::MAX]);
    // [18] type tag -> [2]
    b.ty("user", TYPE_TAG, false, 0, 2);
    // [19] enum64
    b.ty("big", ENUM64, true, 2, 8);
    let (lo, hi) = (b.s("LO"), b.s("HI"));
    b.words(&[lo, 5, 0, hi, 0x9abc_def0, 0x1234_5678]);
    // [20] a second func named f with the same proto
    b.ty("f", FUNC, false, 0, 12);
    b.bytes()
}

#[test]
fn every_kind_is_walked_and_read() {
    let f = BtfFile::from_bytes(sample()).unwrap();
    assert_eq!(f.offsets.len(), 20);
    assert_eq!(f.ty(0), Some(Ty::Other));
    assert_eq!(f.ty(21), None);
    assert_eq!(f.ids_by_name("f"), vec![13, 20]);
    assert_eq!(f.ids_by_name("int"), vec![1]);
    assert_eq!(f.ids_by_name("nope"), Vec::<u32>::new());
    // Anonymous structs, unions and enums are listed under "", not other kinds.
    assert_eq!(f.ids_by_name(""), vec![5, 6]);
    assert_eq!(
        f.ty(4),
        Some(Ty::Struct {
            name: "bits".into(),
            members: vec![
                Member {
                    name: "a".into(),
                    bit_offset: 0,
                    type_id: 1
                },
                Member {
                    name: "b".into(),
                    bit_offset: 35,
                    type_id: 1
                },
                Member {
                    name: "c".into(),
                    bit_offset: 64,
                    type_id: 1
                },
            ],
        })
    );
    assert_eq!(member_offset(&f, "bits", &["c"]), Some(8));
    assert_eq!(member_offset(&f, "bits", &["b"]), None); // not byte aligned
    assert_eq!(
        struct_members(&f, "bits").unwrap(),
        vec!["a".to_string(), "b".into(), "c".into()]
    );
    assert_eq!(
        f.ty(13),
        Some(Ty::Func {
            name: "f".into(),
            proto: 12
        })
    );
    assert_eq!(func_params(&f, "f").unwrap(), vec!["x", "p", "..."]);
    assert_eq!(f.ty(8), Some(Ty::Alias { target: 4 }));
    assert_eq!(f.ty(11), Some(Ty::Alias { target: 10 }));
    assert_eq!(f.ty(18), Some(Ty::Alias { target: 2 }));
    assert_eq!(f.ty(2), Some(Ty::Ptr { target: 1 }));
    for other in [1, 3, 7, 14, 15, 16, 17] {
        assert_eq!(f.ty(other), Some(Ty::Other), "type {other}");
    }
    assert_eq!(
        gfp_bit_enum(&f).unwrap(),
        vec![
            ("___GFP_IO_BIT".to_string(), 6),
            ("___GFP_FS_BIT".to_string(), 0xffff_fff9)
        ]
    );
    assert_eq!(
        f.ty(19),
        Some(Ty::Enum {
            name: "big".into(),
            values: vec![("LO".into(), 5), ("HI".into(), 0x1234_5678_9abc_def0)],
        })
    );
    assert_eq!(f.anon_enums().len(), 1);
}

#[test]
fn big_endian_blobs_are_read() {
    let mut b = Blob::new();
    b.ty("f", FUNC, false, 0, 2);
    b.ty("", FUNC_PROTO, false, 1, 0);
    let x = b.s("x");
    b.words(&[x, 0]);
    let mut blob = b.bytes();
    // Swap every 32-bit word of the header and the types; the magic is 16 bits.
    blob[..2].reverse();
    let end = 24 + b.types.len();
    for w in blob[4..end].chunks_mut(4) {
        w.reverse();
    }
    let f = BtfFile::from_bytes(blob).unwrap();
    assert_eq!(func_params(&f, "f").unwrap(), vec!["x"]);
}

/// Every query on whatever opened, so a bad offset inside a type cannot go unnoticed.
fn exercise(f: &BtfFile) {
    for id in 0..=f.offsets.len() as u32 + 1 {
        let _ = f.ty(id);
    }
    let _ = (f.ids_by_name("f"), f.ids_by_name(""), f.anon_enums());
    let _ = (func_params(f, "f"), member_offset(f, "bits", &["c"]));
}

#[test]
fn truncated_blobs_are_errors() {
    let blob = sample();
    for n in 0..blob.len() {
        // Cut inside the header or the type section: an error; inside the string
        // section: the header's lengths no longer fit, also an error.
        let r = BtfFile::from_bytes(blob[..n].to_vec());
        assert!(r.is_err(), "{n} bytes opened");
        let e = format!("{:#}", r.err().unwrap());
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn corrupt_blobs_do_not_panic() {
    let blob = sample();
    for i in 0..blob.len() {
        for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut b = blob.clone();
            b[i] = v;
            if let Ok(f) = BtfFile::from_bytes(b) {
                exercise(&f);
            }
        }
    }
    // Header fields at their extremes.
    for field in [4, 8, 12, 16, 20] {
        for v in [0, 1, 23, u32::MAX, u32::MAX - 23] {
            let mut b = blob.clone();
            b[field..field + 4].copy_from_slice(&v.to_le_bytes());
            if let Ok(f) = BtfFile::from_bytes(b) {
                exercise(&f);
            }
        }
    }
    // A string section without a final NUL: names read as "".
    let mut b = Blob::new();
    b.ty("f", FUNC, false, 0, 0);
    b.strs.pop();
    let f = BtfFile::from_bytes(b.bytes()).unwrap();
    assert_eq!(
        f.ty(1),
        Some(Ty::Func {
            name: "".into(),
            proto: 0
        })
    );
}

proptest::proptest! {
    #[test]
    fn garbage_does_not_panic(mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        if bytes.len() >= 4 && bytes[0] & 1 == 0 {
            // Half the cases get a valid magic, version and flags to go further.
            bytes[..4].copy_from_slice(&[0x9f, 0xeb, 1, 0]);
        }
        if let Ok(f) = BtfFile::from_bytes(bytes) {
            exercise(&f);
        }
    }
}

#[test]
fn elf_sections_are_found_by_name() {
    let read = |b: &[u8], o: u64, n: usize| b.get(o as usize..o as usize + n).map(<[u8]>::to_vec);
    assert!(elf_section(&|o, n| read(b"\x7fELF\x02\x01", o, n), ".BTF").is_none());
    // ELF header, then 2 section headers (shstrtab at index 1), then the names.
    let mut e = vec![0u8; 0x40 + 2 * 0x40];
    e[..6].copy_from_slice(b"\x7fELF\x02\x01");
    e[0x28..0x30].copy_from_slice(&0x40u64.to_le_bytes());
    e[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
    e[0x3c..0x3e].copy_from_slice(&2u16.to_le_bytes());
    e[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
    let names = e.len() as u64;
    e.extend_from_slice(b"\0.BTF\0.shstrtab\0");
    // Section 0: ".BTF" at 0x1000, 0x20 bytes; section 1: .shstrtab.
    e[0x40..0x44].copy_from_slice(&1u32.to_le_bytes());
    e[0x58..0x60].copy_from_slice(&0x1000u64.to_le_bytes());
    e[0x60..0x68].copy_from_slice(&0x20u64.to_le_bytes());
    e[0x80..0x84].copy_from_slice(&6u32.to_le_bytes());
    e[0x98..0xa0].copy_from_slice(&names.to_le_bytes());
    assert_eq!(
        elf_section(&|o, n| read(&e, o, n), ".BTF"),
        Some((0x1000, 0x20))
    );
    assert_eq!(elf_section(&|o, n| read(&e, o, n), ".BT"), None);
    assert_eq!(elf_section(&|o, n| read(&e, o, n), ".BTF.ext"), None);
    for i in 0..e.len() {
        let _ = elf_section(&|o, n| read(&e[..i], o, n), ".BTF");
    }
}

/// Lookups by name find every type whose name reads `name`: one whose name offset points
/// into the tail of a longer string, one at a second copy of the string, none for a name
/// that is only a prefix or a tail-less part, and the anonymous ones for "".
#[test]
fn names_are_found_by_offset_wherever_the_string_is() {
    let mut b = Blob::new();
    b.ty("long_mutex", STRUCT, false, 0, 8); // [1]
    let tail = b.strs.len() as u32 - "mutex\0".len() as u32;
    b.words(&[tail, STRUCT << 24, 8]); // [2] named "mutex", the tail of "long_mutex"
    b.ty("mutex", STRUCT, false, 0, 8); // [3] a second copy of the string
    b.ty("", UNION, false, 0, 4); // [4] anonymous
    b.ty("mutex_lock", FUNC, false, 0, 0); // [5]
    let f = BtfFile::from_bytes(b.bytes()).unwrap();
    assert_eq!(f.ids_by_name("mutex"), vec![2, 3]);
    assert_eq!(f.ids_by_name("long_mutex"), vec![1]);
    assert_eq!(f.ids_by_name("mutex_lock"), vec![5]);
    assert_eq!(f.ids_by_name("long"), Vec::<u32>::new());
    assert_eq!(f.ids_by_name("utex_lo"), Vec::<u32>::new());
    assert_eq!(f.ids_by_name("mutex\0lock"), Vec::<u32>::new());
    assert_eq!(f.ids_by_name(""), vec![4]);
}
