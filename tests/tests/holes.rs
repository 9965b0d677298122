//! Ways around libsocks.so that issue 11 found (items 10–12), end to end in the namespace lab:
//! each test runs real programs under the library (`SOCKS_SERVER` = our sockd in `fw`), with
//! the nftables leak counters in the workstation's namespace, and asserts both what the program
//! got and that nothing but traffic to sockd left the workstation.
//!
//! - TCP Fast Open: `sendto`/`sendmsg` (python3) and `sendmmsg` (the C helper) with
//!   MSG_FASTOPEN on an unconnected TCP socket, `TCP_FASTOPEN_CONNECT` then connect, a plain
//!   `sendto` with a destination on an unconnected TCP socket, and `curl --tcp-fastopen`.
//! - UDP `sendmsg` with ancillary data: IP_TOS, IP_PKTINFO, UDP_SEGMENT (split into one relayed
//!   datagram per segment), on unconnected and connected sockets, and `sendmmsg` with IP_TOS.
//! - The resolver family: `res_query`, `res_search`, `res_querydomain`, their `res_n*` forms,
//!   `res_send`/`res_nsend`, `gethostbyname_r` and `getaddrinfo_a` (waiting and notified by a
//!   signal) for names resolved on the far side: fake answers, a refusal for other questions,
//!   and no DNS packet from the workstation; then a full fake-address map makes
//!   `gethostbyname(_r)` fail instead of asking the local resolver.
//!
//! The C helper is `tests/c/holes.c`, built here with `cc`.
//!
//! Not here: getaddrinfo and gethostbyname themselves (names.rs), UDP in general (udp.rs).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;

use socks_e2e::dns::{self, OUTSIDE_ADDR6, WWW};
use socks_e2e::*;

/// `client` under the library with `SOCKS_SERVER` only (everything but local destinations
/// through sockd, every name resolved remotely) and its debug log on stderr. A local lookup
/// that should not happen gives up quickly.
fn under_library(client: Client) -> Client {
    client
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_LOG", "debug")
        .env("RES_OPTIONS", "timeout:1 attempts:1")
        .ld_preload()
}

/// Builds `tests/c/holes.c` into the lab's directory.
fn holes(lab: &Lab) -> PathBuf {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("c/holes.c");
    let binary = lab.dir.path().join("holes");
    let cc = paths::require("cc", "gcc");
    let out = Command::new(cc)
        .arg("-Wall")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .args(["-lresolv", "-lanl"])
        .output()
        .expect("cc runs");
    assert!(
        out.status.success(),
        "cc {}: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    binary
}

#[test]
fn tcp_fast_open_goes_through_sockd() {
    let Some(lab) = Lab::new("holes-tfo") else { return };
    let leaks = LeakCounter::install(&lab);
    let echo = lab.echo(7);
    let http = lab.http(80);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let holes = holes(&lab);
    let (host, port) = (OUTSIDE_ADDR.to_string(), echo.addr().port());
    let script = format!(
        r#"
import socket
dst = ("{host}", {port})
def echo(s):
    s.settimeout(10)
    try:
        return s.recv(100)
    except OSError as e:
        return repr(e).encode()
s = socket.socket()
try:
    s.sendto(b"tfo-sendto\n", socket.MSG_FASTOPEN, dst)
    print("sendto:", echo(s))
except OSError as e:
    print("sendto: error", e.errno)
s.close()
s = socket.socket()
try:
    s.sendmsg([b"tfo-", b"sendmsg\n"], [], socket.MSG_FASTOPEN, dst)
    print("sendmsg:", echo(s))
except OSError as e:
    print("sendmsg: error", e.errno)
s.close()
s = socket.socket()
s.setsockopt(socket.IPPROTO_TCP, 30, 1)  # TCP_FASTOPEN_CONNECT
s.connect(dst)
s.sendall(b"tfo-connect\n")
print("connect:", echo(s), s.getpeername() == dst)
s.close()
# Without MSG_FASTOPEN the destination of a sendto on an unconnected TCP socket is ignored.
s = socket.socket()
try:
    s.sendto(b"plain-sendto\n", dst)
    print("plain sendto: sent")
except OSError as e:
    print("plain sendto: error", e.errno)
s.close()
"#
    );
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success(), "python3\n{}", ran.describe());
    assert_eq!(
        ran.stdout_text(),
        "sendto: b'tfo-sendto\\n'\n\
         sendmsg: b'tfo-sendmsg\\n'\n\
         connect: b'tfo-connect\\n' True\n\
         plain sendto: error 32\n",
        "MSG_FASTOPEN must connect through sockd and deliver the data\n{}",
        ran.describe()
    );

    let ran =
        under_library(lab.client(&holes)).args(["tfo-sendmmsg", &host, &port.to_string()]).run();
    assert!(
        ran.success() && ran.stdout_text() == "sendmmsg: sent 13, echo tfo-sendmmsg\n",
        "sendmmsg with MSG_FASTOPEN must go through sockd\n{}",
        ran.describe()
    );

    let ran = under_library(lab.client(paths::require("curl", "curl")))
        .args(["-sS", "--tcp-fastopen", "--max-time", "20", &format!("http://{host}/tfo")])
        .env("no_proxy", "*")
        .run();
    assert!(
        ran.success() && ran.stdout == http_body("/tfo"),
        "curl --tcp-fastopen must fetch through sockd\n{}",
        ran.describe()
    );

    let client = format!("client={INSIDE_ADDR}:");
    let dst = format!("dst={} ", echo.addr());
    sockd.wait_lines(&["closed:", &client, &dst], 4, STARTUP);
    assert_session(&sockd, http.addr(), None);
    assert_from_firewall(&echo);
    assert_from_firewall(&http);
    leaks.assert_only_sockd("TCP Fast Open");
}

