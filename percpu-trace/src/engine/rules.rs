//! The rules: `window`, `recursion` and `cross_task` (see the module documentation of
//! [`crate::engine`] for what each one means), and the reclaim/wait bookkeeping they use.
use super::task::{AllocState, OpenReclaim, OpenWait, PendingCreate, PendingReclaim};
use super::{
    evidence, occurrence::Occurrence, Engine, FindingKind, FindingUpdate, ReclaimRecord, TaskRole,
    Trigger,
};
use crate::event::Event;

impl Engine {
    pub(super) fn check_window(
        &mut self,
        ev: &Event,
        trigger: Trigger,
        nested: u32,
        out: &mut Vec<FindingUpdate>,
    ) {
        if ev.holds_mutex != Some(true) {
            return;
        }
        if ev.task_flags & self.cfg.pf_memalloc != 0 {
            return; // PF_MEMALLOC: no direct reclaim at all
        }
        let t = &self.tasks[&ev.pid];
        let Some(a) = &t.alloc else { return };
        // Only what the gfp *argument* forbids: a scope narrows the nested allocations too.
        let forbidden = self.cfg.forbidden(a.gfp);
        if forbidden == 0 {
            return;
        }
        let eff = self.cfg.effective_gfp(nested, ev.task_flags);
        if eff & self.cfg.gfp_direct_reclaim == 0 {
            return; // cannot enter reclaim at all
        }
        let violated = forbidden & eff;
        if violated == 0 {
            return;
        }
        let occ = Occurrence {
            kind: FindingKind::Window,
            trigger,
            trigger_effective_gfp: Some(eff),
            constraint_gfp: self.cfg.effective_gfp(a.gfp, a.entry_flags),
            violated,
            ts_ns: ev.ts_ns,
            parts: [Some((t, TaskRole::Caller, ev.stack_id)), None],
            hold_ns: self.hold_ns(t.hold_since_ns, ev.ts_ns),
            wait_ns: None,
            reason: None,
            doubts: self.doubts(FindingKind::Window, None),
            reclaim_seen: false,
        };
        let up = self.store.report(&self.cfg, occ);
        out.extend(up);
    }

    /// How long a hold begun at `since` had lasted at `ts`, when that is evidence (a hold
    /// older than any plausible one had its end lost: no "held for at least" from it).
    pub(super) fn hold_ns(&self, since: Option<u64>, ts: u64) -> Option<u64> {
        since
            .filter(|&s| self.fresh(s, ts))
            .map(|s| ts.saturating_sub(s))
    }

    /// Tracepoint-only mode: a reclaim begun under the mutex by a task whose call's gfp
    /// arrives with its percpu_alloc_percpu (`gfp`, already narrowed by the scope it had):
    /// the same call, so a recursion when the reclaim allowed what `gfp` forbids. Returns
    /// whether such a reclaim was seen (whatever it allowed).
    pub(super) fn tracepoint_recursion(
        &mut self,
        ev: &Event,
        gfp: u32,
        r: Option<PendingReclaim>,
        out: &mut Vec<FindingUpdate>,
    ) -> bool {
        let Some(r) = r.filter(|r| self.fresh(r.ts_ns, ev.ts_ns)) else {
            return false;
        };
        let violated = self.cfg.forbidden(gfp) & r.effective_gfp;
        if violated == 0 {
            return true;
        }
        let doubts = self.doubts(FindingKind::Recursion, Some(r.ts_ns));
        let t = self.task_mut(ev.pid);
        let saved = t.alloc.replace(AllocState {
            gfp,
            entry_flags: r.flags,
            since_ns: r.ts_ns,
            took_mutex: false,
        });
        let t = &self.tasks[&ev.pid];
        let occ = Occurrence {
            kind: FindingKind::Recursion,
            trigger: Trigger::Reclaim {
                gfp: r.gfp,
                order: r.order,
                memcg: r.memcg,
            },
            trigger_effective_gfp: Some(r.effective_gfp),
            constraint_gfp: gfp,
            violated,
            ts_ns: r.ts_ns,
            parts: [Some((t, TaskRole::Caller, r.stack_id)), None],
            hold_ns: r.hold_ns,
            wait_ns: None,
            reason: None,
            doubts,
            reclaim_seen: true,
        };
        let up = self.store.report(&self.cfg, occ);
        out.extend(up);
        self.task_mut(ev.pid).alloc = saved;
        true
    }

