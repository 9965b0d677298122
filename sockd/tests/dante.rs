//! Interoperability with Dante's client library (`socksify`, package dante-client): an
//! unmodified curl (no --socks flag) fetches through sockd, and inetutils `ftp` in ACTIVE mode
//! downloads a 2 MiB file from a vsftpd the test starts itself, the data connection going
//! through a SOCKS BIND on sockd. SOCKS4 and SOCKS5 each.
//!
//! Dante facts these tests rely on (Dante 1.4.2 as packaged by Debian 12):
//! - The client auto-adds DIRECT routes for the networks of every local interface, 127.0.0.0/8
//!   included, ahead of the configured routes, so by default loopback destinations are never
//!   proxied. `SOCKS_AUTOADD_LANROUTES=no` in the environment turns that off; only the direct
//!   route to the proxy's own address and port stays.
//! - socks.conf does not accept `;` between route keywords: one keyword per line.
//! - For BIND, Dante sends DST IP = the address of the process's last connect() (the ftp
//!   server). The DST port differs by version: SOCKS4 sends the control connection's port,
//!   SOCKS5 sends 0. The data connection comes from another port, so only the IP can be checked.
//!
//! Not here: raw BIND semantics (bind.rs).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n";

/// Write a Dante client config routing everything through sockd with `proxyprotocol`.
fn dante_conf(dir: &TempDir, sockd: &Sockd, proxyprotocol: &str) -> PathBuf {
    let debug =
        if std::env::var_os("SOCKD_TEST_DANTE_DEBUG").is_some() { "debug: 1\n" } else { "" };
    let port = sockd.addr().port();
    dir.write(
        &format!("socks-{proxyprotocol}.conf"),
        format!(
            "logoutput: stderr\n{debug}\
             route {{\n\
             \tfrom: 0.0.0.0/0 to: 0.0.0.0/0 via: 127.0.0.1 port = {port}\n\
             \tproxyprotocol: {proxyprotocol}\n\
             \tmethod: none\n\
             }}\n"
        ),
    )
}

/// `socksify PROGRAM` with the Dante config and loopback proxying enabled.
fn socksify(conf: &Path, program: &Path) -> Command {
    let socksify = require_program("socksify", "dante-client");
    let mut cmd = Command::new(socksify);
    cmd.arg(program).env("SOCKS_CONF", conf).env("SOCKS_AUTOADD_LANROUTES", "no");
    for v in [
        "SOCKS_SERVER",
        "SOCKS4_SERVER",
        "SOCKS5_SERVER",
        "SOCKS_USERNAME",
        "SOCKS_PASSWORD",
        "SOCKS_DEBUG",
        "SOCKS_LOGOUTPUT",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        cmd.env_remove(v);
    }
    cmd
}

