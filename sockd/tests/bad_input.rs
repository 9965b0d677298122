//! Hostile and broken clients: HTTP sent to the SOCKS port, random garbage, a truncated request,
//! an over-long SOCKS4 USERID, an unknown SOCKS5 address type, unsupported commands, and a
//! client that trickles one byte per second past the handshake deadline. After each, a
//! well-behaved client must still be served by the same daemon.
//!
//! Not here: valid requests split across writes (framing.rs).

mod common;

use common::*;
use std::io::Write;
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n";

/// Send `bytes`, expect no reply bytes and a clean close (EOF) within 5 s, and a `bad request:`
/// line.
fn garbage_is_rejected(sockd: &Sockd, bytes: &[u8], what: &str) {
    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    s.write_all(bytes).expect("write");
    let (data, how) = expect_closed(&mut s, Duration::from_secs(5), what);
    assert!(data.is_empty(), "{what}: nothing may be answered to non-SOCKS input, got {data:02x?}");
    assert_eq!(how, Closed::Eof, "{what}: a clean close (FIN), not a reset");
    sockd.wait_for_line(&["bad request:", &tag, "error="], LOG_TIMEOUT);
}

#[test]
fn http_request_on_socks_port() {
    let echo = echo_server();
    let mut sockd = Sockd::start(RULES);
    garbage_is_rejected(
        &sockd,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n",
        "HTTP GET",
    );
    sockd.assert_alive();
    assert_served(&sockd, &echo);
}

