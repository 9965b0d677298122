//! Security promises (issue 7):
//!
//! - The rule check happens before any outbound connection: a denied destination's listener
//!   never accepts a connection, not even briefly, whatever the protocol (SOCKS4, 4a, 5 by
//!   address and by name, with pipelined data), and with an empty rule file nothing is
//!   reachable at all (never an open proxy).
//! - BIND accepts only the named host, exactly once: a BIND naming no host (0.0.0.0) is refused
//!   without listening; after a connection from a stranger is refused the port is closed, so
//!   not even the named host can use it any more; after the named host connected, a second
//!   connection to the port is refused.
//!
//! Not here: the basic BIND wrong-peer refusal (bind.rs), passwords in logs (users.rs).

mod common;

use common::*;
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::thread;
use std::time::Duration;

/// A listener that only counts connections (and never sends anything).
fn counting_listener() -> TestServer {
    TestServer::spawn("127.0.0.1:0", drop)
}

/// Every way to ask for `target`; returns the client tags, each refused.
fn ask_every_way(sockd: &Sockd, target: &TestServer) -> Vec<String> {
    let mut tags = Vec::new();
    let port = target.port();

    // SOCKS5 by address, with early data in the same write (pipelined).
    let mut s = connect(sockd.addr());
    tags.push(client_tag(&s));
    let mut wire = socks5_greeting(&[0x00]);
    wire.extend(socks5_request(CMD_CONNECT, target.addr));
    wire.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
    s.write_all(&wire).expect("pipelined request");
    assert_eq!(read_n(&mut s, 2, "method selection"), [0x05, 0x00]);
    assert_eq!(read_socks5_reply(&mut s, "denied CONNECT").rep, 0x02);
    expect_closed(&mut s, Duration::from_secs(5), "after 02");

    // SOCKS5 by name.
    let mut s = connect(sockd.addr());
    tags.push(client_tag(&s));
    socks5_noauth(&mut s);
    s.write_all(&socks5_request_domain(CMD_CONNECT, "localhost", port)).expect("request");
    assert_eq!(read_socks5_reply(&mut s, "denied CONNECT by name").rep, 0x02);

    // SOCKS4.
    let mut s = connect(sockd.addr());
    tags.push(client_tag(&s));
    s.write_all(&socks4_request(CMD_CONNECT, target.v4(), b"u")).expect("request");
    let r = read_socks4_reply(&mut s, "denied SOCKS4 CONNECT");
    assert_eq!((r.vn, r.cd), (0, 91));

    // SOCKS4a by name.
    let mut s = connect(sockd.addr());
    tags.push(client_tag(&s));
    s.write_all(&socks4a_request(CMD_CONNECT, "localhost", port, b"u")).expect("request");
    let r = read_socks4_reply(&mut s, "denied SOCKS4a CONNECT");
    assert_eq!((r.vn, r.cd), (0, 91));
    tags
}

#[test]
fn a_denied_destination_never_sees_a_connection() {
    let target = counting_listener();
    let allowed = echo_server();
    let rules = format!(
        "deny 127.0.0.0/8 127.0.0.1/32 eq {}\npermit 127.0.0.0/8 127.0.0.0/8\n",
        target.port()
    );
    let sockd = Sockd::start(&rules);
    let tags = ask_every_way(&sockd, &target);
    for tag in &tags {
        sockd.wait_for_line(&["denied:", tag, &sockd.rule_tag(1)], LOG_TIMEOUT);
    }
    // Give a stray connect every chance to show up.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(target.accepted(), 0, "a denied destination was contacted: {:?}", target.peers());
    // The rules do let other destinations through (the denial was the rule, not a failure).
    assert_served(&sockd, &allowed);
}

#[test]
fn an_empty_rule_file_reaches_nothing() {
    let target = counting_listener();
    let sockd = Sockd::start("# no rules: default deny\n");
    let tags = ask_every_way(&sockd, &target);
    for tag in &tags {
        sockd.wait_for_line(&["denied:", tag, "rule=default"], LOG_TIMEOUT);
    }
    thread::sleep(Duration::from_millis(500));
    assert_eq!(target.accepted(), 0, "default deny must never connect: {:?}", target.peers());
    sockd.wait_for_line(&["no rules, so every request will be denied"], LOG_TIMEOUT);
}

