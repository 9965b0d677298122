//! UDP through sockd for supervised programs (the supervisor's UDP ASSOCIATE relay): a static
//! Go program (`net.Dial("udp")` Write/Read, and `ListenPacket` WriteTo/ReadFrom reporting the
//! real outside address) to an IPv4 address, an IPv6 address and a NAME (a fake address, the
//! name sent to sockd), a static C program (unconnected sendto with recvfrom, recvmsg and
//! recvmmsg on blocking and non-blocking sockets, MSG_DONTWAIT, SO_RCVTIMEO, a signal during a
//! blocking receive — restarted after a SA_RESTART handler, EINTR without one or with
//! SO_RCVTIMEO —, a connected socket's getpeername, getsockname (the workstation's address, as
//! under the library) and recvfrom, a socket bound to the workstation's address), an
//! association ending with its socket, SOCKS4 (EAFNOSUPPORT), DNS queries to a name server
//! only sockd can reach (a static C query, Go's resolver over UDP and TCP), musl's resolver
//! (which drops replies from a source it did not ask), and a program that rewrites its sendto
//! address while a denied and a relayed destination race. Every test checks what the program
//! got, that the outside echo server heard only the firewall, and with the leak counter that
//! nothing but traffic to sockd left the workstation (the inside has a route to the outside via
//! the firewall here, so a leak would be a counted packet, not a silent "no route").
//!
//! Not here: UDP under the library (udp.rs), supervised TCP (supervised.rs), names
//! (supervised_names.rs).

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use socks_e2e::build::{build_static, go_build, supervised_lab};
use socks_e2e::dns::{self, FW_OUTSIDE_ADDR6, MANY, OUTSIDE_ADDR6, WWW};
use socks_e2e::*;

/// The outside echo port.
const ECHO_PORT: u16 = 7;
/// A second outside echo port (the race's relayed side).
const ECHO_PORT_B: u16 = 9;

/// A Go client: `ARG` is `HOST:PORT` of a UDP echo server; prints `connected: TEXT remote=ADDR`
/// (net.Dial Write/Read) and `unconnected: TEXT from=ADDR` (ListenPacket WriteTo/ReadFrom).
const GO_UDP: &str = r#"
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	dst := os.Args[1]
	c, err := net.Dial("udp", dst)
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	if _, err := c.Write([]byte("go-connected")); err != nil {
		fmt.Println("write:", err)
		os.Exit(1)
	}
	n, err := c.Read(buf)
	if err != nil {
		fmt.Println("read:", err)
		os.Exit(1)
	}
	fmt.Printf("connected: %s remote=%s\n", buf[:n], c.RemoteAddr())
	p, err := net.ListenPacket("udp", ":0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	p.SetDeadline(time.Now().Add(10 * time.Second))
	addr, _ := net.ResolveUDPAddr("udp", dst)
	for i := 0; i < 2; i++ {
		if _, err := p.WriteTo([]byte(fmt.Sprintf("go-unconnected-%d", i)), addr); err != nil {
			fmt.Println("writeto:", err)
			os.Exit(1)
		}
		n, from, err := p.ReadFrom(buf)
		if err != nil {
			fmt.Println("readfrom:", err)
			os.Exit(1)
		}
		fmt.Printf("unconnected: %s from=%s\n", buf[:n], from)
	}
}
"#;

/// The lab: leak counter (first), the outside echo servers, sockd, and a route out via the
/// firewall (so a datagram sent directly would leave and be counted).
struct UdpLab {
    lab: Lab,
    echo: UdpEcho,
    echo_b: UdpEcho,
    leaks: LeakCounter,
    sockd: Daemon,
}

impl UdpLab {
    fn new(name: &str) -> Option<UdpLab> {
        UdpLab::start(name, false).map(|(u, _)| u)
    }

    /// The same with the outside name server (started before sockd, which resolves names with
    /// it).
    fn with_names(name: &str) -> Option<(UdpLab, dns::Dnsmasq)> {
        UdpLab::start(name, true).map(|(u, d)| (u, d.expect("started")))
    }

