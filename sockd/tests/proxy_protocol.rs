//! `--accept-proxy-protocol`: sockd behind a balancer that sends a PROXY protocol header, spoken
//! to by a raw TCP client playing the balancer. Headers v1 and v2 cut at every byte, garbage, a
//! truncated or missing header, a header from an unlisted source, LOCAL health checks, rules and
//! per-client limits and the failed-login count decided on the carried address, the log naming
//! both, inetd and socket-activated modes, and `--udp-advertise` with the UDP client lock on
//! the carried address.
//!
//! Listed source: 127.0.0.1 (the default client address); unlisted: 127.0.0.2. Carried client
//! addresses are from 198.51.100.0/24 (TEST-NET-2), or loopback ones when datagrams must really
//! come from them. Not here: real HAProxy (tests/tests/balancer.rs), the parser's unit tests
//! (proto/src/proxy_protocol.rs).

mod common;

use common::*;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v1 header for an IPv4 client.
fn v1(client: SocketAddr, frontend: SocketAddr) -> Vec<u8> {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        frontend.ip(),
        client.port(),
        frontend.port()
    )
    .into_bytes()
}

/// A v2 PROXY header for an IPv4 client, with `tlvs` after the addresses.
fn v2(client: SocketAddr, frontend: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(c), SocketAddr::V4(f)) = (client, frontend) else { panic!("IPv4 only") };
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x21, 0x11]);
    out.extend_from_slice(&u16::try_from(12 + tlvs.len()).expect("short").to_be_bytes());
    out.extend_from_slice(&c.ip().octets());
    out.extend_from_slice(&f.ip().octets());
    out.extend_from_slice(&c.port().to_be_bytes());
    out.extend_from_slice(&f.port().to_be_bytes());
    out.extend_from_slice(tlvs);
    out
}

/// A v2 LOCAL header (what HAProxy's health check sends).
fn v2_local() -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out
}

fn sa(text: &str) -> SocketAddr {
    text.parse().expect("literal")
}

const FRONTEND: &str = "203.0.113.1:1080";

/// Rules: the carried clients of 198.51.100.0/24 and loopback clients may reach loopback.
fn rules(extra_first: &str) -> String {
    format!("{extra_first}permit 198.51.100.0/24 127.0.0.0/8\npermit 127.0.0.0/8 127.0.0.0/8\n")
}

fn balanced(rules: &str, extra: &[&str]) -> Sockd {
    let mut builder = SockdBuilder::new(rules).arg("--accept-proxy-protocol").arg("127.0.0.1/32");
    for arg in extra {
        builder = builder.arg(*arg);
    }
    builder.start()
}

/// Sends `header` cut at `cut` (two segments, a pause between), then a SOCKS5 greeting and a
/// CONNECT to `dst`; returns the reply code and the connection.
fn connect_through(sockd: &Sockd, header: &[u8], cut: usize, dst: SocketAddr) -> (u8, TcpStream) {
    let mut s = connect(sockd.addr());
    s.write_all(&header[..cut]).expect("first part of the header");
    if cut < header.len() {
        thread::sleep(Duration::from_millis(3));
    }
    let mut rest = header[cut..].to_vec();
    // The greeting follows the header at once, as it does behind a balancer: none of it may be
    // taken for the header.
    rest.extend_from_slice(&[0x05, 0x01, 0x00]);
    s.write_all(&rest).expect("rest of the header and the greeting");
    assert_eq!(read_n(&mut s, 2, "method selection"), [0x05, 0x00], "{}", sockd.log_text());
    s.write_all(&socks5_request(CMD_CONNECT, dst)).expect("request");
    let reply = read_socks5_reply(&mut s, "CONNECT reply");
    (reply.rep, s)
}

