//! The preload libraries: the start cost of `/bin/true` under each (many runs, interleaved,
//! median), and the cost of connect + 1-byte echo + close measured inside a client process
//! (this binary re-executed in client mode) under each library, through one shared sockd to an
//! echo server on 127.0.0.2, plus a direct connection with and without libsocks.so loaded.
//! Checks each variant's traffic went where it should: sockd's `connected:` log lines and the
//! owner of the echo server's peer socket.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::{median, quantile};
use crate::servers::Server;
use crate::socks5;
use crate::targets::Echo;

/// Dante's client library as Debian packages it (libdsocksd0, from dante-client).
pub const DANTE_LIB: &str = "/usr/lib/x86_64-linux-gnu/libdsocksd.so.0";
/// proxychains-ng's library (libproxychains4, from proxychains4).
pub const PROXYCHAINS_LIB: &str = "/usr/lib/x86_64-linux-gnu/libproxychains.so.4";
/// tsocks' library (from tsocks): a start-cost row only (issue 17), when installed.
pub const TSOCKS_LIB: &str = "/usr/lib/x86_64-linux-gnu/libtsocks.so.1";

/// A way to run a program: a label, environment to add, and whether its connections to the
/// echo server should go through sockd.
#[derive(Debug, Clone)]
pub struct Variant {
    pub label: String,
    pub env: Vec<(String, String)>,
    /// Client-mode arguments added (the bench's own SOCKS5 client: `--via ADDR`).
    pub args: Vec<String>,
    pub proxied: bool,
    /// A program that runs the measured one (`socks-supervise --`), if any.
    pub wrapper: Vec<PathBuf>,
    /// The client-mode program, if not this benchmark's own executable (a static build of it).
    pub program: Option<PathBuf>,
}

impl Variant {
    pub fn new(label: &str, env: &[(&str, &str)], proxied: bool) -> Variant {
        Variant {
            label: label.into(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            args: Vec::new(),
            proxied,
            wrapper: Vec::new(),
            program: None,
        }
    }

    /// `program` run as this variant says (under its wrapper, if any).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        for var in
            ["LD_PRELOAD", "SOCKS_CONF", "SOCKS_SERVER", "PROXYCHAINS_CONF_FILE", "SOCKS_LOG"]
        {
            cmd.env_remove(var);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        cmd
    }
}

/// The config files for the three libraries, all sending 127.0.0.2 through sockd at `proxy`
/// (ours twice: with `?pipeline`, and without it, where the request waits for the method
/// selection as most clients' does).
#[derive(Debug)]
pub struct Configs {
    pub ours: PathBuf,
    pub ours_no_pipeline: PathBuf,
    pub proxychains: PathBuf,
    pub dante: PathBuf,
    pub tsocks: PathBuf,
}

pub fn write_configs(dir: &Path, proxy: SocketAddr) -> Result<Configs, String> {
    let (ip, port) = (proxy.ip(), proxy.port());
    let w = |name: &str, text: String| -> Result<PathBuf, String> {
        let p = dir.join(name);
        fs::write(&p, text).map_err(|e| format!("write {}: {e}", p.display()))?;
        Ok(p)
    };
    Ok(Configs {
        ours: w(
            "socks.conf",
            format!(
                "# socks-bench: the echo server on 127.0.0.2 through sockd (loopback needs an \
                 explicit line); sockd reads the whole handshake in one write\n\
                 sockd @={ip}:{port}?pipeline 127.0.0.2/32\n"
            ),
        )?,
        ours_no_pipeline: w(
            "socks-no-pipeline.conf",
            format!(
                "# socks-bench: as socks.conf, without ?pipeline (two round trips)\n\
                 sockd @={ip}:{port} 127.0.0.2/32\n"
            ),
        )?,
        proxychains: w(
            "proxychains.conf",
            format!("strict_chain\nquiet_mode\n[ProxyList]\nsocks5 {ip} {port}\n"),
        )?,
        dante: w(
            "dante-socks.conf",
            format!(
                "route {{\n\tfrom: 0.0.0.0/0 to: 127.0.0.2/32 via: {ip} port = {port}\n\
                 \tproxyprotocol: socks_v5\n\tmethod: none\n}}\n"
            ),
        )?,
        tsocks: w(
            "tsocks.conf",
            format!("server = {ip}\nserver_port = {port}\nserver_type = 5\n"),
        )?,
    })
}

/// The variants whose start cost is compared (tsocks last, and only when installed: the
/// connect-cost variants pick the others by position).
pub fn start_variants(libsocks: &Path, conf: &Configs) -> Vec<Variant> {
    let ours = libsocks.display().to_string();
    let (conf_ours, conf_pc, conf_dante) = (
        conf.ours.display().to_string(),
        conf.proxychains.display().to_string(),
        conf.dante.display().to_string(),
    );
    vec![
        Variant::new("no preload", &[], false),
        Variant::new("libsocks.so, no config", &[("LD_PRELOAD", &ours)], false),
        Variant::new(
            "libsocks.so, SOCKS_CONF",
            &[("LD_PRELOAD", &ours), ("SOCKS_CONF", &conf_ours)],
            false,
        ),
        Variant::new(
            "proxychains4 (libproxychains.so.4)",
            &[("LD_PRELOAD", PROXYCHAINS_LIB), ("PROXYCHAINS_CONF_FILE", &conf_pc)],
            false,
        ),
        Variant::new(
            "Dante (libdsocksd.so.0)",
            &[
                ("LD_PRELOAD", DANTE_LIB),
                ("SOCKS_CONF", &conf_dante),
                ("SOCKS_AUTOADD_LANROUTES", "no"),
            ],
            false,
        ),
    ]
    .into_iter()
    .chain(Path::new(TSOCKS_LIB).is_file().then(|| {
        let conf_tsocks = conf.tsocks.display().to_string();
        Variant::new(
            "tsocks (libtsocks.so.1)",
            &[("LD_PRELOAD", TSOCKS_LIB), ("TSOCKS_CONF_FILE", &conf_tsocks)],
            false,
        )
    }))
    .collect()
}

/// Median wall time in µs of spawning and waiting for `/bin/true` under each variant, the
/// variants interleaved run by run.
pub fn start_cost(variants: &[Variant], runs: usize) -> Result<Vec<f64>, String> {
    let program = Path::new("/bin/true");
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); variants.len()];
    for i in 0..runs + 10 {
        for (v, t) in variants.iter().zip(times.iter_mut()) {
            let mut cmd = v.command(program);
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let t0 = Instant::now();
            let status = cmd.status().map_err(|e| format!("run /bin/true: {e}"))?;
            let us = t0.elapsed().as_secs_f64() * 1e6;
            if !status.success() {
                return Err(format!("/bin/true under {} failed: {status}", v.label));
            }
            // The first rounds warm the page cache and the loader.
            if i >= 10 {
                t.push(us);
            }
        }
    }
    Ok(times.iter().map(|t| median(t)).collect())
}

