//! Unfinished handshakes have their own budget (issue 11, item 5): connections that have not
//! completed their handshake never take the places `--max-sessions` and
//! `--max-sessions-per-client` keep for established sessions, and `--max-handshakes` bounds
//! them. When that budget is full, a new connection closes the oldest unfinished handshake of
//! the client address holding the most of them, so a crowd of silent connections cannot keep a
//! client that completes its handshake out: it would have to open a whole budget's worth of new
//! connections within that client's round trip.
//!
//! Clients "from other hosts" are loopback connections bound to 127.0.0.2, 127.0.0.3…
//! Not here: the session limits themselves (limits.rs), the handshake deadline under a
//! slowloris crowd (slowloris.rs).

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0/8 127.0.0.0/8\n";

/// `n` connections from `src` that send nothing.
fn silent_from(src: Ipv4Addr, proxy: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n).map(|_| connect_from(src, proxy)).collect()
}

/// Whether sockd has closed `s` (EOF or reset), looking for at most `wait`.
fn is_closed(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("read timeout");
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("a silent connection got {n} bytes: {:02x?}", &buf[..n]),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(_) => true,
    }
}

/// A full SOCKS5 CONNECT from `src` plus an echo round trip; `Err` says what went wrong
/// (instead of panicking) so the test can attach the log.
fn try_session_from(
    src: Ipv4Addr,
    proxy: SocketAddr,
    dst: SocketAddr,
) -> Result<TcpStream, String> {
    let mut s = try_connect_from(src, proxy).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(&socks5_greeting(&[0x00])).map_err(|e| format!("greeting: {e}"))?;
    let mut selection = [0u8; 2];
    s.read_exact(&mut selection).map_err(|e| format!("no method selection: {e}"))?;
    if selection != [0x05, 0x00] {
        return Err(format!("method selection {selection:02x?}"));
    }
    s.write_all(&socks5_request(CMD_CONNECT, dst)).map_err(|e| format!("request: {e}"))?;
    let mut head = [0u8; 10];
    s.read_exact(&mut head).map_err(|e| format!("no CONNECT reply: {e}"))?;
    if head[1] != 0 {
        return Err(format!("CONNECT refused: {head:02x?}"));
    }
    s.write_all(b"ping").map_err(|e| format!("echo write: {e}"))?;
    let mut back = [0u8; 4];
    s.read_exact(&mut back).map_err(|e| format!("echo read: {e}"))?;
    if &back != b"ping" {
        return Err(format!("echo gave {back:02x?}"));
    }
    Ok(s)
}

#[test]
fn silent_connections_do_not_lock_out_a_client_that_completes_its_handshake() {
    // The setup: four addresses hold ten silent connections each, as many as
    // --max-sessions, each address at its --max-sessions-per-client.
    let echo = echo_server();
    let mut sockd = SockdBuilder::new(RULES)
        .arg("--max-sessions")
        .arg("40")
        .arg("--max-sessions-per-client")
        .arg("10")
        .start();
    let proxy = sockd.addr();
    let mut crowd = Vec::new();
    for host in 2..=5u8 {
        crowd.extend(silent_from(Ipv4Addr::new(127, 0, 0, host), proxy, 10));
    }
    thread::sleep(Duration::from_millis(300));

    // A client from a fifth address that completes its handshake is served at once, twice.
    for round in 0..2 {
        let t = Instant::now();
        let served = try_session_from(Ipv4Addr::new(127, 0, 0, 6), proxy, echo.addr);
        if let Err(why) = served {
            panic!(
                "round {round}: a client completing its handshake was not served while 40 \
                 silent connections wait for their deadline: {why}; log:\n{}",
                sockd.log_text()
            );
        }
        assert!(t.elapsed() < Duration::from_secs(2), "served, but only after {:?}", t.elapsed());
    }
    assert_eq!(echo.accepted(), 2, "only the well-behaved client reaches the destination");
    // The silent connections never cost a session: sockd still serves the crowd's addresses
    // too once they complete a handshake.
    let s = try_session_from(Ipv4Addr::new(127, 0, 0, 2), proxy, echo.addr);
    assert!(s.is_ok(), "a crowd address completing a handshake: {s:?}; log:\n{}", sockd.log_text());
    sockd.assert_alive();
    drop(crowd);
}

