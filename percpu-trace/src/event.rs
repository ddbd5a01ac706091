//! Decoded events: what the detection engine, recordings, the TUI and reports consume.
//!
//! Independent of the BPF wire layout ([`RawEvent`]): recordings store these, so a
//! recording stays readable when the kernel side changes.
use percpu_trace_common::{kind, state, RawEvent};
use serde::{Deserialize, Serialize};

/// One observation from the kernel, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Task comm.
    pub comm: String,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// current->flags at the event (PF_MEMALLOC_NOIO etc).
    pub task_flags: u32,
    /// Whether the task held pcpu_alloc_mutex; `None` when its address is unknown.
    pub holds_mutex: Option<bool>,
    /// gfp of the constrained pcpu_alloc this task is inside, if a probe saw its entry.
    pub caller_gfp: Option<u32>,
    /// Kernel stack id (resolve through the recording's or the live stack table).
    pub stack_id: Option<u32>,
    /// What happened.
    pub kind: EventKind,
}

/// What happened, with the fields that kind carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A constrained blocking caller entered pcpu_alloc (kprobe/fentry mode).
    PcpuAllocEnter {
        /// Requested size.
        size: u64,
        /// Requested alignment.
        align: u64,
        /// From the reserved chunk.
        reserved: bool,
        /// gfp as passed.
        gfp: u32,
    },
    /// That pcpu_alloc returned.
    PcpuAllocExit {
        /// Returned pointer, 0 on failure.
        #[serde(with = "crate::hex")]
        ptr: u64,
    },
    /// percpu:percpu_alloc_percpu for a constrained non-atomic caller (after the unlock;
    /// the only pcpu_alloc view in tracepoint-only mode).
    PcpuAllocDone {
        /// Requested size.
        size: u64,
        /// Requested alignment.
        align: u64,
        /// From the reserved chunk.
        reserved: bool,
        /// gfp (already narrowed by current_gfp_context()).
        gfp: u32,
        /// Caller address.
        #[serde(with = "crate::hex")]
        call_site: u64,
    },
    /// A chunk is being created.
    ChunkCreate {
        /// gfp passed to pcpu_create_chunk, when probed by kprobe/fentry.
        gfp: Option<u32>,
        /// Chunk base address, when seen through the tracepoint.
        #[serde(with = "crate::hex")]
        base: u64,
    },
    /// pcpu_populate_chunk.
    ChunkPopulate {
        /// gfp passed.
        gfp: Option<u32>,
        /// First page.
        page_start: u64,
        /// End page.
        page_end: u64,
    },
    /// pcpu_get_vm_areas.
    GetVmAreas {
        /// Its gfp parameter, on kernels with the fix series; `None` means it allocates
        /// its metadata with GFP_KERNEL.
        gfp: Option<u32>,
        /// nr_vms.
        nr_vms: u64,
    },
    /// __vmalloc_node* by the mutex holder.
    Vmalloc {
        /// gfp passed.
        gfp: u32,
        /// Size.
        size: u64,
    },
    /// Kernel page-table allocation by the mutex holder (GFP_PGTABLE_KERNEL).
    PgtableAlloc,
    /// Direct or memcg reclaim begins.
    ReclaimBegin {
        /// Reclaim gfp.
        gfp: u32,
        /// Order.
        order: u32,
        /// memcg reclaim rather than global direct reclaim.
        memcg: bool,
    },
    /// Reclaim ends.
    ReclaimEnd {
        /// Pages reclaimed.
        nr_reclaimed: u64,
        /// memcg reclaim.
        memcg: bool,
    },
    /// The task starts waiting for pcpu_alloc_mutex.
    ContentionBegin {
        /// Lock address.
        #[serde(with = "crate::hex")]
        lock: u64,
        /// lock:contention_begin flags.
        flags: u32,
        /// The thread id in the mutex's owner word when the wait began: who holds it
        /// (`None`: not read, or in recordings made before it was).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner_pid: Option<u32>,
    },
    /// The task stops waiting.
    ContentionEnd {
        /// Lock address.
        #[serde(with = "crate::hex")]
        lock: u64,
        /// 0 when acquired, negative errno otherwise.
        ret: i64,
    },
    /// A task with state in the kernel maps exited.
    TaskExit,
}

