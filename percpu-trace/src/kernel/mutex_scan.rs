//! Finding pcpu_alloc_mutex without CONFIG_KALLSYMS_ALL: read the machine code of the
//! functions that lock it and take the address they pass to mutex_lock*.
//!
//! pcpu_alloc_mutex is a static data symbol, so /proc/kallsyms only lists it with
//! CONFIG_KALLSYMS_ALL. The functions that lock it (pcpu_alloc_noprof, pcpu_balance_workfn)
//! are text symbols, and their code loads the mutex address into the first argument register
//! right before calling mutex_lock / mutex_lock_killable. This module decodes just those
//! instruction forms; the caller validates the result by reading the candidate as a
//! struct mutex.

use super::{
    access::KernelMemory,
    symbols::{Sym, SymbolTable},
};

/// A direct call found in a function's code, and the first-argument value set up before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockCall {
    /// Address of the call instruction.
    pub call_at: u64,
    /// Callee.
    pub target: u64,
    /// Address loaded into the first argument register before the call, if found.
    pub arg0: Option<u64>,
}

/// How far back (bytes) to look for the argument set-up before a call.
const LOOKBACK: usize = 48;

/// Scans x86_64 code at `base` for direct calls (`e8 rel32`) to any of `targets` and the
/// last `mov $imm32,%rdi` (48 c7 c7, sign-extended) or `lea disp32(%rip),%rdi` (48 8d 3d)
/// before each one.
pub fn scan_x86_64(code: &[u8], base: u64, targets: &[u64]) -> Vec<LockCall> {
    let mut out = Vec::new();
    for i in 0..code.len().saturating_sub(4) {
        if code[i] != 0xe8 {
            continue;
        }
        let rel = i32::from_le_bytes(code[i + 1..i + 5].try_into().unwrap());
        let next = base + i as u64 + 5;
        let target = next.wrapping_add_signed(rel as i64);
        if !targets.contains(&target) {
            continue;
        }
        let from = i.saturating_sub(LOOKBACK);
        let mut arg0 = None;
        for j in from..i.saturating_sub(6) {
            let w = &code[j..j + 7];
            let imm = i32::from_le_bytes(w[3..7].try_into().unwrap());
            match (w[0], w[1], w[2]) {
                (0x48, 0xc7, 0xc7) => arg0 = Some(imm as i64 as u64),
                (0x48, 0x8d, 0x3d) => {
                    arg0 = Some((base + j as u64 + 7).wrapping_add_signed(imm as i64))
                }
                _ => {}
            }
        }
        out.push(LockCall {
            call_at: base + i as u64,
            target,
            arg0,
        });
    }
    out
}

/// Scans aarch64 code at `base` for `bl` to any of `targets` and the last
/// `adrp x0, page` + `add x0, x0, #lo12` pair before each one.
pub fn scan_aarch64(code: &[u8], base: u64, targets: &[u64]) -> Vec<LockCall> {
    let insns: Vec<u32> = code
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let mut out = Vec::new();
    for (i, &insn) in insns.iter().enumerate() {
        if insn & 0xfc00_0000 != 0x9400_0000 {
            continue; // not BL
        }
        let pc = base + 4 * i as u64;
        let imm26 = ((insn & 0x03ff_ffff) << 6) as i32 >> 6;
        let target = pc.wrapping_add_signed(imm26 as i64 * 4);
        if !targets.contains(&target) {
            continue;
        }
        let mut page = None;
        let mut arg0 = None;
        for (k, &prev) in insns
            .iter()
            .enumerate()
            .take(i)
            .skip(i.saturating_sub(LOOKBACK / 4))
        {
            let ppc = base + 4 * k as u64;
            if prev & 0x9f00_001f == 0x9000_0000 {
                // ADRP x0: imm = immhi:immlo << 12, relative to the 4 KiB page of pc.
                let immlo = ((prev >> 29) & 3) as i64;
                let immhi = (((prev >> 5) & 0x7ffff) as i64) << 45 >> 45;
                page = Some((ppc & !0xfff).wrapping_add_signed(((immhi << 2) | immlo) << 12));
            } else if prev & 0xffc0_03ff == 0x9100_0000 {
                // ADD x0, x0, #imm12 (no shift)
                if let Some(p) = page {
                    arg0 = Some(p + ((prev >> 10) & 0xfff) as u64);
                }
            }
        }
        out.push(LockCall {
            call_at: pc,
            target,
            arg0,
        });
    }
    out
}

/// The address most calls agree on, with how many agree.
pub fn consensus(calls: &[LockCall]) -> Option<(u64, usize)> {
    let mut counts: Vec<(u64, usize)> = Vec::new();
    for a in calls.iter().filter_map(|c| c.arg0) {
        match counts.iter_mut().find(|(x, _)| *x == a) {
            Some((_, n)) => *n += 1,
            None => counts.push((a, 1)),
        }
    }
    counts.into_iter().max_by_key(|&(_, n)| n)
}

