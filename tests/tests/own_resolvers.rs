//! Programs with their own DNS clients under libsocks.so (issue 16, part 2), end to end, in the
//! lab of names.rs: sockd on the firewall, dnsmasq outside (`www.example.test`), and the
//! workstation's resolver (resolv.conf's 192.0.2.53) answering nothing. dig without `@`, a C
//! program doing each socket pattern resolvers use (`tests/c/ownresolver.c`), and Node's
//! `dns.resolve4` (c-ares) send their queries to port 53 themselves; the library must answer
//! those for names resolved on the far side (a fake address for A, an empty NOERROR for other
//! types, the name for a fake address's PTR) with no packet leaving the workstation, and pass
//! every other query to the real name server as before (here the LAN's own dnsmasq on
//! 192.0.2.53 for a `direct .corp.example` domain). Also: the socket after the query (connected
//! to a relayed peer), an IPv6 server, fork, dup and AF_UNSPEC, and DNS over TCP (`dig +tcp`),
//! which the library answers the same way (a listener of its own on loopback, queries read
//! after each write, other queries forwarded to the real server on a connection of its own).
//!
//! Not here: getaddrinfo and the res_* calls (names.rs, holes.rs), dig @server through sockd
//! (names.rs), programs under the supervisor (supervised_names.rs), Chromium (runtimes.rs).
//! musl programs are not here either: a musl binary cannot load a glibc preload library, so
//! `socksify` runs them under the supervisor.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;

use socks_e2e::build::build_c;
use socks_e2e::dns::{self, Dnsmasq, WWW};
use socks_e2e::*;

/// The intranet name a `direct .corp.example` line keeps local, and its address on the LAN.
const INTRANET: &str = "intranet.corp.example";
const INTRANET_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);

/// The LAN's own name server on 192.0.2.53 (what resolv.conf names), knowing the intranet, and
/// a socks.conf keeping `.corp.example` and the LAN direct.
fn with_lan(lab: &Lab) -> (Dnsmasq, PathBuf) {
    let lan = dns::inside_lan_dns(
        lab,
        &[format!("--host-record={INTRANET},{INTRANET_IP}"), "--local=/corp.example/".to_owned()],
    );
    let conf = lab.write(
        "socks.conf",
        format!(
            "# intranet names resolve on the LAN, everything else on the far side\n\
             direct .corp.example\n\
             direct 192.0.2.0/24\n\
             sockd @={SERVER} 0.0.0.0/0\n"
        ),
    );
    (lan, conf)
}

/// `client` under the library with `SOCKS_SERVER` only (every name resolved on the far side).
fn under_library(client: Client) -> Client {
    client.env("SOCKS_SERVER", SERVER).env("SOCKS_LOG", "debug").env("no_proxy", "*").ld_preload()
}

/// Whether `text` is an address in the default fake range 198.18.0.0/15.
fn is_fake(text: &str) -> bool {
    match text.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => matches!(v4.octets(), [198, 18 | 19, _, _]),
        _ => false,
    }
}

/// Asserts that nothing at all left the workstation (no DNS packet to 192.0.2.53 either).
fn assert_nothing_left(leaks: &LeakCounter, what: &str) {
    let (v4, v6) = leaks.leaked_destinations();
    assert!(v4.is_empty() && v6.is_empty(), "{what}: nothing may leave\n{}", leaks.table());
}

