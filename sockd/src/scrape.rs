//! The `--metrics` listener: answers `GET /metrics` (and `HEAD`) with the metrics in the
//! Prometheus text format, one request per connection, then closes.
//!
//! Hand-written rather than hyper: one path, one method, no keep-alive, no body to read — a
//! bounded read of the request head and a fixed response, which a whole HTTP stack would not
//! make safer. Every connection is bounded: the request head must arrive within `READ_TIMEOUT`
//! and fit in `MAX_HEAD` bytes, the whole exchange ends within `EXCHANGE_TIMEOUT`, and at most
//! `MAX_SCRAPERS` connections are served at once (more are closed at once), so a slow or hostile
//! scraper costs one small task and never touches the SOCKS listeners.
//!
//! Not here: what is counted (`metrics`).

use std::sync::Arc;
use std::time::Duration;

use log::{debug, info};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use crate::{metrics, Context};

/// Longest request head accepted (request line and headers).
const MAX_HEAD: usize = 8 * 1024;
/// Time a scraper has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a whole exchange, the response included.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes served at once.
const MAX_SCRAPERS: usize = 16;

/// Serves scrapes on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!("metrics: accept: {e}");
                // Out of descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("metrics: {MAX_SCRAPERS} scrapes running; closed the connection from {peer}");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if timeout(EXCHANGE_TIMEOUT, exchange(stream, &ctx)).await.is_err() {
                debug!("metrics: scrape from {peer} took longer than {EXCHANGE_TIMEOUT:?}; closed");
            }
            drop(slot);
        });
    }
}

/// Logs where scrapes are served.
pub fn announce(listener: &TcpListener) {
    if let Ok(addr) = listener.local_addr() {
        info!("metrics: serving http://{addr}/metrics");
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    /// `GET /metrics` (`head` = HEAD: headers only).
    Metrics { head: bool },
    /// Another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Not an HTTP/1.x request line.
    BadRequest,
}

/// Reads one request head and answers it.
async fn exchange(mut stream: TcpStream, ctx: &Context) {
    let asked = match timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => parse(&head),
        Ok(Ok(None)) => {
            let _ = respond(&mut stream, "431 Request Header Fields Too Large", "", false).await;
            return;
        }
        Ok(Err(_)) => return,
        Err(_) => {
            let _ = respond(&mut stream, "408 Request Timeout", "", false).await;
            return;
        }
    };
    let _ = match asked {
        Asked::Metrics { head } => {
            let body = metrics::render(ctx);
            respond(&mut stream, "200 OK", &body, head).await
        }
        Asked::NotFound => respond(&mut stream, "404 Not Found", "try /metrics\n", false).await,
        Asked::MethodNotAllowed => respond(&mut stream, "405 Method Not Allowed", "", false).await,
        Asked::BadRequest => respond(&mut stream, "400 Bad Request", "", false).await,
    };
}

/// The request head up to its blank line; `None` when it does not fit in `MAX_HEAD`.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            // Closed early: answer what arrived (a bare request line is enough).
            return Ok(Some(head));
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

/// Reads the request line: `METHOD PATH HTTP/1.x`.
fn parse(head: &[u8]) -> Asked {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Asked::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Asked::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Asked::BadRequest;
    }
    let path = target.split('?').next().unwrap_or(target);
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ if method.bytes().all(|b| b.is_ascii_uppercase()) && !method.is_empty() => {
            return Asked::MethodNotAllowed
        }
        _ => return Asked::BadRequest,
    };
    if path == "/metrics" {
        Asked::Metrics { head }
    } else {
        Asked::NotFound
    }
}

/// Writes a complete response and closes the sending side.
async fn respond(
    stream: &mut TcpStream,
    status: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let content_type =
        if status.starts_with("200") { metrics::CONTENT_TYPE } else { "text/plain; charset=utf-8" };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Asked::Metrics { head: false }
        );
        assert_eq!(parse(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"), Asked::Metrics { head: true });
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Asked::NotFound);
        assert_eq!(parse(b"POST /metrics HTTP/1.1\r\n\r\n"), Asked::MethodNotAllowed);
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), Asked::BadRequest);
        assert_eq!(parse(b"\x05\x01\x00"), Asked::BadRequest);
        assert_eq!(parse(b"GET /metrics HTTP/2 extra\r\n\r\n"), Asked::BadRequest);
        assert_eq!(parse(b""), Asked::BadRequest);
    }
}
