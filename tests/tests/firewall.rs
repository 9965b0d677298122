//! The paper's scenario, end to end: a workstation (`inside`) with no route out and no name
//! server, a firewall host (`fw`, forwarding off) running sockd, and "the Internet"
//! (`outside`) running real daemons — vsftpd, fingerd and telnetd under openbsd-inetd, sshd, a
//! whois responder, an HTTP and an echo server. Unmodified clients on the workstation run under
//! `socksify` and each is checked for what it got, not just its exit status: ftp in ACTIVE mode
//! (PORT, through a SOCKS BIND) and PASSIVE mode downloading a multi-megabyte file byte for
//! byte, telnet in a scripted terminal session, finger, whois, ssh, curl and nc.
//!
//! sockd runs both ways: standalone, and started per connection by openbsd-inetd on the
//! firewall (`sockd --inetd`, logging to a file); ftp also runs over SOCKS4 and through Dante's
//! danted. A sockd.conf `deny` line makes curl fail at once, logged with its file and line.
//! Every scenario counts, with nftables in the workstation's namespace, the packets that leave
//! it: some must go to the SOCKS server (192.0.2.1:1080) and none anywhere else — no direct
//! connection attempt, no DNS query, nothing; one test shows the count does see such packets.
//!
//! Not here: the harness (`socks_e2e`), single programs without the leak check (programs.rs),
//! socks.conf rules (rules.rs).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use socks_e2e::build::build_c;
use socks_e2e::*;

/// The file the ftp tests download: a few megabytes of [`pattern`] bytes, an odd size.
const FTP_FILE_LEN: usize = 4 * 1024 * 1024 + 17;

/// `socksify` options: the firewall's sockd, and the library's decisions on stderr.
const SOCKSIFY: [&str; 3] = ["-v", "-s", SERVER];

fn outside(port: u16) -> SocketAddr {
    SocketAddr::from((OUTSIDE_ADDR, port))
}

/// The line SOCKS_LOG=info prints for a connection proxied through the firewall's sockd.
fn proxied(dst: SocketAddr) -> String {
    format!("connect {dst} via {SERVER} (socks5): ok")
}

/// sockd's log, wherever it goes: a standalone daemon's stderr or the file sockd writes under
/// inetd; or another SOCKS server's output, shown on failure but not parsed.
#[derive(Clone, Copy)]
enum SockdLog<'a> {
    Standalone(&'a Daemon),
    File(&'a LogFile),
    Foreign(&'a Daemon),
}

impl SockdLog<'_> {
    fn wait_line(&self, needles: &[&str]) -> String {
        match self {
            SockdLog::Standalone(daemon) => daemon.wait_line(needles, STARTUP),
            SockdLog::File(file) => file.wait_line(needles, STARTUP),
            SockdLog::Foreign(daemon) => panic!("{} is not sockd", daemon.name()),
        }
    }

    fn text(&self) -> String {
        match self {
            SockdLog::Standalone(daemon) | SockdLog::Foreign(daemon) => daemon.log(),
            SockdLog::File(file) => file.text(),
        }
    }

    /// A complete connect session from the workstation to `dst` (the `closed:` line).
    fn session(&self, dst: SocketAddr) -> String {
        let (client, dst) = (format!("client={INSIDE_ADDR}:"), format!("dst={dst} "));
        self.wait_line(&["connected:", &client, "cmd=connect", &dst]);
        self.wait_line(&["closed:", &client, "cmd=connect", &dst])
    }
}

/// The port of `ADDR:PORT` in `line` right after `marker`.
fn port_after(line: &str, marker: &str) -> Option<u16> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse::<SocketAddr>().ok().map(|a| a.port())
}

/// The address and port of the first `PORT h1,h2,h3,h4,p1,p2` command in vsftpd's log.
fn port_command(vsftpd_log: &str) -> Option<SocketAddr> {
    let at = vsftpd_log.find("\"PORT ")?;
    let nums: Vec<u8> = vsftpd_log[at + 6..]
        .split(|c: char| !c.is_ascii_digit() && c != ',')
        .next()?
        .split(',')
        .filter_map(|n| n.parse().ok())
        .collect();
    let [a, b, c, d, hi, lo] = nums[..] else { return None };
    Some(SocketAddr::from(([a, b, c, d], u16::from(hi) * 256 + u16::from(lo))))
}