#[test]
fn dig_without_a_server_is_answered_by_the_library() {
    let Some((lab, leaks, outside, _sockd)) = dns::names_lab("own-dig") else { return };
    let dig = paths::require("dig", "dnsutils");
    let dig = |args: &[&str]| {
        let mut all = vec!["+time=3", "+tries=1"];
        all.extend_from_slice(args);
        under_library(lab.client(&dig)).args(all).run()
    };
    let ran = dig(&["+short", WWW]);
    let answer = ran.stdout_text();
    assert!(
        ran.success() && is_fake(&answer),
        "dig {WWW} must get a fake address from the library\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("dns: answered {WWW} A from the library"))
            && ran.stdout_text().lines().count() == 1,
        "{}",
        ran.describe()
    );
    // The reverse lookup of that address (in the same process: the fake map is per process
    // tree), then of a fake address never handed out, then an MX and an AAAA question.
    let fake = answer.trim().to_owned();
    let unknown = "198.18.255.254";
    let ran = dig(&["+short", WWW, "-x", &fake, "-x", unknown]);
    assert!(
        ran.success() && ran.stdout_text() == format!("{fake}\n{WWW}.\n"),
        "dig -x {fake} must give {WWW} back, -x {unknown} nothing\n{}",
        ran.describe()
    );
    for (kind, status) in [("MX", "NOERROR"), ("AAAA", "NOERROR")] {
        let ran = dig(&["-t", kind, WWW]);
        let text = ran.stdout_text();
        assert!(
            ran.success()
                && text.contains(&format!("status: {status}"))
                && text.contains("ANSWER: 0,"),
            "dig {kind} {WWW}: {status} with no record (fake-families ipv4)\n{}",
            ran.describe()
        );
    }
    let ran = dig(&["-x", unknown]);
    assert!(
        ran.stdout_text().contains("status: NXDOMAIN"),
        "a fake address never handed out: NXDOMAIN\n{}",
        ran.describe()
    );
    assert!(outside.all_queries().is_empty(), "nothing was asked of any name server");
    assert_nothing_left(&leaks, "dig answered by the library");
}

#[test]
fn a_direct_name_still_goes_to_the_lan_name_server() {
    let Some((lab, leaks, outside, _sockd)) = dns::names_lab("own-direct") else { return };
    let (lan, conf) = with_lan(&lab);
    let dig = paths::require("dig", "dnsutils");
    let ran = lab
        .client(&dig)
        .args(["+short", "+time=3", "+tries=1", INTRANET, WWW])
        .env("SOCKS_CONF", conf.display().to_string())
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .run();
    let lines: Vec<String> = ran.stdout_text().lines().map(str::to_owned).collect();
    assert!(
        ran.success()
            && lines.len() == 2
            && lines[0] == INTRANET_IP.to_string()
            && is_fake(&lines[1]),
        "{INTRANET} from the LAN's name server, {WWW} a fake address\n{}",
        ran.describe()
    );
    assert!(
        !lan.queries_for(INTRANET).is_empty() && lan.queries_for(WWW).is_empty(),
        "the LAN's server must hear the intranet name only:\n{}",
        lan.daemon.log()
    );
    assert!(outside.all_queries().is_empty(), "the outside name server was never asked");
    let (v4, v6) = leaks.leaked_destinations();
    assert!(
        v4 == [format!("{} . udp . 53", DEAD_DNS_ADDR)] && v6.is_empty(),
        "only the intranet query went to the LAN's server:\n{}",
        leaks.table()
    );
}

/// Builds `tests/c/ownresolver.c` into the lab's directory, with _FORTIFY_SOURCE as Debian
/// builds its packages (a read whose length the compiler cannot check calls __read_chk).
fn ownresolver(lab: &Lab) -> PathBuf {
    build_c(lab.dir.path(), "ownresolver", &["-D_FORTIFY_SOURCE=2"])
}

