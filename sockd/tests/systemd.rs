//! sockd under systemd, driven by systemd's own tools and protocols: readiness notifications
//! read from a NOTIFY_SOCKET the test owns (READY after the listeners accept, RELOADING with
//! MONOTONIC_USEC then READY around SIGHUP, a failed reload's STATUS, STOPPING), socket
//! activation through `systemd-socket-activate` and through a socket the test holds across a
//! restart, the inetd way (`systemd-socket-activate --inetd`), every unit in dist/systemd/
//! through `systemd-analyze verify`, and the journal log format (JOURNAL_STREAM).
//! Attacks: LISTEN_FDS naming a file, a UDP, a Unix, an unlistening or a closed descriptor; a
//! LISTEN_PID of another process; --listen beside passed sockets; a NOTIFY_SOCKET that is gone.
//!
//! Not here: running the units under a real systemd as PID 1 (the packaging tests), the
//! standalone lifecycle without systemd (lifecycle.rs), inetd's own behaviour (inetd.rs).

mod common;

use common::*;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Rules letting loopback clients reach loopback destinations (the echo server).
const LOOPBACK_RULES: &str = "permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n";

/// How long a notification may take to arrive.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A process with its stderr captured; killed and reaped on drop.
struct Proc {
    child: Child,
    log: LogLines,
}

impl Proc {
    fn spawn(mut cmd: Command, what: &'static str) -> Proc {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let log = LogLines::capture(child.stderr.take().expect("piped"), what);
        Proc { child, log }
    }

    fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped (the Child owns it).
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}): {}", self.pid(), std::io::Error::last_os_error());
    }

    /// Waits for the process to exit by itself; panics with its log if it does not.
    fn exits_within(&mut self, timeout: Duration, what: &str) -> ExitStatus {
        match wait_exit(&mut self.child, timeout) {
            Some(status) => {
                std::thread::sleep(Duration::from_millis(100)); // let the reader drain stderr
                status
            }
            None => panic!("{what}: still running after {timeout:?}; log:\n{}", self.log.joined()),
        }
    }

    /// The `listening on` addresses logged so far (waits for `n` of them).
    fn listening(&mut self, n: usize) -> Vec<SocketAddr> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let addrs: Vec<SocketAddr> =
                self.log.snapshot().iter().filter_map(|l| parse_listening(l)).collect();
            if addrs.len() >= n {
                return addrs;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!("sockd exited ({status}) before listening; log:\n{}", self.log.joined());
            }
            assert!(
                Instant::now() < deadline,
                "no `listening on` line; log:\n{}",
                self.log.joined()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The service manager's end of NOTIFY_SOCKET: a datagram socket bound in a temp dir (or in
/// the abstract namespace), collecting every message sockd sends.
struct NotifySocket {
    socket: UnixDatagram,
    /// The value for NOTIFY_SOCKET.
    name: String,
    _dir: TempDir,
}

impl NotifySocket {
    fn at_path() -> NotifySocket {
        let dir = TempDir::new("notify");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket { socket, name: path.display().to_string(), _dir: dir }
    }

    fn abstract_name() -> NotifySocket {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("sockd-test-notify-{}-{}", std::process::id(), free_port());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
        NotifySocket { socket, name: format!("@{name}"), _dir: TempDir::new("notify-abstract") }
    }

    /// The next message, as its lines; panics after `timeout`.
    /// (A signal to this test process ends a wait with a receive timeout with EINTR, whatever
    /// SA_RESTART says: the wait goes on until the deadline.)
    fn next(&self, timeout: Duration, what: &str, log: &LogLines) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left =
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            self.socket.set_read_timeout(Some(left)).expect("timeout");
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    return String::from_utf8_lossy(&buf[..n]).lines().map(str::to_owned).collect()
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::Interrupted && Instant::now() < deadline => {
                }
                Err(e) => {
                    panic!(
                        "{what}: no notification within {timeout:?} ({e}); log:\n{}",
                        log.joined()
                    )
                }
            }
        }
    }

    /// The next message and the uid of the process that sent it (SCM_CREDENTIALS, which the
    /// kernel fills in at send time: what systemd itself sees).
    fn next_with_sender_uid(&self, timeout: Duration) -> (Vec<String>, u32) {
        let fd = self.socket.as_raw_fd();
        let on: libc::c_int = 1;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: setsockopt(2) reads an int we own, of the size given.
        let rc = unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_PASSCRED, (&raw const on).cast(), len)
        };
        assert_eq!(rc, 0, "SO_PASSCRED: {}", std::io::Error::last_os_error());
        self.socket.set_read_timeout(Some(timeout)).expect("timeout");
        let mut data = [0u8; 4096];
        // u64 elements: aligned for the cmsghdr inside.
        let mut control = [0u64; 16];
        let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
        // SAFETY: a zeroed msghdr is valid; the pointers set next stay valid during recvmsg.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = loop {
            // SAFETY: msg points at live buffers of the sizes it states.
            let n = unsafe { libc::recvmsg(fd, &raw mut msg, 0) };
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break n;
            }
        };
        assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
        let mut uid = None;
        // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled in, within the
        // length it set; an SCM_CREDENTIALS payload is a struct ucred (read unaligned).
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS
                {
                    let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    uid = Some(cred.uid);
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        let text = String::from_utf8_lossy(&data[..n as usize]);
        (text.lines().map(str::to_owned).collect(), uid.expect("SCM_CREDENTIALS"))
    }

    /// Skips messages until one has `field` (e.g. `READY=1`); returns it.
    fn until(&self, field: &str, what: &str, log: &LogLines) -> Vec<String> {
        let deadline = Instant::now() + NOTIFY_TIMEOUT;
        loop {
            let left =
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            let message = self.next(left, what, log);
            if message.iter().any(|l| l == field) {
                return message;
            }
        }
    }
}

