//! Real programs and unusual process lives under the supervisor (issue 12's remaining cases),
//! in the namespace lab: a workstation with no route out, sockd on the firewall, hosts
//! outside, and the leak counter asserting nothing leaves the workstation but to sockd.
//!
//! - rclone (Debian's, a dynamically linked Go program) under a plain `socksify`, which must
//!   pick the supervisor by itself: `rclone copyurl` by a name resolved on the far side (Go's
//!   own resolver, and glibc's getaddrinfo when told `netdns=cgo`), and by address.
//! - A dynamically linked musl program (musl-gcc) under a plain `socksify`: musl's loader cannot
//!   load libsocks.so, so socksify must pick the supervisor; by a name resolved on the far side
//!   (musl's own resolver, unconnected `sendto` to port 53).
//! - busybox-static `telnet` by name, on a terminal, to telnetd under inetd outside.
//! - A static Go program that starts children (os/exec: itself, and busybox-static `wget`),
//!   and one that daemonises (setsid; the child connects after its parent is gone); socksify
//!   run again inside a supervised tree.
//! - A dynamically linked program (curl) under `--supervise`, and started by a supervised
//!   static program: it stays supervised. A setuid-root and a file-capability copy of a static
//!   program get what NO_NEW_PRIVS gives them and still go through sockd. A non-dumpable
//!   program goes through sockd when root runs it and fails closed (EPERM) when a user does.
//! - A Go program whose connect a slow SOCKS server holds.
//! - Hostile or unusual calls (`tests/c/tricks.c`): SIGALRM with and without SA_RESTART while
//!   a slow SOCKS server holds the connect, and while a hanging one does; `dup2`/`dup3` of a
//!   proxied socket; a socket made in a parent and connected in a forked child; a proxied
//!   socket passed to another process with SCM_RIGHTS; connect again on a connected socket
//!   (ignored: a supervisor bug, see the test); a descriptor number reused between a proxied
//!   and a direct socket; IPv6 destinations (v4-mapped and real); `posix_spawn`
//!   (clone3/CLONE_VFORK in glibc) and `vfork` + exec; a seccomp listener of the program's
//!   own, to answer its connects before the supervisor.
//! - BIND after a connection by NAME: an active-mode FTP download by a Go program whose
//!   control connection was made to a name.
//!
//! Not here: UDP through SOCKS under the supervisor; the cases supervised.rs and
//! supervised_names.rs already cover (address rewrites, int 0x80/x32/io_uring, many threads,
//! an orphan, names by Go and busybox).

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socks_e2e::build::{build_static, go_build, supervised_lab};
use socks_e2e::dns::{self, MANY, OUTSIDE_ADDR6, WWW};
use socks_e2e::netns::in_netns;
use socks_e2e::*;

/// The line SOCKS_LOG=info prints for a connection the supervisor proxied through our server.
fn proxied(dst: impl std::fmt::Display) -> String {
    format!("]: connect {dst} via {SERVER} (socks5): ok")
}

/// Asserts the supervisor (not the library) proxied a connect to `dst` (an address or
/// `NAME:PORT`), `count` times.
fn assert_supervised(ran: &Ran, dst: impl std::fmt::Display, count: usize) {
    let line = proxied(dst);
    assert!(
        ran.stderr.contains("socks-supervise[") && ran.stderr.matches(&line).count() == count,
        "the supervisor must report {count} proxied connect(s) `{line}`\n{}",
        ran.describe()
    );
}

/// sockd connected the workstation to `name`:`port` (the NAME, never a fake address) `count`
/// times.
fn assert_sessions_by_name(sockd: &Daemon, name: &str, port: u16, count: usize) {
    let (client, dst) = (format!("client={INSIDE_ADDR}:"), format!("dst={name}:{port} "));
    sockd.wait_lines(&["connected:", &client, "cmd=connect", &dst], count, STARTUP);
    dns::assert_no_fake_destination(sockd);
}

// ---------------------------------------------------------------------------------------------
// rclone

/// rclone as Debian ships it: dynamically linked (cgo), but Go — socksify must pick the
/// supervisor for it without being told.
fn rclone() -> PathBuf {
    let rclone = paths::require("rclone", "rclone");
    let out = Command::new(paths::supervisor())
        .arg("--which")
        .arg(&rclone)
        .output()
        .expect("socks-supervise --which runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "supervise go\n",
        "rclone must be recognised as a Go program"
    );
    rclone
}

/// Runs `rclone copyurl URL OUT` under a plain `socksify VERBOSITY -s SERVER` with
/// `GODEBUG=netdns=NETDNS` (`2`: Go says which resolver it uses; `cgo+2`: and it must use
/// libc's getaddrinfo) and returns the run and the file it wrote.
fn rclone_copyurl(
    lab: &Lab,
    url: &str,
    out: &str,
    verbosity: &str,
    netdns: &str,
) -> (Ran, Vec<u8>) {
    let target = lab.dir.path().join(out);
    let ran = lab
        .client(rclone())
        .args(["copyurl", "--config", "/dev/null", "--retries", "1", "--low-level-retries", "1"])
        .args([url, &target.display().to_string()])
        .env("GODEBUG", format!("netdns={netdns}"))
        .env("HOME", lab.dir_str())
        .socksify(&[verbosity, "-s", SERVER])
        .timeout(Duration::from_secs(60))
        .run();
    ran.assert_success();
    let got = std::fs::read(&target).unwrap_or_default();
    (ran, got)
}

