//! The few A64 (arm64) instruction classes the fix evidence reads, decoded from their
//! encodings (Arm ARM, "A64 Instruction Set Encoding"): move wide (MOVZ/MOVN/MOVK), logical
//! immediate (AND/ORR/EOR/ANDS with the bitmask-immediate encoding; TST and MOV are aliases),
//! add/sub immediate (CMP/CMN are aliases), test-bit-and-branch (TBZ/TBNZ) and unsigned
//! bitfield move (UBFX/LSR are aliases). Every A64 instruction is 4 little-endian bytes, so a
//! function decodes without a length decoder; anything else is skipped.
//!
//! Constants wider than 16 bits and not a bitmask (GFP masks such as 0x12cc0) are built in a
//! register by MOVZ then MOVK: [`constants`] follows those chains within straight-line code.

/// One decoded instruction of a class listed above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// MOVZ/MOVN/MOVK: `rd` gets `imm16 << shift` (MOVN: inverted; MOVK: keeps other bits).
    MovWide {
        /// Which of the three.
        op: MovOp,
        /// Destination register number (31 = zero register).
        rd: u8,
        /// The 16-bit immediate.
        imm16: u16,
        /// 0, 16, 32 or 48.
        shift: u8,
        /// 64-bit (X) register.
        sf: bool,
    },
    /// AND/ORR/EOR/ANDS with a decoded bitmask immediate.
    Logical {
        /// Which operation.
        op: LogicOp,
        /// Destination (31 is the zero register for ANDS = TST, else SP).
        rd: u8,
        /// Source (31 is the zero register: ORR from it is MOV).
        rn: u8,
        /// The immediate, already decoded (zero-extended for 32-bit forms).
        imm: u64,
    },
    /// ADD/ADDS/SUB/SUBS immediate (`SUBS zr, rn, #imm` is `CMP rn, #imm`).
    AddSub {
        /// Subtract.
        sub: bool,
        /// Sets flags.
        set_flags: bool,
        /// Destination.
        rd: u8,
        /// Source.
        rn: u8,
        /// imm12, shifted by 12 when the encoding says so.
        imm: u64,
    },
    /// TBZ/TBNZ: branch on one bit of `rt`.
    TestBit {
        /// TBNZ (branch when the bit is set).
        nonzero: bool,
        /// Register tested.
        rt: u8,
        /// Bit number (0..63).
        bit: u8,
    },
    /// UBFM (UBFX, LSR, LSL aliases): `immr`/`imms` as encoded.
    Ubfm {
        /// Destination.
        rd: u8,
        /// Source.
        rn: u8,
        /// Rotate amount (the extracted field's lowest bit for UBFX).
        immr: u8,
        /// Highest bit of the field for UBFX (`immr + width - 1`).
        imms: u8,
    },
}

/// The three move-wide operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MovOp {
    /// Move wide with zero.
    Movz,
    /// Move wide with NOT.
    Movn,
    /// Move wide with keep.
    Movk,
}

/// The four logical-immediate operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogicOp {
    /// AND.
    And,
    /// ORR.
    Orr,
    /// EOR.
    Eor,
    /// ANDS (TST when the destination is the zero register).
    Ands,
}