/// How many log lines contain every one of `parts` (plain substrings).
fn containing(log: &LogLines, parts: &[&str]) -> usize {
    log.snapshot().iter().filter(|l| parts.iter().all(|p| l.contains(p))).count()
}

/// The value of `KEY=` in a message.
fn field<'a>(message: &'a [String], key: &str) -> Option<&'a str> {
    message.iter().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// CLOCK_MONOTONIC now, in microseconds (what MONOTONIC_USEC= is measured in).
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime(2) writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    assert_eq!(rc, 0, "clock_gettime");
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

/// A sockd command with a rule file; the caller adds the rest.
fn sockd(conf: &Path) -> Command {
    let mut cmd = Command::new(sockd_bin());
    cmd.arg("-f").arg(conf);
    cmd
}

/// Runs `cmd` so that `fd` is its descriptor 3 and LISTEN_PID is its own pid (through `sh`,
/// whose `exec` keeps the pid), with LISTEN_FDS=`count` and LISTEN_FDNAMES=`names`: what
/// systemd does for a socket unit, with a socket the test owns and can keep across restarts.
fn with_passed_fd(cmd: &Command, fd: &impl AsRawFd, count: &str, names: Option<&str>) -> Command {
    passing_fd(cmd, fd, count, names, "$$")
}

