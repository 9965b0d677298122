//! socks-bench: the project's performance benchmark (issue 6). On loopback only, in one run, it
//! starts our sockd, Dante's danted and microsocks with its own configs, measures relay
//! throughput, connection rate and latency (also against HAProxy forwarding the same cycle
//! without SOCKS, issue 17), memory per idle connection and server CPU time for each against
//! the direct path, then the preload libraries (libsocks.so, proxychains4,
//! Dante's libdsocks): start cost and connect cost through one shared sockd; then the
//! supervisor against the library (issue 12, `supervised`). It prints ratios, since absolute
//! numbers on a shared machine drift. It builds nothing: it runs target/release/sockd,
//! target/release/libsocks.so and target/release/socks-supervise (and a static build of
//! itself, if one was made).
//!
//! `socks-bench [--quick] [--only SECTION[,SECTION]]`, sections: throughput, connrate, memory,
//! library, supervisor, balancer (HAProxy alone vs HAProxy in front of sockd). `--client-mode`
//! and `--bulk-mode` are internal (the library and supervisor runs re-execute this binary).

mod balancer;
mod connrate;
mod idle;
mod library;
mod relay;
mod report;
mod servers;
mod socks5;
mod supervised;
mod sys;
mod targets;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use connrate::Cycle;
use library::row;
use report::{median, num, pct, times, Table};
use servers::{Kind, Server};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Throughput,
    Connrate,
    Memory,
    Library,
    Supervisor,
    Balancer,
}

/// Sizes of one run: `--quick` or full.
#[derive(Debug)]
struct Params {
    quick: bool,
    reps: usize,
    relay_dur: Duration,
    conn_dur: Duration,
    idle_conns: usize,
    idle_budget: Duration,
    start_runs: usize,
    client_iters: usize,
    client_runs: usize,
    /// Bulk transfers per variant and direction in the supervisor section, and their size.
    bulk_runs: usize,
    bulk_bytes: u64,
    /// The idle-connection count asked for, when the descriptor limit forced a smaller one.
    idle_limited: Option<usize>,
}

impl Params {
    fn new(quick: bool) -> Params {
        if quick {
            Params {
                quick,
                reps: 1,
                relay_dur: Duration::from_millis(400),
                conn_dur: Duration::from_millis(400),
                idle_conns: 1000,
                idle_budget: Duration::from_secs(20),
                start_runs: 100,
                client_iters: 300,
                client_runs: 3,
                bulk_runs: 3,
                bulk_bytes: 256 << 20,
                idle_limited: None,
            }
        } else {
            Params {
                quick,
                reps: 5,
                relay_dur: Duration::from_millis(1500),
                conn_dur: Duration::from_millis(1500),
                idle_conns: 10_000,
                idle_budget: Duration::from_secs(90),
                start_runs: 500,
                client_iters: 2000,
                client_runs: 5,
                bulk_runs: 5,
                bulk_bytes: 1 << 30,
                idle_limited: None,
            }
        }
    }
}

