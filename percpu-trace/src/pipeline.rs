//! From the ring buffer to decoded events: reading, decoding, stack symbolization and loss
//! accounting. Every lost or undecodable record is counted by reason.
use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf, StackTraceMap};
use percpu_trace_common::{drop_reason, RawEvent, STACK_INLINE};
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
    /// Stacks userspace could not read back (a map id that did not resolve, an inline
    /// stack whose record was cut short).
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
    ids: StackIds,
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
            ids: StackIds::default(),
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
            let Some((raw, inline)) = split_record(&item) else {
                self.losses.undecodable += 1;
                continue;
            };
            drop(item);
            match Event::try_from(&raw) {
                Ok(mut ev) => {
                    if raw.stack_id == STACK_INLINE {
                        ev.stack_id = self.inline_stack(inline, sink);
                    } else if let Some(id) = ev.stack_id {
                        self.map_stack(id, sink);
                    }
                    self.events += 1;
                    sink.event(&ev);
                }
                Err(_) => self.losses.undecodable += 1,
            }
        }
        n
    }

    /// Sends the stack behind map id `id` the first time it is seen. The BPF side never
    /// frees an id (see the eBPF `STACKS`), so an id names one stack for the whole run and
    /// is read once.
    fn map_stack(&mut self, id: u32, sink: &mut dyn Sink) {
        if self.ids.read.contains(&id) {
            return;
        }
        match self.stacks.get(&id, 0) {
            Ok(trace) => {
                let frames: Vec<Frame> = trace
                    .frames()
                    .iter()
                    .map(|f| self.symbolizer.frame(f.ip))
                    .collect();
                self.ids.read.insert(id);
                sink.stack(id, &frames);
            }
            Err(_) => self.losses.stack_read += 1,
        }
    }

    /// The id of an inline stack (one id per distinct stack, sent the first time).
    fn inline_stack(&mut self, ips: Vec<u64>, sink: &mut dyn Sink) -> Option<u32> {
        if ips.is_empty() {
            self.losses.stack_read += 1;
            return None;
        }
        let (id, new) = self.ids.inline(ips.clone());
        if new {
            let frames: Vec<Frame> = ips.iter().map(|&ip| self.symbolizer.frame(ip)).collect();
            sink.stack(id, &frames);
        }
        Some(id)
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

/// Stack ids handed to sinks: the kernel map's own ids, and ids from [`INLINE_ID_BASE`] up
/// for stacks that travelled inline (the map holds fewer than that many ids).
#[derive(Default)]
struct StackIds {
    /// Map ids already read and sent.
    read: HashSet<u32>,
    /// Inline stacks already sent, by their return addresses.
    inline: HashMap<Vec<u64>, u32>,
}

/// First id given to an inline stack: far above any stack map id.
pub const INLINE_ID_BASE: u32 = 1 << 31;

impl StackIds {
    /// The id of inline stack `ips`, and whether it is new.
    fn inline(&mut self, ips: Vec<u64>) -> (u32, bool) {
        let next = INLINE_ID_BASE.saturating_add(self.inline.len() as u32);
        match self.inline.entry(ips) {
            std::collections::hash_map::Entry::Occupied(e) => (*e.get(), false),
            std::collections::hash_map::Entry::Vacant(e) => (*e.insert(next), true),
        }
    }
}

/// A ring-buffer record as its event and, when the stack travelled inline, its return
/// addresses (the bytes after the event, 8 each; a partial trailing one is ignored).
/// `None` when the record is shorter than an event.
fn split_record(item: &[u8]) -> Option<(RawEvent, Vec<u64>)> {
    let size = std::mem::size_of::<RawEvent>();
    if item.len() < size {
        return None;
    }
    // SAFETY: length checked; RawEvent is plain integers valid for any bits.
    let raw: RawEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
    let ips = item[size..]
        .chunks_exact(8)
        .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
        .take_while(|&ip| ip != 0)
        .collect();
    Some((raw, ips))
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

    fn record(stack_id: i32, ips: &[u64]) -> Vec<u8> {
        let raw = RawEvent {
            kind: percpu_trace_common::kind::CONTENTION_BEGIN,
            stack_id,
            ..Default::default()
        };
        // SAFETY: RawEvent is plain integers with no padding.
        let mut b = unsafe {
            std::slice::from_raw_parts(
                (&raw as *const RawEvent).cast::<u8>(),
                std::mem::size_of::<RawEvent>(),
            )
        }
        .to_vec();
        for ip in ips {
            b.extend_from_slice(&ip.to_ne_bytes());
        }
        b
    }

    #[test]
    fn an_inline_stack_is_the_bytes_after_the_event() {
        let (raw, ips) = split_record(&record(STACK_INLINE, &[0xffff_1000, 0xffff_2000])).unwrap();
        assert_eq!(raw.stack_id, STACK_INLINE);
        assert_eq!(ips, vec![0xffff_1000, 0xffff_2000]);
        // A plain event carries none; a record shorter than an event is not one.
        assert!(split_record(&record(7, &[])).unwrap().1.is_empty());
        assert!(split_record(&[0u8; 40]).is_none());
        // A cut trailing address is ignored, not read past the record.
        let mut cut = record(STACK_INLINE, &[0xffff_1000]);
        cut.extend_from_slice(&[1, 2, 3]);
        assert_eq!(split_record(&cut).unwrap().1, vec![0xffff_1000]);
    }

    #[test]
    fn one_id_per_distinct_inline_stack_above_every_map_id() {
        let mut ids = StackIds::default();
        let (a, new_a) = ids.inline(vec![1, 2]);
        let (b, new_b) = ids.inline(vec![1, 3]);
        let (a2, new_a2) = ids.inline(vec![1, 2]);
        assert_eq!((a, new_a), (INLINE_ID_BASE, true));
        assert_eq!((b, new_b), (INLINE_ID_BASE + 1, true));
        assert_eq!((a2, new_a2), (a, false));
    }
}
