//! Per-task state and its bookkeeping: what each task is doing as far as the events show
//! (inside a constrained pcpu_alloc, holding the mutex, reclaiming, waiting), which task
//! holds pcpu_alloc_mutex, and the bounds that keep this small.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::{Activity, Engine, OTHER_COMM};
use crate::event::{Event, EventKind};

#[derive(Default)]
pub(super) struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (u64::from(v) ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(super) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<PidHasher>>;

/// A constrained pcpu_alloc in progress.
#[derive(Clone, Debug)]
pub(super) struct AllocState {
    /// gfp as passed (caller_gfp / PcpuAllocEnter gfp).
    pub(super) gfp: u32,
    /// Task flags on entry (the scope pcpu_alloc folded into its gfp).
    pub(super) entry_flags: u32,
    pub(super) since_ns: u64,
}

#[derive(Clone, Debug)]
pub(super) struct OpenReclaim {
    pub(super) since_ns: u64,
    pub(super) effective_gfp: u32,
    pub(super) held_mutex: bool,
    pub(super) stack_id: Option<u32>,
    /// Sequence number of its entry in `recent`.
    pub(super) recent_seq: u64,
    /// Findings whose durations this reclaim completes when it ends.
    pub(super) links: Vec<usize>,
}

#[derive(Clone, Debug)]
pub(super) struct OpenWait {
    pub(super) since_ns: u64,
    pub(super) caller_gfp: Option<u32>,
    pub(super) flags: u32,
    /// Effective constraint: caller gfp (or GFP_KERNEL) narrowed by the scope.
    pub(super) constraint: u32,
    pub(super) stack_id: Option<u32>,
    pub(super) links: Vec<usize>,
}

#[derive(Clone, Debug)]
pub(super) struct TaskState {
    pub(super) pid: u32,
    pub(super) tgid: u32,
    pub(super) comm: String,
    pub(super) cgroup_id: u64,
    pub(super) task_flags: u32,
    pub(super) last_seen_ns: u64,
    pub(super) alloc: Option<AllocState>,
    /// Chunk work in the current allocation.
    pub(super) work: Activity,
    pub(super) hold_since_ns: Option<u64>,
    pub(super) reclaim: Option<OpenReclaim>,
    pub(super) wait: Option<OpenWait>,
}

impl TaskState {
    pub(super) fn idle(&self) -> bool {
        self.alloc.is_none()
            && self.reclaim.is_none()
            && self.wait.is_none()
            && self.hold_since_ns.is_none()
    }

    pub(super) fn activity(&self) -> Activity {
        if self.reclaim.is_some() {
            Activity::Reclaiming
        } else if self.wait.is_some() {
            Activity::Waiting
        } else if self.work != Activity::Idle {
            self.work
        } else if self.alloc.is_some() {
            Activity::Allocating
        } else {
            Activity::Idle
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Holder {
    pub(super) pid: u32,
    pub(super) since_ns: u64,
    pub(super) confirmed_ns: u64,
}

impl Engine {
    /// Creates or refreshes the task's state from the common event fields.
    pub(super) fn touch(&mut self, ev: &Event) {
        if !self.tasks.contains_key(&ev.pid) && self.tasks.len() >= self.cfg.max_tasks.max(1) {
            self.evict();
        }
        let t = self.tasks.entry(ev.pid).or_insert_with(|| TaskState {
            pid: ev.pid,
            tgid: ev.tgid,
            comm: ev.comm.clone(),
            cgroup_id: ev.cgroup_id,
            task_flags: ev.task_flags,
            last_seen_ns: ev.ts_ns,
            alloc: None,
            work: Activity::Idle,
            hold_since_ns: None,
            reclaim: None,
            wait: None,
        });
        t.tgid = ev.tgid;
        if t.comm != ev.comm {
            // A task may exec or be renamed; the comm at the latest event is what users see.
            t.comm.clone_from(&ev.comm);
        }
        t.cgroup_id = ev.cgroup_id;
        t.task_flags = ev.task_flags;
        t.last_seen_ns = t.last_seen_ns.max(ev.ts_ns);
        match ev.caller_gfp {
            Some(g) => {
                if t.alloc.is_none() {
                    // Entry happened before we attached, or its event was lost.
                    t.alloc = Some(AllocState {
                        gfp: g,
                        entry_flags: ev.task_flags,
                        since_ns: ev.ts_ns,
                    });
                }
            }
            None => {
                // The kernel's TASKS map says it is not inside a constrained pcpu_alloc:
                // an exit was lost. (PcpuAllocEnter sets its own state below.)
                if t.alloc.is_some() && !matches!(ev.kind, EventKind::PcpuAllocEnter { .. }) {
                    t.alloc = None;
                    t.work = Activity::Idle;
                }
            }
        }
    }

    /// Drops the least recently seen eighth of the tasks (by time, then pid: deterministic).
    pub(super) fn evict(&mut self) {
        let mut ages: Vec<(u64, u32)> = self
            .tasks
            .values()
            .map(|t| (t.last_seen_ns, t.pid))
            .collect();
        let n = (ages.len() / 8).max(1).min(ages.len());
        ages.select_nth_unstable(n - 1);
        for &(_, pid) in &ages[..n] {
            self.forget_task(pid);
        }
        self.counters.evicted_tasks += n as u64;
    }

    pub(super) fn forget(&mut self, pid: u32) {
        self.forget_task(pid);
        self.end_hold(pid, None);
    }

    pub(super) fn forget_task(&mut self, pid: u32) {
        self.tasks.remove(&pid);
        self.waiters.remove(&pid);
    }

    pub(super) fn task_mut(&mut self, pid: u32) -> &mut TaskState {
        self.tasks.get_mut(&pid).expect("touch() inserted the task")
    }

    /// Ends `pid`'s hold, if it is the holder, and writes its length down: to `end_ns`
    /// when the release is known to be right before it (a pcpu_alloc return), else to the
    /// last event that confirmed the hold (a lower bound).
    pub(super) fn end_hold(&mut self, pid: u32, end_ns: Option<u64>) {
        if let Some(h) = self.holder.take_if(|h| h.pid == pid) {
            let end = end_ns.unwrap_or(h.confirmed_ns);
            self.holds.push(end.saturating_sub(h.since_ns));
        }
    }

    /// Follows pcpu_alloc_mutex ownership. The one rule for when a hold starts and ends:
    /// it starts at the first event showing the task holding the mutex; it ends at that
    /// task's pcpu_alloc return (exit event or percpu_alloc_percpu tracepoint, both right
    /// after the unlock), at an event showing it not holding or another task holding it,
    /// or at its exit.
    pub(super) fn track_holder(&mut self, ev: &Event) {
        if matches!(
            ev.kind,
            EventKind::PcpuAllocExit { .. } | EventKind::PcpuAllocDone { .. }
        ) {
            self.task_mut(ev.pid).hold_since_ns = None;
            self.end_hold(ev.pid, Some(ev.ts_ns));
            return;
        }
        match ev.holds_mutex {
            Some(true) => {
                match &mut self.holder {
                    Some(h) if h.pid == ev.pid => h.confirmed_ns = h.confirmed_ns.max(ev.ts_ns),
                    _ => {
                        // A new owner: whoever we thought held it has released it.
                        if let Some(old) = self.holder.as_ref().map(|h| h.pid) {
                            if let Some(t) = self.tasks.get_mut(&old) {
                                t.hold_since_ns = None;
                            }
                            self.end_hold(old, None);
                        }
                        self.holder = Some(Holder {
                            pid: ev.pid,
                            since_ns: ev.ts_ns,
                            confirmed_ns: ev.ts_ns,
                        });
                    }
                }
                let t = self.task_mut(ev.pid);
                t.hold_since_ns.get_or_insert(ev.ts_ns);
            }
            Some(false) => {
                self.task_mut(ev.pid).hold_since_ns = None;
                self.end_hold(ev.pid, None);
            }
            None => {}
        }
    }

    /// Counts one constrained pcpu_alloc call (counters and the caller table).
    pub(super) fn count_constrained(&mut self, ev: &Event, gfp: u32, call_site: Option<u64>) {
        let pid = ev.pid;
        self.tables.caller(ev, gfp, call_site);
        self.counters.constrained_allocs += 1;
        let cap = self.cfg.max_counter_keys;
        let n = self.counters.constrained_by_gfp.len();
        match self.counters.constrained_by_gfp.get_mut(&gfp) {
            Some(v) => *v += 1,
            None if n < cap => {
                self.counters.constrained_by_gfp.insert(gfp, 1);
            }
            None => self.counters.constrained_other_gfp += 1,
        }
        let Some(t) = self.tasks.get(&pid) else {
            return;
        };
        if let Some(v) = self.by_comm.get_mut(t.comm.as_str()) {
            *v += 1;
        } else if self.by_comm.len() + 1 < cap {
            self.by_comm.insert(t.comm.clone(), 1);
        } else {
            *self.by_comm.entry(OTHER_COMM.to_string()).or_insert(0) += 1;
        }
    }

    /// A task's constraint: its caller gfp narrowed by its entry scope when inside a
    /// constrained pcpu_alloc, else GFP_KERNEL narrowed by its current scope.
    pub(super) fn constraint_of(&self, t: &TaskState) -> u32 {
        match &t.alloc {
            Some(a) => self.cfg.effective_gfp(a.gfp, a.entry_flags | t.task_flags),
            None => self.cfg.effective_gfp(self.cfg.gfp_kernel, t.task_flags),
        }
    }
}
