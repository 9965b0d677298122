//! Destination servers the tests own, run in-process on sockets created inside a test's
//! namespace (usually `outside`): an HTTP/1.1 server with known bodies, an echo server, a
//! whois responder (port 43, one query, a known answer), and a "silent" server that accepts and never speaks (a SOCKS server that hangs). Each records every
//! connection it accepted — the peer address (which proves the connection came from the
//! firewall, not from the workstation) and the exact byte counts, which the tests compare with
//! sockd's `sent=`/`received=`.
//!
//! For UDP, [`UdpEcho`] sends every datagram back to its sender unchanged and records each
//! one's source and size (sockd's `datagrams-sent=`/`datagrams-received=` are compared with
//! them).
//!
//! Every socket has a timeout; dropping a server stops its accept loop and joins it.
//!
//! Not here: the SOCKS servers (real programs, see `lib.rs`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::in_netns;

/// How long a server connection may sit idle before the server gives up on it.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(20);

/// One connection a server handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Who connected.
    pub peer: SocketAddr,
    /// Bytes read from the peer.
    pub received: u64,
    /// Bytes written to the peer.
    pub sent: u64,
    /// For HTTP: the request path.
    pub path: Option<String>,
}

#[derive(Debug, Default)]
struct Record {
    accepted: Vec<SocketAddr>,
    done: Vec<Exchange>,
}

#[derive(Debug, Default)]
struct Shared {
    record: Mutex<Record>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a server does with one accepted connection; returns the exchange's details.
type Handler = fn(&mut TcpStream, &mut Exchange);

/// A listening server with its accept thread; see the module documentation.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    kind: &'static str,
}

impl Server {
    fn start(ns: &str, addr: SocketAddr, kind: &'static str, handler: Handler) -> Server {
        let listener = in_netns(ns, move || TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("{kind} server cannot listen on {addr} in {ns}: {e}"));
        let addr = listener.local_addr().expect("a bound listener has an address");
        listener.set_nonblocking(true).expect("listener to non-blocking mode");
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let accept = {
            let (stop, shared) = (stop.clone(), shared.clone());
            std::thread::spawn(move || accept_loop(&listener, &stop, &shared, handler))
        };
        Server { addr, stop, shared, accept: Some(accept), kind }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Peers of every accepted connection so far.
    pub fn accepted(&self) -> Vec<SocketAddr> {
        self.shared.lock().accepted.clone()
    }

    /// Waits (bounded) until `count` connections have finished, and returns them all.
    pub fn wait_done(&self, count: usize, timeout: Duration) -> Vec<Exchange> {
        let deadline = Instant::now() + timeout;
        let mut record = self.shared.lock();
        while record.done.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} server {}: expected {count} finished connections within {timeout:?}, got \
                 {} (accepted {:?})",
                self.kind,
                self.addr,
                record.done.len(),
                record.accepted
            );
            record =
                self.shared.changed.wait_timeout(record, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        record.done.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, shared: &Arc<Shared>, handler: Handler) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                shared.lock().accepted.push(peer);
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(CONNECTION_TIMEOUT));
                    let _ = stream.set_write_timeout(Some(CONNECTION_TIMEOUT));
                    let mut exchange = Exchange { peer, received: 0, sent: 0, path: None };
                    handler(&mut stream, &mut exchange);
                    drop(stream);
                    shared.lock().done.push(exchange);
                    shared.changed.notify_all();
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Echo: everything read is written back; end of stream is answered with a half-close, then
/// the server closes once the peer has closed too.
pub fn echo(ns: &str, addr: SocketAddr) -> Server {
    Server::start(ns, addr, "echo", |stream, exchange| {
        let mut buffer = [0u8; 16384];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    exchange.received += n as u64;
                    if stream.write_all(&buffer[..n]).is_err() {
                        return;
                    }
                    exchange.sent += n as u64;
                }
            }
        }
        let _ = stream.shutdown(Shutdown::Write);
    })
}

/// The body the HTTP server sends for `path`:
/// `/bytes/N` → N pseudo-random bytes (see [`pattern`]), anything else → a short greeting
/// naming the path.
pub fn http_body(path: &str) -> Vec<u8> {
    match path.strip_prefix("/bytes/").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => pattern(n),
        None => format!("hello from outside: {path}\n").into_bytes(),
    }
}

