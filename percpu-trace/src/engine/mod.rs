//! Pure detection engine: decoded events in, state and deduplicated findings out.
//!
//! No BPF, no terminal, no clock: time comes from the events, maps iterate in a fixed order,
//! so the same stream always gives the same findings (record and replay rely on it).
//!
//! # How events are judged
//! Every allocation is judged by its *effective* gfp: the gfp it was made with, narrowed by
//! the memalloc scope in the task's flags at that moment (what current_gfp_context() does in
//! the page allocator). The constraint of a pcpu_alloc caller is its gfp narrowed by the scope
//! it had on entry (pcpu_alloc applies current_gfp_context() first).
//!
//! - `recursion`: an event `ReclaimBegin` with `holds_mutex == Some(true)` from a task whose
//!   constraint (caller gfp and/or scope) forbids IO/FS that the effective reclaim gfp allows.
//! - `window`: with the mutex held, inside a pcpu_alloc whose *gfp argument* forbids IO/FS,
//!   a nested allocation that can reclaim (__GFP_DIRECT_RECLAIM) with an effective gfp
//!   allowing some of what the argument forbade. Only the argument counts: what a scope
//!   forbids, the scope also takes away from the nested allocations, so scope-constrained
//!   callers are covered (unless the scope ended in between, which the flags then show).
//!   The nested gfp of each operation:
//!   * `GetVmAreas { gfp: None }`: GFP_KERNEL when the kernel is known to lack the fix
//!     (unpatched pcpu_get_vm_areas allocates its metadata with GFP_KERNEL), not judged when
//!     the fix status is unknown; `Some(g)`: `g` (the fix passes the caller's gfp).
//!   * `Vmalloc { gfp }`: `gfp`. `PgtableAlloc`: GFP_KERNEL (GFP_PGTABLE_KERNEL).
//!   * `ChunkPopulate { gfp: Some(g) }` and `ChunkCreate { gfp: Some(g) }`: `g`. Before the fix
//!     this is `gfp & (GFP_KERNEL|NORETRY|NOWARN)`, which keeps the caller's constraint, so
//!     on real kernels these do not fire: the hazard is *inside* them (page tables, vmalloc
//!     metadata, pcpu_get_vm_areas), and those have their own events. Judging the passed gfp
//!     still catches a kernel that widens it.
//!   * `ChunkCreate { gfp: None }` (seen through the percpu_create_chunk tracepoint, where
//!     pcpu_get_vm_areas may not be probed): GFP_KERNEL when the kernel is known to lack the
//!     fix (`fix_present == Some(false)`), since the chunk's vm areas were then allocated
//!     with GFP_KERNEL metadata; not judged otherwise.
//! - `cross_task`: a holder's `ReclaimBegin` whose effective gfp allows IO/FS that a waiting
//!   task's constraint forbids, checked both when the reclaim begins (waiters already there)
//!   and when a waiter arrives (holder already reclaiming). Only a waiter with a reason
//!   counts (its gfp argument, IO_FLUSHER, a NOFS/NOIO scope that is not the balance
//!   worker's: see [`evidence`]); High needs a gfp-constrained or IO_FLUSHER waiter.
//!
//! Nested allocations by a PF_MEMALLOC task cannot direct-reclaim: no window. A wait is one
//! wait however many `ContentionBegin` it fires; it ends at `ContentionEnd` or at any other
//! event of the task (a blocked task makes none). A reclaim begun under the mutex ends at
//! the latest when that hold ends. An occurrence resting on state begun before events were
//! lost, or on task flags the kernel side could not read, carries a [`Doubt`] and is never
//! High or Critical.
//!
//! # What else it owns
//! Everything derived from events lives here and nowhere else: the hold history of the
//! mutex ([`HoldHistory`]), the caller and chunk tables ([`Tables`]), volume counters, the
//! latest loss totals ([`LossTotals`]) and the finding filter of the run
//! ([`FindingFilter`]). The TUI, headless mode, metrics and reports read them through
//! [`Engine::snapshot`] and the accessors.
//!
//! Layout: `task` (per-task state), `bookkeeping` (keeping it: holder tracking, bounds),
//! `rules` (the three rules), `evidence` (waiter reasons, doubts, severity), `occurrence`
//! and `store` (deduplication), `wording` (explanations), `state` (read-only views),
//! `fix_evidence` (what the run shows about the fix series, and [`reconcile`] of that with
//! the static verdict).
//!
//! # Bounds
//! A task's state is dropped as soon as it has nothing open (no pcpu_alloc, reclaim, wait or
//! mutex hold), on TaskExit, and by least-recently-seen eviction beyond `max_tasks`. Findings,
//! recent reclaims, counter keys and per-reclaim/per-wait links all have caps.
pub mod activity;
mod bookkeeping;
pub mod config;
pub mod evidence;
pub mod filter;
pub mod finding;
pub mod fix_evidence;
pub mod holds;
pub mod losses;
mod occurrence;
mod rules;
pub mod state;
mod store;
pub mod tables;
mod task;
mod wording;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use activity::{process_key, top_processes, ActivityCounts, ProcessActivity, TOP_PROCESSES};
pub use config::EngineConfig;
pub use evidence::StackFacts;
pub use filter::FindingFilter;
pub use finding::{
    Doubt, Durations, Finding, FindingKind, FindingUpdate, Severity, TaskInfo, TaskRole, Trigger,
    WaiterReason,
};
pub use fix_evidence::{reconcile, FixObservations, Reconciled};
pub use holds::HoldHistory;
pub use losses::LossTotals;
pub use state::{Activity, Counters, EngineState, HolderView, ReclaimRecord, TaskView, WaiterView};
pub use tables::{CallerRow, ChunkRow, Tables};

