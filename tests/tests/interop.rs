//! The same library through other SOCKS servers in `fw`: Dante's `danted` (SOCKS5, and SOCKS4
//! with `SOCKS_VERSION=4`) and `microsocks`, with curl and python3. These servers log in their
//! own formats, so the proof that traffic went through them is the topology: `inside` has no
//! route to `outside`, and the destination saw the connection come from the firewall's outside
//! address (danted's `tcp/connect` log line is checked too). The library's own `SOCKS_LOG=info`
//! line names the server and the protocol.
//!
//! Not here: our sockd (programs.rs), Dante's client against our sockd (sockd/tests/dante.rs).

use socks_e2e::*;

/// curl fetches a body through the server running in `fw`.
fn curl_through(lab: &Lab, version: &str, extra_env: &[(&str, &str)]) {
    let curl = paths::require("curl", "curl");
    let http = lab.http(80);
    let url = format!("http://{}/bytes/150001", http.addr());
    let mut client =
        lab.client(curl).args(["-sS", "--max-time", "20", &url]).socksify(&["-v", "-s", SERVER]);
    for (name, value) in extra_env {
        client = client.env(name, *value);
    }
    let ran = client.run();
    ran.assert_success();
    assert!(
        ran.stdout == http_body("/bytes/150001"),
        "curl got {} bytes, not the 150001-byte body\n{}",
        ran.stdout.len(),
        ran.describe()
    );
    let said = format!("connect {} via {SERVER} ({version}): ok", http.addr());
    assert!(ran.stderr.contains(&said), "expected `{said}`\n{}", ran.describe());
    let exchanges = http.wait_done(1, STARTUP);
    assert_eq!(exchanges[0].path.as_deref(), Some("/bytes/150001"));
    assert_from_firewall(&http);
}

/// python3 (blocking socket, LD_PRELOAD) round-trips bytes with an echo server through the
/// server in `fw`, and getpeername names the destination.
fn python_through(lab: &Lab, version: &str, extra_env: &[(&str, &str)]) {
    let echo = lab.echo(7);
    let targets = [echo.addr()];
    let mut client = lab
        .probe(&targets)
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_LOG", "info")
        .env("SOCKS_TIMEOUT", "5")
        .ld_preload();
    for (name, value) in extra_env {
        client = client.env(name, *value);
    }
    let ran = client.run();
    ran.assert_success();
    let outcome = &probe::results(&ran, &targets)[&echo.addr()];
    assert!(
        outcome.error.is_none() && outcome.echo_ok,
        "python through the server: {outcome:?}\n{}",
        ran.describe()
    );
    assert_eq!(outcome.peer, Some(echo.addr().to_string()), "getpeername\n{}", ran.describe());
    let said = format!("connect {} via {SERVER} ({version}): ok", echo.addr());
    assert!(ran.stderr.contains(&said), "expected `{said}`\n{}", ran.describe());
    let exchanges = echo.wait_done(1, STARTUP);
    assert_eq!(exchanges[0].received, exchanges[0].sent);
    assert_from_firewall(&echo);
}

/// danted's own log line for a relayed connection from the workstation to port `port` outside:
/// `pass(1): tcp/connect [: 192.0.2.2.PORT 192.0.2.1.1080 -> 198.51.100.1.PORT 198.51.100.2.7`.
fn assert_danted_relayed(danted: &Daemon, port: u16) {
    danted.wait_line(
        &["tcp/connect [: 192.0.2.2.", "-> 198.51.100.1.", &format!(" 198.51.100.2.{port}")],
        STARTUP,
    );
}

#[test]
fn curl_through_danted() {
    let Some(lab) = Lab::new("danted-curl") else { return };
    let danted = lab.danted();
    curl_through(&lab, "socks5", &[]);
    assert_danted_relayed(&danted, 80);
}

#[test]
fn python_through_danted() {
    let Some(lab) = Lab::new("danted-python") else { return };
    let danted = lab.danted();
    python_through(&lab, "socks5", &[]);
    assert_danted_relayed(&danted, 7);
}

#[test]
fn socks4_through_danted() {
    let Some(lab) = Lab::new("danted-socks4") else { return };
    let danted = lab.danted();
    python_through(&lab, "socks4", &[("SOCKS_VERSION", "4")]);
    curl_through(&lab, "socks4", &[("SOCKS_VERSION", "4")]);
    assert_danted_relayed(&danted, 7);
    assert_danted_relayed(&danted, 80);
}

#[test]
fn curl_through_microsocks() {
    let Some(lab) = Lab::new("microsocks-curl") else { return };
    let _microsocks = lab.microsocks();
    curl_through(&lab, "socks5", &[]);
}

#[test]
fn python_through_microsocks() {
    let Some(lab) = Lab::new("microsocks-python") else { return };
    let _microsocks = lab.microsocks();
    python_through(&lab, "socks5", &[]);
}
