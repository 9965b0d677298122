//! `@=` lists that spread load (issue 14, the library's side): socks.conf's `?spread` after the
//! last server of a list makes each connection start at a different server. Several sockd on
//! the firewall (`fw`, 192.0.2.1:1080, :1081, :1082), an echo server outside, and real programs
//! inside: python3 under the library (one process making many connections, and many processes
//! making one each), the static C program `many` under the supervisor, and python3 under
//! `socksify --supervise`. Each sockd's `connected:` lines say which server got a connection.
//!
//! Asserted: one process (and one supervisor) goes round robin, so the shares are exact; many
//! processes start at random places, so each server gets a fair share (the bound is chosen so
//! chance cannot break it, see [`many_processes_spread_at_random`]), fork children of one
//! parent included; `SOCKS_LOG=debug` names the server each connection tried first (library
//! and supervisor, in the same words); without
//! `?spread` everything goes to the first server, as before; with a dead server in the list every
//! connection still succeeds, and within the retry window the dead one is tried once, not on
//! every connection (counted by an nftables counter of SYNs to its port in `inside`).
//!
//! Not here: the order function's own cases (client/src/order.rs), the syntax
//! (proto/src/rules/server_url.rs).

use std::process::Command;
use std::time::{Duration, Instant};

use socks_e2e::build::{build_static, supervised_lab};
use socks_e2e::*;

/// The ports of the sockd instances on the firewall.
const PORTS: [u16; 3] = [1080, 1081, 1082];

/// A port on the firewall where nothing listens: a dead server (connects get a reset).
const DEAD_PORT: u16 = 1089;

/// The echo server's port outside.
const ECHO_PORT: u16 = 7;

/// python3: `COUNT` echo round trips to the outside echo server, one connection each, in one
/// process; prints `ok=N`.
const ROUND_TRIPS: &str = r#"
import socket, sys
ok = 0
for i in range(int(sys.argv[1])):
    line = b"round %d\n" % i
    s = socket.create_connection(("198.51.100.2", 7), timeout=10)
    s.sendall(line)
    s.shutdown(socket.SHUT_WR)
    back = b""
    while True:
        d = s.recv(100)
        if not d:
            break
        back += d
    s.close()
    ok += back == line
print("ok=%d" % ok)
"#;

/// python3, after `ROUND` (the text of [`ROUND_TRIPS`]) is defined: one round trip of its own,
/// then 40 fork children making one each (each prints its `ok=1`).
const FORKS: &str = r#"
import os, sys
exec(ROUND)
sys.stdout.flush()
pids = []
for _ in range(40):
    pid = os.fork()
    if pid == 0:
        sys.argv[1] = "1"
        exec(ROUND)
        sys.stdout.flush()
        os._exit(0)
    pids.append(pid)
for p in pids:
    os.waitpid(p, 0)
"#;

/// A lab with an echo server outside and sockd on the first `servers` of [`PORTS`].
fn spread_lab(name: &str, servers: usize, supervised: bool) -> Option<(Lab, Server, Vec<Daemon>)> {
    let lab = if supervised { supervised_lab(name)? } else { Lab::new(name)? };
    let echo = lab.echo(ECHO_PORT);
    let sockds = PORTS[..servers].iter().map(|&port| lab.sockd_on(port, PERMIT_INSIDE)).collect();
    Some((lab, echo, sockds))
}

/// Writes socks.conf sending the outside network through `list` (an `@=` token).
fn conf(lab: &Lab, list: &str) -> String {
    let text = format!("# spread tests\nsockd {list} 198.51.100.0/24\n");
    lab.write("socks.conf", text).display().to_string()
}

/// `@=` with the servers on `ports` (192.0.2.1), and `?spread` when asked.
fn list(ports: &[u16], spread: bool) -> String {
    let servers: Vec<String> = ports.iter().map(|p| format!("{FW_INSIDE_ADDR}:{p}")).collect();
    format!("@={}{}", servers.join(","), if spread { "?spread" } else { "" })
}

