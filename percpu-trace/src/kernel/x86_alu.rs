//! The few x86_64 instruction forms the regression evidence reads: ALU operations of a
//! 32-bit register with a 32-bit immediate (`and`/`or`/`cmp`/`test $imm32,%r32`, including
//! the short `%eax` forms), `test $imm8,%ah..%bh` and `bt $imm8,%r32`. Found by their exact
//! encodings (Intel SDM vol. 2) at every byte offset, not by a full length decoder: each form
//! is checked whole (opcode, a register ModRM, the immediate), so a match inside another
//! instruction's bytes needs six specific bytes to line up. Evidence names the form found.

/// The operation of one matched instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    /// `and $imm,%r32`.
    And,
    /// `or $imm,%r32`.
    Or,
    /// `cmp $imm,%r32`.
    Cmp,
    /// `test $imm,%r32` (also `test $imm8,%ah..%bh`, given as the 32-bit value it tests).
    Test,
    /// `bt $n,%r32`, given as the value `1 << n`.
    Bt,
}

impl AluOp {
    /// Mnemonic.
    pub fn name(self) -> &'static str {
        match self {
            AluOp::And => "and",
            AluOp::Or => "or",
            AluOp::Cmp => "cmp",
            AluOp::Test => "test",
            AluOp::Bt => "bt",
        }
    }
}

/// One matched instruction: where, what, and the 32-bit value it works with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AluImm {
    /// Byte offset of the opcode (a REX prefix before it is not included).
    pub offset: usize,
    /// Operation.
    pub op: AluOp,
    /// Immediate as a 32-bit value (for `test $imm8,%ah` the value shifted into bits 8-15).
    pub value: u32,
}

fn imm32(code: &[u8], at: usize) -> Option<u32> {
    code.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Every matched instruction of `code` (see the module doc), in offset order.
pub fn alu_imms(code: &[u8]) -> Vec<AluImm> {
    let mut out = Vec::new();
    for i in 0..code.len() {
        // A REX byte before the opcode makes ModRM 4..7 name spl..dil instead of ah..bh.
        let rex = i > 0 && (0x40..=0x4f).contains(&code[i - 1]);
        let m = |op, value| {
            Some(AluImm {
                offset: i,
                op,
                value,
            })
        };
        let found = match code[i] {
            0x25 => imm32(code, i + 1).and_then(|v| m(AluOp::And, v)),
            0x0d => imm32(code, i + 1).and_then(|v| m(AluOp::Or, v)),
            0x3d => imm32(code, i + 1).and_then(|v| m(AluOp::Cmp, v)),
            0xa9 => imm32(code, i + 1).and_then(|v| m(AluOp::Test, v)),
            0x81 => match code.get(i + 1) {
                Some(&modrm) if modrm >> 6 == 3 => {
                    let op = match (modrm >> 3) & 7 {
                        1 => Some(AluOp::Or),
                        4 => Some(AluOp::And),
                        7 => Some(AluOp::Cmp),
                        _ => None,
                    };
                    op.and_then(|op| imm32(code, i + 2).and_then(|v| m(op, v)))
                }
                _ => None,
            },
            0xf7 => match code.get(i + 1) {
                Some(&modrm) if modrm >> 6 == 3 && (modrm >> 3) & 7 == 0 => {
                    imm32(code, i + 2).and_then(|v| m(AluOp::Test, v))
                }
                _ => None,
            },
            0xf6 => match (code.get(i + 1), code.get(i + 2)) {
                (Some(&modrm), Some(&imm)) if !rex && (0xc4..=0xc7).contains(&modrm) => {
                    m(AluOp::Test, (imm as u32) << 8)
                }
                _ => None,
            },
            0x0f => match (code.get(i + 1), code.get(i + 2), code.get(i + 3)) {
                (Some(0xba), Some(&modrm), Some(&n)) if modrm >> 3 == 0b11_100 && n < 32 => {
                    m(AluOp::Bt, 1u32 << n)
                }
                _ => None,
            },
            _ => None,
        };
        out.extend(found);
    }
    out
}

/// `op $value` in code, as found.
pub fn find(code: &[u8], ops: &[AluOp], value: u32) -> Vec<AluImm> {
    alu_imms(code)
        .into_iter()
        .filter(|a| ops.contains(&a.op) && a.value == value)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        // Encodings from `objdump -d` of Debian 7.2.13's pcpu_alloc_noprof and `as`.
        let cases: &[(&[u8], AluOp, u32)] = &[
            (&[0x81, 0xe3, 0x00, 0x04, 0x00, 0x00], AluOp::And, 0x400), // and $0x400,%ebx
            (&[0x25, 0xc0, 0x2c, 0x01, 0x00], AluOp::And, 0x12cc0),     // and $0x12cc0,%eax
            (&[0x3d, 0xc0, 0x0c, 0x00, 0x00], AluOp::Cmp, 0xcc0),       // cmp $0xcc0,%eax
            (
                &[0x41, 0x81, 0xfc, 0xc0, 0x0c, 0x00, 0x00],
                AluOp::Cmp,
                0xcc0,
            ), // cmp $0xcc0,%r12d
            (&[0xf7, 0xc3, 0x00, 0x00, 0x40, 0x00], AluOp::Test, 0x400000), // test $0x400000,%ebx
            (&[0xf6, 0xc4, 0x04], AluOp::Test, 0x400),                  // test $0x4,%ah
            (&[0x0f, 0xba, 0xe0, 0x0a], AluOp::Bt, 0x400),              // bt $0xa,%eax
        ];
        for (code, op, v) in cases {
            let f = alu_imms(code);
            assert!(
                f.iter().any(|a| a.op == *op && a.value == *v),
                "{code:02x?}: {f:?}"
            );
        }
        // test $0x4,%spl (REX) is not test $0x4,%ah; a memory operand is not a register form.
        assert!(find(&[0x40, 0xf6, 0xc4, 0x04], &[AluOp::Test], 0x400).is_empty());
        assert!(find(
            &[0x81, 0x63, 0x08, 0x00, 0x04, 0x00, 0x00],
            &[AluOp::And],
            0x400
        )
        .is_empty());
        assert!(alu_imms(&[0x25, 0x00]).is_empty());
    }
}
