//! UDP through the firewall (issue 8), end to end: unmodified programs on the workstation
//! (`inside`, no route out) under libsocks.so (`SOCKS_SERVER=192.0.2.1:1080`, our sockd in `fw`)
//! exchange datagrams with servers on the outside host through SOCKS5 UDP ASSOCIATE. Covered:
//! `dig @outside-dns` (dnsmasq on the outside host), `socat` and `nc -u` echo round trips,
//! python3 talking to two destinations (two hosts, two ports) on one socket with every reply
//! attributed to its real source, a connected UDP socket (send/recv/read/write, getpeername), a
//! non-blocking socket driven by select, poll and epoll, UDP to a name (a fake address from
//! remote name resolution, the reply reported from that fake address), EMSGSIZE exactly where
//! the SOCKS5 header no longer fits, and node 20's `dgram`.
//!
//! Every test asserts what the program got, what the outside server saw (datagrams from the
//! firewall's outside address only), that sockd logged the association (`udp: … relay on
//! 192.0.2.1:PORT`, then `closed: … cmd=udp-associate …` with exactly the datagram and byte
//! counts the destinations saw and nothing dropped), and the leak check: nothing but traffic to
//! sockd's address (TCP 1080 and the relay's UDP port) left the workstation, and datagrams did
//! go to the relay.
//!
//! Interoperability: the library's UDP through Dante's danted, and Dante's own client
//! (`socksify`, libdsocks) sending UDP through our sockd.
//!
//! Who owns an association (issue 11): with a password (sockd with a users file) the library
//! declares its socket's real address and port, and sockd's relay is locked to that socket.
//!
//! Not here: sockd's handling of hostile datagrams on the relay port (sockd/tests/udp_hostile.rs),
//! dig against the workstation's own dead resolver (names.rs).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socks_e2e::dns::{self, MANY, OUTSIDE_ADDR6, WWW};
use socks_e2e::*;

/// A second outside host, for a socket talking to two hosts.
const OUTSIDE_ADDR_B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);

/// A lab with the leak counters (installed first, so they see everything) and our sockd.
fn udp_lab(name: &str) -> Option<(Lab, LeakCounter, Daemon)> {
    let lab = Lab::new(name)?;
    let leaks = LeakCounter::install(&lab);
    let sockd = lab.sockd(PERMIT_INSIDE);
    Some((lab, leaks, sockd))
}

/// `client` under the library, `SOCKS_SERVER` only, the library's debug log on stderr (shown
/// when an assertion fails).
fn under_library(client: Client) -> Client {
    client.env("SOCKS_SERVER", SERVER).env("SOCKS_LOG", "debug").ld_preload()
}

/// Every datagram `echo` received came from the firewall's outside address: relayed, not
/// sent by the workstation. Returns them.
fn assert_relayed(echo: &UdpEcho, count: usize) -> Vec<Datagram> {
    let datagrams = echo.wait_datagrams(count, STARTUP);
    assert_eq!(datagrams.len(), count, "{}: {datagrams:?}", echo.addr());
    for d in &datagrams {
        assert!(
            d.peer.ip() == IpAddr::V4(FW_OUTSIDE_ADDR) && d.echoed,
            "{}: a datagram came from {}, not from the firewall (or was not echoed): {d:?}",
            echo.addr(),
            d.peer
        );
    }
    datagrams
}

/// The library said it set up an association through sockd.
fn assert_associated(ran: &Ran) {
    assert!(
        ran.stderr
            .contains(&format!("udp: association through {SERVER}, relay at {FW_INSIDE_ADDR}:")),
        "the library must report its UDP association through sockd\n{}",
        ran.describe()
    );
}

