//! A minimal HTTP/1.1 responder for `GET /metrics` on tokio (one request per connection,
//! no keep-alive: all a scraper needs).
use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{anyhow, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{Metrics, CONTENT_TYPE};

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