/// Positions in `connect_variants`' list, which the library section's ratios and the issue
/// targets use.
pub mod row {
    /// The bench's own SOCKS5 client (no preload, two round trips): proxied rows' baseline.
    pub const OWN_CLIENT: usize = 0;
    /// libsocks.so, socks.conf with `?pipeline`.
    pub const LIBSOCKS: usize = 1;
    /// libsocks.so, socks.conf without `?pipeline`.
    pub const LIBSOCKS_NO_PIPELINE: usize = 2;
    pub const PROXYCHAINS: usize = 3;
    // 4: Dante's libdsocks, shown, used by no ratio.
    /// No preload, straight to the echo server on 127.0.0.1: direct rows' baseline.
    pub const DIRECT: usize = 5;
    /// libsocks.so loaded, to 127.0.0.1, which its socks.conf sends direct.
    pub const DIRECT_LOADED: usize = 6;
}

/// The variants whose connect + echo cost is compared, at the positions of `row`; the first
/// five go through sockd to the echo server on 127.0.0.2, the last two straight to the one on
/// 127.0.0.1.
pub fn connect_variants(libsocks: &Path, conf: &Configs, proxy: SocketAddr) -> Vec<Variant> {
    let start = start_variants(libsocks, conf);
    let mut own = Variant::new("bench's own SOCKS5 client, no preload", &[], true);
    own.args = vec!["--via".into(), proxy.to_string()];
    let pick = |i: usize, label: &str, proxied: bool| {
        let mut v = start[i].clone();
        v.label = label.into();
        v.proxied = proxied;
        v
    };
    let no_pipeline = Variant::new(
        "libsocks.so, no ?pipeline",
        &[
            ("LD_PRELOAD", &libsocks.display().to_string()),
            ("SOCKS_CONF", &conf.ours_no_pipeline.display().to_string()),
        ],
        true,
    );
    vec![
        own,
        pick(2, "libsocks.so, ?pipeline", true),
        no_pipeline,
        pick(3, "proxychains4", true),
        pick(4, "Dante libdsocks", true),
        pick(0, "direct, no preload", false),
        pick(2, "direct, libsocks.so loaded (SOCKS_CONF)", false),
    ]
}

