//! `--metrics` (issue 14): the real sockd on loopback with its metrics listener. A scrape passes
//! `promtool check metrics` (Debian's prometheus package); after a known mix of requests —
//! granted, denied by a rule line, refused by the destination, a bad request, a UDP association
//! with a fragment, a denied datagram and K datagrams, reloads that succeed and fail — every
//! counter equals what the test did; sessions running show in the gauge while they run and leave it when they end;
//! slow, garbage and huge requests to the metrics port neither stall sockd's SOCKS service nor
//! keep the metrics port from answering once they time out; under socket activation
//! (`systemd-socket-activate`) the metrics listener opens beside the passed socket; `--inetd`
//! with `--metrics` is refused.
//!
//! Not here: the meaning of each metric (sockd(8), METRICS) beyond what the values show.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// sockd with `--metrics 127.0.0.1:0` and `rules`; returns it and the metrics address.
fn start(rules: &str) -> (Sockd, SocketAddr) {
    start_with(SockdBuilder::new(rules))
}

fn start_with(builder: SockdBuilder) -> (Sockd, SocketAddr) {
    let sockd = builder.arg("--metrics").arg("127.0.0.1:0").start();
    let line = sockd.wait_for_log("metrics: serving http://", LOG_TIMEOUT);
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in `{line}`"));
    (sockd, addr)
}

/// An HTTP exchange: sends `request`, returns the status line and the body.
fn http(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut s = connect(addr);
    s.write_all(request).expect("write the HTTP request");
    let mut response = Vec::new();
    s.read_to_end(&mut response).expect("read the HTTP response to its end");
    let text = String::from_utf8(response).expect("the response is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    (status, body.to_string())
}

/// `GET /metrics`; asserts 200 and returns the exposition.
fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: sockd\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK", "scrape status; body:\n{body}");
    body
}

/// Both running gauges at zero.
const IDLE: [(&str, f64); 2] = [
    ("sockd_sessions_running{state=\"established\"}", 0.0),
    ("sockd_sessions_running{state=\"handshake\"}", 0.0),
];

/// Scrapes until every `(series, value)` holds or `LOG_TIMEOUT` passes; returns the last scrape.
fn scrape_until(addr: SocketAddr, expect: &[(&str, f64)]) -> String {
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        let text = scrape(addr);
        if expect.iter().all(|(series, v)| value(&text, series) == *v) || Instant::now() > deadline
        {
            return text;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the series `series` (name and labels exactly as rendered), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap_or_else(|_| panic!("`{series}` has value `{v}`")))
        .unwrap_or(0.0)
}

/// Asserts each `(series, expected)` pair, listing all mismatches at once.
fn assert_values(text: &str, expected: &[(&str, f64)], log: &str) {
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(series, want)| value(text, series) != *want)
        .map(|(series, want)| format!("{series}: want {want}, got {}", value(text, series)))
        .collect();
    assert!(wrong.is_empty(), "{}\nscrape:\n{text}\nsockd log:\n{log}", wrong.join("\n"));
}

