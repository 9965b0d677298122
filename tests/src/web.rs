//! A small web site for browsers under test: an HTTP/1.1 server run in-process on sockets made
//! in a test's namespace (usually `outside`, on several addresses at once: the IPv4 and IPv6
//! addresses a name has), serving fixed pages with their content types (HTML that pulls in
//! scripts by name and by address, the scripts themselves), 404 for anything else. Every
//! request is recorded with its peer (which proves the firewall relayed it), its path and its
//! `Host` header (which tells a request by name from one by address).
//!
//! A page may be *held*: its answer waits until the test calls [`Web::release`] for it (or a
//! bounded time passes), so a test can look at a browser while it is certainly mid-load —
//! processes up, a request in flight — without sleeping for the order of events.
//!
//! Not here: the plain HTTP, echo and whois servers with byte accounting (`servers`), the
//! browser (`chromium`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::in_netns;

/// How long a held page waits for [`Web::release`] at most, and a connection may sit idle.
const HOLD_LIMIT: Duration = Duration::from_secs(60);

/// One page of the site.
#[derive(Debug, Clone)]
pub struct Page {
    /// Its path (`/page.html`).
    pub path: String,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its body.
    pub body: Vec<u8>,
    /// Whether its answer waits for [`Web::release`] of its path.
    pub held: bool,
}

impl Page {
    /// An HTML page.
    pub fn html(path: &str, body: &str) -> Page {
        Page::new(path, "text/html; charset=utf-8", body)
    }

    /// A script.
    pub fn script(path: &str, body: &str) -> Page {
        Page::new(path, "text/javascript", body)
    }

    fn new(path: &str, content_type: &'static str, body: &str) -> Page {
        Page { path: path.to_owned(), content_type, body: body.as_bytes().to_vec(), held: false }
    }

    /// The same page, answered only once the test releases it.
    pub fn held(mut self) -> Page {
        self.held = true;
        self
    }
}

/// One request the site received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Who connected.
    pub peer: SocketAddr,
    /// The request path.
    pub path: String,
    /// The `Host` header, if any.
    pub host: Option<String>,
    /// The status answered (200 or 404).
    pub status: u16,
}

#[derive(Debug, Default)]
struct State {
    requests: Vec<Request>,
    /// The held paths released so far.
    released: Vec<String>,
    /// Everything released (the site is going away).
    all_released: bool,
}

#[derive(Debug)]
struct Shared {
    pages: HashMap<String, Page>,
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running site; see the module documentation. Dropping it releases every held page and
/// stops its accept loops.
#[derive(Debug)]
pub struct Web {
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    accept: Vec<JoinHandle<()>>,
}

impl Web {
    /// Serves `pages` on every one of `addrs` (port 0: any) in namespace `ns`.
    pub fn start(ns: &str, addrs: &[SocketAddr], pages: Vec<Page>) -> Web {
        let pages = pages.into_iter().map(|p| (p.path.clone(), p)).collect();
        let shared = Arc::new(Shared {
            pages,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (mut accept, mut bound) = (Vec::new(), Vec::new());
        for &addr in addrs {
            let listener = in_netns(ns, move || TcpListener::bind(addr))
                .unwrap_or_else(|e| panic!("web server cannot listen on {addr} in {ns}: {e}"));
            bound.push(listener.local_addr().expect("a bound listener has an address"));
            listener.set_nonblocking(true).expect("listener to non-blocking mode");
            let (stop, shared) = (stop.clone(), shared.clone());
            accept.push(std::thread::spawn(move || accept_loop(&listener, &stop, &shared)));
        }
        Web { addrs: bound, stop, shared, accept }
    }

    /// The addresses it listens on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Every request so far, in the order their headers arrived.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// The requests for `path` so far.
    pub fn requests_for(&self, path: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// Whether a request for `path` has arrived.
    pub fn has_request(&self, path: &str) -> bool {
        self.shared.lock().requests.iter().any(|r| r.path == path)
    }

    /// Lets held page `path` be answered (now and from now on).
    pub fn release(&self, path: &str) {
        self.shared.lock().released.push(path.to_owned());
        self.shared.changed.notify_all();
    }

    /// Waits (bounded) until a request for `path` has arrived; whether it did.
    pub fn wait_request(&self, path: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.requests.iter().any(|r| r.path == path) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state =
                self.shared.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.shared.lock().all_released = true;
        self.shared.changed.notify_all();
        self.stop.store(true, Ordering::SeqCst);
        for accept in self.accept.drain(..) {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, shared: &Arc<Shared>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, peer, &shared));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Answers one request on `stream`, then closes it (`Connection: close`).
fn serve(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(HOLD_LIMIT));
    let _ = stream.set_write_timeout(Some(HOLD_LIMIT));
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
        if head.len() > 65536 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let host = text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("host").then(|| value.trim().to_owned())
    });
    let page = shared.pages.get(&path);
    let status = if page.is_some() { 200 } else { 404 };
    shared.lock().requests.push(Request { peer, path: path.clone(), host, status });
    shared.changed.notify_all();
    if page.is_some_and(|p| p.held) {
        let deadline = Instant::now() + HOLD_LIMIT;
        let mut state = shared.lock();
        while !state.all_released && !state.released.contains(&path) && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            state = shared.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
    let (reason, content_type, body) = match page {
        Some(page) => ("OK", page.content_type, page.body.as_slice()),
        None => ("Not Found", "text/plain", &b"not found\n"[..]),
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    let _ = stream.write_all(&response);
    let _ = stream.shutdown(Shutdown::Write);
    // Let the client close first, so no reset eats the end of the answer.
    while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    use super::{Page, Web};
    use crate::OWN_NETNS;

    fn get(addr: SocketAddr, path: &str) -> TcpStream {
        let mut stream = TcpStream::connect(addr).expect("connect to the site");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: www.example.test\r\n\r\n").expect("request");
        stream
    }

    fn answer(mut stream: TcpStream) -> String {
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("the whole answer");
        text
    }

    #[test]
    fn serves_pages_records_requests_and_holds_until_released() {
        let pages =
            vec![Page::html("/p.html", "<p>hi</p>"), Page::script("/held.js", "x()").held()];
        let web = Web::start(OWN_NETNS, &["127.0.0.1:0".parse().expect("address")], pages);
        let addr = web.addrs()[0];
        assert_ne!(addr.port(), 0, "the bound port is reported");

        let page = answer(get(addr, "/p.html"));
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"), "{page}");
        assert!(page.ends_with("\r\n\r\n<p>hi</p>"), "{page}");
        assert!(answer(get(addr, "/missing")).starts_with("HTTP/1.1 404 Not Found\r\n"));

        // The held script: requested, recorded, and not answered before the release.
        let mut held = get(addr, "/held.js");
        assert!(web.wait_request("/held.js", Duration::from_secs(10)));
        held.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
        let mut byte = [0u8; 1];
        assert!(held.read(&mut byte).is_err(), "a held page must not be answered yet");
        web.release("/held.js");
        held.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        let text = answer(held);
        assert!(text.ends_with("x()"), "the held page after its release: {text:?}");

        let requests = web.requests();
        let paths: Vec<(&str, u16)> =
            requests.iter().map(|r| (r.path.as_str(), r.status)).collect();
        assert_eq!(paths, [("/p.html", 200), ("/missing", 404), ("/held.js", 200)]);
        assert!(requests.iter().all(|r| r.host.as_deref() == Some("www.example.test")));
        assert!(requests.iter().all(|r| r.peer.ip() == addr.ip()));
    }
}