#[test]
fn every_socket_pattern_of_a_resolver_gets_the_answer() {
    let Some((lab, leaks, _outside, _sockd)) = dns::names_lab("own-patterns") else { return };
    let program = ownresolver(&lab);
    let server = DEAD_DNS_ADDR.to_string();
    let patterns = [
        "connect",
        "sendto",
        "mmsg",
        "signal",
        "signalnested",
        "epoll",
        "thirdparty",
        "v6",
        "unspec",
        "reused",
        "many",
    ];
    let mut args = vec![server.clone(), WWW.to_owned()];
    args.extend(patterns.iter().map(|p| (*p).to_owned()));
    let ran = under_library(lab.client(&program)).args(&args).run();
    let text = ran.stdout_text();
    let line = |prefix: &str| -> String {
        text.lines().find(|l| l.starts_with(prefix)).unwrap_or_default().to_owned()
    };
    // The pattern's answer line: "PATTERN: ADDRESS from SOURCE".
    let fake_from = |prefix: &str, source: &str| {
        text.lines().filter_map(|l| l.strip_prefix(prefix)).any(|rest| {
            rest.split_once(" from ")
                .is_some_and(|(address, from)| is_fake(address) && from == source)
        })
    };
    let v4_server = format!("{server}:53");
    let v6_server = format!("[::ffff:{server}]:53");
    assert!(ran.success(), "ownresolver under the library\n{}", ran.describe());
    assert_eq!(line("connect: peer "), format!("connect: peer {v4_server}"), "{}", ran.describe());
    // Its own address is the one a real connect picks from the route (not the wildcard).
    let own = line("connect: own ");
    assert!(
        own.starts_with(&format!("connect: own {INSIDE_ADDR}:")) && !own.ends_with(":0"),
        "getsockname after the connect: {own}\n{}",
        ran.describe()
    );
    assert!(fake_from("connect: ", &v4_server), "connect+send+poll+recvfrom\n{}", ran.describe());
    assert!(fake_from("sendto: ", &v4_server), "unconnected sendto\n{}", ran.describe());
    assert!(fake_from("signal: ", &v4_server), "inside a signal handler\n{}", ran.describe());
    // A handler that interrupted the library (the program waiting in recv inside its hook):
    // the query cannot be read there, so its send fails with EAGAIN (and nothing is sent).
    assert_eq!(
        line("signalnested: "),
        "signalnested: recv EINTR, the handler's sendto -1 EAGAIN",
        "{}",
        ran.describe()
    );
    assert!(fake_from("mmsg: A ", &v4_server), "sendmmsg+recvmmsg\n{}", ran.describe());
    assert_eq!(line("mmsg: MX "), format!("mmsg: MX none from {v4_server}"), "{}", ran.describe());
    assert!(is_fake(line("epoll: ").trim_start_matches("epoll: ").trim_end_matches(" by read")));
    assert!(
        line("thirdparty: ").ends_with(", the intruder never read"),
        "a datagram from a third party to a virtually connected socket is dropped\n{}",
        ran.describe()
    );
    assert_eq!(line("v6: peer "), format!("v6: peer {v6_server}"), "{}", ran.describe());
    assert!(fake_from("v6: ", &v6_server), "IPv6 socket, IPv4 server\n{}", ran.describe());
    // Asked again after a disconnect freed the port the library had bound: answered again
    // (the address the library keeps for the socket's receives is not the old one).
    let unspec = text.lines().filter(|l| l.starts_with("unspec: ")).collect::<Vec<_>>();
    assert!(
        unspec.len() == 2 && fake_from("unspec: ", &v4_server) && !text.contains("unspec: FAIL"),
        "a query, connect AF_UNSPEC, a query\n{}",
        ran.describe()
    );
    // A number closed behind the library's back and reused by a new socket is not the DNS
    // socket any more: the identity check each receive makes (one fstat) lets its datagrams in.
    assert_eq!(
        line("reused: "),
        "reused: hello read on the new socket",
        "a new socket on a DNS socket's old number\n{}",
        ran.describe()
    );
    let many = line("many: ");
    assert!(
        many.ends_with(" (100 answers)")
            && is_fake(many.trim_start_matches("many: ").trim_end_matches(" (100 answers)")),
        "100 queries and answers on one socket\n{}",
        ran.describe()
    );
    assert_nothing_left(&leaks, "the socket patterns");

    // Without the library the same program asks 192.0.2.53, which answers nothing.
    let ran = lab.client(&program).args([server.as_str(), WWW, "connect"]).run();
    assert!(
        !ran.success() && ran.stdout_text().contains("connect: FAIL"),
        "without the library the query goes to the dead resolver\n{}",
        ran.describe()
    );
    let (v4, _) = leaks.leaked_destinations();
    assert_eq!(v4, [format!("{DEAD_DNS_ADDR} . udp . 53")], "{}", leaks.table());
}