#[test]
fn random_garbage() {
    let echo = echo_server();
    let mut sockd = Sockd::start(RULES);
    let mut junk = pseudo_random(256, 0xbad);
    junk[0] = 0xde; // neither 04 nor 05
    garbage_is_rejected(&sockd, &junk, "random garbage");
    // A valid version byte followed by garbage: SOCKS5 with NMETHODS 0.
    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    s.write_all(&[0x05, 0x00]).expect("write");
    let (data, _) = expect_closed(&mut s, Duration::from_secs(5), "NMETHODS 0");
    assert!(
        data.is_empty() || data == [0x05, 0xff],
        "NMETHODS 0: nothing or 05 FF, got {data:02x?}"
    );
    sockd.wait_for_line(&["client=", &tag], LOG_TIMEOUT);
    // Only GSSAPI and a private method offered: no acceptable method, 05 FF, then close.
    let mut s = connect(sockd.addr());
    s.write_all(&[0x05, 0x02, 0x01, 0x80]).expect("write");
    let (data, _) = expect_closed(&mut s, Duration::from_secs(5), "no acceptable method");
    assert_eq!(data, [0x05, 0xff], "no acceptable method must be answered 05 FF");
    sockd.assert_alive();
    assert_served(&sockd, &echo);
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn truncated_request_then_close() {
    let echo = echo_server();
    let mut sockd = Sockd::start(RULES);
    // SOCKS5: greeting, then half of a request, then FIN.
    let mut s = connect(sockd.addr());
    let tag5 = client_tag(&s);
    socks5_noauth(&mut s);
    let req = socks5_request(CMD_CONNECT, echo.addr);
    s.write_all(&req[..6]).expect("partial request");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let (data, _) = expect_closed(&mut s, Duration::from_secs(5), "truncated SOCKS5 request");
    assert!(data.is_empty(), "no reply to a truncated request, got {data:02x?}");
    // SOCKS4: header without the USERID terminator, then FIN.
    let mut s = connect(sockd.addr());
    let tag4 = client_tag(&s);
    let req = socks4_request(CMD_CONNECT, echo.v4(), b"bob");
    s.write_all(&req[..req.len() - 2]).expect("partial request");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let (data, _) = expect_closed(&mut s, Duration::from_secs(5), "truncated SOCKS4 request");
    assert!(data.is_empty(), "no reply to a truncated request, got {data:02x?}");
    // The contract names no event for this; any line about the client will do.
    for tag in [tag5, tag4] {
        sockd.wait_for_line(&["client=", &tag], LOG_TIMEOUT);
    }
    sockd.assert_alive();
    assert_served(&sockd, &echo);
    assert_eq!(echo.accepted(), 1, "truncated requests never reach the destination");
}

#[test]
fn socks4_overlong_userid_without_nul() {
    let echo = echo_server();
    let mut sockd = Sockd::start(RULES);
    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    let mut req = vec![0x04, 0x01];
    req.extend_from_slice(&echo.port().to_be_bytes());
    req.extend_from_slice(&[0x7f, 0x00, 0x00, 0x01]);
    req.extend_from_slice(&[b'a'; 1000]); // no NUL, connection left open
    s.write_all(&req).expect("write");
    let (data, _) = expect_closed(
        &mut s,
        Duration::from_secs(5),
        "1000-byte USERID without NUL (must be cut off, not read forever)",
    );
    assert!(
        data.is_empty() || (data.len() == 8 && data[0] == 0 && data[1] == 91),
        "either close or reply 91, got {data:02x?}"
    );
    sockd.wait_for_line(&["bad request:", &tag], LOG_TIMEOUT);
    sockd.assert_alive();
    assert_served(&sockd, &echo);
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn socks5_unknown_address_type() {
    let echo = echo_server();
    let mut sockd = Sockd::start(RULES);
    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    socks5_noauth(&mut s);
    // 05 01 00 09 + 4 bytes + port
    s.write_all(&[0x05, 0x01, 0x00, 0x09, 0x7f, 0x00, 0x00, 0x01, 0x00, 0x50]).expect("write");
    let r = read_socks5_reply(&mut s, "reply to ATYP 09");
    assert_eq!(r.rep, 0x08, "ATYP 09 must be answered 08 (address type not supported)");
    expect_closed(&mut s, Duration::from_secs(5), "after REP 08");
    sockd.wait_for_line(&["client=", &tag], LOG_TIMEOUT);
    sockd.assert_alive();
    assert_served(&sockd, &echo);
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn unsupported_commands() {
    let echo = echo_server();
    let mut sockd = Sockd::start(RULES);
    // SOCKS5 CMD 09: command not supported.
    let mut s = connect(sockd.addr());
    socks5_noauth(&mut s);
    let mut req = socks5_request(CMD_CONNECT, echo.addr);
    req[1] = 0x09;
    s.write_all(&req).expect("write");
    let r = read_socks5_reply(&mut s, "reply to CMD 09");
    assert_eq!(r.rep, 0x07, "unknown command must be answered 07");
    expect_closed(&mut s, Duration::from_secs(5), "after REP 07");

    // SOCKS5 UDP ASSOCIATE (client address unknown: all zeros): 07 for now, or a real relay.
    let mut s = connect(sockd.addr());
    socks5_noauth(&mut s);
    let zeros = std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    s.write_all(&socks5_request(CMD_UDP_ASSOCIATE, zeros)).expect("write");
    let r = read_socks5_reply(&mut s, "reply to UDP ASSOCIATE");
    match r.rep {
        0x07 => {
            expect_closed(&mut s, Duration::from_secs(5), "after REP 07");
        }
        0x00 => assert!(
            r.addr.port() != 0 && !r.addr.ip().is_unspecified(),
            "a granted UDP ASSOCIATE must name a reachable relay: {r:?}"
        ),
        other => panic!("UDP ASSOCIATE must be 07 or 00, got {other:02x}"),
    }
    drop(s);

    // SOCKS4 CD 03: not a SOCKS4 command -> 91.
    let mut s = connect(sockd.addr());
    s.write_all(&socks4_request(0x03, echo.v4(), b"bob")).expect("write");
    let (data, _) = expect_closed(&mut s, Duration::from_secs(5), "SOCKS4 CD 03");
    assert!(
        data.is_empty() || (data.len() == 8 && data[..2] == [0, 91]),
        "SOCKS4 CD 03: 91 or close, got {data:02x?}"
    );
    sockd.assert_alive();
    assert_served(&sockd, &echo);
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn connect_refused_is_reported() {
    let echo = echo_server();
    let mut sockd = Sockd::start(RULES);
    let closed_port = free_port();
    let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, closed_port);
    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    socks5_noauth(&mut s);
    s.write_all(&socks5_request(CMD_CONNECT, dst.into())).expect("write");
    let r = read_socks5_reply(&mut s, "CONNECT to a closed port");
    assert_eq!(r.rep, 0x05, "a refused connection is REP 05");
    expect_closed(&mut s, Duration::from_secs(5), "after REP 05");
    let d = format!("dst={dst}");
    sockd.wait_for_line(&["failed:", &tag, "cmd=connect", &d, "error="], LOG_TIMEOUT);

    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    s.write_all(&socks4_request(CMD_CONNECT, dst, b"")).expect("write");
    let r = read_socks4_reply(&mut s, "SOCKS4 CONNECT to a closed port");
    assert_eq!((r.vn, r.cd), (0, 91), "SOCKS4 failure is 91 (never 92/93): {r:?}");
    expect_closed(&mut s, Duration::from_secs(5), "after 91");
    sockd.wait_for_line(&["failed:", &tag, &d], LOG_TIMEOUT);
    sockd.assert_alive();
    assert_served(&sockd, &echo);
}

/// A destination whose accept queue is full: further connects hang (SYNs are dropped), which
/// is the only way to make a connect time out while sending traffic to loopback only.
fn hanging_destination() -> (std::net::TcpListener, Vec<std::net::TcpStream>, SocketAddrV4) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = match l.local_addr().expect("addr") {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
    };
    let mut fill = Vec::new();
    for _ in 0..2000 {
        match std::net::TcpStream::connect_timeout(&addr.into(), Duration::from_millis(300)) {
            Ok(s) => fill.push(s),
            Err(_) => return (l, fill, addr),
        }
    }
    panic!("could not fill the accept queue of {addr} with 2000 connections");
}

#[test]
fn connect_timeout_is_enforced() {
    let echo = echo_server();
    let mut sockd = SockdBuilder::new(RULES).arg("--connect-timeout").arg("1").start();
    let (_listener, _fill, dst) = hanging_destination();
    let d = format!("dst={dst}");

    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    socks5_noauth(&mut s);
    let t0 = Instant::now();
    s.write_all(&socks5_request(CMD_CONNECT, dst.into())).expect("write");
    let r = read_socks5_reply(&mut s, "CONNECT to a destination that never answers");
    let took = t0.elapsed();
    assert_ne!(r.rep, 0, "a connect that never completes cannot succeed: {r:?}");
    assert!(
        took >= Duration::from_millis(700) && took <= Duration::from_secs(4),
        "--connect-timeout 1 must answer after ~1 s, took {took:?}"
    );
    expect_closed(&mut s, Duration::from_secs(5), "after the failure reply");
    sockd.wait_for_line(&["failed:", &tag, "cmd=connect", &d, "error="], LOG_TIMEOUT);

    let mut s = connect(sockd.addr());
    let t0 = Instant::now();
    s.write_all(&socks4_request(CMD_CONNECT, dst, b"")).expect("write");
    let r = read_socks4_reply(&mut s, "SOCKS4 CONNECT that times out");
    assert_eq!((r.vn, r.cd), (0, 91), "{r:?}");
    assert!(t0.elapsed() <= Duration::from_secs(4), "took {:?}", t0.elapsed());
    sockd.assert_alive();
    assert_served(&sockd, &echo);
}

#[test]
fn slow_client_hits_handshake_timeout_while_others_are_served() {
    let echo = echo_server();
    let mut sockd = SockdBuilder::new(RULES).arg("--handshake-timeout").arg("2").start();
    let proxy = sockd.addr();
    let target = echo.addr;
    // One byte per second: 05 01 00 then the request; 13 bytes would need 12 s.
    let slow = thread::spawn(move || {
        let mut s = connect(proxy);
        let tag = client_tag(&s);
        let mut bytes = socks5_greeting(&[0x00]);
        bytes.extend(socks5_request(CMD_CONNECT, target));
        let t0 = Instant::now();
        s.set_read_timeout(Some(Duration::from_millis(1000))).expect("timeout");
        let mut received = Vec::new();
        for b in bytes {
            let _ = s.write_all(&[b]);
            let until = Instant::now() + Duration::from_secs(1);
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(1))));
                let mut buf = [0u8; 64];
                match std::io::Read::read(&mut s, &mut buf) {
                    Ok(0) => return (tag, Some(t0.elapsed()), received),
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return (tag, Some(t0.elapsed()), received),
                }
            }
            if t0.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
        (tag, None, received)
    });
    // A client that connects and says nothing at all is cut off by the same deadline.
    let silent = thread::spawn(move || {
        let mut s = connect(proxy);
        let tag = client_tag(&s);
        let t0 = Instant::now();
        let (data, _) = expect_closed(&mut s, Duration::from_secs(6), "silent client");
        (tag, t0.elapsed(), data)
    });
    // Meanwhile, normal clients are served without waiting for the slow one.
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert_served(&sockd, &echo);
    thread::sleep(Duration::from_millis(700));
    assert_served(&sockd, &echo);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "normal clients were delayed by the slow one ({:?})",
        t.elapsed()
    );
    let (tag, closed_after, received) = slow.join().expect("slow client thread");
    let closed_after = closed_after.unwrap_or_else(|| {
        panic!("the slow client was never disconnected; log:\n{}", sockd.log_text())
    });
    assert!(
        closed_after >= Duration::from_millis(1500) && closed_after <= Duration::from_millis(4000),
        "--handshake-timeout 2 must close the slow client after ~2-3 s, took {closed_after:?}"
    );
    assert!(
        received.is_empty() || received == [0x05, 0x00],
        "at most the method selection may reach the slow client: {received:02x?}"
    );
    sockd.wait_for_line(&["timeout:", &tag], LOG_TIMEOUT);
    assert_eq!(sockd.count_lines(&["connected:", &tag]), 0, "the slow client never got a session");
    let (tag, took, data) = silent.join().expect("silent client thread");
    assert!(data.is_empty(), "nothing may be sent to a silent client: {data:02x?}");
    assert!(
        took >= Duration::from_millis(1500) && took <= Duration::from_millis(4000),
        "--handshake-timeout 2 must close a silent client after ~2 s, took {took:?}"
    );
    sockd.wait_for_line(&["timeout:", &tag], LOG_TIMEOUT);
    sockd.assert_alive();
    assert_eq!(echo.accepted(), 2);
}