#[test]
fn a_full_handshake_budget_closes_the_heaviest_addresss_oldest_handshake() {
    // "Oldest" is in the order sockd accepted the connections. With one serving thread that
    // is the order they were made in; with several, each thread's listener has its own queue
    // and two connections made microseconds apart may be accepted the other way round (the
    // next test covers several threads sharing one budget).
    let echo = echo_server();
    let mut sockd = SockdBuilder::new(RULES)
        .arg("--max-handshakes")
        .arg("10")
        .arg("--threads")
        .arg("1")
        .start();
    let proxy = sockd.addr();
    let host_a = Ipv4Addr::new(127, 0, 0, 2);
    let host_b = Ipv4Addr::new(127, 0, 0, 3);

    // A fills the budget with silent connections.
    let mut first = silent_from(host_a, proxy, 10);
    thread::sleep(Duration::from_millis(200));
    assert!(first.iter_mut().all(|s| !is_closed(s, Duration::from_millis(20))), "within budget");

    // B starts a handshake (greeting only, then it is slow): its arrival closes A's oldest.
    let mut b = connect_from(host_b, proxy);
    b.write_all(&socks5_greeting(&[0x00])).expect("greeting");
    assert_eq!(read_n(&mut b, 2, "B's method selection"), [0x05, 0x00]);
    assert!(is_closed(&mut first[0], Duration::from_secs(2)), "A's oldest closed for B");
    assert!(!is_closed(&mut first[1], Duration::from_millis(50)), "only one of A's closed");

    // A opens ten more: each closes one of A's own, never B's unfinished handshake.
    let mut second = silent_from(host_a, proxy, 10);
    // The closings happen as the connections arrive; allow a loaded machine a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    let closed = loop {
        thread::sleep(Duration::from_millis(100));
        let count = |v: &mut Vec<TcpStream>| {
            v.iter_mut()
                .filter_map(|s| is_closed(s, Duration::from_millis(20)).then_some(()))
                .count()
        };
        let closed = (count(&mut first), count(&mut second));
        if closed == (10, 1) || Instant::now() > deadline {
            break closed;
        }
    };
    assert_eq!(
        closed,
        (10, 1),
        "A's 11 oldest are closed, its 9 newest stay; log:\n{}",
        sockd.log_text()
    );
    b.write_all(&socks5_request(CMD_CONNECT, echo.addr)).expect("request");
    let r = read_socks5_reply(&mut b, "B's CONNECT reply");
    assert_eq!(r.rep, 0, "B completes its handshake and is served: {r:?}");
    assert_echo(&mut b, b"B is served");

    // Each closing is logged, naming the option.
    let evicted = sockd.count_lines(&["evicted:", " client=127.0.0.2:", "(--max-handshakes 10)"]);
    assert_eq!(evicted, 11, "one `evicted:` line per closed handshake; log:\n{}", sockd.log_text());
    assert_eq!(sockd.count_lines(&["evicted:", " client=127.0.0.3:"]), 0);
    sockd.assert_alive();
    drop(second);
}

#[test]
fn serving_threads_share_one_handshake_budget() {
    // Two threads, each with its own listener: the budget is still sockd's, not a thread's.
    let echo = echo_server();
    let mut sockd = SockdBuilder::new(RULES)
        .arg("--max-handshakes")
        .arg("10")
        .arg("--threads")
        .arg("2")
        .start();
    let proxy = sockd.addr();
    let mut crowd = silent_from(Ipv4Addr::new(127, 0, 0, 2), proxy, 10);
    thread::sleep(Duration::from_millis(200));
    assert!(crowd.iter_mut().all(|s| !is_closed(s, Duration::from_millis(20))), "within budget");

    // The eleventh handshake, whichever thread accepts it, closes exactly one of the ten.
    let served = try_session_from(Ipv4Addr::new(127, 0, 0, 3), proxy, echo.addr);
    assert!(served.is_ok(), "B is served: {served:?}; log:\n{}", sockd.log_text());
    let count = |v: &mut Vec<TcpStream>| {
        v.iter_mut().filter_map(|s| is_closed(s, Duration::from_millis(20)).then_some(())).count()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while count(&mut crowd) == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    // A second closing, were there one, would have come with the first.
    thread::sleep(Duration::from_millis(200));
    let closed = count(&mut crowd);
    assert_eq!(closed, 1, "one of A's ten closed for B; log:\n{}", sockd.log_text());
    assert_eq!(sockd.count_lines(&["evicted:", " client=127.0.0.2:", "(--max-handshakes 10)"]), 1);
    sockd.assert_alive();
}
