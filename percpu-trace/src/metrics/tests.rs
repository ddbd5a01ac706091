use super::http::{bind, serve, serve_listener};
use super::*;
use crate::engine::EngineConfig;
use crate::event::{Event, EventKind};
use crate::report;
use std::net::SocketAddr;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

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

/// A GET asking for OpenMetrics, as Prometheus does.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    get_accepting(
        addr,
        path,
        "application/openmetrics-text;version=1.0.0,*/*;q=0.1",
    )
    .await
}

async fn get_accepting(addr: SocketAddr, path: &str, accept: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\n\r\n");
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
    let server = tokio::spawn(serve_listener(listener, m.clone(), 40));

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
    // The top bucket is +Inf (was le="1.7976931348623157e308": histogram_quantile gave NaN).
    assert_eq!(
        v["percpu_trace_mutex_hold_seconds_bucket{le=\"+Inf\"}"],
        1.0
    );
    assert!(!body.contains("e308"), "{body}");

    // Without an OpenMetrics Accept header: the classic text format, every family with
    // HELP and TYPE under the name its samples carry (`promtool check metrics` said "no
    // help text" for the 7 counters).
    let (head, text) = get_accepting(addr, "/metrics", "*/*").await;
    assert!(head.contains(CONTENT_TYPE_TEXT), "{head}");
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    for sample in text.lines().filter(|l| !l.starts_with('#')) {
        let name = sample.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|_| name.contains("hold_seconds"))
            })
            .unwrap_or(name);
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no help for {name}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no type for {name}"
        );
    }
    assert_eq!(parse(&text), v, "the same values in both formats");

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

/// At most `max_requests` connections are held (idle ones included); one more gets 503 at
/// once and is closed, and a scrape works again when a slot frees.
#[tokio::test]
async fn idle_connections_are_capped_and_the_rest_refused_at_once() {
    let m = Arc::new(Metrics::new());
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve_listener(listener, m, 4));
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Let the server accept them.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    for _ in 0..50 {
        // Read without sending (a request the server never reads would make its close a
        // reset, racing with the answer): the 503 comes at once, then the close.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        assert!(
            out.ends_with("\r\n\r\ntoo many concurrent metrics requests\n"),
            "{out}"
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    drop(idle.pop());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (head, _) = get(addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
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