#[test]
fn dig_asks_an_outside_name_server() {
    let Some((lab, leaks, dns, sockd)) = dns::names_lab("udp-dig") else { return };
    let dig = paths::require("dig", "dnsutils");
    let server = format!("@{OUTSIDE_ADDR}");
    // Reverse lookups of the outside host's addresses: questions the library does not answer
    // itself (it answers names resolved on the far side, own_resolvers.rs).
    let answer = format!("{WWW}.\n");
    for (n, ip) in [IpAddr::from(OUTSIDE_ADDR), IpAddr::from(OUTSIDE_ADDR6)].iter().enumerate() {
        let ran = under_library(lab.client(&dig))
            .args([&server, "+short", "+time=5", "+tries=1", "-x", &ip.to_string()])
            .run();
        assert!(
            ran.success() && ran.stdout_text() == answer,
            "dig {server} -x {ip} must answer {WWW} through sockd\n{}",
            ran.describe()
        );
        assert_associated(&ran);
        // One query out, one answer back; DNS message sizes vary, so bytes are only non-zero.
        let line = udp_sessions(&sockd, n + 1).swap_remove(n);
        let session = UdpSession::parse(&line);
        assert!(
            session.datagrams_sent == 1
                && session.datagrams_received == 1
                && session.sent > 12
                && session.received > session.sent
                && session.dropped == [0; 5],
            "dig's association must carry one query and one answer: {line}"
        );
    }
    let queries: Vec<String> = [IpAddr::from(OUTSIDE_ADDR), IpAddr::from(OUTSIDE_ADDR6)]
        .iter()
        .flat_map(|ip| dns.queries_for(&dns::reverse_name(*ip)))
        .collect();
    assert_eq!(queries.len(), 2, "the outside DNS must have answered dig twice: {queries:?}");
    for line in dns.all_queries() {
        assert!(
            line.ends_with(&format!("from {FW_OUTSIDE_ADDR}")),
            "the outside DNS must only hear from the firewall: {line}"
        );
    }
    leaks.assert_only_sockd_udp("dig @outside-dns");
}

#[test]
fn socat_and_nc_echo_round_trips() {
    let Some((lab, leaks, sockd)) = udp_lab("udp-socat-nc") else { return };
    let echo = lab.udp_echo(7);
    let target = echo.addr().to_string();

    let payload = "hello from socat through the firewall\n";
    let ran = under_library(lab.client(paths::require("socat", "socat")))
        .args(["-t", "2", "-T", "10", "-", &format!("UDP4:{target}")])
        .stdin(payload)
        .run();
    assert!(
        ran.success() && ran.stdout_text() == payload,
        "socat must get its datagram echoed\n{}",
        ran.describe()
    );
    assert_associated(&ran);
    assert_udp_session(&sockd, 1, &UdpSession::clean(1, payload.len() as u64));

    let payload = "hello from nc -u through the firewall\n";
    let ran = under_library(lab.client(paths::require("nc", "netcat-openbsd")))
        .args(["-u", "-w", "2", &OUTSIDE_ADDR.to_string(), &echo.addr().port().to_string()])
        .stdin(payload)
        .run();
    assert!(
        ran.success() && ran.stdout_text() == payload,
        "nc -u must get its datagram echoed\n{}",
        ran.describe()
    );
    assert_associated(&ran);
    assert_udp_session(&sockd, 2, &UdpSession::clean(1, payload.len() as u64));

    assert_relayed(&echo, 2);
    leaks.assert_only_sockd_udp("socat and nc -u");
}

