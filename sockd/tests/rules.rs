//! The rule file seen from outside: a `deny` line refuses and is named in the log
//! (`rule=FILE:LINE`), no matching line means deny (`rule=default`), `*=user` lists, Cisco
//! inverted masks vs CIDR, port operators, `--hosts` names, and `--check` output and errors.
//!
//! Not here: the parser's unit tests (proto/src/rules/), which cover the grammar in depth.

mod common;

use common::*;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;

/// SOCKS5 CONNECT without auth; returns the reply code and the client tag.
fn socks5_try(sockd: &Sockd, dst: SocketAddr) -> (u8, String) {
    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    socks5_noauth(&mut s);
    s.write_all(&socks5_request(CMD_CONNECT, dst)).expect("request");
    let r = read_socks5_reply(&mut s, "CONNECT reply");
    if r.rep == 0 {
        assert_echo(&mut s, b"rule test");
    } else {
        expect_closed(&mut s, Duration::from_secs(5), "after a failure reply");
    }
    (r.rep, tag)
}

/// SOCKS4 CONNECT; returns CD and the client tag.
fn socks4_try(sockd: &Sockd, dst: SocketAddrV4, user: &[u8]) -> (u8, String) {
    let mut s = connect(sockd.addr());
    let tag = client_tag(&s);
    s.write_all(&socks4_request(CMD_CONNECT, dst, user)).expect("request");
    let r = read_socks4_reply(&mut s, "SOCKS4 reply");
    assert_eq!(r.vn, 0, "SOCKS4 reply VN must be 0: {r:?}");
    if r.cd == 90 {
        assert_echo(&mut s, b"rule test");
    } else {
        expect_closed(&mut s, Duration::from_secs(5), "after 91");
    }
    (r.cd, tag)
}

#[test]
fn deny_line_refuses_and_is_logged() {
    let denied = HttpServer::start();
    let allowed = HttpServer::start();
    let rules = format!(
        "# line 1: comment\n\
         \n\
         deny 127.0.0.1 0.0.0.0 127.0.0.1 0.0.0.0 eq {}\n\
         permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255 # trailing comment\n",
        denied.server.port()
    );
    let sockd = Sockd::start(&rules);
    let proxy = sockd.addr().to_string();

    let mut cmd = curl_command();
    cmd.args(["--socks5", &proxy]).arg(denied.url());
    let out = run_bounded(&mut cmd, None, Duration::from_secs(30));
    assert!(!out.status.success(), "curl to the denied port must fail; log:\n{}", sockd.log_text());
    assert!(out.stdout.is_empty());
    assert_eq!(denied.server.accepted(), 0, "a denied destination is never dialled");
    let dst = format!("dst={}", denied.server.dst());
    let rule = sockd.rule_tag(3);
    sockd.wait_for_line(&["denied:", "cmd=connect", &dst, "user=-", &rule], LOG_TIMEOUT);

    // Raw: the reply code for a ruleset denial is 02, and 91 for SOCKS4.
    let (rep, tag) = socks5_try(&sockd, denied.server.addr);
    assert_eq!(rep, 0x02, "SOCKS5 denial by rule must be REP 02");
    sockd.wait_for_line(&["denied:", &tag, &dst, &rule], LOG_TIMEOUT);
    let (cd, tag) = socks4_try(&sockd, denied.server.v4(), b"bob");
    assert_eq!(cd, 91, "SOCKS4 denial must be 91");
    sockd.wait_for_line(&["denied:", &tag, "user=bob", &dst, &rule], LOG_TIMEOUT);

    // The permit line still works for the other port.
    let mut cmd = curl_command();
    cmd.args(["--socks5", &proxy]).arg(allowed.url());
    let out = run_bounded(&mut cmd, None, Duration::from_secs(30));
    assert_curl_body(&out, &allowed.body, "permitted port", &sockd.log_text());
    let dst = format!("dst={}", allowed.server.dst());
    sockd.wait_for_line(&["connected:", &dst], LOG_TIMEOUT);
    assert_eq!(denied.server.accepted(), 0);
}

