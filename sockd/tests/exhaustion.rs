//! Descriptor exhaustion (issue 7): sockd started with RLIMIT_NOFILE = 64 (set between fork and
//! exec, as `prlimit --nofile=64:64` would) is given more idle connections than it has
//! descriptors. It must log `resource failure: accept: …; new clients wait`, must not spin
//! (its CPU time over 2 s of exhaustion, read from /proc/PID/stat, stays small, and the
//! failure is not logged in a tight loop), must not crash, and must recover by itself once the
//! connections close: a client that arrived during the exhaustion (waiting in the listen
//! backlog) is then served, and so is a new one.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0/8 127.0.0.0/8\n";
const NOFILE: libc::rlim_t = 64;

#[test]
fn descriptor_exhaustion_is_logged_without_spinning_and_recovers() {
    let echo = echo_server();
    let mut sockd =
        SockdBuilder::new(RULES).nofile_limit(NOFILE).arg("--handshake-timeout").arg("120").start();
    let proxy = sockd.addr();

    // Idle clients (connected, silent: each holds one descriptor of sockd) until accept fails.
    let mut held: Vec<TcpStream> = Vec::new();
    let t0 = Instant::now();
    while sockd.find_line(&["resource failure: accept:"], Duration::ZERO).is_none() {
        assert!(
            held.len() < 4 * NOFILE as usize && t0.elapsed() < Duration::from_secs(20),
            "{} idle connections and no `resource failure: accept:` line; log:\n{}",
            held.len(),
            sockd.log_text()
        );
        held.push(connect(proxy));
        thread::sleep(Duration::from_millis(5));
    }
    let line = sockd.wait_for_line(&["resource failure: accept:"], LOG_TIMEOUT);
    assert!(
        line.contains("Too many open files") && line.contains("new clients wait"),
        "the line must say what ran out and what happens: {line}"
    );
    // A few more, left in the listen backlog, and a well-behaved client that arrives now.
    for _ in 0..5 {
        held.push(connect(proxy));
    }
    let mut waiter = connect(proxy);
    waiter.write_all(&socks5_greeting(&[0x00])).expect("greeting");
    let fds = sockd.open_fds();
    assert!(
        fds + 8 >= NOFILE as usize,
        "sockd should be at its descriptor limit ({NOFILE}), has {fds} open"
    );

    // Two seconds of exhaustion: little CPU, and no log flood.
    let lines_before = sockd.count_lines(&["resource failure:"]);
    let cpu_before = sockd.cpu_time();
    thread::sleep(Duration::from_secs(2));
    let cpu = sockd.cpu_time().saturating_sub(cpu_before);
    let lines = sockd.count_lines(&["resource failure:"]) - lines_before;
    sockd.assert_alive();
    eprintln!(
        "exhausted with {} client connections: {cpu:?} CPU and {lines} `resource failure:` \
         lines in 2 s",
        held.len() + 1
    );
    assert!(
        cpu < Duration::from_millis(400),
        "sockd spins while out of descriptors: {cpu:?} CPU in 2 s"
    );
    assert!(lines <= 40, "{lines} `resource failure:` lines in 2 s is a log flood");

    // The waiting client is not served while there is no descriptor for it.
    waiter.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let mut b = [0u8; 2];
    assert!(
        std::io::Read::read(&mut waiter, &mut b).is_err(),
        "a client cannot be served while sockd has no descriptor for it"
    );

    // The idle clients leave; nobody restarts sockd.
    drop(held);
    waiter.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let t = Instant::now();
    let m = read_n(&mut waiter, 2, "method selection for the client that waited");
    assert_eq!(m, [0x05, 0x00]);
    eprintln!("the waiting client was served {:?} after the descriptors were freed", t.elapsed());
    waiter.write_all(&socks5_request(CMD_CONNECT, echo.addr)).expect("request");
    let r = read_socks5_reply(&mut waiter, "CONNECT reply after recovery");
    assert_eq!(r.rep, 0, "{r:?}; log:\n{}", sockd.log_text());
    assert_echo(&mut waiter, b"served after the shortage");
    drop(waiter);
    assert_served(&sockd, &echo);
    sockd.assert_alive();
}