/// Whether `bytes` (read at `addr`) look like an idle or held struct mutex whose `wait_list`
/// is at `wait_list_off`: an empty list points at itself, a non-empty one at kernel memory.
pub fn looks_like_mutex(bytes: &[u8], addr: u64, wait_list_off: usize) -> bool {
    let word = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    let (Some(next), Some(prev)) = (word(wait_list_off), word(wait_list_off + 8)) else {
        return false;
    };
    let head = addr + wait_list_off as u64;
    let kernel_ptr = |p: u64| p >= 0xffff_0000_0000_0000;
    (next == head && prev == head) || (next != head && kernel_ptr(next) && kernel_ptr(prev))
}

/// Finds pcpu_alloc_mutex as the address the functions that lock it pass to
/// mutex_lock/mutex_lock_killable, then checks the memory there looks like a struct mutex
/// (owner 0 or a kernel pointer; an empty or kernel-pointing wait list). `mem` reads kernel
/// memory. Returns (address, functions scanned, calls agreeing).
pub(crate) fn mutex_from_code(
    table: &SymbolTable,
    arch: &str,
    wait: Option<(String, u32)>,
    mem: &mut dyn KernelMemory,
) -> Result<(u64, Vec<String>, usize), String> {
    let lockers: Vec<Sym> = ["pcpu_alloc_noprof", "pcpu_alloc", "pcpu_balance_workfn"]
        .iter()
        .filter_map(|n| table.get(n))
        .filter(|s| s.addr != 0)
        .collect();
    let targets: Vec<u64> = ["mutex_lock", "mutex_lock_killable"]
        .iter()
        .filter_map(|n| table.get(n))
        .map(|s| s.addr)
        .filter(|&a| a != 0)
        .collect();
    if lockers.is_empty() || targets.is_empty() {
        return Err(
            "the locking functions or mutex_lock* are not in kallsyms (or addresses hidden)".into(),
        );
    }
    let mut calls = Vec::new();
    for f in &lockers {
        let code = mem.read(f.addr, 4096)?;
        calls.extend(match arch {
            "x86_64" => scan_x86_64(&code, f.addr, &targets),
            "aarch64" => scan_aarch64(&code, f.addr, &targets),
            other => return Err(format!("no code decoder for {other}")),
        });
    }
    let (addr, n) = consensus(&calls)
        .ok_or_else(|| "no mutex_lock* call with a decodable argument".to_string())?;
    let bytes = mem.read(addr, 64)?;
    let word = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let kptr = |p: u64| p >= 0xffff_0000_0000_0000;
    let owner = word(0).unwrap_or(u64::MAX) & !7;
    let ok_owner = owner == 0 || kptr(owner);
    let ok_wait = match &wait {
        Some((name, off)) if name == "wait_list" => looks_like_mutex(&bytes, addr, *off as usize),
        Some((_, off)) => word(*off as usize).is_some_and(|p| p == 0 || kptr(p)),
        None => true,
    };
    if !(ok_owner && ok_wait) {
        return Err(format!(
            "candidate {addr:#x} does not look like a struct mutex"
        ));
    }
    Ok((addr, lockers.iter().map(|s| s.name.clone()).collect(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pcpu_alloc_noprof as loaded on a 6.18.44 x86_64 host (read through read_kmem).
    const PCPU_ALLOC: &[u8] =
        include_bytes!("../../tests/fixtures/kernels/host-6.18/pcpu_alloc_noprof.bin");
    const BASE: u64 = 0xffffffff815c4c20;
    const MUTEX_LOCK: u64 = 0xffffffff821fc670;
    const MUTEX_LOCK_KILLABLE: u64 = 0xffffffff821fc590;

    #[test]
    fn finds_pcpu_alloc_mutex_in_real_x86_code() {
        let calls = scan_x86_64(PCPU_ALLOC, BASE, &[MUTEX_LOCK, MUTEX_LOCK_KILLABLE]);
        assert!(calls
            .iter()
            .any(|c| c.target == MUTEX_LOCK && c.arg0 == Some(0xffffffff83125180)));
        assert_eq!(consensus(&calls).map(|c| c.0), Some(0xffffffff83125180));
    }

    #[test]
    fn aarch64_adrp_add_bl() {
        // adrp x0, #0x1000 ; add x0, x0, #0x180 ; bl +8 (from 0x...008 to 0x...010)
        let base = 0xffff800080000000u64;
        let adrp = 0x9000_0000u32 | (1 << 29); // immlo = 1 -> +0x1000
        let add = 0x9100_0000u32 | (0x180 << 10);
        let bl = 0x9400_0002u32;
        let code: Vec<u8> = [adrp, add, bl]
            .iter()
            .flat_map(|i| i.to_le_bytes())
            .collect();
        let calls = scan_aarch64(&code, base, &[base + 8 + 8]);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].arg0, Some(base + 0x1000 + 0x180));
    }

    #[test]
    fn mutex_shape() {
        let addr = 0xffffffff83125180u64;
        let mut b = vec![0u8; 32];
        b[16..24].copy_from_slice(&(addr + 16).to_le_bytes());
        b[24..32].copy_from_slice(&(addr + 16).to_le_bytes());
        assert!(looks_like_mutex(&b, addr, 16));
        assert!(!looks_like_mutex(&[0u8; 32], addr, 16));
        assert!(!looks_like_mutex(&[0u8; 8], addr, 16));
    }
}