    /// Tracepoint-only mode: a chunk created under the mutex by a task that then reports a
    /// constrained percpu_alloc_percpu (`gfp`, already narrowed by the scope it had). On a
    /// kernel without the fix the chunk's vm areas were allocated with GFP_KERNEL metadata:
    /// a window when what `gfp` forbids beyond the task's scope at the creation was allowed.
    pub(super) fn tracepoint_window(
        &mut self,
        ev: &Event,
        gfp: u32,
        c: PendingCreate,
        reclaim_seen: bool,
        out: &mut Vec<FindingUpdate>,
    ) {
        if c.flags & self.cfg.pf_memalloc != 0 || !self.fresh(c.ts_ns, ev.ts_ns) {
            return;
        }
        let nested = self.cfg.effective_gfp(self.cfg.gfp_kernel, c.flags);
        let violated = self.cfg.forbidden(gfp) & nested;
        if nested & self.cfg.gfp_direct_reclaim == 0 || violated == 0 {
            return;
        }
        let doubts = self.doubts(FindingKind::Window, Some(c.ts_ns));
        let t = self
            .tasks
            .get_mut(&ev.pid)
            .expect("touch() inserted the task");
        // The caller's gfp as the tracepoint reports it, for the finding's task.
        t.alloc = Some(AllocState {
            gfp,
            entry_flags: c.flags,
            since_ns: c.ts_ns,
            took_mutex: false,
        });
        let t = &self.tasks[&ev.pid];
        let occ = Occurrence {
            kind: FindingKind::Window,
            trigger: Trigger::ChunkCreate { gfp: None },
            trigger_effective_gfp: Some(nested),
            constraint_gfp: gfp,
            violated,
            ts_ns: c.ts_ns,
            parts: [Some((t, TaskRole::Caller, c.stack_id)), None],
            hold_ns: c.hold_ns,
            wait_ns: None,
            reason: None,
            doubts,
            reclaim_seen,
        };
        let up = self.store.report(&self.cfg, occ);
        out.extend(up);
        self.task_mut(ev.pid).alloc = None;
    }

    pub(super) fn reclaim_begin(
        &mut self,
        ev: &Event,
        gfp: u32,
        order: u32,
        memcg: bool,
        out: &mut Vec<FindingUpdate>,
    ) {
        let eff = self.cfg.effective_gfp(gfp, ev.task_flags);
        let held = ev.holds_mutex == Some(true);
        self.counters.reclaims += 1;
        if held {
            self.counters.reclaims_holding_mutex += 1;
        }
        self.recent_seq += 1;
        let seq = self.recent_seq;
        let (rec, caller_gfp) = {
            let t = &self.tasks[&ev.pid];
            let caller_gfp = t.alloc.as_ref().map(|a| a.gfp);
            (
                ReclaimRecord {
                    pid: ev.pid,
                    tgid: ev.tgid,
                    comm: t.comm.clone(),
                    begin_ns: ev.ts_ns,
                    end_ns: None,
                    gfp,
                    effective_gfp: eff,
                    order,
                    memcg,
                    held_mutex: held,
                    caller_gfp,
                    task_flags: ev.task_flags,
                    nr_reclaimed: None,
                },
                caller_gfp,
            )
        };
        let _ = caller_gfp;
        if self.cfg.max_recent_reclaims > 0 {
            while self.recent.len() >= self.cfg.max_recent_reclaims {
                self.recent.pop_front();
            }
            self.recent.push_back((seq, rec));
        }
        self.task_mut(ev.pid).reclaim = Some(OpenReclaim {
            since_ns: ev.ts_ns,
            effective_gfp: eff,
            held_mutex: held,
            stack_id: ev.stack_id,
            recent_seq: seq,
            links: Vec::new(),
        });
        if !held {
            return;
        }
        let trigger = Trigger::Reclaim { gfp, order, memcg };
        let hold_ns = {
            let t = &self.tasks[&ev.pid];
            self.hold_ns(t.hold_since_ns, ev.ts_ns)
        };
        let mut links = Vec::new();

        // recursion: the holder itself is constrained.
        {
            let t = &self.tasks[&ev.pid];
            let in_scope = self.cfg.scope_constrained(ev.task_flags);
            if t.alloc.is_none() && !in_scope && eff & self.cfg.reclaim_bits() != 0 {
                // Its call's gfp is not known yet (tracepoint-only mode: it comes with the
                // call's percpu_alloc_percpu, see `tracepoint_recursion`).
                self.task_mut(ev.pid).pending_reclaim = Some(PendingReclaim {
                    ts_ns: ev.ts_ns,
                    gfp,
                    effective_gfp: eff,
                    order,
                    memcg,
                    flags: ev.task_flags,
                    stack_id: ev.stack_id,
                    hold_ns,
                });
            }
            let t = &self.tasks[&ev.pid];
            if t.alloc.is_some() || in_scope {
                let constraint = self.constraint_of(t);
                let violated = self.cfg.forbidden(constraint) & eff;
                if violated != 0 {
                    let occ = Occurrence {
                        kind: FindingKind::Recursion,
                        trigger,
                        trigger_effective_gfp: Some(eff),
                        constraint_gfp: constraint,
                        violated,
                        ts_ns: ev.ts_ns,
                        parts: [Some((t, TaskRole::Caller, ev.stack_id)), None],
                        hold_ns,
                        wait_ns: None,
                        reason: None,
                        doubts: self.doubts(FindingKind::Recursion, None),
                        reclaim_seen: true,
                    };
                    if let Some(u) = self.store.report(&self.cfg, occ) {
                        links.push(u.index());
                        out.push(u);
                    }
                }
            }
        }

        // cross_task: constrained tasks already waiting.
        let waiters: Vec<u32> = self
            .waiters
            .iter()
            .copied()
            .filter(|&p| p != ev.pid)
            .collect();
        for wpid in waiters {
            if let Some(idx) = self.cross_task(ev.pid, wpid, ev.ts_ns, out) {
                push_link(&mut links, idx, self.cfg.max_pending_links);
                if let Some(w) = self.tasks.get_mut(&wpid).and_then(|t| t.wait.as_mut()) {
                    push_link(&mut w.links, idx, self.cfg.max_pending_links);
                }
            }
        }
        if let Some(r) = self.task_mut(ev.pid).reclaim.as_mut() {
            r.links = links;
        }
    }

