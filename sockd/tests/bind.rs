//! BIND spoken in raw bytes, SOCKS4 and SOCKS5: the first reply names a reachable listening
//! address, an inbound connection from the host named in the request gets a second reply that
//! carries the connecting host's address and port, and bytes then flow both ways. A connection
//! from any other host is refused (SOCKS4 91 / SOCKS5 02) and both sockets are closed. Also:
//! BIND naming a host name (SOCKS4a, SOCKS5 ATYP 03), BIND denied by the rule file, and the bind
//! timeout.
//!
//! Not here: BIND driven by a real program (dante.rs runs ftp in active mode).

mod common;

use common::*;
use std::io::Write;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

const RULES: &str = "# loopback clients may connect and bind anywhere on 127/8\n\
                     permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    Four,
    Five,
}

/// Send a BIND request naming `dst`; return the control stream and the first reply's address
/// (0.0.0.0 in a SOCKS4 reply replaced by the proxy's address, as the protocol says).
fn bind_request(sockd: &Sockd, v: V, dst: SocketAddrV4) -> (TcpStream, SocketAddr) {
    let mut s = connect(sockd.addr());
    // The second reply may take a while; keep reads bounded but generous.
    match v {
        V::Four => {
            s.write_all(&socks4_request(CMD_BIND, dst, b"binder")).expect("request");
            let r = read_socks4_reply(&mut s, "SOCKS4 first BIND reply");
            assert_eq!(
                (r.vn, r.cd),
                (0, 90),
                "first BIND reply must be granted: {r:?}; log:\n{}",
                sockd.log_text()
            );
            assert_ne!(r.addr.port(), 0, "first reply must carry the listening port");
            let ip = if r.addr.ip().is_unspecified() {
                match sockd.addr() {
                    SocketAddr::V4(a) => *a.ip(),
                    SocketAddr::V6(_) => panic!("IPv4 proxy expected"),
                }
            } else {
                *r.addr.ip()
            };
            (s, SocketAddr::from((ip, r.addr.port())))
        }
        V::Five => {
            socks5_noauth(&mut s);
            s.write_all(&socks5_request(CMD_BIND, SocketAddr::V4(dst))).expect("request");
            let r = read_socks5_reply(&mut s, "SOCKS5 first BIND reply");
            assert_eq!(
                r.rep,
                0,
                "first BIND reply must succeed: {r:?}; log:\n{}",
                sockd.log_text()
            );
            assert_eq!(r.atyp, 0x01, "an IPv4 client gets an IPv4 BND.ADDR: {r:?}");
            assert!(
                !r.addr.ip().is_unspecified() && r.addr.port() != 0,
                "SOCKS5 has no 0.0.0.0 rule: BND must be a concrete reachable address: {r:?}"
            );
            (s, r.addr)
        }
    }
}

/// Read the second BIND reply: (granted?, address).
fn second_reply(s: &mut TcpStream, v: V) -> (u8, SocketAddr) {
    match v {
        V::Four => {
            let r = read_socks4_reply(s, "SOCKS4 second BIND reply");
            assert_eq!(r.vn, 0, "reply VN must be 0: {r:?}");
            (r.cd, SocketAddr::V4(r.addr))
        }
        V::Five => {
            let r = read_socks5_reply(s, "SOCKS5 second BIND reply");
            (r.rep, r.addr)
        }
    }
}

