//! The destinations the benchmark connects to, through a proxy or directly, all in this
//! process on loopback: a sink/source for throughput, an echo server for connection rate and
//! the library runs, and a holder that keeps idle connections open. Each records the peers it
//! sees, so the benchmark can check which process owns the other end. Not measurement logic.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

/// Buffer size of every relay-test read and write.
pub const CHUNK: usize = 128 * 1024;

/// First byte a throughput client sends to the sink: upload (the sink reads until end of
/// stream, then answers with the byte count as u64 LE) or download (the sink writes until the
/// connection fails).
pub const UPLOAD: u8 = b'U';
pub const DOWNLOAD: u8 = b'D';

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn spawn_small<F: FnOnce() + Send + 'static>(f: F) {
    // Thread creation failing here means the machine is out of resources; the test then sees
    // refused or stalled connections and reports them.
    let _ = thread::Builder::new().stack_size(256 * 1024).spawn(f);
}

/// The process found holding a peer socket (PID, command name), if any.
pub type Owner = Option<(i32, String)>;

/// Peers seen by a listener, as (peer, our local address) pairs.
pub type Peers = Arc<Mutex<Vec<(SocketAddr, SocketAddr)>>>;

/// Throughput sink and source; a thread per connection.
#[derive(Debug)]
pub struct Sink {
    pub addr: SocketAddr,
    pub peers: Peers,
    /// Upload connections finished: bytes received and when the end of stream arrived.
    pub uploads: Arc<Mutex<Vec<(u64, Instant)>>>,
}

impl Sink {
    pub fn start(ip: IpAddr) -> io::Result<Sink> {
        let listener = TcpListener::bind((ip, 0))?;
        let addr = listener.local_addr()?;
        let peers: Peers = Arc::default();
        let uploads: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
        let (seen, done) = (peers.clone(), uploads.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if let (Ok(p), Ok(l)) = (conn.peer_addr(), conn.local_addr()) {
                    lock(&seen).push((p, l));
                }
                let done = done.clone();
                spawn_small(move || {
                    let _ = serve_sink(conn, &done);
                });
            }
        });
        Ok(Sink { addr, peers, uploads })
    }
}

fn serve_sink(mut conn: TcpStream, done: &Mutex<Vec<(u64, Instant)>>) -> io::Result<()> {
    let mut cmd = [0u8; 1];
    conn.read_exact(&mut cmd)?;
    let mut buf = vec![0u8; CHUNK];
    match cmd[0] {
        UPLOAD => {
            let mut total = 0u64;
            loop {
                match conn.read(&mut buf)? {
                    0 => break,
                    n => total += n as u64,
                }
            }
            lock(done).push((total, Instant::now()));
            // The count also goes back in-band: it arrives only if the server relays a
            // half-close (microsocks closes both ways on the client's end of stream).
            conn.write_all(&total.to_le_bytes())
        }
        DOWNLOAD => loop {
            conn.write_all(&buf)?;
        },
        _ => Ok(()),
    }
}

/// Echo server: one thread, non-blocking sockets and poll(2), so it takes one thread's share
/// of the CPU whatever the number of connections. Each connection gets its first bytes echoed
/// and is closed right after (the client then sees end of stream and closes its end). Can audit the owner of the peer socket of the
/// next few connections (before echoing, so the peer is still connected).
#[derive(Debug)]
pub struct Echo {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
    audit_left: Arc<AtomicU32>,
    audited: Arc<Mutex<Vec<Owner>>>,
}