/// A SOCKS5 UDP datagram to an IPv4 `dst`.
fn datagram(frag: u8, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let SocketAddr::V4(dst) = dst else { panic!("IPv4 only: {dst}") };
    let mut v = vec![0, 0, frag, 0x01];
    v.extend_from_slice(&dst.ip().octets());
    v.extend_from_slice(&dst.port().to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn a_scrape_passes_promtool() {
    let promtool = require_program("promtool", "prometheus");
    let (sockd, metrics) = start(
        "deny 0.0.0.0 255.255.255.255 127.0.0.1 0.0.0.0 eq 9\n\
         permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n",
    );
    let echo = echo_server();
    assert_served(&sockd, &echo);
    // A denial, so a label holding a file path is in the scrape.
    let mut s = connect(sockd.addr());
    socks5_noauth(&mut s);
    s.write_all(&socks5_request(CMD_CONNECT, SocketAddr::from(([127, 0, 0, 1], 9))))
        .expect("request");
    assert_eq!(read_socks5_reply(&mut s, "denied CONNECT").rep, 0x02);
    let text = scrape(metrics);
    assert!(text.contains(&format!("sockd_denials_total{{rule=\"{}:1\"}} 1", sockd.conf())));
    let output = run_bounded(
        Command::new(&promtool).args(["check", "metrics"]),
        Some(text.as_bytes()),
        Duration::from_secs(30),
    );
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics: {:?}\nstdout: {}\nstderr: {}\nscrape:\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let (status, _) = http(metrics, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (status, _) = http(metrics, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = http(metrics, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
}

#[test]
fn counters_equal_what_the_test_did() {
    let echo = echo_server();
    let udp_echo = UdpEcho::start();
    let closed_port = free_port();
    let denied = echo_server();
    let rules = format!(
        "# line 1\n\
         deny 127.0.0.1 0.0.0.0 127.0.0.1 0.0.0.0 eq {}\n\
         permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n",
        denied.port()
    );
    let (sockd, metrics) = start(&rules);
    let before = scrape(metrics);
    assert_values(
        &before,
        &[
            ("sockd_sessions_total{command=\"connect\",outcome=\"granted\"}", 0.0),
            ("sockd_reloads_total{result=\"ok\"}", 0.0),
            ("sockd_udp_dropped_total{reason=\"fragment\"}", 0.0),
            (&format!("sockd_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")), 1.0),
        ],
        &sockd.log_text(),
    );

    // Three granted CONNECTs, 1000 bytes each way.
    const GRANTED: usize = 3;
    for _ in 0..GRANTED {
        assert_served(&sockd, &echo);
    }
    // Two denied by the rule on line 2, one refused by the destination (nothing listens).
    for _ in 0..2 {
        let mut s = connect(sockd.addr());
        socks5_noauth(&mut s);
        s.write_all(&socks5_request(CMD_CONNECT, denied.addr)).expect("request");
        assert_eq!(read_socks5_reply(&mut s, "denied CONNECT").rep, 0x02);
    }
    let mut s = connect(sockd.addr());
    socks5_noauth(&mut s);
    s.write_all(&socks5_request(CMD_CONNECT, SocketAddr::from(([127, 0, 0, 1], closed_port))))
        .expect("request");
    assert_eq!(read_socks5_reply(&mut s, "CONNECT to a closed port").rep, 0x05);
    drop(s);
    // One bad request: a SOCKS version that does not exist.
    let mut bad = connect(sockd.addr());
    bad.write_all(&[0x07, 0x01, 0x00]).expect("garbage");
    expect_closed(&mut bad, Duration::from_secs(5), "bad request");
    sockd.wait_for_line(&["bad request:", &client_tag(&bad)], LOG_TIMEOUT);
    drop(bad);

    // One UDP association: K datagrams echoed, one fragment dropped.
    const K: usize = 4;
    const PAYLOAD: usize = 100;
    let mut control = connect(sockd.addr());
    socks5_noauth(&mut control);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("client UDP socket");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    control
        .write_all(&socks5_request(CMD_UDP_ASSOCIATE, socket.local_addr().expect("local")))
        .expect("UDP ASSOCIATE");
    let reply = read_socks5_reply(&mut control, "UDP ASSOCIATE reply");
    assert_eq!(reply.rep, 0, "UDP ASSOCIATE granted");
    // A fragment, and a datagram to the port line 2 denies, first: the echoes that follow
    // prove both were handled (one task, in order).
    socket.send_to(&datagram(1, udp_echo.addr, b"fragment"), reply.addr).expect("send");
    socket.send_to(&datagram(0, denied.addr, b"denied"), reply.addr).expect("send");
    let mut buf = [0u8; 2048];
    for i in 0..K {
        let payload = vec![i as u8; PAYLOAD];
        socket.send_to(&datagram(0, udp_echo.addr, &payload), reply.addr).expect("send");
        let (n, _) = socket.recv_from(&mut buf).expect("the echo comes back through the relay");
        assert_eq!(n, 10 + PAYLOAD);
    }
    let tag = client_tag(&control);
    drop(control);
    let closed = sockd.wait_for_line(&["closed:", &tag, "cmd=udp-associate"], LOG_TIMEOUT);
    assert!(closed.contains("dropped-fragments=1 dropped-denied=1"), "{closed}");

    // Reloads: one good, one broken file.
    sockd.signal(libc::SIGHUP);
    sockd.wait_for_log("reloaded", LOG_TIMEOUT);
    sockd.write_conf("permit nonsense\n");
    sockd.signal(libc::SIGHUP);
    sockd.wait_for_log("reload failed", LOG_TIMEOUT);

    // Refused clients are lingered on for a moment; wait until every task has ended.
    let text = scrape_until(metrics, &IDLE);
    let rule2 = format!("sockd_denials_total{{rule=\"{}:2\"}}", sockd.conf());
    let total = (GRANTED * 1000) as f64;
    let udp_bytes = (K * PAYLOAD) as f64;
    assert_values(
        &text,
        &[
            ("sockd_sessions_total{command=\"connect\",outcome=\"granted\"}", GRANTED as f64),
            ("sockd_sessions_total{command=\"connect\",outcome=\"denied\"}", 2.0),
            ("sockd_sessions_total{command=\"connect\",outcome=\"failed\"}", 1.0),
            ("sockd_session_failures_total{command=\"connect\",reply=\"connection_refused\"}", 1.0),
            ("sockd_sessions_total{command=\"none\",outcome=\"bad_request\"}", 1.0),
            ("sockd_sessions_total{command=\"udp\",outcome=\"granted\"}", 1.0),
            // Two CONNECTs and one UDP destination.
            (&rule2, 3.0),
            ("sockd_relayed_bytes_total{direction=\"sent\",transport=\"tcp\"}", total),
            ("sockd_relayed_bytes_total{direction=\"received\",transport=\"tcp\"}", total),
            ("sockd_relayed_bytes_total{direction=\"sent\",transport=\"udp\"}", udp_bytes),
            ("sockd_relayed_bytes_total{direction=\"received\",transport=\"udp\"}", udp_bytes),
            ("sockd_udp_datagrams_total{direction=\"sent\"}", K as f64),
            ("sockd_udp_datagrams_total{direction=\"received\"}", K as f64),
            ("sockd_udp_dropped_total{reason=\"fragment\"}", 1.0),
            ("sockd_udp_dropped_total{reason=\"denied\"}", 1.0),
            ("sockd_udp_dropped_total{reason=\"foreign\"}", 0.0),
            // Every request read: 3 granted + 2 denied + 1 failed + 1 UDP.
            ("sockd_handshake_seconds_count", 7.0),
            // Successful connects only.
            ("sockd_connect_seconds_count", GRANTED as f64),
            ("sockd_reloads_total{result=\"ok\"}", 1.0),
            ("sockd_reloads_total{result=\"failed\"}", 1.0),
            ("sockd_sessions_running{state=\"established\"}", 0.0),
            ("sockd_sessions_running{state=\"handshake\"}", 0.0),
        ],
        &sockd.log_text(),
    );
    // Descriptors: what /proc shows for sockd, give or take the scrape's own connection.
    let fds = value(&text, "sockd_open_fds");
    let seen = sockd.open_fds() as f64;
    assert!((fds - seen).abs() <= 2.0, "sockd_open_fds {fds}, /proc/PID/fd has {seen}");
}

#[test]
fn running_sessions_show_in_the_gauge() {
    let (sockd, metrics) = start("permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n");
    let echo = echo_server();
    let sessions: Vec<TcpStream> =
        (0..3).map(|_| socks5_connect(sockd.addr(), echo.addr)).collect();
    let handshakes: Vec<TcpStream> = (0..2).map(|_| connect(sockd.addr())).collect();
    // The handshakes are admitted once sockd accepts them: poll briefly.
    let expect = [
        ("sockd_sessions_running{state=\"established\"}", 3.0),
        ("sockd_sessions_running{state=\"handshake\"}", 2.0),
    ];
    let text = scrape_until(metrics, &expect);
    assert_values(&text, &expect, &sockd.log_text());
    for mut s in sessions {
        s.shutdown(Shutdown::Write).expect("shutdown");
        read_to_eof(&mut s, "echo end");
    }
    drop(handshakes);
    let text = scrape_until(metrics, &IDLE);
    assert_values(&text, &IDLE, &sockd.log_text());
}

#[test]
fn hostile_scrapers_stall_neither_sockd_nor_the_metrics_port() {
    let (mut sockd, metrics) = start("permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n");
    let echo = echo_server();
    // A huge request head: answered 431 (or cut off), never buffered whole.
    let mut huge = connect(metrics);
    let chunk = vec![b'a'; 64 * 1024];
    let started = Instant::now();
    let _ = huge.write_all(b"GET /metrics HTTP/1.1\r\nX: ");
    for _ in 0..16 {
        if huge.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = huge.shutdown(Shutdown::Write);
    let mut rest = Vec::new();
    let _ = huge.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(9), "the huge request was not cut off");
    let reply = String::from_utf8_lossy(&rest).to_string();
    // sockd answers 431 and closes; the kernel may turn the unread rest into a reset that
    // destroys the answer on its way, so an empty read is fine, another status is not.
    assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 431"), "{reply}");
    // Slowloris: more connections than scrapes served at once, each sending half a request.
    let slow: Vec<TcpStream> = (0..24)
        .map(|_| {
            let mut s = connect(metrics);
            s.write_all(b"GET /metr").expect("half a request");
            s
        })
        .collect();
    // The SOCKS service is untouched meanwhile, and quick.
    let started = Instant::now();
    assert_served(&sockd, &echo);
    assert!(started.elapsed() < Duration::from_secs(2), "SOCKS slowed: {:?}", started.elapsed());
    // A slow scraper is closed within the read timeout (5 s) and answered 408.
    let mut first = slow.into_iter().next().expect("one");
    let (bytes, closed) = expect_closed(&mut first, Duration::from_secs(8), "slowloris scraper");
    let reply = String::from_utf8_lossy(&bytes).to_string();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply} {closed:?}");
    // Garbage gets 400; afterwards scrapes work again.
    let (status, _) = http(metrics, b"\x05\x01\x00\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let mut s = connect(metrics);
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
        let mut response = Vec::new();
        let _ = s.read_to_end(&mut response);
        if response.starts_with(b"HTTP/1.1 200 OK") {
            break;
        }
        assert!(Instant::now() < deadline, "the metrics port does not answer after the flood");
        thread::sleep(Duration::from_millis(200));
    }
    sockd.assert_alive();
}

#[test]
fn inetd_mode_refuses_metrics() {
    let output = Command::new(sockd_bin())
        .args(["--inetd", "--metrics", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .expect("run sockd");
    assert!(!output.status.success(), "--inetd --metrics must fail");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--inetd") && stderr.contains("--metrics"), "{stderr}");
}

/// A child process killed and reaped on drop.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn metrics_under_socket_activation() {
    let activate = require_program("systemd-socket-activate", "systemd");
    let echo = echo_server();
    let dir = TempDir::new("metrics-activate");
    let conf = dir.write("sockd.conf", "permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n");
    let socks: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut cmd = Command::new(activate);
    cmd.arg("-l").arg(socks.to_string()).arg(sockd_bin()).arg("-f").arg(&conf);
    cmd.arg("--metrics").arg(metrics.to_string());
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = Reaped(cmd.spawn().expect("spawn systemd-socket-activate"));
    let log = LogLines::capture(child.0.stderr.take().expect("piped"), "activate");
    log.wait_for(&["Listening on"], LOG_TIMEOUT).expect("systemd-socket-activate listens");
    // The first client wakes sockd, which serves the passed socket and opens its own metrics
    // listener beside it.
    let mut s = socks5_connect(socks, echo.addr);
    assert_echo(&mut s, b"through the passed socket");
    drop(s);
    log.wait_for(&["metrics: serving"], LOG_TIMEOUT)
        .unwrap_or_else(|| panic!("no metrics listener; log:\n{}", log.joined()));
    let text = scrape_until(
        metrics,
        &[("sockd_sessions_total{command=\"connect\",outcome=\"granted\"}", 1.0)],
    );
    assert_values(
        &text,
        &[("sockd_sessions_total{command=\"connect\",outcome=\"granted\"}", 1.0)],
        &log.joined(),
    );
}