/// The SOCKS server on the firewall an ftp run goes through.
#[derive(Clone, Copy)]
struct Via<'a> {
    /// `socksify -s` argument.
    server: &'a str,
    /// How the library names the protocol in its log (`socks5`, `socks4`).
    protocol: &'a str,
    /// The server's log.
    log: SockdLog<'a>,
}

impl<'a> Via<'a> {
    /// sockd at 192.0.2.1:1080 over SOCKS5, logging to `log`.
    fn sockd(log: SockdLog<'a>) -> Via<'a> {
        Via { server: SERVER, protocol: "socks5", log }
    }
}

/// inetutils-ftp under socksify: anonymous login, then `get` in active mode (the default) and
/// `get` after `passive`, of `big.bin` from the outside vsftpd. Asserts both copies are the
/// file byte for byte, that the library turned the data connection's bind into a SOCKS BIND,
/// that the server saw a PORT naming the firewall's outside address and a PASV, and (for
/// sockd) that sockd relayed the active transfer through a BIND (its listening port is the one
/// in PORT) and the passive one through a second CONNECT, each carrying the whole file.
fn ftp_active_and_passive(lab: &Lab, vsftpd: &Vsftpd, via: Via<'_>, content: &[u8]) {
    let sockd = via.log;
    let ftp = paths::require("inetutils-ftp", "inetutils-ftp");
    let (active, passive) = (lab.dir.path().join("active.bin"), lab.dir.path().join("passive.bin"));
    let script = format!(
        "user anonymous e2e@inside.test\nbinary\nget big.bin {}\npassive\nget big.bin {}\nquit\n",
        active.display(),
        passive.display()
    );
    let ran = lab
        .client(ftp)
        .args(["-n", "-v", &OUTSIDE_ADDR.to_string()])
        .stdin(script)
        .socksify(&["-v", "-s", via.server])
        .timeout(Duration::from_secs(60))
        .run();
    let context = || {
        format!(
            "{}\n--- vsftpd log ---\n{}\n--- SOCKS server log ---\n{}",
            ran.describe(),
            vsftpd.log.text(),
            sockd.text()
        )
    };
    assert!(ran.success(), "ftp failed\n{}", context());
    for (mode, file) in [("active", &active), ("passive", &passive)] {
        let got = std::fs::read(file).unwrap_or_default();
        assert!(
            got == content,
            "the {mode} download must be the {}-byte file byte for byte, got {} bytes\n{}",
            content.len(),
            got.len(),
            context()
        );
    }
    let stdout = ran.stdout_text();
    assert!(stdout.contains("Passive mode on"), "ftp must switch to passive\n{}", context());
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("226 ")).count(),
        2,
        "two transfers complete (226)\n{}",
        context()
    );
    assert!(
        ran.stderr.contains(&format!(
            "connect {} via {} ({}): ok",
            vsftpd.addr,
            via.server.rsplit("//").next().unwrap_or(via.server),
            via.protocol
        )),
        "the control connection goes through the SOCKS server\n{}",
        context()
    );
    assert!(
        ran.stderr.contains(&format!(
            "bind for {}: the server listens on {FW_OUTSIDE_ADDR}:",
            vsftpd.addr
        )),
        "the library must turn ftp's data-connection bind into a SOCKS BIND\n{}",
        context()
    );

    // The server's view: every command from the firewall; PORT named the firewall's outside
    // address (where sockd listened for the BIND), and a PASV followed.
    let log =
        vsftpd.log.wait_lines(&["OK DOWNLOAD", "big.bin", &content.len().to_string()], 2, STARTUP);
    assert!(log.iter().all(|l| l.contains(&format!("\"{FW_OUTSIDE_ADDR}\""))), "{log:?}");
    let vlog = vsftpd.log.text();
    assert!(
        !vlog.contains(&format!("\"{INSIDE_ADDR}\"")),
        "vsftpd must never see the workstation\n{}",
        context()
    );
    let port = port_command(&vlog).unwrap_or_else(|| panic!("vsftpd saw no PORT\n{}", context()));
    assert_eq!(port.ip(), std::net::IpAddr::V4(FW_OUTSIDE_ADDR), "PORT address\n{}", context());
    assert!(vlog.contains("\"PASV\""), "vsftpd saw no PASV\n{}", context());

    // sockd's view: the control connection, the BIND on the port PORT named, carrying the
    // file, and the passive data connection, carrying it too.
    if matches!(sockd, SockdLog::Foreign(_)) {
        return;
    }
    sockd.session(vsftpd.addr);
    let bind = sockd.wait_line(&["bind:", &format!("client={INSIDE_ADDR}:"), "cmd=bind"]);
    assert_eq!(
        port_after(&bind, "listening on "),
        Some(port.port()),
        "the PORT command must carry sockd's BIND port: {bind}\n{}",
        context()
    );
    let received = format!(" received={} ", content.len());
    sockd.wait_line(&["connected:", "cmd=bind"]);
    sockd.wait_line(&["closed:", "cmd=bind", &received]);
    let passive_data = sockd.wait_line(&["closed:", "cmd=connect", &received]);
    assert!(
        passive_data.contains(&format!("dst={OUTSIDE_ADDR}:")) && !passive_data.contains(":21 "),
        "the passive data connection is a CONNECT to vsftpd's data port: {passive_data}"
    );
}

