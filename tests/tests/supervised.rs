//! Programs libsocks.so cannot reach — statically linked ones (busybox-static, a static C
//! program) and Go — run with a plain `socksify` under the supervisor (`socks-supervise`,
//! seccomp user notification, issue 12) and reach a destination only sockd can reach. Each
//! test checks the bytes the program got, that socksify chose the supervisor (its log line),
//! that sockd logged the session, and, with the leak counter, that nothing but traffic to
//! sockd left the workstation. Refusals: a denied destination fails and sends nothing. A
//! hostile static program rewrites its connect address from another thread during the call
//! and still never reaches the proxied destination directly; `int 0x80`, x32 calls and io_uring
//! do not get around the filter; a hanging server holds only its own connect; a thousand
//! connections from fifty threads all go through. The supervisor's own housekeeping: the
//! program starts without its listener and with no signal blocked, and the handler threads
//! that waiting connects started end once idle.
//!
//! A kernel without seccomp user notification (or a sandbox forbidding it) skips these tests
//! through `socks_e2e::skip`, named in the summary.
//!
//! Not here: the library under dynamically linked programs (programs.rs and the rest).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use socks_e2e::build::{build_static, go_build, supervised_lab, supervisor_works};
use socks_e2e::vsftpd::Vsftpd;
use socks_e2e::*;

/// What `socks-supervise --which PROGRAM` prints: how socksify would run it.
fn which(program: &Path) -> String {
    let out = Command::new(paths::supervisor())
        .arg("--which")
        .arg(program)
        .output()
        .expect("socks-supervise --which runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Debian busybox-static binary, checked to be one (socksify must pick the supervisor).
fn busybox_static() -> PathBuf {
    let busybox = paths::require("busybox", "busybox-static");
    assert_eq!(
        which(&busybox),
        "supervise static\n",
        "{} must be the statically linked busybox (Debian package busybox-static)",
        busybox.display()
    );
    busybox
}

/// The lab of a busybox-static test, built in this order: the supervised lab, busybox, the
/// destination server `server` starts, sockd (`PERMIT_INSIDE`), the leak counter.
fn busybox_lab<S>(
    name: &str,
    server: impl FnOnce(&Lab) -> S,
) -> Option<(Lab, PathBuf, S, Daemon, LeakCounter)> {
    let lab = supervised_lab(name)?;
    let busybox = busybox_static();
    let server = server(&lab);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    Some((lab, busybox, server, sockd, leaks))
}

/// The line SOCKS_LOG=info prints for a connection the supervisor proxied through our server.
fn proxied(dst: SocketAddr) -> String {
    format!("]: connect {dst} via {SERVER} (socks5): ok")
}

fn assert_supervised(ran: &Ran, dst: SocketAddr) {
    assert!(
        ran.stderr.contains("socks-supervise[") && ran.stderr.contains(&proxied(dst)),
        "socksify must have run the program under socks-supervise, which must report the \
         proxied connect\n{}",
        ran.describe()
    );
}

#[test]
fn busybox_wget_by_address() {
    let Some((lab, busybox, http, sockd, leaks)) =
        busybox_lab("supervised-wget", |lab| lab.http(8080))
    else {
        return;
    };
    let url = format!("http://{}/bytes/123457", http.addr());
    let ran = lab
        .client(busybox)
        .args(["wget", "-q", "-O", "-", &url])
        .socksify(&["-v", "-s", SERVER])
        .run();
    ran.assert_success();
    assert!(
        ran.stdout == http_body("/bytes/123457"),
        "busybox wget got {} bytes, not the 123457-byte body\n{}",
        ran.stdout.len(),
        ran.describe()
    );
    assert_supervised(&ran, http.addr());
    let exchanges = http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    assert_session(&sockd, http.addr(), Some(&exchanges[0]));
    leaks.assert_only_sockd("busybox-static wget under the supervisor");
}

#[test]
fn busybox_nc_echo() {
    let Some((lab, busybox, echo, sockd, leaks)) = busybox_lab("supervised-nc", |lab| lab.echo(7))
    else {
        return;
    };
    let input = pattern(100_000);
    // busybox nc ends on the peer's close; `-w 5` bounds its final read.
    let ran = lab
        .client(busybox)
        .args(["nc", "-w", "5", &OUTSIDE_ADDR.to_string(), "7"])
        .stdin(input.clone())
        .socksify(&["-v", "-s", SERVER])
        .run();
    assert!(
        ran.stdout == input,
        "busybox nc got {} bytes back, not the 100000 it sent\n{}",
        ran.stdout.len(),
        ran.describe()
    );
    assert_supervised(&ran, echo.addr());
    echo.wait_done(1, STARTUP);
    assert_from_firewall(&echo);
    assert_session(&sockd, echo.addr(), None);
    leaks.assert_only_sockd("busybox-static nc under the supervisor");
}

#[test]
fn denied_destination_fails_and_sends_nothing() {
    let Some(lab) = supervised_lab("supervised-deny") else { return };
    let busybox = busybox_static();
    let http = lab.http(80);
    let _sockd = lab.sockd(PERMIT_INSIDE);
    let conf =
        lab.write("socks.conf", format!("deny {OUTSIDE_ADDR}/32\nsockd @={SERVER} 0.0.0.0/0\n"));
    let leaks = LeakCounter::install(&lab);
    let url = format!("http://{}/", http.addr());
    let ran = lab
        .client(busybox)
        .args(["wget", "-q", "-O", "-", &url])
        .socksify(&["-v", "-c", &conf.display().to_string()])
        .run();
    assert!(
        !ran.success() && ran.stdout.is_empty(),
        "a denied destination must fail\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("connect {}: denied by the configuration", http.addr()))
            && ran.stderr.contains("Connection refused"),
        "the supervisor must refuse it (ECONNREFUSED) and say why\n{}",
        ran.describe()
    );
    assert!(http.accepted().is_empty(), "the destination must see nothing");
    let counts = leaks.counts();
    assert!(
        counts.leaked == 0 && counts.to_sockd == 0,
        "nothing may leave the workstation for a denied destination: {counts:?}\n{}",
        leaks.table()
    );
}

#[test]
fn address_rewritten_during_connect_never_goes_direct() {
    let Some(lab) = supervised_lab("supervised-race") else { return };
    let Some(racer) = build_static(lab.name(), lab.dir.path(), "racer") else { return };
    let echo = lab.echo(7);
    // The direct destination: on the firewall's inside address, a network the workstation is
    // attached to, which SOCKS_SERVER alone sends direct.
    let direct_port = 4242;
    let direct = lab.echo_in(Ns::Fw, SocketAddr::from((FW_INSIDE_ADDR, direct_port)));
    let sockd = lab.sockd(PERMIT_INSIDE);
    // A direct connection attempt must leave as a packet the leak counter sees.
    route_outside_via_firewall(&lab);
    let leaks = LeakCounter::install(&lab);
    let count = 300;
    let ran = lab
        .client(&racer)
        .args([OUTSIDE_ADDR.to_string(), "7".into(), FW_INSIDE_ADDR.to_string()])
        .args([direct_port.to_string(), count.to_string()])
        .socksify(&["-s", SERVER])
        .timeout(std::time::Duration::from_secs(60))
        .run();
    ran.assert_success();
    let line = ran.stdout_text();
    eprintln!("racer: {}", line.trim());
    let field = |name: &str| -> u32 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in the racer's output\n{}", ran.describe()))
    };
    let (via_sockd, direct_ok, other) = (field("via-sockd"), field("direct"), field("other"));
    // First what matters most: nothing went to the outside directly.
    let allowed = [format!("{FW_INSIDE_ADDR} . tcp . {direct_port}")];
    leaks.assert_only_sockd_and("a static program rewriting its connect address", &allowed);
    assert!(
        via_sockd > 0 && direct_ok > 0,
        "the rewrites must have landed on both sides (else the race proves nothing)\n{}",
        ran.describe()
    );
    // Every connection the outside echo server accepted came through the firewall.
    echo.wait_done(via_sockd as usize, STARTUP);
    assert_from_firewall(&echo);
    assert!(direct.accepted().len() >= direct_ok as usize);
    sockd.wait_lines(&["closed:", &format!("dst={} ", echo.addr())], via_sockd as usize, STARTUP);
    assert_eq!(other, 0, "no connect may fail otherwise than refused\n{}", ran.describe());
}

/// A Go HTTP client, then a TCP echo round trip printing the connection's `RemoteAddr`
/// (getpeername): connects with non-blocking sockets from its netpoller, by raw system calls
/// (never through libc), and is preempted with SIGURG while a call waits.
const GO_HTTP_GET: &str = r#"package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "get:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		fmt.Fprintln(os.Stderr, "read:", err)
		os.Exit(1)
	}
	if len(os.Args) > 2 {
		// A TCP echo round trip; the connection must name the destination as its peer.
		c, err := net.DialTimeout("tcp", os.Args[2], 10*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			os.Exit(1)
		}
		c.Write([]byte("hello from go"))
		c.(*net.TCPConn).CloseWrite()
		back, err := io.ReadAll(c)
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "remote=%s echo=%s\n", c.RemoteAddr(), back)
	}
}
"#;

