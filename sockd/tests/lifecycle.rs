//! The daemon's life (issue 7): SIGHUP re-reads the rule file (new sessions get the new rules,
//! sessions already running keep theirs and keep relaying, a bad new file is reported and the
//! old rules stay); SIGTERM stops accepting (a new connect is refused) while a running session
//! finishes within `--grace`, then sockd exits 0; after the grace period sockd exits even if a
//! session hangs; `--pid-file` is written and removed; `--user nobody` (as root) runs the daemon
//! with nobody's ids after the listener is open.

mod common;

use common::*;
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const PERMIT_ALL: &str = "permit 127.0.0.0/8 127.0.0.0/8\n";

/// SOCKS5 CONNECT to `dst`: the reply code.
fn try_connect(proxy: SocketAddr, dst: SocketAddr) -> (u8, String) {
    let mut s = connect(proxy);
    let tag = client_tag(&s);
    socks5_noauth(&mut s);
    s.write_all(&socks5_request(CMD_CONNECT, dst)).expect("request");
    let rep = read_socks5_reply(&mut s, "CONNECT reply").rep;
    (rep, tag)
}

/// Sends SIGHUP and waits for the `n`-th line containing `what`.
fn hup_and_wait(sockd: &Sockd, what: &str) -> String {
    let before = sockd.logs().iter().filter(|l| l.contains(what)).count();
    sockd.signal(libc::SIGHUP);
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        let lines: Vec<String> = sockd.logs().into_iter().filter(|l| l.contains(what)).collect();
        if lines.len() > before {
            return lines[before].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no `{what}` line after SIGHUP; log:\n{}",
            sockd.log_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reload_applies_to_new_sessions_only_and_a_bad_file_keeps_the_old_rules() {
    let echo_a = echo_server();
    let echo_b = echo_server();
    let mut sockd = SockdBuilder::new(PERMIT_ALL).start();
    let proxy = sockd.addr();

    // Under the first rules: a relaying session to A, and a session still in its handshake.
    let mut established = socks5_connect(proxy, echo_a.addr);
    let est_tag = client_tag(&established);
    assert_echo(&mut established, b"before the reload");
    let mut in_handshake = connect(proxy);
    socks5_noauth(&mut in_handshake);

    // New rules: A is denied (line 1), the rest permitted.
    let new_rules = format!("deny 127.0.0.0/8 127.0.0.1/32 eq {}\n{PERMIT_ALL}", echo_a.port());
    sockd.write_conf(&new_rules);
    let line = hup_and_wait(&sockd, "reloaded");
    assert!(line.contains(&sockd.conf()) && line.contains("2 rules"), "{line}");

    let (rep, tag) = try_connect(proxy, echo_a.addr);
    assert_eq!(rep, 0x02, "a new session to A must be denied by the new rules");
    let dst_a = format!("dst={}", echo_a.dst());
    sockd.wait_for_line(&["denied:", &tag, &dst_a, &sockd.rule_tag(1)], LOG_TIMEOUT);
    let (rep, _) = try_connect(proxy, echo_b.addr);
    assert_eq!(rep, 0x00, "B is still permitted by the new rules");

    // The session that began before the reload keeps the rules it started with: its request,
    // sent only now, is decided by the old file (A permitted).
    in_handshake.write_all(&socks5_request(CMD_CONNECT, echo_a.addr)).expect("request");
    let r = read_socks5_reply(&mut in_handshake, "CONNECT of the session begun before SIGHUP");
    assert_eq!(
        r.rep,
        0x00,
        "a session keeps the rules it started with; log:\n{}",
        sockd.log_text()
    );
    assert_echo(&mut in_handshake, b"old rules");

    // The established session is not dropped.
    let big = pseudo_random(200_000, 5);
    assert_echo(&mut established, &big);

    // A bad file: reported, and the rules in use stay (A denied by line 1, B permitted).
    sockd.write_conf("permit 127.0.0.0/8 127.0.0.0/8 eqq 80\ndeny everything\n");
    let line = hup_and_wait(&sockd, "reload failed, keeping the rules in use");
    assert!(
        line.contains(&format!("{}:1", sockd.conf())) && line.contains("eqq"),
        "the failure names file, line and token: {line}"
    );
    let (rep, tag) = try_connect(proxy, echo_a.addr);
    assert_eq!(rep, 0x02, "after a failed reload the previous rules must stay (A denied)");
    sockd.wait_for_line(&["denied:", &tag, &dst_a, &sockd.rule_tag(1)], LOG_TIMEOUT);
    let (rep, _) = try_connect(proxy, echo_b.addr);
    assert_eq!(rep, 0x00, "after a failed reload the previous rules must stay (B permitted)");
    assert_echo(&mut established, b"after the failed reload");
    sockd.assert_alive();

    // The first session finishes normally, with its byte counts.
    established.shutdown(Shutdown::Write).expect("shutdown");
    assert!(read_to_eof(&mut established, "EOF").is_empty());
    let total =
        (b"before the reload".len() + big.len() + b"after the failed reload".len()).to_string();
    sockd.wait_for_line(
        &["closed:", &est_tag, &format!("sent={total}"), &format!("received={total}")],
        LOG_TIMEOUT,
    );
}

#[test]
fn sigterm_stops_accepting_lets_a_session_finish_and_exits_0() {
    let echo = echo_server();
    let b = SockdBuilder::new(PERMIT_ALL);
    let pid_file = b.dir().join("sockd.pid");
    let mut sockd = b.arg("--grace").arg("10").arg("--pid-file").arg(&pid_file).start();
    let proxy = sockd.addr();
    let written = std::fs::read_to_string(&pid_file).expect("pid file written at start");
    assert_eq!(written.trim(), sockd.pid().to_string(), "pid file content: {written:?}");

    let mut s = socks5_connect(proxy, echo.addr);
    let tag = client_tag(&s);
    assert_echo(&mut s, b"before SIGTERM");
    let t0 = Instant::now();
    sockd.signal(libc::SIGTERM);
    sockd.wait_for_line(&["shutting down:", "1 sessions"], LOG_TIMEOUT);

    // No new clients: the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match TcpStream::connect_timeout(&proxy, Duration::from_secs(1)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "a new connect after SIGTERM must be refused, got {other:?}"
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    // The running session keeps relaying within the grace period and finishes normally.
    thread::sleep(Duration::from_millis(500));
    let data = pseudo_random(100_000, 9);
    assert_echo(&mut s, &data);
    s.shutdown(Shutdown::Write).expect("shutdown");
    assert!(read_to_eof(&mut s, "EOF during the grace period").is_empty());
    let status = sockd.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!("sockd did not exit once its last session ended; log:\n{}", sockd.log_text())
    });
    let took = t0.elapsed();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");
    assert!(
        took < Duration::from_secs(5),
        "exit must follow the last session, not the grace ({took:?})"
    );
    sockd.wait_for_line(&["closed:", &tag, "sent=100014", "received=100014"], LOG_TIMEOUT);
    assert!(!pid_file.exists(), "the pid file must be removed at exit");
    assert_eq!(sockd.count_lines(&["grace period over"]), 0);
}

