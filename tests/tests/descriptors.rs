//! Per-descriptor state tied to the socket, not its number (issue 11, item 9), end to end. A
//! proxied socket closed in a way the library does not see — `fclose(fdopen(s))`,
//! `syscall(SYS_close, s)` (libuv, hence node, closes sockets that way) — leaves its number free;
//! a new socket that gets the number and connects to a destination socks.conf sends through
//! sockd must go through sockd too, never direct, by address and by name. Likewise a proxied
//! socket whose connection was dissolved with connect(AF_UNSPEC) and that connects again.
//!
//! The workstation (`inside`) has no route out and no working resolver, and the leak counters
//! see every packet it sends: a direct connect shows as ENETUNREACH, as a leaked packet, or as
//! a missing session in sockd's log.
//!
//! Not here: descriptors copied or closed through libc (everywhere.rs,
//! `stress_descriptors_closed_and_reused`).

use std::net::SocketAddr;

use socks_e2e::dns::{self, OUTSIDE_ADDR6, WWW};
use socks_e2e::*;

/// Sessions sockd logged from the workstation to `dst` (`dst=` as sockd writes it).
fn sessions(sockd: &Daemon, dst: &str, count: usize) -> Vec<String> {
    let (client, dst) = (format!("client={INSIDE_ADDR}:"), format!("dst={dst} "));
    sockd.wait_lines(&["closed:", &client, "cmd=connect", &dst], count, STARTUP)
}

#[test]
fn a_number_reused_after_an_unseen_close_is_still_proxied() {
    let Some((lab, leaks, _dns, sockd)) = dns::names_lab("fd-reuse") else { return };
    let ns = lab.ns(Ns::Outside);
    let echo4 = servers::echo(ns, SocketAddr::from((OUTSIDE_ADDR, 7)));
    let echo6 = servers::echo(ns, SocketAddr::from((OUTSIDE_ADDR6, 7)));
    let by_address = echo4.addr().to_string();
    let by_name = format!("{WWW}:7");
    let ran = lab
        .client(env!("CARGO_BIN_EXE_reuse-connect"))
        .args([by_address.as_str(), by_name.as_str()])
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .run();
    ran.assert_success();
    let out = ran.stdout_text();
    for target in [&by_address, &by_name] {
        for way in ["fclose", "syscall", "unspec"] {
            let line = format!("{target} {way} reused=yes connect=ok echo=ok peer=ok\n");
            assert!(
                out.contains(&line),
                "after {way} closed a proxied socket behind the library's back, a new socket \
                 with the same number connecting to {target} must go through sockd (want \
                 `{}`; errno 101 = ENETUNREACH is a direct connect)\n{}",
                line.trim_end(),
                ran.describe()
            );
        }
    }
    // Two connects per way (the first and the new one), by address and by name.
    sessions(&sockd, &by_address, 6);
    sessions(&sockd, &by_name, 6);
    let accepted: Vec<_> = echo4.accepted().into_iter().chain(echo6.accepted()).collect();
    assert!(accepted.iter().all(|p| p.ip() != std::net::IpAddr::V4(INSIDE_ADDR)), "{accepted:?}");
    leaks.assert_only_sockd("connects on reused descriptor numbers");
}

#[test]
fn node_sequential_requests_all_go_through_sockd() {
    let Some((lab, leaks, _dns, sockd)) = dns::names_lab("fd-node") else { return };
    let http = lab.http(80);
    let ns = lab.ns(Ns::Outside);
    let http6 = servers::http(ns, SocketAddr::from((OUTSIDE_ADDR6, 80)));
    // libuv closes its sockets with syscall(SYS_close), which the library does not see: the
    // next socket gets the same number.
    let script = r#"
const http = require("http");
const hosts = process.argv.slice(1);
let done = 0;
async function get(host, i) {
  return new Promise((resolve) => {
    const req = http.get({ host, port: 80, path: `/n${i}`, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve(`${host} ${i} ${Buffer.concat(chunks).toString().trim()}`));
    });
    req.setTimeout(15000, () => { req.destroy(); resolve(`${host} ${i} timeout`); });
    req.on("error", (e) => resolve(`${host} ${i} error ${e.code}`));
  });
}
(async () => {
  for (const host of hosts) {
    for (let i = 0; i < 10; i++) console.log(await get(host, i));
  }
})();
"#;
    let ran = lab
        .client(paths::require("node", "nodejs"))
        .args(["-e", script, "--", &OUTSIDE_ADDR.to_string(), WWW])
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .run();
    ran.assert_success();
    let expected: String = [OUTSIDE_ADDR.to_string(), WWW.to_owned()]
        .iter()
        .flat_map(|host| (0..10).map(move |i| format!("{host} {i} hello from outside: /n{i}\n")))
        .collect();
    assert_eq!(
        ran.stdout_text(),
        expected,
        "ten sequential http.get calls by address and ten by name must all succeed\n{}",
        ran.describe()
    );
    sessions(&sockd, &format!("{OUTSIDE_ADDR}:80"), 10);
    sessions(&sockd, &format!("{WWW}:80"), 10);
    let fakes = sockd.lines_with(&["dst=198.1"]);
    assert!(fakes.is_empty(), "a fake address reached sockd: {fakes:?}");
    let accepted: Vec<_> = http.accepted().into_iter().chain(http6.accepted()).collect();
    assert_eq!(accepted.len(), 20, "{accepted:?}");
    leaks.assert_only_sockd("node, ten requests by address and ten by name");
}

#[test]
fn node_closing_a_udp_socket_ends_its_association() {
    let Some((lab, leaks, _dns, sockd)) = dns::names_lab("fd-node-dgram") else { return };
    let echo = lab.udp_echo(7);
    // libuv closes the socket with syscall(SYS_close); the process then lives on for 2 s. The
    // association's TCP control connection must end with the socket, not with the process.
    let script = format!(
        r#"
const dgram = require("dgram");
const s = dgram.createSocket("udp4");
const timer = setTimeout(() => {{ console.error("timeout"); process.exit(2); }}, 10000);
s.on("message", (msg) => {{
  console.log(`${{msg}}`);
  clearTimeout(timer);
  s.close(() => setTimeout(() => console.log("done"), 2000));
}});
s.send("hello", {port}, "{OUTSIDE_ADDR}");
"#,
        port = echo.addr().port()
    );
    let ran = lab
        .client(paths::require("node", "nodejs"))
        .args(["-e", &script])
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .run();
    ran.assert_success();
    assert_eq!(ran.stdout_text(), "hello\ndone\n", "{}", ran.describe());
    let closed = udp_sessions(&sockd, 1).remove(0);
    let secs: f64 = closed
        .split_whitespace()
        .find_map(|w| w.strip_prefix("secs="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no secs= in {closed}"));
    assert!(
        secs < 1.5,
        "the association must end when node closes its socket (syscall(SYS_close)), not when \
         the process exits 2 s later: {closed}\n{}",
        ran.describe()
    );
    leaks.assert_only_sockd_udp("node dgram closed");
}