impl Echo {
    pub fn start(ip: IpAddr) -> io::Result<Echo> {
        let listener = TcpListener::bind((ip, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let audit_left = Arc::new(AtomicU32::new(0));
        let audited: Arc<Mutex<Vec<Owner>>> = Arc::default();
        let (count, left, found) = (accepted.clone(), audit_left.clone(), audited.clone());
        thread::spawn(move || echo_loop(listener, addr, &count, &left, &found));
        Ok(Echo { addr, accepted, audit_left, audited })
    }

    /// Audit the owners of the next `n` connections' peer sockets.
    pub fn audit_next(&self, n: u32) {
        lock(&self.audited).clear();
        self.audit_left.store(n, Ordering::Relaxed);
    }

    /// Owners found since `audit_next` (None: no owner found).
    pub fn audited(&self) -> Vec<Owner> {
        self.audit_left.store(0, Ordering::Relaxed);
        lock(&self.audited).clone()
    }
}

fn echo_loop(
    listener: TcpListener,
    addr: SocketAddr,
    accepted: &AtomicU64,
    audit_left: &AtomicU32,
    audited: &Mutex<Vec<Owner>>,
) {
    let mut conns: Vec<TcpStream> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        fds.clear();
        fds.push(libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        for c in &conns {
            fds.push(libc::pollfd { fd: c.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        if crate::sys::poll(&mut fds, 1000) <= 0 {
            continue;
        }
        // Connections first (indexes shift when some are removed), newest last.
        for i in (0..conns.len()).rev() {
            if fds[i + 1].revents == 0 {
                continue;
            }
            // Echo, then close: the server end closes first, so TIME_WAIT stays with the
            // listening port and does not use up the ephemeral ports of the clients and of
            // the proxies' outbound sockets (Dante binds those to port 0 explicitly, and
            // bind cannot reuse a port in TIME_WAIT).
            let done = match conns[i].read(&mut buf) {
                Ok(0) => true,
                Ok(n) => {
                    let _ = conns[i].write_all(&buf[..n]);
                    true
                }
                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            };
            if done {
                conns.swap_remove(i);
            }
        }
        if fds[0].revents != 0 {
            while let Ok((conn, peer)) = listener.accept() {
                accepted.fetch_add(1, Ordering::Relaxed);
                let audit = audit_left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok();
                if audit {
                    // A forking server may be passing the descriptor between its processes
                    // (Dante's request child hands it to an io child): look again for a while.
                    let mut owner = None;
                    for _ in 0..50 {
                        owner = crate::sys::socket_owner(peer, addr, None);
                        if owner.is_some() {
                            break;
                        }
                        thread::sleep(std::time::Duration::from_millis(10));
                    }
                    lock(audited).push(owner);
                }
                if conn.set_nonblocking(true).is_ok() {
                    conns.push(conn);
                }
            }
        }
    }
}

/// Accepts connections and keeps them open, unread, until `clear`. It runs in a child process
/// (this binary in `--holder-mode`), so that the benchmark's own descriptor limit covers only
/// the client ends; the two talk over the child's standard input and output, a line each.
#[derive(Debug)]
pub struct Holder {
    pub addr: SocketAddr,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Holder {
    pub fn start() -> io::Result<Holder> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("--holder-mode")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let bad = |what: &str| io::Error::other(format!("holder: {what}"));
        let stdin = child.stdin.take().ok_or_else(|| bad("no stdin"))?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or_else(|| bad("no stdout"))?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr = line.trim().parse().map_err(|_| bad(&format!("said {line:?}")))?;
        Ok(Holder { addr, child, stdin, stdout })
    }

    fn ask(&mut self, cmd: &str) -> String {
        let mut line = String::new();
        if writeln!(self.stdin, "{cmd}").is_ok() {
            let _ = self.stdout.read_line(&mut line);
        }
        line.trim().to_string()
    }

    pub fn count(&mut self) -> usize {
        self.ask("count").parse().unwrap_or(0)
    }

    /// (peer, our address) of every connection held.
    pub fn peers(&mut self) -> Vec<(SocketAddr, SocketAddr)> {
        let addr = self.addr;
        self.ask("peers").split_whitespace().filter_map(|p| Some((p.parse().ok()?, addr))).collect()
    }

    pub fn clear(&mut self) {
        self.ask("clear");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The holder process: listens on 127.0.0.1, prints its address, then answers `count`,
/// `peers` and `clear`, one line each, until its standard input ends.
pub fn holder_main() -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let held: Arc<Mutex<Vec<(TcpStream, SocketAddr)>>> = Arc::default();
    let keep = held.clone();
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(conn) => {
                    if let Ok(peer) = conn.peer_addr() {
                        lock(&keep).push((conn, peer));
                    }
                }
                // Out of descriptors: wait for the test to give some back.
                Err(_) => thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    });
    let mut out = io::stdout().lock();
    writeln!(out, "{addr}")?;
    out.flush()?;
    for line in io::stdin().lines() {
        let reply = match line?.trim() {
            "count" => lock(&held).len().to_string(),
            "peers" => lock(&held).iter().map(|(_, p)| p.to_string()).collect::<Vec<_>>().join(" "),
            "clear" => {
                lock(&held).clear();
                "ok".into()
            }
            other => format!("unknown command {other}"),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}