/// [`with_passed_fd`] with LISTEN_PID set to `listen_pid` (a shell word).
fn passing_fd(
    cmd: &Command,
    fd: &impl AsRawFd,
    count: &str,
    names: Option<&str>,
    listen_pid: &str,
) -> Command {
    let mut wrapped = Command::new("sh");
    let script = format!("LISTEN_PID={listen_pid} exec \"$0\" \"$@\"");
    wrapped.arg("-c").arg(script).arg(cmd.get_program());
    wrapped.args(cmd.get_args());
    wrapped.env("LISTEN_FDS", count);
    if let Some(names) = names {
        wrapped.env("LISTEN_FDNAMES", names);
    }
    let raw = fd.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and calls only dup2(2) or
    // fcntl(2), both async-signal-safe; the new fd 3 is not close-on-exec, the original
    // (CLOEXEC) closes at exec.
    unsafe {
        wrapped.pre_exec(move || {
            // dup2 of a descriptor onto itself keeps its close-on-exec flag: clear it then.
            let rc = if raw == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(raw, 3) };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    wrapped
}

/// A SOCKS5 CONNECT through `proxy` to the echo server, with a round trip of `n` bytes.
fn assert_round_trip(proxy: SocketAddr, echo: &TestServer, n: usize, log: &LogLines) {
    let mut s = connect(proxy);
    socks5_noauth(&mut s);
    s.write_all(&socks5_request(CMD_CONNECT, echo.addr)).expect("request");
    let reply = read_socks5_reply(&mut s, "CONNECT reply");
    assert_eq!(
        reply.rep,
        0,
        "CONNECT through {proxy} must succeed: {reply:?}; log:\n{}",
        log.joined()
    );
    assert_echo(&mut s, &pseudo_random(n, n as u64));
    s.shutdown(Shutdown::Write).expect("shutdown");
    assert!(read_to_eof(&mut s, "EOF after echo").is_empty());
}

/// Starts sockd (on 127.0.0.1:0) with NOTIFY_SOCKET set; returns it once READY=1 arrived,
/// with the READY message.
fn notified_sockd(conf: &Path, notify: &NotifySocket, extra: &[&str]) -> (Proc, Vec<String>) {
    let mut cmd = sockd(conf);
    cmd.args(["-l", "127.0.0.1:0", "--grace", "1"]).args(extra);
    cmd.env("NOTIFY_SOCKET", &notify.name);
    let proc = Proc::spawn(cmd, "sockd");
    let ready = notify.until("READY=1", "READY=1 at start", &proc.log);
    (proc, ready)
}

// ---------------------------------------------------------------------------------------------
// Readiness notifications
// ---------------------------------------------------------------------------------------------

#[test]
fn ready_only_when_listening_then_reload_and_stop_are_announced() {
    let echo = echo_server();
    let dir = TempDir::new("notify");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    let notify = NotifySocket::at_path();
    let (mut sockd, ready) = notified_sockd(&conf, &notify, &[]);
    // The READY message names the address; it must accept and serve at once, with no wait.
    let status =
        field(&ready, "STATUS").unwrap_or_else(|| panic!("READY without STATUS: {ready:?}"));
    let addr =
        parse_listening(status).unwrap_or_else(|| panic!("STATUS names no address: {status}"));
    assert_round_trip(addr, &echo, 1000, &sockd.log);
    assert!(status.contains("sessions"), "STATUS should count sessions: {status}");
    assert_eq!(sockd.listening(1), vec![addr], "STATUS and the log must agree");

    // A good reload: RELOADING=1 with the time it began, then READY=1.
    let before = monotonic_usec();
    sockd.signal(libc::SIGHUP);
    let reloading = notify.until("RELOADING=1", "RELOADING=1", &sockd.log);
    let usec: u64 = field(&reloading, "MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"))
        .parse()
        .expect("MONOTONIC_USEC is a number");
    let after = monotonic_usec();
    assert!(
        before <= usec && usec <= after,
        "MONOTONIC_USEC={usec} not within [{before}, {after}]"
    );
    let done = notify.until("READY=1", "READY=1 after reload", &sockd.log);
    assert!(!field(&done, "STATUS").unwrap_or("").contains("failed"), "good reload: {done:?}");

    // A broken rule file: still READY=1 (sockd serves on the old rules), and STATUS says why.
    std::fs::write(&conf, "permit this is not a rule\n").expect("break the rule file");
    sockd.signal(libc::SIGHUP);
    notify.until("RELOADING=1", "RELOADING=1 (broken file)", &sockd.log);
    let done = notify.until("READY=1", "READY=1 after a failed reload", &sockd.log);
    let status = field(&done, "STATUS").unwrap_or("");
    assert!(
        status.contains("reload failed") && status.contains(&conf.display().to_string()),
        "STATUS must name the failure and the file: {done:?}"
    );
    assert_round_trip(addr, &echo, 500, &sockd.log);

    // SIGTERM: STOPPING=1, then a clean exit.
    sockd.signal(libc::SIGTERM);
    let stopping = notify.until("STOPPING=1", "STOPPING=1", &sockd.log);
    assert!(
        field(&stopping, "STATUS").is_some_and(|s| s.contains("shutting down")),
        "{stopping:?}"
    );
    let exit = sockd.exits_within(Duration::from_secs(10), "sockd after SIGTERM");
    assert!(exit.success(), "exit status {exit}; log:\n{}", sockd.log.joined());
}

#[test]
fn abstract_notify_socket_is_reached() {
    let dir = TempDir::new("notify-abstract");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    let notify = NotifySocket::abstract_name();
    let (sockd, ready) = notified_sockd(&conf, &notify, &[]);
    assert!(
        field(&ready, "STATUS").is_some_and(|s| s.starts_with("listening on 127.0.0.1:")),
        "{ready:?}"
    );
    assert_eq!(containing(&sockd.log, &["cannot notify"]), 0, "log:\n{}", sockd.log.joined());
}

#[test]
fn ready_comes_after_dropping_privileges() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("ready_comes_after_dropping_privileges", "needs root to run sockd --user nobody");
        return;
    }
    let dir = TempDir::new("notify-user");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let notify = NotifySocket::at_path();
    // Like systemd's /run/systemd/notify: anyone may send (sockd does, as nobody, by then).
    std::fs::set_permissions(&notify.name, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod the notify socket");
    let mut cmd = sockd(&conf);
    cmd.args(["-l", "127.0.0.1:0", "--user", "nobody"]).env("NOTIFY_SOCKET", &notify.name);
    let sockd = Proc::spawn(cmd, "sockd");
    // The READY=1 datagram must have been sent by nobody (uid 65534 on Debian): by the time
    // systemd hears it, privileges are dropped.
    let (ready, uid) = notify.next_with_sender_uid(NOTIFY_TIMEOUT);
    assert!(ready.iter().any(|l| l == "READY=1"), "first message: {ready:?}");
    assert_eq!(
        uid,
        65534,
        "READY=1 sent before privileges were dropped; log:\n{}",
        sockd.log.joined()
    );
}

