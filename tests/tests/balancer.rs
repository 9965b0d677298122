//! Two sockd behind a real HAProxy (issue 14), end to end: HAProxy in TCP mode on the firewall
//! (`fw`, 192.0.2.1:1080, where workstations expect sockd) in front of two sockd on the
//! firewall's loopback (127.0.0.1:1081 and :1082), each server line with `send-proxy-v2 check`,
//! and each sockd with `--accept-proxy-protocol 127.0.0.1 --udp-advertise 192.0.2.1`. The
//! workstation (`inside`, two addresses: 192.0.2.2 and 192.0.2.3) has no route out.
//!
//! Asserted: curl (its own SOCKS5) and curl under socksify reach the outside HTTP server through
//! the pair, and both nodes served some of them; a rule denying 192.0.2.3 and permitting the
//! rest of the LAN holds per real client address, though every connection reaches sockd from
//! HAProxy's 127.0.0.1; the logs name the real clients and the balancer; HAProxy's health checks
//! leave no error in the logs; dig under the library gets its answer through UDP ASSOCIATE,
//! its datagrams going straight to the advertised relay; after one sockd is killed and
//! HAProxy's check has noticed, no new connection is lost; active ftp's BIND through the pair
//! (the node listens on its own outside address); and the leak check: nothing left the
//! workstation except to 192.0.2.1.
//!
//! Not here: the header at every split, garbage, unlisted sources (sockd/tests/proxy_protocol.rs).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use socks_e2e::dns::{self, WWW};
use socks_e2e::*;

/// The workstation's second address, the one the rules deny.
const DENIED_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

/// HAProxy's health-check interval (and one failed check marks a server down).
const CHECK_INTERVAL: Duration = Duration::from_millis(300);

/// The nodes' rule file: the second workstation address is denied, the LAN permitted.
const RULES: &str = "# behind HAProxy: decided on the real client address\n\
                     deny 192.0.2.3/32\n\
                     permit 192.0.2.0/24\n";

/// One sockd node on the firewall's loopback, taking PROXY headers from HAProxy (127.0.0.1).
fn node(lab: &Lab, port: u16) -> Daemon {
    let conf = lab.write(&format!("sockd-{port}.conf"), RULES);
    let listen = format!("127.0.0.1:{port}");
    let sockd = Daemon::spawn(
        lab.ns(Ns::Fw),
        &format!("sockd:{port}"),
        &paths::sockd(),
        &[
            "-l",
            &listen,
            "-f",
            &conf.display().to_string(),
            "--connect-timeout",
            "5",
            "--accept-proxy-protocol",
            "127.0.0.1",
            "--udp-advertise",
            &FW_INSIDE_ADDR.to_string(),
            "--log-level",
            "debug",
        ],
    );
    sockd.wait_line(&["listening on", &listen], STARTUP);
    sockd
}

/// HAProxy in `fw` on 192.0.2.1:1080 in front of the two nodes, once it listens.
fn haproxy(lab: &Lab) -> Daemon {
    let program = paths::require("haproxy", "haproxy");
    let inter = CHECK_INTERVAL.as_millis();
    let config = format!(
        "global\n\
         \x20   maxconn 512\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 2s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         frontend socks\n\
         \x20   bind {FW_INSIDE_ADDR}:{SOCKS_PORT}\n\
         \x20   default_backend sockd\n\
         backend sockd\n\
         \x20   balance roundrobin\n\
         \x20   server s1 127.0.0.1:1081 send-proxy-v2 check inter {inter}ms fall 1 rise 1\n\
         \x20   server s2 127.0.0.1:1082 send-proxy-v2 check inter {inter}ms fall 1 rise 1\n"
    );
    let file = lab.write("haproxy.cfg", config);
    // -db: foreground, no daemon; -W would fork a master, which Daemon could not reap.
    let haproxy = Daemon::spawn(
        lab.ns(Ns::Fw),
        "haproxy",
        &program,
        &["-db", "-f", &file.display().to_string()],
    );
    let addr = std::net::SocketAddr::from((FW_INSIDE_ADDR, SOCKS_PORT));
    assert!(
        lab.net.wait_listener(Ns::Fw, addr, STARTUP),
        "haproxy did not listen on {addr}; its log:\n{}",
        haproxy.log()
    );
    haproxy
}

