//! The raw `bpf(2)` calls the workloads need: percpu array maps (one percpu allocation per
//! entry) and listing the BPF objects and kprobes alive in the kernel.
use std::{collections::BTreeSet, fs, io, os::fd::FromRawFd, os::fd::OwnedFd};

use anyhow::{bail, Result};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_MAP_GET_NEXT_ID: libc::c_long = 12;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;

/// Big enough for every `union bpf_attr` member used here; the kernel accepts a larger
/// buffer as long as the bytes it does not know are zero.
#[repr(C, align(8))]
pub(crate) struct Attr(pub(crate) [u8; 128]);

impl Attr {
    pub(crate) fn new() -> Self {
        Attr([0; 128])
    }
    pub(crate) fn u32_at(mut self, off: usize, v: u32) -> Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub(crate) fn u64_at(mut self, off: usize, v: u64) -> Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn read_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().expect("4 bytes"))
    }
}

pub(crate) fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: attr points to 128 writable bytes and its size is passed along.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len() as u32) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Creates a BPF_MAP_TYPE_PERCPU_ARRAY: the kernel makes one `__alloc_percpu_gfp(value_size)`
/// per entry (GFP_USER | __GFP_NOWARN | __GFP_ACCOUNT), all under pcpu_alloc_mutex in turn,
/// so large values quickly exhaust populated chunk space and force populate/create.
pub fn percpu_array(value_size: u32, entries: u32) -> io::Result<OwnedFd> {
    let mut name = [0u8; 16];
    name[..7].copy_from_slice(b"ptwl_pa");
    let mut attr = Attr::new()
        .u32_at(0, BPF_MAP_TYPE_PERCPU_ARRAY)
        .u32_at(4, 4)
        .u32_at(8, value_size)
        .u32_at(12, entries);
    // map_name sits after map_type, key_size, value_size, max_entries, map_flags,
    // inner_map_fd and numa_node.
    attr.0[28..44].copy_from_slice(&name);
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn ids(cmd: libc::c_long) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    let mut start = 0u32;
    loop {
        let mut attr = Attr::new().u32_at(0, start);
        match bpf(cmd, &mut attr) {
            Ok(_) => {
                start = attr.read_u32(4);
                out.push(start);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => bail!("bpf get_next_id({cmd}): {e}"),
        }
    }
}

/// Name of a loaded program, best effort (it may vanish between listing and opening).
fn prog_name(id: u32) -> String {
    let mut attr = Attr::new().u32_at(0, id);
    let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) else {
        return "?".into();
    };
    // SAFETY: fresh descriptor from the kernel.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut info = [0u8; 256];
    let mut attr = Attr::new()
        .u32_at(0, std::os::fd::AsRawFd::as_raw_fd(&fd) as u32)
        .u32_at(4, info.len() as u32)
        .u64_at(8, info.as_mut_ptr() as u64);
    if bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).is_err() {
        return "?".into();
    }
    // bpf_prog_info.name is 16 bytes at offset 64.
    let name = &info[64..80];
    let len = name.iter().position(|&b| b == 0).unwrap_or(16);
    String::from_utf8_lossy(&name[..len]).into_owned()
}

/// Everything of a tracer that could outlive it: BPF programs, links and maps, kprobes
/// (perf-based ones are listed in debugfs, legacy ones in kprobe_events), one line each.
pub fn snapshot() -> Result<BTreeSet<String>> {
    let mut s = BTreeSet::new();
    for id in ids(BPF_PROG_GET_NEXT_ID)? {
        s.insert(format!("prog {id} {}", prog_name(id)));
    }
    for id in ids(BPF_LINK_GET_NEXT_ID)? {
        s.insert(format!("link {id}"));
    }
    for id in ids(BPF_MAP_GET_NEXT_ID)? {
        s.insert(format!("map {id}"));
    }
    for (tag, path) in [
        ("kprobe", "/sys/kernel/debug/kprobes/list"),
        ("kprobe_event", "/sys/kernel/tracing/kprobe_events"),
        ("uprobe_event", "/sys/kernel/tracing/uprobe_events"),
    ] {
        match fs::read_to_string(path) {
            Ok(text) => s.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| format!("{tag} {l}")),
            ),
            Err(e) => bail!("reading {path}: {e} (is debugfs/tracefs mounted?)"),
        }
    }
    Ok(s)
}
