//! Names resolved on the far side (issue 5), end to end. The workstation (`inside`) has no
//! working resolver — its resolv.conf names an address where nothing answers — and no route
//! out; the only name server that knows the test names is a dnsmasq on the outside host that
//! only the firewall reaches (`socks_e2e::dns::outside_dns`: `www.example.test` with A and
//! AAAA, `v6only.example.test` with AAAA only, anything under `many.example.test`). Unmodified
//! programs under libsocks.so (`SOCKS_SERVER=192.0.2.1:1080`, our sockd in `fw`) must still
//! reach outside hosts by name: the library hands out fake addresses (198.18.0.0/15,
//! fd73:6f63:6b73::/48) and sends the name to sockd, which resolves it with the outside DNS.
//!
//! Every test asserts what the program got, that sockd logged the *name* as the destination
//! (`dst=www.example.test:80`, never a fake address), and — with nftables counters in the
//! workstation's namespace — that no packet to port 53, nor anything else but sockd's
//! address:port, left the workstation. Covered: curl, wget, python3 (`create_connection`,
//! `urllib`), node 20 (`http.get`), ssh with `CheckHostIP=yes` (which records the fake address
//! as the host's IP), an AAAA-only name and an IPv6 literal (sockd connects over IPv6; the
//! workstation has no IPv6 route), fork both ways, 5,000 distinct names in one process,
//! reverse lookups (getnameinfo, gethostbyaddr) and getpeername, AI_NUMERICHOST exactly as
//! without the library, a `direct .corp.example` domain resolved by the LAN's own name server,
//! and dig: a question the library does not answer itself (a real address's PTR) gets no answer
//! from the workstation's own (dead) resolver nor, without the library, from the outside name
//! server; under the library `dig @outside-dns` gets its answer through sockd (UDP ASSOCIATE,
//! issue 8; the UDP suite is udp.rs). dig's questions about names resolved on the far side are
//! answered by the library (own_resolvers.rs).
//!
//! Not here: connections by address (programs.rs, firewall.rs), socks.conf rules by address
//! (rules.rs).

use std::net::{IpAddr, SocketAddr};

use socks_e2e::dns::{self, Dnsmasq, FW_OUTSIDE_ADDR6, MANY, OUTSIDE_ADDR6, V6ONLY, WWW};
use socks_e2e::*;

/// sockd's rules here: the workstation network may go anywhere, IPv4 or IPv6.
const RULES: &str = PERMIT_INSIDE;

/// The port of the outside HTTP servers (IPv4 and IPv6) `www.example.test` names.
const WWW_PORT: u16 = 80;
/// The port of the IPv6-only HTTP server `v6only.example.test` names.
const V6_PORT: u16 = 8080;

/// A lab with the outside name service, the leak counters (installed first, so they see
/// everything) and our sockd on the firewall (started after the firewall's resolv.conf is
/// written). Drop order: sockd, dnsmasq, counters, then the lab.
fn names_lab(name: &str) -> Option<(Lab, LeakCounter, Dnsmasq, Daemon)> {
    let lab = Lab::new(name)?;
    let leaks = LeakCounter::install(&lab);
    let dns = dns::outside_dns(&lab);
    let sockd = lab.sockd(RULES);
    Some((lab, leaks, dns, sockd))
}

/// `client` under the library, with `SOCKS_SERVER` only (every name resolved remotely) and the
/// library's debug log on stderr (shown when an assertion fails).
fn under_library(client: Client) -> Client {
    client.env("SOCKS_SERVER", SERVER).env("SOCKS_LOG", "debug").env("no_proxy", "*").ld_preload()
}

/// Waits until sockd has logged `count` complete sessions from the workstation to the NAME
/// `name`:`port` (`dst=www.example.test:80`); returns the `connected:` lines (which carry
/// `addr=`, the address sockd resolved and reached).
fn sessions_by_name(sockd: &Daemon, name: &str, port: u16, count: usize) -> Vec<String> {
    let (client, dst) = (format!("client={INSIDE_ADDR}:"), format!("dst={name}:{port} "));
    sockd.wait_lines(&["closed:", &client, "cmd=connect", &dst], count, STARTUP);
    sockd.wait_lines(&["connected:", &client, "cmd=connect", &dst], count, STARTUP)
}

