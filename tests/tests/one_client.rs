//! The library and the supervisor read the configuration with one loader and decide with one
//! rule set (the `socks-client` crate, issue 12 "Shape"), so a dynamically linked program under
//! libsocks.so and a static one under socks-supervise, given the same socks.conf and the same
//! environment, must behave alike: a broken file is reported with the same message (same file,
//! line and reason) and fails closed in both, nothing leaving the workstation; `SOCKS_LOG`
//! written with spaces around its value (` info `) switches the same diagnostics on in both
//! (the supervisor's former copy of the loader did not trim it and printed nothing).
//!
//! Not here: each front end's own routing tests (rules.rs, names.rs, supervised.rs,
//! supervised_names.rs); the shared code's unit tests (client/src).

use std::path::PathBuf;

use socks_e2e::build::supervised_lab;
use socks_e2e::*;

/// Fetches `http://ADDR/` with Python's own socket, printing `ok` or `failed ERRNO`.
fn python_get(addr: std::net::SocketAddr) -> String {
    format!(
        r#"
import socket
try:
    s = socket.create_connection(("{ip}", {port}), timeout=10)
    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    print("ok" if s.recv(5) == b"HTTP/" else "short")
except OSError as e:
    print("failed", e.errno)
"#,
        ip = addr.ip(),
        port = addr.port()
    )
}

/// The static busybox (socksify runs it under the supervisor).
fn busybox() -> PathBuf {
    paths::require("busybox", "busybox-static")
}

#[test]
fn a_broken_conf_reads_the_same_and_fails_closed_under_both() {
    let Some(lab) = supervised_lab("one-client-broken") else { return };
    let busybox = busybox();
    let http = lab.http(80);
    let _sockd = lab.sockd(PERMIT_INSIDE);
    // Line 2 proxies without naming a server, and no SOCKS_SERVER is set.
    let conf = lab.write("socks.conf", "direct 10.0.0.0/8\nsockd 0.0.0.0/0\n");
    let conf = conf.display().to_string();
    let expected = format!(
        "configuration error: {conf}:2: `sockd` line without @=server and no SOCKS_SERVER set; \
         connections that are not local will be refused"
    );
    let leaks = LeakCounter::install(&lab);
    let library = lab.python(&python_get(http.addr())).socksify(&["-c", &conf]).run();
    assert_eq!(library.stdout_text(), "failed 111\n", "{}", library.describe());
    assert!(
        library.stderr.contains("libsocks[") && library.stderr.contains(&expected),
        "the library must say why, once\n{}",
        library.describe()
    );
    let url = format!("http://{}/", http.addr());
    let supervised =
        lab.client(busybox).args(["wget", "-q", "-O", "-", &url]).socksify(&["-c", &conf]).run();
    assert!(!supervised.success(), "{}", supervised.describe());
    assert!(
        supervised.stderr.contains(&format!("socks-supervise: {expected}")),
        "the supervisor must give the library's message\n{}",
        supervised.describe()
    );
    assert!(http.accepted().is_empty(), "the destination must see nothing");
    let counts = leaks.counts();
    assert!(
        counts.leaked == 0 && counts.to_sockd == 0,
        "a broken configuration must let nothing out: {counts:?}\n{}",
        leaks.table()
    );
}

#[test]
fn socks_log_with_spaces_means_the_same_to_both() {
    let Some(lab) = supervised_lab("one-client-log") else { return };
    let busybox = busybox();
    let http = lab.http(80);
    let _sockd = lab.sockd(PERMIT_INSIDE);
    let conf = lab.write("socks.conf", format!("sockd @={SERVER} 0.0.0.0/0\n"));
    let conf = conf.display().to_string();
    let line = format!("connect {} via {SERVER} (socks5): ok", http.addr());
    let library = lab
        .python(&python_get(http.addr()))
        .env("SOCKS_LOG", " info ")
        .socksify(&["-c", &conf])
        .run();
    assert_eq!(library.stdout_text(), "ok\n", "{}", library.describe());
    assert!(
        library.stderr.contains(&format!("]: {line}")),
        "SOCKS_LOG=' info ' must switch the library's lines on\n{}",
        library.describe()
    );
    let url = format!("http://{}/", http.addr());
    let supervised = lab
        .client(busybox)
        .args(["wget", "-q", "-O", "/dev/null", &url])
        .env("SOCKS_LOG", " info ")
        .socksify(&["-c", &conf])
        .run();
    assert!(supervised.success(), "{}", supervised.describe());
    assert!(
        supervised.stderr.contains("socks-supervise[") && supervised.stderr.contains(&line),
        "SOCKS_LOG=' info ' must switch the supervisor's lines on too\n{}",
        supervised.describe()
    );
}
