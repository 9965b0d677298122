//! What a proxied connection costs sockd in system calls (issue 17), counted by `strace -c -f`
//! attached to a running sockd while a client makes sequential SOCKS5 CONNECTs, each with a
//! 1-byte echo and a close: no getpid(2) per log line (the PID is read once), no getpeername(2)
//! for the outbound connection (connect says where it went), one setsockopt(2) (TCP_NODELAY on
//! the outbound socket; the client's is inherited from the listener), no read that fails
//! with EAGAIN after a short read (its readiness is cleared instead), one shutdown(2) (the
//! second end of stream is passed on by closing), and no write(2) but the
//! two log lines: the sessions' timeouts do not wake the runtime's timer driver through its
//! eventfd (`timer_tick`).
//!
//! Not here: the rate itself (socks-bench, docs/PERFORMANCE.md), what is relayed (relay.rs,
//! half_close.rs).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n";

/// Connections counted.
const CONNECTIONS: usize = 200;

/// One line of `strace -c` output: (calls, errors) by system call name.
fn parse_summary(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "% time seconds usecs/call calls [errors] syscall"; skip the header, rules and total.
        if fields.len() < 5 || fields[0].starts_with('%') || fields[0].starts_with('-') {
            continue;
        }
        let name = fields[fields.len() - 1];
        if name == "total" {
            continue;
        }
        let (Ok(calls), errors) = (
            fields[3].parse::<u64>(),
            if fields.len() == 6 { fields[4].parse::<u64>().unwrap_or(0) } else { 0 },
        ) else {
            continue;
        };
        counts.insert(name.to_string(), (calls, errors));
    }
    counts
}

/// Whether strace is attached to every thread of `pid` (each one's TracerPid is set).
fn traced(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("status")).is_ok_and(|status| {
            status
                .lines()
                .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
        })
    })
}

#[test]
fn a_proxied_connection_costs_no_getpid_getpeername_or_eagain_read() {
    count_per_connection(
        "a_proxied_connection_costs_no_getpid_getpeername_or_eagain_read",
        Sockd::start(RULES),
    );
}

/// The same with `--metrics` serving: counting costs no system call per connection.
#[test]
fn metrics_counting_costs_no_system_call_per_connection() {
    count_per_connection(
        "metrics_counting_costs_no_system_call_per_connection",
        SockdBuilder::new(RULES).arg("--metrics").arg("127.0.0.1:0").start(),
    );
}

/// The connection's own system calls, all but the runtime's thread wake-ups (futex,
/// epoll_wait, and writes, which are checked on their own: the two log lines) and fcntl
/// (tokio's debug builds check that sockets are non-blocking; release builds do not): 24 per
/// connection for this cycle (accept4 twice, the second one EAGAIN; socket, connect,
/// getsockopt, getsockname, setsockopt; 6 recvfrom, 4 sendto, 4 epoll_ctl, 1 shutdown,
/// 2 close), 31 before issue 17 and 25 before the direction that ends last stopped
/// half-closing a socket it is about to close. The bound leaves room for a read or an accept
/// more under a loaded machine (a segment that arrives in two parts).
const OWN_CALLS_MOST: f64 = 27.0;

/// write(2) calls per connection: its two log lines and nothing else (see the test's list).
const WRITES_MOST: f64 = 2.3;

/// strace attached to every thread of a running sockd, counting (`-c`); its summary on SIGINT.
struct Tracer {
    child: std::process::Child,
    out: std::path::PathBuf,
    _dir: TempDir,
}

impl Tracer {
    /// Attaches, or says SKIPPED and gives `None` if strace cannot attach here.
    fn attach(name: &str, strace: &std::path::Path, pid: u32) -> Option<Tracer> {
        let dir = TempDir::new("syscalls");
        let out = dir.path().join("strace.txt");
        let mut child = Command::new(strace)
            .args(["-f", "-c", "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start strace");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !traced(pid) {
            if let Ok(Some(status)) = child.try_wait() {
                let mut why = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut why);
                }
                skip(name, &format!("strace cannot attach here ({status}): {}", why.trim()));
                return None;
            }
            assert!(Instant::now() < deadline, "strace did not attach within 10 s");
            thread::sleep(Duration::from_millis(20));
        }
        Some(Tracer { child, out, _dir: dir })
    }

    /// Detaches and returns strace's summary table.
    fn summary(mut self) -> String {
        // strace prints its summary on SIGINT; sent to the child this test started, by its PID.
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = wait_exit(&mut self.child, Duration::from_secs(10));
        std::fs::read_to_string(&self.out).expect("strace summary")
    }
}

/// A client that sends its greeting and CONNECT request in one write (libsocks.so's
/// `?pipeline`) gets the method choice and the CONNECT reply in one write too: three sendto(2)
/// per connection (that reply, and the byte each way), where answering each message on its
/// own took four, and woke the client once more.
#[test]
fn a_pipelining_client_gets_both_replies_in_one_write() {
    let name = "a_pipelining_client_gets_both_replies_in_one_write";
    let strace = require_program("strace", "strace");
    let echo = echo_server();
    let sockd = Sockd::start(RULES);
    let mut first = pipelined_connection(&sockd, &echo);
    // Both replies, exactly: the method choice (no authentication) and a granted CONNECT.
    assert_eq!(&first[..4], &[5, 0, 5, 0], "method choice, then CONNECT granted: {first:02x?}");
    assert_eq!(first.len(), 2 + 10, "nothing but the two replies: {first:02x?}");
    first.clear();
    let Some(tracer) = Tracer::attach(name, &strace, sockd.pid()) else { return };
    for _ in 0..CONNECTIONS {
        pipelined_connection(&sockd, &echo);
    }
    wait_sessions_ended(&sockd, CONNECTIONS + 1);
    let text = tracer.summary();
    let (sends, _) = parse_summary(&text).get("sendto").copied().unwrap_or((0, 0));
    let per = sends as f64 / CONNECTIONS as f64;
    assert!(per <= 3.05, "{per:.2} sendto per connection (at most 3):\n{text}");
}

