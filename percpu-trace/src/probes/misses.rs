//! Events the kernel never ran our programs for: BPF recursion misses (a program not run
//! because it was already running on that CPU: fentry/fexit and raw tracepoint recursion
//! protection, which on kernels that run them preemptibly (7.x) also skips a run whose CPU
//! preempted another run of the same program; a kprobe or perf tracepoint hit inside
//! another BPF program) and kprobe misses (kretprobe `maxactive` exhausted, a
//! probe hit while another kprobe ran). The kernel counts both per program or per link;
//! neither reaches the ring buffer, so without them a summary would say "0 lost" while a
//! return was missed and a task's state went stale.
//!
//! `PT_DEBUG_MISSES=1` (a developer aid) prints each program's recursion misses to stderr
//! when they change (`PT_GUEST_PT_DEBUG_MISSES=1` in the VM tests).
//!
//! Read with bpf(2) by hand: aya 0.14 exposes neither `bpf_prog_info.recursion_misses` nor
//! the kprobe `missed` of a perf-event link's info (Linux 6.7+; older kernels report 0).
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use aya_obj::generated::bpf_prog_info;

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
const BPF_LINK_TYPE_PERF_EVENT: u32 = 7;
const BPF_PERF_EVENT_KPROBE: u32 = 3;
const BPF_PERF_EVENT_KRETPROBE: u32 = 4;

/// `union bpf_attr` for the *_GET_FD_BY_ID and *_GET_NEXT_ID commands.
#[repr(C)]
#[derive(Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: attr is a live, initialised bpf_attr prefix of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_by_id(cmd: libc::c_long, id: u32) -> Option<OwnedFd> {
    let mut a = IdAttr {
        id,
        ..Default::default()
    };
    let fd = bpf(cmd, &mut a).ok()?;
    // SAFETY: the kernel just returned this descriptor to us.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn info_by_fd(fd: &OwnedFd, buf: *mut u8, len: usize) -> bool {
    let mut a = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: len as u32,
        info: buf as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a).is_ok()
}

/// The kernel's miss counters of the programs this run attached.
pub struct MissCounters {
    /// Program ids whose recursion misses can be lost events.
    programs: Vec<u32>,
    /// Program ids of every attached program (their kprobe links).
    all: Vec<u32>,
    /// Our kprobe links, found once on the first read (`None` until then).
    kprobe_links: Option<Vec<u32>>,
    /// Developer aid (`PT_DEBUG_MISSES` set): each program's recursion misses, printed to
    /// stderr when they change (the drops line has only the total).
    debug: Option<Vec<u64>>,
}

/// Totals of [`MissCounters::read`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Misses {
    /// Runs of our programs the kernel skipped to avoid recursion.
    pub recursion_misses: u64,
    /// Hits our kprobes and kretprobes missed.
    pub kprobe_missed: u64,
}

impl MissCounters {
    /// For the programs with these ids and names. The perf tracepoint lock-contention
    /// programs' recursion misses are left out: the kernel skips such a program only while
    /// another of our kprobe or tracepoint programs runs on the CPU (one per-CPU guard,
    /// preemption disabled), i.e. for a contention inside a BPF program (a spinlock a
    /// helper takes, the ring buffer's); pcpu_alloc_mutex sleeps, and nothing waits for a
    /// sleeping lock there, so it was never a wait the tool would have recorded. The raw
    /// tracepoint ones (`*_raw`) count: the kernel skips a raw tracepoint program when the
    /// same program is already running on the CPU, which on kernels that run tracepoint
    /// probes preemptibly (7.x) includes a run preempted by a task that then waits, a real
    /// wait lost (as fentry programs' runs are).
    pub fn new(mut programs: Vec<(u32, String)>) -> Self {
        // One program may be attached at several points (the page-table levels): count
        // each program once.
        programs.sort_unstable();
        programs.dedup_by_key(|(id, _)| *id);
        let all = programs.iter().map(|(id, _)| *id).collect();
        let programs: Vec<u32> = programs
            .into_iter()
            .filter(|(_, name)| !matches!(name.as_str(), "contention_begin" | "contention_end"))
            .map(|(id, _)| id)
            .collect();
        let debug = std::env::var_os("PT_DEBUG_MISSES").map(|_| vec![0; programs.len()]);
        MissCounters {
            programs,
            all,
            kprobe_links: None,
            debug,
        }
    }

