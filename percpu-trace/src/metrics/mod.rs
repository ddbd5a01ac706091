//! `--metrics ADDR`: Prometheus/OpenMetrics text exposition of the live run, for fleets that
//! already scrape their hosts. Built on prometheus-client; served by a minimal HTTP/1.1
//! responder on tokio (one GET per connection, no keep-alive: all a scraper needs).
//!
//! Exposed series (all prefixed `percpu_trace_`):
//! - `events_total{kind}`: decoded events by event kind (`pcpu_alloc_enter`, ...);
//! - `drops_total{reason}`: losses by reason (`ringbuf_full`, `stack`, `task_map_full`, ...);
//! - `constrained_allocations_total`: constrained (NOFS/NOIO) blocking pcpu_alloc calls;
//! - `findings_dropped_total`: finding occurrences past the cap of distinct findings;
//! - `findings_total{kind}`: distinct findings; `finding_occurrences_total{kind}`: all
//!   occurrences, both by kind (`recursion`, `window`, `cross_task`);
//! - `mutex_hold_seconds`: histogram of pcpu_alloc_mutex hold times as the events show them;
//! - `info{version,kernel_release,arch,fix,fix_verdict,attach_mode}` = 1, for joins and
//!   alerts on hosts without the fix; `fix_verdict` (`vulnerable`, `partially-fixed`, ...) is
//!   the static verdict reconciled with what the run has shown so far, so a fleet can count
//!   hosts per verdict.
//!
//! Every value is read from the engine, which owns them (events by kind, losses, holds,
//! findings): the live loop calls [`Metrics::update_engine`] once per tick and
//! [`Metrics::set_info`] once after attaching. Nothing here follows events itself.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use crate::{
    engine::{
        holds::{HoldHistory, HOLD_BUCKETS_NS},
        reconcile, Engine, FindingKind, EVENT_KIND_NAMES,
    },
    report::ReportContext,
};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, MetricType},
    registry::{Registry, Unit},
};

/// Content type of the OpenMetrics exposition (prometheus-client writes it; Prometheus asks
/// for it in its Accept header).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of the classic Prometheus text format, for every other client (curl,
/// `promtool check metrics`), see [`exposition::classic_text`].
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    version: String,
    kernel_release: String,
    arch: String,
    fix: String,
    fix_verdict: String,
    attach_mode: String,
}

/// The engine's hold-time history as an OpenMetrics histogram (the engine counts per
/// bucket; this only encodes the latest copy).
#[derive(Clone, Debug, Default)]
struct HoldHistogram(Arc<Mutex<HoldHistory>>);

impl EncodeMetric for HoldHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut buckets: Vec<(f64, u64)> = HOLD_BUCKETS_NS
            .iter()
            .zip(h.buckets)
            .map(|(&b, n)| (b as f64 / 1e9, n))
            .collect();
        // The top bucket is `le="+Inf"` (the encoder writes it for infinity): Prometheus'
        // histogram_quantile and OpenMetrics parsers need it.
        buckets.push((f64::INFINITY, h.buckets[HOLD_BUCKETS_NS.len()]));
        encoder.encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Mutable bookkeeping behind the counters.
#[derive(Debug, Default)]
struct State {
    /// Last cumulative values seen per series, to turn totals into counter increments.
    last: BTreeMap<String, u64>,
    /// The info labels set last (replaced, not accumulated).
    info: Option<InfoLabels>,
    /// The run's static fix verdict, reconciled with the engine's observations each tick.
    fix: Option<crate::kernel::FixVerdict>,
}