/// One client-mode run's result.
#[derive(Debug, Clone)]
pub struct ClientRun {
    pub p50_us: f64,
    pub mean_us: f64,
    pub first_us: f64,
    pub iters: usize,
    /// sockd `connected:` lines logged during the run.
    pub sockd_sessions: usize,
}

/// Runs this binary in client mode under `v`: `iters` timed connect+echo iterations to `dst`.
pub fn client_run(
    v: &Variant,
    dst: SocketAddr,
    iters: usize,
    sockd: &Server,
) -> Result<ClientRun, String> {
    let exe = match &v.program {
        Some(program) => program.clone(),
        None => std::env::current_exe().map_err(|e| format!("own executable: {e}"))?,
    };
    let mut cmd = v.command(&exe);
    cmd.args(["--client-mode", &dst.to_string(), &iters.to_string()]).args(&v.args);
    cmd.stderr(Stdio::piped()).stdout(Stdio::piped());
    let before = sockd.log_count("connected:");
    let out = cmd.output().map_err(|e| format!("run client: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("RESULT ")).ok_or_else(|| {
        format!(
            "client under {} printed no result ({}): {}",
            v.label,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|x| x.parse().ok())
            .unwrap_or(f64::NAN)
    };
    // sockd writes its log line as the session starts; allow it a moment to land.
    std::thread::sleep(Duration::from_millis(50));
    Ok(ClientRun {
        p50_us: field("p50_ns") / 1e3,
        mean_us: field("mean_ns") / 1e3,
        first_us: field("first_ns") / 1e3,
        iters: field("iters") as usize,
        sockd_sessions: sockd.log_count("connected:") - before,
    })
}

/// Runs a short client under `v` while the echo server audits every connection: the owners
/// of the peers it saw.
pub fn audit(
    v: &Variant,
    echo: &Echo,
    sockd: &Server,
) -> Result<Vec<Option<(i32, String)>>, String> {
    echo.audit_next(3);
    client_run(v, echo.addr, 2, sockd)?;
    Ok(echo.audited())
}

/// Client mode (`--client-mode DST ITERS [--via PROXY]`): one untimed connect+echo (the first,
/// which pays for any lazy set-up, is reported separately), then ITERS timed ones; prints
/// `RESULT iters=.. p50_ns=.. mean_ns=.. first_ns=..`. Plain std sockets, so an LD_PRELOAD
/// library sees ordinary libc calls.
pub fn client_main(args: &[String]) -> Result<(), String> {
    let usage = "usage: socks-bench --client-mode ADDR:PORT ITERS [--via PROXY:PORT]";
    let dst: SocketAddr = args.first().and_then(|a| a.parse().ok()).ok_or(usage)?;
    let iters: usize = args.get(1).and_then(|a| a.parse().ok()).ok_or(usage)?;
    let via: Option<SocketAddr> = match args.get(2).map(String::as_str) {
        Some("--via") => Some(args.get(3).and_then(|a| a.parse().ok()).ok_or(usage)?),
        Some(_) => return Err(usage.into()),
        None => None,
    };
    let once = || -> Result<u64, String> {
        let t0 = Instant::now();
        let mut s = match via {
            Some(proxy) => {
                let mut s = TcpStream::connect(proxy).map_err(|e| format!("connect: {e}"))?;
                socks5::handshake(&mut s, dst).map_err(|e| format!("SOCKS5: {e}"))?;
                s
            }
            None => TcpStream::connect(dst).map_err(|e| format!("connect {dst}: {e}"))?,
        };
        s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        s.write_all(b"x").map_err(|e| format!("write: {e}"))?;
        let mut b = [0u8; 8];
        s.read_exact(&mut b[..1]).map_err(|e| format!("read echo: {e}"))?;
        // The echo server closes first (see targets::Echo); close on its end of stream.
        if s.read(&mut b).map_err(|e| format!("read end of stream: {e}"))? != 0 {
            return Err("bytes after the echo".into());
        }
        drop(s);
        Ok(t0.elapsed().as_nanos() as u64)
    };
    let first = once()?;
    let mut lat = Vec::with_capacity(iters);
    for _ in 0..iters {
        lat.push(once()?);
    }
    let mean = lat.iter().sum::<u64>() as f64 / lat.len().max(1) as f64;
    lat.sort_unstable();
    println!(
        "RESULT iters={} p50_ns={} mean_ns={mean:.0} first_ns={first}",
        lat.len(),
        quantile(&lat, 0.5)
    );
    Ok(())
}
