//! Connection rate and latency: C concurrent clients, each repeating for a fixed time
//! connect -> (SOCKS5 greeting, CONNECT) -> 1-byte echo -> close, against the loopback echo
//! server, directly or through a server. The echo server closes first and the client closes on
//! its end of stream, which keeps TIME_WAIT off the ephemeral ports (hundreds of thousands of
//! connections per run would otherwise exhaust them). The clients are driven by one thread with
//! non-blocking sockets and poll(2) (as the echo server is), so the harness takes the same
//! share of the 2 CPUs whatever the server's threading. Latency is per whole iteration; the
//! server's CPU time is taken over the run. `probe` checks who owns the far end. The same cycle
//! without SOCKS through a plain forwarder (HAProxy) is `run_to` a forwarder's address. A
//! diagnostic variant (`Cycle::Pipelined`) sends the SOCKS5 greeting and the CONNECT request
//! together, without waiting for the method choice: one round trip fewer, which shows what the
//! protocol's extra round trips cost against the forwarder (issue 17); the benchmark's own
//! figures keep the waiting client, as most clients are.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::report::quantile;
use crate::servers::{Kind, Server};
use crate::socks5::Path as Route;
use crate::sys;
use crate::targets::Echo;

/// One connection-rate run.
#[derive(Debug, Clone)]
pub struct Run {
    pub rate: f64,
    pub conns: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub cpu_secs: f64,
    /// CPU time of this benchmark's own process over the run: its client driver and echo server.
    pub bench_cpu_secs: f64,
    /// Connections the echo server accepted during the run.
    pub echo_accepted: u64,
    /// Share of all the machine's CPUs busy during the run (anyone's work), 0..=1.
    pub machine_busy: f64,
}

/// One blocking iteration (used by the probe).
fn once(route: Route, dst: SocketAddr) -> Result<(), String> {
    let mut s = route.open(dst, Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.write_all(b"x").map_err(|e| e.to_string())?;
    let mut b = [0u8; 8];
    s.read_exact(&mut b[..1]).map_err(|e| e.to_string())?;
    if b[0] != b'x' {
        return Err("echo mismatch".into());
    }
    // The echo server closes first; close after its end of stream.
    match s.read(&mut b) {
        Ok(0) => Ok(()),
        Ok(_) => Err("bytes after the echo".into()),
        Err(e) => Err(format!("waiting for end of stream: {e}")),
    }
}

/// How the client speaks SOCKS5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cycle {
    /// Greeting, wait for the method choice, CONNECT request, wait for the reply (the figures).
    Waiting,
    /// Greeting and CONNECT request in one write, then both replies (a diagnostic row).
    Pipelined,
}

/// Where a client connection is in its iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connecting,
    /// Waiting for the SOCKS5 method choice (2 bytes).
    Greeting,
    /// Waiting for the SOCKS5 CONNECT reply.
    Request,
    /// Waiting for the echoed byte and then the end of stream.
    Echo,
}

#[derive(Debug)]
struct Slot {
    s: TcpStream,
    step: Step,
    t0: Instant,
    buf: [u8; 300],
    have: usize,
}

/// Length of a complete SOCKS5 reply whose first bytes are `b`, once known.
fn reply_len(b: &[u8]) -> Option<usize> {
    let addr = match (b.get(3)?, b.get(4)) {
        (1, _) => 4,
        (4, _) => 16,
        (3, Some(n)) => 1 + usize::from(*n),
        _ => return None,
    };
    Some(4 + addr + 2)
}

fn start_conn(route: Route, dst: SocketAddr) -> Result<Slot, String> {
    let to = match route {
        Route::Direct => dst,
        Route::Socks5(proxy) => proxy,
    };
    let SocketAddr::V4(to) = to else { return Err("IPv4 only".into()) };
    let s = sys::connect_nonblocking(to).map_err(|e| format!("connect: {e}"))?;
    Ok(Slot { s, step: Step::Connecting, t0: Instant::now(), buf: [0; 300], have: 0 })
}

/// The SOCKS5 CONNECT request for `dst`.
fn connect_request(dst: SocketAddr) -> Result<[u8; 10], String> {
    let SocketAddr::V4(d) = dst else { return Err("IPv4 only".into()) };
    let mut req = [5u8, 1, 0, 1, 0, 0, 0, 0, 0, 0];
    req[4..8].copy_from_slice(&d.ip().octets());
    req[8..10].copy_from_slice(&d.port().to_be_bytes());
    Ok(req)
}