#[test]
fn ftp_active_and_passive_through_sockd() {
    let Some(lab) = Lab::new("fw-ftp") else { return };
    let leaks = LeakCounter::install(&lab);
    let content = pattern(FTP_FILE_LEN);
    let vsftpd = lab.vsftpd(&[("big.bin", &content)]);
    let sockd = lab.sockd(PERMIT_INSIDE);
    ftp_active_and_passive(&lab, &vsftpd, Via::sockd(SockdLog::Standalone(&sockd)), &content);
    leaks.assert_only_sockd("ftp active and passive");
}

/// The same over SOCKS4, whose BIND reply may say 0.0.0.0 for "the server's address".
#[test]
fn ftp_active_and_passive_through_sockd_socks4() {
    let Some(lab) = Lab::new("fw-ftp4") else { return };
    let leaks = LeakCounter::install(&lab);
    let content = pattern(FTP_FILE_LEN);
    let vsftpd = lab.vsftpd(&[("big.bin", &content)]);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let via = Via {
        server: "socks4://192.0.2.1:1080",
        protocol: "socks4",
        log: SockdLog::Standalone(&sockd),
    };
    ftp_active_and_passive(&lab, &vsftpd, via, &content);
    leaks.assert_only_sockd("ftp active and passive over SOCKS4");
}

/// The same through Dante's danted: the library's BIND against another server.
#[test]
fn ftp_active_and_passive_through_danted() {
    let Some(lab) = Lab::new("fw-ftp-dante") else { return };
    let leaks = LeakCounter::install(&lab);
    let content = pattern(FTP_FILE_LEN);
    let vsftpd = lab.vsftpd(&[("big.bin", &content)]);
    let danted = lab.danted();
    let via = Via { server: SERVER, protocol: "socks5", log: SockdLog::Foreign(&danted) };
    ftp_active_and_passive(&lab, &vsftpd, via, &content);
    leaks.assert_only_sockd("ftp active and passive through danted");
}

/// A signal for the thread waiting in accept4 on a BIND socket ends the library's wait as it
/// ends the kernel's accept: the handler runs at once, then the accept goes on after a
/// SA_RESTART handler (the active download completes) and fails with EINTR after another one
/// (`tests/c/binds.c`, ftp mode, dynamically linked) SO_RCVTIMEO bounds the wait (EAGAIN), as it bounds the
/// kernel's accept.
#[test]
fn a_signal_ends_an_accept_on_a_bind_socket_as_the_kernels_would() {
    let Some(lab) = Lab::new("fw-ftpsig") else { return };
    let program = build_c(lab.dir.path(), "binds", &["-pthread"]);
    let content = pattern(FTP_FILE_LEN);
    let _vsftpd = lab.vsftpd(&[("big.bin", &content)]);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let run = |how: &str| {
        lab.client(&program)
            .args(["ftp", &OUTSIDE_ADDR.to_string(), "big.bin", how])
            .env("SOCKS_SERVER", SERVER)
            .ld_preload()
            .timeout(Duration::from_secs(20))
            .run()
    };
    let restarted = run("restart");
    restarted.assert_success();
    assert!(
        restarted.stdout == content && restarted.stderr.contains("handled=1"),
        "after a SA_RESTART handler that ran at once, accept4 goes on and the download \
         completes ({} of {} bytes)\n{}",
        restarted.stdout.len(),
        content.len(),
        restarted.describe()
    );
    sockd.wait_line(&["closed:", "cmd=bind", &format!(" received={} ", content.len())], STARTUP);
    let interrupted = run("interrupt");
    assert!(
        interrupted.status.and_then(|s| s.code()) == Some(3)
            && interrupted.stderr.contains("handled=1")
            && interrupted.stderr.contains("accept4=EINTR"),
        "without SA_RESTART the signal ends accept4 with EINTR\n{}",
        interrupted.describe()
    );
    let timed_out = run("timeout");
    assert!(
        timed_out.status.and_then(|s| s.code()) == Some(4)
            && timed_out.stderr.contains("accept4=EAGAIN"),
        "SO_RCVTIMEO bounds a blocking accept4: EAGAIN\n{}",
        timed_out.describe()
    );
}

