//! From the ring buffer to decoded events: reading, decoding, stack symbolization and loss
//! accounting. Every lost or undecodable record is counted by reason.
use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf, StackTraceMap};
use percpu_trace_common::{drop_reason, RawEvent};
use serde::Serialize;
use tokio::io::unix::AsyncFd;

use crate::{
    event::{Event, Frame},
    probes::{ActivityCounters, DropCounters, MissCounters, Probes, ProcessCounters},
    symbolize::Symbolizer,
};

/// Where decoded events go (engine, recording, UI).
pub trait Sink {
    /// A decoded event.
    fn event(&mut self, ev: &Event);
    /// A kernel stack seen for the first time; comes before the first event using it.
    fn stack(&mut self, id: u32, frames: &[Frame]);
    /// Called about once a second with the totals so far.
    fn progress(&mut self, _events: u64, _losses: &Losses) {}
    /// Host-wide activity totals counted in the kernel (no record is sent for those),
    /// right after each `progress`.
    fn activity(&mut self, _totals: &BTreeMap<String, u64>) {}
    /// The sink cannot go on (e.g. its recording cannot be written): the session stops.
    fn failed(&self) -> bool {
        false
    }
}

/// Loss and volume counters, surfaced in status lines, reports and the exit summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Losses {
    /// Ring buffer full in the kernel.
    pub ringbuf_full: u64,
    /// Kernel stack could not be taken.
    pub stack: u64,
    /// Per-task map full in the kernel.
    pub task_map_full: u64,
    /// Reclaim map full in the kernel (a reclaim whose end is never sent).
    pub reclaim_map_full: u64,
    /// Tracepoint mode: slow-path mark map full (a call whose completion is not sent).
    pub slow_path_full: u64,
    /// Records userspace could not decode.
    pub undecodable: u64,
    /// Stacks userspace could not read back.
    pub stack_read: u64,
    /// Events a slow in-process consumer (the TUI) could not take in time.
    pub consumer_full: u64,
    /// Runs of our programs the kernel skipped to avoid BPF recursion (fentry/fexit
    /// recursion protection, a probe hit inside another BPF program): a missed return
    /// leaves a task's state stale. Not the lock-contention programs' (see
    /// [`crate::probes::MissCounters::new`]).
    pub recursion_misses: u64,
    /// Hits our kprobes/kretprobes missed (kretprobe `maxactive`; Linux 6.7+ reports it).
    pub kprobe_missed: u64,
}

impl Losses {
    /// The counters by the names recordings and metrics use (the field names, through
    /// serde, so a new loss reason shows up without touching its readers). What counts as
    /// an event lost is decided in one place, [`crate::engine::LossTotals`].
    pub fn to_map(&self) -> std::collections::BTreeMap<String, u64> {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }
}

/// Reads events from the kernel.
pub struct Pipeline {
    ring: AsyncFd<RingBuf<MapData>>,
    /// Decoding state and counters.
    pub decoder: Decoder,
}

/// Turns ring-buffer records into events, resolving stacks once each.
pub struct Decoder {
    stacks: StackTraceMap<MapData>,
    drops: DropCounters,
    misses: MissCounters,
    activity: ActivityCounters,
    processes: ProcessCounters,
    symbolizer: Symbolizer,
    /// Stacks sent so far, by id: their return addresses.
    seen_stacks: HashMap<u32, Vec<u64>>,
    /// Events delivered.
    pub events: u64,
    /// Losses so far.
    pub losses: Losses,
    /// Host-wide activity counted in the kernel, as of the last refresh.
    pub kernel_activity: BTreeMap<String, u64>,
}

impl Pipeline {
    /// Takes the maps out of `probes`.
    pub fn new(probes: &mut Probes, symbolizer: Symbolizer) -> Result<Self> {
        // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd, so the fd stays
        // open for as long as it is registered.
        let ring = unsafe { AsyncFd::register(probes.take_events()?) }
            .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {e}"))?;
        let decoder = Decoder {
            stacks: probes.take_stacks()?,
            drops: probes.take_drops()?,
            misses: probes.miss_counters(),
            activity: probes.take_activity()?,
            processes: probes.take_processes()?,
            symbolizer,
            seen_stacks: HashMap::new(),
            events: 0,
            losses: Losses::default(),
            kernel_activity: BTreeMap::new(),
        };
        Ok(Pipeline { ring, decoder })
    }

    /// Drains whatever the ring buffer holds now, without waiting. The BPF side wakes the
    /// reader only when the buffer fills up, so this runs on a short timer too.
    pub fn drain_now(&mut self, sink: &mut dyn Sink) -> usize {
        self.decoder.drain(self.ring.get_mut(), sink)
    }

    /// Waits until the ring buffer has data, then drains it into `sink`.
    pub async fn next_batch(&mut self, sink: &mut dyn Sink) -> Result<usize> {
        let mut guard = self
            .ring
            .readable_mut()
            .await
            .context("waiting on the ring buffer")?;
        let n = self.decoder.drain(guard.get_inner_mut(), sink);
        guard.clear_ready();
        Ok(n)
    }
}

impl Decoder {
    fn drain(&mut self, ring: &mut RingBuf<MapData>, sink: &mut dyn Sink) -> usize {
        let mut n = 0;
        while let Some(item) = ring.next() {
            n += 1;
            if item.len() < std::mem::size_of::<RawEvent>() {
                self.losses.undecodable += 1;
                continue;
            }
            // SAFETY: length checked; RawEvent is plain integers valid for any bits.
            let raw: RawEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            drop(item);
            match Event::try_from(&raw) {
                Ok(ev) => {
                    if let Some(id) = ev.stack_id {
                        self.resolve_stack(id, sink);
                    }
                    self.events += 1;
                    sink.event(&ev);
                }
                Err(_) => self.losses.undecodable += 1,
            }
        }
        n
    }

