//! The firewall host's own services, attacked through sockd (issue 11, items 1 and 2):
//!
//! - the unspecified address (`0.0.0.0`, `::`, `::ffff:0.0.0.0`, or a name that resolves to
//!   one) is refused for CONNECT and for UDP datagrams, whatever the rules say — the kernel would
//!   deliver it to a service on 127.0.0.1;
//! - a permit line whose destination is a wildcard ("any", `0.0.0.0/0`, `::/0`, or no
//!   destination at all) does not reach loopback; a permit whose destination lies inside
//!   loopback does;
//! - the paper's "any" mask (`0.0.0.0 255.255.255.255`) covers IPv6 too, so a deny line in the
//!   paper's format cannot be walked around over `::1`;
//! - `--check` says what "any" leaves out;
//! - the firewall host's other own addresses are like loopback: only a permit naming the
//!   address opens them (as root, in a network namespace of the test's own).
//!
//! Every destination is a real listener on loopback (or on a non-loopback address of the host
//! in a private network namespace) opened by the test; every attack is a real client through
//! the real sockd.

mod common;

use common::*;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::Duration;

/// The issue's rule file: loopback denied by name for both families, then everything permitted
/// for loopback clients.
const ISSUE_RULES: &str = "deny 0.0.0.0/0 127.0.0.0/8\n\
                           deny 0.0.0.0/0 ::1/128\n\
                           permit 127.0.0.1/32\n";

/// Whether `::1` exists on this machine (some containers have no IPv6).
fn has_ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// A SOCKS5 CONNECT request (bytes after the greeting); returns the reply code and client tag.
/// On success, checks that bytes really flow to the echo server.
fn socks5_rep(sockd: &Sockd, request: &[u8]) -> (u8, String) {
    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    socks5_noauth(&mut s);
    s.write_all(request).expect("request");
    let r = read_socks5_reply(&mut s, "CONNECT reply");
    if r.rep == 0 {
        assert_echo(&mut s, b"reached the firewall host");
    }
    (r.rep, tag)
}

#[test]
fn unspecified_destination_is_refused_for_connect() {
    let echo = echo_server(); // 127.0.0.1:PORT, the firewall host's own service
    let port = echo.port();
    let sockd = Sockd::start(ISSUE_RULES);
    let mut attempts: Vec<(String, Vec<u8>)> = vec![
        ("0.0.0.0".into(), socks5_request(CMD_CONNECT, (Ipv4Addr::UNSPECIFIED, port).into())),
        (
            "::ffff:0.0.0.0".into(),
            socks5_request(CMD_CONNECT, (Ipv4Addr::UNSPECIFIED.to_ipv6_mapped(), port).into()),
        ),
        // Names whose resolution is the unspecified address.
        ("name 0.0.0.0".into(), socks5_request_domain(CMD_CONNECT, "0.0.0.0", port)),
        ("name 0".into(), socks5_request_domain(CMD_CONNECT, "0", port)),
    ];
    if has_ipv6_loopback() {
        attempts
            .push(("::".into(), socks5_request(CMD_CONNECT, (Ipv6Addr::UNSPECIFIED, port).into())));
        attempts.push(("name ::".into(), socks5_request_domain(CMD_CONNECT, "::", port)));
    } else {
        skip(
            "unspecified_destination_is_refused_for_connect",
            "the [::] CONNECT is not tried: ::1 is not bindable here",
        );
    }
    for (what, request) in &attempts {
        let (rep, tag) = socks5_rep(&sockd, request);
        assert_eq!(
            rep,
            0x02,
            "CONNECT to {what}:{port} must be refused as not allowed; log:\n{}",
            sockd.log_text()
        );
        sockd.wait_for_line(&["denied:", &tag, "rule=unspecified"], LOG_TIMEOUT);
    }
    // SOCKS4 with DSTIP 0.0.0.0 (not the 4a marker 0.0.0.x, x != 0).
    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    let dst = std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    s.write_all(&socks4_request(CMD_CONNECT, dst, b"")).expect("request");
    let r = read_socks4_reply(&mut s, "SOCKS4 reply");
    assert_eq!(r.cd, 91, "SOCKS4 CONNECT to 0.0.0.0 must be refused");
    sockd.wait_for_line(&["denied:", &tag, "rule=unspecified"], LOG_TIMEOUT);

    thread::sleep(Duration::from_millis(200));
    assert_eq!(echo.accepted(), 0, "the service on 127.0.0.1 must never see a connection");
    assert_eq!(sockd.count_lines(&["addr=127.0.0.1"]), 0, "{}", sockd.log_text());
}

/// `RSV RSV FRAG ATYP ADDR PORT` + payload.
fn datagram(dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut v = socks5_request(0, dst);
    v.drain(..3);
    let mut out = vec![0, 0, 0];
    out.extend(v);
    out.extend_from_slice(payload);
    out
}

