//! RFC 1929 users (issue 7): `sockd --users FILE --add-user NAME` (password on standard input)
//! creates FILE with mode 0600 holding `NAME:$6$…` and never the password itself; curl
//! `--proxy-user` authenticates against such a file; SIGHUP picks up a user added meanwhile; a
//! users file with clear-text passwords still works and draws a warning; and no password — right
//! or wrong, good user or unknown one — ever appears in the log, even at `--log-level debug`.

mod common;

use common::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RULES: &str = "permit 127.0.0.0/8 127.0.0.0/8\n";

/// Runs `sockd --users FILE --add-user NAME` with `stdin`.
fn add_user(file: &Path, name: &str, stdin: &[u8]) -> std::process::Output {
    let mut cmd = Command::new(sockd_bin());
    cmd.arg("--users").arg(file).arg("--add-user").arg(name);
    run_bounded(&mut cmd, Some(stdin), Duration::from_secs(20))
}

/// curl through the proxy with `user:password`; the output.
fn curl_with(sockd: &Sockd, http: &HttpServer, creds: &str) -> std::process::Output {
    let mut cmd = curl_command();
    cmd.args(["--socks5", &sockd.addr().to_string(), "--proxy-user", creds]).arg(http.url());
    run_bounded(&mut cmd, None, Duration::from_secs(30))
}

/// A raw RFC 1929 attempt: the status byte (00 = success).
fn raw_auth(sockd: &Sockd, user: &str, password: &str) -> u8 {
    let mut s = connect(sockd.addr());
    s.write_all(&socks5_greeting(&[0x02])).expect("greeting");
    assert_eq!(read_n(&mut s, 2, "method selection"), [0x05, 0x02]);
    s.write_all(&rfc1929_request(user, password)).expect("auth");
    let st = read_n(&mut s, 2, "RFC 1929 status");
    assert_eq!(st[0], 0x01);
    st[1]
}

/// No log line contains any of `secrets`.
fn assert_not_logged(sockd: &Sockd, secrets: &[&str]) {
    let log = sockd.log_text();
    for secret in secrets {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "a password appears in the log: {leaks:#?}");
    }
}