fn bind_roundtrip(v: V) {
    let sockd = Sockd::start(RULES);
    let expected_peer = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2121);
    let (mut ctl, listen_at) = bind_request(&sockd, v, expected_peer);
    let tag = client_tag(&ctl);
    sockd.wait_for_line(&["bind:", &tag, "for 127.0.0.1"], LOG_TIMEOUT);
    let line = sockd.wait_for_line(&["bind:", &tag], LOG_TIMEOUT);
    let port = format!(":{} ", listen_at.port());
    assert!(
        line.contains("listening on ") && line.contains(&port),
        "bind: line must say where it listens (port {}): {line}",
        listen_at.port()
    );

    let mut inbound = connect(listen_at);
    let peer = inbound.local_addr().expect("local addr");
    let (code, addr) = second_reply(&mut ctl, v);
    let ok = if v == V::Four { 90 } else { 0 };
    assert_eq!(code, ok, "second BIND reply must be granted; log:\n{}", sockd.log_text());
    assert_eq!(addr, peer, "second BIND reply must carry the connecting host's address and port");

    // Bytes both ways, with sizes that need several segments.
    let to_peer = pseudo_random(70_000, 31);
    let to_client = pseudo_random(90_000, 32);
    ctl.write_all(&to_peer).expect("client -> peer");
    let got = read_n(&mut inbound, to_peer.len(), "peer receives");
    assert!(got == to_peer, "client->peer data differs");
    inbound.write_all(&to_client).expect("peer -> client");
    let got = read_n(&mut ctl, to_client.len(), "client receives");
    assert!(got == to_client, "peer->client data differs");
    // Close from the peer side first, then the client: the session ends and is logged.
    inbound.shutdown(Shutdown::Write).expect("peer shutdown");
    let rest = read_to_eof(&mut ctl, "client sees the peer's EOF");
    assert!(rest.is_empty());
    ctl.shutdown(Shutdown::Write).expect("client shutdown");
    let rest = read_to_eof(&mut inbound, "peer sees the client's EOF");
    assert!(rest.is_empty());

    sockd.wait_for_line(&["connected:", &tag, "cmd=bind"], LOG_TIMEOUT);
    sockd
        .wait_for_line(&["closed:", &tag, "cmd=bind", "sent=70000", "received=90000"], LOG_TIMEOUT);
}

#[test]
fn socks4_bind_roundtrip() {
    bind_roundtrip(V::Four);
}

#[test]
fn socks5_bind_roundtrip() {
    bind_roundtrip(V::Five);
}

/// BIND naming 127.0.0.2, inbound from 127.0.0.1: refused, both sockets closed.
fn bind_wrong_peer(v: V) {
    let sockd = Sockd::start(RULES);
    let expected_peer = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 2121);
    let (mut ctl, listen_at) = bind_request(&sockd, v, expected_peer);
    let tag = client_tag(&ctl);
    sockd.wait_for_line(&["bind:", &tag, "for 127.0.0.2"], LOG_TIMEOUT);
    let mut inbound = connect(listen_at);
    assert_eq!(inbound.local_addr().expect("addr").ip().to_string(), "127.0.0.1");
    let (code, _) = second_reply(&mut ctl, v);
    let refused = if v == V::Four { 91 } else { 0x02 };
    assert_eq!(
        code,
        refused,
        "a connection from an unexpected host must be refused; log:\n{}",
        sockd.log_text()
    );
    expect_closed(&mut ctl, Duration::from_secs(5), "control connection after refusal");
    // The stranger must not get a relay: its socket is closed without data.
    let _ = inbound.write_all(b"hello?");
    let (data, _) = expect_closed(&mut inbound, Duration::from_secs(5), "unexpected peer");
    assert!(data.is_empty(), "the unexpected peer must receive nothing: {data:02x?}");
    sockd.wait_for_line(&["denied:", &tag, "cmd=bind", "unexpected peer IP"], LOG_TIMEOUT);
    assert_eq!(
        sockd.count_lines(&["connected:", &tag]),
        0,
        "no relay may be set up for a wrong peer"
    );
}

#[test]
fn socks4_bind_rejects_unexpected_peer() {
    bind_wrong_peer(V::Four);
}

#[test]
fn socks5_bind_rejects_unexpected_peer() {
    bind_wrong_peer(V::Five);
}