#[test]
fn go_http_get_by_address() {
    let Some(lab) = supervised_lab("supervised-go") else { return };
    let program = go_build(&lab, "httpget", GO_HTTP_GET);
    assert_eq!(which(&program), "supervise go\n");
    let http = lab.http(80);
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    let url = format!("http://{}/bytes/300000", http.addr());
    let ran = lab
        .client(&program)
        .args([url, echo.addr().to_string()])
        .socksify(&["-v", "-s", SERVER])
        .run();
    ran.assert_success();
    assert!(
        ran.stdout == http_body("/bytes/300000"),
        "the Go client got {} bytes, not the 300000-byte body\n{}",
        ran.stdout.len(),
        ran.describe()
    );
    assert_supervised(&ran, http.addr());
    assert_supervised(&ran, echo.addr());
    assert!(
        ran.stderr.contains(&format!("remote={} echo=hello from go\n", echo.addr())),
        "the Go connection must name the destination as its peer (getpeername), not sockd\n{}",
        ran.describe()
    );
    let exchanges = http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    assert_from_firewall(&echo);
    assert_session(&sockd, http.addr(), Some(&exchanges[0]));
    assert_session(&sockd, echo.addr(), None);
    leaks.assert_only_sockd("a static Go HTTP client and echo under the supervisor");
}

