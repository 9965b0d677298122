//! Session limits (issue 7): `--max-sessions` and `--max-sessions-per-client`. A client over a
//! limit is closed at the door (no byte sent to it, its destination never contacted), a
//! `resource limit:` line is logged at most once a second with how many were refused, other
//! client addresses are not affected by one address's limit, and places free up again as
//! sessions end.
//!
//! Clients "from other hosts" are loopback connections bound to 127.0.0.2, 127.0.0.3…
//! Not here: the handshake deadline under a slowloris crowd (slowloris.rs), descriptor
//! exhaustion (exhaustion.rs).

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0/8 127.0.0.0/8\n";

const HOST_A: Ipv4Addr = Ipv4Addr::LOCALHOST;
const HOST_B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const HOST_C: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// A relaying SOCKS5 session to `dst` from client address `src`.
fn session_from(src: Ipv4Addr, proxy: SocketAddr, dst: SocketAddr) -> TcpStream {
    let mut s = connect_from(src, proxy);
    socks5_noauth(&mut s);
    s.write_all(&socks5_request(CMD_CONNECT, dst)).expect("request");
    let r = read_socks5_reply(&mut s, "CONNECT reply");
    assert_eq!(r.rep, 0, "CONNECT from {src} must succeed: {r:?}");
    s
}

/// Whether a client from `src` is admitted: it gets the method selection (admitted) or is
/// closed without a single byte (refused at the door). Anything else fails the test.
fn admitted(src: Ipv4Addr, proxy: SocketAddr) -> (bool, TcpStream) {
    let mut s = connect_from(src, proxy);
    // The greeting may hit a socket sockd has already closed: a reset then, which is fine.
    let _ = s.write_all(&socks5_greeting(&[0x00]));
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.len() >= 2 {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("a client from {src} was neither served nor closed within 5 s")
            }
            Err(_) => break, // reset: closed at the door
        }
    }
    match got.as_slice() {
        [] => (false, s),
        [0x05, 0x00] => (true, s),
        other => panic!("unexpected bytes for a client from {src}: {other:02x?}"),
    }
}

/// Asserts that a client from `src` is closed at the door, without any byte.
fn assert_refused(sockd: &Sockd, src: Ipv4Addr) {
    let (ok, _s) = admitted(src, sockd.addr());
    assert!(
        !ok,
        "a client from {src} over the limit must be closed at once; log:\n{}",
        sockd.log_text()
    );
}

