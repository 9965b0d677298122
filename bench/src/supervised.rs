//! The supervisor (`socks-supervise`, issue 12) against the library, in the same run and
//! through the same sockd: the cost of a proxied connect (the library section's client mode:
//! connect + SOCKS5 + 1-byte echo + close) under each, by a static build of this benchmark
//! under the supervisor and the ordinary (dynamic) build under the supervisor and under
//! libsocks.so; the start and run time of programs that make no socket call (`/bin/true` and
//! busybox-static's `true`) supervised against bare, and the supervisor's own start alone
//! (`--which`); and bulk transfer (upload and download of
//! a fixed size to the loopback sink) on a supervised connection against one under the
//! library. Each proxied run is checked against sockd's `connected:` lines.
//!
//! Not here: the library's own rows and peers (`library`), the printing of issue 6's targets
//! (`main`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::library::{self, Variant};
use crate::report::{median, num, times, Table};
use crate::servers::{find_program, Server};
use crate::targets::{self, Sink, CHUNK};

/// Sizes of the supervisor section.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Spawn-and-wait runs per start variant (after 10 warm-up rounds).
    pub start_runs: usize,
    /// Client-mode runs per connect variant, and timed iterations in each.
    pub client_runs: usize,
    pub client_iters: usize,
    /// Bulk runs per variant and direction, and bytes per run.
    pub bulk_runs: usize,
    pub bulk_bytes: u64,
}