/// The ways around the filter (no network needed, so no namespaces: runs as any user): a
/// 32-bit `int 0x80` socketcall and an x32 connect kill the program (SIGSYS, which socksify
/// reports as 128 + 31), and io_uring_setup fails with ENOSYS where it works without the
/// supervisor.
#[test]
fn int80_x32_and_io_uring_are_closed() {
    let test = "supervised-escapes";
    if !supervisor_works(test) {
        return;
    }
    let dir = TempDir::new(test);
    let Some(escapes) = build_static(test, dir.path(), "escapes") else { return };
    let socksify = |mode: &str| {
        let out = Command::new(paths::socksify())
            .args(["-s", SERVER])
            .arg(&escapes)
            .arg(mode)
            .output()
            .expect("socksify runs");
        let text = format!(
            "status {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), text)
    };
    for mode in ["int80", "x32"] {
        let (code, stdout, text) = socksify(mode);
        assert_eq!(
            (code, stdout.as_str()),
            (Some(128 + libc::SIGSYS), "before\n"),
            "{mode}: the program must be killed by the filter at that call\n{text}"
        );
    }
    let (code, stdout, text) = socksify("io_uring");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        stdout.contains("io_uring_setup returned -1 errno=38"),
        "io_uring_setup must fail with ENOSYS under the supervisor\n{text}"
    );
    let bare = Command::new(&escapes).arg("io_uring").output().expect("escapes runs");
    let bare = String::from_utf8_lossy(&bare.stdout);
    if !bare.contains("errno=0") {
        eprintln!("note: io_uring is unavailable here even without the supervisor: {bare}");
    }
}

/// A connect held up by a server that never answers holds only the process that made it: a
/// second program of the same supervised tree gets through meanwhile, and the first fails with
/// ETIMEDOUT once `SOCKS_TIMEOUT` has passed (never a direct connection).
#[test]
fn a_hanging_server_holds_only_its_own_connect() {
    let Some(lab) = supervised_lab("supervised-slow") else { return };
    let busybox = busybox_static();
    let http = lab.http(8080);
    let hanging = SocketAddr::from((FW_INSIDE_ADDR, 1081));
    let _silent = lab.silent_in(Ns::Fw, hanging);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let conf = lab.write(
        "socks.conf",
        format!("sockd @={hanging} {OUTSIDE_ADDR}/32 eq 81\nsockd @={SERVER} 0.0.0.0/0\n"),
    );
    let leaks = LeakCounter::install(&lab);
    let bb = busybox.display().to_string();
    let script = format!(
        "{bb} wget -q -O /dev/null http://{OUTSIDE_ADDR}:81/ & \
         {bb} sleep 0.5; \
         {bb} wget -q -O - http://{OUTSIDE_ADDR}:8080/bytes/1000 && echo; \
         wait $! || echo slow-failed"
    );
    let ran = lab
        .client(&busybox)
        .args(["sh", "-c", &script])
        .env("SOCKS_TIMEOUT", "4")
        .socksify(&["-v", "-c", &conf.display().to_string()])
        .run();
    let fast = format!("connect {OUTSIDE_ADDR}:8080 via {SERVER} (socks5): ok");
    let slow = format!("connect {OUTSIDE_ADDR}:81 via {hanging} (socks5): timed out");
    let (fast_at, slow_at) = (ran.stderr.find(&fast), ran.stderr.find(&slow));
    assert!(
        matches!((fast_at, slow_at), (Some(f), Some(s)) if f < s),
        "the second connect must go through while the first waits for its server, which times \
         out\n{}",
        ran.describe()
    );
    let mut expected = http_body("/bytes/1000");
    expected.extend_from_slice(b"\nslow-failed\n");
    assert!(ran.stdout == expected, "{}", ran.describe());
    assert!(ran.stderr.contains("Connection timed out"), "ETIMEDOUT\n{}", ran.describe());
    assert!(ran.elapsed.as_secs_f64() >= 3.5, "the timeout must be waited out\n{}", ran.describe());
    http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    assert_session(&sockd, SocketAddr::from((OUTSIDE_ADDR, 8080)), None);
    let allowed = [format!("{FW_INSIDE_ADDR} . tcp . 1081")];
    leaks.assert_only_sockd_and("a hanging server and a working one", &allowed);
}

/// A thousand connections from fifty threads of one static program, at once: every one goes
/// through sockd and echoes its own line (no notification lost, none answered twice).
#[test]
fn a_thousand_connections_from_fifty_threads() {
    let Some(lab) = supervised_lab("supervised-many") else { return };
    let Some(many) = build_static(lab.name(), lab.dir.path(), "many") else { return };
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    let (threads, each) = (50, 20);
    let ran = lab
        .client(&many)
        .args([OUTSIDE_ADDR.to_string(), "7".into(), threads.to_string(), each.to_string()])
        .socksify(&["-s", SERVER])
        .timeout(std::time::Duration::from_secs(120))
        .run();
    ran.assert_success();
    assert_eq!(
        ran.stdout_text(),
        format!("ok={} failed=0\n", threads * each),
        "{}",
        ran.describe()
    );
    echo.wait_done(threads * each, STARTUP);
    assert_from_firewall(&echo);
    let closed = sockd.wait_lines(&["closed:", "dst=198.51.100.2:7 "], threads * each, STARTUP);
    assert_eq!(closed.len(), threads * each);
    leaks.assert_only_sockd("a thousand connections from fifty threads");
}