/// The "shell" telnetd runs instead of login for the scripted session: a greeting, one line
/// read, an answer computed from it, and a last line awaited before it exits. (telnetd tears
/// the connection down as soon as its child exits, dropping output still in the terminal, so
/// the answer must not be the session's last word.)
const TELNET_SESSION: &str = "#!/bin/sh\n\
                              # socks-e2e: what telnetd runs instead of login\n\
                              echo \"outside session ready\"\n\
                              read -r a b\n\
                              echo \"product=$((a * b))\"\n\
                              read -r last\n";

#[test]
fn telnet_finger_whois_through_sockd() {
    let Some(lab) = Lab::new("fw-inetd") else { return };
    let leaks = LeakCounter::install(&lab);
    let session = lab.write("telnet-session.sh", TELNET_SESSION);
    std::fs::set_permissions(&session, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the session script");
    let (finger_addr, login_addr, session_addr) = (outside(79), outside(23), outside(2323));
    let _inetd = lab.inetd(
        Ns::Outside,
        "inetd-outside",
        &[
            inetd::fingerd(finger_addr),
            inetd::telnetd(login_addr, None),
            inetd::telnetd(session_addr, Some(&session)),
        ],
    );
    let whois = lab.whois();
    let sockd = lab.sockd(PERMIT_INSIDE);
    let log = SockdLog::Standalone(&sockd);

    // finger: a known user's entry, answered by fingerd on the outside host.
    let finger = lab
        .client(paths::require("finger", "finger"))
        .args([format!("root@{OUTSIDE_ADDR}")])
        .socksify(&SOCKSIFY)
        .run();
    finger.assert_success();
    let text = finger.stdout_text();
    assert!(
        text.contains("Login: root") && text.contains("Directory: /root"),
        "finger must show root's entry from the outside host\n{}",
        finger.describe()
    );
    assert!(finger.stderr.contains(&proxied(finger_addr)), "{}", finger.describe());
    log.session(finger_addr);

    // whois -h: the query arrives intact, the answer comes back whole.
    let query = "socks-e2e.example";
    let ran = lab
        .client(paths::require("whois", "whois"))
        .args(["-h", &OUTSIDE_ADDR.to_string(), query])
        .socksify(&SOCKSIFY)
        .run();
    ran.assert_success();
    assert!(
        ran.stdout_text().contains(&whois_answer(query)),
        "whois must print the responder's answer\n{}",
        ran.describe()
    );
    let exchanges = whois.wait_done(1, STARTUP);
    assert_eq!(exchanges[0].path.as_deref(), Some(query), "the query whois sent");
    assert_from_firewall(&whois);
    assert_session(&sockd, whois.addr(), Some(&exchanges[0]));

    // telnet to the real login: telnetd's banner and login's prompt arrive through the proxy.
    let telnet = paths::require("inetutils-telnet", "inetutils-telnet");
    let argv = |addr: SocketAddr| -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![paths::socksify().into()];
        argv.extend(SOCKSIFY.iter().map(OsString::from));
        argv.push(telnet.clone().into());
        argv.push(addr.ip().to_string().into());
        argv.push(addr.port().to_string().into());
        argv
    };
    let ran = lab
        .pty_session(
            &argv(login_addr),
            &[Step::Expect(&format!("Connected to {OUTSIDE_ADDR}")), Step::Expect("login: ")],
        )
        .env("SOCKS_LIBRARY", paths::libsocks().display().to_string())
        .run();
    ran.assert_success();
    assert!(ran.stdout_text().contains(&proxied(login_addr)), "{}", ran.describe());
    log.session(login_addr);

    // telnet, scripted: the far side greets, reads a line typed here, answers from it, and
    // ends the session after one more line; telnet sees the close and exits 0.
    let ran = lab
        .pty_session(
            &argv(session_addr),
            &[
                Step::Expect("outside session ready"),
                Step::Send("6 7\r"),
                Step::Expect("product=42"),
                Step::Send("bye\r"),
                Step::Eof,
            ],
        )
        .env("SOCKS_LIBRARY", paths::libsocks().display().to_string())
        .run();
    ran.assert_success();
    let transcript = ran.stdout_text();
    assert!(
        transcript.contains(&proxied(session_addr))
            && transcript.contains("Connection closed by foreign host")
            && transcript.contains("PTY: exit=0"),
        "the telnet session must go through sockd and end cleanly\n{}",
        ran.describe()
    );
    log.session(session_addr);

    leaks.assert_only_sockd("finger, whois and telnet");
}