/// How many CONNECT sessions each sockd logged, once they add up to `total` (or the wait ends).
fn shares(sockds: &[Daemon], total: usize) -> Vec<usize> {
    let deadline = Instant::now() + STARTUP;
    loop {
        let counts: Vec<usize> = sockds
            .iter()
            .map(|s| s.lines_with(&["connected:", "cmd=connect", "dst=198.51.100.2:7 "]).len())
            .collect();
        if counts.iter().sum::<usize>() >= total || Instant::now() > deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs python3's [`ROUND_TRIPS`] for `count` connections under the library with `conf`.
fn round_trips_preloaded(lab: &Lab, conf: &str, count: usize) -> Ran {
    lab.python(ROUND_TRIPS).args([count.to_string()]).env("SOCKS_CONF", conf).ld_preload().run()
}

/// An nftables counter in `inside` of the SYNs sent to the dead server's port.
struct SynCounter {
    ns: String,
}

impl SynCounter {
    fn install(lab: &Lab) -> SynCounter {
        let counter = SynCounter { ns: lab.ns(Ns::Inside).to_owned() };
        counter.nft(&["add", "table", "ip", "spread"]);
        counter.nft(&[
            "add",
            "chain",
            "ip",
            "spread",
            "out",
            "{ type filter hook output priority 0; policy accept; }",
        ]);
        let port = DEAD_PORT.to_string();
        let daddr = FW_INSIDE_ADDR.to_string();
        counter.nft(&[
            "add",
            "rule",
            "ip",
            "spread",
            "out",
            "ip",
            "daddr",
            &daddr,
            "tcp",
            "dport",
            &port,
            "tcp",
            "flags",
            "&",
            "(syn|ack)",
            "==",
            "syn",
            "counter",
        ]);
        counter
    }

    fn nft(&self, args: &[&str]) -> String {
        let nft = paths::require("nft", "nftables");
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(nft)
            .args(args)
            .output()
            .expect("ip netns exec nft runs");
        assert!(out.status.success(), "nft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The SYNs counted so far.
    fn syns(&self) -> u64 {
        let listing = self.nft(&["list", "chain", "ip", "spread", "out"]);
        let packets = listing
            .split("counter packets ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()));
        packets.unwrap_or_else(|| panic!("no counter in:\n{listing}"))
    }
}

/// One python3 process, 42 connections, three servers with `?spread`: round robin within the
/// process, so exactly 14 each (the start is random, the rotation is not).
#[test]
fn one_process_goes_round_robin() {
    let Some((lab, echo, sockds)) = spread_lab("spread-one-process", 3, false) else { return };
    let conf = conf(&lab, &list(&PORTS, true));
    let ran = round_trips_preloaded(&lab, &conf, 42);
    ran.assert_success();
    assert_eq!(ran.stdout_text(), "ok=42\n", "{}", ran.describe());
    echo.wait_done(42, STARTUP);
    assert_from_firewall(&echo);
    assert_eq!(shares(&sockds, 42), [14, 14, 14], "one process's connections go round robin");
}

/// `SOCKS_LOG=debug` says which server each connection tried first: three connections of one
/// process name the three servers, each once, as the first tried.
#[test]
fn the_debug_log_names_the_server_tried_first() {
    let Some((lab, echo, _sockds)) = spread_lab("spread-debug-log", 3, false) else { return };
    let conf = conf(&lab, &list(&PORTS, true));
    let ran = lab
        .python(ROUND_TRIPS)
        .args(["3"])
        .env("SOCKS_CONF", &conf)
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .run();
    assert_eq!(ran.stdout_text(), "ok=3\n", "{}", ran.describe());
    echo.wait_done(3, STARTUP);
    assert_each_tried_first_once(&ran);
}

/// The same under the supervisor (`socksify --supervise`, its debug log): the same wording,
/// and its round robin names each server first once.
#[test]
fn the_supervisors_debug_log_names_the_server_tried_first() {
    let Some((lab, echo, _sockds)) = spread_lab("spread-debug-log-sup", 3, true) else {
        return;
    };
    let conf = conf(&lab, &list(&PORTS, true));
    let ran = lab
        .python(ROUND_TRIPS)
        .args(["3"])
        .env("SOCKS_LOG", "debug")
        .socksify(&["--supervise", "-c", &conf])
        .run();
    assert_eq!(ran.stdout_text(), "ok=3\n", "{}", ran.describe());
    echo.wait_done(3, STARTUP);
    assert!(
        ran.stderr.lines().any(|l| l.starts_with("socks-supervise[")
            && l.contains(&format!("connect {OUTSIDE_ADDR}:{ECHO_PORT}: trying server"))),
        "the supervisor's own line, the library's wording\n{}",
        ran.describe()
    );
    assert_each_tried_first_once(&ran);
}

/// The debug log (`trying server ADDR first (spread)`) names each of the three servers as the
/// one tried first exactly once.
fn assert_each_tried_first_once(ran: &Ran) {
    let mut firsts: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.contains("trying server") && l.ends_with(" first (spread)"))
        .filter_map(|l| l.split("trying server ").nth(1)?.split(' ').next())
        .collect();
    firsts.sort_unstable();
    let expected: Vec<String> = PORTS.iter().map(|p| format!("{FW_INSIDE_ADDR}:{p}")).collect();
    assert_eq!(firsts, expected, "{}", ran.stderr);
}

/// Forty python3 processes, one connection each, two servers with `?spread`: each process
/// starts at a random server. Each must get at least 8 (20%): for a fair random choice the
/// chance that one gets 7 or fewer of 40 is 2 * P(Binomial(40, 1/2) <= 7) = 4.2e-5.
#[test]
fn many_processes_spread_at_random() {
    let Some((lab, echo, sockds)) = spread_lab("spread-many-processes", 2, false) else {
        return;
    };
    let conf = conf(&lab, &list(&PORTS[..2], true));
    for _ in 0..40 {
        let ran = round_trips_preloaded(&lab, &conf, 1);
        assert_eq!(ran.stdout_text(), "ok=1\n", "{}", ran.describe());
    }
    echo.wait_done(40, STARTUP);
    let shares = shares(&sockds, 40);
    assert_eq!(shares.iter().sum::<usize>(), 40, "{shares:?}");
    assert!(shares.iter().all(|&n| n >= 8), "each server gets a fair share: {shares:?}");
}

/// python3 forks 40 children after one connection of its own (so its round is drawn and
/// inherited); each child makes one connection. The children must not all take the parent's
/// next turn: each of two servers gets at least 8 of the 40, as for separate processes
/// (chance of failing with a fair random start: 4.2e-5, see above).
#[test]
fn fork_children_spread_too() {
    let Some((lab, echo, sockds)) = spread_lab("spread-fork", 2, false) else { return };
    let conf = conf(&lab, &list(&PORTS[..2], true));
    let forks = format!("ROUND = {ROUND_TRIPS:?}\n{FORKS}");
    let ran = lab.python(&forks).args(["1"]).env("SOCKS_CONF", &conf).ld_preload().run();
    // The children's lines may interleave: count them.
    assert_eq!(ran.stdout_text().matches("ok=1").count(), 41, "{}", ran.describe());
    echo.wait_done(41, STARTUP);
    let shares = shares(&sockds, 41);
    assert_eq!(shares.iter().sum::<usize>(), 41, "{shares:?}");
    assert!(shares.iter().all(|&n| n >= 8), "fork children spread: {shares:?}");
}

/// Without `?spread`: everything to the first server, as before.
#[test]
fn without_spread_all_go_to_the_first() {
    let Some((lab, echo, sockds)) = spread_lab("spread-off", 3, false) else { return };
    let conf = conf(&lab, &list(&PORTS, false));
    let ran = round_trips_preloaded(&lab, &conf, 12);
    assert_eq!(ran.stdout_text(), "ok=12\n", "{}", ran.describe());
    for _ in 0..4 {
        let ran = round_trips_preloaded(&lab, &conf, 1);
        assert_eq!(ran.stdout_text(), "ok=1\n", "{}", ran.describe());
    }
    echo.wait_done(16, STARTUP);
    assert_eq!(shares(&sockds, 16), [16, 0, 0]);
}

/// A dead server first in a `?spread` list of three: all 40 connections of one process
/// succeed, the two live servers share them, and the dead one is tried once in the retry
/// window (one SYN), not again on each connection whose turn would start there.
#[test]
fn a_dead_server_is_skipped_for_a_while() {
    let Some((lab, echo, sockds)) = spread_lab("spread-dead", 2, false) else { return };
    let syns = SynCounter::install(&lab);
    let conf = conf(&lab, &list(&[DEAD_PORT, PORTS[0], PORTS[1]], true));
    let ran = round_trips_preloaded(&lab, &conf, 40);
    assert_eq!(ran.stdout_text(), "ok=40\n", "{}", ran.describe());
    echo.wait_done(40, STARTUP);
    let shares = shares(&sockds, 40);
    assert_eq!(shares.iter().sum::<usize>(), 40, "{shares:?}");
    // Round robin over three until the dead one's first turn (within the first three
    // connections), then over the two live ones: 19 to 21 each.
    assert!(shares.iter().all(|&n| (19..=21).contains(&n)), "{shares:?}");
    assert_eq!(syns.syns(), 1, "the dead server is tried once, then skipped for a while");
    // Without `?spread`, a dead first server: each connection goes to the second, and a new
    // process (its own memory) tries the dead one once more.
    let conf = self::conf(&lab, &list(&[DEAD_PORT, PORTS[0]], false));
    let ran = round_trips_preloaded(&lab, &conf, 10);
    assert_eq!(ran.stdout_text(), "ok=10\n", "{}", ran.describe());
    assert_eq!(syns.syns(), 2, "one more process, one more try of the dead server");
    echo.wait_done(50, STARTUP);
    assert_eq!(self::shares(&sockds, 50)[0], shares[0] + 10);
}

/// The static program `many` (one thread, 42 connections) under the supervisor with a
/// `?spread` list of three: the supervisor walks the list the library's way, so round robin,
/// exactly 14 each.
#[test]
fn supervised_static_program_goes_round_robin() {
    let Some((lab, echo, sockds)) = spread_lab("spread-supervised", 3, true) else { return };
    let Some(many) = build_static(lab.name(), lab.dir.path(), "many") else { return };
    let conf = conf(&lab, &list(&PORTS, true));
    let ran = lab
        .client(&many)
        .args([OUTSIDE_ADDR.to_string(), ECHO_PORT.to_string(), "1".into(), "42".into()])
        .socksify(&["-c", &conf])
        .run();
    assert_eq!(ran.stdout_text(), "ok=42 failed=0\n", "{}", ran.describe());
    echo.wait_done(42, STARTUP);
    assert_eq!(shares(&sockds, 42), [14, 14, 14]);
}

/// Under `socksify --supervise`, forty python3 processes of one shell, one connection each,
/// and a dead server in the list: one supervisor serves them all, so it goes round robin over
/// all their connections (20 each) and remembers the dead server across them (one SYN).
#[test]
fn supervised_processes_share_the_round_and_the_memory() {
    let Some((lab, echo, sockds)) = spread_lab("spread-supervised-processes", 2, true) else {
        return;
    };
    let syns = SynCounter::install(&lab);
    let conf = conf(&lab, &list(&[PORTS[0], DEAD_PORT, PORTS[1]], true));
    let script = lab.write("round_trips.py", ROUND_TRIPS).display().to_string();
    let python = paths::require("python3", "python3").display().to_string();
    let loop_ = format!("for i in $(seq 40); do {python} {script} 1 || exit 1; done");
    let ran = lab
        .client("/bin/sh")
        .args(["-c", &loop_])
        .socksify(&["--supervise", "-c", &conf])
        .timeout(Duration::from_secs(120))
        .run();
    assert_eq!(ran.stdout_text(), "ok=1\n".repeat(40), "{}", ran.describe());
    echo.wait_done(40, STARTUP);
    let shares = shares(&sockds, 40);
    assert!(shares.iter().all(|&n| (19..=21).contains(&n)), "{shares:?}");
    assert_eq!(syns.syns(), 1, "the supervisor remembers the dead server across processes");
}