/// curl's own SOCKS5 through the balancer from workstation address `from`.
fn curl_from(lab: &Lab, curl: &PathBuf, from: Ipv4Addr, url: &str) -> Ran {
    lab.client(curl)
        .args(["-sS", "--max-time", "15", "--interface", &from.to_string()])
        .args(["--socks5", SERVER, url])
        .run()
}

#[test]
fn two_sockd_behind_haproxy_act_as_one_firewall() {
    let Some(lab) = Lab::new("balancer-haproxy") else { return };
    let curl = paths::require("curl", "curl");
    let dig = paths::require("dig", "dnsutils");
    lab.net.add_address(Ns::Inside, Ns::Fw, &format!("{DENIED_ADDR}/24"));
    let leaks = LeakCounter::install(&lab);
    let outside_dns = dns::outside_dns(&lab);
    let http = lab.http(80);
    let s1 = node(&lab, 1081);
    let s2 = node(&lab, 1082);
    let haproxy = haproxy(&lab);
    // Let the first checks pass.
    std::thread::sleep(CHECK_INTERVAL * 3);

    // curl with its own SOCKS5, and curl under socksify, through the balancer.
    let mut fetched = 0;
    for round in 0..3 {
        let url = format!("http://{}/bytes/{}", http.addr(), 1000 + round);
        let ran = curl_from(&lab, &curl, INSIDE_ADDR, &url);
        ran.assert_success();
        assert!(ran.stdout == http_body(&format!("/bytes/{}", 1000 + round)), "{}", ran.describe());
        let url = format!("http://{}/bytes/{}", http.addr(), 2000 + round);
        let ran = lab
            .client(&curl)
            .args(["-sS", "--max-time", "15", &url])
            .socksify(&["-v", "-s", SERVER])
            .run();
        ran.assert_success();
        assert!(ran.stdout == http_body(&format!("/bytes/{}", 2000 + round)), "{}", ran.describe());
        fetched += 2;
    }
    http.wait_done(fetched, STARTUP);
    assert_from_firewall(&http);
    // Both nodes served, each logging the real client and the balancer.
    for node in [&s1, &s2] {
        let lines = node.lines_with(&[
            "connected:",
            &format!("client={INSIDE_ADDR}:"),
            " balancer=127.0.0.1:",
        ]);
        assert!(!lines.is_empty(), "{} served no one; its log:\n{}", node.name(), node.log());
    }

    // The rule holds per real client: 192.0.2.3 denied, 192.0.2.2 permitted, alternately on
    // both nodes (round robin).
    for _ in 0..2 {
        let url = format!("http://{}/bytes/10", http.addr());
        let ran = curl_from(&lab, &curl, DENIED_ADDR, &url);
        assert!(!ran.success() && ran.stdout.is_empty(), "192.0.2.3 is denied\n{}", ran.describe());
        curl_from(&lab, &curl, INSIDE_ADDR, &url).assert_success();
    }
    let denied: Vec<String> = [&s1, &s2]
        .iter()
        .flat_map(|node| node.lines_with(&["denied:", &format!("client={DENIED_ADDR}:")]))
        .collect();
    assert_eq!(denied.len(), 2, "both denials logged under the real client: {denied:?}");
    for line in &denied {
        assert!(line.contains(" balancer=127.0.0.1:") && line.contains(".conf:2"), "{line}");
    }

    // UDP: dig under the library through the balancer; the relay is advertised as 192.0.2.1.
    let outside_server = format!("@{OUTSIDE_ADDR}");
    let ran = lab
        .client(&dig)
        // A real address's PTR: a question the library never answers itself.
        .args(["+short", "+time=3", "+tries=1", &outside_server, "-x", &OUTSIDE_ADDR.to_string()])
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .run();
    assert!(
        ran.success() && ran.stdout_text() == format!("{WWW}.\n"),
        "dig through the balancer must get its answer\n{}",
        ran.describe()
    );
    let udp: Vec<String> = [&s1, &s2]
        .iter()
        .flat_map(|node| {
            node.lines_with(&["udp:", &format!("client={INSIDE_ADDR}:"), "relay on 192.0.2.1:"])
        })
        .collect();
    assert_eq!(udp.len(), 1, "one association, relay advertised on 192.0.2.1: {udp:?}");
    assert!(udp[0].contains(" balancer=127.0.0.1:"), "{}", udp[0]);
    assert_eq!(outside_dns.queries_for(&dns::reverse_name(OUTSIDE_ADDR.into())).len(), 1);
    outside_dns.assert_asked_only_by_firewall();

    // HAProxy's checks: LOCAL headers (or a bare connect), never an error line.
    for node in [&s1, &s2] {
        let checks = node.lines_with(&["balancer=127.0.0.1:"]).into_iter().filter(|l| {
            l.contains("speaks for itself") || l.contains("closed without sending a PROXY header")
        });
        assert!(checks.count() > 0, "{} saw no health check:\n{}", node.name(), node.log());
        for bad in ["bad request", "timeout:", "evicted:"] {
            assert!(node.lines_with(&[bad]).is_empty(), "{}: {bad}\n{}", node.name(), node.log());
        }
    }

    // One node dies; once HAProxy's check has noticed, no new connection is lost.
    let served_by_s2 = s2.lines_with(&["connected:"]).len();
    drop(s1);
    std::thread::sleep(CHECK_INTERVAL * 6);
    for n in 0..6 {
        let url = format!("http://{}/bytes/{}", http.addr(), 3000 + n);
        let ran = curl_from(&lab, &curl, INSIDE_ADDR, &url);
        assert!(
            ran.success() && ran.stdout == http_body(&format!("/bytes/{}", 3000 + n)),
            "connection {n} after s1 died was lost\n{}\nhaproxy:\n{}",
            ran.describe(),
            haproxy.log()
        );
    }
    assert_eq!(s2.lines_with(&["connected:"]).len(), served_by_s2 + 6, "s2 took them all");

    leaks.assert_only_sockd_udp("curl, socksify and dig through HAProxy");
}

