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
//!   * `GetVmAreas { gfp: None }`: GFP_KERNEL (unpatched pcpu_get_vm_areas allocates its
//!     metadata with GFP_KERNEL); `Some(g)`: `g` (the fix passes the caller's gfp).
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
//!   and when a waiter arrives (holder already reclaiming).
//!
//! # Bounds
//! A task's state is dropped as soon as it has nothing open (no pcpu_alloc, reclaim, wait or
//! mutex hold), on TaskExit, and by least-recently-seen eviction beyond `max_tasks`. Findings,
//! recent reclaims, counter keys and per-reclaim/per-wait links all have caps.
pub mod config;
pub mod finding;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

pub use config::EngineConfig;
pub use finding::{
    Durations, Finding, FindingKind, FindingUpdate, Severity, TaskInfo, TaskRole, Trigger,
};
pub use state::{Activity, Counters, EngineState, HolderView, ReclaimRecord, TaskView, WaiterView};

use crate::event::{Event, EventKind};

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
#[derive(Default)]
struct PidHasher(u64);

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

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<PidHasher>>;

/// FNV-1a, for finding signatures that must be stable across runs and builds.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
}

/// A constrained pcpu_alloc in progress.
#[derive(Clone, Debug)]
struct AllocState {
    /// gfp as passed (caller_gfp / PcpuAllocEnter gfp).
    gfp: u32,
    /// Task flags on entry (the scope pcpu_alloc folded into its gfp).
    entry_flags: u32,
    since_ns: u64,
}

#[derive(Clone, Debug)]
struct OpenReclaim {
    since_ns: u64,
    effective_gfp: u32,
    held_mutex: bool,
    stack_id: Option<u32>,
    /// Sequence number of its entry in `recent`.
    recent_seq: u64,
    /// Findings whose durations this reclaim completes when it ends.
    links: Vec<usize>,
}

#[derive(Clone, Debug)]
struct OpenWait {
    since_ns: u64,
    caller_gfp: Option<u32>,
    flags: u32,
    /// Effective constraint: caller gfp (or GFP_KERNEL) narrowed by the scope.
    constraint: u32,
    stack_id: Option<u32>,
    links: Vec<usize>,
}

#[derive(Clone, Debug)]
struct TaskState {
    pid: u32,
    tgid: u32,
    comm: String,
    cgroup_id: u64,
    task_flags: u32,
    last_seen_ns: u64,
    alloc: Option<AllocState>,
    /// Chunk work in the current allocation.
    work: Activity,
    hold_since_ns: Option<u64>,
    reclaim: Option<OpenReclaim>,
    wait: Option<OpenWait>,
}

impl TaskState {
    fn idle(&self) -> bool {
        self.alloc.is_none()
            && self.reclaim.is_none()
            && self.wait.is_none()
            && self.hold_since_ns.is_none()
    }

