//! The bench's floor in the guest: an empty BPF program (`r0 = 0; exit`) on each hook the
//! tool's hot programs use, in the tool's attach mode, named like the tool's program so the
//! bench compares them by name. What a program on that hook costs before it does anything.
//!
//! Raw bpf(2) and perf_event_open(2): kprobes through the kprobe PMU, tracepoints as raw
//! tracepoints (BPF_RAW_TRACEPOINT_OPEN by name, as the tool attaches them where the
//! kernel's BTF names their arguments, which the bench's Debian guest does), fentry/fexit
//! by the function's BTF id (read from the kernel's BTF here) and BPF_RAW_TRACEPOINT_OPEN. Everything is closed, so detached, when the process ends.
use std::{
    fs,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{bail, Context, Result};

use crate::bpf::{bpf, Attr};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_PROG_TYPE_KPROBE: u32 = 2;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_FENTRY: u32 = 24;
const BPF_TRACE_FEXIT: u32 = 25;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

/// How one empty program attaches.
#[derive(Clone, Copy)]
enum Hook {
    Kprobe(&'static str),
    Kretprobe(&'static str),
    Fentry(&'static str),
    Fexit(&'static str),
    RawTracepoint(&'static str),
}

/// The tool's hot programs per attach mode: (its program name, the hook).
fn hooks(mode: &str) -> Result<Vec<(&'static str, Hook)>> {
    let common = [
        (
            "contention_begin_raw",
            Hook::RawTracepoint("contention_begin"),
        ),
        ("contention_end_raw", Hook::RawTracepoint("contention_end")),
        ("task_exit_raw", Hook::RawTracepoint("sched_process_exit")),
    ];
    let own: Vec<(&str, Hook)> = match mode {
        "kprobe" => vec![
            ("pcpu_alloc_enter", Hook::Kprobe("pcpu_alloc_noprof")),
            ("pcpu_alloc_exit", Hook::Kretprobe("pcpu_alloc_noprof")),
            ("vmalloc_node", Hook::Kprobe("__vmalloc_node_range_noprof")),
        ],
        "fentry" => vec![
            ("fentry_pcpu_alloc", Hook::Fentry("pcpu_alloc_noprof")),
            ("fexit_pcpu_alloc", Hook::Fexit("pcpu_alloc_noprof")),
            (
                "fentry_vmalloc_node",
                Hook::Fentry("__vmalloc_node_range_noprof"),
            ),
        ],
        "tracepoint" => vec![(
            "percpu_alloc_raw",
            Hook::RawTracepoint("percpu_alloc_percpu"),
        )],
        m => bail!("unknown attach mode {m} (kprobe, fentry or tracepoint)"),
    };
    Ok(own.into_iter().chain(common).collect())
}

/// Attaches the floor for `mode` and holds it until the process is signalled.
pub fn run(mode: &str) -> Result<()> {
    let mut held = Vec::new();
    let btf = if mode == "fentry" {
        Some(fs::read("/sys/kernel/btf/vmlinux").context("reading /sys/kernel/btf/vmlinux")?)
    } else {
        None
    };
    for (name, hook) in hooks(mode)? {
        held.extend(attach(name, hook, btf.as_deref()).with_context(|| format!("floor {name}"))?);
    }
    println!("floor: {} empty programs attached ({mode})", held.len() / 2);
    // Until SIGINT/SIGTERM (default action: exit; the kernel closes every fd).
    loop {
        // SAFETY: no preconditions.
        unsafe { libc::pause() };
    }
}

/// Loads `r0 = 0; exit` and attaches it; returns the fds to keep (program, link/event).
fn attach(name: &str, hook: Hook, btf: Option<&[u8]>) -> Result<Vec<OwnedFd>> {
    let (prog_type, attach_type, btf_id) = match hook {
        Hook::Kprobe(_) | Hook::Kretprobe(_) => (BPF_PROG_TYPE_KPROBE, 0, 0),
        Hook::RawTracepoint(_) => (BPF_PROG_TYPE_RAW_TRACEPOINT, 0, 0),
        Hook::Fentry(f) | Hook::Fexit(f) => {
            let id = btf
                .and_then(|b| func_id(b, f))
                .with_context(|| format!("no BTF FUNC {f}"))?;
            let t = if matches!(hook, Hook::Fentry(_)) {
                BPF_TRACE_FENTRY
            } else {
                BPF_TRACE_FEXIT
            };
            (BPF_PROG_TYPE_TRACING, t, id)
        }
    };
    let prog = load(name, prog_type, attach_type, btf_id)?;
    let link = match hook {
        Hook::Fentry(_) | Hook::Fexit(_) => {
            // union bpf_attr.raw_tracepoint: name (NULL for tracing programs), prog_fd.
            let mut a = Attr::new().u32_at(8, prog.as_raw_fd() as u32);
            let fd = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut a).context("BPF_RAW_TRACEPOINT_OPEN")?;
            // SAFETY: the kernel just returned this descriptor.
            unsafe { OwnedFd::from_raw_fd(fd as i32) }
        }
        Hook::Kprobe(f) => perf_bpf(kprobe_event(f, false)?, &prog)?,
        Hook::Kretprobe(f) => perf_bpf(kprobe_event(f, true)?, &prog)?,
        Hook::RawTracepoint(ev) => {
            let name = std::ffi::CString::new(ev)?;
            // union bpf_attr.raw_tracepoint: name, prog_fd (the kernel copies the name).
            let mut a = Attr::new()
                .u64_at(0, name.as_ptr() as u64)
                .u32_at(8, prog.as_raw_fd() as u32);
            let fd = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut a).context("BPF_RAW_TRACEPOINT_OPEN")?;
            // SAFETY: the kernel just returned this descriptor.
            unsafe { OwnedFd::from_raw_fd(fd as i32) }
        }
    };
    Ok(vec![prog, link])
}

fn load(name: &str, prog_type: u32, attach_type: u32, btf_id: u32) -> Result<OwnedFd> {
    // r0 = 0 (BPF_ALU64|BPF_MOV|BPF_K); exit.
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    let mut pname = [0u8; 16];
    let n = name.len().min(15);
    pname[..n].copy_from_slice(&name.as_bytes()[..n]);
    // union bpf_attr, BPF_PROG_LOAD: prog_type 0, insn_cnt 4, insns 8, license 16,
    // prog_name 48, expected_attach_type 68, attach_btf_id 108.
    let mut a = Attr::new()
        .u32_at(0, prog_type)
        .u32_at(4, 2)
        .u64_at(8, insns.as_ptr() as u64)
        .u64_at(16, license.as_ptr() as u64)
        .u32_at(68, attach_type)
        .u32_at(108, btf_id);
    a.0[48..64].copy_from_slice(&pname);
    let fd = bpf(BPF_PROG_LOAD, &mut a).context("BPF_PROG_LOAD")?;
    // SAFETY: the kernel just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// perf_event_attr: type 0, size 4, config 8, config1 56, config2 64 (PERF_ATTR_SIZE_VER5).
fn perf_open(type_: u32, config: u64, config1: u64) -> Result<OwnedFd> {
    let mut attr = [0u8; 112];
    attr[0..4].copy_from_slice(&type_.to_ne_bytes());
    attr[4..8].copy_from_slice(&112u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&config.to_ne_bytes());
    attr[56..64].copy_from_slice(&config1.to_ne_bytes());
    // pid -1, cpu 0: a probe for every task, as libbpf opens them.
    // SAFETY: attr outlives the call and is as large as the size it declares.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1i32,
            0i32,
            -1i32,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        bail!("perf_event_open: {}", std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn kprobe_event(func: &str, ret: bool) -> Result<OwnedFd> {
    let pmu = "/sys/bus/event_source/devices/kprobe";
    let type_: u32 = fs::read_to_string(format!("{pmu}/type"))?.trim().parse()?;
    let config = if ret {
        // "config:N": the retprobe bit.
        let f = fs::read_to_string(format!("{pmu}/format/retprobe"))?;
        let bit: u32 = f.trim().trim_start_matches("config:").parse()?;
        1u64 << bit
    } else {
        0
    };
    let name = std::ffi::CString::new(func)?;
    // The kernel copies the name during the call.
    perf_open(type_, config, name.as_ptr() as u64)
}

fn perf_bpf(ev: OwnedFd, prog: &OwnedFd) -> Result<OwnedFd> {
    // SAFETY: ioctls on our own perf event fd with the documented arguments.
    unsafe {
        if libc::ioctl(ev.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd()) != 0 {
            bail!(
                "PERF_EVENT_IOC_SET_BPF: {}",
                std::io::Error::last_os_error()
            );
        }
        if libc::ioctl(ev.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) != 0 {
            bail!("PERF_EVENT_IOC_ENABLE: {}", std::io::Error::last_os_error());
        }
    }
    Ok(ev)
}

/// The type id of the BTF FUNC named `name` in raw kernel BTF (little-endian).
fn func_id(btf: &[u8], name: &str) -> Option<u32> {
    let u32_at = |o: usize| Some(u32::from_le_bytes(btf.get(o..o + 4)?.try_into().ok()?));
    if btf.get(0..2)? != [0x9f, 0xeb] {
        return None;
    }
    let hdr = u32_at(4)? as usize;
    let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
    let str_off = u32_at(16)? as usize;
    let types = hdr + type_off;
    let strs = hdr + str_off;
    let mut o = types;
    let mut id = 1u32;
    while o + 12 <= types + type_len {
        let (name_off, info) = (u32_at(o)? as usize, u32_at(o + 4)?);
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        if kind == 12 {
            let s = btf.get(strs + name_off..)?;
            let end = s.iter().position(|&b| b == 0)?;
            if &s[..end] == name.as_bytes() {
                return Some(id);
            }
        }
        // Bytes after the 12-byte common part, per BTF kind.
        let extra = match kind {
            1 | 14 | 17 => 4,     // INT, VAR, DECL_TAG
            3 => 12,              // ARRAY
            4 | 5 => vlen * 12,   // STRUCT, UNION
            6 | 13 => vlen * 8,   // ENUM, FUNC_PROTO
            15 | 19 => vlen * 12, // DATASEC, ENUM64
            _ => 0,               // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
        };
        o += 12 + extra;
        id += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::func_id;

    #[test]
    fn finds_a_func_after_other_kinds() {
        // Header (24 bytes), types: INT "i" (12 + 4), FUNC "f" (12), strings "\0i\0f\0".
        let mut b = vec![0x9f, 0xeb, 1, 0];
        b.extend(24u32.to_le_bytes()); // hdr_len
        b.extend(0u32.to_le_bytes()); // type_off
        b.extend(28u32.to_le_bytes()); // type_len
        b.extend(28u32.to_le_bytes()); // str_off
        b.extend(5u32.to_le_bytes()); // str_len
        b.extend(1u32.to_le_bytes());
        b.extend((1u32 << 24).to_le_bytes());
        b.extend(4u32.to_le_bytes());
        b.extend(32u32.to_le_bytes());
        b.extend(3u32.to_le_bytes());
        b.extend((12u32 << 24).to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(b"\0i\0f\0");
        assert_eq!(func_id(&b, "f"), Some(2));
        assert_eq!(func_id(&b, "i"), None);
        assert_eq!(func_id(&b, "g"), None);
    }
}