    /// Reports a cross_task occurrence if `holder` is in mutex-held reclaim allowing what
    /// `waiter`'s constraint forbids. Returns the finding index.
    pub(super) fn cross_task(
        &mut self,
        holder: u32,
        waiter: u32,
        ts: u64,
        out: &mut Vec<FindingUpdate>,
    ) -> Option<usize> {
        let h = self.tasks.get(&holder)?;
        let r = h.reclaim.as_ref().filter(|r| r.held_mutex)?;
        let wt = self.tasks.get(&waiter)?;
        let w = wt.wait.as_ref()?;
        let reason = w.reason?;
        let violated = self.cfg.forbidden(w.constraint) & r.effective_gfp;
        if violated == 0 {
            return None;
        }
        // A wait or reclaim open longer than any plausible one lost its end: not evidence.
        if !self.fresh(w.since_ns, ts) || !self.fresh(r.since_ns, ts) {
            return None;
        }
        let rec = self
            .recent
            .iter()
            .find(|(s, _)| *s == r.recent_seq)
            .map(|(_, rec)| rec);
        let trigger = match rec {
            Some(rec) => Trigger::Reclaim {
                gfp: rec.gfp,
                order: rec.order,
                memcg: rec.memcg,
            },
            None => Trigger::Reclaim {
                gfp: r.effective_gfp,
                order: 0,
                memcg: false,
            },
        };
        let occ = Occurrence {
            kind: FindingKind::CrossTask,
            trigger,
            trigger_effective_gfp: Some(r.effective_gfp),
            constraint_gfp: w.constraint,
            violated,
            ts_ns: ts,
            parts: [
                Some((h, TaskRole::Holder, r.stack_id)),
                Some((wt, TaskRole::Waiter, w.stack_id)),
            ],
            hold_ns: self.hold_ns(h.hold_since_ns, ts),
            // Waited so far (a lower bound; its contention_end completes it): nothing when
            // the wait begins at the trigger.
            wait_ns: Some(ts.saturating_sub(w.since_ns)).filter(|&n| n > 0),
            reason: Some(reason),
            // Both the wait and the reclaim are the engine's memory of earlier events.
            doubts: self.doubts(FindingKind::CrossTask, Some(w.since_ns.min(r.since_ns))),
            reclaim_seen: true,
        };
        let u = self.store.report(&self.cfg, occ)?;
        out.push(u);
        Some(u.index())
    }