#[test]
fn python_two_destinations_on_one_socket() {
    let Some((lab, leaks, sockd)) = udp_lab("udp-two-destinations") else { return };
    lab.net.add_address(Ns::Outside, Ns::Fw, &format!("{OUTSIDE_ADDR_B}/24"));
    let a = lab.udp_echo(7);
    let b = lab.udp_echo_in(Ns::Outside, SocketAddr::from((OUTSIDE_ADDR_B, 5353)));
    let script = format!(
        r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
a, b = ("{a_ip}", {a_port}), ("{b_ip}", {b_port})
s.sendto(b"first to a", a)
s.sendto(b"first to b", b)
s.sendto(b"second to a", a)
got = []
for _ in range(3):
    data, source = s.recvfrom(65535)
    got.append(f"{{data.decode()}} <- {{source[0]}}:{{source[1]}}")
for line in sorted(got):
    print(line)
"#,
        a_ip = OUTSIDE_ADDR,
        a_port = a.addr().port(),
        b_ip = OUTSIDE_ADDR_B,
        b_port = b.addr().port()
    );
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success(), "python3 with two destinations\n{}", ran.describe());
    let (a_addr, b_addr) = (a.addr(), b.addr());
    assert_eq!(
        ran.stdout_text(),
        format!("first to a <- {a_addr}\nfirst to b <- {b_addr}\nsecond to a <- {a_addr}\n"),
        "every reply must come from the destination it was sent to\n{}",
        ran.describe()
    );
    assert_associated(&ran);
    assert_udp_session(&sockd, 1, &UdpSession::clean(3, 10 + 10 + 11));
    assert_relayed(&a, 2);
    assert_relayed(&b, 1);
    leaks.assert_only_sockd_udp("python3, two destinations on one socket");
}

#[test]
fn python_connected_socket_and_polling() {
    let Some((lab, leaks, sockd)) = udp_lab("udp-connected-poll") else { return };
    let echo = lab.udp_echo(7);
    let (ip, port) = (OUTSIDE_ADDR, echo.addr().port());

    // connect, then send/recv, os.write/os.read and recvfrom; getpeername names the echo server,
    // getsockname the workstation's address (the socket is connected to the relay; the
    // supervisor shows the same, supervised_udp.rs).
    let script = format!(
        r#"
import os, select, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)  # non-blocking underneath: os.read waits with select first
s.connect(("{ip}", {port}))
print("peer", s.getpeername())
print("local", s.getsockname()[0])
s.send(b"send")
print("recv", s.recv(100))
os.write(s.fileno(), b"write")
select.select([s], [], [], 10)
print("read", os.read(s.fileno(), 100))
s.send(b"then recvfrom")
data, source = s.recvfrom(100)
print("recvfrom", data, source)
"#
    );
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success(), "python3 connected UDP socket\n{}", ran.describe());
    assert_eq!(
        ran.stdout_text(),
        format!(
            "peer ('{ip}', {port})\nlocal {INSIDE_ADDR}\nrecv b'send'\nread b'write'\n\
             recvfrom b'then recvfrom' ('{ip}', {port})\n"
        ),
        "{}",
        ran.describe()
    );
    assert_associated(&ran);
    assert_udp_session(&sockd, 1, &UdpSession::clean(3, 4 + 5 + 13));

    // A non-blocking socket: nothing to read at first (EAGAIN, select says not readable); each
    // reply wakes select, poll and epoll in turn.
    let script = format!(
        r#"
import select, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
dst = ("{ip}", {port})
s.sendto(b"select", dst)
r, _, _ = select.select([s], [], [], 10)
print("select readable", r == [s], s.recvfrom(100))
try:
    s.recvfrom(100)
    print("empty: data?")
except BlockingIOError:
    print("empty: EAGAIN")
print("select now", select.select([s], [], [], 0)[0])
p = select.poll()
p.register(s, select.POLLIN)
s.sendto(b"poll", dst)
events = p.poll(10000)
print("poll", [(fd == s.fileno(), ev & select.POLLIN != 0) for fd, ev in events], s.recvfrom(100))
e = select.epoll()
e.register(s.fileno(), select.EPOLLIN)
s.sendto(b"epoll", dst)
events = e.poll(10)
print("epoll", [(fd == s.fileno(), ev & select.EPOLLIN != 0) for fd, ev in events], s.recvfrom(100))
"#
    );
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success(), "python3 polling a UDP socket\n{}", ran.describe());
    let from = format!("('{ip}', {port})");
    assert_eq!(
        ran.stdout_text(),
        format!(
            "select readable True (b'select', {from})\nempty: EAGAIN\nselect now []\n\
             poll [(True, True)] (b'poll', {from})\nepoll [(True, True)] (b'epoll', {from})\n"
        ),
        "{}",
        ran.describe()
    );
    assert_associated(&ran);
    assert_udp_session(&sockd, 2, &UdpSession::clean(3, 6 + 4 + 5));

    assert_relayed(&echo, 6);
    leaks.assert_only_sockd_udp("a connected UDP socket and select/poll/epoll");
}