    fn start(name: &str, names: bool) -> Option<(UdpLab, Option<dns::Dnsmasq>)> {
        let lab = supervised_lab(name)?;
        let leaks = LeakCounter::install(&lab);
        let outside_dns = names.then(|| dns::outside_dns(&lab));
        let echo = lab.udp_echo(ECHO_PORT);
        let echo_b = lab.udp_echo(ECHO_PORT_B);
        let sockd = lab.sockd(PERMIT_INSIDE);
        route_outside_via_firewall(&lab);
        Some((UdpLab { lab, echo, echo_b, leaks, sockd }, outside_dns))
    }

    /// Runs `program ARGS` under `socksify -vv OPTIONS`; asserts it exited 0.
    fn run(&self, program: &Path, options: &[&str], args: &[String]) -> Ran {
        let mut all = vec!["-v", "-v"];
        all.extend_from_slice(options);
        let ran = self.lab.client(program).args(args).socksify(&all).run();
        ran.assert_success();
        ran
    }

    /// `count` datagrams reached `echo`, every one from the firewall (relayed) and echoed.
    fn assert_relayed(&self, echo: &UdpEcho, count: usize) {
        let datagrams = echo.wait_datagrams(count, STARTUP);
        assert_eq!(datagrams.len(), count, "{}: {datagrams:?}", echo.addr());
        for d in &datagrams {
            assert!(
                d.peer.ip() == IpAddr::V4(FW_OUTSIDE_ADDR) && d.echoed,
                "{}: a datagram came from {}, not the firewall: {d:?}",
                echo.addr(),
                d.peer
            );
        }
    }

    /// sockd logged a UDP association from the workstation.
    fn assert_associated(&self) {
        self.sockd.wait_line(&["udp:", &format!("client={INSIDE_ADDR}:"), "relay on"], STARTUP);
    }
}