/// A program that starts a child and exits at once: the supervisor keeps serving the orphan
/// (it is the orphan's subreaper and waits until the last supervised process is gone), whose
/// connect still goes through sockd — it would fail with ENOSYS if the supervisor had left.
#[test]
fn an_orphan_stays_supervised() {
    let Some((lab, busybox, http, sockd, leaks)) =
        busybox_lab("supervised-orphan", |lab| lab.http(80))
    else {
        return;
    };
    let bb = busybox.display().to_string();
    let url = format!("http://{}/bytes/5000", http.addr());
    let script = format!("({bb} sleep 1; {bb} wget -q -O - {url}) & echo parent-exits");
    let ran =
        lab.client(&busybox).args(["sh", "-c", &script]).socksify(&["-v", "-s", SERVER]).run();
    ran.assert_success();
    let mut expected = b"parent-exits\n".to_vec();
    expected.extend_from_slice(&http_body("/bytes/5000"));
    assert!(ran.stdout == expected, "the orphan's download must arrive\n{}", ran.describe());
    assert_supervised(&ran, http.addr());
    http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    assert_session(&sockd, http.addr(), None);
    leaks.assert_only_sockd("an orphaned child under the supervisor");
}

/// Gives the workstation a route towards the outside through the firewall (which does not
/// forward), so a direct packet to the outside would leave as a packet the leak counter sees,
/// instead of failing locally with ENETUNREACH.
fn route_outside_via_firewall(lab: &Lab) {
    let route = Command::new("ip")
        .args(["-n", lab.ns(Ns::Inside), "route", "add", "198.51.100.0/24", "via"])
        .arg(FW_INSIDE_ADDR.to_string())
        .output()
        .expect("ip runs");
    assert!(route.status.success(), "ip route add: {}", String::from_utf8_lossy(&route.stderr));
}

/// Asserts that no packet left the workstation (the direct datagrams of these tests go to the
/// firewall's inside address, which the counter files under sockd's address, and loopback is
/// not counted).
fn assert_nothing_leaked(leaks: &LeakCounter, what: &str) {
    let counts = leaks.counts();
    let (v4, v6) = leaks.leaked_destinations();
    assert!(
        counts.leaked == 0 && v4.is_empty() && v6.is_empty(),
        "{what}: nothing may leave the workstation but to the firewall: {counts:?} \
         {v4:?} {v6:?}\n{}",
        leaks.table()
    );
    eprintln!("leak check: {what}: {counts:?}");
}

/// The test's UDP destinations: one that socks.conf (`-s SERVER` alone) sends through sockd,
/// on the outside, and one it sends direct, on the firewall's inside address (an attached
/// network).
struct UdpLab {
    lab: Lab,
    program: PathBuf,
    outside: UdpEcho,
    direct: UdpEcho,
    leaks: LeakCounter,
    _sockd: Daemon,
}

const UDP_DIRECT_PORT: u16 = 4242;

impl UdpLab {
    fn new(name: &str) -> Option<UdpLab> {
        let lab = supervised_lab(name)?;
        let program = build_static(lab.name(), lab.dir.path(), "datagrams")?;
        let outside = lab.udp_echo(7);
        let direct = lab.udp_echo_in(Ns::Fw, SocketAddr::from((FW_INSIDE_ADDR, UDP_DIRECT_PORT)));
        let sockd = lab.sockd(PERMIT_INSIDE);
        route_outside_via_firewall(&lab);
        let leaks = LeakCounter::install(&lab);
        Some(UdpLab { lab, program, outside, direct, leaks, _sockd: sockd })
    }

    /// Runs `datagrams ARGS` under socksify -vv -s SERVER.
    fn run(&self, args: &[String]) -> Ran {
        self.run_with(&["-s", SERVER], args)
    }

    /// Runs `datagrams ARGS` under socksify -vv OPTIONS.
    fn run_with(&self, options: &[&str], args: &[String]) -> Ran {
        let mut all = vec!["-v", "-v"];
        all.extend_from_slice(options);
        let ran = self.lab.client(&self.program).args(args).socksify(&all).run();
        ran.assert_success();
        ran
    }

    /// Runs `datagrams ARGS` with a socks.conf that denies the outside host, keeps the
    /// firewall's inside address direct (as `-s` does for attached networks) and sends the rest
    /// through sockd (UDP to the outside would otherwise be relayed, see supervised_udp.rs).
    fn run_denying_outside(&self, args: &[String]) -> Ran {
        let conf = self.lab.write(
            "deny-outside.conf",
            format!(
                "deny {OUTSIDE_ADDR}/32\ndirect {FW_INSIDE_ADDR}/32\nsockd @={SERVER} 0.0.0.0/0\n"
            ),
        );
        self.run_with(&["-c", &conf.display().to_string()], args)
    }

    fn outside_args(&self) -> [String; 2] {
        [OUTSIDE_ADDR.to_string(), "7".into()]
    }

    fn direct_args(&self) -> [String; 2] {
        [FW_INSIDE_ADDR.to_string(), UDP_DIRECT_PORT.to_string()]
    }

    /// Nothing reached the outside echo server and nothing left the workstation.
    fn assert_no_leak(&self, what: &str) {
        assert!(
            self.outside.datagrams().is_empty(),
            "{what}: the outside must have received nothing: {:?}",
            self.outside.datagrams()
        );
        assert_nothing_leaked(&self.leaks, what);
    }
}

fn args(mode: &str, parts: &[&[String]]) -> Vec<String> {
    let mut out = vec![mode.to_owned()];
    for part in parts {
        out.extend(part.iter().cloned());
    }
    out
}