#[test]
fn udp_by_name_replies_from_the_fake_address() {
    let Some((lab, leaks, dns, sockd)) = dns::names_lab("udp-by-name") else { return };
    let echo = lab.udp_echo(7);
    let port = echo.addr().port();
    let (name, connected_name) = (format!("udp-echo.{MANY}"), format!("udp-connected.{MANY}"));
    let script = format!(
        r#"
import ipaddress, socket
fake = socket.getaddrinfo("{name}", {port}, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
print("fake", ipaddress.ip_address(fake[0]) in ipaddress.ip_network("198.18.0.0/15"))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.sendto(b"to a name", fake)
data, source = s.recvfrom(100)
print(data.decode(), "from the fake", source == fake)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(10)
c.connect(("{connected_name}", {port}))
peer = c.getpeername()
print("connected peer is a fake", ipaddress.ip_address(peer[0]) in ipaddress.ip_network("198.18.0.0/15"))
c.send(b"connected to a name")
print(c.recv(100).decode())
print("reverse", socket.gethostbyaddr(peer[0])[0])
"#
    );
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success(), "python3 UDP by name\n{}", ran.describe());
    assert_eq!(
        ran.stdout_text(),
        format!(
            "fake True\nto a name from the fake True\nconnected peer is a fake True\n\
             connected to a name\nreverse {connected_name}\n"
        ),
        "{}",
        ran.describe()
    );
    assert_associated(&ran);
    // Two sockets, two associations; which closes first is up to python's teardown.
    let mut sessions: Vec<UdpSession> =
        udp_sessions(&sockd, 2).iter().map(|l| UdpSession::parse(l)).collect();
    sessions.sort_by_key(|s| s.sent);
    assert_eq!(sessions, [UdpSession::clean(1, 9), UdpSession::clean(1, 19)], "{}", sockd.log());
    // sockd resolved the names with the outside DNS; the workstation asked nobody.
    for n in [&name, &connected_name] {
        let queries = dns.queries_for(n);
        assert!(
            !queries.is_empty()
                && queries.iter().all(|q| q.ends_with(&format!("from {FW_OUTSIDE_ADDR}"))),
            "sockd must resolve {n} with the outside DNS: {queries:?}"
        );
    }
    assert_relayed(&echo, 2);
    leaks.assert_only_sockd_udp("UDP by name");
}

#[test]
fn too_large_datagram_fails_with_emsgsize() {
    let Some((lab, leaks, sockd)) = udp_lab("udp-emsgsize") else { return };
    let echo = lab.udp_echo(7);
    // With the 10-byte SOCKS5 header for an IPv4 destination, 65,497 bytes is the largest
    // payload that still fits in one UDP datagram (65,507 bytes over IPv4).
    let script = format!(
        r#"
import errno, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
dst = ("{OUTSIDE_ADDR}", {port})
big = bytes(i % 251 for i in range(65497))
print("sent", s.sendto(big, dst))
data, source = s.recvfrom(65535)
print("echoed whole", data == big, source == dst)
try:
    s.sendto(big + b"x", dst)
    print("65498: sent?")
except OSError as e:
    print("65498:", errno.errorcode[e.errno])
s.sendto(b"still fine", dst)
print(s.recvfrom(100)[0].decode())
"#,
        port = echo.addr().port()
    );
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success(), "python3 EMSGSIZE\n{}", ran.describe());
    assert_eq!(
        ran.stdout_text(),
        "sent 65497\nechoed whole True True\n65498: EMSGSIZE\nstill fine\n",
        "{}",
        ran.describe()
    );
    assert_udp_session(&sockd, 1, &UdpSession::clean(2, 65497 + 10));
    let datagrams = assert_relayed(&echo, 2);
    assert_eq!(datagrams[0].len, 65497, "{datagrams:?}");
    leaks.assert_only_sockd_udp("EMSGSIZE");
}