/// Every metric of a run, shareable between the live loop and the HTTP server.
pub struct Metrics {
    registry: Registry,
    events: Family<KindLabel, Counter>,
    drops: Family<ReasonLabel, Counter>,
    constrained: Counter,
    findings_dropped: Counter,
    activity: Family<KindLabel, Counter>,
    findings: Family<KindLabel, Counter>,
    occurrences: Family<KindLabel, Counter>,
    hold: HoldHistogram,
    info: Family<InfoLabels, Gauge>,
    state: Mutex<State>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// All series registered, finding kinds and event kinds pre-created at 0 so dashboards
    /// and `rate()` see them before the first occurrence.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("percpu_trace");
        let events = Family::<KindLabel, Counter>::default();
        let drops = Family::<ReasonLabel, Counter>::default();
        let constrained = Counter::default();
        let findings_dropped = Counter::default();
        let activity = Family::<KindLabel, Counter>::default();
        let findings = Family::<KindLabel, Counter>::default();
        let occurrences = Family::<KindLabel, Counter>::default();
        // Buckets: crate::engine::holds::HOLD_BUCKETS_NS (1 us .. ~4 s).
        let hold = HoldHistogram::default();
        let info = Family::<InfoLabels, Gauge>::default();
        registry.register(
            "events",
            "Decoded kernel events, by event kind",
            events.clone(),
        );
        registry.register(
            "drops",
            "Lost events or details, by reason (ring buffer full, stack, task map full, ...)",
            drops.clone(),
        );
        registry.register(
            "constrained_allocations",
            "Blocking pcpu_alloc calls constrained to NOFS/NOIO (by gfp or memalloc scope)",
            constrained.clone(),
        );
        registry.register(
            "activity",
            "What the run saw, findings or not (kind: percpu_allocations, constrained_allocations, constrained_took_mutex, ...)",
            activity.clone(),
        );
        registry.register(
            "findings_dropped",
            "Finding occurrences past the cap of distinct findings: counted, not kept",
            findings_dropped.clone(),
        );
        registry.register(
            "findings",
            "Distinct findings (deduplicated by stack signature), by kind",
            findings.clone(),
        );
        registry.register(
            "finding_occurrences",
            "Occurrences of findings, by kind",
            occurrences.clone(),
        );
        registry.register_with_unit(
            "mutex_hold",
            "pcpu_alloc_mutex hold times as seen by the probes (from the first event showing \
             the hold to the release)",
            Unit::Seconds,
            hold.clone(),
        );
        registry.register(
            "info",
            "Constant 1, labelled with the tool version, kernel, fix status and attach mode",
            info.clone(),
        );
        for name in EVENT_KIND_NAMES {
            let _ = events.get_or_create(&KindLabel { kind: name.into() });
        }
        for k in FindingKind::ALL {
            let _ = findings.get_or_create(&KindLabel {
                kind: k.id().into(),
            });
            let _ = occurrences.get_or_create(&KindLabel {
                kind: k.id().into(),
            });
        }
        Metrics {
            registry,
            events,
            drops,
            constrained,
            findings_dropped,
            activity,
            findings,
            occurrences,
            hold,
            info,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain counters behind: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings every series up to the engine's totals: events by kind, constrained
    /// allocations, findings, losses and the hold histogram. Takes a snapshot of the
    /// engine: call it once per tick, not per event.
    pub fn update_engine(&self, engine: &Engine) {
        let snap = engine.snapshot();
        let counters = snap.counters;
        *self.hold.0.lock().unwrap_or_else(|e| e.into_inner()) = snap.holds;
        self.set_drops(&snap.losses.by_reason);
        let mut distinct = [0u64; 3];
        for f in engine.findings() {
            distinct[f.kind as usize] += 1;
        }
        let mut st = self.state();
        if let (Some(fix), Some(labels)) = (&st.fix, &st.info) {
            let verdict = reconcile(fix, engine.fix_observations()).fix.verdict.id();
            if labels.fix_verdict != verdict {
                let mut new = labels.clone();
                new.fix_verdict = verdict.to_string();
                self.info.remove(labels);
                self.info.get_or_create(&new).set(1);
                st.info = Some(new);
            }
        }
        for name in EVENT_KIND_NAMES {
            let n = counters.events_by_kind.get(name).copied().unwrap_or(0);
            let c = self.events.get_or_create(&KindLabel { kind: name.into() });
            advance(&mut st, &format!("events/{name}"), n, &c);
        }
        let a = &snap.activity;
        // From the activity counts: the kernel's count where it kept one (it sends only
        // slow-path constrained calls), the events' in older recordings.
        advance(
            &mut st,
            "constrained",
            a.constrained_allocations,
            &self.constrained,
        );
        for (what, n) in [
            ("percpu_allocations", a.percpu_allocations.unwrap_or(0)),
            ("constrained_allocations", a.constrained_allocations),
            ("constrained_took_mutex", a.constrained_took_mutex),
            (
                "chunk_populates_by_constrained_holder",
                a.chunk_populates_by_constrained_holder,
            ),
            (
                "nested_allocations_allowing_fs_io",
                a.nested_allocations_allowing_fs_io,
            ),
            ("reclaims_by_holder", a.reclaims_by_holder),
            ("waits", a.waits()),
        ] {
            let c = self
                .activity
                .get_or_create(&KindLabel { kind: what.into() });
            advance(&mut st, &format!("activity/{what}"), n, &c);
        }
        advance(
            &mut st,
            "findings_dropped",
            counters.findings_dropped,
            &self.findings_dropped,
        );
        for k in FindingKind::ALL {
            let label = KindLabel {
                kind: k.id().into(),
            };
            advance(
                &mut st,
                &format!("findings/{k}"),
                distinct[k as usize],
                &self.findings.get_or_create(&label),
            );
            let occ = counters
                .occurrences_by_kind
                .get(k.id())
                .copied()
                .unwrap_or(0);
            advance(
                &mut st,
                &format!("occurrences/{k}"),
                occ,
                &self.occurrences.get_or_create(&label),
            );
        }
    }

    /// Brings the drop counters up to cumulative totals by reason (the engine's
    /// [`crate::engine::LossTotals`]).
    fn set_drops(&self, drops: &BTreeMap<String, u64>) {
        let mut st = self.state();
        for (reason, &total) in drops {
            let c = self.drops.get_or_create(&ReasonLabel {
                reason: reason.clone(),
            });
            advance(&mut st, &format!("drops/{reason}"), total, &c);
        }
    }

    /// Sets the `info` series from what the run knows about the kernel.
    pub fn set_info(&self, ctx: &ReportContext) {
        let labels = InfoLabels {
            version: ctx.tool_version.clone(),
            kernel_release: ctx.run.kernel_release.clone().unwrap_or_default(),
            arch: ctx.run.arch.clone().unwrap_or_default(),
            fix: match ctx.run.fix_present {
                Some(true) => "present",
                Some(false) => "absent",
                None => "unknown",
            }
            .into(),
            fix_verdict: ctx.fix().fix.verdict.id().into(),
            attach_mode: ctx.run.attach_mode.clone().unwrap_or_default(),
        };
        let mut st = self.state();
        st.fix = Some(ctx.run.fix_verdict());
        if let Some(old) = st.info.take() {
            self.info.remove(&old);
        }
        self.info.get_or_create(&labels).set(1);
        st.info = Some(labels);
    }

    /// The exposition text (OpenMetrics, ending in `# EOF`).
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut s, &self.registry);
        s
    }

    /// The exposition in the classic Prometheus text format (version 0.0.4).
    pub fn encode_text(&self) -> String {
        exposition::classic_text(&self.encode())
    }
}

/// Raises `counter` so that it equals `total` (a cumulative value from elsewhere). A total
/// that went down (a restarted source) counts from its new value.
fn advance(st: &mut State, key: &str, total: u64, counter: &Counter) {
    let last = st.last.insert(key.to_string(), total).unwrap_or(0);
    let delta = if total >= last { total - last } else { total };
    if delta > 0 {
        counter.inc_by(delta);
    }
}

mod exposition;
pub mod http;
#[cfg(test)]
mod tests;