#[test]
fn missing_notify_socket_is_reported_once_and_sockd_serves() {
    let echo = echo_server();
    let dir = TempDir::new("notify-missing");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    let missing = dir.path().join("no-such-socket");
    let mut cmd = sockd(&conf);
    cmd.args(["-l", "127.0.0.1:0"]).env("NOTIFY_SOCKET", &missing);
    let mut sockd = Proc::spawn(cmd, "sockd");
    let addr = sockd.listening(1)[0];
    assert_round_trip(addr, &echo, 100, &sockd.log);
    for _ in 0..2 {
        sockd.signal(libc::SIGHUP);
        sockd.log.wait_for(&["reloaded"], LOG_TIMEOUT);
    }
    let deadline = Instant::now() + LOG_TIMEOUT;
    while containing(&sockd.log, &["reloaded"]) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_round_trip(addr, &echo, 100, &sockd.log);
    let warnings = containing(
        &sockd.log,
        &["cannot notify the service manager", &missing.display().to_string()],
    );
    assert_eq!(warnings, 1, "the failure must be said exactly once; log:\n{}", sockd.log.joined());
}

// ---------------------------------------------------------------------------------------------
// Socket activation
// ---------------------------------------------------------------------------------------------

#[test]
fn socket_activation_through_systemd_socket_activate() {
    let activate = require_program("systemd-socket-activate", "systemd");
    let echo = echo_server();
    let dir = TempDir::new("activate");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut cmd = Command::new(activate);
    cmd.arg("-l").arg(addr.to_string()).arg("--fdname=socks").arg(sockd_bin());
    cmd.arg("-f").arg(&conf);
    let mut sockd = Proc::spawn(cmd, "systemd-socket-activate sockd");
    sockd.log.wait_for(&["Listening on"], LOG_TIMEOUT);
    // The tool holds the port and starts sockd at the first connection, as a socket unit does:
    // that client sits in the backlog meanwhile and is served by the sockd it woke.
    assert_eq!(containing(&sockd.log, &["sockd["]), 0, "sockd runs only once a client comes");
    assert_round_trip(addr, &echo, 20_000, &sockd.log);
    let line = sockd.log.wait_for(&["listening on", "passed by systemd as `socks`"], LOG_TIMEOUT);
    assert!(line.is_some(), "sockd must serve the passed socket; log:\n{}", sockd.log.joined());
    assert_eq!(sockd.listening(1), vec![addr], "and only it (not its default 127.0.0.1:1080)");
    // curl, a real client, through the socket systemd's tool opened.
    let http = TestServer::spawn("127.0.0.1:0", |mut s| {
        let mut buf = [0u8; 1024];
        let _ = std::io::Read::read(&mut s, &mut buf);
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    });
    let out = run_bounded(
        curl_command().arg("--socks5").arg(addr.to_string()).arg(format!("http://{}/", http.addr)),
        None,
        Duration::from_secs(20),
    );
    assert_curl_body(
        &out,
        b"hello",
        "curl --socks5 through the activated sockd",
        &sockd.log.joined(),
    );
}