#[test]
fn programs_reach_outside_hosts_by_name() {
    let Some((lab, leaks, dns, sockd)) = names_lab("names-programs") else { return };
    let www = dns::http_dual(&lab, WWW_PORT);

    // curl, by name, through socksify.
    let ran = lab
        .client(paths::require("curl", "curl"))
        .args(["-sS", "--max-time", "20", &format!("http://{WWW}/bytes/200000")])
        .env("SOCKS_LOG", "debug")
        .env("no_proxy", "*")
        .socksify(&["-s", SERVER])
        .run();
    assert!(
        ran.success() && ran.stdout == http_body("/bytes/200000"),
        "curl must fetch the 200000-byte body by name\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("connect {WWW}:{WWW_PORT} via {SERVER} (socks5): ok")),
        "the library must report connecting to the NAME through sockd\n{}",
        ran.describe()
    );
    sessions_by_name(&sockd, WWW, WWW_PORT, 1);

    // wget, by name.
    let ran = under_library(lab.client(paths::require("wget", "wget")))
        .args(["-q", "-O", "-", "--tries=1", "--timeout=20", &format!("http://{WWW}/wget")])
        .run();
    assert!(ran.success() && ran.stdout == http_body("/wget"), "wget\n{}", ran.describe());
    sessions_by_name(&sockd, WWW, WWW_PORT, 2);

    // python3: socket.create_connection and urllib.request.urlopen, by name.
    let script = format!(
        r#"
import socket, urllib.request
s = socket.create_connection(("{WWW}", {WWW_PORT}), timeout=15)
s.sendall(b"GET /python-socket HTTP/1.0\r\nHost: {WWW}\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
s.close()
print("socket:", data.split(b"\r\n\r\n", 1)[1].decode().strip())
with urllib.request.urlopen("http://{WWW}/python-urllib", timeout=15) as r:
    print("urllib:", r.status, r.read().decode().strip())
"#
    );
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success(), "python3\n{}", ran.describe());
    assert_eq!(
        ran.stdout_text(),
        "socket: hello from outside: /python-socket\n\
         urllib: 200 hello from outside: /python-urllib\n",
        "{}",
        ran.describe()
    );
    sessions_by_name(&sockd, WWW, WWW_PORT, 4);

    // node 20: http.get by name.
    let script = format!(
        r#"
const http = require("http");
const req = http.get("http://{WWW}:{WWW_PORT}/node", (res) => {{
  const chunks = [];
  res.on("data", (c) => chunks.push(c));
  res.on("end", () => process.stdout.write(Buffer.concat(chunks)));
}});
req.setTimeout(15000, () => {{ console.error("timeout"); process.exit(2); }});
req.on("error", (e) => {{ console.error(`error ${{e.code}} ${{e.message}}`); process.exit(1); }});
"#
    );
    let ran =
        under_library(lab.client(paths::require("node", "nodejs")).args(["-e", &script])).run();
    assert!(ran.success() && ran.stdout == http_body("/node"), "node\n{}", ran.describe());
    let connected = sessions_by_name(&sockd, WWW, WWW_PORT, 5);

    // sockd reached the outside host at one of the name's real addresses, every time.
    for line in &connected {
        assert!(
            line.contains(&format!(" addr={OUTSIDE_ADDR}:{WWW_PORT} "))
                || line.contains(&format!(" addr=[{OUTSIDE_ADDR6}]:{WWW_PORT} ")),
            "sockd must connect to an address of {WWW}: {line}"
        );
    }
    let paths: Vec<String> =
        www.iter().flat_map(|s| s.wait_done(0, STARTUP)).filter_map(|e| e.path).collect();
    for path in ["/bytes/200000", "/wget", "/python-socket", "/python-urllib", "/node"] {
        assert!(paths.iter().any(|p| p == path), "no request for {path}: {paths:?}");
    }
    dns::assert_relayed([&www[0], &www[1]]);
    dns::assert_no_fake_destination(&sockd);
    assert!(!dns.queries_for(WWW).is_empty(), "sockd must have asked the outside DNS");
    dns.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("curl, wget, python3 and node by name");
}

