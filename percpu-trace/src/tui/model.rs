//! Plain data the UI aggregates from events itself, next to the engine's state: the live
//! tables (constrained callers, chunk activity) and the hold-time history of
//! pcpu_alloc_mutex. All bounded; no drawing here.
use std::collections::{HashMap, HashSet, VecDeque};

use crate::event::{Event, EventKind};

/// Most rows kept per table; further distinct keys are counted in the overflow row, so a
/// host with many short-lived comms cannot grow the UI without bound.
pub const MAX_ROWS: usize = 2048;
/// Hold durations kept for the sparkline.
pub const MAX_HOLDS: usize = 256;
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

/// One completed (or still open) hold of pcpu_alloc_mutex, as far as events show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OpenHold {
    pid: u32,
    since_ns: u64,
    last_ns: u64,
}

/// Hold durations of pcpu_alloc_mutex, from the events that show a task holding it to its
/// pcpu_alloc return (or to the next holder). Lower bounds: the first event that shows a
/// hold comes after the lock was taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holds {
    open: Option<OpenHold>,
    /// Recent hold durations in nanoseconds, oldest first.
    pub recent_ns: VecDeque<u64>,
    /// Longest hold seen.
    pub max_ns: u64,
    /// Holds completed.
    pub count: u64,
}

impl Holds {
    fn close(&mut self, end_ns: u64) {
        if let Some(h) = self.open.take() {
            let d = end_ns.saturating_sub(h.since_ns);
            if self.recent_ns.len() == MAX_HOLDS {
                self.recent_ns.pop_front();
            }
            self.recent_ns.push_back(d);
            self.max_ns = self.max_ns.max(d);
            self.count += 1;
        }
    }

    /// Updates the history from one event.
    pub fn observe(&mut self, ev: &Event) {
        let releases = matches!(
            ev.kind,
            EventKind::PcpuAllocExit { .. } | EventKind::PcpuAllocDone { .. } | EventKind::TaskExit
        );
        match self.open {
            Some(h) if h.pid == ev.pid && releases => self.close(ev.ts_ns),
            _ if releases => {}
            Some(ref mut h) if h.pid == ev.pid && ev.holds_mutex == Some(true) => {
                h.last_ns = ev.ts_ns;
            }
            _ if ev.holds_mutex == Some(true) => {
                // A new holder: the previous one released before this event at the latest;
                // its last sighting is the best end we have.
                if let Some(prev) = self.open {
                    self.close(prev.last_ns);
                }
                self.open = Some(OpenHold {
                    pid: ev.pid,
                    since_ns: ev.ts_ns,
                    last_ns: ev.ts_ns,
                });
            }
            _ => {}
        }
    }
}