/// `len` deterministic pseudo-random bytes (xorshift seeded with the length), so a truncated,
/// shifted or duplicated stretch is caught.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ len as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// HTTP/1.1: one request per connection (GET only), answered with `Connection: close`, a
/// `Content-Length` and [`http_body`]`(path)`.
pub fn http(ns: &str, addr: SocketAddr) -> Server {
    Server::start(ns, addr, "http", |stream, exchange| {
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    exchange.received += n as u64;
                    request.extend_from_slice(&buffer[..n]);
                }
            }
        }
        let text = String::from_utf8_lossy(&request);
        let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let body = http_body(&path);
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: \
             {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        exchange.path = Some(path);
        if stream.write_all(&response).is_ok() {
            exchange.sent = response.len() as u64;
        }
        let _ = stream.shutdown(Shutdown::Write);
        // Let the client finish reading and close first, so no RST eats the end of the body.
        while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {}
    })
}

/// Accepts connections and never writes a byte (a SOCKS server that hangs); each connection is
/// held until the peer closes it or [`CONNECTION_TIMEOUT`] passes.
pub fn silent(ns: &str, addr: SocketAddr) -> Server {
    Server::start(ns, addr, "silent", |stream, exchange| {
        let mut buffer = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            exchange.received += n as u64;
        }
    })
}

/// What the whois responder answers to `query`.
pub fn whois_answer(query: &str) -> String {
    format!(
        "% socks-e2e whois responder on the outside host\n\
         domain:         {query}\n\
         status:         reachable only through the firewall\n\
         source:         SOCKS-E2E\n"
    )
}

/// Whois (RFC 3912): reads one query line, answers [`whois_answer`] and closes. The query
/// (without its line end) is recorded as the exchange's `path`.
pub fn whois(ns: &str, addr: SocketAddr) -> Server {
    Server::start(ns, addr, "whois", |stream, exchange| {
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.contains(&b'\n') && request.len() < 4096 {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    exchange.received += n as u64;
                    request.extend_from_slice(&buffer[..n]);
                }
            }
        }
        let text = String::from_utf8_lossy(&request);
        let query = text.lines().next().unwrap_or("").trim().to_owned();
        let answer = whois_answer(&query);
        exchange.path = Some(query);
        if stream.write_all(answer.as_bytes()).is_ok() {
            exchange.sent = answer.len() as u64;
        }
        let _ = stream.shutdown(Shutdown::Write);
        while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {}
    })
}

/// One datagram a [`UdpEcho`] received (and sent back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Its source.
    pub peer: SocketAddr,
    /// Its payload length.
    pub len: usize,
    /// Whether the echo went out whole.
    pub echoed: bool,
}

/// A UDP echo server: every datagram goes back to its source unchanged (up to 65,535 bytes).
/// Records what it received; dropping it stops its thread.
#[derive(Debug)]
pub struct UdpEcho {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    record: Arc<(Mutex<Vec<Datagram>>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    /// Binds `addr` in namespace `ns` (port 0 = any) and starts echoing.
    pub fn start(ns: &str, addr: SocketAddr) -> UdpEcho {
        let socket = in_netns(ns, move || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("UDP echo server cannot bind {addr} in {ns}: {e}"));
        let addr = socket.local_addr().expect("a bound socket has an address");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("UDP echo server read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let thread = {
            let (stop, record) = (stop.clone(), record.clone());
            std::thread::spawn(move || {
                let mut buffer = vec![0u8; 65_536];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, peer)) = socket.recv_from(&mut buffer) else { continue };
                    let echoed =
                        matches!(socket.send_to(&buffer[..n], peer), Ok(sent) if sent == n);
                    let (list, changed) = &*record;
                    list.lock().unwrap_or_else(|p| p.into_inner()).push(Datagram {
                        peer,
                        len: n,
                        echoed,
                    });
                    changed.notify_all();
                }
            })
        };
        UdpEcho { addr, stop, record, thread: Some(thread) }
    }

    /// The address it answers on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The datagrams received so far.
    pub fn datagrams(&self) -> Vec<Datagram> {
        self.record.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (bounded) until `count` datagrams have arrived; returns them all.
    pub fn wait_datagrams(&self, count: usize, timeout: Duration) -> Vec<Datagram> {
        let list = self.datagrams_within(count, timeout);
        assert!(
            list.len() >= count,
            "UDP echo server {}: expected {count} datagrams within {timeout:?}, got {list:?}",
            self.addr
        );
        list
    }

    /// The datagrams received once `count` have arrived or `timeout` has passed, whichever
    /// comes first: for a test that sends many and accepts that UDP drops some under load.
    pub fn datagrams_within(&self, count: usize, timeout: Duration) -> Vec<Datagram> {
        let deadline = Instant::now() + timeout;
        let (list, changed) = &*self.record;
        let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
        while list.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            list = changed.wait_timeout(list, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        list.clone()
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