fn route_outside_via_firewall(lab: &Lab) {
    let route = Command::new("ip")
        .args(["-n", lab.ns(Ns::Inside), "route", "add", "198.51.100.0/24", "via"])
        .arg(FW_INSIDE_ADDR.to_string())
        .output()
        .expect("ip runs");
    assert!(route.status.success(), "ip route add: {}", String::from_utf8_lossy(&route.stderr));
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn go_udp_echo_connected_and_unconnected() {
    let Some(u) = UdpLab::new("supervised-udp-go") else { return };
    let program = go_build(&u.lab, "udpecho", GO_UDP);
    let dst = format!("{OUTSIDE_ADDR}:{ECHO_PORT}");
    let ran = u.run(&program, &["-s", SERVER], std::slice::from_ref(&dst));
    assert_eq!(
        ran.stdout_text(),
        format!(
            "connected: go-connected remote={dst}\nunconnected: go-unconnected-0 from={dst}\n\
             unconnected: go-unconnected-1 from={dst}\n"
        ),
        "Write/Read must go through sockd, and ReadFrom must name the outside address, not \
         the supervisor's 127.0.0.1\n{}",
        ran.describe()
    );
    u.assert_relayed(&u.echo, 3);
    u.assert_associated();
    u.leaks.assert_only_sockd_udp("Go UDP under the supervisor");
}

#[test]
fn static_c_receives_report_the_real_source() {
    let Some(u) = UdpLab::new("supervised-udp-c") else { return };
    let Some(program) = build_static(u.lab.name(), u.lab.dir.path(), "udprecv") else { return };
    let dst = format!("{OUTSIDE_ADDR}:{ECHO_PORT}");
    let args = |mode: &str| strings(&[mode, &OUTSIDE_ADDR.to_string(), &ECHO_PORT.to_string()]);
    let (eagain, eintr) = (libc::EAGAIN, libc::EINTR);

    let blocking = u.run(&program, &["-s", SERVER], &args("blocking"));
    assert_eq!(
        blocking.stdout_text(),
        format!(
            "recvfrom=3 from={dst} namelen=16 data=one\n\
             recvmsg=8 from={dst} namelen=16 trunc=1 data=two-and-\n\
             trunc=8\n\
             dontwait=-1 errno={eagain}\n\
             timeout=-1 errno={eagain} waited=about-1s\n\
             alarm=-1 errno={eintr}\n"
        ),
        "{}",
        blocking.describe()
    );
    let nonblocking = u.run(&program, &["-s", SERVER], &args("nonblocking"));
    assert_eq!(
        nonblocking.stdout_text(),
        format!(
            "recvfrom=4 from={dst} namelen=16 data=four\nagain=-1 errno={eagain}\n\
             recvmmsg=1 from={dst} len=4 data=five\n"
        ),
        "{}",
        nonblocking.describe()
    );
    let connected = u.run(&program, &["-s", SERVER], &args("connected"));
    assert_eq!(
        connected.stdout_text(),
        format!(
            "peer={dst}\nlocal={INSIDE_ADDR} port=set\nrecv=six\n\
             recvfrom=5 from={dst} namelen=16 data=seven\n"
        ),
        "{}",
        connected.describe()
    );
    // A socket bound to the workstation's own address sends to the loopback socket from it.
    let mut bound = args("bound");
    bound.push(INSIDE_ADDR.to_string());
    let bound = u.run(&program, &["-s", SERVER], &bound);
    assert_eq!(
        bound.stdout_text(),
        format!("recvfrom=4 from={dst} namelen=16 data=nine\n"),
        "{}",
        bound.describe()
    );
    // one, two-and-more, three-xx, four, five, six, seven, nine.
    u.assert_relayed(&u.echo, 8);
    u.assert_associated();
    u.leaks.assert_only_sockd_udp("static C UDP receives under the supervisor");
}

/// A blocking receive on a relayed socket (the supervisor waits for it) interrupted by a
/// signal behaves as the kernel's own: after a SA_RESTART handler it goes on and gets the
/// datagram that comes later (the handler sends for it); with SO_RCVTIMEO set, or a handler
/// without SA_RESTART, it fails with EINTR (signal(7)). The same program run without the
/// supervisor prints exactly this (the expected lines are the kernel's). A process signal another
/// thread takes leaves a receive waiting in a second thread alone.
#[test]
fn static_c_receive_restarts_after_a_sa_restart_handler() {
    let Some(u) = UdpLab::new("supervised-udp-restart") else { return };
    let Some(program) = build_static(u.lab.name(), u.lab.dir.path(), "udprecv") else { return };
    let dst = format!("{OUTSIDE_ADDR}:{ECHO_PORT}");
    let args = strings(&["restart", &OUTSIDE_ADDR.to_string(), &ECHO_PORT.to_string()]);
    let eintr = libc::EINTR;
    let ran = u.run(&program, &["-s", SERVER], &args);
    assert_eq!(
        ran.stdout_text(),
        format!(
            "recvfrom=5 from={dst} namelen=16 data=early\n\
             restart=4 errno=0 handled=1 data=late\n\
             timeo=-1 errno={eintr} handled=1\n\
             drained=late\n\
             plain=-1 errno={eintr} handled=1\n\
             drained=late\n"
        ),
        "{}",
        ran.describe()
    );
    // A process signal another thread takes (the main thread, in pause()) leaves a receive
    // waiting in a second thread alone, as the kernel does: it gets the datagram that comes.
    let args = strings(&["thread", &OUTSIDE_ADDR.to_string(), &ECHO_PORT.to_string()]);
    let ran = u.run(&program, &["-s", SERVER], &args);
    assert_eq!(
        ran.stdout_text(),
        format!(
            "recvfrom=5 from={dst} namelen=16 data=early\n\
             thread=4 errno=0 handled=1 data=late\n"
        ),
        "{}",
        ran.describe()
    );
    // early and three lates, then early and late.
    u.assert_relayed(&u.echo, 6);
    u.leaks.assert_only_sockd_udp("a receive restarted under the supervisor");
}

/// The association ends when the program closes its socket (the supervisor notices within
/// seconds, long before the program exits: sockd logs the end), and UDP needs a SOCKS5
/// server: through a SOCKS4 one the connect fails with EAFNOSUPPORT (the library's errno for
/// that cause) and nothing is sent.
#[test]
fn association_ends_with_the_socket_and_needs_socks5() {
    let Some(u) = UdpLab::new("supervised-udp-close") else { return };
    let Some(program) = build_static(u.lab.name(), u.lab.dir.path(), "udprecv") else { return };
    let dst = format!("{OUTSIDE_ADDR}:{ECHO_PORT}");
    let args = |mode: &str| strings(&[mode, &OUTSIDE_ADDR.to_string(), &ECHO_PORT.to_string()]);
    let closed = u.run(&program, &["-s", SERVER], &args("close"));
    assert_eq!(
        closed.stdout_text(),
        format!("recvfrom=5 from={dst} namelen=16 data=eight\nclosed\n"),
        "{}",
        closed.describe()
    );
    let line = u.sockd.wait_line(&["closed:", "cmd=udp-associate"], STARTUP);
    let secs: f64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("secs="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no secs= in {line:?}"));
    assert!(
        secs < 5.0,
        "the association must end once the socket is closed (checked every 2 s), not when the \
         program exits 6 s later: {line}\n{}",
        closed.describe()
    );
    let socks4 = format!("socks4://{SERVER}");
    let refused = u.run(&program, &["-s", &socks4], &args("connected"));
    assert_eq!(
        refused.stdout_text(),
        format!("connect=-1 errno={}\n", libc::EAFNOSUPPORT),
        "{}",
        refused.describe()
    );
    assert!(refused.stderr.contains("no SOCKS5 server for UDP"), "{}", refused.describe());
    u.assert_relayed(&u.echo, 1);
    u.leaks.assert_only_sockd_udp("a closed socket's association");
}

/// A query to a name server only sockd can reach, for a name socks.conf resolves locally
/// (`direct .example.test`): the supervisor's name service forwards it through a UDP
/// association (it used to answer SERVFAIL), and the reply names the real server as its
/// source.
#[test]
fn dns_to_a_name_server_only_sockd_reaches() {
    let Some((u, outside)) = UdpLab::with_names("supervised-udp-dns") else { return };
    let Some(program) = build_static(u.lab.name(), u.lab.dir.path(), "dnsquery") else { return };
    let conf =
        u.lab.write("socks.conf", format!("direct .example.test\nsockd @={SERVER} 0.0.0.0/0\n"));
    let conf = conf.display().to_string();
    for mode in ["sendto", "sendmsg"] {
        let ran =
            u.run(&program, &["-c", &conf], &strings(&[mode, &OUTSIDE_ADDR.to_string(), WWW]));
        assert_eq!(
            ran.stdout_text(),
            format!("rcode=0\nA={OUTSIDE_ADDR}\nfrom={OUTSIDE_ADDR}:53\n"),
            "{mode}: the outside name server's answer, from its address\n{}",
            ran.describe()
        );
    }
    assert_eq!(outside.queries_for(WWW).len(), 2, "{:?}", outside.all_queries());
    outside.assert_asked_only_by_firewall();
    u.leaks.assert_only_sockd_udp("DNS through sockd under the supervisor");
}

/// musl's resolver (`getaddrinfo` in a static musl program) sends from an unconnected socket
/// and drops a reply whose source is not the server it asked: the supervisor's answers must
/// name that server. A `direct` name goes to the name server through sockd; a proxied name
/// gets a fake address.
#[test]
fn musl_resolver_accepts_the_answers() {
    let Some((u, outside)) = UdpLab::with_names("supervised-udp-musl") else { return };
    let Some(musl_gcc) = which("musl-gcc") else {
        skip(u.lab.name(), "musl-gcc not installed (Debian package musl-tools)");
        return;
    };
    let source = u.lab.write(
        "resolve.c",
        r#"#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        struct addrinfo hints, *res;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(argv[i], "80", &hints, &res);
        if (rc != 0) { printf("%s error=%s\n", argv[i], gai_strerror(rc)); continue; }
        char ip[64];
        inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof ip);
        printf("%s %s\n", argv[i], ip);
        freeaddrinfo(res);
    }
    return 0;
}
"#,
    );
    let binary = u.lab.dir.path().join("resolve");
    let built = Command::new(musl_gcc)
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("musl-gcc runs");
    assert!(built.status.success(), "musl-gcc: {}", String::from_utf8_lossy(&built.stderr));
    u.lab.net.write_etc(
        Ns::Inside,
        "resolv.conf",
        &format!("nameserver {OUTSIDE_ADDR}\noptions timeout:2 attempts:1\n"),
    );
    let conf =
        u.lab.write("socks.conf", format!("direct .example.test\nsockd @={SERVER} 0.0.0.0/0\n"));
    let ran =
        u.run(&binary, &["-c", &conf.display().to_string()], &strings(&[WWW, "far.example.org"]));
    let text = ran.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0] == format!("{WWW} {OUTSIDE_ADDR}")
            && (lines[1].starts_with("far.example.org 198.18.")
                || lines[1].starts_with("far.example.org 198.19.")),
        "musl must accept both answers (the real one through sockd, a fake address): \
         {text:?}\n{}",
        ran.describe()
    );
    outside.assert_asked_only_by_firewall();
    assert!(outside.queries_for("far.example.org").is_empty(), "the proxied name stays inside");
    u.leaks.assert_only_sockd_udp("musl's resolver under the supervisor");
}