use crate::event::{Event, EventKind, Frame};

/// Key under which comms beyond `max_counter_keys` are counted.
pub const OTHER_COMM: &str = "(other)";

/// Names of the event kinds, in [`kind_index`] order (as in the event JSON `type`).
pub const EVENT_KIND_NAMES: [&str; 13] = [
    "pcpu_alloc_enter",
    "pcpu_alloc_exit",
    "pcpu_alloc_done",
    "chunk_create",
    "chunk_populate",
    "get_vm_areas",
    "vmalloc",
    "pgtable_alloc",
    "reclaim_begin",
    "reclaim_end",
    "contention_begin",
    "contention_end",
    "task_exit",
];

/// Index of an event kind in [`EVENT_KIND_NAMES`].
pub fn kind_index(k: &EventKind) -> usize {
    match k {
        EventKind::PcpuAllocEnter { .. } => 0,
        EventKind::PcpuAllocExit { .. } => 1,
        EventKind::PcpuAllocDone { .. } => 2,
        EventKind::ChunkCreate { .. } => 3,
        EventKind::ChunkPopulate { .. } => 4,
        EventKind::GetVmAreas { .. } => 5,
        EventKind::Vmalloc { .. } => 6,
        EventKind::PgtableAlloc => 7,
        EventKind::ReclaimBegin { .. } => 8,
        EventKind::ReclaimEnd { .. } => 9,
        EventKind::ContentionBegin { .. } => 10,
        EventKind::ContentionEnd { .. } => 11,
        EventKind::TaskExit => 12,
    }
}

/// Hasher for pid keys: a multiplicative hash, cheap and without a random seed (the engine
/// must be deterministic; outputs are sorted anyway).
use store::FindingStore;
use task::{AllocState, FastMap, Holder, TaskState};

/// The correlation engine. See the module documentation for the rules.
pub struct Engine {
    cfg: EngineConfig,
    tasks: FastMap<u32, TaskState>,
    waiters: BTreeSet<u32>,
    holder: Option<Holder>,
    store: FindingStore,
    recent: VecDeque<(u64, ReclaimRecord)>,
    recent_seq: u64,
    now_ns: u64,
    by_kind: [u64; 13],
    counters: Counters,
    by_comm: FastMap<String, u64>,
    holds: HoldHistory,
    activity: ActivityCounts,
    /// The kernel's activity totals as last received (by name).
    kernel_activity: BTreeMap<String, u64>,
    tables: Tables,
    losses: LossTotals,
    /// `now_ns` when the count of lost events last rose.
    loss_seen_ns: Option<u64>,
    /// What each kernel stack said about its task (ids come before the events using them).
    stacks: FastMap<u32, StackFacts>,
    filter: FindingFilter,
    fix: FixObservations,
}

