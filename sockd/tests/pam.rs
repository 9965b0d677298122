//! `--pam SERVICE` (issue 14) against a real PAM stack: sockd runs in a private mount namespace
//! (`unshare --mount`) where a directory of the test's is bind-mounted over /etc/pam.d, so the
//! service files exist for it alone and the machine's own PAM configuration is never touched.
//! The stacks: `pam_userdb` over a Berkeley DB the test makes with `db_load` (libpam-modules,
//! db-util), one naming a module that does not exist, and one whose `pam_exec` hangs.
//!
//! Shown: the right password is served; a wrong one and an unknown user are refused, logged
//! like the users file's failures and slowed the same way; SOCKS4 and a client offering no
//! password are refused; a missing module refuses logins with an error naming the service; a
//! hanging module is cut off at the check timeout while sockd keeps answering other clients;
//! a missing service file, and `--pam` with `--users`, stop sockd at start; `--metrics` counts
//! the logins by result.
//!
//! Root is needed for the namespace; without it these tests say SKIPPED.

mod common;

use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n";

/// A PAM directory for the namespace's /etc/pam.d, with the user database beside it.
struct PamLab {
    dir: TempDir,
}

impl PamLab {
    /// The lab, or `None` (and SKIPPED) when not root.
    fn new(test: &str) -> Option<PamLab> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            skip(test, "needs root for a private mount namespace over /etc/pam.d");
            return None;
        }
        require_program("unshare", "util-linux");
        let db_load = require_program("db_load", "db-util");
        let module = ["/usr/lib/x86_64-linux-gnu/security", "/lib/x86_64-linux-gnu/security"]
            .iter()
            .map(|dir| Path::new(dir).join("pam_userdb.so"))
            .find(|path| path.is_file());
        assert!(
            module.is_some(),
            "pam_userdb.so is missing: install the Debian package libpam-modules"
        );
        let dir = TempDir::new("pam");
        std::fs::create_dir(dir.path().join("pam.d")).expect("pam.d");
        let source = dir.write("users.txt", "alice\nalice-pw\nbob\nbob-pw\n");
        let db = dir.path().join("users.db");
        let out = run_bounded(
            Command::new(db_load).args(["-T", "-t", "hash", "-f"]).arg(&source).arg(&db),
            None,
            Duration::from_secs(20),
        );
        assert!(out.status.success(), "db_load: {}", String::from_utf8_lossy(&out.stderr));
        let userdb = dir.path().join("users");
        let lab = PamLab { dir };
        lab.service(
            "sockd-test",
            &format!(
                "auth required pam_userdb.so db={} crypt=none\naccount required pam_permit.so\n",
                userdb.display()
            ),
        );
        lab.service(
            "sockd-broken",
            "auth required pam_sockd_no_such_module.so\naccount required pam_permit.so\n",
        );
        lab.service(
            "sockd-hangs",
            "auth required pam_exec.so /bin/sleep 30\naccount required pam_permit.so\n",
        );
        Some(lab)
    }

    fn service(&self, name: &str, stack: &str) {
        std::fs::write(self.dir.path().join("pam.d").join(name), stack).expect("service file");
    }

    /// sockd with `--pam SERVICE` in a mount namespace where /etc/pam.d is the lab's.
    fn sockd(&self, service: &str) -> Daemon {
        self.sockd_with(service, &[])
    }

    /// The same with extra arguments.
    fn sockd_with(&self, service: &str, extra: &[&str]) -> Daemon {
        let conf = self.dir.write("sockd.conf", RULES);
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"]);
        cmd.arg("mount --bind \"$0\" /etc/pam.d && exec \"$@\"");
        cmd.arg(self.dir.path().join("pam.d")).arg(sockd_bin());
        cmd.arg("-f").arg(conf).args(["-l", "127.0.0.1:0", "--pam", service]).args(extra);
        Daemon::spawn(cmd)
    }
}

/// sockd started through unshare (which execs it: the child is sockd); killed on drop.
struct Daemon {
    child: Child,
    log: LogLines,
    addr: SocketAddr,
}

