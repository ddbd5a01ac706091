//! A minimal HTTP/1.1 responder for `GET /metrics` on tokio (one request per connection,
//! no keep-alive: all a scraper needs).
//!
//! Bounded: at most `max_requests` connections are served at once (node_exporter's
//! `--web.max-requests` convention; `--metrics-max-requests`, default
//! [`DEFAULT_MAX_REQUESTS`]); one more is answered `503` at once and closed, with no task
//! or buffer kept for it. Each served connection holds a few KiB, freed when it ends or
//! after [`CONNECTION_TIMEOUT`]. Before this, 14k idle loopback connections took the
//! recorder to 69.5 MB RSS.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::sync::Semaphore;

use anyhow::{anyhow, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{Metrics, CONTENT_TYPE, CONTENT_TYPE_TEXT};

/// Connections served at once by default (node_exporter's `--web.max-requests` default).
pub const DEFAULT_MAX_REQUESTS: usize = 40;

/// How long one connection may take, idle or not.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection past the cap gets, written without waiting.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 37\r\nConnection: close\r\n\r\ntoo many concurrent metrics requests\n";

/// Binds the metrics listener; call it before attaching probes so a bad address fails
/// fast with one line.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow!("cannot listen for metrics on {addr}: {e}"))
}

/// Serves `GET /metrics` on `addr` until the task is dropped or aborted.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<()> {
    serve_listener(bind(addr).await?, metrics, DEFAULT_MAX_REQUESTS).await
}

/// Serves `GET /metrics` on an already bound listener (each connection on its own task,
/// at most `max_requests` at once).
pub async fn serve_listener(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    max_requests: usize,
) -> Result<()> {
    let slots = Arc::new(Semaphore::new(max_requests.max(1)));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            // Out of fds and the like: transient for a server, so back off and continue.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Full: say so if the socket takes it now, and close. Nothing is kept.
            let _ = stream.try_write(BUSY);
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            // A scraper that stalls or hangs up is its own problem, not the tracer's.
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, respond(stream, &m)).await;
            drop(slot);
        });
    }
}

/// Largest request head accepted.
const MAX_REQUEST: usize = 8192;

async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
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
            // OpenMetrics for who asks for it (Prometheus does), the classic text format
            // for everyone else (curl, promtool).
            let openmetrics = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("accept")
                        && v.contains("application/openmetrics-text")
                })
            });
            let (body, content_type) = if openmetrics {
                (metrics.encode(), CONTENT_TYPE)
            } else {
                (metrics.encode_text(), CONTENT_TYPE_TEXT)
            };
            let body = if method == "HEAD" {
                Vec::new()
            } else {
                body.into_bytes()
            };
            reply(&mut stream, "200 OK", content_type, &body).await
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