#[test]
fn v1_and_v2_headers_cut_anywhere_carry_the_client() {
    let echo = echo_server();
    let sockd = balanced(&rules(""), &[]);
    let dst = sa(&format!("127.0.0.1:{}", echo.port()));
    let tlvs = [0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x02, 0, 0];
    let headers = [
        ("v1", v1(sa("198.51.100.7:40001"), sa(FRONTEND))),
        ("v2", v2(sa("198.51.100.7:40002"), sa(FRONTEND), &[])),
        ("v2 with TLVs", v2(sa("198.51.100.7:40003"), sa(FRONTEND), &tlvs)),
    ];
    let mut sessions = 0;
    for (name, header) in &headers {
        for cut in 0..=header.len() {
            let (rep, mut s) = connect_through(&sockd, header, cut, dst);
            assert_eq!(
                rep,
                0,
                "{name} cut at {cut}: CONNECT must be granted\n{}",
                sockd.log_text()
            );
            assert_echo(&mut s, format!("{name} {cut}").as_bytes());
            sessions += 1;
        }
    }
    for port in [40001, 40002, 40003] {
        let line = sockd.wait_for_line(
            &["connected:", &format!("client=198.51.100.7:{port} balancer=127.0.0.1:")],
            LOG_TIMEOUT,
        );
        assert!(line.contains(&format!("dst=127.0.0.1:{}", echo.port())), "{line}");
    }
    assert_eq!(
        sockd.count_lines(&["connected: client=198.51.100.7:", " balancer=127.0.0.1:"]),
        sessions,
        "every session is logged under the carried client"
    );
    assert_eq!(sockd.count_lines(&["bad request"]), 0, "{}", sockd.log_text());
}

#[test]
fn an_ipv6_client_carried_over_ipv4() {
    let echo = echo_server();
    let sockd = balanced(&rules("permit 2001:db8::/32 127.0.0.0/8\n"), &[]);
    let dst = sa(&format!("127.0.0.1:{}", echo.port()));
    let header = v1(sa("[2001:db8::7]:40010"), sa("[2001:db8::1]:1080"));
    let (rep, mut s) = connect_through(&sockd, &header, header.len(), dst);
    assert_eq!(rep, 0, "{}", sockd.log_text());
    assert_echo(&mut s, b"six");
    sockd.wait_for_line(
        &["connected:", "client=[2001:db8::7]:40010 balancer=127.0.0.1:"],
        LOG_TIMEOUT,
    );
}

/// Sends `bytes` from the balancer's address, then asserts sockd closes without a byte.
fn closed_without_reply(sockd: &Sockd, bytes: &[u8], half_close: bool, what: &str) {
    let mut s = connect(sockd.addr());
    s.write_all(bytes).expect("send");
    if half_close {
        s.shutdown(std::net::Shutdown::Write).expect("half-close");
    }
    let (data, _) = expect_closed(&mut s, Duration::from_secs(5), what);
    assert!(data.is_empty(), "{what}: nothing may be answered, got {data:02x?}");
}

#[test]
fn a_listed_source_without_a_good_header_is_closed_and_logged() {
    let echo = echo_server();
    let sockd = balanced(&rules(""), &["--handshake-timeout", "1"]);
    let dst = sa(&format!("127.0.0.1:{}", echo.port()));
    // A SOCKS client sent straight to the port that expects a balancer: no header.
    let mut socks = vec![0x05, 0x01, 0x00];
    socks.extend_from_slice(&socks5_request(CMD_CONNECT, dst));
    closed_without_reply(&sockd, &socks, false, "SOCKS5 without a header");
    sockd.wait_for_line(
        &["bad request: balancer=127.0.0.1:", "error=no PROXY protocol header (bad signature)"],
        LOG_TIMEOUT,
    );
    // Malformed: a v1 line with a bad port, a v2 header of another version, a line too long.
    closed_without_reply(
        &sockd,
        b"PROXY TCP4 198.51.100.7 203.0.113.1 99999 1080\r\n",
        false,
        "v1",
    );
    sockd.wait_for_line(&["bad request: balancer=", "bad port `99999`"], LOG_TIMEOUT);
    let mut v1_header = v2(sa("198.51.100.7:1"), sa(FRONTEND), &[]);
    v1_header[12] = 0x11;
    closed_without_reply(&sockd, &v1_header, false, "v2 version 1");
    sockd.wait_for_line(&["bad request: balancer=", "version 1, not 2"], LOG_TIMEOUT);
    let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(120));
    closed_without_reply(&sockd, long.as_bytes(), false, "v1 too long");
    sockd.wait_for_line(&["bad request: balancer=", "without CRLF within 107 bytes"], LOG_TIMEOUT);
    // Truncated: half a header, then the balancer closes.
    let header = v2(sa("198.51.100.7:2"), sa(FRONTEND), &[]);
    closed_without_reply(&sockd, &header[..20], true, "truncated");
    sockd.wait_for_line(
        &["bad request: balancer=", "after 20 bytes, before a complete PROXY protocol header"],
        LOG_TIMEOUT,
    );
    // Half a header, then silence: the handshake timeout closes it.
    closed_without_reply(&sockd, &header[..10], false, "stalled");
    sockd.wait_for_line(
        &["timeout: balancer=127.0.0.1:", "no complete PROXY protocol header within 1s"],
        LOG_TIMEOUT,
    );
    assert_eq!(echo.accepted(), 0, "nothing may reach the destination");
    assert_eq!(sockd.count_lines(&["connected:"]), 0, "{}", sockd.log_text());
}

