//! Slowloris (issue 7): with `--handshake-timeout 2`, a crowd of 1,200 clients that each send
//! one byte of a valid SOCKS5 handshake a second (and reconnect as soon as they are cut off, as
//! a real attacker would) must not stop a well-behaved client from being served quickly: its
//! whole CONNECT plus an echo round trip is measured several times during the attack and must
//! take less than 1 s each time. The crowd is cut off by the deadline (`timeout:` lines), and
//! nobody in it ever reaches the destination.
//!
//! Bounded: the attack runs for about 4 s, from one thread, on loopback only. The per-client
//! limit is raised (every client here is 127.0.0.1) so that it is the deadline, not
//! `--max-sessions-per-client`, that is exercised.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0/8 127.0.0.0/8\n";
const CROWD: usize = 1200;
const ATTACK: Duration = Duration::from_secs(4);

/// Make sure this process may hold the crowd's descriptors.
fn raise_nofile(min: libc::rlim_t) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < min {
            lim.rlim_cur = lim.rlim_max.min(min);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
    }
    assert!(
        lim.rlim_cur >= min,
        "RLIMIT_NOFILE is {} (hard {}); the slowloris test needs {min}",
        lim.rlim_cur,
        lim.rlim_max
    );
}

/// One attacker connection: the next byte to send and when it was opened.
struct Slow {
    s: TcpStream,
    next: usize,
    opened: Instant,
}

/// What the crowd saw.
#[derive(Debug, Default)]
struct CrowdReport {
    opened: usize,
    cut_off: usize,
    /// Longest time sockd let one slow connection live (connect to close).
    longest_life: Duration,
    /// Connections still open at the end although opened more than 3.5 s before.
    overdue_at_end: usize,
    /// Handshake replies seen beyond the method selection (there must be none).
    unexpected_bytes: usize,
}

fn open_slow(proxy: SocketAddr) -> Option<Slow> {
    let s = TcpStream::connect_timeout(&proxy, Duration::from_secs(2)).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(Slow { s, next: 0, opened: Instant::now() })
}

/// Holds `CROWD` connections for `ATTACK`, sending one handshake byte per connection per
/// second, reconnecting those sockd closes.
fn crowd(proxy: SocketAddr, target: SocketAddr, ready: Arc<AtomicBool>) -> CrowdReport {
    let mut wire = socks5_greeting(&[0x00]);
    wire.extend(socks5_request(CMD_CONNECT, target));
    let mut report = CrowdReport::default();
    let mut conns: Vec<Slow> = Vec::with_capacity(CROWD);
    while conns.len() < CROWD {
        if let Some(c) = open_slow(proxy) {
            conns.push(c);
            report.opened += 1;
        }
    }
    ready.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let mut next_tick = start;
    let mut buf = [0u8; 64];
    while start.elapsed() < ATTACK {
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            for c in conns.iter_mut() {
                let b = wire[c.next % wire.len()];
                if c.s.write(&[b]).is_ok() {
                    c.next += 1;
                }
            }
        }
        // Reap what sockd closed and replace it.
        for c in conns.iter_mut() {
            let closed = loop {
                match c.s.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(n) => {
                        // Only the method selection (05 00) may ever come back.
                        if !(n == 2 && buf[..2] == [0x05, 0x00]) {
                            report.unexpected_bytes += n;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break true,
                }
            };
            if closed {
                report.cut_off += 1;
                report.longest_life = report.longest_life.max(c.opened.elapsed());
                if let Some(fresh) = open_slow(proxy) {
                    report.opened += 1;
                    *c = fresh;
                }
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    report.overdue_at_end =
        conns.iter().filter(|c| c.opened.elapsed() > Duration::from_millis(3500)).count();
    for c in &conns {
        let _ = c.s.shutdown(Shutdown::Both);
    }
    report
}

#[test]
fn slowloris_crowd_does_not_delay_a_well_behaved_client() {
    raise_nofile((2 * CROWD + 1024) as libc::rlim_t);
    let echo = echo_server();
    let mut sockd = SockdBuilder::new(RULES)
        .arg("--handshake-timeout")
        .arg("2")
        .arg("--max-sessions-per-client")
        .arg("100000")
        .start();
    let proxy = sockd.addr();
    let target = echo.addr;
    let ready = Arc::new(AtomicBool::new(false));
    let attacker = {
        let ready = ready.clone();
        thread::spawn(move || crowd(proxy, target, ready))
    };
    let t0 = Instant::now();
    while !ready.load(Ordering::SeqCst) {
        assert!(t0.elapsed() < Duration::from_secs(20), "could not open {CROWD} connections");
        thread::sleep(Duration::from_millis(10));
    }
    // Measure a well-behaved client every 400 ms while the crowd is there, including around
    // the 2 s mark when the whole first crowd is cut off and reconnects at once.
    let attack_start = Instant::now();
    let mut latencies = Vec::new();
    thread::sleep(Duration::from_millis(300));
    while attack_start.elapsed() < ATTACK - Duration::from_millis(300) {
        let t = Instant::now();
        let mut s = socks5_connect(proxy, target);
        assert_echo(&mut s, &pseudo_random(1000, latencies.len() as u64));
        latencies.push(t.elapsed());
        drop(s);
        thread::sleep(Duration::from_millis(400));
    }
    let report = attacker.join().expect("attacker thread");
    eprintln!("crowd: {report:?}; well-behaved client latencies: {latencies:?}");
    let worst = latencies.iter().max().copied().unwrap_or_default();
    assert!(latencies.len() >= 5, "too few measurements: {latencies:?}");
    assert!(
        worst < Duration::from_secs(1),
        "a well-behaved client took {worst:?} to be served during the attack \
         (all: {latencies:?}); crowd: {report:?}"
    );
    // The crowd was really there and was cut off by the deadline.
    assert!(report.opened >= CROWD, "{report:?}");
    assert!(
        report.cut_off >= CROWD,
        "the first {CROWD} slow clients must all be cut off within 4 s: {report:?}"
    );
    assert!(
        report.longest_life < Duration::from_millis(3900),
        "--handshake-timeout 2 let a slow client live {:?}",
        report.longest_life
    );
    assert_eq!(report.overdue_at_end, 0, "slow clients outlived the deadline: {report:?}");
    assert_eq!(report.unexpected_bytes, 0, "a slow client got more than 05 00: {report:?}");
    let timeouts = sockd.count_lines(&["timeout:", "did not complete the handshake within 2s"]);
    assert!(timeouts >= CROWD, "expected >= {CROWD} `timeout:` lines, got {timeouts}");
    assert_eq!(
        echo.accepted(),
        latencies.len(),
        "only the well-behaved clients may reach the destination"
    );
    sockd.assert_alive();
    assert_served(&sockd, &echo);
}