#[test]
fn no_matching_line_is_default_deny() {
    let echo = echo_server();
    // Only 10.0.0.0/8 clients are permitted; loopback matches nothing.
    let sockd = Sockd::start("permit 10.0.0.0 0.255.255.255\n");
    let http = HttpServer::start();
    let mut cmd = curl_command();
    cmd.args(["--socks4", &sockd.addr().to_string()]).arg(http.url());
    let out = run_bounded(&mut cmd, None, Duration::from_secs(30));
    assert!(!out.status.success(), "curl must fail under default deny");
    let dst = format!("dst={}", http.server.dst());
    sockd.wait_for_line(&["denied:", &dst, "rule=default"], LOG_TIMEOUT);

    let (rep, tag) = socks5_try(&sockd, echo.addr);
    assert_eq!(rep, 0x02, "default deny is REP 02");
    let dst = format!("dst={}", echo.dst());
    sockd.wait_for_line(&["denied:", &tag, "cmd=connect", &dst, "rule=default"], LOG_TIMEOUT);
    assert_eq!(echo.accepted(), 0);
    assert_eq!(http.server.accepted(), 0);
}

#[test]
fn empty_rule_file_denies_everything() {
    let echo = echo_server();
    let sockd = Sockd::start("# nothing permitted\n\n");
    let (cd, tag) = socks4_try(&sockd, echo.v4(), b"");
    assert_eq!(cd, 91);
    sockd.wait_for_line(&["denied:", &tag, "rule=default"], LOG_TIMEOUT);
    assert_eq!(echo.accepted(), 0);
}