#[test]
fn node_dgram() {
    let Some((lab, leaks, sockd)) = udp_lab("udp-node") else { return };
    let echo = lab.udp_echo(7);
    let script = format!(
        r#"
const dgram = require("dgram");
const s = dgram.createSocket("udp4");
const timer = setTimeout(() => {{ console.error("timeout"); process.exit(2); }}, 10000);
s.on("error", (e) => {{ console.error(`error ${{e.code}} ${{e.message}}`); process.exit(1); }});
s.on("message", (msg, rinfo) => {{
  console.log(`${{msg}} from ${{rinfo.address}}:${{rinfo.port}}`);
  clearTimeout(timer);
  s.close();
}});
s.send("hello from node dgram", {port}, "{OUTSIDE_ADDR}");
"#,
        port = echo.addr().port()
    );
    let ran =
        under_library(lab.client(paths::require("node", "nodejs")).args(["-e", &script])).run();
    assert!(ran.success(), "node dgram\n{}", ran.describe());
    assert_eq!(
        ran.stdout_text(),
        format!("hello from node dgram from {}\n", echo.addr()),
        "{}",
        ran.describe()
    );
    assert_associated(&ran);
    assert_udp_session(&sockd, 1, &UdpSession::clean(1, 21));
    assert_relayed(&echo, 1);
    leaks.assert_only_sockd_udp("node dgram");
}

/// A python3 client sending `count` datagrams to `dst` on one socket and printing each reply
/// with its source.
fn echo_script(dst: SocketAddr, count: usize) -> String {
    format!(
        r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
for i in range({count}):
    s.sendto(f"datagram {{i}}".encode(), ("{ip}", {port}))
    data, source = s.recvfrom(65535)
    print(data.decode(), "<-", f"{{source[0]}}:{{source[1]}}")
"#,
        ip = dst.ip(),
        port = dst.port()
    )
}

/// What [`echo_script`] prints when every reply comes back from `dst`.
fn echo_expected(dst: SocketAddr, count: usize) -> String {
    (0..count).map(|i| format!("datagram {i} <- {dst}\n")).collect()
}

#[test]
fn library_udp_through_danted() {
    let Some(lab) = Lab::new("udp-danted") else { return };
    let leaks = LeakCounter::install(&lab);
    let danted = lab.danted();
    let echo = lab.udp_echo(7);
    let ran = under_library(lab.python(&echo_script(echo.addr(), 3))).run();
    assert!(
        ran.success() && ran.stdout_text() == echo_expected(echo.addr(), 3),
        "python3 UDP through danted\n{}\n--- danted ---\n{}",
        ran.describe(),
        danted.log()
    );
    assert_associated(&ran);
    assert_relayed(&echo, 3);
    // danted's own account when the association ends: 3 datagrams each way, 60 bytes with the
    // SOCKS5 header on the client side, the 30 payload bytes on the outside.
    danted.wait_line(
        &[
            "udp/udpassociate ]: 60/3 -> 192.0.2.2.",
            "30/3 -> 198.51.100.1.",
            &format!(" {} -> 30/3", echo.addr().to_string().replace(':', ".")),
        ],
        STARTUP,
    );
    leaks.assert_only_sockd_udp("python3 UDP through danted");
}

