//! socks.conf rules and failures, seen by a real program (the Python probe of
//! `socks_e2e::probe`, which reports the errno and how long connect took): `direct` (the
//! destination is then unreachable, so ENETUNREACH at once proves the connection really went
//! direct), `deny` (ECONNREFUSED at once, nothing reaches sockd), the server down, a server that
//! never answers (bounded by SOCKS_TIMEOUT), sockd refusing by its own rules (ECONNREFUSED), an
//! `@=` list whose first server is dead (refused, and a host that does not exist), a malformed
//! socks.conf (one error on stderr naming file and line, fail closed, loopback still works),
//! and no configuration at all (nothing changes, nothing printed).
//!
//! Not here: the programs themselves (programs.rs), other servers (interop.rs).

use std::net::SocketAddr;
use std::time::Duration;

use socks_e2e::*;

fn outside(port: u16) -> SocketAddr {
    SocketAddr::from((OUTSIDE_ADDR, port))
}

/// Asserts `outcome` is a connection through the proxy whose echo came back intact.
fn assert_connected(outcome: &probe::Outcome, dst: SocketAddr, ran: &Ran) {
    assert!(
        outcome.error.is_none() && outcome.echo_ok,
        "{dst} must be reached through the SOCKS server with its bytes intact: {outcome:?}\n{}",
        ran.describe()
    );
    assert_eq!(outcome.peer, Some(dst.to_string()), "getpeername of {dst}\n{}", ran.describe());
}

/// Asserts `outcome` failed with `errno` within `max_secs`.
fn assert_failed(outcome: &probe::Outcome, dst: SocketAddr, errno: &str, max_secs: f64, ran: &Ran) {
    assert_eq!(
        outcome.error.as_deref(),
        Some(errno),
        "connect to {dst} must fail with {errno}: {outcome:?}\n{}",
        ran.describe()
    );
    assert!(
        outcome.secs < max_secs,
        "connect to {dst} must fail within {max_secs}s, took {}s\n{}",
        outcome.secs,
        ran.describe()
    );
}

/// Asserts sockd logged nothing about `dst`.
fn assert_sockd_never_saw(sockd: &Daemon, dst: SocketAddr) {
    let lines = sockd.lines_with(&[&format!("dst={dst} ")]);
    assert!(lines.is_empty(), "sockd must not have seen {dst}: {lines:?}");
}

#[test]
fn direct_rule_goes_direct() {
    let Some(lab) = Lab::new("rule-direct") else { return };
    let (proxied, direct) = (lab.echo(7), lab.echo(9));
    let sockd = lab.sockd(PERMIT_INSIDE);
    let conf = lab.write(
        "socks.conf",
        "# the echo port through the firewall, the rest of that network direct\n\
         sockd @=192.0.2.1:1080 198.51.100.2/32 eq 7\n\
         direct 198.51.100.0 0.0.0.255\n",
    );
    let targets = [proxied.addr(), direct.addr()];
    let ran = lab
        .probe(&targets)
        .socksify(&["-v", "-c", &conf.display().to_string()])
        .env("SOCKS_TIMEOUT", "5")
        .run();
    ran.assert_success();
    let results = probe::results(&ran, &targets);
    assert_connected(&results[&proxied.addr()], proxied.addr(), &ran);
    // Direct: the workstation has no route there, so the kernel says so at once.
    assert_failed(&results[&direct.addr()], direct.addr(), "ENETUNREACH", 1.0, &ran);
    assert!(direct.accepted().is_empty(), "the direct destination must not be reached");
    assert_from_firewall(&proxied);
    assert_session(&sockd, proxied.addr(), None);
    assert_sockd_never_saw(&sockd, direct.addr());
}

#[test]
fn deny_rule_refuses_at_once() {
    let Some(lab) = Lab::new("rule-deny") else { return };
    let (allowed, denied) = (lab.echo(7), lab.echo(9));
    let sockd = lab.sockd(PERMIT_INSIDE);
    let conf = lab.write(
        "socks.conf",
        "deny 198.51.100.2/32 eq 9\n\
         sockd @=192.0.2.1:1080 0.0.0.0/0\n",
    );
    let targets = [denied.addr(), allowed.addr()];
    let ran = lab
        .probe(&targets)
        .env("SOCKS_CONF", conf.display().to_string())
        .env("SOCKS_LOG", "info")
        .env("SOCKS_TIMEOUT", "5")
        .ld_preload()
        .run();
    ran.assert_success();
    let results = probe::results(&ran, &targets);
    assert_failed(&results[&denied.addr()], denied.addr(), "ECONNREFUSED", 1.0, &ran);
    assert_connected(&results[&allowed.addr()], allowed.addr(), &ran);
    assert!(
        ran.stderr.contains(&format!("connect {}: denied by socks.conf", denied.addr())),
        "SOCKS_LOG=info must say why\n{}",
        ran.describe()
    );
    assert!(denied.accepted().is_empty(), "the denied destination must not be reached");
    assert_session(&sockd, allowed.addr(), None);
    assert_sockd_never_saw(&sockd, denied.addr());
}