#[test]
fn user_list_allows_only_named_socks4_userid() {
    let http = HttpServer::start();
    let echo = echo_server();
    let sockd =
        Sockd::start("permit *=alice,carol 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n");
    let proxy = sockd.addr().to_string();

    // curl sends the user name as SOCKS4 USERID.
    let mut cmd = curl_command();
    cmd.args(["--socks4", &proxy, "--proxy-user", "alice:"]).arg(http.url());
    let out = run_bounded(&mut cmd, None, Duration::from_secs(30));
    assert_curl_body(&out, &http.body, "curl --socks4 as alice", &sockd.log_text());
    let dst = format!("dst={}", http.server.dst());
    sockd.wait_for_line(&["connected:", "user=alice", &dst], LOG_TIMEOUT);

    let mut cmd = curl_command();
    cmd.args(["--socks4", &proxy, "--proxy-user", "bob:"]).arg(http.url());
    let out = run_bounded(&mut cmd, None, Duration::from_secs(30));
    assert!(!out.status.success(), "bob is not in the list");
    sockd.wait_for_line(&["denied:", "user=bob", &dst, "rule=default"], LOG_TIMEOUT);
    assert_eq!(http.server.accepted(), 1, "only alice's request reached the server");

    // Raw bytes: second list member, an empty userid, a prefix of a member.
    let (cd, _) = socks4_try(&sockd, echo.v4(), b"carol");
    assert_eq!(cd, 90, "carol is in the list");
    let (cd, tag) = socks4_try(&sockd, echo.v4(), b"");
    assert_eq!(cd, 91, "an empty userid is not in the list");
    sockd.wait_for_line(&["denied:", &tag, "rule=default"], LOG_TIMEOUT);
    let (cd, _) = socks4_try(&sockd, echo.v4(), b"alic");
    assert_eq!(cd, 91, "a prefix of a listed user is not that user");
    // SOCKS5 without authentication has no user name: not in the list.
    let (rep, tag) = socks5_try(&sockd, echo.addr);
    assert_eq!(rep, 0x02, "an anonymous SOCKS5 client is not alice");
    sockd.wait_for_line(&["denied:", &tag, "user=-"], LOG_TIMEOUT);
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn cisco_masks_are_inverted() {
    let echo = echo_server();
    // Line 1: destination mask 0.0.0.0 means exactly 127.0.0.2 -> does not match 127.0.0.1.
    // Line 2: destination mask 0.255.255.255 means any 127.x.y.z (loopback must be named), but
    // only port eq echo.
    let rules = format!(
        "permit 127.0.0.1 0.0.0.0 127.0.0.2 0.0.0.0\n\
         permit 127.0.0.1 0.0.0.0 127.9.9.9 0.255.255.255 eq {}\n",
        echo.port()
    );
    let sockd = Sockd::start(&rules);
    let (rep, tag) = socks5_try(&sockd, echo.addr);
    assert_eq!(rep, 0, "line 2 permits the echo port: log\n{}", sockd.log_text());
    sockd.wait_for_line(&["connected:", &tag], LOG_TIMEOUT);
    // Another port on 127.0.0.1 matches neither line.
    let other = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let (rep, tag) = socks5_try(&sockd, other);
    assert_eq!(rep, 0x02, "127.0.0.1:other is not permitted");
    sockd.wait_for_line(&["denied:", &tag, "rule=default"], LOG_TIMEOUT);
}

#[test]
fn cidr_and_port_operators() {
    let echo = echo_server();
    let other = echo_server();
    let rules = format!(
        "# CIDR form and the neq operator\n\
         deny 127.0.0.0/8 127.0.0.1/32 neq {}\n\
         permit 127.0.0.0/8 127.0.0.0/8\n",
        echo.port()
    );
    let sockd = Sockd::start(&rules);
    let (rep, tag) = socks5_try(&sockd, echo.addr);
    assert_eq!(rep, 0, "neq must not match the echo port: log\n{}", sockd.log_text());
    sockd.wait_for_line(&["connected:", &tag], LOG_TIMEOUT);
    let (rep, tag) = socks5_try(&sockd, other.addr);
    assert_eq!(rep, 0x02, "line 2 denies every other port");
    let rule = sockd.rule_tag(2);
    sockd.wait_for_line(&["denied:", &tag, &rule], LOG_TIMEOUT);
    assert_eq!(other.accepted(), 0);
}

#[test]
fn hosts_file_names_in_rules() {
    let echo = echo_server();
    let b = SockdBuilder::new(&format!(
        "permit 127.0.0.0 0.255.255.255 echo-box.test 0.0.0.0 eq {}\n",
        echo.port()
    ));
    let hosts = b.file(
        "hosts",
        "# test hosts\n127.0.0.1\techo-box.test echo-box\n127.0.0.3 other-box.test\n",
    );
    let sockd = b.arg("--hosts").arg(hosts).start();
    let (rep, tag) = socks5_try(&sockd, echo.addr);
    assert_eq!(rep, 0, "echo-box.test is 127.0.0.1 via --hosts; log\n{}", sockd.log_text());
    sockd.wait_for_line(&["connected:", &tag], LOG_TIMEOUT);
    let elsewhere = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 3), echo.port()));
    let (rep, tag) = socks5_try(&sockd, elsewhere);
    assert_eq!(rep, 0x02, "127.0.0.3 is not echo-box.test");
    sockd.wait_for_line(&["denied:", &tag, "rule=default"], LOG_TIMEOUT);
}

fn check(file: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new(sockd_bin());
    cmd.arg("--check").arg("-f").arg(file);
    run_bounded(&mut cmd, None, Duration::from_secs(10))
}