    /// Current totals. A counter that cannot be read counts 0 (an older kernel, a program
    /// already gone); reading never fails the run.
    pub fn read(&mut self) -> Misses {
        let mut m = Misses::default();
        for (i, &id) in self.programs.iter().enumerate() {
            let Some(fd) = fd_by_id(BPF_PROG_GET_FD_BY_ID, id) else {
                continue;
            };
            // SAFETY: plain integers and pointers; all-zero is a valid request.
            let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
            let len = std::mem::size_of::<bpf_prog_info>();
            if info_by_fd(&fd, (&mut info as *mut bpf_prog_info).cast(), len) {
                m.recursion_misses += info.recursion_misses;
                if let Some(last) = self.debug.as_mut().and_then(|d| d.get_mut(i)) {
                    if *last != info.recursion_misses {
                        *last = info.recursion_misses;
                        let name: String = info
                            .name
                            .iter()
                            .take_while(|&&c| c != 0)
                            .map(|&c| c as u8 as char)
                            .collect();
                        eprintln!("percpu-trace: debug: {name} (id {id}): {last} recursion misses");
                    }
                }
            }
        }
        let links = self
            .kprobe_links
            .get_or_insert_with(|| our_kprobe_links(&self.all));
        for &id in links.iter() {
            if let Some((_, missed)) = kprobe_link(id) {
                m.kprobe_missed += missed;
            }
        }
        m
    }
}

/// The kprobe/kretprobe perf-event links of these programs, by link id.
fn our_kprobe_links(programs: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut a = IdAttr::default();
    // Bounded: a host has far fewer links than this.
    for _ in 0..65_536 {
        if bpf(BPF_LINK_GET_NEXT_ID, &mut a).is_err() {
            break;
        }
        let id = a.next_id;
        if let Some((prog, _)) = kprobe_link(id) {
            if programs.contains(&prog) {
                out.push(id);
            }
        }
        a = IdAttr {
            id,
            ..Default::default()
        };
    }
    out
}

/// (program id, missed) of link `id` when it is a kprobe or kretprobe perf-event link.
fn kprobe_link(id: u32) -> Option<(u32, u64)> {
    let fd = fd_by_id(BPF_LINK_GET_FD_BY_ID, id)?;
    // struct bpf_link_info: type, id, prog_id, then the union at byte 16; its perf_event
    // member: type at 16, then (kprobe) func_name 24, name_len 32, offset 36, addr 40,
    // missed 48, cookie 56.
    let mut buf = [0u64; 16];
    if !info_by_fd(&fd, buf.as_mut_ptr().cast(), std::mem::size_of_val(&buf)) {
        return None;
    }
    let link_type = buf[0] as u32;
    let prog_id = buf[1] as u32;
    let perf_type = buf[2] as u32;
    let is_kprobe = matches!(perf_type, BPF_PERF_EVENT_KPROBE | BPF_PERF_EVENT_KRETPROBE);
    (link_type == BPF_LINK_TYPE_PERF_EVENT && is_kprobe).then_some((prog_id, buf[6]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_tracepoint_contention_misses_are_not_losses() {
        let m = MissCounters::new(vec![
            (1, "contention_begin".into()),
            (2, "contention_end".into()),
            (3, "pgtable_alloc".into()),
            (3, "pgtable_alloc".into()),
            (4, "contention_begin_raw".into()),
            (5, "contention_end_raw".into()),
        ]);
        assert_eq!(
            m.programs,
            vec![3, 4, 5],
            "each program once, the perf tracepoint contention ones out"
        );
        assert_eq!(m.all, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn unknown_programs_count_nothing() {
        // Ids no program has (0 is never used): nothing to read, no error, no panic.
        let mut m = MissCounters::new(vec![(0, "x".into()), (u32::MAX, "y".into())]);
        assert_eq!(m.read(), Misses::default());
    }
}