/// A second thread flips the sendto address between a denied destination and one relayed
/// through sockd while the main thread sends: the supervisor sends what it checked, so the
/// denied echo server never hears anything, the relayed one hears exactly the sends that
/// succeeded (from the firewall), and both sides of the race were seen.
#[test]
fn address_rewritten_during_sendto_never_reaches_a_denied_destination() {
    let Some(u) = UdpLab::new("supervised-udp-race") else { return };
    let Some(program) = build_static(u.lab.name(), u.lab.dir.path(), "datagrams") else { return };
    let conf = u.lab.write(
        "socks.conf",
        format!("deny {OUTSIDE_ADDR}/32 eq {ECHO_PORT}\nsockd @={SERVER} 0.0.0.0/0\n"),
    );
    let count = 1000;
    let ran = u.run(
        &program,
        &["-c", &conf.display().to_string()],
        &strings(&[
            "race",
            &OUTSIDE_ADDR.to_string(),
            &ECHO_PORT.to_string(),
            &OUTSIDE_ADDR.to_string(),
            &ECHO_PORT_B.to_string(),
            &count.to_string(),
        ]),
    );
    let line = ran.stdout_text();
    eprintln!("race: {}", line.trim());
    let field = |name: &str| -> usize {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in the output\n{}", ran.describe()))
    };
    let (sent, refused, other) = (field("sent"), field("refused"), field("other"));
    assert!(u.echo.datagrams().is_empty(), "the denied destination heard {:?}", u.echo.datagrams());
    assert!(
        sent > 0 && refused > 0,
        "the rewrites must have landed on both sides (else the race proves nothing)\n{}",
        ran.describe()
    );
    assert_eq!((sent + refused, other), (count, 0), "{}", ran.describe());
    // UDP may drop a datagram under load; none may come from anywhere but the firewall.
    let relayed = u.echo_b.datagrams_within(sent, STARTUP);
    assert!(!relayed.is_empty() && relayed.len() <= sent, "{} of {sent}", relayed.len());
    assert!(relayed.iter().all(|d| d.peer.ip() == IpAddr::V4(FW_OUTSIDE_ADDR)), "{relayed:?}");
    u.leaks.assert_only_sockd_udp("a static program rewriting its sendto address");
}