/// The library must filter every way of reading a datagram, or a program reading its virtually
/// connected DNS socket another way reads what a third party sent it: a forged answer, which
/// the kernel would have dropped on a really connected socket.
#[test]
fn a_forged_answer_is_never_read_whichever_way_the_program_reads() {
    let Some((lab, leaks, _outside, _sockd)) = dns::names_lab("own-forged") else { return };
    let program = ownresolver(&lab);
    // The fortified entry points are what the program really calls (else this proves nothing).
    let nm = Command::new(paths::require("nm", "binutils")).arg("-D").arg(&program).output();
    let symbols = String::from_utf8_lossy(&nm.expect("nm runs").stdout).into_owned();
    for symbol in ["readv", "preadv2", "__read_chk", "__recv_chk", "__recvfrom_chk"] {
        assert!(symbols.contains(&format!(" {symbol}@")), "ownresolver calls {symbol}\n{symbols}");
    }
    let server = DEAD_DNS_ADDR.to_string();
    let ran = under_library(lab.client(&program)).args([&server, WWW, "readv", "spurious"]).run();
    let text = ran.stdout_text();
    assert!(!text.contains("FORGED"), "a forged answer was read\n{}", ran.describe());
    for way in ["readv", "preadv2", "read_chk", "recv_chk"] {
        let answered =
            text.lines().any(|l| l.strip_prefix(&format!("{way}: ")).is_some_and(is_fake));
        assert!(answered, "{way}: the library's answer, not the forged one\n{}", ran.describe());
    }
    let from = text.lines().find_map(|l| l.strip_prefix("recvfrom_chk: ")).unwrap_or_default();
    assert!(
        from.split_once(" from ")
            .is_some_and(|(ip, source)| is_fake(ip) && source == format!("{server}:53")),
        "recvfrom_chk: the library's answer, from the server\n{}",
        ran.describe()
    );
    // Readiness from the forged datagram: a non-blocking receive says EAGAIN, a blocking one
    // waits for the real answer (300 ms later), never EAGAIN.
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("spurious: ")).collect();
    let waited = lines
        .iter()
        .find_map(|l| l.strip_prefix("spurious: blocking waited "))
        .and_then(|rest| rest.strip_suffix(" ms, then"))
        .and_then(|ms| ms.parse::<u64>().ok());
    assert!(
        lines.len() == 4
            && lines[0] == "spurious: non-blocking EAGAIN, then"
            && is_fake(lines[1].trim_start_matches("spurious: "))
            && waited.is_some_and(|ms| (250..5000).contains(&ms))
            && is_fake(lines[3].trim_start_matches("spurious: ")),
        "poll readiness from a third party's datagram\n{}",
        ran.describe()
    );
    assert!(ran.success(), "{}", ran.describe());
    assert_nothing_left(&leaks, "forged answers");
}