#[test]
fn sigint_after_the_grace_period_closes_a_hanging_session_and_exits() {
    let echo = echo_server();
    let mut sockd = SockdBuilder::new(PERMIT_ALL).arg("--grace").arg("1").start();
    let mut hanging = socks5_connect(sockd.addr(), echo.addr);
    assert_echo(&mut hanging, b"then silence");
    let t0 = Instant::now();
    sockd.signal(libc::SIGINT);
    let status = sockd.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!("sockd still runs 5 s after SIGINT with --grace 1; log:\n{}", sockd.log_text())
    });
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "--grace 1 with a hanging session: exit after {took:?}"
    );
    assert_eq!(status.code(), Some(0), "{status}");
    sockd.wait_for_line(&["grace period over: closing 1 sessions"], LOG_TIMEOUT);
    // The session cut off at the end still gets its `closed:` line, with its byte counts.
    sockd.wait_for_line(&["closed:", "sent=12", "received=12", "end=shutdown"], LOG_TIMEOUT);
    // The client is not left hanging: its connection is closed with the process.
    let (data, _) = expect_closed(&mut hanging, Duration::from_secs(2), "hanging session");
    assert!(data.is_empty());
}

/// nobody's uid and gid from /etc/passwd.
fn nobody_ids() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("nobody:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// The four ids of a `Uid:` or `Gid:` line of /proc/PID/status.
fn status_ids(pid: u32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with(key)).expect("Uid/Gid line");
    line[key.len()..].split_whitespace().map(|n| n.parse().expect("id")).collect()
}

#[test]
fn user_option_drops_privileges_after_listening() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("user_option_drops_privileges_after_listening", "--user needs root");
        return;
    }
    let Some((uid, gid)) = nobody_ids() else {
        skip("user_option_drops_privileges_after_listening", "no user `nobody` in /etc/passwd");
        return;
    };
    let echo = echo_server();
    let b = SockdBuilder::new(PERMIT_ALL);
    let pid_file = b.dir().join("sockd.pid");
    let mut sockd = b.arg("--user").arg("nobody").arg("--pid-file").arg(&pid_file).start();
    sockd.wait_for_line(&["running as user nobody"], LOG_TIMEOUT);
    assert_eq!(status_ids(sockd.pid(), "Uid:"), vec![uid; 4], "real, effective, saved, fs uid");
    assert_eq!(status_ids(sockd.pid(), "Gid:"), vec![gid; 4], "real, effective, saved, fs gid");
    let status = std::fs::read_to_string(format!("/proc/{}/status", sockd.pid())).expect("status");
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap_or("Groups:");
    assert!(
        groups.split_whitespace().skip(1).all(|g| g == gid.to_string()),
        "no supplementary group but nobody's own may stay: {groups}"
    );
    assert!(pid_file.exists(), "the pid file is written before the privileges are dropped");
    // It still serves on the listener opened as root.
    assert_served(&sockd, &echo);
    sockd.signal(libc::SIGTERM);
    let st = sockd.wait_exit(Duration::from_secs(5)).expect("exits after SIGTERM");
    assert_eq!(st.code(), Some(0));

    // An unknown user is an error at start, not a daemon running as root.
    let b = SockdBuilder::new(PERMIT_ALL);
    let conf = b.conf_path().to_path_buf();
    let mut cmd = std::process::Command::new(sockd_bin());
    cmd.arg("-f").arg(&conf).args(["-l", "127.0.0.1:0", "--user", "no-such-user-7"]);
    let out = run_bounded(&mut cmd, None, Duration::from_secs(10));
    assert!(!out.status.success(), "--user with an unknown user must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-user-7"), "{err}");
}