/// Greeting and CONNECT request in one write, both replies read, then the cycle of
/// `one_connection`; returns the reply bytes.
fn pipelined_connection(sockd: &Sockd, echo: &TestServer) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(sockd.addr()).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut both = vec![5, 1, 0];
    both.extend_from_slice(&socks5_request(CMD_CONNECT, echo.addr));
    s.write_all(&both).expect("greeting and request");
    let mut replies = vec![0u8; 12];
    s.read_exact(&mut replies).expect("both replies");
    echo_once_and_end(s);
    replies
}

/// Once connections stop, the tick that keeps session timeouts from waking the timer driver
/// (`timer_tick`) stops too: an idle sockd with one serving thread sleeps in epoll_wait. Each
/// thread's wait in progress when strace attaches may be counted once more; a tick that went
/// on once a second would add four calls in the 4 s watched.
#[test]
fn an_idle_sockd_does_not_wake_up() {
    let name = "an_idle_sockd_does_not_wake_up";
    let strace = require_program("strace", "strace");
    let echo = echo_server();
    let sockd = SockdBuilder::new(RULES).arg("--threads").arg("1").start();
    for _ in 0..20 {
        one_connection(&sockd, &echo);
    }
    // The tick runs at most one `TICK` (1 s) after the last connection, then once more for
    // connections that came during that one.
    thread::sleep(Duration::from_millis(2500));
    let Some(tracer) = Tracer::attach(name, &strace, sockd.pid()) else { return };
    thread::sleep(Duration::from_secs(4));
    let text = tracer.summary();
    let counts = parse_summary(&text);
    let threads = std::fs::read_dir(format!("/proc/{}/task", sockd.pid()))
        .map_or(0, |tasks| tasks.count()) as u64;
    let calls: u64 = counts.values().map(|(calls, _)| calls).sum();
    assert!(
        calls <= threads + 1,
        "an idle sockd ({threads} threads) made {calls} system calls in 4 s:\n{text}"
    );
}

/// Waits until `sessions` sessions have ended: their `closed:` lines are written after their
/// last system call but the log's own write; then a moment for that write.
fn wait_sessions_ended(sockd: &Sockd, sessions: usize) {
    let deadline = Instant::now() + LOG_TIMEOUT;
    while sockd.count_lines(&["closed:"]) < sessions {
        assert!(Instant::now() < deadline, "sessions did not end; log:\n{}", sockd.log_text());
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(100));
}

fn count_per_connection(name: &str, sockd: Sockd) {
    let strace = require_program("strace", "strace");
    let echo = echo_server();
    // Warm up: the runtime's threads and the first allocations are not per connection.
    for _ in 0..5 {
        one_connection(&sockd, &echo);
    }
    let Some(tracer) = Tracer::attach(name, &strace, sockd.pid()) else { return };
    for _ in 0..CONNECTIONS {
        one_connection(&sockd, &echo);
    }
    wait_sessions_ended(&sockd, CONNECTIONS + 5);
    let text = tracer.summary();
    let counts = parse_summary(&text);
    let per = |name: &str, errors: bool| {
        let (calls, failed) = counts.get(name).copied().unwrap_or((0, 0));
        (if errors { failed } else { calls }) as f64 / CONNECTIONS as f64
    };
    let (accepts, _) = counts.get("accept4").copied().unwrap_or((0, 0));
    assert!(accepts >= CONNECTIONS as u64, "strace saw {accepts} accept4 calls:\n{text}");
    let mut over = Vec::new();
    for (name, errors, most) in [
        // The `connected:` and `closed:` lines, one write each; before `timer_tick`, also two
        // eventfd wake-ups of tokio's timer driver (4 per connection). The tick's own re-arm,
        // once a second, is well within the margin.
        ("write", false, WRITES_MOST),
        // The first end of stream is passed on with shutdown(2); the last one by close(2).
        ("shutdown", false, 1.05),
        ("getpid", false, 0.05),
        ("getpeername", false, 0.05),
        ("setsockopt", false, 1.05),
        ("recvfrom", true, 0.5),
    ] {
        let seen = per(name, errors);
        if seen > most {
            let what = if errors { format!("failed {name}") } else { name.to_string() };
            over.push(format!("{what} per connection: {seen:.2} (at most {most})"));
        }
    }
    let own: u64 = counts
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "futex" | "epoll_wait" | "write" | "fcntl"))
        .map(|(_, (calls, _))| calls)
        .sum();
    let own = own as f64 / CONNECTIONS as f64;
    if own > OWN_CALLS_MOST {
        over.push(format!("{own:.2} system calls per connection (at most {OWN_CALLS_MOST})"));
    }
    assert!(over.is_empty(), "{}; strace -c:\n{text}", over.join("; "));
}

/// SOCKS5 CONNECT to the echo server, 1 byte there and back, half-close, end of stream, close.
fn one_connection(sockd: &Sockd, echo: &TestServer) {
    let s = socks5_connect(sockd.addr(), echo.addr);
    s.set_nodelay(true).expect("nodelay");
    echo_once_and_end(s);
}

/// On a granted session: 1 byte there and back, half-close, end of stream, close.
fn echo_once_and_end(mut s: std::net::TcpStream) {
    s.write_all(b"x").expect("write");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).expect("echo");
    assert_eq!(&b, b"x");
    s.shutdown(Shutdown::Write).expect("shutdown");
    assert!(read_to_eof(&mut s, "end of stream").is_empty());
}
