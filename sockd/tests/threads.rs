//! sockd's serving threads and their listening sockets (issue 17): `--threads N` starts N
//! threads, each with its own SO_REUSEPORT listener per address, and connections are served
//! on more than one of them; a port another sockd already serves is refused with "address in
//! use" (SO_REUSEPORT must not make the two share it), and the first keeps serving every
//! connection; without /proc (where that is checked) the threads share one plain socket.
//!
//! Not here: reload and stop across the threads (lifecycle.rs), sockets passed by systemd
//! (systemd.rs), the cost per connection (syscalls.rs).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const PERMIT_ALL: &str = "permit 127.0.0.0/8 127.0.0.0/8\npermit ::1/128 ::1/128\n";

/// CPU time (ns) each `sockd-N` thread of `pid` has run, by thread name.
fn thread_run_times(pid: u32) -> BTreeMap<String, u64> {
    let mut times = BTreeMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task");
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let name = name.trim().to_string();
        if !name.starts_with("sockd-") {
            continue;
        }
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        let ran = schedstat.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        times.insert(name, ran);
    }
    times
}

/// The LISTEN sockets on `addr`'s port in /proc/net/tcp or tcp6 (sockd runs in this test's
/// network namespace).
fn listeners_on_port(addr: SocketAddr) -> usize {
    let table = if addr.is_ipv4() { "/proc/net/tcp" } else { "/proc/net/tcp6" };
    let text = std::fs::read_to_string(table).expect("the kernel's TCP table");
    let port = format!(":{:04X}", addr.port());
    text.lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&port) && fields[3] == "0A"
        })
        .count()
}

#[test]
fn threads_each_listen_and_connections_are_served_on_several() {
    let echo = echo_server();
    let sockd = SockdBuilder::new(PERMIT_ALL).arg("--threads").arg("3").start();
    sockd.wait_for_line(&["serving on 3 threads"], LOG_TIMEOUT);
    assert_eq!(listeners_on_port(sockd.addr()), 3, "one SO_REUSEPORT listener per thread");
    let before = thread_run_times(sockd.pid());
    assert_eq!(before.len(), 3, "three serving threads, named sockd-N: {before:?}");
    for _ in 0..60 {
        assert_served(&sockd, &echo);
    }
    let after = thread_run_times(sockd.pid());
    let busy: Vec<&String> = after
        .iter()
        .filter(|(name, ran)| before.get(*name).is_some_and(|b| *ran > b))
        .map(|(n, _)| n)
        .collect();
    assert!(
        busy.len() >= 2,
        "60 connections from as many client ports all ran on one thread: before {before:?}, after {after:?}"
    );
}

#[test]
fn a_second_sockd_on_a_served_port_exits_with_address_in_use() {
    let mut addrs = vec!["127.0.0.1:0".to_string()];
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        addrs.push("[::1]:0".to_string());
    }
    let echo = echo_server();
    for listen in addrs {
        let first = SockdBuilder::new(PERMIT_ALL).listen(&listen).arg("--threads").arg("2").start();
        let taken = first.addr();
        for threads in ["1", "2"] {
            let b = SockdBuilder::new(PERMIT_ALL);
            let mut cmd = Command::new(sockd_bin());
            cmd.arg("-f").arg(b.conf_path()).arg("-l").arg(taken.to_string());
            cmd.args(["--threads", threads]);
            let out = run_bounded(&mut cmd, None, Duration::from_secs(10));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{taken} with {threads} threads: a second sockd must fail: {err}"
            );
            assert!(err.contains("address in use"), "{taken}: the error says why: {err}");
            assert!(
                err.contains(&taken.to_string()),
                "{taken}: the error names the address: {err}"
            );
        }
        assert_eq!(listeners_on_port(taken), 2, "{taken}: only the first sockd's listeners");
        if taken.is_ipv4() {
            // Every connection still reaches the first: nothing was left listening beside it.
            for _ in 0..20 {
                assert_served(&first, &echo);
            }
        }
    }
}

/// Without /proc (here: an empty tmpfs over it, in a mount namespace of sockd's own) sockd
/// cannot see who else listens on its port, so it binds one socket without SO_REUSEPORT, says
/// so, and serves it on every thread; a second sockd on that port is still refused.
#[test]
fn without_proc_the_threads_share_one_plain_socket_and_a_taken_port_is_refused() {
    let name = "without_proc_the_threads_share_one_plain_socket_and_a_taken_port_is_refused";
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip(name, "mounting over /proc in a mount namespace needs root");
        return;
    }
    let unshare = require_program("unshare", "util-linux");
    let b = SockdBuilder::new(PERMIT_ALL);
    let script = format!(
        "mount -t tmpfs none /proc && exec {} -f {} -l 127.0.0.1:0 --threads 3",
        sockd_bin(),
        b.conf_path().display()
    );
    let child = Command::new(unshare)
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start unshare");
    let mut child = Killed(child);
    let log = LogLines::capture(child.0.stderr.take().expect("piped"), "sockd without /proc");
    let started = log.wait_for(&["listening on"], LOG_TIMEOUT);
    let Some(addr) = started.as_deref().and_then(parse_listening) else {
        if log.joined().contains("mount") || log.joined().contains("unshare") {
            skip(name, &format!("cannot make a mount namespace here: {}", log.joined()));
            return;
        }
        panic!("sockd without /proc did not start: {}", log.joined());
    };
    assert!(
        log.wait_for(&["cannot check who else listens there"], LOG_TIMEOUT).is_some(),
        "the fallback is logged: {}",
        log.joined()
    );
    assert_eq!(listeners_on_port(addr), 1, "one plain socket, shared by the threads");
    let echo = echo_server();
    for _ in 0..10 {
        let mut s = socks5_connect(addr, echo.addr);
        assert_echo(&mut s, b"through one socket");
    }
    let mut cmd = Command::new(sockd_bin());
    cmd.arg("-f").arg(b.conf_path()).arg("-l").arg(addr.to_string());
    let second = run_bounded(&mut cmd, None, Duration::from_secs(10));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second sockd on {addr} must fail: {err}");
    assert!(err.contains("in use"), "{err}");
}

/// A child process killed and reaped when the test ends, pass or fail.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