/// The path of `program` on PATH.
fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// An IPv6 destination through sockd: Go's dual-stack socket reaches the loopback socket
/// through `::ffff:127.0.0.1`, the SOCKS5 header names the IPv6 address, and `RemoteAddr` and
/// `ReadFrom` report it.
#[test]
fn go_udp_to_an_ipv6_destination() {
    let Some(u) = UdpLab::new("supervised-udp-go6") else { return };
    u.lab.net.add_address(Ns::Fw, Ns::Outside, &format!("{FW_OUTSIDE_ADDR6}/64"));
    u.lab.net.add_address(Ns::Outside, Ns::Fw, &format!("{OUTSIDE_ADDR6}/64"));
    let echo6 = u.lab.udp_echo_in(Ns::Outside, (OUTSIDE_ADDR6, ECHO_PORT).into());
    let program = go_build(&u.lab, "udpecho", GO_UDP);
    let dst = format!("[{OUTSIDE_ADDR6}]:{ECHO_PORT}");
    let ran = u.run(&program, &["-s", SERVER], std::slice::from_ref(&dst));
    assert_eq!(
        ran.stdout_text(),
        format!(
            "connected: go-connected remote={dst}\nunconnected: go-unconnected-0 from={dst}\n\
             unconnected: go-unconnected-1 from={dst}\n"
        ),
        "{}",
        ran.describe()
    );
    let datagrams = echo6.wait_datagrams(3, STARTUP);
    assert_eq!(datagrams.len(), 3, "{datagrams:?}");
    assert!(
        datagrams.iter().all(|d| d.peer.ip() == IpAddr::V6(FW_OUTSIDE_ADDR6) && d.echoed),
        "relayed by the firewall: {datagrams:?}"
    );
    u.leaks.assert_only_sockd_udp("Go UDP to an IPv6 destination under the supervisor");
}