#[test]
fn node_resolves_by_itself_and_reaches_the_address_through_sockd() {
    let Some((lab, leaks, outside, sockd)) = dns::names_lab("own-node") else { return };
    let (lan, conf) = with_lan(&lab);
    let www = dns::http_dual(&lab, 80);
    let script = format!(
        r#"
const dns = require("dns");
const http = require("http");
dns.resolve4("{INTRANET}", (err, lan) => {{
  if (err) {{ console.error(`intranet: ${{err.code}}`); process.exit(1); }}
  console.log(`intranet: ${{lan.join(",")}}`);
  dns.resolve4("{WWW}", (err, addrs) => {{
    if (err) {{ console.error(`resolve4: ${{err.code}}`); process.exit(1); }}
    console.log(`resolve4: ${{addrs.join(",")}}`);
    const req = http.get({{ host: addrs[0], port: 80, path: "/node-own", headers: {{ Host: "{WWW}" }} }}, (res) => {{
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => process.stdout.write(`http: ${{Buffer.concat(chunks)}}`));
    }});
    req.setTimeout(15000, () => {{ console.error("timeout"); process.exit(2); }});
    req.on("error", (e) => {{ console.error(`error ${{e.code}}`); process.exit(1); }});
  }});
}});
"#
    );
    let ran = lab
        .client(paths::require("node", "nodejs"))
        .args(["-e", &script])
        .env("SOCKS_CONF", conf.display().to_string())
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .run();
    let text = ran.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        ran.success()
            && lines.len() == 3
            && lines[0] == format!("intranet: {INTRANET_IP}")
            && is_fake(lines[1].trim_start_matches("resolve4: "))
            && lines[2] == "http: hello from outside: /node-own",
        "node: dns.resolve4 of a direct name from the LAN, of {WWW} a fake address, and \
         http.get to it through sockd\n{}",
        ran.describe()
    );
    let dst = format!("dst={WWW}:80 ");
    sockd.wait_lines(&["closed:", &format!("client={INSIDE_ADDR}:"), &dst], 1, STARTUP);
    dns::assert_relayed([&www[0], &www[1]]);
    dns::assert_no_fake_destination(&sockd);
    assert!(lan.queries_for(WWW).is_empty(), "{WWW} never asked locally:\n{}", lan.daemon.log());
    outside.assert_asked_only_by_firewall();
    leaks.assert_only_sockd_and("node's own resolver", &[format!("{DEAD_DNS_ADDR} . udp . 53")]);
}