const USAGE: &str =
    "usage: socks-bench [--quick] [--only throughput|connrate|memory|library|supervisor|balancer[,...]]
  Runs on loopback only. Needs target/release/sockd, target/release/libsocks.so and
  target/release/socks-supervise (cargo build --release --workspace), and for the peers danted
  (dante-server), microsocks, proxychains4 and Dante's libdsocks (dante-client), and haproxy for
  the balancer section and the connection rate's HAProxy row. The supervisor section also times a static build of this benchmark if
  there is one (see docs/PERFORMANCE.md).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--holder-mode") {
        return match targets::holder_main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("socks-bench holder: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some("--bulk-mode") {
        return match supervised::bulk_main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("socks-bench bulk client: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some("--client-mode") {
        return match library::client_main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("socks-bench client: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut quick = false;
    let mut only: Option<Vec<Section>> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => {
                let Some(list) = it.next() else {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                };
                let mut sections = Vec::new();
                for name in list.split(',') {
                    sections.push(match name {
                        "throughput" | "relay" => Section::Throughput,
                        "connrate" | "conn" => Section::Connrate,
                        "memory" | "idle" => Section::Memory,
                        "library" | "lib" => Section::Library,
                        "supervisor" | "supervise" => Section::Supervisor,
                        "balancer" | "haproxy" => Section::Balancer,
                        "cpu" => Section::Throughput,
                        _ => {
                            eprintln!("socks-bench: unknown section `{name}`\n{USAGE}");
                            return ExitCode::from(2);
                        }
                    });
                }
                if list.split(',').any(|n| n == "cpu") {
                    sections.push(Section::Connrate);
                }
                only = Some(sections);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("socks-bench: unknown argument `{a}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let sections = only.unwrap_or_else(|| {
        vec![
            Section::Throughput,
            Section::Connrate,
            Section::Memory,
            Section::Library,
            Section::Supervisor,
            Section::Balancer,
        ]
    });
    match run(Params::new(quick), &sections) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("socks-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// target/release of the workspace (or $CARGO_TARGET_DIR/release).
fn release_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d).join("release"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("release"),
    }
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default().lines().next().unwrap_or("").to_string()
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Results collected for the final summaries.
#[derive(Debug, Default)]
struct Results {
    /// (server, config label) -> median Gbit/s
    relay: BTreeMap<(usize, usize), f64>,
    /// (server, config) -> median server cores used (CPU seconds / wall seconds)
    relay_cores: BTreeMap<(usize, usize), f64>,
    /// (server, clients index) -> (conn/s, p99 µs)
    conn: BTreeMap<(usize, usize), (f64, f64)>,
    /// server -> (KiB per connection, held, wanted)
    idle: BTreeMap<usize, (f64, usize, usize)>,
    start_ratio: Option<(f64, f64)>,
    supervisor: Option<supervised::Ratios>,
    direct_connect_ratio: Option<f64>,
    /// libsocks.so's p50 over proxychains4's, with and without `?pipeline`: (label, median of
    /// the runs' medians' ratio, lowest and highest ratio of one run).
    proxied_vs_proxychains: Vec<(&'static str, f64, f64, f64)>,
    proxied_vs_own: Option<f64>,
}

const RELAY_CONFIGS: [(relay::Dir, usize, &str); 4] = [
    (relay::Dir::Upload, 1, "1×up"),
    (relay::Dir::Download, 1, "1×down"),
    (relay::Dir::Upload, 4, "4×up"),
    (relay::Dir::Download, 4, "4×down"),
];
const CLIENTS: [usize; 2] = [1, 16];

fn run(p: Params, sections: &[Section]) -> Result<(), String> {
    let rel = release_dir();
    let sockd_bin = rel.join("sockd");
    let libsocks = rel.join("libsocks.so");
    for f in [&sockd_bin, &libsocks] {
        if !f.is_file() {
            return Err(format!(
                "{} is missing: build it first with `cargo build --release --workspace`",
                f.display()
            ));
        }
    }
    let sockd_bin = sockd_bin.canonicalize().unwrap_or(sockd_bin);
    let libsocks = libsocks.canonicalize().unwrap_or(libsocks);
    let t_start = Instant::now();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    println!("socks-bench — issue 6 benchmark, loopback only");
    println!("  date: {}", now_utc());
    println!(
        "  machine: {cpus} CPUs ({model}), Linux {}, load average at start: {}",
        first_line("/proc/sys/kernel/osrelease"),
        first_line("/proc/loadavg")
    );
    println!(
        "  mode: {} ({} run(s) per figure, median; relay {:?} per run, connection rate {:?} per \
         run, {} idle connections)",
        if p.quick { "--quick" } else { "full" },
        p.reps,
        p.relay_dur,
        p.conn_dur,
        p.idle_conns
    );
    let wanted_fds =
        if sections.contains(&Section::Memory) { 2 * p.idle_conns as u64 + 1024 } else { 4096 };
    let ((soft, _), note) = sys::raise_nofile(wanted_fds);
    println!("  {note}");
    let mut p = p;
    if sections.contains(&Section::Memory) && soft < wanted_fds {
        // A relayed session holds two descriptors in the server (client and destination);
        // 32 more for its listener, log, epoll and the like.
        let fit = (soft.saturating_sub(32) / 2) as usize;
        if fit < p.idle_conns {
            println!(
                "  NOTE: {} idle sessions need 2 × {} + a few descriptors in one server process, \
                 more than the limit of {soft} allows (the hard limit cannot be raised here): the \
                 memory test holds {fit} instead",
                p.idle_conns, p.idle_conns
            );
            p.idle_limited = Some(p.idle_conns);
            p.idle_conns = fit;
        }
    }

    let dir = std::env::temp_dir().join(format!("socks-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let outcome = run_sections(&p, sections, &dir, &sockd_bin, &libsocks);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\n  finished in {:.0} s; load average at end: {}",
        t_start.elapsed().as_secs_f64(),
        first_line("/proc/loadavg")
    );
    outcome
}

fn run_sections(
    p: &Params,
    sections: &[Section],
    dir: &Path,
    sockd_bin: &Path,
    libsocks: &Path,
) -> Result<(), String> {
    let needs_peers = sections
        .iter()
        .any(|s| !matches!(s, Section::Library | Section::Supervisor | Section::Balancer));
    let mut servers = vec![Server::direct()];
    let sockd = Server::sockd(sockd_bin, dir)?;
    servers.push(sockd);
    if needs_peers {
        for start in [Server::danted as fn(&Path) -> Result<Server, String>, Server::microsocks] {
            match start(dir) {
                Ok(s) => servers.push(s),
                Err(e) => println!("  SKIPPED a peer: {e}"),
            }
        }
    }
    println!("  servers (each on 127.0.0.1, started by this program, stopped by PID at the end):");
    for s in &servers {
        if let (Some(addr), Some(pid)) = (s.addr, s.pid()) {
            println!("    {:<10} pid {pid:<7} {addr}  {}", s.kind.name(), s.version);
        }
    }
    let mut res = Results::default();
    let lo: IpAddr = [127, 0, 0, 1].into();

    if sections.contains(&Section::Throughput) {
        throughput(p, &servers, lo, &mut res)?;
    }
    if sections.contains(&Section::Connrate) {
        connrate(p, &servers, lo, dir, &mut res)?;
    }
    if sections.contains(&Section::Memory) {
        memory(p, &servers, &mut res)?;
    }
    if needs_peers {
        peers_summary(&servers, &res);
    }
    if sections.contains(&Section::Library) {
        library(p, &servers[1], dir, libsocks, &mut res)?;
    }
    if sections.contains(&Section::Supervisor) {
        // Without the supervisor (not built, or no seccomp user notification here) the other
        // sections' figures and targets still stand.
        if let Err(e) = supervisor(p, &servers[1], dir, libsocks, &mut res) {
            println!("\n  SKIPPED the supervisor section: {e}");
        }
    }
    if sections.contains(&Section::Balancer) {
        balancer::run(p.reps, p.conn_dur, dir, sockd_bin)?;
    }
    targets_summary(p, &servers, &res);
    for s in &mut servers {
        s.stop();
    }
    Ok(())
}

fn throughput(p: &Params, servers: &[Server], lo: IpAddr, res: &mut Results) -> Result<(), String> {
    println!(
        "\n== Relay throughput: Gbit/s, median of {} × {:?}; (% of direct) ==",
        p.reps, p.relay_dur
    );
    println!(
        "  SOCKS5 CONNECT by the benchmark's client to a sink/source on 127.0.0.1; upload counts \
         what the sink received by the client's half-close, download what the client read."
    );
    let sink = targets::Sink::start(lo).map_err(|e| format!("sink: {e}"))?;
    // runs[server][config] = list of runs
    let mut runs: Vec<Vec<Vec<relay::Run>>> = vec![vec![Vec::new(); 4]; servers.len()];
    let mut failures = Vec::new();
    for _ in 0..p.reps {
        for (c, (d, streams, label)) in RELAY_CONFIGS.iter().enumerate() {
            for (i, s) in servers.iter().enumerate() {
                match relay::run(s, &sink, *d, *streams, p.relay_dur) {
                    Ok(r) => runs[i][c].push(r),
                    Err(e) => failures.push(format!("{} {label}: {e}", s.kind.name())),
                }
            }
        }
    }
    let mut header = vec!["server"];
    header.extend(RELAY_CONFIGS.iter().map(|c| c.2));
    header.extend(["streams verified", "half-close relayed"]);
    let mut t = Table::new(&header);
    let gbps = |i: usize, c: usize| median(&runs[i][c].iter().map(|r| r.gbps).collect::<Vec<_>>());
    for (i, s) in servers.iter().enumerate() {
        let mut row = vec![s.kind.name().to_string()];
        for c in 0..4 {
            let g = gbps(i, c);
            res.relay.insert((i, c), g);
            row.push(if i == 0 {
                num(g, 2)
            } else {
                format!("{} ({})", num(g, 2), pct(g, gbps(0, c)))
            });
        }
        let ok: usize = runs[i].iter().flatten().map(|r| r.verified).sum();
        let expected: usize =
            runs[i].iter().enumerate().map(|(c, rs)| rs.len() * RELAY_CONFIGS[c].1).sum();
        row.push(format!("{ok}/{expected}"));
        let (hc, ups): (usize, usize) = runs[i]
            .iter()
            .enumerate()
            .flat_map(|(c, rs)| rs.iter().map(move |r| (r, RELAY_CONFIGS[c].1)))
            .filter_map(|(r, n)| r.half_closed.map(|h| (h, n)))
            .fold((0, 0), |(a, b), (h, n)| (a + h, b + n));
        row.push(format!("{hc}/{ups}"));
        t.row(row);
    }
    t.print();
    println!(
        "  verified = streams whose far end at the sink was, mid-run, a socket held by the server's \
         processes (direct: by this program); half-close relayed = upload streams that got the \
         sink's reply after shutdown(SHUT_WR) (throughput counts what the sink received either way)"
    );

    println!("\n== Server CPU time while relaying (utime+stime of the server's processes, children included) ==");
    let mut header = vec!["server"];
    let labels: Vec<String> = RELAY_CONFIGS.iter().map(|c| format!("s/GiB {}", c.2)).collect();
    header.extend(labels.iter().map(String::as_str));
    header.extend(["cores 4×up", "cores 4×down"]);
    let mut t = Table::new(&header);
    for (i, s) in servers.iter().enumerate().skip(1) {
        let mut row = vec![s.kind.name().to_string()];
        for config in &runs[i] {
            let per_gib: Vec<f64> = config
                .iter()
                .map(|r| r.cpu_secs / (r.bytes as f64 / (1u64 << 30) as f64))
                .collect();
            row.push(num(median(&per_gib), 3));
        }
        for (c, config) in runs[i].iter().enumerate().skip(2) {
            let cores = median(&config.iter().map(|r| r.cpu_secs / r.wall).collect::<Vec<_>>());
            res.relay_cores.insert((i, c), cores);
            row.push(num(cores, 2));
        }
        t.row(row);
    }
    t.print();
    println!(
        "  cores = server CPU seconds per wall second during the 4-stream runs (the machine has \
         {} CPUs, shared with the client and the sink)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    for f in &failures {
        println!("  FAILED: {f}");
    }
    Ok(())
}

fn connrate(
    p: &Params,
    servers: &[Server],
    lo: IpAddr,
    dir: &Path,
    res: &mut Results,
) -> Result<(), String> {
    println!(
        "\n== Connection rate and latency: connect, SOCKS5 greeting + CONNECT, 1-byte echo, close; \
         median of {} × {:?} ==",
        p.reps, p.conn_dur
    );
    let echo = targets::Echo::start(lo).map_err(|e| format!("echo server: {e}"))?;
    // HAProxy forwarding the same cycle without SOCKS (issue 17): the practical limit of an L4
    // relay here. Optional: without the program the row says SKIPPED and the rest runs.
    let haproxy = match servers::find_program("haproxy") {
        Some(bin) => match balancer::forwarder(&bin, dir, echo.addr) {
            Ok(started) => Some(started),
            Err(e) => {
                println!("  SKIPPED the HAProxy row: {e}");
                None
            }
        },
        None => {
            println!("  SKIPPED the HAProxy row: haproxy not found (apt-get install haproxy)");
            None
        }
    };
    if let Some((process, addr, version)) = &haproxy {
        println!(
            "  haproxy    pid {:<7} {addr}  {version} (TCP mode, forwards to the echo server; \
             no SOCKS handshake)",
            process.pid()
        );
    }
    let mut probes = Vec::new();
    for s in servers {
        probes.push(connrate::probe(s, &echo));
    }
    let haproxy_probe = haproxy.as_ref().map(|(process, addr, _)| {
        let owners: Vec<i32> = sys::tree(process.pid()).iter().map(|s| s.pid).collect();
        connrate::probe_forwarder(*addr, &owners, &echo)
    });
    let mut runs: Vec<Vec<Vec<connrate::Run>>> = vec![vec![Vec::new(); 2]; servers.len()];
    let mut haproxy_runs: Vec<Vec<connrate::Run>> = vec![Vec::new(); 2];
    // sockd again with a client that pipelines greeting and request: a diagnostic row.
    let mut pipelined_runs: Vec<Vec<connrate::Run>> = vec![Vec::new(); 2];
    let mut failures = Vec::new();
    for _ in 0..p.reps {
        for (c, clients) in CLIENTS.iter().enumerate() {
            for (i, s) in servers.iter().enumerate() {
                match connrate::run(s, Cycle::Waiting, &echo, *clients, p.conn_dur) {
                    Ok(r) => runs[i][c].push(r),
                    Err(e) => failures.push(format!("{} {clients} clients: {e}", s.kind.name())),
                }
                if s.kind == Kind::Sockd {
                    match connrate::run(s, Cycle::Pipelined, &echo, *clients, p.conn_dur) {
                        Ok(r) => pipelined_runs[c].push(r),
                        Err(e) => failures.push(format!("sockd pipelined {clients} clients: {e}")),
                    }
                }
                // HAProxy right after direct, so each run of the others has one beside it.
                if let (0, Some((process, addr, _))) = (i, &haproxy) {
                    let pid = process.pid();
                    let cpu = move || sys::tree_cpu_ticks(pid);
                    let route = socks5::Path::Direct;
                    let cycle = Cycle::Waiting;
                    match connrate::run_to(route, cycle, *addr, &cpu, &echo, *clients, p.conn_dur) {
                        Ok(r) => haproxy_runs[c].push(r),
                        Err(e) => failures.push(format!("haproxy {clients} clients: {e}")),
                    }
                }
            }
        }
    }
    let mut t = Table::new(&[
        "server",
        "clients",
        "conn/s",
        "% direct",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "p99 / direct",
        "errors",
        "CPU µs/conn",
        "bench CPU µs/conn",
        "CPUs busy",
    ]);
    let med_of = |rs: &[connrate::Run], f: &dyn Fn(&connrate::Run) -> f64| {
        median(&rs.iter().map(f).collect::<Vec<_>>())
    };
    let row = |name: &str, clients: usize, rs: &[connrate::Run], direct: &[connrate::Run]| {
        let rate = med_of(rs, &|r| r.rate);
        let p99 = med_of(rs, &|r| r.p99_us);
        let is_direct = std::ptr::eq(rs, direct);
        vec![
            name.to_string(),
            clients.to_string(),
            num(rate, 0),
            if is_direct { "100%".into() } else { pct(rate, med_of(direct, &|r| r.rate)) },
            num(med_of(rs, &|r| r.p50_us), 0),
            num(p99, 0),
            num(med_of(rs, &|r| r.p999_us), 0),
            times(p99, med_of(direct, &|r| r.p99_us)),
            rs.iter().map(|r| r.errors).sum::<u64>().to_string(),
            if is_direct {
                "-".to_string()
            } else {
                num(med_of(rs, &|r| r.cpu_secs * 1e6 / r.conns.max(1) as f64), 1)
            },
            num(med_of(rs, &|r| r.bench_cpu_secs * 1e6 / r.conns.max(1) as f64), 1),
            format!("{:.0}%", 100.0 * med_of(rs, &|r| r.machine_busy)),
        ]
    };
    for (c, clients) in CLIENTS.iter().enumerate() {
        for (i, s) in servers.iter().enumerate() {
            let rs = &runs[i][c];
            res.conn.insert((i, c), (med_of(rs, &|r| r.rate), med_of(rs, &|r| r.p99_us)));
            t.row(row(s.kind.name(), *clients, rs, &runs[0][c]));
            if s.kind == Kind::Sockd {
                t.row(row("sockd pipe*", *clients, &pipelined_runs[c], &runs[0][c]));
            }
            if i == 0 && haproxy.is_some() {
                t.row(row("haproxy", *clients, &haproxy_runs[c], &runs[0][c]));
            }
        }
    }
    t.print();
    println!(
        "  haproxy = the same cycle without SOCKS (connect, 1-byte echo, close) through HAProxy in \
         TCP mode; sockd pipe* = a diagnostic row, not a figure: sockd with a client that sends \
         the SOCKS5 greeting and CONNECT request together (one round trip fewer, as libsocks.so's \
         ?pipeline does; the other rows wait for each reply, as most clients do); CPU µs/conn = \
         the server's CPU time over the run / connections completed; bench CPU µs/conn = the \
         same for this benchmark's own client and echo server; CPUs busy = share of the whole machine's CPU time in use during the run (anyone's; well under \
         100% means the rate is bound by waiting, not by CPU)"
    );
    println!("  verification (one connection each, its far end at the echo server looked up while open):");
    // (row name, its probe, its runs per client count)
    type Verified<'a> = (&'a str, &'a Result<String, String>, &'a [Vec<connrate::Run>]);
    let mut verified: Vec<Verified> = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        verified.push((s.kind.name(), &probes[i], &runs[i]));
        if s.kind == Kind::Sockd {
            verified.push(("sockd pipe*", &probes[i], &pipelined_runs));
        }
        if let (0, Some(probe)) = (i, &haproxy_probe) {
            verified.push(("haproxy", probe, &haproxy_runs));
        }
    }
    for (name, probe, rs) in verified {
        let counts: Vec<String> =
            rs.iter().flatten().map(|r| format!("{}/{}", r.echo_accepted, r.conns)).collect();
        match probe {
            Ok(d) => println!("    {name:<10} ok: {d}"),
            Err(e) => println!("    {name:<10} NOT VERIFIED: {e}"),
        }
        println!("    {:<10} echo accepts / completed per run: {}", "", counts.join(" "));
        for r in rs.iter().flatten() {
            if let Some(e) = &r.first_error {
                failures.push(format!("{name}: {} errors, first: {e}", r.errors));
            }
        }
    }
    for f in &failures {
        println!("  FAILED: {f}");
    }
    let haproxy_runs = haproxy.as_ref().map(|_| &haproxy_runs[..]);
    spread(servers, &runs, &pipelined_runs, haproxy_runs, p.reps);
    Ok(())
}

/// sockd against HAProxy and each peer run by run (each run of one is beside the other's in
/// time): the lowest, median and highest of the per-run ratios, so "ahead" can be read as
/// ahead in every run (issue 17), and whether issue 17's goal holds in every run.
fn spread(
    servers: &[Server],
    runs: &[Vec<Vec<connrate::Run>>],
    pipelined: &[Vec<connrate::Run>],
    haproxy: Option<&[Vec<connrate::Run>]>,
    reps: usize,
) {
    let Some(sockd) = servers.iter().position(|s| s.kind == Kind::Sockd) else { return };
    println!(
        "\n== sockd's connection rate against HAProxy and the peers, run by run ({reps} runs; a \
         ratio per run, then their lowest / median / highest) =="
    );
    let mut t = Table::new(&["figure", "clients", "min", "median", "max", "goal", "every run"]);
    let ratios = |a: &[connrate::Run], b: &[connrate::Run], f: &dyn Fn(&connrate::Run) -> f64| {
        a.iter().zip(b).map(|(x, y)| f(x) / f(y)).collect::<Vec<f64>>()
    };
    // `goal` "-": a figure shown for reading, with no goal of its own.
    let mut add = |name: String, c: usize, v: Vec<f64>, goal: &str, met: &dyn Fn(f64) -> bool| {
        if v.is_empty() {
            return;
        }
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let every = if goal == "-" {
            "-"
        } else if v.iter().all(|&x| x.is_finite() && met(x)) {
            "yes"
        } else {
            "NO"
        };
        t.row(vec![
            name,
            CLIENTS[c].to_string(),
            format!("{lo:.2}×"),
            format!("{:.2}×", median(&v)),
            format!("{hi:.2}×"),
            goal.to_string(),
            every.to_string(),
        ]);
    };
    for c in 0..CLIENTS.len() {
        let ours = &runs[sockd][c];
        if let Some(h) = haproxy {
            add(
                "conn/s sockd / haproxy".into(),
                c,
                ratios(ours, &h[c], &|r| r.rate),
                "≥ 0.90×",
                &|x| x >= 0.9,
            );
            add(
                "p99 sockd / haproxy".into(),
                c,
                ratios(ours, &h[c], &|r| r.p99_us),
                "≤ 1.20×",
                &|x| x <= 1.2,
            );
            add("p50 sockd / haproxy".into(), c, ratios(ours, &h[c], &|r| r.p50_us), "-", &|_| {
                true
            });
            // Diagnostic: what one SOCKS round trip fewer gives (the `sockd pipe*` row).
            let piped = &pipelined[c];
            let name = "conn/s sockd pipe* / haproxy".to_string();
            add(name, c, ratios(piped, &h[c], &|r| r.rate), "-", &|_| true);
            let name = "p50 sockd pipe* / haproxy".to_string();
            add(name, c, ratios(piped, &h[c], &|r| r.p50_us), "-", &|_| true);
        }
        for (i, s) in servers.iter().enumerate() {
            if matches!(s.kind, Kind::Danted | Kind::Microsocks) {
                let name = format!("conn/s sockd / {}", s.kind.name());
                add(name, c, ratios(ours, &runs[i][c], &|r| r.rate), "> 1×", &|x| x > 1.0);
                let name = format!("p99 {} / sockd", s.kind.name());
                add(name, c, ratios(&runs[i][c], ours, &|r| r.p99_us), "-", &|_| true);
            }
        }
    }
    t.print();
    if haproxy.is_none() {
        println!("  (no HAProxy row in this run: the ratios to HAProxy are missing)");
    }
}

fn memory(p: &Params, servers: &[Server], res: &mut Results) -> Result<(), String> {
    println!(
        "\n== Memory per idle connection: PSS of the server's processes holding {} idle SOCKS5 \
         sessions, minus before, / held ==",
        p.idle_conns
    );
    let mut holder = targets::Holder::start().map_err(|e| format!("holder: {e}"))?;
    let mut t = Table::new(&[
        "server",
        "held / wanted",
        "KiB/conn",
        "PSS before KiB",
        "PSS after KiB",
        "processes",
        "far ends verified",
        "open s",
        "error",
    ]);
    for (i, s) in servers.iter().enumerate().skip(1) {
        match idle::run(s, &mut holder, p.idle_conns, p.idle_budget) {
            Ok(r) => {
                res.idle.insert(i, (r.kib_per_conn(), r.held, r.wanted));
                t.row(vec![
                    s.kind.name().into(),
                    if r.opened == r.held {
                        format!("{} / {}", r.held, r.wanted)
                    } else {
                        format!("{} / {} ({} opened)", r.held, r.wanted, r.opened)
                    },
                    num(r.kib_per_conn(), 1),
                    r.pss_before_kib.to_string(),
                    r.pss_after_kib.to_string(),
                    format!("{} -> {}", r.procs_before, r.procs_after),
                    format!("{}/{}", r.verified, r.held),
                    num(r.open_secs, 1),
                    match (r.still_running, r.error) {
                        (false, e) => format!("SERVER GONE; {}", e.unwrap_or_default()),
                        (true, e) => e.unwrap_or_else(|| "none".into()),
                    },
                ]);
            }
            Err(e) => t.row(vec![s.kind.name().into(), format!("FAILED: {e}")]),
        }
    }
    t.print();
    println!(
        "  far ends verified = held connections whose peer socket at the holder belongs to the \
         server's processes (checked while all were open)"
    );
    Ok(())
}

fn peers_summary(servers: &[Server], res: &Results) {
    let Some(sockd) = servers.iter().position(|s| s.kind == Kind::Sockd) else { return };
    let peers: Vec<usize> = (0..servers.len())
        .filter(|&i| matches!(servers[i].kind, Kind::Danted | Kind::Microsocks))
        .collect();
    if peers.is_empty() || (res.relay.is_empty() && res.conn.is_empty() && res.idle.is_empty()) {
        return;
    }
    println!("\n== sockd against each peer, same run (> 1× means sockd is better) ==");
    let mut header = vec!["figure".to_string()];
    header.extend(peers.iter().map(|&i| format!("vs {}", servers[i].kind.name())));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = Table::new(&header);
    for (c, cfg) in RELAY_CONFIGS.iter().enumerate() {
        if let Some(&ours) = res.relay.get(&(sockd, c)) {
            let mut row = vec![format!("relay {} Gbit/s", cfg.2)];
            row.extend(peers.iter().map(|&i| times(ours, res.relay[&(i, c)])));
            t.row(row);
        }
    }
    for (c, clients) in CLIENTS.iter().enumerate() {
        if let Some(&(rate, p99)) = res.conn.get(&(sockd, c)) {
            let mut row = vec![format!("conn/s, {clients} clients")];
            row.extend(peers.iter().map(|&i| times(rate, res.conn[&(i, c)].0)));
            t.row(row);
            let mut row = vec![format!("p99 latency, {clients} clients (peer / sockd)")];
            row.extend(peers.iter().map(|&i| times(res.conn[&(i, c)].1, p99)));
            t.row(row);
        }
    }
    if let Some(&(ours, _, _)) = res.idle.get(&sockd) {
        let mut row = vec!["KiB per idle connection (peer / sockd)".to_string()];
        row.extend(peers.iter().map(|&i| {
            res.idle.get(&i).map(|&(kib, _, _)| times(kib, ours)).unwrap_or_else(|| "-".into())
        }));
        t.row(row);
    }
    t.print();
}

fn library(
    p: &Params,
    sockd: &Server,
    dir: &Path,
    libsocks: &Path,
    res: &mut Results,
) -> Result<(), String> {
    let proxy = sockd.addr.ok_or("sockd has no address")?;
    let conf = library::write_configs(dir, proxy)?;
    let mut missing = Vec::new();
    if !Path::new(library::PROXYCHAINS_LIB).is_file() {
        missing.push(format!("{} (apt-get install proxychains4)", library::PROXYCHAINS_LIB));
    }
    if !Path::new(library::DANTE_LIB).is_file() {
        missing.push(format!("{} (apt-get install dante-client)", library::DANTE_LIB));
    }
    if !missing.is_empty() {
        return Err(format!("missing: {}", missing.join(", ")));
    }

    println!(
        "\n== Library start cost: spawn and wait for /bin/true, median of {} runs each, interleaved ==",
        p.start_runs
    );
    let variants = library::start_variants(libsocks, &conf);
    let medians = library::start_cost(&variants, p.start_runs)?;
    let mut t = Table::new(&["LD_PRELOAD", "median µs", "× no preload"]);
    for (v, m) in variants.iter().zip(&medians) {
        t.row(vec![v.label.clone(), num(*m, 0), times(*m, medians[0])]);
    }
    t.print();
    res.start_ratio = Some((medians[2] / medians[0], medians[1] / medians[0]));
    println!(
        "  libsocks.so: {}; configs: SOCKS_CONF={}, PROXYCHAINS_CONF_FILE={} (quiet_mode), \
         Dante SOCKS_CONF={} with SOCKS_AUTOADD_LANROUTES=no",
        libsocks.display(),
        conf.ours.display(),
        conf.proxychains.display(),
        conf.dante.display()
    );

    println!(
        "\n== Library connect cost: connect + 1-byte echo + close inside a client process, median of \
         {} runs × {} iterations ==",
        p.client_runs, p.client_iters
    );
    println!(
        "  proxied rows: through the one sockd ({proxy}) to an echo server on 127.0.0.2; direct \
         rows: to an echo server on 127.0.0.1 (loopback, so libsocks.so goes direct)"
    );
    let far = targets::Echo::start([127, 0, 0, 2].into()).map_err(|e| format!("echo: {e}"))?;
    let near = targets::Echo::start([127, 0, 0, 1].into()).map_err(|e| format!("echo: {e}"))?;
    let variants = library::connect_variants(libsocks, &conf, proxy);
    let mut runs: Vec<Vec<library::ClientRun>> = vec![Vec::new(); variants.len()];
    let mut problems = Vec::new();
    for _ in 0..p.client_runs {
        for (v, r) in variants.iter().zip(runs.iter_mut()) {
            let echo = if v.proxied { &far } else { &near };
            match library::client_run(v, echo.addr, p.client_iters, sockd) {
                Ok(run) => r.push(run),
                Err(e) => problems.push(format!("{}: {e}", v.label)),
            }
        }
    }
    let mut t = Table::new(&[
        "client",
        "p50 µs",
        "mean µs",
        "first conn µs",
        "× no-preload",
        "× proxychains4",
        "sockd sessions / conns",
        "far end owned by",
    ]);
    let p50: Vec<f64> =
        runs.iter().map(|r| median(&r.iter().map(|x| x.p50_us).collect::<Vec<_>>())).collect();
    for (k, (v, r)) in variants.iter().zip(&runs).enumerate() {
        let sessions: usize = r.iter().map(|x| x.sockd_sessions).sum();
        let conns: usize = r.iter().map(|x| x.iters + 1).sum();
        let echo = if v.proxied { &far } else { &near };
        let owner = match library::audit(v, echo, sockd) {
            Ok(found) => describe_owners(&found, sockd, v.proxied),
            Err(e) => format!("audit failed: {e}"),
        };
        let vs_base = if v.proxied { p50[row::OWN_CLIENT] } else { p50[row::DIRECT] };
        t.row(vec![
            v.label.clone(),
            num(p50[k], 1),
            num(median(&r.iter().map(|x| x.mean_us).collect::<Vec<_>>()), 1),
            num(median(&r.iter().map(|x| x.first_us).collect::<Vec<_>>()), 0),
            times(p50[k], vs_base),
            if v.proxied { times(p50[k], p50[row::PROXYCHAINS]) } else { "-".into() },
            format!("{sessions} / {conns}"),
            owner,
        ]);
    }
    t.print();
    println!(
        "  × no-preload: proxied rows against the benchmark's own SOCKS5 client (two round trips, \
         no library), direct rows against the plain direct connect"
    );
    println!(
        "  sockd sessions = `connected:` lines sockd logged during the runs; far end owned by = the \
         process holding the echo server's peer socket, looked up during a separate 3-connection run"
    );
    for e in &problems {
        println!("  FAILED: {e}");
    }
    // Run by run: each run's p50 of libsocks.so over the same run's proxychains4 (the rows of
    // one run are interleaved, so they saw the same load).
    for (which, label) in
        [(row::LIBSOCKS, "?pipeline"), (row::LIBSOCKS_NO_PIPELINE, "no ?pipeline")]
    {
        let ratios: Vec<f64> = runs[which]
            .iter()
            .zip(&runs[row::PROXYCHAINS])
            .map(|(ours, theirs)| ours.p50_us / theirs.p50_us)
            .collect();
        if ratios.is_empty() {
            continue;
        }
        let (low, high) =
            ratios.iter().fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
        let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "  libsocks.so, {label} / proxychains4, run by run: {} (min {low:.2}, max {high:.2})",
            listed.join(", ")
        );
        res.proxied_vs_proxychains.push((label, p50[which] / p50[row::PROXYCHAINS], low, high));
    }
    res.direct_connect_ratio = Some(p50[row::DIRECT_LOADED] / p50[row::DIRECT]);
    res.proxied_vs_own = Some(p50[row::LIBSOCKS] / p50[row::OWN_CLIENT]);
    Ok(())
}

fn supervisor(
    p: &Params,
    sockd: &Server,
    dir: &Path,
    libsocks: &Path,
    res: &mut Results,
) -> Result<(), String> {
    let release = release_dir();
    let supervisor = release.join("socks-supervise");
    if !supervisor.is_file() {
        return Err(format!(
            "{} is missing: build it first with `cargo build --release --workspace`",
            supervisor.display()
        ));
    }
    let proxy = sockd.addr.ok_or("sockd has no address")?;
    let conf = library::write_configs(dir, proxy)?;
    let supervisor = supervisor.canonicalize().unwrap_or(supervisor);
    let static_bench = supervised::static_build(&release, &supervisor);
    match &static_bench {
        Some(b) => println!("\n  static build of this benchmark: {}", b.display()),
        None => println!(
            "\n  NOTE: no static build of this benchmark (target/x86_64-unknown-linux-gnu/release/\
             socks-bench, see docs/PERFORMANCE.md): the supervised connect row is the dynamic build"
        ),
    }
    let sizes = supervised::Sizes {
        start_runs: p.start_runs,
        client_runs: p.client_runs,
        client_iters: p.client_iters,
        bulk_runs: p.bulk_runs,
        bulk_bytes: p.bulk_bytes,
    };
    res.supervisor = Some(supervised::run(
        sizes,
        sockd,
        &supervisor,
        libsocks,
        &conf.ours,
        static_bench.as_deref(),
    )?);
    Ok(())
}

fn describe_owners(found: &[Option<(i32, String)>], sockd: &Server, proxied: bool) -> String {
    if found.is_empty() {
        return "no connection seen".into();
    }
    let sockd_pid = sockd.pid();
    let by_sockd =
        found.iter().filter(|o| o.as_ref().map(|(p, _)| Some(*p)) == Some(sockd_pid)).count();
    let other: Vec<String> = found
        .iter()
        .filter_map(|o| o.as_ref())
        .filter(|(p, _)| Some(*p) != sockd_pid)
        .map(|(_, c)| c.clone())
        .collect();
    let ok = if proxied { by_sockd == found.len() } else { by_sockd == 0 && !other.is_empty() };
    let mut s = if by_sockd > 0 {
        format!("sockd {by_sockd}/{}", found.len())
    } else {
        format!(
            "{} {}/{}",
            other.first().cloned().unwrap_or_else(|| "?".into()),
            other.len(),
            found.len()
        )
    };
    if !ok {
        s.push_str(" (UNEXPECTED)");
    }
    s
}

fn targets_summary(p: &Params, servers: &[Server], res: &Results) {
    let idx = |k: Kind| servers.iter().position(|s| s.kind == k);
    let (Some(sockd), danted) = (idx(Kind::Sockd), idx(Kind::Danted)) else { return };
    let mut t = Table::new(&["issue 6 target", "measured", "met"]);
    let yes = |b: bool| if b { "yes".to_string() } else { "NO".to_string() };
    if !res.relay.is_empty() {
        let up = res.relay[&(sockd, 0)] / res.relay[&(0, 0)];
        let down = res.relay[&(sockd, 1)] / res.relay[&(0, 1)];
        t.row(vec![
            "relay, 1 stream: ≥ 60% of direct (up / down)".into(),
            format!("{:.0}% / {:.0}%", up * 100.0, down * 100.0),
            yes(up >= 0.6 && down >= 0.6),
        ]);
        if let Some(d) = danted {
            let up = res.relay[&(sockd, 0)] / res.relay[&(d, 0)];
            let down = res.relay[&(sockd, 1)] / res.relay[&(d, 1)];
            t.row(vec![
                "relay, 1 stream: ≥ 2× danted (up / down)".into(),
                format!("{up:.2}× / {down:.2}×"),
                yes(up >= 2.0 && down >= 2.0),
            ]);
        }
        let (cu, cd) = (res.relay_cores[&(sockd, 2)], res.relay_cores[&(sockd, 3)]);
        let (su, sd) = (
            res.relay[&(sockd, 2)] / res.relay[&(sockd, 0)],
            res.relay[&(sockd, 3)] / res.relay[&(sockd, 1)],
        );
        t.row(vec![
            "relay, 4 streams: use both cores (sockd > 1 core busy)".into(),
            format!("{cu:.2} / {cd:.2} cores; 4 vs 1 stream {su:.2}× / {sd:.2}×"),
            yes(cu > 1.0 && cd > 1.0),
        ]);
    }
    if let (Some(&(rate, p99)), Some(&(drate, dp99))) =
        (res.conn.get(&(sockd, 1)), res.conn.get(&(0, 1)))
    {
        t.row(vec![
            "connections, 16 clients: ≥ 60% of direct's rate".into(),
            format!("{:.0}%", 100.0 * rate / drate),
            yes(rate / drate >= 0.6),
        ]);
        t.row(vec![
            "connections, 16 clients: p99 ≤ 1.5× direct's".into(),
            format!("{:.2}×", p99 / dp99),
            yes(p99 / dp99 <= 1.5),
        ]);
    }
    if let Some(&(kib, held, wanted)) = res.idle.get(&sockd) {
        let n = if p.quick {
            format!(" ({wanted} in --quick)")
        } else if let Some(asked) = p.idle_limited {
            format!(" ({wanted}: {asked} exceed the fd limit)")
        } else {
            String::new()
        };
        t.row(vec![
            format!("≤ 8 KiB per idle connection, 10,000 held{n}"),
            format!("{kib:.1} KiB, {held}/{wanted} held"),
            if kib <= 8.0 && held == wanted && wanted >= 10_000 {
                "yes".into()
            } else if kib <= 8.0 && held == wanted {
                "yes, at this N".into()
            } else {
                "NO".into()
            },
        ]);
    }
    if let Some((with_conf, no_conf)) = res.start_ratio {
        t.row(vec![
            "library start ≤ 1.05× no preload (with SOCKS_CONF / without)".into(),
            format!("{with_conf:.3}× / {no_conf:.3}×"),
            yes(with_conf <= 1.05 && no_conf <= 1.05),
        ]);
    }
    if let Some(r) = res.direct_connect_ratio {
        t.row(vec![
            "direct connect with library loaded ≤ 1.05×".into(),
            format!("{r:.3}×"),
            yes(r <= 1.05),
        ]);
    }
    for (label, r, low, high) in &res.proxied_vs_proxychains {
        t.row(vec![
            format!("proxied connect ≤ 0.8× proxychains4's, {label}"),
            format!("{r:.2}× (runs {low:.2}–{high:.2})"),
            if *high <= 0.8 {
                "yes".into()
            } else if *r <= 0.8 {
                "median only".into()
            } else {
                "NO".into()
            },
        ]);
    }
    if let Some(r) = res.proxied_vs_own {
        t.row(vec![
            "one round trip (not measured directly)".into(),
            format!("libsocks.so {r:.2}× the bench's 2-round-trip client"),
            "-".into(),
        ]);
    }
    if !t.is_empty() {
        println!("\n== Issue 6 targets, from this run ==");
        t.print();
    }
    if let Some(r) = &res.supervisor {
        supervisor_targets(r);
    }
}

fn supervisor_targets(r: &supervised::Ratios) {
    let yes = |b: bool| if b { "yes".to_string() } else { "NO".to_string() };
    let mut t = Table::new(&["issue 12 target", "measured", "met"]);
    if let Some((ratio, which)) = r.connect {
        t.row(vec![
            format!("proxied connect, supervised ({which}) ≤ 1.3× libsocks.so"),
            format!("{ratio:.2}×"),
            yes(ratio <= 1.3),
        ]);
    }
    if let (Some(t_true), b) = (r.start_true, r.start_busybox) {
        t.row(vec![
            "start+run, supervised ≤ 1.05× bare (/bin/true / busybox true)".into(),
            format!(
                "{t_true:.2}× / {}",
                b.map(|b| format!("{b:.2}×")).unwrap_or_else(|| "-".into())
            ),
            yes(t_true <= 1.05 && b.is_none_or(|b| b <= 1.05)),
        ]);
    }
    if let Some((up, down)) = r.bulk {
        t.row(vec![
            "bulk transfer, supervised as fast as libsocks.so (≥ 0.95×; up / down)".into(),
            format!("{up:.2}× / {down:.2}×"),
            yes(up >= 0.95 && down >= 0.95),
        ]);
    }
    println!("\n== Issue 12 targets (the supervisor), from this run ==");
    t.print();
}