/// An unconnected UDP `sendto` from a static program: to a destination socks.conf sends
/// through sockd it goes through a UDP association the supervisor holds (the echo comes back,
/// from the firewall's outside address on the outside) — without the supervisor seeing
/// sendto, the datagram left directly; to a denied one it fails with ECONNREFUSED and nothing
/// is sent (the library's errno for a deny, for every call); to a direct destination the
/// supervisor sends it itself and the echo comes back.
#[test]
fn udp_sendto_through_a_server_is_relayed_and_direct_goes() {
    let Some(u) = UdpLab::new("supervised-sendto") else { return };
    let relayed = u.run(&args("sendto", &[&u.outside_args()]));
    assert_eq!(relayed.stdout_text(), "sendto=12\nreply=hello-sendto\n", "{}", relayed.describe());
    assert!(
        relayed.stderr.contains(&format!("udp: association through {SERVER}, relay at "))
            && relayed.stderr.contains(&format!("sendto {OUTSIDE_ADDR}:7: relayed via 127.0.0.1:")),
        "the supervisor must say it relayed it\n{}",
        relayed.describe()
    );
    let seen = u.outside.wait_datagrams(1, STARTUP);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].peer.ip(), std::net::IpAddr::V4(FW_OUTSIDE_ADDR), "{seen:?}");
    let conf =
        u.lab.write("socks.conf", format!("deny {OUTSIDE_ADDR}/32\nsockd @={SERVER} 0.0.0.0/0\n"));
    let denied =
        u.run_with(&["-c", &conf.display().to_string()], &args("sendto", &[&u.outside_args()]));
    assert_eq!(denied.stdout_text(), "sendto=-1 errno=111\n", "{}", denied.describe());
    assert!(
        denied.stderr.contains(&format!("sendto {OUTSIDE_ADDR}:7: denied by the configuration")),
        "{}",
        denied.describe()
    );
    let direct = u.run(&args("sendto", &[&u.direct_args()]));
    assert_eq!(direct.stdout_text(), "sendto=12\nreply=hello-sendto\n", "{}", direct.describe());
    assert!(
        direct.stderr.contains(&format!("sendto {FW_INSIDE_ADDR}:{UDP_DIRECT_PORT}: direct")),
        "the supervisor must have sent it (its debug line)\n{}",
        direct.describe()
    );
    assert_eq!(u.direct.wait_datagrams(1, STARTUP).len(), 1);
    assert_eq!(u.outside.datagrams().len(), 1, "the denied datagram must not have gone out");
    assert_nothing_leaked(&u.leaks, "UDP sendto under the supervisor");
}

/// `sendmsg` and `sendmmsg` as `sendto`: refused to a denied destination (the outside, denied
/// by the socks.conf of [`UdpLab::run_denying_outside`]), sent direct with harmless control
/// messages (IP_TOS), EINVAL with IP options, `sendmmsg` sends up to the first refused message
/// and writes each `msg_len`; an AF_UNIX sendmsg is untouched.
#[test]
fn udp_sendmsg_and_sendmmsg_under_the_supervisor() {
    let Some(u) = UdpLab::new("supervised-sendmsg") else { return };
    let (outside, direct) = (u.outside_args(), u.direct_args());
    let cases: [(Vec<String>, &str); 6] = [
        (args("sendmsg", &[&outside]), "sendmsg=-1 errno=111\n"),
        (args("sendmsg", &[&direct]), "sendmsg=13\nreply=hello-sendmsg\n"),
        (args("options", &[&direct]), "sendmsg=-1 errno=22\n"),
        (args("sendmmsg", &[&direct, &outside]), "sendmmsg=1 errno=0 lens=5,99\nreply=first\n"),
        (args("sendmmsg", &[&outside, &direct]), "sendmmsg=-1 errno=111 lens=99,99\n"),
        (
            args("sendmmsg", &[&direct, &direct]),
            "sendmmsg=2 errno=0 lens=5,6\nreply=first\nreply=second\n",
        ),
    ];
    for (args, expected) in cases {
        let ran = u.run_denying_outside(&args);
        assert_eq!(ran.stdout_text(), expected, "{}", ran.describe());
    }
    let unix = u.run_denying_outside(&["unix".to_owned()]);
    assert_eq!(unix.stdout_text(), "unix=ok\n", "{}", unix.describe());
    // sendmsg, sendmmsg (first), sendmmsg (both).
    assert_eq!(u.direct.wait_datagrams(4, STARTUP).len(), 4);
    u.assert_no_leak("UDP sendmsg and sendmmsg under the supervisor");
}

/// A second thread flips the sendto address between a denied destination (the outside, see
/// [`UdpLab::run_denying_outside`]) and a direct one while the main thread sends: the
/// supervisor sends what it checked, so no datagram ever leaves for the outside, and both
/// sides of the race were seen. (supervised_udp.rs races a denied and a relayed destination.)
#[test]
fn address_rewritten_during_sendto_never_goes_direct() {
    let Some(u) = UdpLab::new("supervised-sendto-race") else { return };
    let count = 2000;
    let ran = u.run_denying_outside(&args(
        "race",
        &[&u.outside_args(), &u.direct_args(), &[count.to_string()]],
    ));
    let line = ran.stdout_text();
    eprintln!("race: {}", line.trim());
    let field = |name: &str| -> u32 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in the output\n{}", ran.describe()))
    };
    let (sent, refused, other) = (field("sent"), field("refused"), field("other"));
    // First what matters most: nothing went to the outside.
    u.assert_no_leak("a static program rewriting its sendto address");
    assert!(
        sent > 0 && refused > 0,
        "the rewrites must have landed on both sides (else the race proves nothing)\n{}",
        ran.describe()
    );
    assert_eq!(sent + refused, count, "{}", ran.describe());
    assert_eq!(other, 0, "{}", ran.describe());
}