#[test]
fn ipv6_only_name_and_ipv6_literal() {
    let Some((lab, leaks, dns, sockd)) = names_lab("names-ipv6") else { return };
    let v6 = servers::http(lab.ns(Ns::Outside), SocketAddr::from((OUTSIDE_ADDR6, V6_PORT)));
    let www = dns::http_dual(&lab, WWW_PORT);
    let curl = paths::require("curl", "curl");

    // A name with only an AAAA record: the program gets an IPv4 fake (it asked for any
    // family), sockd resolves the name and connects over IPv6.
    let ran = under_library(lab.client(&curl))
        .args(["-sS", "--max-time", "20", &format!("http://{V6ONLY}:{V6_PORT}/aaaa-only")])
        .run();
    assert!(
        ran.success() && ran.stdout == http_body("/aaaa-only"),
        "curl must reach the AAAA-only name\n{}",
        ran.describe()
    );
    let connected = sessions_by_name(&sockd, V6ONLY, V6_PORT, 1);
    assert!(
        connected[0].contains(&format!(" addr=[{OUTSIDE_ADDR6}]:{V6_PORT} ")),
        "sockd must reach {V6ONLY} over IPv6: {}",
        connected[0]
    );

    // An IPv6 literal: the workstation has no IPv6 route, the library carries it to sockd.
    let ran = under_library(lab.client(&curl))
        .args(["-sS", "--max-time", "20", &format!("http://[{OUTSIDE_ADDR6}]:{V6_PORT}/literal")])
        .run();
    assert!(
        ran.success() && ran.stdout == http_body("/literal"),
        "curl must reach the IPv6 literal\n{}",
        ran.describe()
    );
    let dst = SocketAddr::from((OUTSIDE_ADDR6, V6_PORT));
    assert_session(&sockd, dst, None);

    // A program asking for AF_INET6 explicitly gets an IPv6 fake for the name, connects an
    // IPv6 socket to it, and getpeername gives that fake back.
    let script = format!(
        r#"
import ipaddress, socket
info = socket.getaddrinfo("{WWW}", {WWW_PORT}, socket.AF_INET6, socket.SOCK_STREAM)
fake = info[0][4][0]
print("fake6 in range:", ipaddress.ip_address(fake) in ipaddress.ip_network("fd73:6f63:6b73::/48"))
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.settimeout(15)
s.connect(info[0][4])
print("peer is the fake:", s.getpeername()[0] == fake)
s.sendall(b"GET /inet6-socket HTTP/1.0\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.split(b"\r\n\r\n", 1)[1].decode().strip())
"#
    );
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success(), "python3 AF_INET6\n{}", ran.describe());
    assert_eq!(
        ran.stdout_text(),
        "fake6 in range: True\npeer is the fake: True\nhello from outside: /inet6-socket\n",
        "{}",
        ran.describe()
    );
    sessions_by_name(&sockd, WWW, WWW_PORT, 1);

    let exchanges = v6.wait_done(2, STARTUP);
    assert!(exchanges.iter().all(|e| e.peer.ip() == IpAddr::V6(FW_OUTSIDE_ADDR6)), "{exchanges:?}");
    dns::assert_relayed([&v6, &www[0], &www[1]]);
    dns::assert_no_fake_destination(&sockd);
    assert!(!dns.queries_for(V6ONLY).is_empty(), "sockd must have asked for {V6ONLY}");
    dns.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("an AAAA-only name, an IPv6 literal and an IPv6 fake");
}

