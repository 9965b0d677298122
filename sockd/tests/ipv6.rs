//! IPv6: sockd listening on `[::1]:0` serves a SOCKS5 CONNECT with ATYP 04 to an IPv6 echo
//! server on `[::1]`, and several `--listen` options give several listeners. When the machine
//! has no `::1`, the IPv6 test says why and passes; if `::1` exists it must work.
//!
//! The rule file permits `::1` to `::1` with CIDR (`::1/128`); the contract names CIDR but not IPv6
//! explicitly, so a parser rejecting it shows up here as a startup failure.

mod common;

use common::*;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener};

/// Does this machine have ::1 on an interface? (/proc/net/if_inet6 lists it as all zeros + 1.)
fn has_ipv6_loopback() -> Result<(), String> {
    match std::fs::read_to_string("/proc/net/if_inet6") {
        Ok(t) if t.lines().any(|l| l.starts_with("00000000000000000000000000000001")) => Ok(()),
        Ok(_) => Err("/proc/net/if_inet6 lists no ::1 (IPv6 loopback not configured)".into()),
        Err(e) => Err(format!("/proc/net/if_inet6 unreadable ({e}): IPv6 disabled")),
    }
}

#[test]
fn socks5_connect_over_ipv6() {
    if let Err(why) = has_ipv6_loopback() {
        skip("socks5_connect_over_ipv6", &format!("no IPv6 loopback: {why}"));
        assert!(TcpListener::bind("[::1]:0").is_err(), "::1 is bindable although {why}");
        return;
    }
    let echo = echo_server_on("[::1]:0");
    let sockd = SockdBuilder::new("# IPv6 loopback clients\npermit ::1/128 ::1/128\n")
        .listen("[::1]:0")
        .start();
    assert!(sockd.addr().is_ipv6(), "listening address must be [::1]: {}", sockd.addr());
    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    assert!(tag.starts_with("client=[::1]:"), "{tag}");
    socks5_noauth(&mut s);
    let req = socks5_request(CMD_CONNECT, echo.addr);
    assert_eq!(req[3], 0x04, "ATYP 04 for an IPv6 destination");
    s.write_all(&req).expect("request");
    let r = read_socks5_reply(&mut s, "IPv6 CONNECT reply");
    assert_eq!(r.rep, 0, "{r:?}; log:\n{}", sockd.log_text());
    let payload = pseudo_random(30_000, 6);
    assert_echo(&mut s, &payload);
    s.shutdown(Shutdown::Write).expect("shutdown");
    assert!(read_to_eof(&mut s, "EOF").is_empty());
    let dst = format!("dst={}", echo.dst()); // [::1]:PORT
    sockd.wait_for_line(&["connected:", &tag, "cmd=connect", &dst], LOG_TIMEOUT);
    sockd.wait_for_line(&["closed:", &tag, &dst, "sent=30000", "received=30000"], LOG_TIMEOUT);
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn several_listeners() {
    let echo = echo_server();
    let sockd = SockdBuilder::new("permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n")
        .listen("127.0.0.1:0")
        .listen("127.0.0.2:0")
        .start();
    let addrs: Vec<SocketAddr> = sockd.addrs().to_vec();
    assert_eq!(addrs.len(), 2, "two `listening on` lines expected");
    assert!(
        addrs.iter().any(|a| a.ip().to_string() == "127.0.0.2"),
        "one listener on 127.0.0.2: {addrs:?}"
    );
    for a in addrs {
        assert_ne!(a.port(), 0, "the real bound port is logged, not 0");
        let mut s = socks5_connect(a, echo.addr);
        assert_echo(&mut s, b"via each listener");
        let tag = client_tag(&s);
        drop(s);
        sockd.wait_for_line(&["connected:", &tag], LOG_TIMEOUT);
    }
    assert_eq!(echo.accepted(), 2);
}