/// TCP Fast Open (`sendto` with MSG_FASTOPEN) to a destination socks.conf sends through sockd
/// is a connect: it goes through sockd, its data after the handshake, and the echo comes back.
#[test]
fn tcp_fast_open_goes_through_sockd() {
    let Some(lab) = supervised_lab("supervised-fastopen") else { return };
    let Some(program) = build_static(lab.name(), lab.dir.path(), "datagrams") else { return };
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    route_outside_via_firewall(&lab);
    let leaks = LeakCounter::install(&lab);
    let ran = lab
        .client(&program)
        .args(["fastopen", &OUTSIDE_ADDR.to_string(), "7"])
        .socksify(&["-v", "-s", SERVER])
        .run();
    ran.assert_success();
    assert_eq!(ran.stdout_text(), "fastopen=14\necho=hello-fastopen\n", "{}", ran.describe());
    assert!(
        ran.stderr.contains(&format!("]: sendto {} via {SERVER} (socks5): ok", echo.addr())),
        "the supervisor must report the Fast Open connect through sockd\n{}",
        ran.describe()
    );
    echo.wait_done(1, STARTUP);
    assert_from_firewall(&echo);
    assert_session(&sockd, echo.addr(), None);
    leaks.assert_only_sockd("TCP Fast Open under the supervisor");
}

/// The file the active-FTP tests download: a megabyte and a bit of [`pattern`] bytes.
const FTP_FILE_LEN: usize = 1024 * 1024 + 7;

/// The `key=ADDR:PORT` field of the program's summary line on stderr.
fn summary_addr(ran: &Ran, key: &str) -> SocketAddr {
    ran.stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}=ADDR:PORT on the program's stderr\n{}", ran.describe()))
}

/// The address and port of the first `PORT h1,h2,h3,h4,p1,p2` command in vsftpd's log.
fn port_command(vsftpd_log: &str) -> Option<SocketAddr> {
    let at = vsftpd_log.find("\"PORT ")?;
    let nums: Vec<u8> = vsftpd_log[at + 6..]
        .split(|c: char| !c.is_ascii_digit() && c != ',')
        .next()?
        .split(',')
        .filter_map(|n| n.parse().ok())
        .collect();
    let [a, b, c, d, hi, lo] = nums[..] else { return None };
    Some(SocketAddr::from(([a, b, c, d], u16::from(hi) * 256 + u16::from(lo))))
}

/// What an active-mode download through the supervisor's BIND must have left behind: the
/// file byte for byte on stdout, the supervisor's BIND line, a PORT naming where sockd
/// listened on the firewall's outside address (getsockname's answer, `port=` on the program's
/// stderr), vsftpd's download to the firewall, and sockd's BIND session carrying the file.
fn assert_active_download(ran: &Ran, vsftpd: &Vsftpd, sockd: &Daemon, content: &[u8]) {
    let context = || format!("{}\n--- vsftpd log ---\n{}", ran.describe(), vsftpd.log.text());
    ran.assert_success();
    assert!(
        ran.stdout == content,
        "the active download must be the {}-byte file byte for byte, got {} bytes\n{}",
        content.len(),
        ran.stdout.len(),
        context()
    );
    assert!(
        ran.stderr.contains(&format!(
            "]: bind for {}: the server listens on {FW_OUTSIDE_ADDR}:",
            vsftpd.addr
        )),
        "the supervisor must turn the data connection's bind into a SOCKS BIND\n{}",
        context()
    );
    let port = summary_addr(ran, "port");
    assert_eq!(port.ip(), std::net::IpAddr::V4(FW_OUTSIDE_ADDR), "getsockname\n{}", context());
    assert_eq!(summary_addr(ran, "peer").ip(), vsftpd.addr.ip(), "accept's peer\n{}", context());
    vsftpd.log.wait_lines(&["OK DOWNLOAD", "big.bin", &content.len().to_string()], 1, STARTUP);
    let vlog = vsftpd.log.text();
    assert_eq!(port_command(&vlog), Some(port), "the PORT command\n{}", context());
    assert!(!vlog.contains(&format!("\"{INSIDE_ADDR}\"")), "vsftpd saw the workstation");
    let bind = sockd.wait_line(&["bind:", &format!("client={INSIDE_ADDR}:"), "cmd=bind"], STARTUP);
    assert!(
        bind.contains(&format!("listening on {port} ")) || bind.ends_with(&port.to_string()),
        "sockd's BIND must listen where PORT said: {bind}\n{}",
        context()
    );
    sockd.wait_line(&["closed:", "cmd=bind", &format!(" received={} ", content.len())], STARTUP);
}

/// A static C program downloads a file from vsftpd in active mode (PORT): its data socket's
/// bind becomes a SOCKS BIND through sockd, getsockname names sockd's listening address, and
/// accept4(SOCK_CLOEXEC) hands it the inbound connection (installed by
/// SECCOMP_IOCTL_NOTIF_ADDFD) close-on-exec and blocking, as asked.
#[test]
fn static_ftp_active_download_through_bind() {
    static_ftp_active(SERVER, "supervised-ftp");
}