#[test]
fn ssh_by_name_with_check_host_ip() {
    let Some((lab, leaks, dns, sockd)) = names_lab("names-ssh") else { return };
    let (sshd, key) = lab.sshd();
    let known_hosts = lab.dir.path().join("known_hosts");
    let ran = under_library(lab.client(paths::require("ssh", "openssh-client")))
        .args(["-F", "/dev/null", "-i"])
        .args([key])
        .args(["-o", &format!("UserKnownHostsFile={}", known_hosts.display())])
        .args([
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "CheckHostIP=yes",
            "-o",
            "HashKnownHosts=no",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=15",
            &format!("root@{WWW}"),
            "echo hello-by-name",
        ])
        .run();
    assert!(
        ran.success() && ran.stdout_text() == "hello-by-name\n",
        "ssh must log in to {WWW} by name\n{}\n--- sshd ---\n{}",
        ran.describe(),
        sshd.log()
    );
    sshd.wait_line(&[&format!("Accepted publickey for root from {FW_OUTSIDE_ADDR}")], STARTUP);
    sessions_by_name(&sockd, WWW, 22, 1);

    // With CheckHostIP, ssh recorded the host key under the name AND the fake address it
    // connected to: it took the fake as an ordinary host address.
    let recorded = std::fs::read_to_string(&known_hosts).unwrap_or_default();
    let entry = recorded.lines().find(|l| l.starts_with(&format!("{WWW},"))).unwrap_or_else(|| {
        panic!("known_hosts must hold `{WWW},ADDRESS …`:\n{recorded}\n{}", ran.describe())
    });
    let ip: IpAddr = entry
        .split_whitespace()
        .next()
        .and_then(|hosts| hosts.split(',').nth(1))
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("no address in the known_hosts entry: {entry}"));
    match ip {
        IpAddr::V4(v4) => assert!(
            v4.octets()[0] == 198 && (v4.octets()[1] & 0xfe) == 18,
            "ssh recorded {v4}, not a fake address from 198.18.0.0/15: {entry}"
        ),
        IpAddr::V6(v6) => assert!(
            v6.segments()[..3] == [0xfd73, 0x6f63, 0x6b73],
            "ssh recorded {v6}, not a fake address from fd73:6f63:6b73::/48: {entry}"
        ),
    }
    assert!(!ip.is_multicast() && !ip.is_loopback(), "{ip}");
    eprintln!("ssh's known_hosts: {entry}");
    dns::assert_no_fake_destination(&sockd);
    dns.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("ssh by name with CheckHostIP");
}

/// The map is not made at load (issue 17): a process whose first act is to fork, and whose
/// child is the first to resolve a name, must still share it — the `fork` hook makes the map
/// just before. Without it the parent would not know the child's fake address (EHOSTUNREACH).
#[test]
fn fork_first_then_the_child_resolves_and_the_parent_connects() {
    let Some((lab, leaks, _dns, sockd)) = names_lab("names-fork-first") else { return };
    let echo = lab.echo(7);
    let name = format!("fork-first.{MANY}");
    let script = format!(
        r#"
import os, socket
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.write(w, socket.getaddrinfo("{name}", 7, socket.AF_INET, socket.SOCK_STREAM)[0][4][0].encode())
    os._exit(0)
os.close(w)
addr = b""
while True:
    chunk = os.read(r, 100)
    if not chunk:
        break
    addr += chunk
os.waitpid(pid, 0)
addr = addr.decode()
s = socket.create_connection((addr, 7), timeout=15)
s.sendall(b"first fork")
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
print("echoed:", got == b"first fork", "reverse:", socket.gethostbyaddr(addr)[0])
"#
    );
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success(), "python3 fork first\n{}", ran.describe());
    assert_eq!(ran.stdout_text(), format!("echoed: True reverse: {name}\n"), "{}", ran.describe());
    sessions_by_name(&sockd, &name, 7, 1);
    echo.wait_done(1, STARTUP);
    assert_from_firewall(&echo);
    dns::assert_no_fake_destination(&sockd);
    leaks.assert_only_sockd("fork first, child resolves");
}