    pub(super) fn reclaim_end(
        &mut self,
        ev: &Event,
        nr_reclaimed: u64,
        out: &mut Vec<FindingUpdate>,
    ) {
        let Some(r) = self.task_mut(ev.pid).reclaim.take() else {
            return;
        };
        let dur = ev.ts_ns.saturating_sub(r.since_ns);
        if let Some((_, rec)) = self.recent.iter_mut().find(|(s, _)| *s == r.recent_seq) {
            rec.end_ns = Some(ev.ts_ns);
            rec.nr_reclaimed = Some(nr_reclaimed);
        }
        for idx in r.links {
            let f = &mut self.store.findings[idx];
            f.durations.reclaim_ns = Some(f.durations.reclaim_ns.unwrap_or(0).max(dur));
            f.durations.reclaim_total_ns = f.durations.reclaim_total_ns.saturating_add(dur);
            out.push(FindingUpdate::Updated { index: idx });
        }
    }

    pub(super) fn contention_begin(&mut self, ev: &Event, out: &mut Vec<FindingUpdate>) {
        // contention_begin fires more than once per wait (spinning, then sleeping): a task
        // already waiting goes on with the same wait.
        if self.tasks[&ev.pid].wait.is_some() {
            return;
        }
        let constraint = self
            .cfg
            .effective_gfp(ev.caller_gfp.unwrap_or(self.cfg.gfp_kernel), ev.task_flags);
        self.counters.contentions += 1;
        let constrained = self.cfg.forbidden(constraint) != 0;
        if constrained {
            self.counters.contentions_constrained += 1;
        }
        let facts = ev.stack_id.and_then(|id| self.stacks.get(&id).copied());
        let reason = evidence::classify(&self.cfg, ev.caller_gfp, ev.task_flags, facts);
        let class = match reason {
            Some(r) => r.id(),
            None => "balance_worker_or_unconstrained",
        };
        *self
            .activity
            .waits_by_class
            .entry(class.to_string())
            .or_default() += 1;
        self.task_mut(ev.pid).wait = Some(OpenWait {
            since_ns: ev.ts_ns,
            caller_gfp: ev.caller_gfp,
            flags: ev.task_flags,
            constraint,
            reason,
            stack_id: ev.stack_id,
            links: Vec::new(),
        });
        self.waiters.insert(ev.pid);
        if !constrained || reason.is_none() {
            return;
        }
        // The holder may already be reclaiming.
        let Some(hpid) = self.holder.as_ref().map(|h| h.pid).filter(|&p| p != ev.pid) else {
            return;
        };
        if let Some(idx) = self.cross_task(hpid, ev.pid, ev.ts_ns, out) {
            let cap = self.cfg.max_pending_links;
            if let Some(w) = self.task_mut(ev.pid).wait.as_mut() {
                push_link(&mut w.links, idx, cap);
            }
            if let Some(r) = self.tasks.get_mut(&hpid).and_then(|t| t.reclaim.as_mut()) {
                push_link(&mut r.links, idx, cap);
            }
        }
    }

    /// Ends `pid`'s wait, if any. `seen_end`: at its contention_end (the wait's length is
    /// known); otherwise at another event of the task (a blocked task makes none, so its
    /// contention_end was lost) and the length is not written down.
    pub(super) fn end_wait(
        &mut self,
        pid: u32,
        ts: u64,
        seen_end: bool,
        out: &mut Vec<FindingUpdate>,
    ) {
        self.waiters.remove(&pid);
        let Some(w) = self.tasks.get_mut(&pid).and_then(|t| t.wait.take()) else {
            return;
        };
        if !seen_end {
            return;
        }
        let dur = ts.saturating_sub(w.since_ns);
        for idx in w.links {
            let f = &mut self.store.findings[idx];
            f.durations.wait_ns = Some(f.durations.wait_ns.unwrap_or(0).max(dur));
            f.durations.wait_end_seen = true;
            out.push(FindingUpdate::Updated { index: idx });
        }
    }
}

fn push_link(links: &mut Vec<usize>, idx: usize, cap: usize) {
    if !links.contains(&idx) && links.len() < cap {
        links.push(idx);
    }
}