/// The same over SOCKS4, whose BIND reply may say 0.0.0.0 for "the server's address".
#[test]
fn static_ftp_active_download_through_bind_socks4() {
    static_ftp_active("socks4://192.0.2.1:1080", "supervised-ftp4");
}

fn static_ftp_active(server: &str, name: &str) {
    let Some(lab) = supervised_lab(name) else { return };
    let Some(program) = build_static(lab.name(), lab.dir.path(), "binds") else { return };
    let content = pattern(FTP_FILE_LEN);
    let vsftpd = lab.vsftpd(&[("big.bin", &content)]);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    let ran = lab
        .client(&program)
        .args(["ftp", &OUTSIDE_ADDR.to_string(), "big.bin"])
        .socksify(&["-v", "-s", server])
        .timeout(std::time::Duration::from_secs(60))
        .run();
    assert_active_download(&ran, &vsftpd, &sockd, &content);
    assert!(
        ran.stderr.contains("cloexec=1 nonblock=0"),
        "accept4(SOCK_CLOEXEC) must give a close-on-exec, blocking descriptor\n{}",
        ran.describe()
    );
    leaks.assert_only_sockd(&format!("an active-mode FTP download by a static program ({server})"));
}

/// A signal for the thread waiting in accept4 on a BIND socket ends the supervisor's wait as it
/// ends the kernel's accept: the handler runs at once (not when the data connection comes),
/// and then the accept goes on after a SA_RESTART handler (the download completes) and fails
/// with EINTR after another one SO_RCVTIMEO bounds the wait (EAGAIN), as it bounds the
/// kernel's accept.
#[test]
fn a_signal_interrupts_an_accept_on_a_bind_socket_as_the_kernels_would() {
    let Some(lab) = supervised_lab("supervised-ftpsig") else { return };
    let Some(program) = build_static(lab.name(), lab.dir.path(), "binds") else { return };
    let content = pattern(FTP_FILE_LEN);
    let vsftpd = lab.vsftpd(&[("big.bin", &content)]);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let run = |how: &str| {
        lab.client(&program)
            .args(["ftp", &OUTSIDE_ADDR.to_string(), "big.bin", how])
            .socksify(&["-v", "-s", SERVER])
            .timeout(std::time::Duration::from_secs(20))
            .run()
    };
    let restarted = run("restart");
    assert_active_download(&restarted, &vsftpd, &sockd, &content);
    assert!(
        restarted.stderr.contains("handled=1"),
        "the SA_RESTART handler must run while accept4 waits\n{}",
        restarted.describe()
    );
    let interrupted = run("interrupt");
    assert!(
        interrupted.status.and_then(|s| s.code()) == Some(3)
            && interrupted.stderr.contains("handled=1")
            && interrupted.stderr.contains("accept4=EINTR"),
        "without SA_RESTART the signal must end accept4 with EINTR\n{}",
        interrupted.describe()
    );
    let timed_out = run("timeout");
    assert!(
        timed_out.status.and_then(|s| s.code()) == Some(4)
            && timed_out.stderr.contains("accept4=EAGAIN"),
        "SO_RCVTIMEO bounds a blocking accept4: EAGAIN\n{}",
        timed_out.describe()
    );
}

/// An active-mode FTP client in Go (`CGO_ENABLED=0`): net.ListenTCP on the control
/// connection's own address, PORT with the address the listener reports, then Accept — started
/// before RETR, so that Go's non-blocking accept4 gets EAGAIN and its netpoller (epoll) waits
/// for the listening socket to become readable (the second BIND reply) before it tries again.
const GO_FTP_ACTIVE: &str = include_str!("../go/ftp_active.go");

#[test]
fn go_ftp_active_download_through_bind() {
    let Some(lab) = supervised_lab("supervised-goftp") else { return };
    let program = go_build(&lab, "ftpactive", GO_FTP_ACTIVE);
    let content = pattern(FTP_FILE_LEN);
    let vsftpd = lab.vsftpd(&[("big.bin", &content)]);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    let ran = lab
        .client(&program)
        .args([vsftpd.addr.to_string(), "big.bin".into()])
        .socksify(&["-v", "-s", SERVER])
        .timeout(std::time::Duration::from_secs(60))
        .run();
    assert_active_download(&ran, &vsftpd, &sockd, &content);
    leaks.assert_only_sockd("an active-mode FTP download by a Go program");
}