#[test]
fn fork_resolve_in_one_process_connect_in_the_other() {
    let Some((lab, leaks, _dns, sockd)) = names_lab("names-fork") else { return };
    let echo = lab.echo(7);
    let (parent_name, child_name) = (format!("fork-parent.{MANY}"), format!("fork-child.{MANY}"));
    let script = format!(
        r#"
import os, socket
def fake(name):
    return socket.getaddrinfo(name, 7, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
def talk(addr, tag):
    s = socket.create_connection((addr, 7), timeout=15)
    peer = s.getpeername()[0]
    s.sendall(tag)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    return got == tag and peer == addr

# 1. The parent resolves, a child connects.
addr = fake("{parent_name}")
pid = os.fork()
if pid == 0:
    os._exit(0 if talk(addr, b"child connects to the parent's name") else 1)
_, status = os.waitpid(pid, 0)
print("parent resolved, child connected:", os.waitstatus_to_exitcode(status) == 0)

# 2. A child resolves and passes the address through a pipe, the parent connects.
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.write(w, fake("{child_name}").encode())
    os._exit(0)
os.close(w)
addr = b""
while True:
    chunk = os.read(r, 100)
    if not chunk:
        break
    addr += chunk
os.waitpid(pid, 0)
addr = addr.decode()
print("child resolved, parent connected:", talk(addr, b"parent connects to the child's name"))
print("parent's reverse lookup:", socket.gethostbyaddr(addr)[0])
"#
    );
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success(), "python3 fork\n{}", ran.describe());
    assert_eq!(
        ran.stdout_text(),
        format!(
            "parent resolved, child connected: True\n\
             child resolved, parent connected: True\n\
             parent's reverse lookup: {child_name}\n"
        ),
        "{}",
        ran.describe()
    );
    sessions_by_name(&sockd, &parent_name, 7, 1);
    sessions_by_name(&sockd, &child_name, 7, 1);
    echo.wait_done(2, STARTUP);
    assert_from_firewall(&echo);
    dns::assert_no_fake_destination(&sockd);
    leaks.assert_only_sockd("fork both ways");
}