#[test]
fn ssh_curl_nc_send_nothing_but_socks() {
    let Some(lab) = Lab::new("fw-ssh") else { return };
    let leaks = LeakCounter::install(&lab);
    let (sshd, key) = lab.sshd();
    let http = lab.http(80);
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);

    let target = format!("root@{OUTSIDE_ADDR}");
    let command = "echo $((6 * 7)) from $(cat /proc/sys/kernel/hostname)";
    let ran = lab.ssh(&key, &target, &[command]).socksify(&SOCKSIFY).run();
    assert!(
        ran.success() && ran.stdout_text().starts_with("42 from "),
        "ssh must run the command on the outside host\n{}\n--- sshd ---\n{}",
        ran.describe(),
        sshd.log()
    );
    sshd.wait_line(&[&format!("Accepted publickey for root from {FW_OUTSIDE_ADDR}")], STARTUP);
    assert_session(&sockd, outside(22), None);

    let url = format!("http://{}/bytes/2000000", http.addr());
    let ran = lab
        .client(paths::require("curl", "curl"))
        .args(["-sS", "--max-time", "20", &url])
        .socksify(&SOCKSIFY)
        .run();
    ran.assert_success();
    assert!(ran.stdout == http_body("/bytes/2000000"), "curl body\n{}", ran.describe());
    let exchanges = http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    assert_session(&sockd, http.addr(), Some(&exchanges[0]));

    let input = pattern(300_000);
    let ran = lab
        .client(paths::require("nc.openbsd", "netcat-openbsd"))
        .args(["-N", "-w", "10", &OUTSIDE_ADDR.to_string(), "7"])
        .stdin(input.clone())
        .socksify(&SOCKSIFY)
        .run();
    ran.assert_success();
    assert!(ran.stdout == input, "nc got {} bytes back\n{}", ran.stdout.len(), ran.describe());
    let exchanges = echo.wait_done(1, STARTUP);
    assert_from_firewall(&echo);
    assert_session(&sockd, echo.addr(), Some(&exchanges[0]));

    leaks.assert_only_sockd("ssh, curl and nc");
}

/// curl to `url` must fail at once with "couldn't connect" (exit 7).
fn assert_curl_refused(lab: &Lab, url: &str) -> Ran {
    let ran = lab
        .client(paths::require("curl", "curl"))
        .args(["-sS", "--max-time", "20", url])
        .socksify(&SOCKSIFY)
        .run();
    assert_eq!(
        ran.status.and_then(|s| s.code()),
        Some(7),
        "curl must fail to connect (exit 7)\n{}",
        ran.describe()
    );
    assert!(
        ran.elapsed < Duration::from_secs(3),
        "a denied destination must fail fast\n{}",
        ran.describe()
    );
    assert!(ran.stdout.is_empty(), "{}", ran.describe());
    ran
}

/// A sockd.conf with the paper's first-match rules: one outside port is off limits.
fn rules_denying(port: u16) -> String {
    format!(
        "# end-to-end tests: the outside web server's port {port} is off limits\n\
         deny 192.0.2.0/24 {OUTSIDE_ADDR}/32 eq {port}\n\
         permit 192.0.2.0/24\n"
    )
}

#[test]
fn denied_destination_fails_fast() {
    let Some(lab) = Lab::new("fw-denied") else { return };
    let leaks = LeakCounter::install(&lab);
    let (open, closed) = (lab.http(8080), lab.http(8081));
    let sockd = lab.sockd(&rules_denying(8081));
    let conf = lab.dir.path().join(format!("sockd-{SOCKS_PORT}.conf"));

    let ran = assert_curl_refused(&lab, &format!("http://{}/denied", closed.addr()));
    let denied = sockd.wait_line(
        &["denied:", &format!("client={INSIDE_ADDR}:"), &format!("dst={} ", closed.addr())],
        STARTUP,
    );
    assert!(
        denied.contains(&format!("rule={}:2", conf.display())),
        "the denial must name the rule file and line 2: {denied}\n{}",
        ran.describe()
    );
    assert!(closed.accepted().is_empty(), "the denied server must see nothing");

    // The same server's other port is allowed: the rule, not the network, said no.
    let ran = lab
        .client(paths::require("curl", "curl"))
        .args(["-sS", "--max-time", "20", &format!("http://{}/allowed", open.addr())])
        .socksify(&SOCKSIFY)
        .run();
    ran.assert_success();
    assert_eq!(ran.stdout, http_body("/allowed"), "{}", ran.describe());
    leaks.assert_only_sockd("a denied and an allowed curl");
}