#[test]
fn a_header_from_an_unlisted_source_is_a_bad_socks_request() {
    let echo = echo_server();
    let sockd = balanced(&rules(""), &[]);
    let dst = sa(&format!("127.0.0.1:{}", echo.port()));
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let mut s = connect_from(other, sockd.addr());
    let tag = client_tag(&s);
    let mut bytes = v1(sa("198.51.100.7:40020"), sa(FRONTEND));
    bytes.extend_from_slice(&[0x05, 0x01, 0x00]);
    s.write_all(&bytes).expect("header from an unlisted source");
    expect_closed(&mut s, Duration::from_secs(5), "unlisted source with a header");
    let line = sockd.wait_for_line(&["bad request:", &tag], LOG_TIMEOUT);
    assert!(!line.contains("198.51.100.7"), "the header must not be believed: {line}");
    // The same source speaking plain SOCKS is served as itself.
    let mut s = connect_from(other, sockd.addr());
    let tag = client_tag(&s);
    socks5_noauth(&mut s);
    s.write_all(&socks5_request(CMD_CONNECT, dst)).expect("request");
    assert_eq!(read_socks5_reply(&mut s, "reply").rep, 0, "{}", sockd.log_text());
    assert_echo(&mut s, b"direct");
    let line = sockd.wait_for_line(&["connected:", &tag], LOG_TIMEOUT);
    assert!(!line.contains("balancer="), "{line}");
}

#[test]
fn rules_are_decided_on_the_carried_address() {
    let echo = echo_server();
    let sockd = balanced(&rules("deny 198.51.100.66/32 0.0.0.0/0\n"), &[]);
    let dst = sa(&format!("127.0.0.1:{}", echo.port()));
    let denied = v2(sa("198.51.100.66:40030"), sa(FRONTEND), &[]);
    let (rep, mut s) = connect_through(&sockd, &denied, denied.len(), dst);
    assert_eq!(rep, 0x02, "198.51.100.66 is denied: {}", sockd.log_text());
    expect_closed(&mut s, Duration::from_secs(5), "after the refusal");
    let line = sockd
        .wait_for_line(&["denied:", "client=198.51.100.66:40030 balancer=127.0.0.1:"], LOG_TIMEOUT);
    assert!(line.contains(&sockd.rule_tag(1)), "the deny line decided: {line}");
    let permitted = v2(sa("198.51.100.67:40031"), sa(FRONTEND), &[]);
    let (rep, mut s) = connect_through(&sockd, &permitted, permitted.len(), dst);
    assert_eq!(rep, 0, "198.51.100.67 is permitted: {}", sockd.log_text());
    assert_echo(&mut s, b"permitted");
    assert_eq!(echo.accepted(), 1, "only the permitted client reached the destination");
}