#[test]
fn udp_sendmsg_with_ancillary_data_goes_through_the_relay() {
    let Some(lab) = Lab::new("holes-cmsg") else { return };
    let leaks = LeakCounter::install(&lab);
    let echo = lab.udp_echo(0);
    let _sockd = lab.sockd(PERMIT_INSIDE);
    let holes = holes(&lab);
    let (host, port) = (OUTSIDE_ADDR.to_string(), echo.addr().port());
    let script = format!(
        r#"
import socket, struct
dst = ("{host}", {port})
def replies(s, n):
    s.settimeout(5)
    got = []
    for _ in range(n):
        try:
            data, source = s.recvfrom(2000)
            got.append(data.decode() + ("" if source == dst else " from " + repr(source)))
        except OSError as e:
            got.append("none")
    return " ".join(sorted(got))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tos = [(socket.IPPROTO_IP, socket.IP_TOS, struct.pack("i", 2))]
print("tos:", s.sendmsg([b"with-tos"], tos, 0, dst), replies(s, 1))
pktinfo = [(socket.IPPROTO_IP, 8,  # IP_PKTINFO
            struct.pack("I4s4s", 0, bytes(4), bytes(4)))]
print("pktinfo:", s.sendmsg([b"with-pktinfo"], pktinfo, 0, dst), replies(s, 1))
segment = [(17, 103, struct.pack("H", 4))]  # SOL_UDP, UDP_SEGMENT: 4-byte segments
print("segment:", s.sendmsg([b"seg1se", b"g2seg3xy"], segment, 0, dst), replies(s, 4))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.connect(dst)
print("connected tos:", c.sendmsg([b"connected-tos"], tos), replies(c, 1))
# A socket-level segment size: cut the same way, the header never cut from its payload.
g = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
g.setsockopt(17, 103, 3)
print("socket segment:", g.sendto(b"abcdefg", dst), replies(g, 3))
# Larger than one datagram can be with the SOCKS header, but cut by the socket's segment size.
big = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
big.setsockopt(17, 103, 1200)
big.settimeout(5)
sent = big.sendto(bytes(65500), dst)
sizes = []
try:
    while sum(sizes) < sent:
        sizes.append(len(big.recv(2000)))
except OSError:
    pass
print("big:", sent, len(sizes), sum(sizes), max(sizes))
# IP options could route the packet to another first hop: refused, nothing sent.
options = [(socket.IPPROTO_IP, 7, bytes([1, 1, 1, 0]))]  # IP_RETOPTS: NOPs
try:
    s.sendmsg([b"with-options"], options, 0, dst)
    print("options: sent")
except OSError as e:
    print("options: error", e.errno)
"#
    );
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success(), "python3\n{}", ran.describe());
    assert_eq!(
        ran.stdout_text(),
        "tos: 8 with-tos\n\
         pktinfo: 12 with-pktinfo\n\
         segment: 14 seg1 seg2 seg3 xy\n\
         connected tos: 13 connected-tos\n\
         socket segment: 7 abc def g\n\
         big: 65500 55 65500 1200\n\
         options: error 22\n",
        "datagrams with ancillary data must go through sockd's relay, one per segment\n{}",
        ran.describe()
    );
    let ran =
        under_library(lab.client(&holes)).args(["udp-sendmmsg", &host, &port.to_string()]).run();
    let mut lines: Vec<String> = ran.stdout_text().lines().map(str::to_owned).collect();
    lines.sort();
    assert!(
        ran.success() && lines == ["udp echo: mm-one", "udp echo: mm-two", "udp sendmmsg: 2"],
        "sendmmsg with IP_TOS must go through sockd's relay\n{}",
        ran.describe()
    );
    let datagrams = echo.wait_datagrams(12 + 55, STARTUP);
    let mut sizes: Vec<usize> =
        datagrams.iter().map(|d| d.len).filter(|&n| n != 1200 && n != 700).collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [1, 2, 3, 3, 4, 4, 4, 6, 6, 8, 12, 13],
        "one datagram per segment: {datagrams:?}"
    );
    for d in &datagrams {
        assert_eq!(d.peer.ip(), IpAddr::V4(FW_OUTSIDE_ADDR), "relayed by the firewall: {d:?}");
    }
    leaks.assert_only_sockd_udp("UDP with ancillary data");
}

