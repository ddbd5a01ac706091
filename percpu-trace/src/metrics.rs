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
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{anyhow, Result};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, MetricType},
    registry::{Registry, Unit},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{
    engine::{
        holds::{HoldHistory, HOLD_BUCKETS_NS},
        reconcile, Engine, FindingKind, EVENT_KIND_NAMES,
    },
    report::ReportContext,
};

/// Content type of the exposition (prometheus-client writes OpenMetrics text, which
/// Prometheus negotiates and parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
        buckets.push((f64::MAX, h.buckets[HOLD_BUCKETS_NS.len()]));
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
        advance(
            &mut st,
            "constrained",
            counters.constrained_allocs,
            &self.constrained,
        );
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

/// Binds the metrics listener; call it before attaching probes so a bad address fails
/// fast with one line.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow!("cannot listen for metrics on {addr}: {e}"))
}

/// Serves `GET /metrics` on `addr` until the task is dropped or aborted.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<()> {
    serve_listener(bind(addr).await?, metrics).await
}

/// Serves `GET /metrics` on an already bound listener (each connection on its own task).
pub async fn serve_listener(listener: TcpListener, metrics: Arc<Metrics>) -> Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            // Out of fds and the like: transient for a server, so back off and continue.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            // A scraper that stalls or hangs up is its own problem, not the tracer's.
            let _ = tokio::time::timeout(Duration::from_secs(10), respond(stream, &m)).await;
        });
    }
}

/// Largest request head accepted.
const MAX_REQUEST: usize = 8192;

async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return reply(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"",
            )
            .await;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = metrics.encode();
            let body = if method == "HEAD" {
                Vec::new()
            } else {
                body.into_bytes()
            };
            reply(&mut stream, "200 OK", CONTENT_TYPE, &body).await
        }
        ("GET" | "HEAD", "/") => {
            let body = b"percpu-trace metrics: GET /metrics\n";
            reply(&mut stream, "200 OK", "text/plain; charset=utf-8", body).await
        }
        ("GET" | "HEAD", _) => {
            reply(&mut stream, "404 Not Found", "text/plain", b"not found\n").await
        }
        _ => {
            reply(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                b"only GET and HEAD\n",
            )
            .await
        }
    }
}