#[test]
fn passed_socket_accepts_before_sockd_runs_and_survives_a_restart() {
    let echo = echo_server();
    let dir = TempDir::new("activate-restart");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    // The test plays systemd: it owns the listening socket for the whole test.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // A client connects before any sockd runs: the kernel accepts it into the backlog.
    let mut early = connect(addr);
    socks5_noauth_send_only(&mut early, echo.addr);

    let first =
        Proc::spawn(with_passed_fd(&sockd(&conf), &listener, "1", Some("socks")), "sockd 1");
    finish_early_client(&mut early, &first.log);
    assert_round_trip(addr, &echo, 1000, &first.log);
    drop(first); // SIGKILL: the port stays open, held by the "manager"

    let mut waiting = connect(addr);
    socks5_noauth_send_only(&mut waiting, echo.addr);
    let second =
        Proc::spawn(with_passed_fd(&sockd(&conf), &listener, "1", Some("socks")), "sockd 2");
    finish_early_client(&mut waiting, &second.log);
    assert_eq!(echo.accepted(), 3, "every client, early or not, must have been relayed");
}

/// Sends a SOCKS5 greeting and CONNECT request without waiting for any answer.
fn socks5_noauth_send_only(s: &mut TcpStream, dst: SocketAddr) {
    s.write_all(&[0x05, 0x01, 0x00]).expect("greeting");
    s.write_all(&socks5_request(CMD_CONNECT, dst)).expect("request");
}

/// Reads the answers to [`socks5_noauth_send_only`] and does a round trip.
fn finish_early_client(s: &mut TcpStream, log: &LogLines) {
    let method = read_n(s, 2, "method selection");
    assert_eq!(method, [0x05, 0x00], "log:\n{}", log.joined());
    let reply = read_socks5_reply(s, "CONNECT reply");
    assert_eq!(reply.rep, 0, "{reply:?}; log:\n{}", log.joined());
    assert_echo(s, b"queued before sockd ran");
}

