//! curl through sockd: `--socks4`, `--socks4a`, `--socks5`, `--socks5-hostname` and RFC 1929
//! username/password (`--users`), each fetching a 200 KiB pseudo-random body from a local
//! HTTP/1.0 server and comparing it byte for byte, and checking sockd's `connected:`/`closed:`
//! lines with the exact byte counts the HTTP server saw.
//!
//! Not here: rule matching (rules.rs), raw framing (framing.rs).

mod common;

use common::*;
use std::io::Write;
use std::time::Duration;

const PERMIT_LOOPBACK: &str = "# integration test: loopback clients may reach loopback\n\
                               permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n";

/// Fetch through sockd with `proxy_args` and check body, HTTP server and sockd log.
/// `dst` is the `dst=` value sockd must log.
fn fetch_and_check(
    sockd: &Sockd,
    http: &HttpServer,
    proxy_args: &[&str],
    url: &str,
    dst: &str,
    user: &str,
) {
    let before = http.server.accepted();
    let mut cmd = curl_command();
    cmd.args(proxy_args).arg(url);
    let out = run_bounded(&mut cmd, None, Duration::from_secs(30));
    let what = format!("curl {proxy_args:?} {url}");
    assert_curl_body(&out, &http.body, &what, &sockd.log_text());
    assert_eq!(
        http.server.accepted(),
        before + 1,
        "{what}: the HTTP server must see exactly one connection"
    );
    let ex = http.wait_exchanges(1, LOG_TIMEOUT);
    let ex = *ex.last().expect("one exchange recorded");
    let dst = format!("dst={dst}");
    let user = format!("user={user}");
    sockd.wait_for_line(&["connected:", "cmd=connect", &dst, &user], LOG_TIMEOUT);
    let sent = format!("sent={}", ex.request_bytes);
    let received = format!("received={}", ex.response_bytes);
    let closed = sockd.wait_for_line(&["closed:", "cmd=connect", &dst], LOG_TIMEOUT);
    assert!(
        line_matches(&closed, &[&sent, &received, "secs="]),
        "{what}: closed line must carry {sent} {received} secs=…; got: {closed}"
    );
}

#[test]
fn curl_socks4() {
    let http = HttpServer::start();
    let sockd = Sockd::start(PERMIT_LOOPBACK);
    let proxy = sockd.addr().to_string();
    fetch_and_check(&sockd, &http, &["--socks4", &proxy], &http.url(), &http.server.dst(), "-");
}

#[test]
fn curl_socks4a_hostname() {
    let http = HttpServer::start();
    let sockd = Sockd::start(PERMIT_LOOPBACK);
    let proxy = sockd.addr().to_string();
    let dst = format!("localhost:{}", http.server.port());
    fetch_and_check(
        &sockd,
        &http,
        &["--socks4a", &proxy],
        &http.url_with_host("localhost"),
        &dst,
        "-",
    );
}

#[test]
fn curl_socks5() {
    let http = HttpServer::start();
    let sockd = Sockd::start(PERMIT_LOOPBACK);
    let proxy = sockd.addr().to_string();
    fetch_and_check(&sockd, &http, &["--socks5", &proxy], &http.url(), &http.server.dst(), "-");
}

#[test]
fn curl_socks5_hostname() {
    let http = HttpServer::start();
    let sockd = Sockd::start(PERMIT_LOOPBACK);
    let proxy = sockd.addr().to_string();
    let dst = format!("localhost:{}", http.server.port());
    fetch_and_check(
        &sockd,
        &http,
        &["--socks5-hostname", &proxy],
        &http.url_with_host("localhost"),
        &dst,
        "-",
    );
}

fn start_with_users() -> Sockd {
    let b = SockdBuilder::new(PERMIT_LOOPBACK);
    let users =
        b.file("users", "# RFC 1929 users for the integration tests\nu:p\nalice:wonder land\n");
    b.arg("--users").arg(users).start()
}

#[test]
fn curl_socks5_username_password() {
    let http = HttpServer::start();
    let sockd = start_with_users();
    let proxy = sockd.addr().to_string();
    fetch_and_check(
        &sockd,
        &http,
        &["--socks5", &proxy, "--proxy-user", "u:p"],
        &http.url(),
        &http.server.dst(),
        "u",
    );
}

