//! Task bookkeeping: creating, refreshing and evicting task state, following the mutex
//! holder (the one hold rule), counting constrained calls.
use super::{
    task::{AllocState, Holder, TaskState},
    Activity, Engine, OTHER_COMM,
};
use crate::event::{Event, EventKind};

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
            pending_create: None,
            pending_reclaim: None,
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
                        took_mutex: false,
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
            // A reclaim begun under the mutex ended before the mutex was released (its
            // reclaim_end was lost if it is still open).
            if let Some(t) = self.tasks.get_mut(&pid) {
                t.reclaim.take_if(|r| r.held_mutex);
                // Its call ended: what it did under the mutex belongs to no later call.
                t.pending_create = None;
                t.pending_reclaim = None;
            }
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
        // The owner word read when a waiter began to wait names the holder, even one that
        // made no event of its own (an unconstrained holder in tracepoint mode, one whose
        // events were lost).
        if let EventKind::ContentionBegin {
            owner_pid: Some(owner),
            ..
        } = ev.kind
        {
            if owner != ev.pid {
                self.saw_holding(owner, ev.ts_ns);
            }
        }
        match ev.holds_mutex {
            Some(true) => self.saw_holding(ev.pid, ev.ts_ns),
            Some(false) => {
                self.task_mut(ev.pid).hold_since_ns = None;
                self.end_hold(ev.pid, None);
            }
            None => {}
        }
    }

    /// `pid` was seen holding the mutex at `ts_ns`: its hold starts or is confirmed, and
    /// whoever we thought held it before has released it.
    fn saw_holding(&mut self, pid: u32, ts_ns: u64) {
        match &mut self.holder {
            Some(h) if h.pid == pid => h.confirmed_ns = h.confirmed_ns.max(ts_ns),
            _ => {
                // A new owner: whoever we thought held it has released it.
                if let Some(old) = self.holder.as_ref().map(|h| h.pid) {
                    if let Some(t) = self.tasks.get_mut(&old) {
                        t.hold_since_ns = None;
                    }
                    self.end_hold(old, None);
                }
                self.holder = Some(Holder {
                    pid,
                    since_ns: ts_ns,
                    confirmed_ns: ts_ns,
                });
            }
        }
        // An owner named by a waiter's owner word may have made no event of its own: it
        // then has no task state to note the hold in (the holder above still names it).
        let Some(t) = self.tasks.get_mut(&pid) else {
            return;
        };
        t.hold_since_ns.get_or_insert(ts_ns);
        // A constrained caller seen holding the mutex: it is on the slow path.
        if let Some(a) = t.alloc.as_mut().filter(|a| !a.took_mutex) {
            a.took_mutex = true;
            self.activity.constrained_took_mutex += 1;
        }
    }

    /// Counts one constrained pcpu_alloc call (counters and the caller table).
    pub(super) fn count_constrained(&mut self, ev: &Event, gfp: u32, call_site: Option<u64>) {
        let pid = ev.pid;
        self.tables.caller(ev, gfp, call_site);
        self.counters.constrained_allocs += 1;
        // Why it is constrained, first reason that holds: the argument, then the scope.
        let a = &mut self.activity;
        if self.cfg.forbidden(gfp) != 0 {
            a.constrained_by_gfp_argument += 1;
        } else if self.cfg.io_flusher(ev.task_flags) {
            a.constrained_by_io_flusher += 1;
        } else if ev.task_flags & self.cfg.pf_memalloc_noio != 0 {
            a.constrained_by_noio_scope += 1;
        } else if ev.task_flags & self.cfg.pf_memalloc_nofs != 0 {
            a.constrained_by_nofs_scope += 1;
        }
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

    /// The event's task holds the mutex inside a constrained pcpu_alloc.
    pub(super) fn constrained_holder(&self, ev: &Event) -> bool {
        ev.holds_mutex == Some(true) && self.tasks.get(&ev.pid).is_some_and(|t| t.alloc.is_some())
    }

    /// Counts an allocation nested under the mutex whose effective gfp may direct-reclaim
    /// with FS or IO (whoever holds it: the activity, not a finding).
    pub(super) fn count_nested(&mut self, ev: &Event, nested_gfp: u32) {
        if ev.holds_mutex != Some(true) || ev.task_flags & self.cfg.pf_memalloc != 0 {
            return;
        }
        let eff = self.cfg.effective_gfp(nested_gfp, ev.task_flags);
        if eff & self.cfg.gfp_direct_reclaim != 0 && eff & self.cfg.reclaim_bits() != 0 {
            self.activity.nested_allocations_allowing_fs_io += 1;
        }
    }
}