/// After a proxied connection, a bind to a specific port and a bind to loopback stay local
/// (getsockname names them, a loopback connection to each is accepted), while a bind to the
/// wildcard address with port 0 becomes a SOCKS BIND (getsockname names sockd's listening
/// address on the firewall) — and a socket bound so and then connected instead gets a fresh
/// socket and connects through sockd, as under the library.
#[test]
fn a_bind_to_a_specific_port_or_loopback_stays_local() {
    let Some(lab) = supervised_lab("supervised-binds") else { return };
    let Some(program) = build_static(lab.name(), lab.dir.path(), "binds") else { return };
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    let ran = lab
        .client(&program)
        .args(["local", &OUTSIDE_ADDR.to_string(), "7", "4711"])
        .socksify(&["-v", "-s", SERVER])
        .run();
    ran.assert_success();
    let out = ran.stdout_text();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() == 6
            && lines[0] == "specific=0.0.0.0:4711"
            && lines[1] == "specific_accept=ok"
            && lines[2].starts_with("loopback=127.0.0.1:")
            && lines[2] != "loopback=127.0.0.1:0"
            && lines[3] == "loopback_accept=ok"
            && lines[4].starts_with(&format!("wildcard={FW_OUTSIDE_ADDR}:"))
            && lines[5] == "rebound=rebound",
        "a specific port and loopback stay local, a wildcard port 0 is a BIND, and a socket \
         bound so and then connected still connects\n{}",
        ran.describe()
    );
    assert_eq!(
        ran.stderr.matches("]: bind for ").count(),
        2,
        "a BIND for each wildcard port-0 bind, none for the others\n{}",
        ran.describe()
    );
    assert_eq!(
        ran.stderr.matches(&proxied(echo.addr())).count(),
        2,
        "the first connection and the one made on a bound socket go through sockd\n{}",
        ran.describe()
    );
    echo.wait_done(2, STARTUP);
    assert_from_firewall(&echo);
    sockd.wait_line(&["bind:", &format!("client={INSIDE_ADDR}:"), "cmd=bind"], STARTUP);
    leaks.assert_only_sockd("binds to a specific port, loopback and the wildcard address");
}

/// The program the supervisor starts (cloned sharing its memory and descriptor table, see
/// `spawn_supervised`) begins clean: no seccomp listener among its descriptors (it would let
/// the program answer its own calls), no signal blocked (the supervisor blocks SIGCHLD), and
/// SIGPIPE at its default (Rust ignores it in the supervisor). A program that cannot be run
/// gets the shell's statuses, 127 and 126. Loopback only: no lab needed.
#[test]
fn the_program_starts_clean() {
    if !supervisor_works("the_program_starts_clean") {
        return;
    }
    // Programs that leave their signal mask and descriptors as exec gave them (a shell would
    // not: dash clears the mask).
    let run = |args: &[&str]| {
        let out = Command::new(paths::supervisor())
            .arg("--")
            .args(args)
            .output()
            .expect("socks-supervise runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(&["/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"])
        + &run(&["/bin/ls", "-l", "/proc/self/fd/"]);
    assert!(text.contains("SigBlk:\t0000000000000000"), "no signal blocked:\n{text}");
    let ignored = text
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("SigIgn line");
    assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE at its default:\n{text}");
    assert!(!text.contains("seccomp"), "the listener must not reach the program:\n{text}");
    for (program, status) in [("/nonexistent/program", 127), ("/etc/passwd", 126)] {
        let out = Command::new(paths::supervisor())
            .args(["--", program])
            .output()
            .expect("socks-supervise runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{program}: {stderr}");
        assert!(stderr.contains(&format!("cannot start {program}")), "{program}: {stderr}");
    }
}

/// The handler threads grow with the calls that wait and end once idle: six connects held by
/// a SOCKS server that accepts and never answers (a listener of this test on loopback) run at
/// once, on six handler threads of the supervisor; a few seconds after they have timed out
/// none is left. No lab: the destination is never contacted, only the loopback
/// "server".
#[test]
fn idle_handler_threads_end() {
    if !supervisor_works("idle_handler_threads_end") {
        return;
    }
    let busybox = busybox_static();
    let server = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback listener");
    let port = server.local_addr().expect("its address").port();
    server.set_nonblocking(true).expect("non-blocking listener");
    let holder = std::thread::spawn(move || {
        // Accepted and held open, never answered, for 5 s.
        let mut held = Vec::new();
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(5) {
            match server.accept() {
                Ok(conn) => held.push(conn),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
        held.len()
    });
    let conf = std::env::temp_dir().join(format!("idle-handlers-{}.conf", std::process::id()));
    std::fs::write(&conf, format!("sockd @=127.0.0.1:{port} 0.0.0.0/0\n")).expect("socks.conf");
    let bb = busybox.display().to_string();
    let script = format!(
        "for i in 1 2 3 4 5 6; do {bb} nc -w 10 198.51.100.9 80 </dev/null & done; wait; \
         echo all-failed; {bb} sleep 9"
    );
    let child = Command::new(paths::supervisor())
        .args(["-c", &conf.display().to_string(), "--", &bb, "sh", "-c", &script])
        .env("SOCKS_TIMEOUT", "2")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("socks-supervise starts");
    // The pool's threads are named `handler` (the name service has threads of its own).
    let threads = |pid: u32| {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten();
        tasks
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "handler")
            })
            .count()
    };
    let start = std::time::Instant::now();
    let mut most = 0;
    while start.elapsed() < std::time::Duration::from_millis(1500) {
        most = most.max(threads(child.id()));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Timed out at 2 s; idle threads end 5 s later; checked at 9.5 s, before the sleep ends.
    std::thread::sleep(std::time::Duration::from_millis(8000));
    let left = threads(child.id());
    let out = child.wait_with_output().expect("socks-supervise ends");
    let _ = std::fs::remove_file(&conf);
    assert_eq!(holder.join().expect("holder"), 6, "all six connects reached the server");
    assert!(String::from_utf8_lossy(&out.stdout).contains("all-failed"));
    assert_eq!(most, 6, "six waiting connects, six handler threads");
    assert_eq!(left, 0, "the idle handler threads ended");
}