/// The ratios issue 12 sets goals for, from one run.
#[derive(Debug, Default)]
pub struct Ratios {
    /// p50 proxied connect: supervised (static build if there is one) / library.
    pub connect: Option<(f64, &'static str)>,
    /// Start and run: supervised / bare, for /bin/true and busybox true.
    pub start_true: Option<f64>,
    pub start_busybox: Option<f64>,
    /// Bulk throughput: supervised / library, upload and download.
    pub bulk: Option<(f64, f64)>,
}

/// The static build of this benchmark, if one was made (see docs/PERFORMANCE.md):
/// `RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p socks-bench --target
/// x86_64-unknown-linux-gnu`.
pub fn static_build(release: &Path, supervisor: &Path) -> Option<PathBuf> {
    let path =
        release.join("..").join("x86_64-unknown-linux-gnu").join("release").join("socks-bench");
    let path = path.canonicalize().ok()?;
    Some(path).filter(|p| is_static(supervisor, p))
}

/// Whether the supervisor takes `program` for a statically linked one (`--which`), as
/// socksify decides.
fn is_static(supervisor: &Path, program: &Path) -> bool {
    std::process::Command::new(supervisor)
        .arg("--which")
        .arg(program)
        .output()
        .map(|o| o.stdout == b"supervise static\n")
        .unwrap_or(false)
}

/// Runs the whole section and prints its tables; returns the ratios for the targets table.
pub fn run(
    sizes: Sizes,
    sockd: &Server,
    supervisor: &Path,
    libsocks: &Path,
    conf: &Path,
    static_bench: Option<&Path>,
) -> Result<Ratios, String> {
    let mut ratios = Ratios::default();
    start_section(sizes, supervisor, &mut ratios)?;
    let supervised = |label: &str, program: Option<&Path>| {
        let mut v = Variant::new(label, &[("SOCKS_CONF", &conf.display().to_string())], true);
        v.wrapper = vec![supervisor.to_path_buf(), "--".into()];
        v.program = program.map(Path::to_path_buf);
        v
    };
    let mut variants = vec![
        Variant::new(
            "libsocks.so, dynamic build",
            &[
                ("LD_PRELOAD", &libsocks.display().to_string()),
                ("SOCKS_CONF", &conf.display().to_string()),
            ],
            true,
        ),
        supervised("socks-supervise, dynamic build", None),
    ];
    if let Some(program) = static_bench {
        variants.push(supervised("socks-supervise, static build", Some(program)));
    }
    connect_section(sizes, sockd, &variants, &mut ratios)?;
    bulk_section(sizes, sockd, &variants, &mut ratios)?;
    Ok(ratios)
}

fn start_section(sizes: Sizes, supervisor: &Path, ratios: &mut Ratios) -> Result<(), String> {
    println!(
        "\n== Supervisor start cost: spawn and wait for a program that makes no socket call, \
         median of {} runs each, interleaved ==",
        sizes.start_runs
    );
    let busybox = find_program("busybox").filter(|b| is_static(supervisor, b));
    let mut programs: Vec<(String, PathBuf, Vec<String>)> =
        vec![("/bin/true".into(), PathBuf::from("/bin/true"), Vec::new())];
    match &busybox {
        Some(b) => programs.push((
            format!("{} true (static)", b.display()),
            b.clone(),
            vec!["true".into()],
        )),
        None => {
            println!("  SKIPPED busybox true: no static busybox (apt-get install busybox-static)")
        }
    }
    // Each program bare and supervised, all interleaved run by run.
    let mut times_us: Vec<Vec<f64>> = vec![Vec::new(); programs.len() * 2];
    // And the supervisor alone: its own exec, ELF check and exit, no child (`--which`).
    let mut alone_us = Vec::new();
    for round in 0..sizes.start_runs + 10 {
        let mut alone = std::process::Command::new(supervisor);
        alone.args(["--which", "/bin/true"]).stdout(Stdio::null()).stderr(Stdio::null());
        let t0 = Instant::now();
        alone.status().map_err(|e| format!("run {} --which: {e}", supervisor.display()))?;
        if round >= 10 {
            alone_us.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        for (k, (_, program, args)) in programs.iter().enumerate() {
            for supervised in [false, true] {
                let mut v = Variant::new("", &[], false);
                if supervised {
                    v.wrapper = vec![supervisor.to_path_buf(), "--".into()];
                }
                let mut cmd = v.command(program);
                cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
                let t0 = Instant::now();
                let status = cmd.status().map_err(|e| format!("run {}: {e}", program.display()))?;
                let us = t0.elapsed().as_secs_f64() * 1e6;
                if !status.success() {
                    return Err(format!(
                        "{} (supervised: {supervised}) failed: {status}",
                        program.display()
                    ));
                }
                if round >= 10 {
                    times_us[k * 2 + usize::from(supervised)].push(us);
                }
            }
        }
    }
    let mut t = Table::new(&["program", "bare µs", "supervised µs", "× bare", "+ µs"]);
    for (k, (label, _, _)) in programs.iter().enumerate() {
        let (bare, sup) = (median(&times_us[k * 2]), median(&times_us[k * 2 + 1]));
        t.row(vec![label.clone(), num(bare, 0), num(sup, 0), times(sup, bare), num(sup - bare, 0)]);
        if k == 0 {
            ratios.start_true = Some(sup / bare);
        } else {
            ratios.start_busybox = Some(sup / bare);
        }
    }
    t.print();
    println!(
        "  supervised = `{} -- PROGRAM` (what socksify execs, without socksify's own bash)",
        supervisor.display()
    );
    let (alone, bare) = (median(&alone_us), median(&times_us[0]));
    println!(
        "  the supervisor alone (`socks-supervise --which /bin/true`: its own exec and exit, no \
         child): {} µs median, {} µs more than /bin/true",
        num(alone, 0),
        num(alone - bare, 0)
    );
    Ok(())
}

fn connect_section(
    sizes: Sizes,
    sockd: &Server,
    variants: &[Variant],
    ratios: &mut Ratios,
) -> Result<(), String> {
    println!(
        "\n== Supervisor connect cost: connect + SOCKS5 through sockd + 1-byte echo + close inside \
         a client process, median of {} runs × {} iterations ==",
        sizes.client_runs, sizes.client_iters
    );
    let echo = targets::Echo::start([127, 0, 0, 2].into()).map_err(|e| format!("echo: {e}"))?;
    let mut runs: Vec<Vec<library::ClientRun>> = vec![Vec::new(); variants.len()];
    let mut problems = Vec::new();
    for _ in 0..sizes.client_runs {
        for (v, r) in variants.iter().zip(runs.iter_mut()) {
            match library::client_run(v, echo.addr, sizes.client_iters, sockd) {
                Ok(run) => r.push(run),
                Err(e) => problems.push(format!("{}: {e}", v.label)),
            }
        }
    }
    let p50: Vec<f64> =
        runs.iter().map(|r| median(&r.iter().map(|x| x.p50_us).collect::<Vec<_>>())).collect();
    let mut t = Table::new(&[
        "client",
        "p50 µs",
        "mean µs",
        "first conn µs",
        "× libsocks.so",
        "sockd sessions / conns",
    ]);
    for (k, (v, r)) in variants.iter().zip(&runs).enumerate() {
        let sessions: usize = r.iter().map(|x| x.sockd_sessions).sum();
        let conns: usize = r.iter().map(|x| x.iters + 1).sum();
        t.row(vec![
            v.label.clone(),
            num(p50[k], 1),
            num(median(&r.iter().map(|x| x.mean_us).collect::<Vec<_>>()), 1),
            num(median(&r.iter().map(|x| x.first_us).collect::<Vec<_>>()), 0),
            times(p50[k], p50[0]),
            format!("{sessions} / {conns}{}", if sessions == conns { "" } else { " (UNEXPECTED)" }),
        ]);
    }
    t.print();
    println!("  the same client code in each row (the library section's client mode); the static build is this benchmark linked with glibc's libc.a");
    for e in &problems {
        println!("  FAILED: {e}");
    }
    let last = p50.len() - 1;
    let which =
        if variants.len() > 2 { "static build" } else { "dynamic build (no static build found)" };
    if p50[0] > 0.0 && p50[last].is_finite() {
        ratios.connect = Some((p50[last] / p50[0], which));
    }
    Ok(())
}

fn bulk_section(
    sizes: Sizes,
    sockd: &Server,
    variants: &[Variant],
    ratios: &mut Ratios,
) -> Result<(), String> {
    let mib = sizes.bulk_bytes / (1024 * 1024);
    println!(
        "\n== Supervisor bulk transfer: {mib} MiB on one connection through sockd, Gbit/s from \
         connect to the last byte, median of {} runs, interleaved ==",
        sizes.bulk_runs
    );
    let sink = Sink::start([127, 0, 0, 2].into()).map_err(|e| format!("sink: {e}"))?;
    let mut gbps: Vec<[Vec<f64>; 2]> = vec![[Vec::new(), Vec::new()]; variants.len()];
    let mut sessions = vec![0usize; variants.len()];
    let mut problems = Vec::new();
    for _ in 0..sizes.bulk_runs {
        for (k, v) in variants.iter().enumerate() {
            for (d, dir) in ["up", "down"].iter().enumerate() {
                let before = sockd.log_count("connected:");
                match bulk_run(v, sink.addr, sizes.bulk_bytes, dir) {
                    Ok(g) => gbps[k][d].push(g),
                    Err(e) => problems.push(format!("{} {dir}: {e}", v.label)),
                }
                std::thread::sleep(Duration::from_millis(50));
                sessions[k] += sockd.log_count("connected:") - before;
            }
        }
    }
    let med: Vec<[f64; 2]> = gbps.iter().map(|g| [median(&g[0]), median(&g[1])]).collect();
    let mut t = Table::new(&[
        "client",
        "up Gbit/s",
        "down Gbit/s",
        "up × libsocks.so",
        "down × libsocks.so",
        "sockd sessions / runs",
    ]);
    for (k, v) in variants.iter().enumerate() {
        let expected = 2 * sizes.bulk_runs;
        t.row(vec![
            v.label.clone(),
            num(med[k][0], 2),
            num(med[k][1], 2),
            times(med[k][0], med[0][0]),
            times(med[k][1], med[0][1]),
            format!(
                "{} / {expected}{}",
                sessions[k],
                if sessions[k] == expected { "" } else { " (UNEXPECTED)" }
            ),
        ]);
    }
    t.print();
    for e in &problems {
        println!("  FAILED: {e}");
    }
    let last = med.len() - 1;
    ratios.bulk = Some((med[last][0] / med[0][0], med[last][1] / med[0][1]));
    Ok(())
}

/// One bulk run of the client mode under `v`: Gbit/s.
fn bulk_run(v: &Variant, dst: SocketAddr, bytes: u64, dir: &str) -> Result<f64, String> {
    let exe = match &v.program {
        Some(program) => program.clone(),
        None => std::env::current_exe().map_err(|e| format!("own executable: {e}"))?,
    };
    let mut cmd = v.command(&exe);
    cmd.args(["--bulk-mode", &dst.to_string(), &bytes.to_string(), dir]);
    let out = cmd.output().map_err(|e| format!("run client: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ns: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT ns="))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| {
            format!("no result ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim())
        })?;
    Ok(bytes as f64 * 8.0 / ns)
}

/// Bulk client mode (`--bulk-mode DST BYTES up|down`): connect to the sink, upload BYTES and
/// half-close (then read the sink's count, which must match) or download BYTES; prints
/// `RESULT ns=…`, the time from before the connect to the last byte. Plain std sockets, so the
/// library or the supervisor sees ordinary calls.
pub fn bulk_main(args: &[String]) -> Result<(), String> {
    let usage = "usage: socks-bench --bulk-mode ADDR:PORT BYTES up|down";
    let dst: SocketAddr = args.first().and_then(|a| a.parse().ok()).ok_or(usage)?;
    let bytes: u64 = args.get(1).and_then(|a| a.parse().ok()).ok_or(usage)?;
    let up = match args.get(2).map(String::as_str) {
        Some("up") => true,
        Some("down") => false,
        _ => return Err(usage.into()),
    };
    let mut buf = vec![0u8; CHUNK];
    let t0 = Instant::now();
    let mut s = TcpStream::connect(dst).map_err(|e| format!("connect {dst}: {e}"))?;
    s.write_all(&[if up { targets::UPLOAD } else { targets::DOWNLOAD }])
        .map_err(|e| format!("write: {e}"))?;
    let mut left = bytes;
    if up {
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            s.write_all(&buf[..n]).map_err(|e| format!("write: {e}"))?;
            left -= n as u64;
        }
        s.shutdown(std::net::Shutdown::Write).map_err(|e| format!("shutdown: {e}"))?;
        let mut count = [0u8; 8];
        s.read_exact(&mut count).map_err(|e| format!("read the sink's count: {e}"))?;
        if u64::from_le_bytes(count) != bytes {
            return Err(format!("the sink got {} bytes, not {bytes}", u64::from_le_bytes(count)));
        }
    } else {
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            let got = s.read(&mut buf[..n]).map_err(|e| format!("read: {e}"))?;
            if got == 0 {
                return Err(format!("end of stream with {left} bytes to go"));
            }
            left -= got as u64;
        }
    }
    let ns = t0.elapsed().as_nanos();
    println!("RESULT ns={ns}");
    Ok(())
}