/// Waits (up to 3 s) until a client from `src` is admitted again; returns it, past the
/// method selection.
fn admitted_again(sockd: &Sockd, src: Ipv4Addr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (ok, s) = admitted(src, sockd.addr());
        if ok {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "a client from {src} is still refused 3 s after a session ended; log:\n{}",
            sockd.log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Ends a relaying session from the client side and waits for its `closed:` line.
fn end_session(sockd: &Sockd, mut s: TcpStream) {
    let tag = client_tag(&s);
    s.shutdown(Shutdown::Write).expect("shutdown");
    let _ = read_to_eof(&mut s, "echo EOF");
    drop(s);
    sockd.wait_for_line(&["closed:", &tag], LOG_TIMEOUT);
}

#[test]
fn per_client_and_total_limits_refuse_at_the_door_and_recover() {
    let echo = echo_server();
    let mut sockd = SockdBuilder::new(RULES)
        .arg("--max-sessions")
        .arg("3")
        .arg("--max-sessions-per-client")
        .arg("2")
        .start();
    let proxy = sockd.addr();

    // Two sessions from A: its limit.
    let mut a1 = session_from(HOST_A, proxy, echo.addr);
    let mut a2 = session_from(HOST_A, proxy, echo.addr);
    assert_echo(&mut a1, b"a1");
    assert_echo(&mut a2, b"a2");
    let accepted_before = echo.accepted();

    // A third from A is closed at the door, and it is logged.
    assert_refused(&sockd, HOST_A);
    let line = sockd.wait_for_line(
        &["resource limit:", "sessions (--max-sessions-per-client)", "refused 1 new clients"],
        LOG_TIMEOUT,
    );
    assert!(line.contains("2 sessions"), "the line names the limit: {line}");

    // Another host is not affected by A's limit: B gets the third place.
    let mut b1 = session_from(HOST_B, proxy, echo.addr);
    assert_echo(&mut b1, b"b1");

    // Now 3 sessions in all: C is refused by the total limit. The log line is at most once a
    // second, so wait past the second of the previous one.
    thread::sleep(Duration::from_millis(1100));
    assert_refused(&sockd, HOST_C);
    sockd.wait_for_line(&["resource limit:", "3 sessions running (--max-sessions)"], LOG_TIMEOUT);
    assert_eq!(
        echo.accepted(),
        accepted_before + 1,
        "refused clients must never reach a destination (only B's session did)"
    );

    // The sessions that were running are untouched by the refusals.
    assert_echo(&mut a1, b"still a1");
    assert_echo(&mut b1, b"still b1");

    // A session of A ends: A may have a new one (the per-client place came back).
    end_session(&sockd, a1);
    let mut a3 = admitted_again(&sockd, HOST_A);
    a3.write_all(&socks5_request(CMD_CONNECT, echo.addr)).expect("request");
    assert_eq!(read_socks5_reply(&mut a3, "CONNECT reply").rep, 0);
    assert_echo(&mut a3, b"a3");

    // B's session ends: C gets the freed place (the total place came back).
    end_session(&sockd, b1);
    let mut c1 = admitted_again(&sockd, HOST_C);
    c1.write_all(&socks5_request(CMD_CONNECT, echo.addr)).expect("request");
    assert_eq!(read_socks5_reply(&mut c1, "CONNECT reply").rep, 0);
    assert_echo(&mut c1, b"c1");

    for s in [a2, a3, c1] {
        end_session(&sockd, s);
    }
    sockd.assert_alive();
    // With everything closed, a normal client is served as usual.
    assert_served(&sockd, &echo);
}

#[test]
fn refusals_are_logged_at_most_once_a_second() {
    let echo = echo_server();
    let sockd = SockdBuilder::new(RULES).arg("--max-sessions").arg("1").start();
    let proxy = sockd.addr();
    let mut held = session_from(HOST_A, proxy, echo.addr);

    // 40 refused clients over about 2.4 s.
    let t0 = Instant::now();
    let mut refused = 0u64;
    for i in 0..40u8 {
        let src = Ipv4Addr::new(127, 0, 1, i + 1);
        let (ok, _s) = admitted(src, proxy);
        assert!(!ok, "client {i} must be refused while the one place is taken");
        refused += 1;
        thread::sleep(Duration::from_millis(60));
    }
    let elapsed = t0.elapsed();
    // Let the last refusal's line (if any) be written.
    thread::sleep(Duration::from_millis(200));
    let lines: Vec<String> =
        sockd.logs().into_iter().filter(|l| l.contains("resource limit:")).collect();
    let seconds_spanned = elapsed.as_secs() + 2;
    assert!(
        !lines.is_empty() && lines.len() as u64 <= seconds_spanned,
        "{refused} refusals in {elapsed:?} must give 1..={seconds_spanned} `resource limit:` \
         lines, got {}:\n{}",
        lines.len(),
        lines.join("\n")
    );
    // Each line says how many were refused since the previous one; together they account for
    // the refusals (the ones after the last line wait for the next line).
    let counted: u64 = lines
        .iter()
        .map(|l| {
            let rest = &l[l.find("refused ").expect("`refused N` in the line") + 8..];
            rest.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).expect("N")
        })
        .sum();
    assert!(
        counted >= lines.len() as u64 && counted <= refused,
        "the lines count {counted} refusals of {refused}:\n{}",
        lines.join("\n")
    );
    assert!(counted > lines.len() as u64, "refusals must be aggregated:\n{}", lines.join("\n"));
    assert_echo(&mut held, b"the admitted session keeps working");
    assert_eq!(echo.accepted(), 1, "refused clients never reach the destination");
}