impl Daemon {
    fn spawn(mut cmd: Command) -> Daemon {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn unshare … sockd");
        let log = LogLines::capture(child.stderr.take().expect("piped"), "sockd");
        let line = log.wait_for(&["listening on"], Duration::from_secs(10));
        let addr = line.as_deref().and_then(parse_listening);
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sockd did not start; log:\n{}", log.joined());
        };
        Daemon { child, log, addr }
    }

    fn wait_line(&self, needles: &[&str]) -> String {
        self.log
            .wait_for(needles, LOG_TIMEOUT)
            .unwrap_or_else(|| panic!("no line with {needles:?}; log:\n{}", self.log.joined()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Greeting offering username/password, then the login; the RFC 1929 status byte and the time
/// the status took after the credentials were sent.
fn login(addr: SocketAddr, user: &str, password: &str) -> (TcpStream, u8, Duration) {
    let mut s = connect(addr);
    s.write_all(&socks5_greeting(&[0x02])).expect("greeting");
    assert_eq!(read_n(&mut s, 2, "method selection"), [0x05, 0x02], "username/password chosen");
    s.write_all(&rfc1929_request(user, password)).expect("login");
    let sent = Instant::now();
    let status = read_n(&mut s, 2, "RFC 1929 status");
    assert_eq!(status[0], 0x01, "RFC 1929 status version");
    (s, status[1], sent.elapsed())
}

#[test]
fn pam_decides_logins_and_failures_are_slowed_and_logged() {
    let Some(lab) = PamLab::new("pam_decides_logins_and_failures_are_slowed_and_logged") else {
        return;
    };
    let sockd = lab.sockd_with("sockd-test", &["--metrics", "127.0.0.1:0"]);
    let echo = echo_server();
    // The right password: served, and the log names the user.
    let (mut s, status, _) = login(sockd.addr, "alice", "alice-pw");
    assert_eq!(status, 0x00, "alice logs in; log:\n{}", sockd.log.joined());
    s.write_all(&socks5_request(CMD_CONNECT, echo.addr)).expect("CONNECT");
    assert_eq!(read_socks5_reply(&mut s, "CONNECT after login").rep, 0x00);
    assert_echo(&mut s, b"through a PAM login");
    sockd.wait_line(&["connected:", "user=alice", &client_tag(&s)]);
    drop(s);
    // A wrong password: refused, logged as the users file's failures are.
    let (s, status, _) = login(sockd.addr, "alice", "wrong");
    assert_ne!(status, 0x00, "a wrong password must be refused");
    sockd.wait_line(&[
        "denied:",
        &client_tag(&s),
        "user=alice",
        "error=wrong username or password",
        "failures=1",
        "next-try-delay=0.2s",
    ]);
    assert!(!sockd.log.joined().contains("wrong\n"), "no password in the log");
    // An unknown user: the same, and the next try from this address waits longer.
    let (s, status, _) = login(sockd.addr, "mallory", "whatever");
    assert_ne!(status, 0x00, "an unknown user must be refused");
    sockd.wait_line(&["denied:", &client_tag(&s), "user=mallory", "failures=2"]);
    // Slowed: after two failures the next check waits 0.4 s, even with the right password.
    let (_s, status, took) = login(sockd.addr, "bob", "bob-pw");
    assert_eq!(status, 0x00, "bob logs in");
    assert!(took >= Duration::from_millis(350), "the try after two failures waited only {took:?}");
    // Logins are required: SOCKS4 and a SOCKS5 client offering no password are refused.
    let mut s4 = connect(sockd.addr);
    let SocketAddr::V4(v4) = echo.addr else { panic!("IPv4 echo server") };
    s4.write_all(&socks4_request(CMD_CONNECT, v4, b"alice")).expect("SOCKS4 request");
    assert_eq!(read_socks4_reply(&mut s4, "SOCKS4 reply").cd, 91);
    let mut open = connect(sockd.addr);
    open.write_all(&socks5_greeting(&[0x00])).expect("greeting");
    assert_eq!(read_n(&mut open, 2, "method selection"), [0x05, 0xff]);
    // --metrics counted the logins as they went.
    let line = sockd.wait_line(&["metrics: serving"]);
    let addr = line.split("http://").nth(1).and_then(|r| r.split('/').next()).expect("address");
    let mut scrape = connect(addr.parse().expect("metrics address"));
    scrape.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").expect("scrape");
    let text = String::from_utf8(read_to_eof(&mut scrape, "scrape")).expect("UTF-8");
    for series in [
        "sockd_logins_total{result=\"ok\"} 2",
        "sockd_logins_total{result=\"failed\"} 2",
        "sockd_sessions_total{command=\"none\",outcome=\"login_failed\"} 2",
    ] {
        assert!(text.lines().any(|l| l == series), "{series} missing:\n{text}");
    }
}

/// PAM takes C strings: a name or password with a NUL byte inside must be refused as it is,
/// never cut at the NUL — "alice\0anything" is not alice, and "alice-pw\0junk" is not her
/// password, though either would pass if the bytes after the NUL were dropped.
#[test]
fn a_nul_byte_never_cuts_a_name_or_password_short() {
    let Some(lab) = PamLab::new("a_nul_byte_never_cuts_a_name_or_password_short") else {
        return;
    };
    let sockd = lab.sockd_with("sockd-test", &[]);
    let (_s, status, _) = login(sockd.addr, "alice\0mallory", "alice-pw");
    assert_ne!(status, 0x00, "a name with a NUL inside is not alice; log:\n{}", sockd.log.joined());
    let (_s, status, _) = login(sockd.addr, "alice", "alice-pw\0junk");
    assert_ne!(status, 0x00, "a password with a NUL inside is not alice's");
    // The refusals were the input's, not a broken stack: the right login still works.
    let (_s, status, _) = login(sockd.addr, "alice", "alice-pw");
    assert_eq!(status, 0x00, "alice logs in; log:\n{}", sockd.log.joined());
}

#[test]
fn a_missing_pam_module_refuses_logins_and_says_why() {
    let Some(lab) = PamLab::new("a_missing_pam_module_refuses_logins_and_says_why") else {
        return;
    };
    let sockd = lab.sockd("sockd-broken");
    let (_s, status, _) = login(sockd.addr, "alice", "alice-pw");
    assert_ne!(status, 0x00, "a broken stack must refuse");
    let line = sockd.wait_line(&["pam: service sockd-broken could not check", "user=alice"]);
    assert!(line.contains("error=pam_authenticate: Module is unknown"), "{line}");
    // Refused like a wrong password, and counted against the address.
    sockd.wait_line(&["denied:", "user=alice", "error=wrong username or password", "failures=1"]);
}

#[test]
fn a_hanging_module_is_cut_off_and_sockd_keeps_serving() {
    let Some(lab) = PamLab::new("a_hanging_module_is_cut_off_and_sockd_keeps_serving") else {
        return;
    };
    let sockd = lab.sockd("sockd-hangs");
    let addr = sockd.addr;
    let hung = thread::spawn(move || login(addr, "alice", "alice-pw"));
    thread::sleep(Duration::from_millis(500));
    // Meanwhile sockd answers other clients at once: the check holds no async worker.
    let started = Instant::now();
    let mut other = connect(sockd.addr);
    other.write_all(&socks5_greeting(&[0x02])).expect("greeting");
    assert_eq!(read_n(&mut other, 2, "method selection"), [0x05, 0x02]);
    assert!(started.elapsed() < Duration::from_secs(1), "sockd stalled: {:?}", started.elapsed());
    let (_s, status, took) = hung.join().expect("the hung login returns");
    assert_ne!(status, 0x00, "a check that hangs is refused");
    assert!(
        (Duration::from_secs(8)..Duration::from_secs(20)).contains(&took),
        "refused after {took:?}, expected the 10 s check timeout"
    );
    sockd.wait_line(&["pam: service sockd-hangs did not answer", "user=alice"]);
}

#[test]
fn a_missing_service_file_and_pam_with_users_stop_sockd_at_start() {
    let dir = TempDir::new("pam-start");
    let conf = dir.write("sockd.conf", RULES);
    let run = |extra: &[&str]| {
        let out = run_bounded(
            Command::new(sockd_bin()).arg("-f").arg(&conf).args(["-l", "127.0.0.1:0"]).args(extra),
            None,
            Duration::from_secs(10),
        );
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, stderr) = run(&["--pam", "sockd-no-such-service"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no PAM service file /etc/pam.d/sockd-no-such-service"), "{stderr}");
    let users: PathBuf = dir.write("users", "alice:alice-pw\n");
    let (code, stderr) = run(&["--pam", "login", "--users", users.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--pam") && stderr.contains("--users"), "{stderr}");
}