#[test]
fn curl_socks5_wrong_password_fails() {
    let http = HttpServer::start();
    let sockd = start_with_users();
    let proxy = sockd.addr().to_string();
    for creds in ["u:wrong", "nobody:p", "u:"] {
        let mut cmd = curl_command();
        cmd.args(["--socks5", &proxy, "--proxy-user", creds]).arg(http.url());
        let out = run_bounded(&mut cmd, None, Duration::from_secs(30));
        assert!(
            !out.status.success(),
            "curl with credentials {creds:?} must fail; sockd log:\n{}",
            sockd.log_text()
        );
        assert!(out.stdout.is_empty(), "no body may arrive with {creds:?}");
    }
    // Without credentials at all (curl offers only method 00): must fail too.
    let mut cmd = curl_command();
    cmd.args(["--socks5", &proxy]).arg(http.url());
    let out = run_bounded(&mut cmd, None, Duration::from_secs(30));
    assert!(!out.status.success(), "curl without credentials must fail");
    assert_eq!(http.server.accepted(), 0, "the HTTP server must never be reached");
    assert_eq!(
        sockd.count_lines(&["connected:"]),
        0,
        "no session may be connected:\n{}",
        sockd.log_text()
    );
}

#[test]
fn raw_rfc1929_exchange() {
    let echo = echo_server();
    let sockd = start_with_users();
    // Good credentials, password with a space in it.
    let mut s = connect(sockd.addr());
    s.write_all(&socks5_greeting(&[0x00, 0x02])).expect("greeting");
    assert_eq!(
        read_n(&mut s, 2, "method selection"),
        [0x05, 0x02],
        "with --users the server must choose method 02 even when 00 is offered"
    );
    s.write_all(&rfc1929_request("alice", "wonder land")).expect("auth");
    assert_eq!(
        read_n(&mut s, 2, "RFC 1929 status"),
        [0x01, 0x00],
        "RFC 1929 reply is VER=01 STATUS=00 on success"
    );
    s.write_all(&socks5_request(CMD_CONNECT, echo.addr)).expect("request");
    let r = read_socks5_reply(&mut s, "CONNECT reply");
    assert_eq!(r.rep, 0x00, "{r:?}");
    assert_echo(&mut s, b"authenticated payload");
    let tag = client_tag(&s);
    drop(s);
    sockd.wait_for_line(&["connected:", &tag, "user=alice"], LOG_TIMEOUT);

    // Bad password: status != 0, then the server closes.
    let mut s = connect(sockd.addr());
    s.write_all(&socks5_greeting(&[0x02])).expect("greeting");
    assert_eq!(read_n(&mut s, 2, "method selection"), [0x05, 0x02]);
    s.write_all(&rfc1929_request("alice", "wonderland")).expect("auth");
    let st = read_n(&mut s, 2, "RFC 1929 status");
    assert_eq!(st[0], 0x01, "RFC 1929 reply VER is 01, got {st:02x?}");
    assert_ne!(st[1], 0x00, "a wrong password must not succeed");
    expect_closed(&mut s, Duration::from_secs(5), "after failed auth");

    // Only method 00 offered: 05 FF, then close.
    let mut s = connect(sockd.addr());
    s.write_all(&socks5_greeting(&[0x00])).expect("greeting");
    assert_eq!(
        read_n(&mut s, 2, "method selection"),
        [0x05, 0xff],
        "no acceptable method must be answered 05 FF"
    );
    expect_closed(&mut s, Duration::from_secs(5), "after 05 FF");
    assert_eq!(echo.accepted(), 1, "only the authenticated session connects");
}

#[test]
fn socks4_refused_when_users_required() {
    let echo = echo_server();
    let sockd = start_with_users();
    let mut s = connect(sockd.addr());
    let dst = echo.v4();
    s.write_all(&socks4_request(CMD_CONNECT, dst, b"u")).expect("request");
    let r = read_socks4_reply(&mut s, "SOCKS4 reply with --users");
    assert_eq!((r.vn, r.cd), (0, 91), "SOCKS4 must be refused with 91: {r:?}");
    expect_closed(&mut s, Duration::from_secs(5), "after 91");
    assert_eq!(echo.accepted(), 0, "the destination must not be reached");
    // curl agrees.
    let http = HttpServer::start();
    let mut cmd = curl_command();
    cmd.args(["--socks4", &sockd.addr().to_string()]).arg(http.url());
    let out = run_bounded(&mut cmd, None, Duration::from_secs(30));
    assert!(!out.status.success(), "curl --socks4 must fail with --users");
    assert_eq!(http.server.accepted(), 0);
}