#[test]
fn the_socket_is_the_programs_after_the_query() {
    // A connect to a name server, then to a real UDP peer on the same socket, then AF_UNSPEC:
    // Python's socket module (its own calls through libc) sees what the kernel would show.
    let Some((lab, leaks, _outside, sockd)) = dns::names_lab("own-reuse") else { return };
    let echo = lab.udp_echo(7);
    let script = format!(
        r#"
import socket, struct
def query(name, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(("{DEAD_DNS_ADDR}", 53))
print("peer", s.getpeername())
s.send(query("{WWW}", 7))
data, source = s.recvfrom(512)
print("answer", data[:2] == b"\x00\x07", source, socket.inet_ntoa(data[-4:]))
s.connect(("{echo}", 7))
print("peer", s.getpeername())
s.send(b"ping")
print("echo", s.recv(64))
"#,
        echo = echo.addr().ip()
    );
    let ran = under_library(lab.python(&script)).run();
    let text = ran.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(ran.success() && lines.len() == 4, "{}", ran.describe());
    assert_eq!(lines[0], format!("peer ('{DEAD_DNS_ADDR}', 53)"), "{}", ran.describe());
    assert!(
        lines[1].starts_with(&format!("answer True ('{DEAD_DNS_ADDR}', 53) "))
            && is_fake(lines[1].rsplit(' ').next().unwrap_or_default()),
        "{}",
        ran.describe()
    );
    assert_eq!(lines[2], format!("peer ('{}', 7)", echo.addr().ip()), "{}", ran.describe());
    assert_eq!(lines[3], "echo b'ping'", "{}", ran.describe());
    sockd.wait_line(&["closed:", &format!("client={INSIDE_ADDR}:"), "cmd=udp-associate"], STARTUP);
    leaks.assert_only_sockd_udp("a DNS socket reused for a relayed peer");
}

#[test]
fn dns_over_tcp_is_answered_by_the_library_and_never_carries_a_remote_name_out() {
    let Some((lab, leaks, outside, _sockd)) = dns::names_lab("own-tcp") else { return };
    let (lan, conf) = with_lan(&lab);
    let dig = paths::require("dig", "dnsutils");
    let dig = |names: &[&str]| {
        lab.client(&dig)
            .args(["+tcp", "+short", "+time=2", "+tries=1"])
            .args(names)
            .env("SOCKS_CONF", conf.display().to_string())
            .env("SOCKS_LOG", "debug")
            .ld_preload()
            .run()
    };
    // A direct name over TCP: the library forwards the query to the LAN's name server on a
    // connection of its own and hands the answer back.
    let ran = dig(&[INTRANET]);
    assert!(
        ran.success() && ran.stdout_text() == format!("{INTRANET_IP}\n"),
        "dig +tcp {INTRANET} must get the LAN's answer\n{}",
        ran.describe()
    );
    // A name resolved on the far side over TCP: answered by the library, never sent.
    let ran = dig(&[WWW]);
    assert!(
        ran.success()
            && is_fake(&ran.stdout_text())
            && ran.stderr.contains(&format!("dns: answered {WWW} A from the library"))
            && ran.stderr.contains(&format!("dns: TCP connect to {DEAD_DNS_ADDR}:53: kept")),
        "dig +tcp {WWW} must get a fake address from the library\n{}",
        ran.describe()
    );
    // Both in one process (dig keeps one connection per name): the answers in order.
    let ran = dig(&[WWW, INTRANET, WWW]);
    let lines: Vec<&str> = ran.stdout_text().leak().lines().collect();
    assert!(
        ran.success()
            && lines.len() == 3
            && is_fake(lines[0])
            && lines[1] == INTRANET_IP.to_string()
            && lines[2] == lines[0],
        "dig +tcp {WWW} {INTRANET} {WWW}\n{}",
        ran.describe()
    );
    assert!(
        !lan.queries_for(INTRANET).is_empty() && lan.queries_for(WWW).is_empty(),
        "the LAN's server must never hear {WWW}:\n{}",
        lan.daemon.log()
    );
    assert!(outside.all_queries().is_empty(), "the outside name server was never asked");
    let (v4, v6) = leaks.leaked_destinations();
    assert!(
        !v4.is_empty()
            && v4.iter().all(|d| *d == format!("{DEAD_DNS_ADDR} . tcp . 53"))
            && v6.is_empty(),
        "only the library's TCP connections to the LAN's server left:\n{}",
        leaks.table()
    );
}

#[test]
fn dns_over_tcp_split_writes_epoll_and_no_descriptor_left() {
    let Some((lab, leaks, outside, _sockd)) = dns::names_lab("own-tcp-c") else { return };
    let program = ownresolver(&lab);
    let server = DEAD_DNS_ADDR.to_string();
    let args = [server.as_str(), WWW, "tcp", "tcp", "tcp6", "tcp6"];
    let ran = under_library(lab.client(&program)).args(args).run();
    let text = ran.stdout_text();
    let lines = |prefix: &str| -> Vec<String> {
        text.lines().filter_map(|l| l.strip_prefix(prefix)).map(str::to_owned).collect()
    };
    assert!(ran.success(), "ownresolver tcp under the library\n{}", ran.describe());
    let peers = [format!("{server}:53"), format!("[::ffff:{server}]:53")];
    assert_eq!(lines("tcp: peer "), [peers[0].as_str(), peers[0].as_str()], "{}", ran.describe());
    assert_eq!(lines("tcp6: peer "), [peers[1].as_str(), peers[1].as_str()], "{}", ran.describe());
    for pattern in ["tcp: ", "tcp6: "] {
        let answers: Vec<String> =
            lines(pattern).into_iter().filter(|l| l.contains("(query ")).collect();
        assert!(
            answers.len() == 4
                && answers.iter().all(|a| a.split_once(' ').is_some_and(|(ip, _)| is_fake(ip))),
            "{pattern}both queries of each connection answered with a fake address\n{}",
            ran.describe()
        );
        // The first connection of a family makes the library's listener (one descriptor, kept);
        // nothing else stays after a close.
        let counts: Vec<(i64, i64)> = lines(&format!("{pattern}fds "))
            .iter()
            .filter_map(|l| l.split_once(" -> "))
            .filter_map(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .collect();
        assert!(
            counts.len() == 2 && counts[0].1 - counts[0].0 <= 1 && counts[1].0 == counts[1].1,
            "{pattern}descriptors before and after each connection: {counts:?}\n{}",
            ran.describe()
        );
    }
    // A connection inherited across fork is answered in the child and, after it, in the parent;
    // the child's own new connection gets a listener of its own (made afresh in the child).
    let ran = under_library(lab.client(&program)).args([server.as_str(), WWW, "tcpfork"]).run();
    let text = ran.stdout_text();
    for who in ["child inherited", "child own", "parent inherited", "parent own"] {
        let answered = text
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("tcpfork: {who}: ")))
            .any(|rest| rest.split_once(' ').is_some_and(|(ip, _)| is_fake(ip)));
        assert!(answered, "tcpfork: {who} must be answered\n{}", ran.describe());
    }
    assert!(ran.success(), "{}", ran.describe());
    // A dup of the connection is answered too, also after the original is closed (the
    // library's end moves to the dup), and says it is connected to the server.
    let ran = under_library(lab.client(&program)).args([server.as_str(), WWW, "tcpdup"]).run();
    let text = ran.stdout_text();
    for who in ["dup", "dup after close"] {
        let answered = text
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("tcpdup: {who}: ")))
            .any(|rest| rest.split_once(' ').is_some_and(|(ip, _)| is_fake(ip)));
        assert!(answered, "tcpdup: {who} must be answered\n{}", ran.describe());
    }
    assert!(
        ran.success() && text.contains(&format!("tcpdup: peer {server}:53\n")),
        "{}",
        ran.describe()
    );
    assert!(outside.all_queries().is_empty(), "no name server was asked");
    assert_nothing_left(&leaks, "DNS over TCP answered by the library");
}