    /// Reads the stack behind `id` and deletes it from the kernel map, so the map (a hash
    /// table that is never cleared otherwise) never fills: a later event with the same id
    /// is read again, and its stack is sent again only if it differs (an id is a hash
    /// bucket; a deleted one may hold another stack later). An id already deleted by an
    /// earlier event of the same stack keeps the stack read then.
    fn resolve_stack(&mut self, id: u32, sink: &mut dyn Sink) {
        match self.stacks.get(&id, 0) {
            Ok(trace) => {
                let ips: Vec<u64> = trace.frames().iter().map(|f| f.ip).collect();
                let _ = self.stacks.remove(&id);
                if self.seen_stacks.get(&id) == Some(&ips) {
                    return;
                }
                let frames: Vec<Frame> = ips.iter().map(|&ip| self.symbolizer.frame(ip)).collect();
                self.seen_stacks.insert(id, ips);
                sink.stack(id, &frames);
            }
            Err(_) if self.seen_stacks.contains_key(&id) => {}
            Err(_) => self.losses.stack_read += 1,
        }
    }

    /// Refreshes the kernel-side loss counters.
    pub fn refresh_losses(&mut self) -> Result<()> {
        let k = self.drops.read()?;
        self.losses.ringbuf_full = k[drop_reason::RINGBUF_FULL as usize];
        self.losses.stack = k[drop_reason::STACK as usize];
        self.losses.task_map_full = k[drop_reason::TASK_MAP_FULL as usize];
        self.losses.reclaim_map_full = k[drop_reason::RECLAIM_MAP_FULL as usize];
        self.losses.slow_path_full = k[drop_reason::SLOW_PATH_FULL as usize];
        let m = self.misses.read();
        self.losses.recursion_misses = m.recursion_misses;
        self.losses.kprobe_missed = m.kprobe_missed;
        self.kernel_activity = self.activity.read()?;
        // Who made the constrained calls, with the totals (see `engine::process_key`).
        self.kernel_activity.extend(self.processes.read());
        Ok(())
    }
}

/// What the live pipeline hands to a consumer on another task (the TUI, for instance):
/// the same information a [`Sink`] gets, as messages.
#[derive(Clone, Debug)]
pub enum LiveItem {
    /// A decoded event.
    Event(Event),
    /// A stack seen for the first time (comes before the first event using it).
    Stack(u32, Vec<Frame>),
    /// Host-wide activity totals counted in the kernel.
    Activity(BTreeMap<String, u64>),
    /// Updated loss counters and the total number of events so far.
    Progress {
        /// Events delivered so far.
        events: u64,
        /// Losses so far.
        losses: Losses,
    },
}

/// A [`Sink`] that forwards into a channel; counts what the channel refused.
/// Stacks are never dropped (an event refers to them later): a refused stack waits and goes
/// out before the next item.
pub struct ChannelSink {
    tx: tokio::sync::mpsc::Sender<LiveItem>,
    pending_stacks: std::collections::VecDeque<LiveItem>,
    /// Items the consumer was too slow to take (counted, never silent).
    pub refused: u64,
}

impl ChannelSink {
    /// Wraps a sender.
    pub fn new(tx: tokio::sync::mpsc::Sender<LiveItem>) -> Self {
        ChannelSink {
            tx,
            pending_stacks: Default::default(),
            refused: 0,
        }
    }

    /// Sends one item without blocking the reader.
    pub fn send(&mut self, item: LiveItem) {
        while let Some(stack) = self.pending_stacks.pop_front() {
            if let Err(e) = self.tx.try_send(stack) {
                self.pending_stacks.push_front(e.into_inner());
                break;
            }
        }
        let is_stack = matches!(item, LiveItem::Stack(..));
        if !self.pending_stacks.is_empty() && is_stack {
            self.pending_stacks.push_back(item);
            return;
        }
        if let Err(e) = self.tx.try_send(item) {
            match e.into_inner() {
                stack @ LiveItem::Stack(..) => self.pending_stacks.push_back(stack),
                _ => self.refused += 1,
            }
        }
    }
}

impl Sink for ChannelSink {
    fn event(&mut self, ev: &Event) {
        self.send(LiveItem::Event(ev.clone()));
    }

    fn stack(&mut self, id: u32, frames: &[Frame]) {
        self.send(LiveItem::Stack(id, frames.to_vec()));
    }

    fn progress(&mut self, events: u64, losses: &Losses) {
        let mut losses = losses.clone();
        // What this channel refused never reached the consumer: count it as lost.
        losses.consumer_full = self.refused;
        self.send(LiveItem::Progress { events, losses });
    }

    fn activity(&mut self, totals: &BTreeMap<String, u64>) {
        self.send(LiveItem::Activity(totals.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_counts_events_but_keeps_stacks() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let mut sink = ChannelSink::new(tx);
        sink.stack(1, &[]);
        sink.stack(2, &[]); // channel full: kept
        sink.progress(0, &Losses::default()); // refused, counted
        assert_eq!(sink.refused, 1);
        assert!(matches!(rx.try_recv(), Ok(LiveItem::Stack(1, _))));
        sink.progress(0, &Losses::default()); // the pending stack goes first
        assert!(matches!(rx.try_recv(), Ok(LiveItem::Stack(2, _))));
        assert_eq!(sink.refused, 2);
    }
}
