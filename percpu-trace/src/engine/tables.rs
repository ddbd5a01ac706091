//! Per-caller and per-chunk activity tables: constrained percpu callers by comm, cgroup and
//! gfp, and chunk create/populate work under the mutex. Fed by the engine from the same
//! events and the same decisions (e.g. whether a tracepoint closes an allocation whose entry
//! was already counted) as its counters; bounded; the TUI only reads them.
use std::collections::HashMap;

use crate::event::Event;

/// Most rows kept per table; further distinct keys are counted in the overflow row, so a
/// host with many short-lived comms cannot grow the tables without bound.
pub const MAX_ROWS: usize = 2048;
/// Pids remembered per caller row (for the pid filter).
const PIDS_PER_ROW: usize = 8;
/// Comm of the overflow row.
pub const OVERFLOW: &str = "(other)";

/// Constrained percpu callers, by comm, cgroup and gfp.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerRow {
    /// Task comm.
    pub comm: String,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// gfp as passed.
    pub gfp: u32,
    /// Calls seen.
    pub count: u64,
    /// Some of the pids seen (first few).
    pub pids: Vec<u32>,
    /// Latest caller address (tracepoint mode only).
    pub call_site: Option<u64>,
    /// Latest call.
    pub last_ns: u64,
}

/// Chunk create/populate activity under the mutex, by comm and cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkRow {
    /// Task comm.
    pub comm: String,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// Latest pid.
    pub pid: u32,
    /// pcpu_create_chunk.
    pub creates: u64,
    /// pcpu_populate_chunk.
    pub populates: u64,
    /// pcpu_get_vm_areas.
    pub vm_areas: u64,
    /// __vmalloc_node*.
    pub vmallocs: u64,
    /// Kernel page-table allocations.
    pub pgtables: u64,
    /// Of all the above, how many with the mutex known held.
    pub held: u64,
    /// Latest gfp passed, when the probe saw one.
    pub last_gfp: Option<u32>,
    /// Latest event.
    pub last_ns: u64,
}

/// The activity tables.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    callers: HashMap<(String, u64, u32), CallerRow>,
    chunks: HashMap<(String, u64), ChunkRow>,
    /// Whether any event said whether its task held the mutex (address known).
    pub mutex_known: bool,
}

fn bounded_key<K: std::hash::Hash + Eq, V>(
    map: &HashMap<K, V>,
    key: K,
    overflow: impl FnOnce() -> K,
) -> K {
    if map.len() >= MAX_ROWS && !map.contains_key(&key) {
        overflow()
    } else {
        key
    }
}

impl Tables {
    /// Counts one constrained pcpu_alloc call (the engine decides which events are calls).
    pub(crate) fn caller(&mut self, ev: &Event, gfp: u32, call_site: Option<u64>) {
        let key = bounded_key(&self.callers, (ev.comm.clone(), ev.cgroup_id, gfp), || {
            (OVERFLOW.to_string(), 0, 0)
        });
        let row = self
            .callers
            .entry(key.clone())
            .or_insert_with(|| CallerRow {
                comm: key.0,
                cgroup_id: key.1,
                gfp: key.2,
                ..Default::default()
            });
        row.count += 1;
        row.last_ns = ev.ts_ns;
        if call_site.is_some() {
            row.call_site = call_site;
        }
        if row.pids.len() < PIDS_PER_ROW && !row.pids.contains(&ev.pid) {
            row.pids.push(ev.pid);
        }
    }

    /// Counts one chunk operation.
    pub(crate) fn chunk(&mut self, ev: &Event, gfp: Option<u32>, bump: impl FnOnce(&mut ChunkRow)) {
        let held = u64::from(ev.holds_mutex == Some(true));
        let key = bounded_key(&self.chunks, (ev.comm.clone(), ev.cgroup_id), || {
            (OVERFLOW.to_string(), 0)
        });
        let row = self.chunks.entry(key.clone()).or_insert_with(|| ChunkRow {
            comm: key.0,
            cgroup_id: key.1,
            ..Default::default()
        });
        bump(row);
        row.held += held;
        row.pid = ev.pid;
        row.last_ns = ev.ts_ns;
        if gfp.is_some() {
            row.last_gfp = gfp;
        }
    }

    /// Caller rows, most calls first (ties by comm, so the order is stable).
    pub fn callers(&self) -> Vec<&CallerRow> {
        let mut v: Vec<&CallerRow> = self.callers.values().collect();
        v.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.comm.cmp(&b.comm))
                .then_with(|| a.cgroup_id.cmp(&b.cgroup_id))
                .then_with(|| a.gfp.cmp(&b.gfp))
        });
        v
    }

    /// Chunk rows, most recent first.
    pub fn chunks(&self) -> Vec<&ChunkRow> {
        let mut v: Vec<&ChunkRow> = self.chunks.values().collect();
        v.sort_by(|a, b| {
            b.last_ns
                .cmp(&a.last_ns)
                .then_with(|| a.comm.cmp(&b.comm))
                .then_with(|| a.cgroup_id.cmp(&b.cgroup_id))
        });
        v
    }
}