/// Advances a slot whose socket is ready. Ok(true) when the iteration is complete.
fn advance(slot: &mut Slot, route: Route, dst: SocketAddr, cycle: Cycle) -> Result<bool, String> {
    let send = |s: &mut TcpStream, b: &[u8]| -> Result<(), String> {
        // A handful of bytes into an empty socket buffer: written whole or not at all.
        match s.write(b) {
            Ok(n) if n == b.len() => Ok(()),
            Ok(n) => Err(format!("short write {n}/{}", b.len())),
            Err(e) => Err(format!("write: {e}")),
        }
    };
    if slot.step == Step::Connecting {
        if let Some(e) = slot.s.take_error().map_err(|e| e.to_string())? {
            return Err(format!("connect: {e}"));
        }
        slot.s.set_nodelay(true).map_err(|e| e.to_string())?;
        match route {
            Route::Direct => {
                send(&mut slot.s, b"x")?;
                slot.step = Step::Echo;
            }
            Route::Socks5(_) if cycle == Cycle::Pipelined => {
                let mut both = vec![5, 1, 0];
                both.extend_from_slice(&connect_request(dst)?);
                send(&mut slot.s, &both)?;
                slot.step = Step::Greeting;
            }
            Route::Socks5(_) => {
                send(&mut slot.s, &[5, 1, 0])?;
                slot.step = Step::Greeting;
            }
        }
        return Ok(false);
    }
    match slot.s.read(&mut slot.buf[slot.have..]) {
        // The echo server closes after echoing; the iteration ends with its end of stream.
        Ok(0) if slot.step == Step::Echo && slot.have == 1 => {
            return if slot.buf[0] == b'x' { Ok(true) } else { Err("echo mismatch".into()) };
        }
        Ok(0) => return Err(format!("end of stream while {:?}", slot.step)),
        Ok(n) => slot.have += n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
        Err(e) => return Err(format!("read while {:?}: {e}", slot.step)),
    }
    if slot.step == Step::Greeting && slot.have >= 2 {
        if slot.buf[..2] != [5, 0] {
            return Err(format!("method reply {:02x?}", &slot.buf[..2]));
        }
        // The CONNECT reply may have come in the same read (pipelined): keep what follows.
        slot.buf.copy_within(2..slot.have, 0);
        slot.have -= 2;
        slot.step = Step::Request;
        if cycle == Cycle::Waiting {
            send(&mut slot.s, &connect_request(dst)?)?;
        }
    }
    match slot.step {
        Step::Request => {
            if let Some(len) = reply_len(&slot.buf[..slot.have]) {
                if slot.have >= len {
                    if slot.buf[1] != 0 {
                        return Err(format!("CONNECT reply {:#04x}", slot.buf[1]));
                    }
                    slot.have = 0;
                    send(&mut slot.s, b"x")?;
                    slot.step = Step::Echo;
                }
            }
        }
        Step::Echo if slot.have > 1 => return Err("bytes after the echo".into()),
        _ => {}
    }
    Ok(false)
}