#[test]
fn check_prints_effective_rules() {
    let dir = TempDir::new("check-good");
    let file = dir.write(
        "sockd.conf",
        "# the paper's style\n\
         deny 10.1.2.3 0.0.0.0 0.0.0.0 255.255.255.255 eq 23\n\
         \n\
         permit *=alice,bob 10.0.0.0 0.255.255.255 192.168.0.0 0.0.255.255 ge 1024\n\
         permit 127.0.0.0/8 # comment after a rule\n\
         deny 0.0.0.0 255.255.255.255\n",
    );
    let out = check(&file);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "--check of a good file must exit 0 ({}); stderr:\n{stderr}",
        out.status
    );
    let lines: Vec<&str> =
        stdout.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let expect = [
        ("deny", vec!["10.1.2.3", "23"]),
        ("permit", vec!["alice", "bob", "10.0.0.0", "192.168.0.0", "1024"]),
        ("permit", vec!["127.0.0.0"]),
        ("deny", vec![]),
    ];
    assert!(
        lines.len() == expect.len()
            || (lines.len() == expect.len() + 1 && lines[expect.len()].contains("default")),
        "--check must print the 4 rules one per line; stdout:\n{stdout}"
    );
    for (i, (action, words)) in expect.iter().enumerate() {
        assert!(
            lines[i].starts_with(action),
            "rule {} must start with {action}: {:?}\nstdout:\n{stdout}",
            i + 1,
            lines[i]
        );
        for w in words {
            assert!(lines[i].contains(w), "rule {} must mention {w}: {:?}", i + 1, lines[i]);
        }
    }
}

#[test]
fn check_into_a_reader_that_stops_early_is_not_a_crash() {
    // `sockd --check | head -1`: the reader goes away after the first line.
    let dir = TempDir::new("check-pipe");
    let rules: String =
        (1..=5000).map(|i| format!("permit 10.{}.{}.0/24\n", i / 256, i % 256)).collect();
    let file = dir.write("sockd.conf", &rules);
    let mut cmd = Command::new("bash");
    cmd.args(["-c", "set -o pipefail; \"$0\" --check -f \"$1\" | head -c 16 >/dev/null"])
        .arg(sockd_bin())
        .arg(&file);
    let out = run_bounded(&mut cmd, None, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "sockd --check panicked on a closed pipe:\n{stderr}");
    assert!(out.status.success(), "--check of a good file exits 0 ({}):\n{stderr}", out.status);
}

#[test]
fn check_reports_file_line_and_token() {
    let dir = TempDir::new("check-bad");
    let cases = [
        (
            "bad-addr.conf",
            "# ok\npermit 127.0.0.0 0.255.255.255\npermit 300.1.2.3 0.0.0.0\n",
            3,
            "300.1.2.3",
        ),
        ("bad-action.conf", "permit 127.0.0.1 0.0.0.0\nallow 127.0.0.1 0.0.0.0\n", 2, "allow"),
        (
            "bad-op.conf",
            "\n\n\n\npermit 127.0.0.1 0.0.0.0 127.0.0.1 0.0.0.0 about 80\n",
            5,
            "about",
        ),
    ];
    for (name, text, line, token) in cases {
        let file = dir.write(name, text);
        let out = check(&file);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let all = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
        assert!(!out.status.success(), "--check of {name} must fail; output:\n{all}");
        let loc = format!("{}:{line}:", file.display());
        assert!(stderr.contains(&loc), "{name}: stderr must name {loc:?}; stderr:\n{stderr}");
        assert!(
            stderr.contains(token),
            "{name}: stderr must quote the token {token:?}; stderr:\n{stderr}"
        );
    }
}

#[test]
fn check_missing_file_fails() {
    let dir = TempDir::new("check-missing");
    let file = dir.path().join("does-not-exist.conf");
    let out = check(&file);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "--check of a missing file must fail");
    assert!(
        stderr.contains("does-not-exist.conf"),
        "the error must name the file; stderr:\n{stderr}"
    );
}

/// Beyond the letter of the contract: the daemon itself must refuse to start on a bad rule
/// file (a daemon running with half its rules would deny or permit the wrong things).
#[test]
fn daemon_refuses_bad_rule_file() {
    let dir = TempDir::new("bad-start");
    let file = dir.write("sockd.conf", "permit 127.0.0.1 0.0.0.0\npermitt 1.2.3.4 0.0.0.0\n");
    let mut cmd = Command::new(sockd_bin());
    cmd.arg("-f").arg(&file).args(["--listen", "127.0.0.1:0"]);
    let out = run_bounded(&mut cmd, None, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "sockd must exit non-zero; stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("{}:2:", file.display())),
        "the error names file and line; stderr:\n{stderr}"
    );
}