/// rclone's lookups: Go's own resolver, not getaddrinfo. With cgo compiled in, Go still picks
/// its own DNS client ("dynamic selection", then `hostLookupOrder(NAME) = files,dns`; cgo would
/// say `= cgo`) for `hosts: files dns` in nsswitch.conf and a plain resolv.conf; its UDP query
/// goes to resolv.conf's server, the supervisor answers it with a fake address, and the connect
/// to that address sends sockd the NAME. With `GODEBUG=netdns=cgo` it calls glibc's
/// getaddrinfo instead, and that works the same way.
#[test]
fn rclone_copyurl_by_name_and_by_address() {
    let Some((lab, leaks, outside, sockd)) = dns::supervised_names_lab("supervised-rclone") else {
        return;
    };
    let www = dns::http_dual(&lab, 80);
    let url = format!("http://{WWW}/bytes/777777");
    let (ran, got) = rclone_copyurl(&lab, &url, "by-name.bin", "-vv", "2");
    assert!(
        got == http_body("/bytes/777777"),
        "rclone wrote {} bytes, not the 777777-byte body\n{}",
        got.len(),
        ran.describe()
    );
    assert_supervised(&ran, format!("{WWW}:80"), 1);
    assert!(
        ran.stderr.contains(&format!("go package net: hostLookupOrder({WWW}) = files,dns")),
        "rclone must resolve with Go's own resolver (not cgo's getaddrinfo)\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("{DEAD_DNS_ADDR}:53: name service (UDP)")),
        "the supervisor must have answered rclone's query\n{}",
        ran.describe()
    );
    assert_sessions_by_name(&sockd, WWW, 80, 1);

    // Told to use cgo, rclone resolves through glibc's getaddrinfo (the dynamic libc, in the
    // supervised process: its resolver's query on a connected UDP socket gets the same answer).
    let url = format!("http://{WWW}/bytes/99999");
    let (ran, got) = rclone_copyurl(&lab, &url, "by-name-cgo.bin", "-vv", "cgo+2");
    assert!(got == http_body("/bytes/99999"), "{} bytes\n{}", got.len(), ran.describe());
    assert!(
        ran.stderr.contains(&format!("go package net: hostLookupOrder({WWW}) = cgo")),
        "GODEBUG=netdns=cgo must make rclone call getaddrinfo\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("{DEAD_DNS_ADDR}:53: name service (UDP)")),
        "the supervisor must have answered glibc's query\n{}",
        ran.describe()
    );
    assert_supervised(&ran, format!("{WWW}:80"), 1);
    assert_sessions_by_name(&sockd, WWW, 80, 2);
    dns::assert_relayed(&www);
    outside.assert_asked_only_by_firewall();

    let http = lab.http(8080);
    let url = format!("http://{}/bytes/123456", http.addr());
    let (ran, got) = rclone_copyurl(&lab, &url, "by-address.bin", "-v", "2");
    assert!(got == http_body("/bytes/123456"), "{} bytes\n{}", got.len(), ran.describe());
    assert_supervised(&ran, http.addr(), 1);
    let exchanges = http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    assert_session(&sockd, http.addr(), Some(&exchanges[0]));
    leaks.assert_only_sockd("rclone copyurl by name and by address under the supervisor");
}

// ---------------------------------------------------------------------------------------------
// musl

/// A client for musl: `getaddrinfo(NAME)`, connect, `GET PATH`, the body on stdout.
const MUSL_FETCH: &str = r#"#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(argv[1], "80", &hints, &res);
    if (rc != 0) { fprintf(stderr, "getaddrinfo: %s\n", gai_strerror(rc)); return 2; }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, res->ai_addr, res->ai_addrlen) != 0) { perror("connect"); return 3; }
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", argv[2], argv[1]);
    if (write(s, req, n) != n) { perror("write"); return 4; }
    static char all[1 << 20];
    size_t got = 0;
    ssize_t r;
    while ((r = read(s, all + got, sizeof all - got)) > 0) got += r;
    char *body = strstr(all, "\r\n\r\n");
    if (!body) { fprintf(stderr, "no body\n"); return 5; }
    fwrite(body + 4, 1, got - (body + 4 - all), stdout);
    return 0;
}
"#;