    fn activity(&self) -> Activity {
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
struct Holder {
    pid: u32,
    since_ns: u64,
    confirmed_ns: u64,
}

/// One occurrence about to be reported.
struct Occurrence<'a> {
    kind: FindingKind,
    trigger: Trigger,
    trigger_effective_gfp: Option<u32>,
    constraint_gfp: u32,
    violated: u32,
    ts_ns: u64,
    /// (task, role, stack of that task's part)
    parts: [Option<(&'a TaskState, TaskRole, Option<u32>)>; 2],
    hold_ns: Option<u64>,
    wait_ns: Option<u64>,
}

/// The correlation engine. See the module documentation for the rules.
pub struct Engine {
    cfg: EngineConfig,
    tasks: FastMap<u32, TaskState>,
    waiters: BTreeSet<u32>,
    holder: Option<Holder>,
    findings: Vec<Finding>,
    index: FastMap<(FindingKind, u64), usize>,
    recent: VecDeque<(u64, ReclaimRecord)>,
    recent_seq: u64,
    now_ns: u64,
    by_kind: [u64; 13],
    occurrences: [u64; 3],
    counters: Counters,
    by_comm: FastMap<String, u64>,
}

impl Engine {
    /// A fresh engine.
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            cfg,
            tasks: FastMap::default(),
            waiters: BTreeSet::new(),
            holder: None,
            findings: Vec::new(),
            index: FastMap::default(),
            recent: VecDeque::new(),
            recent_seq: 0,
            now_ns: 0,
            by_kind: [0; 13],
            occurrences: [0; 3],
            counters: Counters::default(),
            by_comm: FastMap::default(),
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Deduplicated findings, in order of first occurrence. Indexes are stable.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Number of tracked tasks (bounded by `max_tasks`).
    pub fn tracked_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Feeds one event; returns what it did to the findings (usually nothing, and then
    /// nothing is allocated).
    pub fn process(&mut self, ev: &Event) -> Vec<FindingUpdate> {
        let mut out = Vec::new();
        self.now_ns = self.now_ns.max(ev.ts_ns);
        self.counters.events += 1;
        self.by_kind[kind_index(&ev.kind)] += 1;

        if matches!(ev.kind, EventKind::TaskExit) {
            self.forget(ev.pid);
            return out;
        }
        self.touch(ev);
        self.track_holder(ev);

        let gfp_kernel = self.cfg.gfp_kernel;
        let fix_present = self.cfg.fix_present;
        match ev.kind {
            EventKind::PcpuAllocEnter { gfp, .. } => {
                let t = self.task_mut(ev.pid);
                t.alloc = Some(AllocState {
                    gfp,
                    entry_flags: ev.task_flags,
                    since_ns: ev.ts_ns,
                });
                t.work = Activity::Idle;
                self.count_constrained(gfp, ev.pid);
            }
            EventKind::PcpuAllocExit { .. } => {
                // Returned: the mutex (if it took it) was released before.
                let t = self.task_mut(ev.pid);
                t.alloc = None;
                t.work = Activity::Idle;
                t.hold_since_ns = None;
                self.release_if_holder(ev.pid);
            }
            EventKind::PcpuAllocDone { gfp, .. } => {
                // The tracepoint fires after the unlock.
                let counted = self.tasks.get(&ev.pid).is_some_and(|t| t.alloc.is_some());
                if !counted {
                    self.count_constrained(gfp, ev.pid);
                }
                let t = self.task_mut(ev.pid);
                t.hold_since_ns = None;
                t.work = Activity::Idle;
                self.release_if_holder(ev.pid);
            }
            EventKind::ChunkCreate { gfp, .. } => {
                self.task_mut(ev.pid).work = Activity::CreatingChunk;
                let nested = match gfp {
                    Some(g) => Some(g),
                    None if fix_present == Some(false) => Some(gfp_kernel),
                    None => None,
                };
                if let Some(n) = nested {
                    self.check_window(ev, Trigger::ChunkCreate { gfp }, n, &mut out);
                }
            }
            EventKind::ChunkPopulate { gfp, .. } => {
                self.task_mut(ev.pid).work = Activity::Populating;
                if let Some(g) = gfp {
                    self.check_window(ev, Trigger::ChunkPopulate { gfp }, g, &mut out);
                }
            }
            EventKind::GetVmAreas { gfp, .. } => {
                self.task_mut(ev.pid).work = Activity::CreatingChunk;
                let n = gfp.unwrap_or(gfp_kernel);
                self.check_window(ev, Trigger::GetVmAreas { gfp }, n, &mut out);
            }
            EventKind::Vmalloc { gfp, .. } => {
                self.check_window(ev, Trigger::Vmalloc { gfp }, gfp, &mut out);
            }
            EventKind::PgtableAlloc => {
                self.check_window(ev, Trigger::PgtableAlloc, gfp_kernel, &mut out);
            }
            EventKind::ReclaimBegin { gfp, order, memcg } => {
                self.reclaim_begin(ev, gfp, order, memcg, &mut out);
            }
            EventKind::ReclaimEnd { nr_reclaimed, .. } => {
                self.reclaim_end(ev, nr_reclaimed, &mut out);
            }
            EventKind::ContentionBegin { .. } => self.contention_begin(ev, &mut out),
            EventKind::ContentionEnd { .. } => self.contention_end(ev, &mut out),
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
        counters.events_by_kind = EVENT_KIND_NAMES
            .iter()
            .zip(self.by_kind)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.to_string(), n))
            .collect();
        counters.occurrences_by_kind = FindingKind::ALL
            .iter()
            .zip(self.occurrences)
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
            findings: self.findings.len(),
        }
    }

    // ------------------------------------------------------------------ task bookkeeping

    /// Creates or refreshes the task's state from the common event fields.
    fn touch(&mut self, ev: &Event) {
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
    fn evict(&mut self) {
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

    fn forget(&mut self, pid: u32) {
        self.forget_task(pid);
        self.release_if_holder(pid);
    }

    fn forget_task(&mut self, pid: u32) {
        self.tasks.remove(&pid);
        self.waiters.remove(&pid);
    }

    fn task_mut(&mut self, pid: u32) -> &mut TaskState {
        self.tasks.get_mut(&pid).expect("touch() inserted the task")
    }

    fn release_if_holder(&mut self, pid: u32) {
        if self.holder.as_ref().is_some_and(|h| h.pid == pid) {
            self.holder = None;
        }
    }

    fn track_holder(&mut self, ev: &Event) {
        match ev.holds_mutex {
            Some(true) => {
                match &mut self.holder {
                    Some(h) if h.pid == ev.pid => h.confirmed_ns = ev.ts_ns,
                    _ => {
                        // A new owner: whoever we thought held it has released it.
                        if let Some(old) = self.holder.take() {
                            if let Some(t) = self.tasks.get_mut(&old.pid) {
                                t.hold_since_ns = None;
                            }
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
                self.release_if_holder(ev.pid);
            }
            None => {}
        }
    }

    fn count_constrained(&mut self, gfp: u32, pid: u32) {
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
    fn constraint_of(&self, t: &TaskState) -> u32 {
        match &t.alloc {
            Some(a) => self.cfg.effective_gfp(a.gfp, a.entry_flags | t.task_flags),
            None => self.cfg.effective_gfp(self.cfg.gfp_kernel, t.task_flags),
        }
    }

    // ------------------------------------------------------------------ rules

    fn check_window(
        &mut self,
        ev: &Event,
        trigger: Trigger,
        nested: u32,
        out: &mut Vec<FindingUpdate>,
    ) {
        if ev.holds_mutex != Some(true) {
            return;
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
            hold_ns: t.hold_since_ns.map(|s| ev.ts_ns.saturating_sub(s)),
            wait_ns: None,
        };
        let up = Self::report(
            &self.cfg,
            &mut self.findings,
            &mut self.index,
            &mut self.counters,
            &mut self.occurrences,
            occ,
        );
        out.extend(up);
    }

    fn reclaim_begin(
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
        let mut links = Vec::new();

        // recursion: the holder itself is constrained.
        {
            let t = &self.tasks[&ev.pid];
            let in_scope = self.cfg.scope_constrained(ev.task_flags);
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
                        hold_ns: t.hold_since_ns.map(|s| ev.ts_ns.saturating_sub(s)),
                        wait_ns: None,
                    };
                    if let Some(u) = Self::report(
                        &self.cfg,
                        &mut self.findings,
                        &mut self.index,
                        &mut self.counters,
                        &mut self.occurrences,
                        occ,
                    ) {
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
    fn cross_task(
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
        let violated = self.cfg.forbidden(w.constraint) & r.effective_gfp;
        if violated == 0 {
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
            hold_ns: h.hold_since_ns.map(|s| ts.saturating_sub(s)),
            wait_ns: Some(ts.saturating_sub(w.since_ns)),
        };
        let u = Self::report(
            &self.cfg,
            &mut self.findings,
            &mut self.index,
            &mut self.counters,
            &mut self.occurrences,
            occ,
        )?;
        out.push(u);
        Some(u.index())
    }

    fn reclaim_end(&mut self, ev: &Event, nr_reclaimed: u64, out: &mut Vec<FindingUpdate>) {
        let Some(r) = self.task_mut(ev.pid).reclaim.take() else {
            return;
        };
        let dur = ev.ts_ns.saturating_sub(r.since_ns);
        if let Some((_, rec)) = self.recent.iter_mut().find(|(s, _)| *s == r.recent_seq) {
            rec.end_ns = Some(ev.ts_ns);
            rec.nr_reclaimed = Some(nr_reclaimed);
        }
        for idx in r.links {
            let f = &mut self.findings[idx];
            f.durations.reclaim_ns = Some(f.durations.reclaim_ns.unwrap_or(0).max(dur));
            f.durations.reclaim_total_ns = f.durations.reclaim_total_ns.saturating_add(dur);
            out.push(FindingUpdate::Updated { index: idx });
        }
    }

    fn contention_begin(&mut self, ev: &Event, out: &mut Vec<FindingUpdate>) {
        let constraint = self
            .cfg
            .effective_gfp(ev.caller_gfp.unwrap_or(self.cfg.gfp_kernel), ev.task_flags);
        self.counters.contentions += 1;
        let constrained = self.cfg.forbidden(constraint) != 0;
        if constrained {
            self.counters.contentions_constrained += 1;
        }
        self.task_mut(ev.pid).wait = Some(OpenWait {
            since_ns: ev.ts_ns,
            caller_gfp: ev.caller_gfp,
            flags: ev.task_flags,
            constraint,
            stack_id: ev.stack_id,
            links: Vec::new(),
        });
        self.waiters.insert(ev.pid);
        if !constrained {
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

    fn contention_end(&mut self, ev: &Event, out: &mut Vec<FindingUpdate>) {
        self.waiters.remove(&ev.pid);
        let Some(w) = self.task_mut(ev.pid).wait.take() else {
            return;
        };
        let dur = ev.ts_ns.saturating_sub(w.since_ns);
        for idx in w.links {
            let f = &mut self.findings[idx];
            f.durations.wait_ns = Some(f.durations.wait_ns.unwrap_or(0).max(dur));
            out.push(FindingUpdate::Updated { index: idx });
        }
    }

    /// Merges an occurrence into the findings. An associated function so callers can keep
    /// borrows of `tasks` while it runs.
    fn report(
        cfg: &EngineConfig,
        findings: &mut Vec<Finding>,
        index: &mut FastMap<(FindingKind, u64), usize>,
        counters: &mut Counters,
        occurrences: &mut [u64; 3],
        occ: Occurrence<'_>,
    ) -> Option<FindingUpdate> {
        occurrences[occ.kind as usize] += 1;
        let mut h = Fnv::new();
        h.bytes(occ.kind.id().as_bytes())
            .bytes(occ.trigger.name().as_bytes());
        for (t, role, stack) in occ.parts.iter().flatten() {
            h.u32(*role as u32).bytes(t.comm.as_bytes());
            h.u32(stack.map_or(u32::MAX, |s| s));
            // Stack-less events still separate by what was broken.
            if stack.is_none() {
                h.u32(occ.violated);
            }
        }
        let sig = h.0;
        if let Some(&idx) = index.get(&(occ.kind, sig)) {
            let f = &mut findings[idx];
            f.count += 1;
            f.first_seen_ns = f.first_seen_ns.min(occ.ts_ns);
            f.last_seen_ns = f.last_seen_ns.max(occ.ts_ns);
            max_opt(&mut f.durations.hold_ns, occ.hold_ns);
            max_opt(&mut f.durations.wait_ns, occ.wait_ns);
            return Some(FindingUpdate::Repeated { index: idx });
        }
        if findings.len() >= cfg.max_findings {
            counters.findings_dropped += 1;
            return None;
        }
        let tasks: Vec<TaskInfo> = occ
            .parts
            .iter()
            .flatten()
            .map(|(t, role, _)| {
                let (gfp, eff) = match (&t.alloc, role) {
                    (Some(a), _) => (
                        Some(a.gfp),
                        cfg.effective_gfp(a.gfp, a.entry_flags | t.task_flags),
                    ),
                    (None, TaskRole::Waiter) => (
                        t.wait.as_ref().and_then(|w| w.caller_gfp),
                        t.wait.as_ref().map_or(cfg.gfp_kernel, |w| w.constraint),
                    ),
                    (None, _) => (None, cfg.effective_gfp(cfg.gfp_kernel, t.task_flags)),
                };
                TaskInfo {
                    pid: t.pid,
                    tgid: t.tgid,
                    comm: t.comm.clone(),
                    cgroup_id: t.cgroup_id,
                    role: *role,
                    gfp,
                    effective_gfp: Some(eff),
                    task_flags: t.task_flags,
                }
            })
            .collect();
        let stack_ids = occ
            .parts
            .iter()
            .flatten()
            .filter_map(|(_, _, s)| *s)
            .collect();
        let explanation = explain(cfg, &occ, &tasks);
        let idx = findings.len();
        findings.push(Finding {
            kind: occ.kind,
            severity: occ.kind.severity(),
            explanation,
            tasks,
            trigger: occ.trigger,
            trigger_effective_gfp: occ.trigger_effective_gfp,
            constraint_gfp: occ.constraint_gfp,
            violated_bits: occ.violated,
            first_seen_ns: occ.ts_ns,
            last_seen_ns: occ.ts_ns,
            count: 1,
            durations: Durations {
                hold_ns: occ.hold_ns,
                reclaim_ns: None,
                reclaim_total_ns: 0,
                wait_ns: occ.wait_ns,
            },
            stack_ids,
            signature: sig,
            fix_present: cfg.fix_present,
        });
        index.insert((occ.kind, sig), idx);
        Some(FindingUpdate::New { index: idx })
    }
}

fn max_opt(slot: &mut Option<u64>, v: Option<u64>) {
    if let Some(v) = v {
        *slot = Some(slot.map_or(v, |s| s.max(v)));
    }
}

fn push_link(links: &mut Vec<usize>, idx: usize, cap: usize) {
    if !links.contains(&idx) && links.len() < cap {
        links.push(idx);
    }
}

/// "IO", "FS" or "IO and FS" for the reclaim bits in `bits`.
fn bits_words(cfg: &EngineConfig, bits: u32) -> &'static str {
    match (bits & cfg.gfp_io != 0, bits & cfg.gfp_fs != 0) {
        (true, true) => "IO and FS",
        (true, false) => "IO",
        (false, true) => "FS",
        (false, false) => "no",
    }
}

fn explain(cfg: &EngineConfig, occ: &Occurrence<'_>, tasks: &[TaskInfo]) -> String {
    let who = |t: &TaskInfo| format!("{} (pid {})", t.comm, t.pid);
    let bits = bits_words(cfg, occ.violated);
    let op = match occ.trigger {
        Trigger::Reclaim { memcg: true, .. } => "memcg reclaim".to_string(),
        Trigger::Reclaim { .. } => "direct reclaim".to_string(),
        other => other.name().to_string(),
    };
    let eff = occ.trigger_effective_gfp.unwrap_or(0);
    let Some(first) = tasks.first() else {
        return String::new();
    };
    match occ.kind {
        FindingKind::Recursion => format!(
            "{} holds pcpu_alloc_mutex while its allocation is constrained to gfp {:#x} \
             (task flags {:#x}), and entered {op} with effective gfp {eff:#x}, which allows \
             {bits} reclaim the constraint forbade: reclaim can now wait on {bits} work that \
             needs this allocation or pcpu_alloc_mutex (the recursion NOFS/NOIO exists to \
             prevent).",
            who(first),
            occ.constraint_gfp,
            first.task_flags
        ),
        FindingKind::Window => format!(
            "{} holds pcpu_alloc_mutex while serving a pcpu_alloc with gfp {:#x}, which \
             forbids {bits} reclaim; under the mutex {op} allocates with effective gfp \
             {eff:#x} (task flags {:#x}), which allows it. No reclaim was seen here, but \
             under memory pressure this allocation can enter {bits} reclaim with the mutex \
             held (the gap the percpu fix series closes).",
            who(first),
            first.gfp.unwrap_or(occ.constraint_gfp),
            first.task_flags
        ),
        FindingKind::CrossTask => {
            let waiter = tasks.get(1).map(who).unwrap_or_default();
            format!(
                "{} holds pcpu_alloc_mutex and is in {op} with effective gfp {eff:#x}, which \
                 may do {bits} reclaim, while {waiter}, constrained to gfp {:#x}, waits for \
                 the mutex: if that reclaim waits on {bits} work that depends on the waiter, \
                 neither makes progress.",
                who(first),
                occ.constraint_gfp
            )
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