/// A raw event that could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct BadEvent(pub u32);

impl std::fmt::Display for BadEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown event kind {}", self.0)
    }
}

impl std::error::Error for BadEvent {}

impl TryFrom<&RawEvent> for Event {
    type Error = BadEvent;

    fn try_from(r: &RawEvent) -> Result<Self, BadEvent> {
        let has = |bit: u32| r.state & bit != 0;
        let gfp_opt = has(state::GFP_KNOWN).then_some(r.gfp);
        let kind = match r.kind {
            kind::PCPU_ALLOC_ENTER => EventKind::PcpuAllocEnter {
                size: r.arg0,
                align: r.arg1,
                reserved: has(state::RESERVED),
                gfp: r.gfp,
            },
            kind::PCPU_ALLOC_EXIT => EventKind::PcpuAllocExit { ptr: r.arg0 },
            kind::PCPU_ALLOC_TP => EventKind::PcpuAllocDone {
                size: r.arg0,
                align: r.arg1,
                reserved: has(state::RESERVED),
                gfp: r.gfp,
                call_site: r.arg2,
            },
            kind::CHUNK_CREATE => EventKind::ChunkCreate {
                gfp: gfp_opt,
                base: r.arg0,
            },
            kind::CHUNK_POPULATE => EventKind::ChunkPopulate {
                gfp: gfp_opt,
                page_start: r.arg0,
                page_end: r.arg1,
            },
            kind::GET_VM_AREAS => EventKind::GetVmAreas {
                gfp: gfp_opt,
                nr_vms: r.arg0,
            },
            kind::VMALLOC => EventKind::Vmalloc {
                gfp: r.gfp,
                size: r.arg0,
            },
            kind::PGTABLE_ALLOC => EventKind::PgtableAlloc,
            kind::RECLAIM_BEGIN => EventKind::ReclaimBegin {
                gfp: r.gfp,
                order: r.arg0 as u32,
                memcg: has(state::MEMCG),
            },
            kind::RECLAIM_END => EventKind::ReclaimEnd {
                nr_reclaimed: r.arg0,
                memcg: has(state::MEMCG),
            },
            kind::CONTENTION_BEGIN => EventKind::ContentionBegin {
                lock: r.arg0,
                flags: r.arg1 as u32,
                // 0: no owner read (the word was empty or the pid offset unknown).
                owner_pid: u32::try_from(r.arg2).ok().filter(|&p| p != 0),
            },
            kind::CONTENTION_END => EventKind::ContentionEnd {
                lock: r.arg0,
                ret: r.arg1 as i64,
            },
            kind::TASK_EXIT => EventKind::TaskExit,
            other => return Err(BadEvent(other)),
        };
        let comm_len = r.comm.iter().position(|&b| b == 0).unwrap_or(r.comm.len());
        Ok(Event {
            ts_ns: r.ts_ns,
            pid: r.pid,
            tgid: r.tgid,
            comm: String::from_utf8_lossy(&r.comm[..comm_len]).into_owned(),
            cgroup_id: r.cgroup_id,
            task_flags: r.task_flags,
            holds_mutex: has(state::MUTEX_KNOWN).then_some(has(state::HOLDS_MUTEX)),
            caller_gfp: has(state::IN_PCPU_ALLOC).then_some(r.caller_gfp),
            stack_id: u32::try_from(r.stack_id).ok(),
            kind,
        })
    }
}