#[test]
fn server_down_fails_fast() {
    let Some(lab) = Lab::new("server-down") else { return };
    let echo = lab.echo(7);
    // Nothing listens on 192.0.2.1:1080: the firewall host answers with a reset.
    let targets = [echo.addr()];
    let ran = lab
        .probe(&targets)
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_TIMEOUT", "5")
        .env("SOCKS_LOG", "info")
        .ld_preload()
        .timeout(Duration::from_secs(15))
        .run();
    ran.assert_success();
    let results = probe::results(&ran, &targets);
    assert_failed(&results[&echo.addr()], echo.addr(), "ECONNREFUSED", 2.0, &ran);
    assert!(echo.accepted().is_empty(), "nothing may reach the destination");
}

#[test]
fn silent_server_bounded_by_socks_timeout() {
    let Some(lab) = Lab::new("server-silent") else { return };
    let echo = lab.echo(7);
    // A "server" that accepts and never answers the greeting.
    let hang = lab.silent_in(Ns::Fw, SocketAddr::from((FW_INSIDE_ADDR, SOCKS_PORT)));
    let targets = [echo.addr()];
    let ran = lab
        .probe(&targets)
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_TIMEOUT", "2")
        .env("SOCKS_LOG", "info")
        .ld_preload()
        .timeout(Duration::from_secs(15))
        .run();
    ran.assert_success();
    let results = probe::results(&ran, &targets);
    let outcome = &results[&echo.addr()];
    assert_eq!(
        outcome.error.as_deref(),
        Some("ETIMEDOUT"),
        "a silent server must end in ETIMEDOUT: {outcome:?}\n{}",
        ran.describe()
    );
    assert!(
        (1.5..4.0).contains(&outcome.secs),
        "SOCKS_TIMEOUT=2 must bound the wait (took {}s)\n{}",
        outcome.secs,
        ran.describe()
    );
    assert_eq!(hang.accepted().len(), 1, "the library must have reached the silent server");
    assert!(echo.accepted().is_empty(), "nothing may reach the destination");
}

#[test]
fn server_refusing_by_rule() {
    let Some(lab) = Lab::new("server-refusing") else { return };
    let (allowed, refused) = (lab.echo(7), lab.echo(9));
    let sockd = lab.sockd(
        "# the inside network may go anywhere but the discard port\n\
         deny 192.0.2.0/24 198.51.100.2/32 eq 9\n\
         permit 192.0.2.0/24\n",
    );
    let targets = [refused.addr(), allowed.addr()];
    let ran = lab
        .probe(&targets)
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_TIMEOUT", "5")
        .env("SOCKS_LOG", "info")
        .ld_preload()
        .run();
    ran.assert_success();
    let results = probe::results(&ran, &targets);
    assert_failed(&results[&refused.addr()], refused.addr(), "ECONNREFUSED", 2.0, &ran);
    assert_connected(&results[&allowed.addr()], allowed.addr(), &ran);
    sockd.wait_line(
        &["denied:", "client=192.0.2.2:", &format!("dst={} ", refused.addr()), "sockd-1080.conf:2"],
        STARTUP,
    );
    assert!(refused.accepted().is_empty(), "the refused destination must not be reached");
    assert_session(&sockd, allowed.addr(), None);
}