/// Decodes one instruction word, or None for a class not listed in the module doc (or a
/// reserved encoding of one that is).
pub fn decode(w: u32) -> Option<Insn> {
    let sf = w >> 31 == 1;
    let rd = (w & 0x1f) as u8;
    let rn = ((w >> 5) & 0x1f) as u8;
    match (w >> 23) & 0x3f {
        // Move wide immediate: sf opc 100101 hw imm16 Rd.
        0b100101 => {
            let op = match (w >> 29) & 3 {
                0b00 => MovOp::Movn,
                0b10 => MovOp::Movz,
                0b11 => MovOp::Movk,
                _ => return None,
            };
            let hw = ((w >> 21) & 3) as u8;
            if !sf && hw > 1 {
                return None;
            }
            Some(Insn::MovWide {
                op,
                rd,
                imm16: ((w >> 5) & 0xffff) as u16,
                shift: hw * 16,
                sf,
            })
        }
        // Logical immediate: sf opc 100100 N immr imms Rn Rd.
        0b100100 => {
            let n = (w >> 22) & 1;
            if !sf && n == 1 {
                return None;
            }
            let immr = (w >> 16) & 0x3f;
            let imms = (w >> 10) & 0x3f;
            let imm = bitmask_imm(n, imms, immr, if sf { 64 } else { 32 })?;
            let op = match (w >> 29) & 3 {
                0b00 => LogicOp::And,
                0b01 => LogicOp::Orr,
                0b10 => LogicOp::Eor,
                _ => LogicOp::Ands,
            };
            Some(Insn::Logical { op, rd, rn, imm })
        }
        // Add/subtract immediate: sf op S 100010 sh imm12 Rn Rd.
        0b100010 => {
            let imm12 = ((w >> 10) & 0xfff) as u64;
            let sh = (w >> 22) & 1;
            Some(Insn::AddSub {
                sub: (w >> 30) & 1 == 1,
                set_flags: (w >> 29) & 1 == 1,
                rd,
                rn,
                imm: imm12 << (12 * sh),
            })
        }
        // Bitfield: sf opc 100110 N immr imms Rn Rd; UBFM is opc 10, N must equal sf.
        0b100110 if (w >> 29) & 3 == 0b10 => {
            let n = (w >> 22) & 1;
            let immr = ((w >> 16) & 0x3f) as u8;
            let imms = ((w >> 10) & 0x3f) as u8;
            if n != sf as u32 || (!sf && (immr > 31 || imms > 31)) {
                return None;
            }
            Some(Insn::Ubfm { rd, rn, immr, imms })
        }
        // Test and branch: b5 011011 op b40 imm14 Rt (bits 30..25; bit 24 is op).
        _ if (w >> 25) & 0x3f == 0b011011 => Some(Insn::TestBit {
            nonzero: (w >> 24) & 1 == 1,
            rt: rd,
            bit: (((w >> 31) << 5) | ((w >> 19) & 0x1f)) as u8,
        }),
        _ => None,
    }
}

/// DecodeBitMasks(N, imms, immr, immediate = TRUE) of the Arm ARM: the element size is
/// 2^len where len is the highest set bit of N:NOT(imms); the element is S+1 ones rotated
/// right by R; it is replicated to `datasize` bits. None for the reserved encodings.
pub fn bitmask_imm(n: u32, imms: u32, immr: u32, datasize: u32) -> Option<u64> {
    let combined = (n << 6) | (!imms & 0x3f);
    if combined == 0 {
        return None;
    }
    let len = 31 - combined.leading_zeros();
    if len < 1 {
        return None;
    }
    let esize = 1u32 << len;
    if esize > datasize {
        return None;
    }
    let levels = esize - 1;
    let s = imms & levels;
    let r = immr & levels;
    // All ones in an element is reserved for logical immediates.
    if s == levels {
        return None;
    }
    let ones = |k: u32| if k >= 64 { u64::MAX } else { (1u64 << k) - 1 };
    let welem = ones(s + 1);
    let emask = ones(esize);
    let rotated = if r == 0 {
        welem
    } else {
        ((welem >> r) | (welem << (esize - r))) & emask
    };
    let mut out = 0u64;
    let mut pos = 0;
    while pos < datasize {
        out |= rotated << pos;
        pos += esize;
    }
    Some(out & ones(datasize))
}

/// Instructions of `code` at their byte offsets (a trailing partial word is ignored).
pub fn instructions(code: &[u8]) -> impl Iterator<Item = (usize, Insn)> + '_ {
    code.chunks_exact(4).enumerate().filter_map(|(i, c)| {
        let w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        decode(w).map(|d| (i * 4, d))
    })
}

/// How a constant is used or made at one offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstUse {
    /// A register holds it after a MOVZ/MOVN(/MOVK chain) or `ORR rd, zr, #imm`.
    Built,
    /// Operand of AND/ANDS (TST) immediate.
    Mask,
    /// Operand of ORR immediate with a real source register (sets bits).
    Set,
    /// Operand of CMP (SUBS to the zero register) immediate.
    Compare,
}