#[test]
fn add_user_stores_a_hash_and_curl_authenticates_against_it() {
    const ALICE_PW: &str = "Alice-S3cret-9q";
    const BOB_PW: &str = "Bob pass with spaces";
    const CARL_PW: &str = "Carl-Added-Later-4x";
    const WRONG_PW: &str = "Wrong-Guess-77z";
    let dir = TempDir::new("users");
    let users = dir.path().join("users");

    let out = add_user(&users, "alice", format!("{ALICE_PW}\n").as_bytes());
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "--add-user failed: {said}");
    assert!(!said.contains(ALICE_PW), "--add-user must not echo the password: {said}");
    let out = add_user(&users, "bob", BOB_PW.as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = add_user(&users, "alice", b"another\n");
    assert!(!out.status.success(), "a user already in the file must not be added twice");

    let mode = std::fs::metadata(&users).expect("users file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "users file mode is {:o}", mode & 0o777);
    let text = std::fs::read_to_string(&users).expect("users file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, name) in lines.iter().zip(["alice", "bob"]) {
        let hash = line.strip_prefix(&format!("{name}:")).unwrap_or_else(|| panic!("{line}"));
        assert!(hash.starts_with("$6$") && hash.len() > 60, "a SHA-512 crypt hash: {line}");
    }
    for pw in [ALICE_PW, BOB_PW, "Bob", "pass"] {
        assert!(!text.contains(pw), "the password must not be stored: {text}");
    }

    let http = HttpServer::start();
    let mut sockd =
        SockdBuilder::new(RULES).arg("--users").arg(&users).arg("--log-level").arg("debug").start();
    assert_eq!(sockd.count_lines(&["stored in clear"]), 0, "hashed entries draw no warning");
    for (creds, user) in [(format!("alice:{ALICE_PW}"), "alice"), (format!("bob:{BOB_PW}"), "bob")]
    {
        let out = curl_with(&sockd, &http, &creds);
        assert_curl_body(&out, &http.body, &format!("curl as {user}"), &sockd.log_text());
        sockd.wait_for_line(&["connected:", &format!("user={user}")], LOG_TIMEOUT);
    }
    // Wrong password, unknown user with a real password, right password for the wrong user.
    for creds in
        [format!("alice:{WRONG_PW}"), format!("mallory:{ALICE_PW}"), format!("bob:{ALICE_PW}")]
    {
        let out = curl_with(&sockd, &http, &creds);
        assert!(!out.status.success(), "curl with {creds:?} must fail");
        assert!(out.stdout.is_empty());
    }
    assert_ne!(raw_auth(&sockd, "alice", WRONG_PW), 0);
    assert_eq!(raw_auth(&sockd, "alice", ALICE_PW), 0);
    assert_eq!(http.wait_exchanges(2, LOG_TIMEOUT).len(), 2, "only the two good logins fetched");
    sockd.wait_for_line(&["denied:", "user=alice", "wrong username or password"], LOG_TIMEOUT);

    // A user added while sockd runs can log in after SIGHUP.
    let out = add_user(&users, "carl", CARL_PW.as_bytes());
    assert!(out.status.success());
    sockd.signal(libc::SIGHUP);
    sockd.wait_for_line(&["reloaded"], LOG_TIMEOUT);
    let out = curl_with(&sockd, &http, &format!("carl:{CARL_PW}"));
    assert_curl_body(&out, &http.body, "curl as carl after SIGHUP", &sockd.log_text());

    // Let the last lines arrive, then search the whole log.
    std::thread::sleep(Duration::from_millis(300));
    sockd.assert_alive();
    assert_not_logged(&sockd, &[ALICE_PW, BOB_PW, CARL_PW, WRONG_PW]);
}

#[test]
fn clear_text_users_file_still_works_with_a_warning() {
    const CLEAR_PW: &str = "Clear-Text-Pw-5k";
    const WRONG_PW: &str = "Not-It-At-All-3j";
    let b = SockdBuilder::new(RULES);
    let users = b.file("users", &format!("# kept in clear\ncarol:{CLEAR_PW}\n"));
    let sockd = b.arg("--users").arg(&users).arg("--log-level").arg("debug").start();
    let warning = sockd.wait_for_line(&["stored in clear"], LOG_TIMEOUT);
    assert!(
        warning.contains(&format!("{}:2", users.display())) && warning.contains("--add-user"),
        "the warning names the file and line and the fix: {warning}"
    );

    let http = HttpServer::start();
    let out = curl_with(&sockd, &http, &format!("carol:{CLEAR_PW}"));
    assert_curl_body(&out, &http.body, "curl as carol (clear-text entry)", &sockd.log_text());
    let out = curl_with(&sockd, &http, &format!("carol:{WRONG_PW}"));
    assert!(!out.status.success(), "a wrong password must fail against a clear-text entry");
    assert_ne!(raw_auth(&sockd, "carol", WRONG_PW), 0);
    assert_ne!(raw_auth(&sockd, "carol", &CLEAR_PW[..CLEAR_PW.len() - 1]), 0, "a prefix is wrong");
    std::thread::sleep(Duration::from_millis(300));
    assert_not_logged(&sockd, &[CLEAR_PW, WRONG_PW]);
}

/// A raw RFC 1929 attempt from client address `src`: the status byte (00 = success) and the
/// time from sending the credentials to the status.
fn timed_auth_from(
    sockd: &Sockd,
    src: std::net::Ipv4Addr,
    user: &str,
    password: &str,
) -> (u8, Duration) {
    let mut s = connect_from(src, sockd.addr());
    s.write_all(&socks5_greeting(&[0x02])).expect("greeting");
    assert_eq!(read_n(&mut s, 2, "method selection"), [0x05, 0x02]);
    let t = std::time::Instant::now();
    s.write_all(&rfc1929_request(user, password)).expect("auth");
    let st = read_n(&mut s, 2, "RFC 1929 status");
    let took = t.elapsed();
    assert_eq!(st[0], 0x01);
    (st[1], took)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A SHA-512 crypt hash of "secret" (glibc: mkpasswd -m sha-512 -S saltsalt secret).
const CAROL_HASH: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

#[test]
fn a_failed_login_takes_as_long_for_an_unknown_user_as_for_a_real_one() {
    let b = SockdBuilder::new(RULES);
    let users = b.file("users", &format!("carol:{CAROL_HASH}\n"));
    let sockd = b.arg("--users").arg(&users).start();
    // Each attempt from its own address, so that slowing down repeated failures from one
    // address does not enter the measurement; the two kinds alternate, so load on the machine
    // falls on both alike.
    const TRIES: usize = 40;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..2 * TRIES {
        let src = std::net::Ipv4Addr::new(127, 1, (i / 200) as u8, (i % 200 + 1) as u8);
        let user = if i % 2 == 0 { "carol" } else { "mallory" };
        let (status, took) = timed_auth_from(&sockd, src, user, "not-the-password");
        assert_ne!(status, 0, "a wrong password for {user} must fail");
        if i % 2 == 0 {
            known.push(took)
        } else {
            unknown.push(took)
        }
    }
    let (k, u) = (median(known), median(unknown));
    let ratio = u.as_secs_f64() / k.as_secs_f64();
    eprintln!("median failed login: existing user {k:?}, unknown user {u:?}, ratio {ratio:.2}");
    assert!(
        (0.5..=2.0).contains(&ratio),
        "a failed login for an unknown user takes {u:?}, for an existing one {k:?} (median of \
         {TRIES}): user names can be told apart by timing"
    );
}

#[test]
fn repeated_failures_from_one_address_are_slowed_down_and_logged() {
    let b = SockdBuilder::new(RULES);
    let users = b.file("users", &format!("carol:{CAROL_HASH}\n"));
    let sockd = b.arg("--users").arg(&users).start();
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 9);
    let bystander = std::net::Ipv4Addr::new(127, 0, 0, 10);
    // After n failures, the next try from that address waits 0.2 s * 2^(n-1) (at most 4 s).
    let mut times = Vec::new();
    for _ in 0..5 {
        let (status, took) = timed_auth_from(&sockd, attacker, "carol", "guess");
        assert_ne!(status, 0);
        times.push(took);
    }
    eprintln!("five failed logins from one address took {times:?}");
    for (n, took) in times.iter().enumerate().skip(1) {
        let least = Duration::from_millis(200 << (n - 1)) - Duration::from_millis(20);
        assert!(*took >= least, "try {} after {n} failures took {took:?}, not >= {least:?}", n + 1);
    }
    // Another address is not slowed down by them.
    let (status, took) = timed_auth_from(&sockd, bystander, "carol", "guess");
    assert_ne!(status, 0);
    assert!(took < Duration::from_millis(1500), "another address waited {took:?}");
    // The right password still works from the attacker's address, after the wait.
    let (status, took) = timed_auth_from(&sockd, attacker, "carol", "secret");
    assert_eq!(status, 0, "the right password is accepted after the delay");
    assert!(took >= Duration::from_millis(3000), "the sixth try waited only {took:?}");
    // Each failure is logged with the count and the delay the next try gets.
    sockd.wait_for_line(
        &["denied:", " client=127.0.0.9:", "user=carol", "failures=5", "next-try-delay=3.2s"],
        LOG_TIMEOUT,
    );
    sockd.wait_for_line(
        &["denied:", " client=127.0.0.10:", "failures=1", "next-try-delay=0.2s"],
        LOG_TIMEOUT,
    );
}

#[test]
fn format_characters_in_user_names_are_escaped_in_the_log() {
    // U+202E RIGHT-TO-LEFT OVERRIDE, U+2066 LEFT-TO-RIGHT ISOLATE, U+200B ZERO WIDTH SPACE,
    // U+2028 LINE SEPARATOR, U+00A0 NO-BREAK SPACE, U+E000 private use, U+0378 unassigned.
    let name = "ad\u{202e}nimda\u{2066}x\u{200b}y\u{2028}z\u{a0}w\u{e000}v\u{378}";
    let raw: Vec<char> = "\u{202e}\u{2066}\u{200b}\u{2028}\u{a0}\u{e000}\u{378}".chars().collect();
    // With passwords: the `denied:` line of a failed login.
    let b = SockdBuilder::new(RULES);
    let users = b.file("users", &format!("carol:{CAROL_HASH}\n"));
    let sockd = b.arg("--users").arg(&users).start();
    let (status, _) = timed_auth_from(&sockd, std::net::Ipv4Addr::new(127, 0, 0, 11), name, "x");
    assert_ne!(status, 0);
    let line = sockd.wait_for_line(&["denied:", " client=127.0.0.11:"], LOG_TIMEOUT);
    assert!(!line.contains(&raw[..]), "a format character reached the log raw: {line:?}");
    assert!(
        line.contains(
            "user=ad\\u{202e}nimda\\u{2066}x\\u{200b}y\\u{2028}z\\u{a0}w\\u{e000}v\\u{378}"
        ),
        "each escaped as \\u{{…}}: {line:?}"
    );
    drop(sockd);
    // Without: a SOCKS4 USERID on the `connected:` and `closed:` lines.
    let echo = echo_server();
    let sockd = Sockd::start(RULES);
    let mut s = socks4_connect(sockd.addr(), echo.v4(), name.as_bytes());
    assert_echo(&mut s, b"x");
    drop(s);
    for kind in ["connected:", "closed:"] {
        let line = sockd.wait_for_line(&[kind, &format!("dst={}", echo.dst())], LOG_TIMEOUT);
        assert!(!line.contains(&raw[..]), "a format character reached the log raw: {line:?}");
        assert!(line.contains("user=ad\\u{202e}nimda"), "{line:?}");
    }
}