#[test]
fn sockd_under_inetd_ftp_curl_and_denial() {
    let Some(lab) = Lab::new("fw-sockd-inetd") else { return };
    let leaks = LeakCounter::install(&lab);
    let content = pattern(FTP_FILE_LEN);
    let vsftpd = lab.vsftpd(&[("big.bin", &content)]);
    let http = lab.http(80);
    let denied_http = lab.http(8081);
    let sockd = lab.sockd_under_inetd(&rules_denying(8081));
    let log = SockdLog::File(&sockd.log);

    ftp_active_and_passive(&lab, &vsftpd, Via::sockd(log), &content);

    let url = format!("http://{}/bytes/1000000", http.addr());
    let ran = lab
        .client(paths::require("curl", "curl"))
        .args(["-sS", "--max-time", "20", &url])
        .socksify(&SOCKSIFY)
        .run();
    ran.assert_success();
    assert!(ran.stdout == http_body("/bytes/1000000"), "curl body\n{}", ran.describe());
    let exchanges = http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    let closed = log.session(http.addr());
    assert!(
        closed.contains(&format!(" sent={} ", exchanges[0].received))
            && closed.contains(&format!(" received={} ", exchanges[0].sent)),
        "the closed line carries the byte counts the server saw: {closed}"
    );

    let ran = assert_curl_refused(&lab, &format!("http://{}/denied", denied_http.addr()));
    let denied = log.wait_line(&["denied:", &format!("dst={} ", denied_http.addr())]);
    assert!(
        denied.contains(&format!("rule={}:2", sockd.conf.display())),
        "the denial must name the rule file and line 2: {denied}\n{}",
        ran.describe()
    );
    assert!(denied_http.accepted().is_empty(), "the denied server must see nothing");

    // inetd started one sockd per SOCKS connection: ftp control, BIND, passive data, curl,
    // denied curl.
    let started = sockd.inetd.lines_with(&["execv", &paths::sockd().display().to_string()]);
    assert!(started.len() >= 5, "inetd must have started sockd per connection: {started:?}");
    eprintln!("--- the log of sockd under inetd ---\n{}", sockd.log.text());
    leaks.assert_only_sockd("ftp and curl through sockd under inetd");
}

/// The leak check itself sees what it is there to see: a name lookup (a query to the dead name
/// server of inside's resolv.conf) and a direct connection attempt, made here without the
/// library, are both counted, with their destinations.
#[test]
fn leak_check_counts_dns_and_direct_packets() {
    let Some(lab) = Lab::new("fw-leak-check") else { return };
    let leaks = LeakCounter::install(&lab);
    let script = r#"
import socket
try:
    socket.getaddrinfo("leak-check.example", 80)
except OSError as e:
    print("lookup failed:", e)
s = socket.socket()
s.settimeout(3)
try:
    s.connect(("192.0.2.1", 22))
except OSError as e:
    print("connect failed:", e)
"#;
    let ran = lab.python(script).run();
    ran.assert_success();
    let counts = leaks.counts();
    let table = leaks.table();
    assert!(
        counts.leaked >= 2
            && table.contains(&format!("{DEAD_DNS_ADDR} . udp . 53"))
            && table.contains(&format!("{FW_INSIDE_ADDR} . tcp . 22")),
        "the leak check must count the DNS query and the direct SYN: {counts:?}
{table}
{}",
        ran.describe()
    );
}

/// The pieces of this file that are pure text handling.
#[test]
fn parses_vsftpd_port_and_sockd_bind_lines() {
    let log = "Mon Jan  1 FTP command: Client \"198.51.100.1\", \"PORT 198,51,100,1,163,133\"\n";
    assert_eq!(port_command(log), Some("198.51.100.1:41861".parse().unwrap()));
    let bind = "bind: client=192.0.2.2:1 user=- cmd=bind dst=198.51.100.2:21 listening on \
                198.51.100.1:41877 for 198.51.100.2:21";
    assert_eq!(port_after(bind, "listening on "), Some(41877));
    assert_eq!(port_command("nothing"), None);
}