#[test]
fn five_thousand_distinct_names() {
    let Some((lab, leaks, _dns, sockd)) = names_lab("names-many") else { return };
    let echo = lab.echo(7);
    let script = format!(
        r#"
import ipaddress, socket, time
N = 5000
fake_net = ipaddress.ip_network("198.18.0.0/15")
t0 = time.monotonic()
fakes = {{}}
for i in range(N):
    name = f"n{{i}}.{MANY}"
    fakes[name] = socket.getaddrinfo(name, 7, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
print("distinct:", len(set(fakes.values())))
print("all fake:", all(ipaddress.ip_address(a) in fake_net for a in fakes.values()))
print("stable:", all(socket.gethostbyname(n) == a for n, a in list(fakes.items())[::97]))
bad = [n for n, a in fakes.items()
       if socket.getnameinfo((a, 7), socket.NI_NAMEREQD | socket.NI_NUMERICSERV) != (n, "7")
       or socket.gethostbyaddr(a)[0] != n]
print("reverse wrong:", bad[:5], len(bad))
name = "n4321.{MANY}"
s = socket.create_connection((fakes[name], 7), timeout=15)
s.sendall(b"hello n4321")
s.shutdown(socket.SHUT_WR)
print("echo:", s.recv(100).decode())
s.close()
print(f"secs {{time.monotonic() - t0:.2f}}", flush=True)
"#
    );
    // SOCKS_LOG=info: debug would print a line per name.
    let ran = lab
        .python(&script)
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_LOG", "info")
        .ld_preload()
        .timeout(std::time::Duration::from_secs(60))
        .run();
    assert!(ran.success(), "python3 with 5000 names\n{}", ran.describe());
    let out = ran.stdout_text();
    let expected = "distinct: 5000\nall fake: True\nstable: True\nreverse wrong: [] 0\n\
                    echo: hello n4321\n";
    assert!(out.starts_with(expected), "expected:\n{expected}\n{}", ran.describe());
    eprintln!("5000 names: {}", out.lines().last().unwrap_or(""));
    let connected = sessions_by_name(&sockd, &format!("n4321.{MANY}"), 7, 1);
    assert!(connected[0].contains(&format!(" addr={OUTSIDE_ADDR}:7 ")), "{}", connected[0]);
    assert_eq!(
        sockd.lines_with(&["connected:"]).len(),
        1,
        "one connection, one name:\n{}",
        sockd.log()
    );
    echo.wait_done(1, STARTUP);
    assert_from_firewall(&echo);
    dns::assert_no_fake_destination(&sockd);
    leaks.assert_only_sockd("5000 names resolved, one connected");
}

/// Looks names and numbers up every way the test cares about and prints the results, so the
/// same script run with and without the library can be compared line by line.
const NUMERIC_SCRIPT: &str = r#"
import socket
eai = {getattr(socket, n): n for n in dir(socket) if n.startswith("EAI_")}
for host in ["www.example.test", "198.51.100.2", "2001:db8:100::2", "198.18.0.7", "::ffff:192.0.2.9"]:
    for family in (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6):
        try:
            infos = socket.getaddrinfo(host, 80, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
            print(host, family.name, "->", sorted(set(str(i[4][:2]) for i in infos)))
        except socket.gaierror as e:
            print(host, family.name, "->", eai.get(e.errno, e.errno))
"#;

#[test]
fn reverse_lookups_getpeername_and_numeric_hosts() {
    let Some((lab, leaks, _dns, sockd)) = names_lab("names-reverse") else { return };
    let www = dns::http_dual(&lab, WWW_PORT);
    let script = format!(
        r#"
import ipaddress, socket
name = "{WWW}"
fake4 = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
fake6 = socket.getaddrinfo(name, 80, socket.AF_INET6, socket.SOCK_STREAM)[0][4][0]
for fake in (fake4, fake6):
    ip = ipaddress.ip_address(fake)
    print("multicast", ip.is_multicast, "loopback", ip.is_loopback, "link-local", ip.is_link_local)
print("v4 range", ipaddress.ip_address(fake4) in ipaddress.ip_network("198.18.0.0/15"))
print("v6 range", ipaddress.ip_address(fake6) in ipaddress.ip_network("fd73:6f63:6b73::/48"))
flags = socket.NI_NAMEREQD | socket.NI_NUMERICSERV
print("getnameinfo4", socket.getnameinfo((fake4, 80), flags))
print("getnameinfo6", socket.getnameinfo((fake6, 80, 0, 0), flags))
print("numeric4", socket.getnameinfo((fake4, 80), socket.NI_NUMERICHOST)[0] == fake4)
print("gethostbyaddr4", socket.gethostbyaddr(fake4)[0])
print("gethostbyaddr6", socket.gethostbyaddr(fake6)[0])
print("gethostbyname", socket.gethostbyname(name) == fake4)
hostname, aliases, addrs = socket.gethostbyname_ex(name)
print("gethostbyname_ex", hostname, addrs == [fake4])
s = socket.create_connection((name, 80), timeout=15)
print("getpeername4", s.getpeername() == (fake4, 80))
s.sendall(b"GET /reverse HTTP/1.0\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
s.close()
print("body", data.split(b"\r\n\r\n", 1)[1].decode().strip())
"#
    );
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success(), "python3 reverse lookups\n{}", ran.describe());
    assert_eq!(
        ran.stdout_text(),
        format!(
            "multicast False loopback False link-local False\n\
             multicast False loopback False link-local False\n\
             v4 range True\n\
             v6 range True\n\
             getnameinfo4 ('{WWW}', '80')\n\
             getnameinfo6 ('{WWW}', '80')\n\
             numeric4 True\n\
             gethostbyaddr4 {WWW}\n\
             gethostbyaddr6 {WWW}\n\
             gethostbyname True\n\
             gethostbyname_ex {WWW} True\n\
             getpeername4 True\n\
             body hello from outside: /reverse\n"
        ),
        "{}",
        ran.describe()
    );
    sessions_by_name(&sockd, WWW, WWW_PORT, 1);

    // getent: gethostbyname2 (`hosts`, IPv6 first) and getaddrinfo (`ahostsv4`) give fakes.
    let getent = paths::require("getent", "libc-bin");
    for (database, range) in [("hosts", "fd73:6f63:6b73:"), ("ahostsv4", "198.1")] {
        let ran = under_library(lab.client(&getent)).args([database, WWW]).run();
        assert!(
            ran.success()
                && ran.stdout_text().starts_with(range)
                && ran.stdout_text().contains(WWW),
            "getent {database} {WWW} must give a fake address\n{}",
            ran.describe()
        );
    }

    // AI_NUMERICHOST: exactly what libc alone says (a name fails with EAI_NONAME, numbers come
    // back unchanged, a fake-range number is just a number).
    let plain = lab.python(NUMERIC_SCRIPT).run();
    let preloaded = under_library(lab.python(NUMERIC_SCRIPT)).run();
    plain.assert_success();
    preloaded.assert_success();
    assert_eq!(
        preloaded.stdout_text(),
        plain.stdout_text(),
        "AI_NUMERICHOST must behave as without the library\n--- with ---\n{}\n--- without \
         ---\n{}",
        preloaded.describe(),
        plain.describe()
    );
    let out = plain.stdout_text();
    for line in [
        format!("{WWW} AF_UNSPEC -> EAI_NONAME"),
        format!("{WWW} AF_INET -> EAI_NONAME"),
        "198.51.100.2 AF_INET -> [\"('198.51.100.2', 80)\"]".to_owned(),
        "2001:db8:100::2 AF_INET6 -> [\"('2001:db8:100::2', 80)\"]".to_owned(),
    ] {
        assert!(out.lines().any(|l| l == line), "expected `{line}` in:\n{out}");
    }

    dns::assert_relayed([&www[0], &www[1]]);
    dns::assert_no_fake_destination(&sockd);
    leaks.assert_only_sockd("reverse lookups, getent and AI_NUMERICHOST");
}

#[test]
fn direct_domain_resolves_on_the_lan() {
    let Some((lab, leaks, outside, sockd)) = names_lab("names-direct") else { return };
    // The LAN's name server (192.0.2.53, what the workstation's resolv.conf names) knows the
    // intranet; the intranet web server is another host on the LAN.
    let intranet_ip = std::net::Ipv4Addr::new(192, 0, 2, 80);
    lab.net.add_address(Ns::Fw, Ns::Inside, &format!("{intranet_ip}/24"));
    let intranet = servers::http(lab.ns(Ns::Fw), SocketAddr::from((intranet_ip, 80)));
    let lan = dns::inside_lan_dns(
        &lab,
        &[
            format!("--host-record=intranet.corp.example,{intranet_ip}"),
            "--local=/corp.example/".to_owned(),
        ],
    );
    let www = dns::http_dual(&lab, WWW_PORT);
    let conf = lab.write(
        "socks.conf",
        format!(
            "# intranet names resolve on the LAN and are reached directly\n\
             direct .corp.example\n\
             direct 192.0.2.0/24\n\
             sockd @={SERVER} 0.0.0.0/0\n"
        ),
    );
    let script = format!(
        r#"
import socket, urllib.request
print("intranet:", socket.getaddrinfo("intranet.corp.example", 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
for url in ("http://intranet.corp.example/corp", "http://{WWW}/outside"):
    with urllib.request.urlopen(url, timeout=15) as r:
        print(r.read().decode().strip())
"#
    );
    let ran = lab
        .python(&script)
        .env("no_proxy", "*")
        .env("SOCKS_CONF", conf.display().to_string())
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .run();
    assert!(ran.success(), "python3 with a direct domain\n{}", ran.describe());
    assert_eq!(
        ran.stdout_text(),
        format!(
            "intranet: {intranet_ip}\nhello from outside: /corp\nhello from outside: /outside\n"
        ),
        "{}",
        ran.describe()
    );
    // The intranet server saw the workstation itself: a direct connection.
    let exchanges = intranet.wait_done(1, STARTUP);
    assert!(
        exchanges.iter().all(|e| e.peer.ip() == IpAddr::V4(INSIDE_ADDR)),
        "the intranet host must be reached directly from {INSIDE_ADDR}: {exchanges:?}"
    );
    assert!(
        sockd.lines_with(&[&intranet_ip.to_string()]).is_empty()
            && sockd.lines_with(&["corp.example"]).is_empty(),
        "sockd must not see the intranet connection:\n{}",
        sockd.log()
    );
    // The outside name still went through sockd, by name.
    sessions_by_name(&sockd, WWW, WWW_PORT, 1);
    dns::assert_relayed([&www[0], &www[1]]);
    // The LAN's server answered the intranet name and never heard the outside one.
    assert!(
        !lan.queries_for("intranet.corp.example").is_empty(),
        "the intranet name must be resolved by the LAN's name server\n{}",
        lan.daemon.log()
    );
    assert!(
        lan.queries_for(WWW).is_empty(),
        "{WWW} must not be looked up on the LAN:\n{}",
        lan.daemon.log()
    );
    outside.assert_asked_only_by_firewall();
    dns::assert_no_fake_destination(&sockd);
    let dns = format!("{} . udp . 53", DEAD_DNS_ADDR);
    leaks.assert_only_sockd_and(
        "a direct domain resolved on the LAN",
        &[
            dns.clone(),
            format!("{} . tcp . 53", DEAD_DNS_ADDR),
            format!("{intranet_ip} . tcp . 80"),
        ],
    );
    let (v4, _) = leaks.leaked_destinations();
    assert!(v4.contains(&dns), "the intranet lookup must have gone to {dns}: {v4:?}");
}

#[test]
fn dig_reaches_the_outside_name_server_only_through_sockd() {
    let Some((lab, leaks, outside, sockd)) = names_lab("names-dig") else { return };
    let dig = paths::require("dig", "dnsutils");
    // A question the library does not answer itself (own_resolvers.rs: it answers the ones
    // about names resolved on the far side): the reverse name of a real address.
    let reverse = dns::reverse_name(OUTSIDE_ADDR.into());
    let dig_args = |server: Option<String>| {
        let mut args = vec!["+short".to_owned(), "+time=2".to_owned(), "+tries=1".to_owned()];
        args.extend(server);
        args.extend(["-t".to_owned(), "PTR".to_owned(), reverse.clone()]);
        args
    };
    let answered = |ran: &Ran| ran.stdout_text().contains(WWW);
    // dig speaks DNS itself (no getaddrinfo). The workstation's own resolver (resolv.conf's
    // 192.0.2.53, on the LAN, so not proxied) answers nothing, with or without the library.
    let ran = under_library(lab.client(&dig)).args(dig_args(None)).run();
    assert!(
        !ran.success() && !answered(&ran),
        "dig to the workstation's dead resolver must get no answer\n{}",
        ran.describe()
    );
    // Without the library the outside name server is out of reach: no route.
    let outside_server = Some(format!("@{OUTSIDE_ADDR}"));
    let ran = lab.client(&dig).args(dig_args(outside_server.clone())).run();
    assert!(
        !ran.success() && !answered(&ran),
        "plain dig must not reach the outside name server from inside\n{}",
        ran.describe()
    );
    assert!(outside.all_queries().is_empty(), "no query may reach the outside DNS directly");
    // Under the library, the query goes through sockd (UDP ASSOCIATE) and gets its answer.
    let ran = under_library(lab.client(&dig)).args(dig_args(outside_server)).run();
    assert!(
        ran.success() && ran.stdout_text() == format!("{WWW}.\n"),
        "dig @{OUTSIDE_ADDR} {reverse} under the library must get the answer through sockd\n{}",
        ran.describe()
    );
    let closed = sockd
        .wait_line(&["closed:", &format!("client={INSIDE_ADDR}:"), "cmd=udp-associate"], STARTUP);
    assert!(
        closed.contains(" datagrams-sent=1 ") && closed.contains(" datagrams-received=1 "),
        "sockd must log one query out and one answer back: {closed}"
    );
    let queries = outside.queries_for(&reverse);
    assert_eq!(queries.len(), 1, "the outside DNS must have been asked once: {queries:?}");
    outside.assert_asked_only_by_firewall();
    // What the leak check saw: traffic to sockd (TCP for the association, UDP to its relay)
    // and the query to the dead resolver; the plain dig to the outside never left (no route).
    let counts =
        leaks.assert_only_sockd_and("dig through sockd", &[format!("{DEAD_DNS_ADDR} . udp . 53")]);
    assert!(counts.udp_to_sockd > 0, "dig's query must have gone to sockd's relay: {counts:?}");
    let (v4, v6) = leaks.leaked_destinations();
    assert_eq!(
        (v4, v6),
        (vec![format!("{DEAD_DNS_ADDR} . udp . 53")], vec![]),
        "{}",
        leaks.table()
    );
}