/// A lab with the outside name service, HTTP servers for `www.example.test`, the leak counters
/// and sockd.
fn resolver_lab(name: &str) -> Option<(Lab, LeakCounter, Dnsmasq, Daemon, [Server; 2])> {
    let lab = Lab::new(name)?;
    let leaks = LeakCounter::install(&lab);
    let dns = dns::outside_dns(&lab);
    let www = [
        servers::http(lab.ns(Ns::Outside), SocketAddr::from((OUTSIDE_ADDR, 80))),
        servers::http(lab.ns(Ns::Outside), SocketAddr::from((OUTSIDE_ADDR6, 80))),
    ];
    let sockd = lab.sockd(PERMIT_INSIDE);
    Some((lab, leaks, dns, sockd, www))
}

/// Whether `text` is an address in the default fake ranges.
fn is_fake(text: &str) -> bool {
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.octets()[0] == 198 && (v4.octets()[1] & 0xfe) == 18,
        Ok(IpAddr::V6(v6)) => v6.segments()[..3] == [0xfd73, 0x6f63, 0x6b73],
        Err(_) => false,
    }
}

/// The value after `key: ` on its line of `stdout`.
fn field<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no `{key}:` line in:\n{stdout}"))
}

#[test]
fn resolver_calls_answer_with_fake_addresses_and_send_nothing() {
    let Some((lab, leaks, dns, sockd, _www)) = resolver_lab("holes-resolver") else { return };
    let holes = holes(&lab);
    let ran = under_library(lab.client(&holes)).args(["resolver"]).run();
    let out = ran.stdout_text();
    assert!(ran.success(), "{}", ran.describe());
    let ctx = ran.describe();
    for key in [
        "res_query A",
        "res_querydomain A",
        "res_nquery A",
        "res_nsearch A",
        "res_nquerydomain A",
        "res_send A",
    ] {
        let value = field(&out, key);
        let words: Vec<&str> = value.split_whitespace().collect();
        assert!(
            words.len() == 3 && words[0] == WWW && is_fake(words[1]) && words[1].contains('.'),
            "{key} must answer {WWW} with a fake IPv4 address: {value}\n{ctx}"
        );
    }
    let ptr: Vec<&str> = field(&out, "res_query PTR").split_whitespace().collect();
    assert!(
        ptr.len() == 3 && ptr[0].ends_with(".in-addr.arpa") && ptr[1] == WWW,
        "the reverse name of a fake address names {WWW}\n{ctx}"
    );
    let aaaa: Vec<&str> = field(&out, "res_search AAAA").split_whitespace().collect();
    assert!(aaaa.len() == 3 && is_fake(aaaa[1]) && aaaa[1].contains(':'), "AAAA\n{ctx}");
    assert_eq!(field(&out, "res_query MX"), "-1 h_errno=3", "other questions are refused\n{ctx}");
    assert_eq!(
        field(&out, "res_nsend TXT"),
        "rcode=5 answers=0",
        "res_nsend of another question gets REFUSED\n{ctx}"
    );
    let id = field(&out, "res_send query");
    assert!(field(&out, "res_send A").ends_with(&format!(" {id}")), "same id\n{ctx}");
    assert_eq!(
        field(&out, "res-query-connect"),
        "hello from outside: /res-query-connect",
        "the fake address from res_query must connect through sockd\n{ctx}"
    );
    for key in ["gethostbyname_r", "gaicb www", "gaicb many", "gaicb signal", "gaicb alone"] {
        assert!(is_fake(field(&out, key)), "{key} must get a fake address\n{ctx}");
    }
    assert_eq!(field(&out, "getaddrinfo_a wait"), "0", "{ctx}");
    assert_eq!(field(&out, "getaddrinfo_a nowait"), "0, signal received", "{ctx}");
    assert_eq!(field(&out, "getaddrinfo_a alone"), "0, signal received", "{ctx}");
    assert_eq!(field(&out, "gaicb localhost"), "127.0.0.1", "{ctx}");
    sessions_by_name(&sockd);
    assert!(dns.all_queries().iter().all(|q| q.ends_with(&format!("from {FW_OUTSIDE_ADDR}"))));
    leaks.assert_only_sockd("resolver calls");
}