/// One symbolized kernel stack frame.
///
/// `file`, `line` and `inlined` come from vmlinux DWARF when the symbolizer has it; they are
/// left out of JSON when empty, so recordings without debug info are unchanged and older
/// recordings (which never have them) still parse.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Instruction address (as the kernel reported it; may be hashed if kptr_restrict).
    /// JSON: a hex string (a number in version-1 recordings, still read).
    #[serde(with = "crate::hex")]
    pub addr: u64,
    /// Function name, if resolved.
    pub function: Option<String>,
    /// Offset into the function.
    pub offset: u64,
    /// Function length, when known.
    pub len: Option<u64>,
    /// Module name, for module text.
    pub module: Option<String>,
    /// Source file of the address (DWARF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Line in `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Calls inlined at the address, outermost first (DWARF).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inlined: Vec<InlinedFrame>,
}

/// A function inlined at a frame's address, with the source location inside it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlinedFrame {
    /// Inlined function.
    pub function: String,
    /// Source file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Line in `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

impl std::fmt::Display for Frame {
    /// Formats like the kernel's `%pS`: `function+0xoff/0xlen [module]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.function {
            Some(func) => {
                write!(f, "{func}+{:#x}", self.offset)?;
                if let Some(len) = self.len {
                    write!(f, "/{len:#x}")?;
                }
            }
            None => write!(f, "{:#x}", self.addr)?,
        }
        if let Some(m) = &self.module {
            write!(f, " [{m}]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_reclaim_with_holder_bits() {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"kwrk");
        let raw = RawEvent {
            ts_ns: 5,
            kind: kind::RECLAIM_BEGIN,
            gfp: 0xcc0,
            arg0: 2,
            state: state::MUTEX_KNOWN | state::HOLDS_MUTEX | state::GFP_KNOWN,
            stack_id: -1,
            comm,
            ..Default::default()
        };
        let ev = Event::try_from(&raw).unwrap();
        assert_eq!(ev.comm, "kwrk");
        assert_eq!(ev.holds_mutex, Some(true));
        assert_eq!(ev.caller_gfp, None);
        assert_eq!(ev.stack_id, None);
        assert_eq!(
            ev.kind,
            EventKind::ReclaimBegin {
                gfp: 0xcc0,
                order: 2,
                memcg: false
            }
        );
    }

    #[test]
    fn unknown_mutex_is_none_and_bad_kind_is_error() {
        let raw = RawEvent {
            kind: kind::PGTABLE_ALLOC,
            ..Default::default()
        };
        assert_eq!(Event::try_from(&raw).unwrap().holds_mutex, None);
        let bad = RawEvent {
            kind: 99,
            ..Default::default()
        };
        assert_eq!(Event::try_from(&bad), Err(BadEvent(99)));
    }

    #[test]
    fn frame_prints_like_the_kernel() {
        let f = Frame {
            addr: 0,
            function: Some("pcpu_populate_chunk".into()),
            offset: 0x4a,
            len: Some(0x3c0),
            module: None,
            ..Default::default()
        };
        assert_eq!(f.to_string(), "pcpu_populate_chunk+0x4a/0x3c0");
    }

    #[test]
    fn frames_without_debug_info_keep_the_old_json() {
        // Version 1 wrote the address as a number; version 2 as a hex string. Both read.
        let old =
            r#"{"addr":18446744071579000000,"function":"f","offset":2,"len":null,"module":null}"#;
        let f: Frame = serde_json::from_str(old).unwrap();
        assert_eq!(f.addr, 18446744071579000000);
        assert_eq!(f.function.as_deref(), Some("f"));
        assert!(f.file.is_none() && f.line.is_none() && f.inlined.is_empty());
        let new =
            r#"{"addr":"0xffffffff81025cc0","function":"f","offset":2,"len":null,"module":null}"#;
        assert_eq!(serde_json::to_string(&f).unwrap(), new);
        assert_eq!(serde_json::from_str::<Frame>(new).unwrap(), f);
    }
}