/// A LAN name server at the workstation's resolver address that takes TCP connections and
/// never answers on them (the kernel completes the handshake; nobody reads), and a socks.conf
/// that reaches it directly: the listener (kept open while it lives) and the file.
fn silent_lan_server(lab: &Lab) -> (std::net::TcpListener, PathBuf) {
    lab.net.add_address(Ns::Fw, Ns::Inside, &format!("{DEAD_DNS_ADDR}/24"));
    let silent = netns::in_netns(lab.net.name(Ns::Fw), || {
        std::net::TcpListener::bind((DEAD_DNS_ADDR, 53)).expect("a silent listener on port 53")
    });
    let conf = lab.write(
        "socks.conf",
        format!("direct .corp.example\ndirect 192.0.2.0/24\nsockd @={SERVER} 0.0.0.0/0\n"),
    );
    (silent, conf)
}

#[test]
fn a_forwarded_tcp_query_the_server_never_answers_ends_the_connection() {
    let Some((lab, _leaks, _outside, _sockd)) = dns::names_lab("own-tcp-dead") else { return };
    let (_silent, conf) = silent_lan_server(&lab);
    let dig = paths::require("dig", "dnsutils");
    let ran = lab
        .client(&dig)
        .args(["+tcp", "+short", "+time=9", "+tries=1", INTRANET])
        .env("SOCKS_CONF", conf.display().to_string())
        .env("SOCKS_LOG", "info")
        .ld_preload()
        .run();
    assert!(
        ran.stdout_text().lines().all(|l| l.trim().parse::<IpAddr>().is_err())
            && ran.stderr.contains(&format!(
                "dns: TCP connection to {DEAD_DNS_ADDR}:53: the server did not answer a \
                 forwarded query"
            ))
            && ran.elapsed >= std::time::Duration::from_secs(5)
            && ran.elapsed < std::time::Duration::from_secs(9),
        "the library gives up after 5 s and ends the program's connection (before dig's own \
         9 s timeout)\n{}",
        ran.describe()
    );
}