/// UDP to a NAME resolved on the far side: Go's lookup gets a fake address from the
/// supervisor's name service, the datagrams carry the name to sockd (SOCKS5 DOMAINNAME in the
/// UDP header), sockd resolves it, and the replies — from the resolved address — are reported
/// from the fake address the program used.
#[test]
fn go_udp_to_a_name() {
    let Some((u, outside)) = UdpLab::with_names("supervised-udp-name") else { return };
    let program = go_build(&u.lab, "udpecho", GO_UDP);
    let name = format!("echo.{MANY}");
    let ran = u.run(&program, &["-s", SERVER], &[format!("{name}:{ECHO_PORT}")]);
    let text = ran.stdout_text();
    let fake = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("connected: go-connected remote="))
        .unwrap_or_else(|| panic!("{text:?}\n{}", ran.describe()))
        .to_owned();
    assert!(
        fake.starts_with("198.18.") || fake.starts_with("198.19."),
        "{fake}: not a fake address"
    );
    assert_eq!(
        text,
        format!(
            "connected: go-connected remote={fake}\nunconnected: go-unconnected-0 from={fake}\n\
             unconnected: go-unconnected-1 from={fake}\n"
        ),
        "{}",
        ran.describe()
    );
    u.assert_relayed(&u.echo, 3);
    u.assert_associated();
    dns::assert_no_fake_destination(&u.sockd);
    assert!(!outside.queries_for(&name).is_empty(), "sockd resolved {name} outside");
    outside.assert_asked_only_by_firewall();
    u.leaks.assert_only_sockd_udp("Go UDP to a name under the supervisor");
}

/// Go's resolver, over UDP and (`options use-vc`) over TCP, asking a name server only sockd
/// reaches for a name socks.conf resolves locally: the name service forwards the UDP query
/// through a UDP association and the TCP one through a CONNECT, and Go gets the real address.
#[test]
fn go_lookups_through_sockd_over_udp_and_tcp() {
    let Some((u, outside)) = UdpLab::with_names("supervised-udp-golookup") else { return };
    let program = go_build(
        &u.lab,
        "lookup",
        r#"
package main

import (
	"fmt"
	"net"
	"os"
	"strings"
)

func main() {
	addrs, err := net.LookupHost(os.Args[1])
	if err != nil {
		fmt.Println("lookup:", err)
		os.Exit(1)
	}
	fmt.Println(strings.Join(addrs, ","))
}
"#,
    );
    let conf =
        u.lab.write("socks.conf", format!("direct .example.test\nsockd @={SERVER} 0.0.0.0/0\n"));
    let conf = conf.display().to_string();
    for (options, kind) in [("", "UDP"), (" use-vc", "TCP")] {
        u.lab.net.write_etc(
            Ns::Inside,
            "resolv.conf",
            &format!("nameserver {OUTSIDE_ADDR}\noptions timeout:2 attempts:1{options}\n"),
        );
        let ran = u.run(&program, &["-c", &conf], &[WWW.to_owned()]);
        let mut got: Vec<String> = ran.stdout_text().trim().split(',').map(str::to_owned).collect();
        got.sort();
        assert_eq!(
            got,
            [OUTSIDE_ADDR.to_string(), OUTSIDE_ADDR6.to_string()],
            "{kind}: the outside name server's records\n{}",
            ran.describe()
        );
        assert!(
            ran.stderr.contains(&format!("connect {OUTSIDE_ADDR}:53: name service ({kind})")),
            "{kind}: the lookup must have gone to the supervisor\n{}",
            ran.describe()
        );
    }
    assert!(outside.queries_for(WWW).len() >= 4, "{:?}", outside.all_queries());
    outside.assert_asked_only_by_firewall();
    u.leaks.assert_only_sockd_udp("Go lookups through sockd under the supervisor");
}