/// BIND through the balancer: ftp's active mode under socksify. The BIND request reaches one
/// node through HAProxy; that node listens on its own outside address (198.51.100.1, which the
/// FTP server reaches directly) and names it in its reply, so PORT carries it and vsftpd's
/// data connection goes straight to the node.
#[test]
fn active_ftp_binds_through_the_balancer() {
    let Some(lab) = Lab::new("balancer-ftp") else { return };
    let ftp = paths::require("inetutils-ftp", "inetutils-ftp");
    let leaks = LeakCounter::install(&lab);
    let content = pattern(300_000);
    let vsftpd = lab.vsftpd(&[("big.bin", &content)]);
    let s1 = node(&lab, 1081);
    let s2 = node(&lab, 1082);
    let _haproxy = haproxy(&lab);
    std::thread::sleep(CHECK_INTERVAL * 3);
    let active = lab.dir.path().join("active.bin");
    let script =
        format!("user anonymous e2e@inside.test\nbinary\nget big.bin {}\nquit\n", active.display());
    let ran = lab
        .client(ftp)
        .args(["-n", "-v", &OUTSIDE_ADDR.to_string()])
        .stdin(script)
        .socksify(&["-v", "-s", SERVER])
        .timeout(Duration::from_secs(60))
        .run();
    let logs = || format!("{}\ns1:\n{}\ns2:\n{}", ran.describe(), s1.log(), s2.log());
    assert!(ran.success(), "ftp failed\n{}", logs());
    assert!(std::fs::read(&active).unwrap_or_default() == content, "active download\n{}", logs());
    assert!(
        ran.stderr.contains(&format!(
            "bind for {}: the server listens on {FW_OUTSIDE_ADDR}:",
            vsftpd.addr
        )),
        "the data connection is a SOCKS BIND on the node's outside address\n{}",
        logs()
    );
    let binds: Vec<String> = [&s1, &s2]
        .iter()
        .flat_map(|node| node.lines_with(&["bind:", &format!("client={INSIDE_ADDR}:")]))
        .collect();
    assert_eq!(binds.len(), 1, "one BIND, logged under the real client: {binds:?}");
    assert!(binds[0].contains(" balancer=127.0.0.1:"), "{}", binds[0]);
    leaks.assert_only_sockd("active ftp through HAProxy");
}