#[test]
fn listen_pid_of_another_process_is_ignored() {
    let echo = echo_server();
    let dir = TempDir::new("activate-pid");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut cmd = sockd(&conf);
    cmd.args(["-l", "127.0.0.1:0"]);
    // LISTEN_PID of pid 1: meant for another process, so sockd must bind its own --listen.
    let mut sockd = Proc::spawn(passing_fd(&cmd, &listener, "1", None, "1"), "sockd");
    let own = sockd.listening(1);
    assert_ne!(own[0], listener.local_addr().expect("addr"), "the passed socket must be ignored");
    assert_eq!(containing(&sockd.log, &["passed by systemd"]), 0, "log:\n{}", sockd.log.joined());
    assert_round_trip(own[0], &echo, 100, &sockd.log);
}

#[test]
fn listen_option_beside_passed_sockets_is_refused() {
    let dir = TempDir::new("activate-both");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut cmd = sockd(&conf);
    cmd.args(["-l", "127.0.0.1:0"]);
    let mut sockd = Proc::spawn(with_passed_fd(&cmd, &listener, "1", None), "sockd");
    let status = sockd.exits_within(Duration::from_secs(10), "sockd with --listen and LISTEN_FDS");
    assert!(!status.success(), "must not start; log:\n{}", sockd.log.joined());
    assert_eq!(
        containing(&sockd.log, &["--listen given", "LISTEN_FDS"]),
        1,
        "log:\n{}",
        sockd.log.joined()
    );
}

/// Starts sockd with `fd` passed as its only socket and expects it to exit non-zero with an
/// error line containing every needle.
fn refuses_passed(fd: &impl AsRawFd, count: &str, needles: &[&str]) {
    let dir = TempDir::new("activate-bad");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    let mut sockd = Proc::spawn(with_passed_fd(&sockd(&conf), fd, count, None), "sockd");
    let status = sockd.exits_within(Duration::from_secs(10), "sockd given a bad descriptor");
    let log = sockd.log.joined();
    assert!(!status.success(), "sockd must not serve on a bad descriptor ({status}); log:\n{log}");
    assert!(
        containing(&sockd.log, needles) >= 1,
        "expected an error with {needles:?}; log:\n{log}"
    );
    assert_eq!(containing(&sockd.log, &["listening on"]), 0, "nothing may be served; log:\n{log}");
}

#[test]
fn passed_regular_file_is_refused() {
    let dir = TempDir::new("activate-file");
    let file = std::fs::File::open(dir.write("not-a-socket", "x")).expect("open");
    refuses_passed(&file, "1", &["error: ", "fd 3", "not a socket"]);
}

#[test]
fn passed_udp_socket_is_refused() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    refuses_passed(&udp, "1", &["error: ", "fd 3", "datagram (UDP) socket"]);
}

#[test]
fn passed_connected_tcp_socket_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let stream = connect(listener.local_addr().expect("addr"));
    refuses_passed(&stream, "1", &["error: ", "fd 3", "not listening"]);
}

#[test]
fn passed_unix_socket_is_refused() {
    let dir = TempDir::new("activate-unix");
    let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).expect("bind");
    refuses_passed(&unix, "1", &["error: ", "fd 3", "not an IPv4 or IPv6 socket"]);
}

#[test]
fn listen_fds_naming_a_closed_descriptor_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    // Two announced, one given (fd 4 is closed): no serving on half of what was promised.
    refuses_passed(&listener, "2", &["error: ", "LISTEN_FDS=2, fds 3 to 4", "Bad file descriptor"]);
}

#[test]
fn listen_fds_that_is_no_number_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    refuses_passed(&listener, "three", &["error: ", "LISTEN_FDS=three", "invalid LISTEN_FDS"]);
}