#[test]
fn unspecified_destination_is_refused_for_udp() {
    let syslog = UdpEcho::start(); // a service on the firewall host, say
    let permitted_echo = UdpEcho::start();
    let (service, permitted) = (syslog.addr, permitted_echo.addr);
    let rules = format!("permit 127.0.0.1/32 127.0.0.1/32 eq {}\n{ISSUE_RULES}", permitted.port());
    let sockd = Sockd::start(&rules);

    let client = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    client.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut control = connect(sockd.addr());
    let tag = client_tag(&control);
    socks5_noauth(&mut control);
    let declared = client.local_addr().expect("client address");
    control.write_all(&socks5_request(CMD_UDP_ASSOCIATE, declared)).expect("UDP ASSOCIATE");
    let reply = read_socks5_reply(&mut control, "UDP ASSOCIATE reply");
    assert_eq!(reply.rep, 0, "UDP ASSOCIATE must succeed; log:\n{}", sockd.log_text());
    let relay = reply.addr;

    let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, service.port()));
    let mapped = SocketAddr::from((Ipv4Addr::UNSPECIFIED.to_ipv6_mapped(), service.port()));
    for dst in [unspecified, mapped] {
        client.send_to(&datagram(dst, b"<13>forged"), relay).expect("send");
    }
    // A permitted datagram afterwards proves the relay works and orders the check.
    let to_permitted = datagram(permitted, b"ping");
    client.send_to(&to_permitted, relay).expect("send");
    let mut buf = [0u8; 2048];
    let (n, _) = client.recv_from(&mut buf).expect("the permitted datagram's echo");
    assert_eq!(&buf[..n], &to_permitted[..], "echo through the relay");
    assert_eq!(permitted_echo.seen().len(), 1);
    thread::sleep(Duration::from_millis(200));
    let reached = syslog.seen();
    assert!(reached.is_empty(), "datagrams to 0.0.0.0 reached 127.0.0.1: {reached:?}");
    sockd.wait_for_line(&["denied:", &tag, "rule=unspecified"], LOG_TIMEOUT);
}

#[test]
fn wildcard_permit_does_not_reach_loopback() {
    let echo = echo_server();
    let port = echo.port();
    let dst_v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mapped = SocketAddr::from((Ipv4Addr::LOCALHOST.to_ipv6_mapped(), port));
    for rules in [
        "permit 127.0.0.1/32\n",
        "permit 0.0.0.0/0 0.0.0.0/0\n",
        "permit 0.0.0.0 255.255.255.255 0.0.0.0 255.255.255.255\n",
        "permit 127.0.0.1/32 0.0.0.0/1\n",
    ] {
        let sockd = Sockd::start(rules);
        for dst in [dst_v4, mapped] {
            let (rep, tag) = socks5_rep(&sockd, &socks5_request(CMD_CONNECT, dst));
            assert_eq!(rep, 0x02, "`{}` must not open {dst}", rules.trim());
            sockd.wait_for_line(&["denied:", &tag, "rule=default"], LOG_TIMEOUT);
        }
        let (rep, _) = socks5_rep(&sockd, &socks5_request_domain(CMD_CONNECT, "localhost", port));
        assert_eq!(rep, 0x02, "`{}` must not open localhost:{port}", rules.trim());
    }
    assert_eq!(echo.accepted(), 0, "no wildcard rule may reach 127.0.0.1");

    // A destination that names loopback opens it.
    for rules in [
        "permit 127.0.0.1/32 127.0.0.0/8\n",
        "permit 127.0.0.1 0.0.0.0 127.0.0.1 0.0.0.0\n",
        "permit 0.0.0.0/0 localhost 0.0.0.0\n",
    ] {
        let sockd = Sockd::start(rules);
        let (rep, _) = socks5_rep(&sockd, &socks5_request(CMD_CONNECT, dst_v4));
        assert_eq!(rep, 0, "`{}` names loopback; log:\n{}", rules.trim(), sockd.log_text());
    }
    assert_eq!(echo.accepted(), 3);
}