#[test]
fn socksify_curl_connect() {
    let curl = require_program("curl", "curl");
    let http = HttpServer::start();
    let sockd = Sockd::start(RULES);
    let dir = TempDir::new("dante-curl");
    for (i, proto) in ["socks_v4", "socks_v5"].into_iter().enumerate() {
        let conf = dante_conf(&dir, &sockd, proto);
        let mut cmd = socksify(&conf, &curl);
        cmd.args(["-q", "-sS", "--max-time", "20", "--output", "-"]).arg(http.url());
        let out = run_bounded(&mut cmd, None, Duration::from_secs(30));
        assert_curl_body(&out, &http.body, &format!("socksify ({proto}) curl"), &sockd.log_text());
        let dst = format!("dst={}", http.server.dst());
        let deadline = Instant::now() + LOG_TIMEOUT;
        while sockd.count_lines(&["closed:", "cmd=connect", &dst]) < i + 1 {
            assert!(
                Instant::now() < deadline,
                "{proto}: sockd must relay curl's connection (Dante may have gone direct); \
                 log:\n{}",
                sockd.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(http.server.accepted(), 2);
    assert_eq!(sockd.count_lines(&["connected:", "cmd=connect"]), 2);
}

/// A vsftpd of our own: standalone, anonymous read-only, active mode only.
struct Vsftpd {
    child: Child,
    port: u16,
    log: PathBuf,
    output: LogLines,
}

impl Vsftpd {
    fn start(dir: &TempDir, file_name: &str, content: &[u8]) -> Vsftpd {
        let bin = require_program("vsftpd", "vsftpd");
        let anon = dir.path().join("anon");
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&anon).expect("anon root");
        std::fs::create_dir_all(&empty).expect("secure chroot dir");
        std::fs::write(anon.join(file_name), content).expect("ftp file");
        let port = free_port();
        let log = dir.path().join("vsftpd.log");
        let conf = dir.write(
            "vsftpd.conf",
            format!(
                "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
                 background=NO\nanonymous_enable=YES\nlocal_enable=NO\nwrite_enable=NO\n\
                 no_anon_password=YES\nanon_root={}\nsecure_chroot_dir={}\n\
                 seccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\n\
                 pasv_enable=NO\nport_enable=YES\nconnect_from_port_20=NO\n\
                 xferlog_enable=YES\nlog_ftp_protocol=YES\nxferlog_std_format=NO\n\
                 vsftpd_log_file={}\ndual_log_enable=NO\nsyslog_enable=NO\n",
                anon.display(),
                empty.display(),
                log.display()
            ),
        );
        let mut child = Command::new(bin)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vsftpd");
        let output = LogLines::capture(child.stderr.take().expect("piped"), "vsftpd");
        let _stdout = LogLines::capture(child.stdout.take().expect("piped"), "vsftpd stdout");
        let mut v = Vsftpd { child, port, log, output };
        v.wait_ready();
        v
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("vsftpd exited ({st}): {}", self.output.joined());
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vsftpd did not listen on {addr} within 10 s: {}",
                self.output.joined()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Vsftpd {
    fn drop(&mut self) {
        // Kill by PID (the Child handle), never by name.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The data port from vsftpd's protocol log line `PORT h1,h2,h3,h4,p1,p2`.
fn port_command_port(vsftpd_log: &str) -> Option<u16> {
    let at = vsftpd_log.find("PORT ")?;
    let nums: Vec<u16> = vsftpd_log[at + 5..]
        .split(|c: char| !c.is_ascii_digit() && c != ',')
        .next()?
        .split(',')
        .filter_map(|n| n.parse().ok())
        .collect();
    (nums.len() == 6).then(|| nums[4] * 256 + nums[5])
}

fn ftp_active_download(proxyprotocol: &str) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // vsftpd insists on starting as root (it drops to its own users itself).
        skip(&format!("socksify_ftp_active_mode ({proxyprotocol})"), "vsftpd needs root");
        return;
    }
    let ftp = require_program("ftp", "inetutils-ftp");
    let dir = TempDir::new("dante-ftp");
    let content = pseudo_random(2 * 1024 * 1024, 0xf7f7);
    let vsftpd = Vsftpd::start(&dir, "big.bin", &content);
    let sockd = Sockd::start(RULES);
    let conf = dante_conf(&dir, &sockd, proxyprotocol);
    let out_file = dir.path().join("downloaded.bin");
    let script = format!(
        "user anonymous test@example.invalid\nbinary\nget big.bin {}\nquit\n",
        out_file.display()
    );
    let mut cmd = socksify(&conf, &ftp);
    cmd.args(["-n", "-v", "127.0.0.1", &vsftpd.port.to_string()]);
    let out = run_bounded(&mut cmd, Some(script.as_bytes()), Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let context = format!(
        "ftp via socksify ({proxyprotocol})\n--- ftp stdout ---\n{stdout}\n--- ftp stderr ---\n{}\n\
         --- vsftpd log ---\n{}\n--- sockd log ---\n{}",
        tail(&stderr, 30),
        tail(&vsftpd.log_text(), 30),
        sockd.log_text()
    );
    let got = std::fs::read(&out_file).unwrap_or_default();
    assert_eq!(got.len(), content.len(), "downloaded size differs; {context}");
    assert!(got == content, "downloaded content differs; {context}");
    assert!(stdout.contains("226"), "ftp must report 226 Transfer complete; {context}");

    // The control connection went through sockd ...
    let ctl_dst = format!("dst=127.0.0.1:{}", vsftpd.port);
    sockd.wait_for_line(&["connected:", "cmd=connect", &ctl_dst], LOG_TIMEOUT);
    // ... and so did the data connection, as a BIND whose port the ftp client sent in PORT.
    let bind_line = sockd.wait_for_line(&["bind:", "for 127.0.0.1"], LOG_TIMEOUT);
    let bind_port = parse_bind_port(&bind_line)
        .unwrap_or_else(|| panic!("cannot parse the port of {bind_line:?}"));
    let vlog = vsftpd.log_text();
    let port_cmd = port_command_port(&vlog)
        .unwrap_or_else(|| panic!("vsftpd saw no PORT command (active mode); {context}"));
    assert_eq!(port_cmd, bind_port, "the PORT the server saw must be sockd's BIND port; {context}");
    sockd.wait_for_line(&["connected:", "cmd=bind"], LOG_TIMEOUT);
    let closed = sockd.wait_for_line(&["closed:", "cmd=bind"], LOG_TIMEOUT);
    assert!(
        line_matches(&closed, &["received=2097152"]),
        "the BIND session carried the file towards the client: {closed}"
    );
}

/// `bind: client=… listening on ADDR:PORT for HOST` -> PORT.
fn parse_bind_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let token = rest.split_whitespace().next()?;
    token.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
}

#[test]
fn socksify_ftp_active_mode_socks4() {
    ftp_active_download("socks_v4");
}

#[test]
fn socksify_ftp_active_mode_socks5() {
    ftp_active_download("socks_v5");
}
