//! TCP framing of the client handshake: for SOCKS4, SOCKS4a, SOCKS5 (IPv4 and domain) and
//! SOCKS5 with RFC 1929 username/password, the whole client side of the handshake is sent in
//! two writes split at every byte boundary (TCP_NODELAY, a pause between the writes), and also
//! coalesced with early application data in a single write (pipelined). Every case must be
//! served, and the early data must reach the echo server and come back.
//!
//! Not here: malformed input (bad_input.rs).

mod common;

use common::*;
use std::io::Write;
use std::net::Shutdown;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    V4,
    V4a,
    V5,
    V5Domain,
    V5Auth,
}

const USER: &str = "framer";
const PASS: &str = "s3cret!";

fn handshake(proto: Proto, echo: &TestServer) -> Vec<u8> {
    match proto {
        Proto::V4 => socks4_request(CMD_CONNECT, echo.v4(), b"bob"),
        Proto::V4a => socks4a_request(CMD_CONNECT, "localhost", echo.port(), b"bob"),
        Proto::V5 => {
            let mut v = socks5_greeting(&[0x00]);
            v.extend(socks5_request(CMD_CONNECT, echo.addr));
            v
        }
        Proto::V5Domain => {
            let mut v = socks5_greeting(&[0x00]);
            v.extend(socks5_request_domain(CMD_CONNECT, "localhost", echo.port()));
            v
        }
        Proto::V5Auth => {
            let mut v = socks5_greeting(&[0x02]);
            v.extend(rfc1929_request(USER, PASS));
            v.extend(socks5_request(CMD_CONNECT, echo.addr));
            v
        }
    }
}

/// Read and check the server's replies for `proto`.
fn read_replies(proto: Proto, s: &mut std::net::TcpStream) {
    match proto {
        Proto::V4 | Proto::V4a => {
            let r = read_socks4_reply(s, "SOCKS4 reply");
            assert_eq!((r.vn, r.cd), (0, 90), "{proto:?}: {r:?}");
        }
        Proto::V5 | Proto::V5Domain => {
            assert_eq!(read_n(s, 2, "method selection"), [0x05, 0x00]);
            let r = read_socks5_reply(s, "CONNECT reply");
            assert_eq!(r.rep, 0, "{proto:?}: {r:?}");
        }
        Proto::V5Auth => {
            assert_eq!(read_n(s, 2, "method selection"), [0x05, 0x02]);
            assert_eq!(read_n(s, 2, "RFC 1929 status"), [0x01, 0x00]);
            let r = read_socks5_reply(s, "CONNECT reply");
            assert_eq!(r.rep, 0, "{proto:?}: {r:?}");
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Delivery {
    /// Two writes, split after this many handshake bytes; data only after the replies.
    Split(usize),
    /// Handshake and early data in one write, before any reply is read.
    Pipelined,
}

fn one_session(sockd: &Sockd, echo: &TestServer, proto: Proto, how: Delivery) {
    let hs = handshake(proto, echo);
    let payload = pseudo_random(64, hs.len() as u64);
    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    match how {
        Delivery::Split(at) => {
            write_split(&mut s, &hs, at, Duration::from_millis(15)).expect("split write");
            read_replies(proto, &mut s);
            s.write_all(&payload).expect("payload");
        }
        Delivery::Pipelined => {
            let mut all = hs.clone();
            all.extend_from_slice(&payload);
            s.write_all(&all).expect("pipelined write");
            read_replies(proto, &mut s);
        }
    }
    let back = read_n(&mut s, payload.len(), "echoed data");
    assert!(back == payload, "echoed data differs");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let rest = read_to_eof(&mut s, "EOF");
    assert!(rest.is_empty(), "nothing may follow the echo: {rest:02x?}");
    let t = Duration::from_secs(3);
    sockd.wait_for_line(&["connected:", &tag, "cmd=connect"], t);
    sockd.wait_for_line(&["closed:", &tag, "sent=64", "received=64"], t);
}

/// Run every split point and the pipelined case; fail once, listing every failing case.
fn exercise(sockd: &Sockd, echo: &TestServer, proto: Proto) {
    let len = handshake(proto, echo).len();
    let mut cases: Vec<Delivery> = (1..len).map(Delivery::Split).collect();
    cases.push(Delivery::Pipelined);
    let mut failures = Vec::new();
    for how in cases {
        let r = catch_unwind(AssertUnwindSafe(|| one_session(sockd, echo, proto, how)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{how:?}: {}", msg.lines().next().unwrap_or("")));
        }
    }
    assert!(
        failures.is_empty(),
        "{proto:?} handshake of {len} bytes: {} case(s) failed:\n{}\nsockd log:\n{}",
        failures.len(),
        failures.join("\n"),
        tail(&sockd.log_text(), 40)
    );
    assert_eq!(echo.accepted(), len, "one destination connection per case");
}

const RULES: &str = "permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n";

#[test]
fn socks4_split_and_pipelined() {
    let echo = echo_server();
    let sockd = Sockd::start(RULES);
    exercise(&sockd, &echo, Proto::V4);
}

#[test]
fn socks4a_split_and_pipelined() {
    let echo = echo_server();
    let sockd = Sockd::start(RULES);
    exercise(&sockd, &echo, Proto::V4a);
}

#[test]
fn socks5_split_and_pipelined() {
    let echo = echo_server();
    let sockd = Sockd::start(RULES);
    exercise(&sockd, &echo, Proto::V5);
}

#[test]
fn socks5_domain_split_and_pipelined() {
    let echo = echo_server();
    let sockd = Sockd::start(RULES);
    exercise(&sockd, &echo, Proto::V5Domain);
}

#[test]
fn socks5_userpass_split_and_pipelined() {
    let echo = echo_server();
    let b = SockdBuilder::new(RULES);
    let users = b.file("users", &format!("# framing test\n{USER}:{PASS}\n"));
    let sockd = b.arg("--users").arg(users).start();
    exercise(&sockd, &echo, Proto::V5Auth);
}