/// Every constant of `code`: (offset, how, value), with MOVZ/MOVK chains followed within
/// straight-line code (a MOVK whose register was last written by a MOVZ/MOVN/MOVK before
/// it; any other decoded write of that register breaks the chain). 32-bit values of W
/// registers are reported zero-extended.
pub fn constants(code: &[u8]) -> Vec<(usize, ConstUse, u64)> {
    let mut regs: [Option<u64>; 32] = [None; 32];
    let mut out = Vec::new();
    for (off, insn) in instructions(code) {
        match insn {
            Insn::MovWide {
                op,
                rd,
                imm16,
                shift,
                sf,
            } => {
                let width_mask = if sf { u64::MAX } else { 0xffff_ffff };
                let part = (imm16 as u64) << shift;
                let v = match op {
                    MovOp::Movz => Some(part),
                    MovOp::Movn => Some(!part & width_mask),
                    MovOp::Movk => {
                        regs[rd as usize].map(|old| (old & !(0xffffu64 << shift)) | part)
                    }
                };
                regs[rd as usize] = v.map(|v| v & width_mask);
                if let Some(v) = regs[rd as usize] {
                    out.push((off, ConstUse::Built, v));
                }
            }
            Insn::Logical { op, rd, rn, imm } => {
                match op {
                    LogicOp::Orr if rn == 31 => out.push((off, ConstUse::Built, imm)),
                    LogicOp::Orr => out.push((off, ConstUse::Set, imm)),
                    LogicOp::And | LogicOp::Ands => out.push((off, ConstUse::Mask, imm)),
                    LogicOp::Eor => {}
                }
                regs[rd as usize] = (op == LogicOp::Orr && rn == 31).then_some(imm);
            }
            Insn::AddSub {
                sub,
                set_flags,
                rd,
                imm,
                ..
            } => {
                if sub && set_flags && rd == 31 {
                    out.push((off, ConstUse::Compare, imm));
                }
                regs[rd as usize] = None;
            }
            Insn::Ubfm { rd, .. } => regs[rd as usize] = None,
            Insn::TestBit { .. } => {}
        }
    }
    out
}