/// The tables the UI keeps.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    callers: HashMap<(String, u64, u32), CallerRow>,
    chunks: HashMap<(String, u64), ChunkRow>,
    /// Pids inside a pcpu_alloc whose entry was seen (so the tracepoint after it does not
    /// count the same call twice).
    in_alloc: HashSet<u32>,
    /// Whether any event said whether its task held the mutex (address known).
    pub mutex_known: bool,
    /// Hold-time history.
    pub holds: Holds,
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
    /// Updates the tables from one event.
    pub fn observe(&mut self, ev: &Event) {
        if ev.holds_mutex.is_some() {
            self.mutex_known = true;
        }
        self.holds.observe(ev);
        let held = u64::from(ev.holds_mutex == Some(true));
        match ev.kind {
            EventKind::PcpuAllocEnter { gfp, .. } => {
                self.in_alloc.insert(ev.pid);
                self.caller(ev, gfp, None);
            }
            EventKind::PcpuAllocExit { .. } | EventKind::TaskExit => {
                self.in_alloc.remove(&ev.pid);
            }
            // Counted at its entry when a probe saw that; the tracepoint only closes it.
            EventKind::PcpuAllocDone { .. } if self.in_alloc.remove(&ev.pid) => {}
            EventKind::PcpuAllocDone { gfp, call_site, .. } => {
                self.caller(ev, gfp, Some(call_site));
            }
            EventKind::ChunkCreate { gfp, .. } => self.chunk(ev, gfp, held, |r| r.creates += 1),
            EventKind::ChunkPopulate { gfp, .. } => self.chunk(ev, gfp, held, |r| r.populates += 1),
            EventKind::GetVmAreas { gfp, .. } => self.chunk(ev, gfp, held, |r| r.vm_areas += 1),
            EventKind::Vmalloc { gfp, .. } => self.chunk(ev, Some(gfp), held, |r| r.vmallocs += 1),
            EventKind::PgtableAlloc => self.chunk(ev, None, held, |r| r.pgtables += 1),
            _ => {}
        }
        // The pid set only matters while allocations are open; a lost exit must not leak.
        if self.in_alloc.len() > 65_536 {
            self.in_alloc.clear();
        }
    }

    fn caller(&mut self, ev: &Event, gfp: u32, call_site: Option<u64>) {
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

    fn chunk(&mut self, ev: &Event, gfp: Option<u32>, held: u64, bump: impl FnOnce(&mut ChunkRow)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: u64, pid: u32, holds: Option<bool>, kind: EventKind) -> Event {
        Event {
            ts_ns: ts,
            pid,
            tgid: pid,
            comm: format!("t{pid}"),
            cgroup_id: 1,
            task_flags: 0,
            holds_mutex: holds,
            caller_gfp: None,
            stack_id: None,
            kind,
        }
    }

    #[test]
    fn holds_measure_first_sighting_to_exit_and_handover() {
        let mut h = Holds::default();
        h.observe(&ev(100, 1, Some(true), EventKind::PgtableAlloc));
        h.observe(&ev(150, 1, Some(true), EventKind::PgtableAlloc));
        h.observe(&ev(
            400,
            1,
            Some(false),
            EventKind::PcpuAllocExit { ptr: 1 },
        ));
        // Handover without an exit: the previous hold ends at its last sighting.
        h.observe(&ev(500, 2, Some(true), EventKind::PgtableAlloc));
        h.observe(&ev(520, 2, Some(true), EventKind::PgtableAlloc));
        h.observe(&ev(900, 3, Some(true), EventKind::PgtableAlloc));
        assert_eq!(h.recent_ns, VecDeque::from(vec![300, 20]));
        assert_eq!(h.max_ns, 300);
        // Exit of a task that is not the holder changes nothing.
        h.observe(&ev(950, 2, None, EventKind::PcpuAllocExit { ptr: 1 }));
        assert_eq!(h.count, 2);
    }

    #[test]
    fn tracepoint_after_entry_is_not_counted_twice() {
        let mut t = Tables::default();
        let enter = EventKind::PcpuAllocEnter {
            size: 8,
            align: 8,
            reserved: false,
            gfp: 0xc00,
        };
        let done = EventKind::PcpuAllocDone {
            size: 8,
            align: 8,
            reserved: false,
            gfp: 0xc00,
            call_site: 0xffff_1234,
        };
        t.observe(&ev(1, 5, Some(false), enter));
        t.observe(&ev(2, 5, Some(false), done.clone()));
        t.observe(&ev(3, 5, Some(false), done));
        let rows = t.callers();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].count, 2);
        assert_eq!(rows[0].call_site, Some(0xffff_1234));
        assert!(t.mutex_known);
    }

    #[test]
    fn tables_are_bounded() {
        let mut t = Tables::default();
        for pid in 0..(MAX_ROWS as u32 + 10) {
            t.observe(&ev(u64::from(pid), pid, None, EventKind::PgtableAlloc));
        }
        let rows = t.chunks();
        assert_eq!(rows.len(), MAX_ROWS + 1);
        assert_eq!(
            rows.iter().find(|r| r.comm == OVERFLOW).map(|r| r.pgtables),
            Some(10)
        );
    }
}