impl Engine {
    /// A fresh engine.
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            cfg,
            tasks: FastMap::default(),
            waiters: BTreeSet::new(),
            holder: None,
            store: FindingStore::default(),
            recent: VecDeque::new(),
            recent_seq: 0,
            now_ns: 0,
            by_kind: [0; 13],
            counters: Counters::default(),
            by_comm: FastMap::default(),
            holds: HoldHistory::default(),
            activity: ActivityCounts::default(),
            kernel_activity: BTreeMap::new(),
            tables: Tables::default(),
            losses: LossTotals::default(),
            loss_seen_ns: None,
            stacks: FastMap::default(),
            filter: FindingFilter::default(),
            fix: FixObservations::default(),
        }
    }

    /// A fresh engine whose [`Engine::selected`] findings are those matching `filter` (the
    /// run's `--comm`/`--cgroup`/`--pid`).
    pub fn with_filter(cfg: EngineConfig, filter: FindingFilter) -> Self {
        let mut e = Engine::new(cfg);
        e.filter = filter;
        e
    }

    /// The run's finding filter.
    pub fn filter(&self) -> &FindingFilter {
        &self.filter
    }

    /// Whether finding `f` is one the run selected (see [`Engine::with_filter`]).
    pub fn is_selected(&self, f: &Finding) -> bool {
        self.filter.matches_finding(f)
    }

    /// Findings the run's filter selects, with their indexes in [`Engine::findings`].
    pub fn selected(&self) -> impl Iterator<Item = (usize, &Finding)> {
        self.store
            .findings
            .iter()
            .enumerate()
            .filter(|(_, f)| self.filter.matches_finding(f))
    }

    /// Occurrences of selected findings by kind id (`recursion=3`), for summaries.
    pub fn selected_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for (_, f) in self.selected() {
            *m.entry(f.kind.id()).or_default() += f.count;
        }
        m
    }

    /// Replaces the loss totals with the latest cumulative counters by reason (from the
    /// pipeline once a second, or a recording's `drops` record).
    /// Occurrences resting on state older than the latest rise are marked
    /// [`Doubt::EventsLost`]; occurrences seen since the previous counters (their loss check
    /// pending, [`Doubt::LossCheckPending`]) are settled: lost if the count rose, re-graded
    /// to what they earn if not. Returns the findings that changed.
    pub fn set_losses(&mut self, by_reason: BTreeMap<String, u64>) -> Vec<FindingUpdate> {
        let new = LossTotals { by_reason };
        let rose = new.events_lost() > self.losses.events_lost();
        if rose {
            self.loss_seen_ns = Some(self.now_ns);
        }
        self.losses = new;
        self.store
            .settle(rose)
            .into_iter()
            .map(|index| FindingUpdate::Updated { index })
            .collect()
    }

    /// A kernel stack, symbolized (from the pipeline or a recording's stack table, before
    /// the first event that uses it): lets the engine tell, e.g., the balance worker.
    pub fn stack(&mut self, id: u32, frames: &[Frame]) {
        self.stacks.insert(id, StackFacts::of(frames));
    }

    /// What an occurrence of `kind` cannot be sure of. `state_since`: when the oldest
    /// engine-side state it rests on began (`None`: the triggering event carries all of it).
    /// State from before the latest rise of the loss count is in doubt; any other state
    /// waits for the next counters (a loss reported then may have made it stale). Unknown
    /// task flags matter only to a window: the nested allocation's gfp is narrowed by the
    /// scope and PF_MEMALLOC forbids its reclaim, while a reclaim's reported gfp is already
    /// narrowed (current_gfp_context() before the vmscan tracepoint) and a caller's gfp
    /// argument comes from the probe.
    fn doubts(&self, kind: FindingKind, state_since: Option<u64>) -> Vec<Doubt> {
        let mut d = Vec::new();
        if let Some(s) = state_since {
            if self.loss_seen_ns.is_some_and(|l| s <= l) {
                d.push(Doubt::EventsLost);
            } else {
                d.push(Doubt::LossCheckPending);
            }
        }
        if !self.cfg.task_flags_known && kind == FindingKind::Window {
            d.push(Doubt::TaskFlagsUnknown);
        }
        d
    }

    /// Whether state begun at `since` is still evidence at `ts` (see
    /// [`EngineConfig::max_open_state_ns`]).
    fn fresh(&self, since: u64, ts: u64) -> bool {
        ts.saturating_sub(since) <= self.cfg.max_open_state_ns
    }

    /// Sets the kernel's host-wide activity totals (cumulative, by name).
    pub fn set_kernel_activity(&mut self, totals: &BTreeMap<String, u64>) {
        self.activity.set_kernel(totals);
        self.kernel_activity = totals.clone();
    }

    /// What the run saw (see [`ActivityCounts`]), with the counts the engine keeps in its
    /// counters filled in from there (not counted twice), and the constrained counts the
    /// kernel kept where it kept them (it sends only slow-path constrained calls).
    pub fn activity(&self) -> ActivityCounts {
        ActivityCounts {
            constrained_allocations: self.counters.constrained_allocs,
            reclaims_by_holder: self.counters.reclaims_holding_mutex,
            ..self.activity.clone()
        }
        .with_kernel_counts(&self.kernel_activity)
    }

    /// The latest loss totals.
    pub fn losses(&self) -> &LossTotals {
        &self.losses
    }

    /// The caller and chunk tables.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// What the run showed about the fix series (see [`fix_evidence`]).
    pub fn fix_observations(&self) -> &FixObservations {
        &self.fix
    }

    /// The hold history of pcpu_alloc_mutex.
    pub fn holds(&self) -> &HoldHistory {
        &self.holds
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Deduplicated findings, in order of first occurrence. Indexes are stable.
    pub fn findings(&self) -> &[Finding] {
        &self.store.findings
    }

    /// The engine's clock: the latest event timestamp it has seen (0: none yet).
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Number of tracked tasks (bounded by `max_tasks`).
    pub fn tracked_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Feeds one event; returns what it did to the findings (usually nothing, and then
    /// nothing is allocated).
    pub fn process(&mut self, ev: &Event) -> Vec<FindingUpdate> {
        // Flags read at an unknown offset are not flags: judge as if there were no scope
        // (every finding then carries Doubt::TaskFlagsUnknown).
        let zeroed;
        let ev = if self.cfg.task_flags_known || ev.task_flags == 0 {
            ev
        } else {
            zeroed = Event {
                task_flags: 0,
                ..ev.clone()
            };
            &zeroed
        };
        let mut out = Vec::new();
        self.now_ns = self.now_ns.max(ev.ts_ns);
        self.counters.events += 1;
        self.by_kind[kind_index(&ev.kind)] += 1;

        if matches!(ev.kind, EventKind::TaskExit) {
            self.forget(ev.pid);
            return out;
        }
        self.touch(ev);
        // Tracepoint mode: what this call did under the mutex, paired with its completion
        // below (taken before the hold ends: any other end of the hold forgets it).
        let (pending_create, pending_reclaim) = match ev.kind {
            EventKind::PcpuAllocDone { .. } => {
                let t = self.task_mut(ev.pid);
                (t.pending_create.take(), t.pending_reclaim.take())
            }
            _ => (None, None),
        };
        if !matches!(
            ev.kind,
            EventKind::ContentionBegin { .. } | EventKind::ContentionEnd { .. }
        ) {
            // A task blocked on the mutex makes no events: this one is not waiting.
            self.end_wait(ev.pid, ev.ts_ns, false, &mut out);
        }
        if let EventKind::ContentionBegin {
            owner_pid: Some(owner),
            ..
        } = ev.kind
        {
            // The owner holds the mutex, so it is not waiting for it (its contention_end
            // may have been lost).
            if owner != ev.pid {
                self.end_wait(owner, ev.ts_ns, false, &mut out);
            }
        }
        self.track_holder(ev);
        if ev.holds_mutex.is_some() {
            self.tables.mutex_known = true;
        }
        // Fix evidence reads scopes: without the task flags it shows nothing either way.
        if self.cfg.task_flags_known {
            let alloc = self.tasks.get(&ev.pid).and_then(|t| t.alloc.as_ref());
            self.fix
                .observe(ev, alloc.map(|a| (a.gfp, a.entry_flags)), &self.cfg);
        }

        let gfp_kernel = self.cfg.gfp_kernel;
        let fix_present = self.cfg.fix_present;
        match ev.kind {
            EventKind::PcpuAllocEnter { gfp, .. } => {
                let t = self.task_mut(ev.pid);
                t.alloc = Some(AllocState {
                    gfp,
                    entry_flags: ev.task_flags,
                    since_ns: ev.ts_ns,
                    took_mutex: false,
                });
                t.work = Activity::Idle;
                self.count_constrained(ev, gfp, None);
            }
            EventKind::PcpuAllocExit { .. } => {
                // Returned: the mutex (if it took it) was released before.
                let t = self.task_mut(ev.pid);
                t.alloc = None;
                t.work = Activity::Idle;
                t.hold_since_ns = None;
                // Reclaim inside the call ended before it returned.
                t.reclaim = None;
                t.pending_create = None;
                t.pending_reclaim = None;
            }
            EventKind::PcpuAllocDone { gfp, call_site, .. } => {
                // The tracepoint fires after the unlock. A call whose entry was seen was
                // counted there.
                let counted = self.tasks.get(&ev.pid).is_some_and(|t| t.alloc.is_some());
                // The kernel also sends the completion of an unconstrained call that did
                // something under the mutex, so that it is not paired with a later call.
                let constrained = self.cfg.forbidden(gfp) != 0;
                if !counted && constrained {
                    self.count_constrained(ev, gfp, Some(call_site));
                }
                let reclaim_seen = self.tracepoint_recursion(ev, gfp, pending_reclaim, &mut out);
                if let Some(c) = pending_create {
                    self.tracepoint_window(ev, gfp, c, reclaim_seen, &mut out);
                }
                let t = self.task_mut(ev.pid);
                t.hold_since_ns = None;
                t.work = Activity::Idle;
                t.reclaim = None;
            }
            EventKind::ChunkCreate { gfp, .. } => {
                self.tables.chunk(ev, gfp, |r| r.creates += 1);
                if self.constrained_holder(ev) {
                    self.activity.chunk_creates_by_constrained_holder += 1;
                }
                self.task_mut(ev.pid).work = Activity::CreatingChunk;
                let nested = match gfp {
                    Some(g) => Some(g),
                    None if fix_present == Some(false) => Some(gfp_kernel),
                    None => None,
                };
                if let Some(n) = nested {
                    self.check_window(ev, Trigger::ChunkCreate { gfp }, n, &mut out);
                }
                let unseen_entry = self.tasks[&ev.pid].alloc.is_none();
                if nested.is_some() && gfp.is_none() && unseen_entry && ev.holds_mutex == Some(true)
                {
                    // Tracepoint-only: the caller's gfp comes with its percpu_alloc_percpu.
                    let hold_ns = self.hold_ns(self.tasks[&ev.pid].hold_since_ns, ev.ts_ns);
                    self.task_mut(ev.pid).pending_create = Some(task::PendingCreate {
                        ts_ns: ev.ts_ns,
                        flags: ev.task_flags,
                        stack_id: ev.stack_id,
                        hold_ns,
                    });
                }
            }
            EventKind::ChunkPopulate { gfp, .. } => {
                self.tables.chunk(ev, gfp, |r| r.populates += 1);
                if self.constrained_holder(ev) {
                    self.activity.chunk_populates_by_constrained_holder += 1;
                }
                self.task_mut(ev.pid).work = Activity::Populating;
                if let Some(g) = gfp {
                    self.check_window(ev, Trigger::ChunkPopulate { gfp }, g, &mut out);
                }
            }
            EventKind::GetVmAreas { gfp, .. } => {
                self.tables.chunk(ev, gfp, |r| r.vm_areas += 1);
                self.task_mut(ev.pid).work = Activity::CreatingChunk;
                // No gfp: GFP_KERNEL metadata only where the fix is known to be absent.
                let n = match gfp {
                    Some(g) => Some(g),
                    None if fix_present == Some(false) => Some(gfp_kernel),
                    None => None,
                };
                if let Some(n) = n {
                    self.count_nested(ev, n);
                    self.check_window(ev, Trigger::GetVmAreas { gfp }, n, &mut out);
                }
            }
            EventKind::Vmalloc { gfp, .. } => {
                self.tables.chunk(ev, Some(gfp), |r| r.vmallocs += 1);
                self.count_nested(ev, gfp);
                self.check_window(ev, Trigger::Vmalloc { gfp }, gfp, &mut out);
            }
            EventKind::PgtableAlloc => {
                self.tables.chunk(ev, None, |r| r.pgtables += 1);
                self.count_nested(ev, gfp_kernel);
                self.check_window(ev, Trigger::PgtableAlloc, gfp_kernel, &mut out);
            }
            EventKind::ReclaimBegin { gfp, order, memcg } => {
                self.reclaim_begin(ev, gfp, order, memcg, &mut out);
            }
            EventKind::ReclaimEnd { nr_reclaimed, .. } => {
                self.reclaim_end(ev, nr_reclaimed, &mut out);
            }
            EventKind::ContentionBegin { .. } => self.contention_begin(ev, &mut out),
            EventKind::ContentionEnd { .. } => self.end_wait(ev.pid, ev.ts_ns, true, &mut out),
            EventKind::TaskExit => {}
        }

        if self.tasks.get(&ev.pid).is_some_and(TaskState::idle) {
            self.tasks.remove(&ev.pid);
        }
        out
    }

    /// A copy of the state for display, at the time of the latest event.
    pub fn snapshot(&self) -> EngineState {
        let now = self.now_ns;
        let holder = self.holder.as_ref().map(|h| {
            let t = self.tasks.get(&h.pid);
            let caller_gfp = t.and_then(|t| t.alloc.as_ref().map(|a| a.gfp));
            let constraint = t.map_or(self.cfg.gfp_kernel, |t| self.constraint_of(t));
            HolderView {
                pid: h.pid,
                tgid: t.map_or(0, |t| t.tgid),
                comm: t.map(|t| t.comm.clone()).unwrap_or_default(),
                since_ns: h.since_ns,
                confirmed_ns: h.confirmed_ns,
                held_ns: now.saturating_sub(h.since_ns),
                activity: t.map_or(Activity::Idle, TaskState::activity),
                caller_gfp,
                constraint_gfp: constraint,
                constrained: self.cfg.forbidden(constraint) != 0,
                task_flags: t.map_or(0, |t| t.task_flags),
            }
        });
        let waiters = self
            .waiters
            .iter()
            .filter_map(|pid| self.tasks.get(pid))
            .filter_map(|t| {
                let w = t.wait.as_ref()?;
                Some(WaiterView {
                    pid: t.pid,
                    tgid: t.tgid,
                    comm: t.comm.clone(),
                    since_ns: w.since_ns,
                    waited_ns: now.saturating_sub(w.since_ns),
                    caller_gfp: w.caller_gfp,
                    constraint_gfp: w.constraint,
                    constrained: self.cfg.forbidden(w.constraint) != 0,
                    task_flags: w.flags,
                })
            })
            .collect();
        let mut tasks: Vec<TaskView> = self
            .tasks
            .values()
            .map(|t| TaskView {
                pid: t.pid,
                tgid: t.tgid,
                comm: t.comm.clone(),
                cgroup_id: t.cgroup_id,
                task_flags: t.task_flags,
                activity: t.activity(),
                caller_gfp: t.alloc.as_ref().map(|a| a.gfp),
                alloc_since_ns: t.alloc.as_ref().map(|a| a.since_ns),
                hold_since_ns: t.hold_since_ns,
                reclaim_since_ns: t.reclaim.as_ref().map(|r| r.since_ns),
                wait_since_ns: t.wait.as_ref().map(|w| w.since_ns),
                last_seen_ns: t.last_seen_ns,
            })
            .collect();
        tasks.sort_by_key(|t| t.pid);
        let mut counters = self.counters.clone();
        counters.findings_dropped = self.store.dropped;
        counters.events_by_kind = EVENT_KIND_NAMES
            .iter()
            .zip(self.by_kind)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.to_string(), n))
            .collect();
        counters.occurrences_by_kind = FindingKind::ALL
            .iter()
            .zip(self.store.occurrences)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.id().to_string(), n))
            .collect();
        counters.constrained_by_comm = self
            .by_comm
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect::<BTreeMap<_, _>>();
        EngineState {
            now_ns: now,
            holder,
            waiters,
            tasks,
            recent_reclaims: self.recent.iter().map(|(_, r)| r.clone()).collect(),
            counters,
            findings: self.store.findings.len(),
            holds: self.holds.clone(),
            activity: self.activity(),
            losses: self.losses.clone(),
        }
    }
}

#[cfg(test)]
mod evidence_tests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod truth_tests;