#[test]
fn per_client_limit_counts_carried_addresses() {
    let echo = echo_server();
    let sockd = balanced(&rules(""), &["--max-sessions-per-client", "1"]);
    let dst = sa(&format!("127.0.0.1:{}", echo.port()));
    let a = v2(sa("198.51.100.10:40040"), sa(FRONTEND), &[]);
    let (rep, mut first) = connect_through(&sockd, &a, a.len(), dst);
    assert_eq!(rep, 0);
    assert_echo(&mut first, b"a1");
    // A second session of the same carried client has no room, though the balancer's address
    // is the same for everyone...
    let a2 = v2(sa("198.51.100.10:40041"), sa(FRONTEND), &[]);
    let mut s = connect(sockd.addr());
    s.write_all(&a2).expect("header");
    s.write_all(&[0x05, 0x01, 0x00]).expect("greeting");
    let (data, _) = expect_closed(&mut s, Duration::from_secs(5), "second session of a");
    assert!(data.is_empty() || data[..2] == [0x05, 0x00], "refused: {data:02x?}");
    sockd.wait_for_log("--max-sessions-per-client", LOG_TIMEOUT);
    // ...while another carried client is served alongside.
    let b = v2(sa("198.51.100.11:40042"), sa(FRONTEND), &[]);
    let (rep, mut other) = connect_through(&sockd, &b, b.len(), dst);
    assert_eq!(rep, 0, "another client behind the same balancer: {}", sockd.log_text());
    assert_echo(&mut other, b"b1");
    drop(first);
    sockd.wait_for_line(&["closed:", "client=198.51.100.10:40040"], LOG_TIMEOUT);
    let (rep, mut again) = connect_through(&sockd, &a2, a2.len(), dst);
    assert_eq!(rep, 0, "a's place is free again: {}", sockd.log_text());
    assert_echo(&mut again, b"a2");
}

#[test]
fn local_health_checks_are_the_balancer_itself() {
    let echo = echo_server();
    // Only the carried clients are permitted: the balancer itself is not.
    let sockd = balanced("permit 198.51.100.0/24 127.0.0.0/8\n", &[]);
    let dst = sa(&format!("127.0.0.1:{}", echo.port()));
    // HAProxy's check: LOCAL, then close. Nothing worth a log line at the default level.
    for _ in 0..3 {
        let mut s = connect(sockd.addr());
        s.write_all(&v2_local()).expect("LOCAL");
        s.shutdown(std::net::Shutdown::Write).expect("close");
        let (data, _) = expect_closed(&mut s, Duration::from_secs(5), "health check");
        assert!(data.is_empty());
    }
    // A plain TCP check: connect and close.
    drop(connect(sockd.addr()));
    // A LOCAL connection that goes on to speak SOCKS is the balancer's own request.
    let local = v2_local();
    let (rep, _s) = connect_through(&sockd, &local, local.len(), dst);
    assert_eq!(rep, 0x02, "the balancer's own address has no permit line");
    let line = sockd.wait_for_line(&["denied: client=127.0.0.1:"], LOG_TIMEOUT);
    assert!(!line.contains("balancer="), "{line}");
    let unknown = b"PROXY UNKNOWN\r\n".to_vec();
    let (rep, _s) = connect_through(&sockd, &unknown, unknown.len(), dst);
    assert_eq!(rep, 0x02, "UNKNOWN is the balancer too");
    let log = sockd.log_text();
    assert_eq!(sockd.count_lines(&["bad request"]), 0, "health checks are no errors:\n{log}");
    assert_eq!(sockd.count_lines(&["timeout:"]), 0, "{log}");
}