/// A thread's TCP query waits for a silent server (the library forwards it, up to 5 s) while
/// another thread forks: the child's own TCP query about a far-side name is answered at once.
/// The library holds no lock while it forwards, and holds its locks across `fork`, so the child
/// never waits for a thread it does not have.
#[test]
fn a_fork_while_a_forward_waits_leaves_the_child_free() {
    let Some((lab, _leaks, _outside, _sockd)) = dns::names_lab("own-tcp-fork-wait") else { return };
    let (_silent, conf) = silent_lan_server(&lab);
    let script = format!(
        r#"
import os, socket, struct, threading, time
def framed(name, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00\x00\x01\x00\x01"
    return struct.pack(">H", len(q)) + q
def ask(name, qid):
    s = socket.create_connection(("{DEAD_DNS_ADDR}", 53), timeout=8)
    s.sendall(framed(name, qid))
    return s
waiting = threading.Thread(target=lambda: ask("{INTRANET}", 1), daemon=True)
waiting.start()
time.sleep(0.5)
pid = os.fork()
if pid == 0:
    s = ask("{WWW}", 2)
    head = s.recv(2)
    body = s.recv(struct.unpack(">H", head)[0])
    print("child answered", socket.inet_ntoa(body[-4:]), flush=True)
    os._exit(0)
start = time.time()
while time.time() - start < 3:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("child ended", status, round(time.time() - start, 1))
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    print("child stuck")
"#
    );
    let ran = lab
        .python(&script)
        .env("SOCKS_CONF", conf.display().to_string())
        .env("SOCKS_LOG", "info")
        .ld_preload()
        .run();
    let text = ran.stdout_text();
    assert!(
        text.contains("child answered 198.1") && text.contains("child ended 0"),
        "the child's query is answered while the parent's forward waits\n{}",
        ran.describe()
    );
}

#[test]
fn an_ipv6_server_a_fork_a_dup_and_a_disconnect() {
    let Some((lab, leaks, _outside, _sockd)) = dns::names_lab("own-fork") else { return };
    let script = r#"
import ctypes, os, socket, struct
def query(name, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00\x00\x01\x00\x01"
def show(what, sock, qid):
    data, source = sock.recvfrom(512)
    print(what, data[:2] == struct.pack(">H", qid), source[:2], socket.inet_ntoa(data[-4:]))
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(("2001:db8::53", 53))
print("peer", s.getpeername()[:2])
s.send(query("www.example.test", 9))
show("v6", s, 9)
pid = os.fork()
if pid == 0:
    s.send(query("child.example.test", 10))
    os._exit(0)
os.waitpid(pid, 0)
show("fork", s, 10)
t = socket.fromfd(s.fileno(), socket.AF_INET6, socket.SOCK_DGRAM)
t.settimeout(5)
t.send(query("dup.example.test", 11))
show("dup", t, 11)
libc = ctypes.CDLL(None, use_errno=True)
print("disconnect", libc.connect(s.fileno(), (ctypes.c_ubyte * 16)(), 16))
try:
    s.getpeername()
except OSError as e:
    print("peer after disconnect", e.errno)
"#;
    let ran = under_library(lab.python(script)).run();
    let text = ran.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(ran.success() && lines.len() == 6, "{}", ran.describe());
    assert_eq!(lines[0], "peer ('2001:db8::53', 53)", "{}", ran.describe());
    for (line, what) in lines[1..4].iter().zip(["v6", "fork", "dup"]) {
        let prefix = format!("{what} True ('2001:db8::53', 53) ");
        assert!(
            line.strip_prefix(&prefix).is_some_and(is_fake),
            "{what}: the answer, from the server the socket names\n{}",
            ran.describe()
        );
    }
    assert_eq!(lines[4], "disconnect 0", "{}", ran.describe());
    assert_eq!(lines[5], format!("peer after disconnect {}", libc::ENOTCONN), "{}", ran.describe());
    assert_nothing_left(&leaks, "an IPv6 server, fork and dup");
}