async fn reply(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::event::{Event, EventKind};
    use crate::report;

    fn ev(ts: u64, pid: u32, holds: Option<bool>, kind: EventKind) -> Event {
        Event {
            ts_ns: ts,
            pid,
            tgid: pid,
            comm: format!("t{pid}"),
            cgroup_id: 1,
            task_flags: 0,
            holds_mutex: holds,
            caller_gfp: Some(0xc00),
            stack_id: None,
            kind,
        }
    }

    /// A stream with a constrained caller that holds the mutex for 2 ms and enters
    /// GFP_KERNEL reclaim under it (one `recursion` finding).
    fn stream() -> Vec<Event> {
        let enter = EventKind::PcpuAllocEnter {
            size: 32768,
            align: 8,
            reserved: false,
            gfp: 0xc00,
        };
        vec![
            ev(1_000_000, 10, Some(false), enter),
            ev(
                1_500_000,
                10,
                Some(true),
                EventKind::ChunkPopulate {
                    gfp: Some(0xc00),
                    page_start: 0,
                    page_end: 8,
                },
            ),
            ev(
                2_000_000,
                10,
                Some(true),
                EventKind::ReclaimBegin {
                    gfp: 0xcc0,
                    order: 0,
                    memcg: false,
                },
            ),
            ev(
                3_000_000,
                10,
                Some(true),
                EventKind::ReclaimEnd {
                    nr_reclaimed: 32,
                    memcg: false,
                },
            ),
            ev(
                3_500_000,
                10,
                Some(false),
                EventKind::PcpuAllocExit { ptr: 1 },
            ),
        ]
    }

    /// Minimal parser of the exposition: `name{labels} value` lines to a map.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn counters_follow_the_engine_and_events() {
        let m = Metrics::new();
        let mut engine = Engine::new(EngineConfig::default());
        for e in stream() {
            engine.process(&e);
        }
        let mut drops = BTreeMap::new();
        drops.insert("ringbuf_full".to_string(), 3);
        engine.set_losses(drops.clone());
        m.update_engine(&engine);
        m.update_engine(&engine); // idempotent: totals, not increments
        drops.insert("ringbuf_full".to_string(), 5);
        engine.set_losses(drops);
        m.update_engine(&engine);
        let v = parse(&m.encode());
        assert_eq!(
            v["percpu_trace_events_total{kind=\"pcpu_alloc_enter\"}"],
            1.0
        );
        assert_eq!(v["percpu_trace_events_total{kind=\"reclaim_begin\"}"], 1.0);
        assert_eq!(v["percpu_trace_events_total{kind=\"task_exit\"}"], 0.0);
        assert_eq!(v["percpu_trace_constrained_allocations_total"], 1.0);
        assert_eq!(v["percpu_trace_findings_total{kind=\"recursion\"}"], 1.0);
        assert_eq!(v["percpu_trace_findings_total{kind=\"cross_task\"}"], 0.0);
        assert_eq!(v["percpu_trace_drops_total{reason=\"ringbuf_full\"}"], 5.0);
        // One hold: first seen holding at 1.5 ms, returned at 3.5 ms.
        assert_eq!(v["percpu_trace_mutex_hold_seconds_count"], 1.0);
        assert!((v["percpu_trace_mutex_hold_seconds_sum"] - 0.002).abs() < 1e-9);
    }

    #[test]
    fn hold_handover_is_a_lower_bound() {
        // The engine's hold rule, exposed as is.
        let m = Metrics::new();
        let mut engine = Engine::new(EngineConfig::default());
        let k = |g| EventKind::Vmalloc { gfp: g, size: 1 };
        engine.process(&ev(100, 1, Some(true), k(0)));
        engine.process(&ev(400, 1, Some(true), k(0)));
        engine.process(&ev(900, 2, Some(true), k(0))); // new owner: 1 held >= 300 ns
        engine.process(&ev(1000, 2, Some(false), k(0))); // 2 held >= 0 ns
        m.update_engine(&engine);
        let v = parse(&m.encode());
        assert_eq!(v["percpu_trace_mutex_hold_seconds_count"], 2.0);
        assert!((v["percpu_trace_mutex_hold_seconds_sum"] - 300e-9).abs() < 1e-15);
    }

    #[test]
    fn info_is_replaced_not_accumulated() {
        let m = Metrics::new();
        let mut ctx = ReportContext::new(report::Source::Live);
        ctx.run.kernel_release = Some("7.2.13+deb14-amd64".into());
        ctx.run.fix_present = Some(false);
        m.set_info(&ctx);
        ctx.run.attach_mode = Some("kprobe".into());
        m.set_info(&ctx);
        let text = m.encode();
        let info: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("percpu_trace_info"))
            .collect();
        assert_eq!(info.len(), 1, "{text}");
        assert!(info[0].contains("fix=\"absent\""));
        assert!(info[0].contains("fix_verdict=\"vulnerable\""));
        assert!(info[0].contains("attach_mode=\"kprobe\""));
    }

    #[test]
    fn fix_verdict_label_follows_the_run() {
        use crate::{
            event::EventKind,
            kernel::{FixVerdict, PatchEvidence, PatchId, PatchState},
        };
        let m = Metrics::new();
        let mut ctx = ReportContext::new(report::Source::Live);
        ctx.run.fix = Some(FixVerdict::from_patches(vec![
            PatchEvidence::new(PatchId::Regression, PatchState::Present, "t"),
            PatchEvidence::new(PatchId::VmAreasGfp, PatchState::Present, "t"),
        ]));
        m.set_info(&ctx);
        assert!(m.encode().contains("fix_verdict=\"likely-fixed\""));
        let mut engine = Engine::new(crate::engine::EngineConfig::default());
        // An unconstrained holder populating with GFP_NOIO|__GFP_NOWARN only: half the proof.
        let populate = EventKind::ChunkPopulate {
            gfp: Some(0x2c00),
            page_start: 0,
            page_end: 1,
        };
        // (unconstrained: no constrained pcpu_alloc seen, so no caller gfp)
        let mut p = ev(100, 3, Some(true), populate);
        p.caller_gfp = None;
        engine.process(&p);
        m.update_engine(&engine);
        let text = m.encode();
        assert!(text.contains("fix_verdict=\"likely-fixed\""), "{text}");
        // A GFP_NOIO caller without a scope at entry allocating page tables inside one.
        let enter = EventKind::PcpuAllocEnter {
            size: 8,
            align: 8,
            reserved: false,
            gfp: 0xc00,
        };
        engine.process(&ev(200, 4, Some(false), enter));
        let mut pt = ev(300, 4, Some(true), EventKind::PgtableAlloc);
        pt.task_flags = 0x80000;
        engine.process(&pt);
        m.update_engine(&engine);
        let text = m.encode();
        assert!(text.contains("fix_verdict=\"fixed\""), "{text}");
        assert_eq!(text.matches("percpu_trace_info{").count(), 1, "{text}");
    }

    async fn get(addr: SocketAddr, path: &str) -> (String, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    }

    #[tokio::test]
    async fn scrape_over_loopback() {
        let m = Arc::new(Metrics::new());
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_listener(listener, m.clone()));

        let mut engine = Engine::new(EngineConfig::default());
        for e in stream() {
            engine.process(&e);
        }
        engine.set_losses([("stack".to_string(), 7)].into());
        m.update_engine(&engine);

        let (head, body) = get(addr, "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains(CONTENT_TYPE));
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        assert!(body.ends_with("# EOF\n"));
        assert!(body.contains("# TYPE percpu_trace_mutex_hold_seconds histogram"));
        let v = parse(&body);
        assert_eq!(v["percpu_trace_events_total{kind=\"reclaim_end\"}"], 1.0);
        assert_eq!(
            v["percpu_trace_finding_occurrences_total{kind=\"recursion\"}"],
            1.0
        );
        assert_eq!(v["percpu_trace_drops_total{reason=\"stack\"}"], 7.0);
        assert_eq!(v["percpu_trace_mutex_hold_seconds_count"], 1.0);

        // Counters move between scrapes.
        engine.process(&ev(9, 3, None, EventKind::TaskExit));
        m.update_engine(&engine);
        let (_, body) = get(addr, "/metrics?x=1").await;
        assert_eq!(
            parse(&body)["percpu_trace_events_total{kind=\"task_exit\"}"],
            1.0
        );

        // And with a real HTTP client, where one is installed.
        let url = format!("http://{addr}/metrics");
        let curl = tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(["-sf", "--max-time", "5", &url])
                .output()
        })
        .await
        .unwrap();
        if let Ok(out) = curl {
            assert!(out.status.success(), "curl failed: {out:?}");
            let body = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                parse(&body)["percpu_trace_findings_total{kind=\"recursion\"}"],
                1.0
            );
        }

        let (head, _) = get(addr, "/nope").await;
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        server.abort();
    }

    #[tokio::test]
    async fn bad_address_is_one_line() {
        let taken = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(addr, Arc::new(Metrics::new())).await.unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with(&format!("cannot listen for metrics on {addr}:")),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }
}