/// `@=DEAD,192.0.2.1:1080`: both connections succeed via the second server; the second one
/// skips the dead server (it failed recently), so it is quick even when the first was not.
fn server_list_with_dead_first(name: &str, dead: &str, first_max_secs: f64) {
    let Some(lab) = Lab::new(name) else { return };
    let (one, two) = (lab.echo(7), lab.echo(9));
    let sockd = lab.sockd(PERMIT_INSIDE);
    let conf = lab.write("socks.conf", format!("sockd @={dead},192.0.2.1:1080 0.0.0.0/0\n"));
    let targets = [one.addr(), two.addr()];
    let ran = lab
        .probe(&targets)
        .socksify(&["-v", "-c", &conf.display().to_string()])
        .env("SOCKS_TIMEOUT", "8")
        .timeout(Duration::from_secs(25))
        .run();
    ran.assert_success();
    let results = probe::results(&ran, &targets);
    assert_connected(&results[&one.addr()], one.addr(), &ran);
    assert_connected(&results[&two.addr()], two.addr(), &ran);
    assert!(
        results[&one.addr()].secs < first_max_secs,
        "the first connection took {}s\n{}",
        results[&one.addr()].secs,
        ran.describe()
    );
    assert!(
        results[&two.addr()].secs < 1.0,
        "the dead server must be skipped for the second connection (took {}s)\n{}",
        results[&two.addr()].secs,
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("server {dead}:")),
        "SOCKS_LOG must mention the dead server\n{}",
        ran.describe()
    );
    for echo in [&one, &two] {
        assert!(ran.stderr.contains(&format!("connect {} via {SERVER}", echo.addr())));
        assert_session(&sockd, echo.addr(), None);
    }
}

#[test]
fn server_list_first_refuses() {
    // A closed port on the firewall: refused at once.
    server_list_with_dead_first("list-refused", "192.0.2.1:1081", 1.0);
}

#[test]
fn server_list_first_host_missing() {
    // An address on the inside network nobody has: ARP fails after about 3 s (EHOSTUNREACH).
    server_list_with_dead_first("list-missing", "192.0.2.9:1080", 6.0);
}

#[test]
fn malformed_conf_fails_closed_once() {
    let Some(lab) = Lab::new("conf-malformed") else { return };
    let echo = lab.echo(7);
    let local = lab.echo_in(Ns::Inside, "127.0.0.1:7".parse().expect("literal"));
    let sockd = lab.sockd(PERMIT_INSIDE);
    let conf = lab.write(
        "socks.conf",
        "# a typo on line 3\n\
         direct 127.0.0.0/8\n\
         sockd @=192.0.2.1:1080 0.0.0.0/0 eqq 80\n",
    );
    // Two proxied attempts and a loopback one; no SOCKS_LOG: the error is printed regardless.
    let targets = [echo.addr(), local.addr(), outside(80)];
    let ran = lab
        .probe(&targets)
        .socksify(&["-c", &conf.display().to_string()])
        .env("SOCKS_TIMEOUT", "5")
        .run();
    ran.assert_success();
    let results = probe::results(&ran, &targets);
    assert_failed(&results[&echo.addr()], echo.addr(), "ECONNREFUSED", 1.0, &ran);
    assert_failed(&results[&targets[2]], targets[2], "ECONNREFUSED", 1.0, &ran);
    assert_connected(&results[&local.addr()], local.addr(), &ran);
    let errors: Vec<&str> = ran.stderr.lines().filter(|l| l.contains("socks.conf")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line about the file\n{}", ran.describe());
    let where_ = format!("{}:3", conf.display());
    assert!(
        errors[0].starts_with("libsocks[") && errors[0].contains(&where_),
        "the error must name the file and line ({where_}): {}",
        errors[0]
    );
    assert_eq!(ran.stderr.lines().count(), 1, "nothing else on stderr\n{}", ran.describe());
    assert!(echo.accepted().is_empty(), "a broken config must not connect anywhere");
    assert!(
        !sockd.log().contains("connected:") && !sockd.log().contains("failed:"),
        "a broken config must not reach sockd either:\n{}",
        sockd.log()
    );
}

#[test]
fn no_config_changes_nothing() {
    let Some(lab) = Lab::new("conf-none") else { return };
    assert!(
        !std::path::Path::new("/etc/socks.conf").exists(),
        "this test needs a machine without /etc/socks.conf"
    );
    let echo = lab.echo(7);
    let local = lab.echo_in(Ns::Inside, "127.0.0.1:7".parse().expect("literal"));
    let sockd = lab.sockd(PERMIT_INSIDE);
    let targets = [local.addr(), echo.addr()];
    let plain = lab.probe(&targets).run();
    // socksify without -c or -s, and no SOCKS_* variable: the library has nothing to do.
    let preloaded = lab.probe(&targets).socksify(&[]).run();
    for ran in [&plain, &preloaded] {
        ran.assert_success();
        let results = probe::results(ran, &targets);
        assert_connected(&results[&local.addr()], local.addr(), ran);
        assert_failed(&results[&echo.addr()], echo.addr(), "ENETUNREACH", 1.0, ran);
    }
    assert_eq!(preloaded.stderr, "", "the library must print nothing\n{}", preloaded.describe());
    assert!(echo.accepted().is_empty());
    assert!(!sockd.log().contains("connected:"), "nothing may go through sockd:\n{}", sockd.log());
}