/// Dante's client (1.4.2) sends UDP for a program that uses `sendto`/`recvfrom` itself, so the
/// client here is python3. dig does not work under it: Dante sets up the association and
/// connects dig's socket to the relay, but dig's query (sent by libuv, evidently past Dante's
/// hooks) reaches the relay without a SOCKS5 header, and sockd drops it as malformed
/// (`datagrams-sent=0 … dropped-malformed=1`); dig times out.
#[test]
fn dante_socksify_udp_through_sockd() {
    let Some((lab, leaks, sockd)) = udp_lab("udp-dante-client") else { return };
    let echo = lab.udp_echo(7);
    let conf = lab.write(
        "dante.conf",
        format!(
            "# Dante's client: everything through our sockd, SOCKS5\n\
             logoutput: stderr\n\
             route {{\n\
             \tfrom: 0.0.0.0/0 to: 0.0.0.0/0 via: {FW_INSIDE_ADDR} port = {SOCKS_PORT}\n\
             \tproxyprotocol: socks_v5\n\
             \tmethod: none\n\
             }}\n"
        ),
    );
    let socksify = paths::require("socksify", "dante-client");
    let python = paths::require("python3", "python3");
    let ran = lab
        .client(&socksify)
        .args([python.as_os_str(), "-c".as_ref(), echo_script(echo.addr(), 3).as_ref()])
        .env("SOCKS_CONF", conf.display().to_string())
        .env("SOCKS_AUTOADD_LANROUTES", "no")
        .run();
    assert!(
        ran.success() && ran.stdout_text() == echo_expected(echo.addr(), 3),
        "python3 under Dante's socksify, UDP through sockd\n{}\n--- sockd ---\n{}",
        ran.describe(),
        sockd.log()
    );
    assert_udp_session(&sockd, 1, &UdpSession::clean(3, 30));
    // Dante's client declares its socket's address and port (not zeros): sockd locks to it.
    let line = sockd.wait_line(&["udp:", "cmd=udp-associate"], STARTUP);
    let declared = format!("dst={INSIDE_ADDR}:");
    let port = line.split_whitespace().find_map(|t| t.strip_prefix(declared.as_str()));
    assert!(
        port.is_some_and(|p| p != "0"
            && (line.contains(&format!("locked-to={INSIDE_ADDR}:{p} "))
                || line.ends_with(&format!("locked-to={INSIDE_ADDR}:{p}")))),
        "Dante's client must declare its socket and sockd lock to it: {line}"
    );
    assert_relayed(&echo, 3);
    leaks.assert_only_sockd_udp("python3 UDP under Dante's socksify");
}

/// A sockd in `fw` that requires RFC 1929 logins: `alice`, password `alice-pw`.
fn sockd_with_users(lab: &Lab) -> Daemon {
    let conf = lab.write("sockd-users.conf", PERMIT_INSIDE);
    let users = lab.write("users", "alice:alice-pw\n");
    let listen = format!("{FW_INSIDE_ADDR}:{SOCKS_PORT}");
    let sockd = Daemon::spawn(
        lab.ns(Ns::Fw),
        "sockd:users",
        &paths::sockd(),
        &[
            "-l",
            &listen,
            "-f",
            &conf.display().to_string(),
            "--users",
            &users.display().to_string(),
        ],
    );
    sockd.wait_line(&["listening on", &listen], STARTUP);
    sockd
}