#[test]
fn bind_denied_by_rule() {
    let rules = "deny 127.0.0.0 0.255.255.255 127.0.0.3 0.0.0.0\n\
                 permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n";
    let sockd = Sockd::start(rules);
    let dst = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 2121);

    let mut s = connect(sockd.addr());
    let tag4 = client_tag(&s);
    s.write_all(&socks4_request(CMD_BIND, dst, b"binder")).expect("request");
    let r = read_socks4_reply(&mut s, "SOCKS4 BIND reply");
    assert_eq!((r.vn, r.cd), (0, 91), "BIND to a denied host: {r:?}");
    expect_closed(&mut s, Duration::from_secs(5), "after 91");

    let mut s = connect(sockd.addr());
    let tag5 = client_tag(&s);
    socks5_noauth(&mut s);
    s.write_all(&socks5_request(CMD_BIND, SocketAddr::V4(dst))).expect("request");
    let r = read_socks5_reply(&mut s, "SOCKS5 BIND reply");
    assert_eq!(r.rep, 0x02, "BIND to a denied host: {r:?}");
    expect_closed(&mut s, Duration::from_secs(5), "after 02");

    let rule = sockd.rule_tag(1);
    for tag in [tag4, tag5] {
        sockd.wait_for_line(
            &["denied:", &tag, "cmd=bind", "dst=127.0.0.3:2121", &rule],
            LOG_TIMEOUT,
        );
    }
    assert_eq!(sockd.count_lines(&["bind:"]), 0, "nothing may listen for a denied BIND");
}

#[test]
fn bind_timeout_fails_the_request() {
    let sockd = SockdBuilder::new(RULES).arg("--bind-timeout").arg("1").start();
    for v in [V::Four, V::Five] {
        let (mut ctl, _) = bind_request(&sockd, v, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2121));
        let t0 = Instant::now();
        let (code, _) = second_reply(&mut ctl, v);
        let took = t0.elapsed();
        let ok = if v == V::Four { 90 } else { 0 };
        assert_ne!(code, ok, "{v:?}: a BIND nobody connects to must fail");
        assert!(took < Duration::from_secs(5), "{v:?}: --bind-timeout 1 took {took:?}");
        expect_closed(&mut ctl, Duration::from_secs(5), "after the bind timeout");
    }
}

#[test]
fn socks5_bind_with_host_name() {
    let sockd = Sockd::start(RULES);
    let mut ctl = connect(sockd.addr());
    let tag = client_tag(&ctl);
    socks5_noauth(&mut ctl);
    ctl.write_all(&socks5_request_domain(CMD_BIND, "localhost", 2121)).expect("request");
    let r = read_socks5_reply(&mut ctl, "first BIND reply (DST localhost)");
    assert_eq!(r.rep, 0, "BIND naming localhost: {r:?}; log:\n{}", sockd.log_text());
    let mut inbound = connect(r.addr);
    let peer = inbound.local_addr().expect("addr");
    let r2 = read_socks5_reply(&mut ctl, "second BIND reply");
    assert_eq!(r2.rep, 0, "localhost resolves to the connecting 127.0.0.1: {r2:?}");
    assert_eq!(r2.addr, peer);
    inbound.write_all(b"from the peer").expect("write");
    assert_eq!(read_n(&mut ctl, 13, "peer data"), b"from the peer");
    drop(inbound);
    drop(ctl);
    sockd.wait_for_line(&["connected:", &tag, "cmd=bind", "dst=localhost:2121"], LOG_TIMEOUT);
}

#[test]
fn socks4a_bind_with_host_name() {
    let sockd = Sockd::start(RULES);
    let mut ctl = connect(sockd.addr());
    let tag = client_tag(&ctl);
    ctl.write_all(&socks4a_request(CMD_BIND, "localhost", 2121, b"binder")).expect("request");
    let r = read_socks4_reply(&mut ctl, "first SOCKS4a BIND reply");
    assert_eq!((r.vn, r.cd), (0, 90), "{r:?}; log:\n{}", sockd.log_text());
    let ip = if r.addr.ip().is_unspecified() { Ipv4Addr::LOCALHOST } else { *r.addr.ip() };
    let mut inbound = connect(SocketAddr::from((ip, r.addr.port())));
    let peer = inbound.local_addr().expect("addr");
    let r2 = read_socks4_reply(&mut ctl, "second SOCKS4a BIND reply");
    assert_eq!((r2.vn, r2.cd), (0, 90), "{r2:?}");
    assert_eq!(SocketAddr::V4(r2.addr), peer);
    ctl.write_all(b"to the peer").expect("write");
    assert_eq!(read_n(&mut inbound, 11, "client data"), b"to the peer");
    drop(inbound);
    drop(ctl);
    sockd.wait_for_line(&["connected:", &tag, "cmd=bind", "dst=localhost:2121"], LOG_TIMEOUT);
}