const BIND_RULES: &str = "permit 127.0.0.0/8 127.0.0.0/8\npermit 127.0.0.0/8 0.0.0.0/0\n";

/// SOCKS5 BIND naming `dst`: the control stream and the first reply.
fn socks5_bind(sockd: &Sockd, dst: SocketAddrV4) -> (TcpStream, Socks5Reply) {
    let mut s = connect(sockd.addr());
    socks5_noauth(&mut s);
    s.write_all(&socks5_request(CMD_BIND, SocketAddr::V4(dst))).expect("request");
    let r = read_socks5_reply(&mut s, "first BIND reply");
    (s, r)
}

#[test]
fn bind_naming_no_host_is_refused_without_listening() {
    let sockd = Sockd::start(BIND_RULES);
    let nobody = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 2121);
    let (mut s, r) = socks5_bind(&sockd, nobody);
    let tag5 = client_tag(&s);
    assert_eq!(r.rep, 0x02, "BIND naming 0.0.0.0 must be refused: {r:?}");
    expect_closed(&mut s, Duration::from_secs(5), "after the refusal");

    let mut s = connect(sockd.addr());
    let tag4 = client_tag(&s);
    s.write_all(&socks4_request(CMD_BIND, nobody, b"u")).expect("request");
    let r = read_socks4_reply(&mut s, "SOCKS4 BIND naming 0.0.0.0");
    assert_eq!((r.vn, r.cd), (0, 91), "{r:?}");
    for tag in [tag5, tag4] {
        sockd.wait_for_line(&["denied:", &tag, "cmd=bind"], LOG_TIMEOUT);
    }
    assert_eq!(sockd.count_lines(&["bind:"]), 0, "nothing may listen for a BIND naming no host");
}

/// Whether a connection from `src` to `addr` is refused (no listener).
fn refused_from(src: Ipv4Addr, addr: SocketAddr) -> bool {
    match try_connect_from(src, addr) {
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

#[test]
fn bind_port_closes_after_a_stranger_is_refused() {
    let sockd = Sockd::start(BIND_RULES);
    let named = Ipv4Addr::new(127, 0, 0, 2);
    let (mut ctl, r) = socks5_bind(&sockd, SocketAddrV4::new(named, 20));
    let tag = client_tag(&ctl);
    assert_eq!(r.rep, 0, "{r:?}; log:\n{}", sockd.log_text());
    // A stranger (127.0.0.3) gets there first: refused, and the BIND is over.
    let _stranger = connect_from(Ipv4Addr::new(127, 0, 0, 3), r.addr);
    let r2 = read_socks5_reply(&mut ctl, "second reply after a stranger connected");
    assert_eq!(r2.rep, 0x02, "{r2:?}");
    expect_closed(&mut ctl, Duration::from_secs(5), "control after the refusal");
    // The port is closed: the named host cannot slip in afterwards.
    assert!(refused_from(named, r.addr), "the BIND port must be closed after the refusal");
    sockd.wait_for_line(&["denied:", &tag, "unexpected peer IP 127.0.0.3"], LOG_TIMEOUT);
}

#[test]
fn bind_accepts_exactly_one_connection_from_the_named_host() {
    let sockd = Sockd::start(BIND_RULES);
    let named = Ipv4Addr::new(127, 0, 0, 2);
    let (mut ctl, r) = socks5_bind(&sockd, SocketAddrV4::new(named, 20));
    assert_eq!(r.rep, 0, "{r:?}");
    let mut inbound = connect_from(named, r.addr);
    let r2 = read_socks5_reply(&mut ctl, "second reply");
    assert_eq!(r2.rep, 0, "{r2:?}");
    assert_eq!(r2.addr, inbound.local_addr().expect("addr"));
    // A second connection to the same port, even from the named host, finds no listener.
    assert!(refused_from(named, r.addr), "a BIND must accept exactly one connection");
    inbound.write_all(b"data from the named host").expect("write");
    assert_eq!(read_n(&mut ctl, 24, "relayed"), b"data from the named host");
}