/// sockd connected to the name, never to a fake address.
fn sessions_by_name(sockd: &Daemon) {
    sockd.wait_line(
        &["closed:", &format!("client={INSIDE_ADDR}:"), &format!("dst={WWW}:80 ")],
        STARTUP,
    );
    let log = sockd.log();
    assert!(!log.contains("dst=198.18.") && !log.contains("dst=198.19."), "{log}");
}

#[test]
fn a_full_fake_map_fails_closed() {
    let Some(lab) = Lab::new("holes-full-map") else { return };
    let leaks = LeakCounter::install(&lab);
    let holes = holes(&lab);
    // Four addresses: room for two names.
    let conf =
        lab.write("socks.conf", format!("fake-range 198.18.0.0/30\nsockd @={SERVER} 0.0.0.0/0\n"));
    let ran = lab
        .client(&holes)
        .args(["by-name", "one.example.test", "two.example.test", "three.example.test"])
        .env("SOCKS_CONF", conf.display().to_string())
        .env("RES_OPTIONS", "timeout:1 attempts:1")
        .ld_preload()
        .run();
    assert_eq!(
        ran.stdout_text(),
        "gethostbyname one.example.test: 198.18.0.1\n\
         gethostbyname_r one.example.test: 198.18.0.1\n\
         gethostbyname two.example.test: 198.18.0.2\n\
         gethostbyname_r two.example.test: 198.18.0.2\n\
         gethostbyname three.example.test: h_errno=3\n\
         gethostbyname_r three.example.test: failed\n",
        "{}",
        ran.describe()
    );
    let counts = leaks.counts();
    assert_eq!(counts.leaked, 0, "no lookup may leave the workstation:\n{}", leaks.table());
}