#[test]
fn passed_dual_stack_socket_sees_ipv4_clients_as_ipv4() {
    // `ListenStream=1080` gives a dual-stack [::] socket: IPv4 clients arrive as ::ffff:a.b.c.d
    // and must meet the IPv4 rules (which permit only 127.0.0.0/8 here) and logs as IPv4.
    let echo = echo_server();
    let dir = TempDir::new("activate-v6");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    let Ok(listener) = TcpListener::bind("[::]:0") else {
        skip("passed_dual_stack_socket_sees_ipv4_clients_as_ipv4", "no IPv6 on this host");
        return;
    };
    let port = listener.local_addr().expect("addr").port();
    let sockd = Proc::spawn(with_passed_fd(&sockd(&conf), &listener, "1", None), "sockd");
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert_round_trip(v4, &echo, 1000, &sockd.log);
    let deadline = Instant::now() + LOG_TIMEOUT;
    while containing(&sockd.log, &["connected: client=127.0.0.1:"]) == 0 {
        assert!(Instant::now() < deadline, "client logged as IPv4? log:\n{}", sockd.log.joined());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn passed_datagram_socket_from_systemd_socket_activate_is_refused() {
    let activate = require_program("systemd-socket-activate", "systemd");
    let dir = TempDir::new("activate-dgram");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(activate);
    cmd.args(["--datagram", "-l"]).arg(&addr);
    cmd.arg(sockd_bin()).arg("-f").arg(&conf);
    let mut sockd = Proc::spawn(cmd, "sockd");
    sockd.log.wait_for(&["Listening on"], LOG_TIMEOUT);
    // A datagram wakes the service, as it would a datagram socket unit.
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    client.send_to(b"x", &addr).expect("send");
    let status = sockd.exits_within(Duration::from_secs(10), "sockd given a UDP socket");
    assert!(!status.success(), "log:\n{}", sockd.log.joined());
    assert_eq!(
        containing(&sockd.log, &["fd 3", "datagram (UDP) socket"]),
        1,
        "log:\n{}",
        sockd.log.joined()
    );
}

// ---------------------------------------------------------------------------------------------
// The inetd way and the journal
// ---------------------------------------------------------------------------------------------

#[test]
fn inetd_per_connection_through_systemd_socket_activate() {
    let activate = require_program("systemd-socket-activate", "systemd");
    let echo = echo_server();
    let dir = TempDir::new("activate-inetd");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut cmd = Command::new(activate);
    cmd.args(["--inetd", "--accept", "-l"]).arg(addr.to_string()).arg(sockd_bin());
    cmd.arg("--inetd").arg("-f").arg(&conf);
    let tool = Proc::spawn(cmd, "systemd-socket-activate --inetd");
    tool.log.wait_for(&["Listening on"], LOG_TIMEOUT);
    // Two connections, two sockd processes, each serving its one session.
    assert_round_trip(addr, &echo, 10_000, &tool.log);
    assert_round_trip(addr, &echo, 10_000, &tool.log);
    assert_eq!(echo.accepted(), 2);
}

/// sockd --inetd with stdin a fresh connection and stderr a file named by JOURNAL_STREAM (when
/// `journal` is true) or not; returns what sockd wrote to stderr.
fn inetd_stderr(journal: bool) -> String {
    let echo = echo_server();
    let dir = TempDir::new("journal");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    let err_path = dir.path().join("stderr");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let meta = err.metadata().expect("stat");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = connect(listener.local_addr().expect("addr"));
    let (server_side, _) = listener.accept().expect("accept");
    let mut cmd = sockd(&conf);
    cmd.arg("--inetd").stdin(Stdio::from(OwnedFd::from(server_side)));
    cmd.stdout(Stdio::null()).stderr(Stdio::from(err));
    use std::os::unix::fs::MetadataExt;
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    cmd.env("JOURNAL_STREAM", if journal { stream } else { "1:1".to_string() });
    let mut child = cmd.spawn().expect("spawn");
    socks5_noauth(&mut client);
    client.write_all(&socks5_request(CMD_CONNECT, echo.addr)).expect("request");
    assert_eq!(read_socks5_reply(&mut client, "reply").rep, 0);
    assert_echo(&mut client, b"journal");
    client.shutdown(Shutdown::Write).expect("shutdown");
    let _ = read_to_eof(&mut client, "EOF");
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("sockd --inetd exits");
    assert!(status.success());
    std::fs::read_to_string(err_path).expect("read stderr")
}

#[test]
fn inetd_logs_to_stderr_with_priorities_when_it_is_the_journal() {
    let text = inetd_stderr(true);
    let connected = text.lines().find(|l| l.contains("connected:"));
    let connected = connected.unwrap_or_else(|| panic!("no connected: line on stderr:\n{text}"));
    assert!(connected.starts_with("<5>info: connected: client=127.0.0.1:"), "{connected}");
    assert!(text.lines().any(|l| l.starts_with("<5>info: closed:")), "{text}");
    // A JOURNAL_STREAM that is not this stderr (it was redirected since): syslog, as before.
    let other = inetd_stderr(false);
    assert!(other.is_empty(), "stderr is no journal and under inetd may be the socket: {other}");
}

// ---------------------------------------------------------------------------------------------
// The unit files
// ---------------------------------------------------------------------------------------------

/// dist/systemd/ in the source tree.
fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd")
}

/// Copies of the units with /usr/sbin/sockd replaced by the binary under test, so that
/// `systemd-analyze verify` finds an executable where the package will put one.
fn units_for_verify(dir: &TempDir) -> Vec<PathBuf> {
    let mut units = Vec::new();
    for entry in std::fs::read_dir(units_dir()).expect("dist/systemd") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("unit");
        assert!(
            text.contains("/usr/sbin/sockd") || path.extension().is_some_and(|e| e == "socket")
        );
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        units.push(dir.write(&name, text.replace("/usr/sbin/sockd", sockd_bin())));
    }
    units.sort();
    units
}