/// A dynamically linked musl program (its loader, `/lib/ld-musl-x86_64.so.1`, cannot load the
/// glibc library: under LD_PRELOAD it does not even start): a plain `socksify` must run it under
/// the supervisor, whose name service answers musl's resolver, and it fetches by name through
/// sockd with nothing leaving the workstation.
#[test]
fn a_dynamic_musl_program_is_supervised_by_plain_socksify() {
    let Some((lab, leaks, outside, sockd)) = dns::supervised_names_lab("supervised-musl") else {
        return;
    };
    let musl_gcc = paths::require("musl-gcc", "musl-tools");
    let source = lab.write("fetch.c", MUSL_FETCH);
    let binary = lab.dir.path().join("musl-fetch");
    let built = Command::new(musl_gcc)
        .args(["-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("musl-gcc runs");
    assert!(built.status.success(), "musl-gcc: {}", String::from_utf8_lossy(&built.stderr));
    let which = Command::new(paths::supervisor()).arg("--which").arg(&binary).output();
    let which =
        String::from_utf8_lossy(&which.expect("socks-supervise --which runs").stdout).into_owned();
    assert_eq!(which, "supervise not-glibc\n", "a musl program needs the supervisor");

    let www = dns::http_dual(&lab, 80);
    let ran = lab
        .client(&binary)
        .args([WWW, "/musl"])
        .socksify(&["-v", "-s", SERVER])
        .timeout(Duration::from_secs(30))
        .run();
    assert!(
        ran.success() && ran.stdout == http_body("/musl"),
        "the musl program fetches by name under a plain socksify\n{}",
        ran.describe()
    );
    assert_supervised(&ran, format!("{WWW}:80"), 1);
    assert_sessions_by_name(&sockd, WWW, 80, 1);
    dns::assert_relayed(&www);
    outside.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("a dynamic musl program by name under socksify");
}

// ---------------------------------------------------------------------------------------------
// Children

/// A static Go program (`CGO_ENABLED=0`) that starts other programs:
/// - `fetch URL`: GET, the body on stdout;
/// - `parent URL BUSYBOX URL2`: runs itself with `fetch URL`, then `BUSYBOX wget -q -O - URL2`
///   (os/exec, each waited for), and says how each ended;
/// - `daemon URL`: starts itself as `orphan PPID URL` in a session of its own (setsid) and
///   exits at once; the orphan waits until its parent is gone (its parent pid changes), says
///   so, then fetches.
const GO_FAMILY: &str = r#"package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

func fail(what string, err error) {
	fmt.Fprintln(os.Stderr, what+":", err)
	os.Exit(1)
}

func fetch(url string) {
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Get(url)
	if err != nil {
		fail("get", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		fail("read", err)
	}
}

func run(name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err := cmd.Run()
	fmt.Printf("\n%s exited: %v\n", args[0], err)
}

func main() {
	self, err := os.Executable()
	if err != nil {
		fail("executable", err)
	}
	switch os.Args[1] {
	case "fetch":
		fetch(os.Args[2])
	case "parent":
		run(self, "fetch", os.Args[2])
		run(os.Args[3], "wget", "-q", "-O", "-", os.Args[4])
	case "daemon":
		cmd := exec.Command(self, "orphan", strconv.Itoa(os.Getpid()), os.Args[2])
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fail("start", err)
		}
		fmt.Println("parent exits")
	case "orphan":
		parent, _ := strconv.Atoi(os.Args[2])
		deadline := time.Now().Add(10 * time.Second)
		for os.Getppid() == parent {
			if time.Now().After(deadline) {
				fail("orphan", fmt.Errorf("the parent %d never went away", parent))
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		fmt.Printf("orphan: parent gone, own session: %v\n", syscall.Getpgrp() == os.Getpid())
		fetch(os.Args[3])
	}
}
"#;

/// A static Go program runs itself and busybox-static `wget` (os/exec: fork/clone + execve of
/// static programs), each fetching by NAME: both connections go through sockd by name.
#[test]
fn go_program_starts_children_that_connect_by_name() {
    let Some((lab, leaks, outside, sockd)) = dns::supervised_names_lab("supervised-children")
    else {
        return;
    };
    let program = go_build(&lab, "family", GO_FAMILY);
    let busybox = paths::require("busybox", "busybox-static");
    let www = dns::http_dual(&lab, 80);
    let ran = lab
        .client(&program)
        .args(["parent".to_owned(), format!("http://{WWW}/from-go-child")])
        .args([busybox.display().to_string(), format!("http://{WWW}/from-wget")])
        .socksify(&["-v", "-s", SERVER])
        .run();
    ran.assert_success();
    assert_eq!(
        ran.stdout_text(),
        "hello from outside: /from-go-child\n\nfetch exited: <nil>\n\
         hello from outside: /from-wget\n\nwget exited: <nil>\n",
        "{}",
        ran.describe()
    );
    assert_supervised(&ran, format!("{WWW}:80"), 2);
    assert_sessions_by_name(&sockd, WWW, 80, 2);
    dns::assert_relayed(&www);
    outside.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("a Go program's children, by name, under the supervisor");
}

/// A static Go program starts a child in a new session and exits (a daemon's fork and setsid):
/// the child, whose parent is gone, still connects through sockd by name.
#[test]
fn go_daemon_child_connects_after_its_parent_exits() {
    let Some((lab, leaks, outside, sockd)) = dns::supervised_names_lab("supervised-daemon") else {
        return;
    };
    let program = go_build(&lab, "family", GO_FAMILY);
    let www = dns::http_dual(&lab, 80);
    let ran = lab
        .client(&program)
        .args(["daemon".to_owned(), format!("http://{WWW}/after-the-parent")])
        .socksify(&["-v", "-s", SERVER])
        .run();
    ran.assert_success();
    assert_eq!(
        ran.stdout_text(),
        "parent exits\norphan: parent gone, own session: true\nhello from outside: /after-the-parent\n",
        "{}",
        ran.describe()
    );
    assert_supervised(&ran, format!("{WWW}:80"), 1);
    assert_sessions_by_name(&sockd, WWW, 80, 1);
    dns::assert_relayed(&www);
    outside.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("a Go daemon's child under the supervisor");
}

/// socksify run again inside a supervised tree (a script under socksify that itself says
/// `socksify PROGRAM`) cannot start a second supervisor — the kernel allows one seccomp
/// listener per filter chain — so it fails at once with exit status 126 and says why, instead
/// of running the program some other way; the same program run plainly in that tree is
/// supervised by the outer supervisor and goes through sockd. Nothing leaks either way.
#[test]
fn socksify_inside_a_supervised_tree_fails_clearly() {
    let Some(lab) = supervised_lab("supervised-nested-socksify") else { return };
    let busybox = paths::require("busybox", "busybox-static");
    let http = lab.http(80);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    let (bb, socksify) = (busybox.display().to_string(), paths::socksify().display().to_string());
    let url = format!("http://{}/inner", http.addr());
    let script = format!(
        "{socksify} -s {SERVER} {bb} wget -q -O - {url}; echo inner=$?; {bb} wget -q -O - {url}"
    );
    let ran =
        lab.client(&busybox).args(["sh", "-c", &script]).socksify(&["-v", "-s", SERVER]).run();
    ran.assert_success();
    assert_eq!(ran.stdout_text(), "inner=126\nhello from outside: /inner\n", "{}", ran.describe());
    assert!(
        ran.stderr.contains("nested supervision is not possible"),
        "the inner socksify must say why it cannot start\n{}",
        ran.describe()
    );
    assert_supervised(&ran, http.addr(), 1);
    http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    assert_session(&sockd, http.addr(), None);
    leaks.assert_only_sockd("socksify inside a supervised tree");
}

// ---------------------------------------------------------------------------------------------
// busybox-static telnet

/// What telnetd runs instead of login for the scripted session: a greeting, one line read, an
/// answer computed from it, and a last line awaited before it exits (telnetd tears the
/// connection down as soon as its child exits, so the answer must not be the last word).
const TELNET_SESSION: &str = "#!/bin/sh\n\
                              # socks-e2e: what telnetd runs instead of login\n\
                              echo \"outside session ready\"\n\
                              read -r a b\n\
                              echo \"product=$((a * b))\"\n\
                              read -r last\n";

/// busybox-static `telnet` by NAME (glibc's resolver linked in, answered by the supervisor) to
/// GNU telnetd under inetd outside, on a terminal: the far side greets, reads a line typed
/// here, answers from it, and closes (busybox telnet then says so and exits 1, its way); all
/// through sockd by name, under a plain socksify.
#[test]
fn busybox_telnet_by_name() {
    let Some((lab, leaks, outside, sockd)) = dns::supervised_names_lab("supervised-telnet") else {
        return;
    };
    let busybox = paths::require("busybox", "busybox-static");
    let session = lab.write("telnet-session.sh", TELNET_SESSION);
    std::fs::set_permissions(&session, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the session script");
    let addr = SocketAddr::from((OUTSIDE_ADDR, 2323));
    let _inetd = lab.inetd(Ns::Outside, "inetd-outside", &[inetd::telnetd(addr, Some(&session))]);
    let argv: Vec<std::ffi::OsString> = vec![
        paths::socksify().into(),
        "-v".into(),
        "-s".into(),
        SERVER.into(),
        busybox.into(),
        "telnet".into(),
        MANY.into(),
        "2323".into(),
    ];
    let ran = lab
        .pty_session(
            &argv,
            &[
                Step::Expect("outside session ready"),
                Step::Send("6 7\r"),
                Step::Expect("product=42"),
                Step::Send("bye\r"),
                Step::Eof,
            ],
        )
        .run();
    ran.assert_success();
    let transcript = ran.stdout_text();
    assert!(
        transcript.contains("socks-supervise[")
            && transcript.contains(&proxied(format!("{MANY}:2323")))
            && transcript.contains("Connected to many.example.test")
            && transcript.contains("product=42")
            && transcript.contains("Connection closed by foreign host"),
        "busybox telnet must go through the supervisor and sockd by name, and end cleanly\n{}",
        ran.describe()
    );
    assert_sessions_by_name(&sockd, MANY, 2323, 1);
    outside.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("busybox-static telnet by name under the supervisor");
}

// ---------------------------------------------------------------------------------------------
// Dynamically linked and privileged programs under the supervisor

/// `socksify --supervise curl`: a dynamically linked program under the supervisor (no
/// library preloaded) goes through sockd; and curl started by a supervised busybox-static sh
/// (a plain socksify picks the supervisor for busybox) stays supervised.
#[test]
fn dynamic_curl_stays_supervised() {
    let Some(lab) = supervised_lab("supervised-curl") else { return };
    let curl = paths::require("curl", "curl");
    let busybox = paths::require("busybox", "busybox-static");
    let http = lab.http(8080);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    let url = format!("http://{}/bytes/65536", http.addr());
    let ran = lab
        .client(&curl)
        .args(["-sS", "--noproxy", "*", &url])
        .socksify(&["--supervise", "-v", "-s", SERVER])
        .run();
    ran.assert_success();
    assert!(ran.stdout == http_body("/bytes/65536"), "{}", ran.describe());
    assert_supervised(&ran, http.addr(), 1);
    assert!(
        !ran.stderr.contains("libsocks["),
        "no library may be loaded under --supervise\n{}",
        ran.describe()
    );
    // curl started by a supervised static shell: no LD_PRELOAD in its environment, and its
    // connect is the supervisor's.
    let script = format!(
        "echo LD_PRELOAD=${{LD_PRELOAD:-unset}}; {} -sS --noproxy '*' {url} | {} md5sum",
        curl.display(),
        busybox.display()
    );
    let ran =
        lab.client(&busybox).args(["sh", "-c", &script]).socksify(&["-v", "-s", SERVER]).run();
    ran.assert_success();
    let body = http_body("/bytes/65536");
    let expected = format!("LD_PRELOAD=unset\n{}  -\n", md5_hex(&lab, &busybox, &body));
    assert_eq!(ran.stdout_text(), expected, "{}", ran.describe());
    assert_supervised(&ran, http.addr(), 1);
    http.wait_done(2, STARTUP);
    assert_from_firewall(&http);
    sockd.wait_lines(&["closed:", &format!("dst={} ", http.addr())], 2, STARTUP);
    leaks.assert_only_sockd("curl under the supervisor");
}

/// busybox md5sum of `bytes`, for comparing what a pipeline printed.
fn md5_hex(lab: &Lab, busybox: &Path, bytes: &[u8]) -> String {
    let file = lab.write("md5-input", bytes);
    let out = Command::new(busybox).arg("md5sum").arg(&file).output().expect("md5sum runs");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_owned()
}

/// A setuid-root copy and a file-capability copy (cap_net_raw) of a static program, run by
/// nobody under `--supervise`: the program gets exactly what the kernel gives an exec under
/// NO_NEW_PRIVS (`setpriv --no-new-privs`, no supervisor, tells what that is here) — the
/// setuid bit is ignored (euid stays nobody's). The file capability, though, is granted on
/// this kernel (6.18) even under NO_NEW_PRIVS; the test checks the supervised program matches
/// the kernel whichever way it goes. A capability cannot lift a seccomp filter, and the
/// connect still goes through sockd. Without NO_NEW_PRIVS the setuid copy gets euid 0 (else
/// the test proves nothing).
#[test]
fn setuid_and_capability_programs_under_no_new_privs() {
    let Some(lab) = supervised_lab("supervised-setuid") else { return };
    let Some(tricks) = build_static(lab.name(), lab.dir.path(), "tricks") else { return };
    let setpriv = paths::require("setpriv", "util-linux");
    let setcap = paths::require("setcap", "libcap2-bin");
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    // nobody must reach the copies: the lab directory is root's, 0755.
    let dir = lab.dir.path();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod 755 the lab directory");
    let suid = dir.join("tricks-suid");
    let cap = dir.join("tricks-cap");
    for copy in [&suid, &cap] {
        std::fs::copy(&tricks, copy).expect("copy tricks");
    }
    std::fs::set_permissions(&suid, std::os::unix::fs::PermissionsExt::from_mode(0o4755))
        .expect("chmod 4755");
    let out = Command::new(&setcap).arg("cap_net_raw+ep").arg(&cap).output().expect("setcap");
    assert!(out.status.success(), "setcap: {}", String::from_utf8_lossy(&out.stderr));
    // setpriv drops to nobody, then execs the copy: bare, bare with NO_NEW_PRIVS, supervised.
    let as_nobody = |program: &Path, how: &str| {
        let mut options = vec!["--reuid=65534", "--regid=65534", "--clear-groups"];
        if how == "nnp" {
            options.push("--no-new-privs");
        }
        let client = lab.client(&setpriv).args(options).args([Path::new("--"), program]).args([
            "ids",
            &OUTSIDE_ADDR.to_string(),
            "7",
        ]);
        match how {
            "supervised" => client.socksify(&["--supervise", "-v", "-s", SERVER]).run(),
            _ => client.run(),
        }
    };
    let ids = |ran: &Ran| ran.stdout_text().lines().next().unwrap_or("").to_owned();
    let bare = as_nobody(&suid, "bare");
    if !ids(&bare).starts_with("uid=65534 euid=0 ") {
        let why = format!("a setuid copy does not get euid 0 here (nosuid?)\n{}", bare.describe());
        skip(lab.name(), &why);
        return;
    }
    let bare_cap = as_nobody(&cap, "bare");
    assert_eq!(
        ids(&bare_cap),
        "uid=65534 euid=65534 capeff=0000000000002000",
        "the capability copy must get cap_net_raw without NO_NEW_PRIVS\n{}",
        bare_cap.describe()
    );
    for (program, what) in [(&suid, "setuid root"), (&cap, "cap_net_raw")] {
        let nnp = ids(&as_nobody(program, "nnp"));
        assert!(nnp.starts_with("uid=65534 euid=65534 "), "{what} under NO_NEW_PRIVS: {nnp}");
        eprintln!("{what} under NO_NEW_PRIVS here: {nnp}");
        let ran = as_nobody(program, "supervised");
        ran.assert_success();
        assert_eq!(
            ran.stdout_text(),
            format!("{nnp}\npeer={} ping=ok\n", echo.addr()),
            "a {what} program under the supervisor gets what NO_NEW_PRIVS gives and is \
             proxied\n{}",
            ran.describe()
        );
        assert_supervised(&ran, echo.addr(), 1);
    }
    echo.wait_done(2, STARTUP);
    assert_from_firewall(&echo);
    sockd.wait_lines(&["closed:", &format!("dst={} ", echo.addr())], 2, STARTUP);
    leaks.assert_only_sockd("setuid and file-capability programs under the supervisor");
}

/// A program that makes itself non-dumpable (`PR_SET_DUMPABLE` 0, as ssh-agent and gpg-agent
/// do): run by root, the supervisor (root too, CAP_SYS_PTRACE) still copies its socket and the
/// connect goes through sockd. Run by an ordinary user, the supervisor (that user) may neither
/// copy its descriptors (`pidfd_getfd` needs ptrace access) nor read its memory, so the connect
/// fails with EPERM and says why — closed, never direct, nothing leaves. A limitation of
/// seccomp user notification without privileges, asserted here as it is.
#[test]
fn an_undumpable_program_fails_closed_for_a_user() {
    let Some((lab, tricks, echo, sockd, leaks)) = tricks_lab("supervised-nodump") else {
        return;
    };
    let setpriv = paths::require("setpriv", "util-linux");
    std::fs::set_permissions(lab.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod 755 the lab directory");
    let args = ["nodump".to_owned(), OUTSIDE_ADDR.to_string(), "7".to_owned()];
    let root = lab.client(&tricks).args(&args).socksify(&["-v", "-s", SERVER]).run();
    root.assert_success();
    assert_eq!(
        root.stdout_text(),
        format!("dumpable=0\npeer={} ping=ok\n", echo.addr()),
        "{}",
        root.describe()
    );
    assert_supervised(&root, echo.addr(), 1);
    echo.wait_done(1, STARTUP);
    assert_session(&sockd, echo.addr(), None);
    // As nobody, the whole command: socksify, the supervisor and the program.
    let user = lab
        .client(&setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args([paths::socksify().as_path(), Path::new("-v"), Path::new("-s"), Path::new(SERVER)])
        .args([tricks.as_path()])
        .args(&args)
        .run();
    user.assert_success();
    assert_eq!(
        user.stdout_text(),
        format!("dumpable=0\nconnect=-1 errno={}\n", libc::EPERM),
        "{}",
        user.describe()
    );
    assert!(
        user.stderr.contains("connect on fd 3: cannot copy it: Operation not permitted"),
        "the supervisor must say why\n{}",
        user.describe()
    );
    assert_eq!(echo.accepted().len(), 1, "the refused connect must reach nobody");
    assert_eq!(
        sockd.lines_with(&["connected:"]).len(),
        1,
        "the refused connect must not reach sockd:\n{}",
        sockd.log()
    );
    let counts = leaks.counts();
    assert!(counts.leaked == 0, "nothing may leave but to sockd: {counts:?}\n{}", leaks.table());
}

// ---------------------------------------------------------------------------------------------
// Hostile and unusual calls (tests/c/tricks.c)

/// The tricks program built for `lab`, sockd, an echo server outside on port 7 and the leak
/// counter; `None` when skipped.
fn tricks_lab(name: &str) -> Option<(Lab, PathBuf, Server, Daemon, LeakCounter)> {
    let lab = supervised_lab(name)?;
    let tricks = build_static(lab.name(), lab.dir.path(), "tricks")?;
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    Some((lab, tricks, echo, sockd, leaks))
}

/// A SOCKS "server" in `fw` that holds each connection for `delay` before it starts relaying
/// it to `to` (sockd): a slow server, so a connect waits in the supervisor that long.
struct SlowRelay {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl SlowRelay {
    fn start(lab: &Lab, listen: SocketAddr, to: SocketAddr, delay: Duration) -> SlowRelay {
        let ns = lab.ns(Ns::Fw).to_owned();
        let listener = in_netns(&ns, move || TcpListener::bind(listen)).expect("relay listens");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let ns = ns.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = in_netns(&ns, move || TcpStream::connect(to)) else {
                            return;
                        };
                        let (c2, s2) = (client.try_clone(), server.try_clone());
                        let (Ok(c2), Ok(s2)) = (c2, s2) else { return };
                        let up = std::thread::spawn(move || pipe(client, server));
                        pipe(s2, c2);
                        let _ = up.join();
                    });
                }
            })
        };
        SlowRelay { stop, accept: Some(accept) }
    }
}

/// Runs `tricks TRICK OUTSIDE 7` under socksify and checks its one proxied echo: the output
/// (`expected`, given the destination), the supervisor's log line, the echo seen from the
/// firewall, sockd's session, and that nothing else left the workstation (`what` names it).
fn assert_one_proxied_trick(
    (lab, tricks, echo, sockd, leaks): &(Lab, PathBuf, Server, Daemon, LeakCounter),
    trick: &str,
    what: &str,
    expected: impl FnOnce(SocketAddr) -> String,
) {
    let ran = lab
        .client(tricks)
        .args([trick, &OUTSIDE_ADDR.to_string(), "7"])
        .socksify(&["-v", "-s", SERVER])
        .run();
    ran.assert_success();
    let dst = echo.addr();
    assert_eq!(ran.stdout_text(), expected(dst), "{}", ran.describe());
    assert_supervised(&ran, dst, 1);
    echo.wait_done(1, STARTUP);
    assert_from_firewall(echo);
    assert_session(sockd, dst, None);
    leaks.assert_only_sockd(what);
}

/// Copies `from` to `to` until end of stream, then half-closes `to`.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = from.set_read_timeout(Some(Duration::from_secs(20)));
    let mut buffer = [0u8; 16384];
    while let Ok(n) = from.read(&mut buffer) {
        if n == 0 || to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for SlowRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// SIGALRM every 100 ms, with and without SA_RESTART, while a slow SOCKS server (1.5 s)
/// holds the connect: the connect completes through sockd (the supervisor's filter waits
/// killably, so the handler runs once the call is answered) or fails — never direct — and
/// the program does not hang.
#[test]
fn sigalrm_during_a_held_connect() {
    let Some((lab, tricks, echo, sockd, leaks)) = tricks_lab("supervised-sigalrm") else {
        return;
    };
    let slow = SocketAddr::from((FW_INSIDE_ADDR, 1081));
    let _relay = SlowRelay::start(
        &lab,
        slow,
        SocketAddr::from((FW_INSIDE_ADDR, SOCKS_PORT)),
        Duration::from_millis(1500),
    );
    let conf = lab.write("socks.conf", format!("sockd @={slow} 0.0.0.0/0\n"));
    let expected = format!("connect=0 errno=0 signals=yes\npeer={}\nping=ok\n", echo.addr());
    for flags in ["restart", "norestart"] {
        let ran = lab
            .client(&tricks)
            .args(["alarm", &OUTSIDE_ADDR.to_string(), "7", flags])
            .socksify(&["-v", "-c", &conf.display().to_string()])
            .timeout(Duration::from_secs(30))
            .run();
        assert!(ran.status.is_some(), "{flags}: the program must not hang\n{}", ran.describe());
        ran.assert_success();
        assert_eq!(ran.stdout_text(), expected, "{flags}\n{}", ran.describe());
        assert!(
            ran.elapsed >= Duration::from_millis(1400),
            "{flags}: the connect must have waited for the slow server\n{}",
            ran.describe()
        );
        assert!(
            ran.stderr.contains(&format!("]: connect {} via {slow} (socks5): ok", echo.addr())),
            "{}",
            ran.describe()
        );
    }
    echo.wait_done(2, STARTUP);
    assert_from_firewall(&echo);
    sockd.wait_lines(&["closed:", &format!("dst={} ", echo.addr())], 2, STARTUP);
    // Everything went to the slow server (on the firewall), nothing elsewhere.
    let (v4, v6) = leaks.leaked_destinations();
    assert!(
        v4 == [format!("{FW_INSIDE_ADDR} . tcp . 1081")] && v6.is_empty(),
        "only the slow SOCKS server may be reached: {v4:?} {v6:?}\n{}",
        leaks.table()
    );
}

/// A Go program (non-blocking connect from its netpoller, SIGURG preemption signals to its
/// threads meanwhile) whose connect a slow SOCKS server holds for 1.5 s still gets through.
#[test]
fn go_connect_held_by_a_slow_server() {
    let Some(lab) = supervised_lab("supervised-go-slow") else { return };
    let program = go_build(&lab, "family", GO_FAMILY);
    let http = lab.http(80);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    let slow = SocketAddr::from((FW_INSIDE_ADDR, 1081));
    let _relay = SlowRelay::start(
        &lab,
        slow,
        SocketAddr::from((FW_INSIDE_ADDR, SOCKS_PORT)),
        Duration::from_millis(1500),
    );
    let conf = lab.write("socks.conf", format!("sockd @={slow} 0.0.0.0/0\n"));
    let ran = lab
        .client(&program)
        .args(["fetch".to_owned(), format!("http://{}/bytes/100000", http.addr())])
        .socksify(&["-v", "-c", &conf.display().to_string()])
        .run();
    ran.assert_success();
    assert!(ran.stdout == http_body("/bytes/100000"), "{}", ran.describe());
    assert!(ran.elapsed >= Duration::from_millis(1400), "{}", ran.describe());
    assert!(
        ran.stderr.contains(&format!("]: connect {} via {slow} (socks5): ok", http.addr())),
        "{}",
        ran.describe()
    );
    http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    // sockd's client is the slow relay, on the firewall.
    sockd.wait_line(&["closed:", &format!("dst={} ", http.addr())], STARTUP);
    let (v4, v6) = leaks.leaked_destinations();
    assert!(
        v4 == [format!("{FW_INSIDE_ADDR} . tcp . 1081")] && v6.is_empty(),
        "only the slow SOCKS server may be reached: {v4:?} {v6:?}\n{}",
        leaks.table()
    );
}

/// The same signals while a SOCKS server that never answers holds the connect: it fails with
/// ETIMEDOUT once `SOCKS_TIMEOUT` has passed, with or without SA_RESTART (a restarted connect
/// must not start over, nor go direct), and the program does not hang.
#[test]
fn sigalrm_during_a_connect_to_a_hanging_server() {
    let Some((lab, tricks, echo, _sockd, leaks)) = tricks_lab("supervised-sigalrm-hang") else {
        return;
    };
    let hanging = SocketAddr::from((FW_INSIDE_ADDR, 1081));
    let silent = lab.silent_in(Ns::Fw, hanging);
    let conf = lab.write("socks.conf", format!("sockd @={hanging} 0.0.0.0/0\n"));
    for flags in ["restart", "norestart"] {
        let ran = lab
            .client(&tricks)
            .args(["alarm", &OUTSIDE_ADDR.to_string(), "7", flags])
            .env("SOCKS_TIMEOUT", "2")
            .socksify(&["-v", "-c", &conf.display().to_string()])
            .timeout(Duration::from_secs(30))
            .run();
        assert!(ran.status.is_some(), "{flags}: the program must not hang\n{}", ran.describe());
        ran.assert_success();
        assert_eq!(
            ran.stdout_text(),
            format!("connect=-1 errno={} signals=yes\n", libc::ETIMEDOUT),
            "{flags}\n{}",
            ran.describe()
        );
        assert!(
            ran.elapsed >= Duration::from_millis(1900) && ran.elapsed < Duration::from_millis(3900),
            "{flags}: the connect must wait out SOCKS_TIMEOUT once, not start over\n{}",
            ran.describe()
        );
    }
    assert_eq!(silent.accepted().len(), 2, "one connection to the hanging server per run");
    assert!(echo.accepted().is_empty(), "the destination must see nothing");
    let (v4, v6) = leaks.leaked_destinations();
    assert!(
        v4 == [format!("{FW_INSIDE_ADDR} . tcp . 1081")] && v6.is_empty(),
        "only the hanging SOCKS server may be reached: {v4:?} {v6:?}\n{}",
        leaks.table()
    );
}

/// dup2 and dup3 of a proxied socket: every number names the destination in getpeername (not
/// sockd), the copy carries the bytes after the original number is closed, and dup3's
/// O_CLOEXEC is kept.
#[test]
fn dup2_and_dup3_of_a_proxied_socket() {
    let Some(setup) = tricks_lab("supervised-dup") else { return };
    assert_one_proxied_trick(&setup, "dup", "dup2/dup3 of a proxied socket", |dst| {
        format!(
            "dup2=100 dup3=101\npeer={dst}\npeer100={dst}\npeer101={dst}\nping100=ok\n\
             cloexec101=1\npeer101-after-close={dst}\n"
        )
    });
}

/// A socket made in the parent and connected in a forked child goes through sockd; the
/// parent's copy is the same connected socket (its peer is the destination, its bytes echo).
#[test]
fn a_socket_passed_across_fork_connects_in_the_child() {
    let Some(setup) = tricks_lab("supervised-forkconnect") else { return };
    assert_one_proxied_trick(
        &setup,
        "forkconnect",
        "a socket connected in a forked child",
        |dst| format!("child: peer={dst} ping=ok\nchild-exit=0\nparent: peer={dst} ping=ok\n"),
    );
}

/// A proxied socket passed to another process over an AF_UNIX socket (SCM_RIGHTS, by a
/// `sendmsg` the supervisor sees and lets through) names the destination in the receiver too,
/// and carries its bytes there.
#[test]
fn a_proxied_socket_passed_with_scm_rights() {
    let Some(setup) = tricks_lab("supervised-passfd") else { return };
    assert_one_proxied_trick(&setup, "passfd", "a proxied socket passed with SCM_RIGHTS", |dst| {
        format!("child: peer={dst} ping=ok\nsendmsg=1\nchild-exit=0\n")
    });
}

/// connect() again on a connected socket gets the kernel's answer, EISCONN, and the
/// connection goes on, as under the library: a direct socket connected again to its own
/// destination, a proxied one to its own, and a proxied one to a direct destination.
///
/// (The supervisor used to route such a connect again: to the same proxied destination it ran a
/// second SOCKS handshake over the live relayed connection, whose greeting reached the
/// destination; to a direct one it answered 0 without connecting, leaving the socket on the
/// proxied connection. A socket whose non-blocking connect completed stays "connecting" in the
/// kernel until the next connect(2), which answers 0 whatever the address.)
#[test]
fn connect_again_on_a_connected_socket_is_eisconn() {
    let Some((lab, tricks, echo, sockd, leaks)) = tricks_lab("supervised-connect-again") else {
        return;
    };
    let direct = lab.echo_in(Ns::Fw, SocketAddr::from((FW_INSIDE_ADDR, 4242)));
    let (far, near) = (echo.addr(), direct.addr());
    for (first, again) in [(near, near), (far, far), (far, near)] {
        let ran = lab
            .client(&tricks)
            .args(["reconnect", &first.ip().to_string(), &first.port().to_string()])
            .args([again.ip().to_string(), again.port().to_string()])
            .socksify(&["-vv", "-s", SERVER])
            .run();
        ran.assert_success();
        assert_eq!(
            ran.stdout_text(),
            format!("first=0 ping=ok\nsecond=-1 errno={}\npeer={first} ping=ok\n", libc::EISCONN),
            "{first} then {again}\n{}",
            ran.describe()
        );
    }
    echo.wait_done(2, STARTUP);
    let closed = sockd.wait_lines(&["closed:", &format!("dst={far} ")], 2, STARTUP);
    assert!(
        closed.iter().all(|line| line.contains(" sent=11 ")),
        "only the program's 11 bytes (\"before\", \"after\") may reach the destination: {closed:?}"
    );
    leaks.assert_only_sockd_and(
        "connect again on a connected socket",
        &[format!("{FW_INSIDE_ADDR} . tcp . 4242")],
    );
}

/// A descriptor number reused: a proxied socket closed and the number given to a socket
/// connected directly (to the firewall's inside address, an attached network), and back. Each
/// getpeername names its own socket's peer — what the supervisor remembers of a socket is tied
/// to the socket, not to its number — and only the proxied ones go through sockd.
#[test]
fn a_reused_descriptor_number_names_its_own_peer() {
    let Some((lab, tricks, echo, sockd, leaks)) = tricks_lab("supervised-reuse") else { return };
    let direct = lab.echo_in(Ns::Fw, SocketAddr::from((FW_INSIDE_ADDR, 4242)));
    let ran = lab
        .client(&tricks)
        .args(["reuse", &OUTSIDE_ADDR.to_string(), "7", &FW_INSIDE_ADDR.to_string(), "4242"])
        .socksify(&["-v", "-s", SERVER])
        .run();
    ran.assert_success();
    let (far, near) = (echo.addr(), direct.addr());
    let text = ran.stdout_text();
    let fd = text
        .strip_prefix("first: fd=")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?")
        .to_owned();
    assert_eq!(
        text,
        format!(
            "first: fd={fd} peer={far} ping=ok\nsecond: fd={fd} peer={near} ping=ok\n\
             same-number=1\nfirst-again: fd={fd} peer={far} ping=ok\n"
        ),
        "{}",
        ran.describe()
    );
    assert_supervised(&ran, far, 2);
    echo.wait_done(2, STARTUP);
    assert_from_firewall(&echo);
    assert_eq!(direct.wait_done(1, STARTUP)[0].peer.ip(), IpAddr::V4(INSIDE_ADDR));
    sockd.wait_lines(&["closed:", &format!("dst={far} ")], 2, STARTUP);
    assert!(sockd.lines_with(&[&format!("dst={near} ")]).is_empty(), "{}", sockd.log());
    leaks.assert_only_sockd_and(
        "a reused descriptor number",
        &[format!("{FW_INSIDE_ADDR} . tcp . 4242")],
    );
}

/// A program that installs a seccomp filter of its own with a listener, to answer its own
/// connects with CONTINUE before the supervisor sees them, is refused (EBUSY: the kernel allows
/// one listener per filter chain, and the supervisor's is there); its connect still goes
/// through sockd. Without the supervisor the same program gets its listener (else the test
/// proves nothing).
#[test]
fn a_second_seccomp_listener_is_refused() {
    let Some(setup) = tricks_lab("supervised-nested") else { return };
    let bare = Command::new(&setup.1).args(["nested", "127.0.0.1", "9"]).output().expect("runs");
    assert!(
        String::from_utf8_lossy(&bare.stdout).starts_with("own-listener=3 errno=0"),
        "without the supervisor the program gets its own listener: {bare:?}"
    );
    assert_one_proxied_trick(&setup, "nested", "a second seccomp listener", |dst| {
        format!("own-listener=-1 errno={}\npeer={dst} ping=ok\n", libc::EBUSY)
    });
}

/// IPv6 destinations from an AF_INET6 socket: a v4-mapped literal (`::ffff:198.51.100.2`)
/// and a real IPv6 address outside (the workstation has no IPv6 route; sockd does): both go
/// through sockd, and getpeername names what the program asked for.
#[test]
fn ipv6_destinations_go_through_sockd() {
    let Some(lab) = supervised_lab("supervised-ipv6") else { return };
    let Some(tricks) = build_static(lab.name(), lab.dir.path(), "tricks") else { return };
    lab.net.add_address(Ns::Fw, Ns::Outside, &format!("{}/64", dns::FW_OUTSIDE_ADDR6));
    lab.net.add_address(Ns::Outside, Ns::Fw, &format!("{OUTSIDE_ADDR6}/64"));
    let echo4 = lab.echo(7);
    let echo6 = lab.echo_in(Ns::Outside, SocketAddr::from((OUTSIDE_ADDR6, 7)));
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    let mapped = OUTSIDE_ADDR.to_ipv6_mapped();
    for (addr, server) in [(mapped, &echo4), (OUTSIDE_ADDR6, &echo6)] {
        let ran = lab
            .client(&tricks)
            .args(["v6", &addr.to_string(), "7"])
            .socksify(&["-v", "-s", SERVER])
            .run();
        ran.assert_success();
        let dst = SocketAddr::from((IpAddr::V6(addr), 7));
        assert_eq!(
            ran.stdout_text(),
            format!("connect=0\npeer={dst}\nping=ok\n"),
            "{addr}\n{}",
            ran.describe()
        );
        // The supervisor names a v4-mapped destination (and the server, for an AF_INET6
        // socket) in their IPv4 form.
        let shown = SocketAddr::new(addr.to_canonical(), 7);
        assert!(
            ran.stderr.contains(&format!("]: connect {shown} via "))
                && ran.stderr.contains(":1080 (socks5): ok"),
            "{}",
            ran.describe()
        );
        server.wait_done(1, STARTUP);
    }
    assert_from_firewall(&echo4);
    assert!(
        echo6.accepted().iter().all(|p| p.ip() == IpAddr::V6(dns::FW_OUTSIDE_ADDR6)),
        "the IPv6 destination must be reached from the firewall: {:?}",
        echo6.accepted()
    );
    sockd.wait_line(&["closed:", &format!("dst={} ", echo4.addr())], STARTUP);
    sockd.wait_line(&["closed:", &format!("dst=[{OUTSIDE_ADDR6}]:7 ")], STARTUP);
    leaks.assert_only_sockd("IPv6 destinations under the supervisor");
}

/// posix_spawn (glibc: clone3, or clone with CLONE_VM|CLONE_VFORK) and vfork + execv of
/// busybox-static wget: the spawned programs are supervised, their connects go through sockd.
#[test]
fn posix_spawn_and_vfork_children_are_supervised() {
    let Some(lab) = supervised_lab("supervised-spawn") else { return };
    let Some(tricks) = build_static(lab.name(), lab.dir.path(), "tricks") else { return };
    let busybox = paths::require("busybox", "busybox-static");
    let http = lab.http(80);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    for how in ["spawn", "vfork"] {
        let url = format!("http://{}/{how}", http.addr());
        let ran = lab
            .client(&tricks)
            .args([how, &busybox.display().to_string(), "wget", "-q", "-O", "-", &url])
            .socksify(&["-v", "-s", SERVER])
            .run();
        ran.assert_success();
        assert_eq!(
            ran.stdout_text(),
            format!("hello from outside: /{how}\n{how}-exit=0\n"),
            "{}",
            ran.describe()
        );
        assert_supervised(&ran, http.addr(), 1);
    }
    http.wait_done(2, STARTUP);
    assert_from_firewall(&http);
    sockd.wait_lines(&["closed:", &format!("dst={} ", http.addr())], 2, STARTUP);
    leaks.assert_only_sockd("posix_spawn and vfork children under the supervisor");
}

// ---------------------------------------------------------------------------------------------
// BIND after a connection by name

/// Active-mode FTP whose control connection was made by NAME (a fake address in the program):
/// the data socket's bind becomes a SOCKS BIND that names the control connection's NAME (as
/// its CONNECT did), never the fake address, and the download arrives byte for byte through
/// sockd.
#[test]
fn active_ftp_after_a_connection_by_name() {
    let Some((lab, leaks, outside, sockd)) = dns::supervised_names_lab("supervised-ftp-name")
    else {
        return;
    };
    let program = go_build(&lab, "ftpname", include_str!("../go/ftp_active.go"));
    let content = pattern(300_007);
    let vsftpd = lab.vsftpd(&[("file.bin", &content)]);
    let ran = lab
        .client(&program)
        .args([format!("{MANY}:21"), "file.bin".to_owned()])
        .socksify(&["-v", "-s", SERVER])
        .timeout(Duration::from_secs(60))
        .run();
    let context = || format!("{}\n--- vsftpd log ---\n{}", ran.describe(), vsftpd.log.text());
    assert_supervised(&ran, format!("{MANY}:21"), 1);
    let bind = sockd.wait_line(&["bind:", &format!("client={INSIDE_ADDR}:"), "cmd=bind"], STARTUP);
    assert!(
        bind.contains(&format!("dst={MANY}:21 ")),
        "the BIND must name the control connection's NAME (never its fake address): {bind}\n{}",
        context()
    );
    ran.assert_success();
    assert!(
        ran.stdout == content,
        "the download must be the file byte for byte, got {} bytes\n{}",
        ran.stdout.len(),
        context()
    );
    assert!(
        ran.stderr.contains(&format!("port={FW_OUTSIDE_ADDR}:")),
        "getsockname must name sockd's listening address\n{}",
        context()
    );
    assert!(ran.stderr.contains(&format!("peer={OUTSIDE_ADDR}:")), "{}", context());
    sockd.wait_line(&["closed:", "cmd=bind", &format!(" received={} ", content.len())], STARTUP);
    dns::assert_no_fake_destination(&sockd);
    outside.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("active FTP after a connection by name");
}