/// `clients` concurrent connections driven by one thread with poll(2), for `dur`: each
/// iteration's latency in ns, the errors and the first error.
fn drive(
    route: Route,
    cycle: Cycle,
    dst: SocketAddr,
    clients: usize,
    dur: Duration,
) -> (Vec<u64>, u64, Option<String>, Instant, Instant) {
    let mut lat: Vec<u64> = Vec::with_capacity(1 << 17);
    let (mut errors, mut first_error) = (0u64, None::<String>);
    let start = Instant::now();
    let deadline = start + dur;
    let mut slots: Vec<Option<Slot>> = Vec::with_capacity(clients);
    for _ in 0..clients {
        match start_conn(route, dst) {
            Ok(s) => slots.push(Some(s)),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
                slots.push(None);
            }
        }
    }
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(clients);
    let mut map: Vec<usize> = Vec::with_capacity(clients);
    while slots.iter().any(Option::is_some) && errors <= 100 {
        fds.clear();
        map.clear();
        for (i, slot) in slots.iter().enumerate() {
            if let Some(slot) = slot {
                let events =
                    if slot.step == Step::Connecting { libc::POLLOUT } else { libc::POLLIN };
                fds.push(libc::pollfd { fd: slot.s.as_raw_fd(), events, revents: 0 });
                map.push(i);
            }
        }
        if sys::poll(&mut fds, 1000) <= 0 {
            errors += 1;
            first_error.get_or_insert_with(|| "no progress for 1 s".into());
            continue;
        }
        for (k, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let i = map[k];
            let Some(slot) = slots[i].as_mut() else { continue };
            match advance(slot, route, dst, cycle) {
                Ok(false) => continue,
                Ok(true) => lat.push(slot.t0.elapsed().as_nanos() as u64),
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            // Close (dropping the stream) and start the slot's next iteration.
            slots[i] = None;
            if Instant::now() < deadline {
                match start_conn(route, dst) {
                    Ok(s) => slots[i] = Some(s),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    (lat, errors, first_error, start, Instant::now())
}

pub fn run(
    server: &Server,
    cycle: Cycle,
    echo: &Echo,
    clients: usize,
    dur: Duration,
) -> Result<Run, String> {
    let cpu = || server.cpu_ticks();
    run_to(server.route(), cycle, echo.addr, &cpu, echo, clients, dur)
}

/// [`run`] along any route to `dst` (for HAProxy: directly to its frontend, which forwards to
/// the echo server); `cpu_ticks` reads the CPU time of whatever process serves the route.
pub fn run_to(
    route: Route,
    cycle: Cycle,
    dst: SocketAddr,
    cpu_ticks: &dyn Fn() -> u64,
    echo: &Echo,
    clients: usize,
    dur: Duration,
) -> Result<Run, String> {
    let accepted0 = echo.accepted.load(Ordering::Relaxed);
    let own = || sys::stat(std::process::id() as i32).map_or(0, |s| s.own_ticks);
    let (cpu0, own0) = (cpu_ticks(), own());
    let busy0 = sys::cpu_jiffies();
    let (mut all, errors, first_error, start, end) = drive(route, cycle, dst, clients, dur);
    let own1 = own();
    let busy = sys::busy_between(busy0, sys::cpu_jiffies());
    // Let the server finish tearing down the last sessions before reading its CPU time.
    thread::sleep(Duration::from_millis(50));
    let cpu1 = cpu_ticks();
    let wall = (end - start).as_secs_f64();
    all.sort_unstable();
    let us = |q| quantile(&all, q) as f64 / 1e3;
    Ok(Run {
        rate: all.len() as f64 / wall,
        conns: all.len() as u64,
        errors,
        first_error,
        p50_us: us(0.50),
        p99_us: us(0.99),
        p999_us: us(0.999),
        cpu_secs: cpu1.saturating_sub(cpu0) as f64 / sys::clk_tck() as f64,
        bench_cpu_secs: own1.saturating_sub(own0) as f64 / sys::clk_tck() as f64,
        echo_accepted: echo.accepted.load(Ordering::Relaxed) - accepted0,
        machine_busy: busy,
    })
}

/// Opens one connection to the echo server along the server's route and, while it is open,
/// finds which process holds the socket the echo server sees as its peer. Ok(description)
/// when that is the server (or, for direct, this process).
pub fn probe(server: &Server, echo: &Echo) -> Result<String, String> {
    echo.audit_next(1);
    once(server.route(), echo.addr)?;
    let found = echo.audited();
    let Some(Some((pid, comm))) = found.first().cloned() else {
        return Err("the echo server's peer socket has no owner in /proc".into());
    };
    let ok = match server.kind {
        Kind::Direct => pid == std::process::id() as i32,
        _ => server.pids().contains(&pid),
    };
    if ok {
        Ok(format!("peer socket held by pid {pid} ({comm})"))
    } else {
        Err(format!("peer socket held by pid {pid} ({comm}), not by {}", server.kind.name()))
    }
}

/// [`probe`] for a plain forwarder: one direct connection to `to` (which forwards to the echo
/// server), whose far end must be held by one of `owners`.
pub fn probe_forwarder(to: SocketAddr, owners: &[i32], echo: &Echo) -> Result<String, String> {
    echo.audit_next(1);
    once(Route::Direct, to)?;
    match echo.audited().first().cloned() {
        Some(Some((pid, comm))) if owners.contains(&pid) => {
            Ok(format!("peer socket held by pid {pid} ({comm})"))
        }
        Some(Some((pid, comm))) => Err(format!("peer socket held by pid {pid} ({comm})")),
        _ => Err("the echo server's peer socket has no owner in /proc".into()),
    }
}