#[test]
fn systemd_analyze_verify_accepts_every_unit() {
    let analyze = require_program("systemd-analyze", "systemd");
    let dir = TempDir::new("units");
    let units = units_for_verify(&dir);
    let names: Vec<String> =
        units.iter().map(|u| u.file_name().expect("name").to_string_lossy().into_owned()).collect();
    for expected in ["sockd.service", "sockd.socket", "sockd-inetd.socket", "sockd-inetd@.service"]
    {
        assert!(names.iter().any(|n| n == expected), "dist/systemd/ lacks {expected}: {names:?}");
    }
    // --man=no: the man pages come with the package (its own tests look them up).
    let out = run_bounded(
        Command::new(analyze).args(["verify", "--man=no"]).args(&units),
        None,
        Duration::from_secs(60),
    );
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // verify exits 0 on mere warnings (a misspelt value is "ignoring"), so any output fails too.
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify:\n{text}");
}

#[test]
fn every_sockd_command_in_the_units_parses() {
    let dir = TempDir::new("units-cmd");
    let conf = dir.write("sockd.conf", LOOPBACK_RULES);
    let mut seen = 0;
    for entry in std::fs::read_dir(units_dir()).expect("dist/systemd") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("unit");
        for line in text.lines().filter(|l| l.starts_with("Exec")) {
            let Some((_, command)) = line.split_once('=') else { continue };
            let mut words = command.split_whitespace();
            if words.next() != Some("/usr/sbin/sockd") {
                continue;
            }
            // The same arguments, with the test's rule file, and --check so nothing is served:
            // clap rejects any misspelt option before --check is looked at.
            let mut args: Vec<String> = words
                .map(|w| {
                    if w == "/etc/sockd.conf" {
                        conf.display().to_string()
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            if !args.iter().any(|a| a == "--check") {
                args.push("--check".into());
            }
            let out =
                run_bounded(Command::new(sockd_bin()).args(&args), None, Duration::from_secs(10));
            assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
            seen += 1;
        }
    }
    assert!(seen >= 4, "expected the ExecStartPre, ExecStart, ExecReload and inetd commands");
}