/// With a password the library declares its socket (bound first if the program has not: the
/// program here never binds), and sockd locks the relay to that socket's address and port.
/// A socket bound to a second address of the workstation has the control connection leave
/// from that address too, so sockd sees the declared address as the client's own. (Neighbours
/// spraying a locked relay: sockd/tests/udp_hostile.rs.)
#[test]
fn authenticated_association_is_locked_to_the_programs_socket() {
    let Some((lab, leaks)) = Lab::new("udp-declared").map(|lab| {
        let leaks = LeakCounter::install(&lab);
        (lab, leaks)
    }) else {
        return;
    };
    let sockd = sockd_with_users(&lab);
    let echo = lab.udp_echo(7);
    let second = Ipv4Addr::new(192, 0, 2, 3);
    lab.net.add_address(Ns::Inside, Ns::Fw, &format!("{second}/24"));
    for (n, bind) in [None, Some(second)].into_iter().enumerate() {
        let bind_line = bind.map_or_else(String::new, |ip| format!("s.bind((\"{ip}\", 0))"));
        let script = format!(
            r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
{bind_line}
s.settimeout(10)
s.sendto(b"datagram 0", ("{ip}", {port}))
data, source = s.recvfrom(65535)
print(data.decode(), "<-", f"{{source[0]}}:{{source[1]}}")
print("port", s.getsockname()[1])
"#,
            ip = echo.addr().ip(),
            port = echo.addr().port()
        );
        let ran = under_library(lab.client(paths::require("python3", "python3")))
            .env("SOCKS_USERNAME", "alice")
            .env("SOCKS_PASSWORD", "alice-pw")
            .args(["-c", &script])
            .run();
        let port = ran
            .stdout_text()
            .lines()
            .find_map(|l| l.strip_prefix("port "))
            .and_then(|p| p.parse::<u16>().ok());
        assert!(
            ran.success()
                && ran.stdout_text().starts_with(&echo_expected(echo.addr(), 1))
                && port.is_some(),
            "python3 with a password, UDP through sockd, socket bound to {bind:?}\n{}\n--- sockd ---\n{}",
            ran.describe(),
            sockd.log()
        );
        let from = bind.unwrap_or(INSIDE_ADDR);
        let locked = format!("locked-to={from}:{}", port.unwrap_or_default());
        let line = sockd.wait_line(&["udp:", "user=alice", "cmd=udp-associate", &locked], STARTUP);
        assert!(
            line.contains(&format!("client={from}:"))
                && line.contains(&format!("relay on {FW_INSIDE_ADDR}:")),
            "{line}"
        );
        let closed =
            sockd.wait_lines(&["closed:", "user=alice", "cmd=udp-associate"], n + 1, STARTUP);
        assert_eq!(UdpSession::parse(&closed[n]), UdpSession::clean(1, 10), "{}", closed[n]);
    }
    assert_relayed(&echo, 2);
    leaks.assert_only_sockd_udp("python3 UDP with a password");
}

/// Dante's client with a username and password (`method: username`, `SOCKS_USERNAME` and
/// `SOCKS_PASSWORD`) against a sockd that checks them: it declares its socket's address and
/// port, which is what sockd requires of an authenticated association.
#[test]
fn dante_socksify_udp_with_a_password() {
    let Some(lab) = Lab::new("udp-dante-password") else { return };
    let leaks = LeakCounter::install(&lab);
    let sockd = sockd_with_users(&lab);
    let echo = lab.udp_echo(7);
    let conf = lab.write(
        "dante.conf",
        format!(
            "# Dante's client: everything through our sockd, SOCKS5 with a password\n\
             logoutput: stderr\n\
             route {{\n\
             \tfrom: 0.0.0.0/0 to: 0.0.0.0/0 via: {FW_INSIDE_ADDR} port = {SOCKS_PORT}\n\
             \tproxyprotocol: socks_v5\n\
             \tmethod: username\n\
             }}\n"
        ),
    );
    let socksify = paths::require("socksify", "dante-client");
    let python = paths::require("python3", "python3");
    let ran = lab
        .client(&socksify)
        .args([python.as_os_str(), "-c".as_ref(), echo_script(echo.addr(), 3).as_ref()])
        .env("SOCKS_CONF", conf.display().to_string())
        .env("SOCKS_AUTOADD_LANROUTES", "no")
        .env("SOCKS_USERNAME", "alice")
        .env("SOCKS_PASSWORD", "alice-pw")
        .run();
    assert!(
        ran.success() && ran.stdout_text() == echo_expected(echo.addr(), 3),
        "python3 under Dante's socksify with a password, UDP through sockd\n{}\n--- sockd ---\n{}",
        ran.describe(),
        sockd.log()
    );
    let line = sockd.wait_line(&["udp:", "user=alice", "cmd=udp-associate"], STARTUP);
    assert!(
        line.contains(&format!("locked-to={INSIDE_ADDR}:")) && !line.contains("first-datagram"),
        "{line}"
    );
    assert_udp_session(&sockd, 1, &UdpSession::clean(3, 30));
    assert_relayed(&echo, 3);
    leaks.assert_only_sockd_udp("python3 UDP under Dante's socksify with a password");
}