/// Where code tests bit `bit` alone (TBZ/TBNZ on it, TST/AND with exactly that bit, or UBFX
/// of that one bit), with the instruction as text ("tbz #10").
pub fn bit_tests(code: &[u8], bit: u8) -> Vec<(usize, String)> {
    instructions(code)
        .filter(|(_, i)| match *i {
            Insn::TestBit { bit: b, .. } => b == bit,
            Insn::Logical {
                op: LogicOp::And | LogicOp::Ands,
                imm,
                ..
            } => imm == 1u64 << bit,
            Insn::Ubfm { immr, imms, .. } => immr == bit && imms == bit,
            _ => false,
        })
        .map(|(o, i)| {
            let text = match i {
                Insn::TestBit { nonzero: true, .. } => format!("tbnz #{bit}"),
                Insn::TestBit { .. } => format!("tbz #{bit}"),
                Insn::Logical {
                    op: LogicOp::Ands,
                    rd: 31,
                    ..
                } => format!("tst #{:#x}", 1u64 << bit),
                Insn::Logical {
                    op: LogicOp::Ands, ..
                } => format!("ands #{:#x}", 1u64 << bit),
                Insn::Logical { .. } => format!("and #{:#x}", 1u64 << bit),
                _ => format!("ubfx #{bit}, #1"),
            };
            (o, text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Encodings below were checked against `llvm-objdump --triple=aarch64 -d`.
    fn one(w: u32) -> Insn {
        decode(w).unwrap_or_else(|| panic!("{w:#010x} not decoded"))
    }

    #[test]
    fn bitmask_immediates() {
        // and w0, w0, #0x400 = 0x12160000
        assert_eq!(
            one(0x1216_0000),
            Insn::Logical {
                op: LogicOp::And,
                rd: 0,
                rn: 0,
                imm: 0x400
            }
        );
        // orr w1, w1, #0x80000 = 0x320d0021
        assert_eq!(
            one(0x320d_0021),
            Insn::Logical {
                op: LogicOp::Orr,
                rd: 1,
                rn: 1,
                imm: 0x80000
            }
        );
        // tst w0, #0x400 = 0x7216001f
        assert!(matches!(
            one(0x7216_001f),
            Insn::Logical {
                op: LogicOp::Ands,
                rd: 31,
                imm: 0x400,
                ..
            }
        ));
        // and w1, w1, #0xfff7ffff = 0x120c7821 (memalloc_noio_restore's clear)
        assert!(matches!(
            one(0x120c_7821),
            Insn::Logical {
                imm: 0xfff7_ffff,
                ..
            }
        ));
        // and x0, x0, #0x5555555555555555 = 0x9200f000 (2-bit elements)
        assert!(matches!(
            one(0x9200_f000),
            Insn::Logical {
                imm: 0x5555_5555_5555_5555,
                ..
            }
        ));
        // and w0, w0, #0xc0c0c0c0 = 0x1202c400 (8-bit elements 0xc0 replicated)
        assert!(matches!(
            one(0x1202_c400),
            Insn::Logical {
                imm: 0xc0c0_c0c0,
                ..
            }
        ));
        // Reserved: all ones in the element; N=1 in a 32-bit form.
        assert_eq!(bitmask_imm(0, 0b111111, 0, 32), None);
        assert_eq!(bitmask_imm(1, 0b111111, 0, 64), None);
        assert_eq!(decode(0x1240_0000), None);
        // 0xcc0 (two runs) and 0x12cc0 are not bitmask immediates: no encoding yields them.
        for n in 0..2 {
            for s in 0..64 {
                for r in 0..64 {
                    let v = bitmask_imm(n, s, r, 32);
                    assert!(v != Some(0xcc0) && v != Some(0x12cc0) && v != Some(0x12c00));
                }
            }
        }
    }

    #[test]
    fn moves_branches_compares() {
        // mov w1, #0x2cc0 ; movk w1, #0x1, lsl #16  -> 0x12cc0
        let code = [0x5285_9801u32, 0x72a0_0021]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect::<Vec<_>>();
        assert_eq!(
            constants(&code),
            vec![(0, ConstUse::Built, 0x2cc0), (4, ConstUse::Built, 0x12cc0)]
        );
        // mov w2, #0xcc0 = 0x52819802
        assert!(matches!(
            one(0x5281_9802),
            Insn::MovWide {
                op: MovOp::Movz,
                rd: 2,
                imm16: 0xcc0,
                ..
            }
        ));
        // movn w0, #0x0 (mov w0, #-1)
        let c = constants(&0x1280_0000u32.to_le_bytes());
        assert_eq!(c, vec![(0, ConstUse::Built, 0xffff_ffff)]);
        // tbz w19, #10, +0x40 = 0x36500213 ; tbnz x0, #33, ... = 0xb7080000
        assert_eq!(
            one(0x3650_0213),
            Insn::TestBit {
                nonzero: false,
                rt: 19,
                bit: 10
            }
        );
        assert!(matches!(
            one(0xb708_0000),
            Insn::TestBit {
                bit: 33,
                nonzero: true,
                ..
            }
        ));
        // cmp w0, #0xcc0 = 0x7133001f
        assert_eq!(
            constants(&0x7133_001fu32.to_le_bytes()),
            vec![(0, ConstUse::Compare, 0xcc0)]
        );
        // ubfx w0, w1, #10, #1 = 0x530a2820
        assert_eq!(
            bit_tests(&0x530a_2820u32.to_le_bytes(), 10),
            vec![(0, "ubfx #10, #1".to_string())]
        );
        // A movk whose register was overwritten by an add is not chained.
        let code = [0x5285_9801u32, 0x1100_0421, 0x72a0_0021]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect::<Vec<_>>();
        assert_eq!(constants(&code), vec![(0, ConstUse::Built, 0x2cc0)]);
    }
}