#[test]
fn inetd_mode_reads_the_header_of_a_listed_source() {
    let echo = echo_server();
    let dir = TempDir::new("inetd-proxy");
    let conf = dir.write("sockd.conf", rules(""));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = connect(listener.local_addr().expect("addr"));
    let (server_side, _) = listener.accept().expect("accept");
    let log_file = dir.path().join("sockd.log");
    let mut cmd = Command::new(sockd_bin());
    cmd.arg("--inetd")
        .arg("-f")
        .arg(&conf)
        .args(["--accept-proxy-protocol", "127.0.0.0/8", "--log-file"])
        .arg(&log_file)
        .stdin(Stdio::from(OwnedFd::from(server_side)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn sockd --inetd");
    let dst = sa(&format!("127.0.0.1:{}", echo.port()));
    let mut bytes = v2(sa("198.51.100.9:40050"), sa(FRONTEND), &[]);
    bytes.extend_from_slice(&[0x05, 0x01, 0x00]);
    client.write_all(&bytes).expect("header and greeting");
    assert_eq!(read_n(&mut client, 2, "method selection"), [0x05, 0x00]);
    client.write_all(&socks5_request(CMD_CONNECT, dst)).expect("request");
    assert_eq!(read_socks5_reply(&mut client, "reply").rep, 0);
    assert_echo(&mut client, b"inetd");
    drop(client);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
    assert!(status.is_some_and(|s| s.success()), "sockd --inetd must exit cleanly:\n{log}");
    assert!(
        log.contains("connected: client=198.51.100.9:40050 balancer=127.0.0.1:"),
        "the session is the carried client's:\n{log}"
    );
}

#[test]
fn udp_advertise_names_the_relay_and_the_lock_holds_the_carried_client() {
    let echo = UdpEcho::start();
    let sockd = balanced(&rules(""), &["--udp-advertise", "127.0.0.3"]);
    // The carried client is 127.0.0.5: its datagrams really come from there.
    let client_ip = Ipv4Addr::new(127, 0, 0, 5);
    let mut control = connect(sockd.addr());
    let mut bytes = v2(sa("127.0.0.5:40060"), sa(FRONTEND), &[]);
    bytes.extend_from_slice(&[0x05, 0x01, 0x00]);
    control.write_all(&bytes).expect("header and greeting");
    assert_eq!(read_n(&mut control, 2, "method selection"), [0x05, 0x00]);
    control.write_all(&socks5_request(CMD_UDP_ASSOCIATE, sa("0.0.0.0:0"))).expect("associate");
    let reply = read_socks5_reply(&mut control, "UDP ASSOCIATE reply");
    assert_eq!(reply.rep, 0, "{}", sockd.log_text());
    assert_eq!(reply.addr.ip().to_string(), "127.0.0.3", "the advertised address: {reply:?}");
    sockd.wait_for_line(
        &["udp:", "client=127.0.0.5:40060 balancer=127.0.0.1:", "relay on 127.0.0.3:"],
        LOG_TIMEOUT,
    );
    let datagram = |payload: &[u8]| {
        let SocketAddr::V4(dst) = echo.addr else { panic!("IPv4 echo") };
        let mut v = vec![0, 0, 0, 1];
        v.extend_from_slice(&dst.ip().octets());
        v.extend_from_slice(&dst.port().to_be_bytes());
        v.extend_from_slice(payload);
        v
    };
    // From the balancer's address (not the client's): dropped by the lock.
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
    stranger.send_to(&datagram(b"stranger"), reply.addr).expect("send");
    // From the carried client: relayed, and the answer comes back from the advertised address.
    let socket = UdpSocket::bind((client_ip, 0)).expect("bind the client");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    socket.send_to(&datagram(b"hello"), reply.addr).expect("send");
    let mut buf = [0u8; 512];
    let (n, from) = socket.recv_from(&mut buf).expect("the echo through the relay");
    assert_eq!(from, reply.addr, "answered from the advertised address");
    assert_eq!(&buf[..n], &datagram(b"hello")[..]);
    let seen = echo.seen();
    assert_eq!(seen.len(), 1, "only the carried client's datagram was relayed: {seen:?}");
}

#[test]
fn check_describes_the_options_and_bad_values_are_refused() {
    let dir = TempDir::new("check-proxy");
    let conf = dir.write("sockd.conf", rules(""));
    let out = Command::new(sockd_bin())
        .arg("-f")
        .arg(&conf)
        .args(["--check", "--accept-proxy-protocol", "10.0.0.0/24"])
        .args(["--accept-proxy-protocol", "2001:db8::/64", "--udp-advertise", "192.0.2.1"])
        .output()
        .expect("run sockd --check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("# accept-proxy-protocol: connections from 10.0.0.0/24, 2001:db8::/64 must start with a PROXY protocol header"),
        "{stdout}"
    );
    assert!(stdout.contains("# udp-advertise: UDP ASSOCIATE replies name 192.0.2.1"), "{stdout}");
    for bad in [
        &["--accept-proxy-protocol", "10.0.0.0/33"][..],
        &["--accept-proxy-protocol", "example.com"][..],
        &["--udp-advertise", "192.0.2.1", "--udp-advertise", "192.0.2.2"][..],
        &["--udp-advertise", "0.0.0.0"][..],
    ] {
        let out = Command::new(sockd_bin())
            .arg("-f")
            .arg(&conf)
            .arg("--check")
            .args(bad)
            .output()
            .expect("run sockd --check");
        assert!(!out.status.success(), "{bad:?} must be refused");
        assert!(!out.stderr.is_empty(), "{bad:?}: an error message");
    }
}

/// Sends `header`, then a SOCKS5 login as `alice` with `password`; returns the RFC 1929 status.
fn login_through(sockd: &Sockd, header: &[u8], password: &str) -> u8 {
    let mut s = connect(sockd.addr());
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(&socks5_greeting(&[0x02]));
    s.write_all(&bytes).expect("header and greeting");
    assert_eq!(read_n(&mut s, 2, "method selection"), [0x05, 0x02]);
    s.write_all(&rfc1929_request("alice", password)).expect("login");
    read_n(&mut s, 2, "RFC 1929 status")[1]
}

#[test]
fn failed_logins_are_counted_per_carried_address() {
    let builder = SockdBuilder::new(&rules("")).arg("--accept-proxy-protocol").arg("127.0.0.1/32");
    let users = builder.file("users", "alice:alice-pw\n");
    let sockd = builder.arg("--users").arg(users).start();
    let a = v2(sa("198.51.100.20:40070"), sa(FRONTEND), &[]);
    let b = v2(sa("198.51.100.21:40071"), sa(FRONTEND), &[]);
    assert_ne!(login_through(&sockd, &a, "wrong"), 0);
    assert_ne!(login_through(&sockd, &a, "wrong"), 0);
    sockd.wait_for_line(
        &["denied: client=198.51.100.20:40070 balancer=", "failures=1"],
        LOG_TIMEOUT,
    );
    sockd.wait_for_line(&["client=198.51.100.20:40070 balancer=", "failures=2"], LOG_TIMEOUT);
    // Another client behind the same balancer starts from its own count (and waits for no one).
    assert_ne!(login_through(&sockd, &b, "wrong"), 0);
    let line = sockd.wait_for_line(&["denied: client=198.51.100.21:40071 balancer="], LOG_TIMEOUT);
    assert!(line.contains(" failures=1 "), "counted for 198.51.100.21 alone: {line}");
    assert_eq!(login_through(&sockd, &b, "alice-pw"), 0, "{}", sockd.log_text());
}

#[test]
fn socket_activated_sockd_reads_the_header_too() {
    let activate = require_program("systemd-socket-activate", "systemd");
    let echo = echo_server();
    let dir = TempDir::new("activate-proxy");
    let conf = dir.write("sockd.conf", rules(""));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = sa(&format!("127.0.0.1:{port}"));
    let mut child = Command::new(activate)
        .arg("-l")
        .arg(addr.to_string())
        .arg(sockd_bin())
        .arg("-f")
        .arg(&conf)
        .args(["--accept-proxy-protocol", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn systemd-socket-activate");
    let log = LogLines::capture(child.stderr.take().expect("piped"), "activated sockd");
    log.wait_for(&["Listening on"], LOG_TIMEOUT).expect("the tool listens");
    let dst = sa(&format!("127.0.0.1:{}", echo.port()));
    let mut s = connect(addr);
    let mut bytes = v1(sa("198.51.100.8:40080"), sa(FRONTEND));
    bytes.extend_from_slice(&[0x05, 0x01, 0x00]);
    s.write_all(&bytes).expect("header and greeting");
    assert_eq!(read_n(&mut s, 2, "method selection"), [0x05, 0x00], "{}", log.joined());
    s.write_all(&socks5_request(CMD_CONNECT, dst)).expect("request");
    assert_eq!(read_socks5_reply(&mut s, "reply").rep, 0, "{}", log.joined());
    assert_echo(&mut s, b"activated");
    let line =
        log.wait_for(&["connected: client=198.51.100.8:40080 balancer=127.0.0.1:"], LOG_TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.is_some(), "the passed socket's sessions carry the client:\n{}", log.joined());
}