#[test]
fn wildcard_permit_does_not_reach_ipv6_loopback() {
    if !has_ipv6_loopback() {
        skip("wildcard_permit_does_not_reach_ipv6_loopback", "::1 is not bindable here");
        return;
    }
    let echo = echo_server_on("[::1]:0");
    for rules in ["permit 127.0.0.1/32 ::/0\n", "permit 127.0.0.1/32\n"] {
        let sockd = Sockd::start(rules);
        let (rep, tag) = socks5_rep(&sockd, &socks5_request(CMD_CONNECT, echo.addr));
        assert_eq!(rep, 0x02, "`{}` must not open {}", rules.trim(), echo.addr);
        sockd.wait_for_line(&["denied:", &tag, "rule=default"], LOG_TIMEOUT);
    }
    assert_eq!(echo.accepted(), 0);
    let sockd = Sockd::start("permit 127.0.0.1/32 ::1/128\n");
    let (rep, _) = socks5_rep(&sockd, &socks5_request(CMD_CONNECT, echo.addr));
    assert_eq!(rep, 0, "::1/128 names IPv6 loopback; log:\n{}", sockd.log_text());
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn paper_any_mask_deny_covers_ipv6() {
    if !has_ipv6_loopback() {
        skip("paper_any_mask_deny_covers_ipv6", "::1 is not bindable here");
        return;
    }
    // Same port on both families, as a whois server listening on both would be.
    let (v4, v6) = (0..20)
        .find_map(|_| {
            let v6 = echo_server_on("[::1]:0");
            let free = TcpListener::bind((Ipv4Addr::LOCALHOST, v6.port())).ok()?;
            drop(free);
            Some((echo_server_on(&format!("127.0.0.1:{}", v6.port())), v6))
        })
        .expect("a port free on both 127.0.0.1 and ::1");
    let port = v6.port();
    // examples/sockd.conf's whois line, then loopback permitted by name for both families.
    let rules = format!(
        "deny 0.0.0.0 255.255.255.255 0.0.0.0 255.255.255.255 eq {port}\n\
         permit 127.0.0.0/8 127.0.0.0/8\n\
         permit 127.0.0.0/8 ::1/128\n"
    );
    let sockd = Sockd::start(&rules);
    let line1 = sockd.rule_tag(1);
    for dst in
        [v4.addr, v6.addr, SocketAddr::new(IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()), port)]
    {
        let (rep, tag) = socks5_rep(&sockd, &socks5_request(CMD_CONNECT, dst));
        assert_eq!(
            rep,
            0x02,
            "the paper's any/any deny must refuse {dst}; log:\n{}",
            sockd.log_text()
        );
        sockd.wait_for_line(&["denied:", &tag, &line1], LOG_TIMEOUT);
    }
    assert_eq!((v4.accepted(), v6.accepted()), (0, 0));
}

#[test]
fn check_notes_what_any_leaves_out() {
    let dir = TempDir::new("check-any");
    let file = dir.write(
        "sockd.conf",
        "permit 10.0.0.0/8\n\
         permit 10.0.0.0/8 0.0.0.0 255.255.255.255 eq 80\n\
         permit 10.0.0.0/8 127.0.0.1/32 eq 25\n\
         deny 0.0.0.0/0 0.0.0.0/0 eq 23\n",
    );
    let out = Command::new(sockd_bin()).arg("--check").arg("-f").arg(&file).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].contains("except loopback"), "no DST: {stdout}");
    assert!(lines[1].contains("except loopback"), "any DST: {stdout}");
    assert!(!lines[2].contains("except"), "explicit loopback DST: {stdout}");
    assert!(!lines[3].contains("except"), "deny lines are not narrowed: {stdout}");
    assert!(stdout.contains("unspecified"), "the header names the unspecified rule: {stdout}");
}

/// Moves the calling thread (only it, and the processes it starts) into a new network namespace
/// with `lo` up holding `addr/32` besides 127.0.0.1 (an address of the host that is not
/// loopback, as an interface's would be); `Err` says why not (not root, no `ip`).
fn private_netns_with(addr: &str) -> Result<(), String> {
    // SAFETY: unshare(2) with CLONE_NEWNET only changes the calling thread's network namespace;
    // it takes no pointers.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error()));
    }
    let ip = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
        }
    };
    ip(&["link", "set", "lo", "up"])?;
    ip(&["addr", "add", &format!("{addr}/32"), "dev", "lo"])
}

#[test]
fn own_address_needs_a_permit_naming_it() {
    // The firewall's address on some interface; services bound to it (or to 0.0.0.0) answer
    // connections from the host itself over lo, past any filter on the real interface.
    let own = "198.51.100.1";
    if let Err(why) = private_netns_with(own) {
        assert_ne!(effective_uid(), 0, "as root the namespace must work: {why}");
        skip("own_address_needs_a_permit_naming_it", &why);
        return;
    }
    let service = echo_server_on(&format!("{own}:0"));
    let port = service.port();
    for rules in [
        "permit 127.0.0.1/32\n",
        "permit 0.0.0.0/0 0.0.0.0/0\n",
        "permit 127.0.0.1/32 198.51.100.0/24\n",
    ] {
        let sockd = Sockd::start(rules);
        let (rep, tag) = socks5_rep(&sockd, &socks5_request(CMD_CONNECT, service.addr));
        assert_eq!(rep, 0x02, "`{}` must not open the firewall's own {own}:{port}", rules.trim());
        sockd.wait_for_line(&["denied:", &tag, "rule=default"], LOG_TIMEOUT);
    }
    assert_eq!(service.accepted(), 0, "no wildcard permit may reach the firewall's own address");
    for rules in
        ["permit 127.0.0.1/32 198.51.100.1/32\n", "permit 127.0.0.1/32 198.51.100.1 0.0.0.0\n"]
    {
        let sockd = Sockd::start(rules);
        let (rep, _) = socks5_rep(&sockd, &socks5_request(CMD_CONNECT, service.addr));
        assert_eq!(rep, 0, "`{}` names {own}; log:\n{}", rules.trim(), sockd.log_text());
    }
    assert_eq!(service.accepted(), 2);
}

/// The effective user id.
fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and takes no arguments.
    unsafe { libc::geteuid() }
}
