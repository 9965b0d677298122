//! The servers under test, started by the benchmark on 127.0.0.1 with configs it writes into
//! its own scratch directory, and stopped by PID: our sockd (permit loopback to loopback),
//! Dante's danted (no authentication, pass rules, one log line per connect and disconnect,
//! as sockd) and microsocks. "direct" stands for no server at all. Not the measurements.

use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::socks5::Path as Route;
use crate::sys;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Direct,
    Sockd,
    Danted,
    Microsocks,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Sockd => "sockd",
            Kind::Danted => "danted",
            Kind::Microsocks => "microsocks",
        }
    }
}

/// A running server (or "direct").
#[derive(Debug)]
pub struct Server {
    pub kind: Kind,
    pub addr: Option<SocketAddr>,
    child: Option<Child>,
    pub log: Option<PathBuf>,
    pub version: String,
}

/// A free TCP port on 127.0.0.1 (bound and released; the server binds it right after).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Looks a program up in PATH and the sbin directories.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

impl Server {
    pub fn direct() -> Server {
        Server { kind: Kind::Direct, addr: None, child: None, log: None, version: String::new() }
    }

    /// Our sockd, `-f rules -l 127.0.0.1:PORT`, standard error (its log) to a file.
    pub fn sockd(bin: &Path, dir: &Path) -> Result<Server, String> {
        let rules = dir.join("sockd.conf");
        fs::write(&rules, "# socks-bench: loopback to loopback\npermit 127.0.0.0/8 127.0.0.0/8\n")
            .map_err(|e| format!("write {}: {e}", rules.display()))?;
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        let listen = format!("127.0.0.1:{port}");
        let log = dir.join("sockd.log");
        let mut cmd = Command::new(bin);
        let mut args = vec!["-f".to_string(), rules.display().to_string(), "-l".into(), listen];
        // All the benchmark's connections come from one address: lift the session limits
        // (sockd's defaults would refuse the idle-connection test's), where sockd has them.
        let help = Command::new(bin).arg("--help").stdin(Stdio::null()).output();
        let help =
            help.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        for flag in ["--max-sessions", "--max-sessions-per-client"] {
            if help.contains(&format!("{flag} ")) {
                args.extend([flag.to_string(), "1000000".into()]);
            }
        }
        cmd.args(&args);
        let shown = format!("{} {}", bin.display(), args[4..].join(" "));
        Self::spawn(Kind::Sockd, cmd, port, log, shown)
    }

    /// Dante's danted with its own config.
    pub fn danted(dir: &Path) -> Result<Server, String> {
        let bin =
            find_program("danted").ok_or("danted not found (apt-get install dante-server)")?;
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        let log = dir.join("danted.log");
        let conf = dir.join("danted.conf");
        fs::write(
            &conf,
            format!(
                "# socks-bench: loopback only, no authentication, log like sockd\n\
                 logoutput: stderr\n\
                 internal: 127.0.0.1 port = {port}\n\
                 external: 127.0.0.1\n\
                 clientmethod: none\n\
                 socksmethod: none\n\
                 user.privileged: root\n\
                 user.unprivileged: nobody\n\
                 client pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  log: error\n}}\n\
                 socks pass {{\n  from: 127.0.0.0/8 to: 127.0.0.0/8\n  \
                 log: connect disconnect error\n}}\n"
            ),
        )
        .map_err(|e| format!("write {}: {e}", conf.display()))?;
        let mut cmd = Command::new(&bin);
        cmd.args(["-f", &conf.display().to_string()]);
        cmd.args(["-p", &dir.join("danted.pid").display().to_string(), "-N", "1"]);
        Self::spawn(Kind::Danted, cmd, port, log, version_of(&bin, "-v"))
    }

    /// microsocks `-i 127.0.0.1 -p PORT`.
    pub fn microsocks(dir: &Path) -> Result<Server, String> {
        let bin = find_program("microsocks")
            .ok_or("microsocks not found (apt-get install microsocks)")?;
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        let mut cmd = Command::new(&bin);
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        Self::spawn(
            Kind::Microsocks,
            cmd,
            port,
            dir.join("microsocks.log"),
            bin.display().to_string(),
        )
    }

    fn spawn(
        kind: Kind,
        mut cmd: Command,
        port: u16,
        log: PathBuf,
        version: String,
    ) -> Result<Server, String> {
        let out = File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("dup log: {e}"))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().map_err(|e| format!("start {}: {e}", kind.name()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut server =
            Server { kind, addr: Some(addr), child: Some(child), log: Some(log), version };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(addr).is_ok() {
                // Dante forks its children after binding; let them settle.
                thread::sleep(Duration::from_millis(200));
                return Ok(server);
            }
            if let Some(child) = server.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    server.child = None;
                    return Err(format!(
                        "{} exited at start ({status}); its output: {}",
                        kind.name(),
                        server.log_tail()
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not listen on {addr} within 10 s", kind.name()));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The main process's PID.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// PIDs of the server's whole process tree.
    pub fn pids(&self) -> Vec<i32> {
        self.pid().map(|p| sys::tree(p).iter().map(|s| s.pid).collect()).unwrap_or_default()
    }

    /// CPU ticks of the server's process tree (0 for direct).
    pub fn cpu_ticks(&self) -> u64 {
        self.pid().map(sys::tree_cpu_ticks).unwrap_or(0)
    }

    /// The route a client takes to a destination through this server.
    pub fn route(&self) -> Route {
        match self.addr {
            Some(a) => Route::Socks5(a),
            None => Route::Direct,
        }
    }

    /// Lines of the log containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .map(|t| t.lines().filter(|l| l.contains(needle)).count())
            .unwrap_or(0)
    }

    fn log_tail(&self) -> String {
        let text = self.log.as_ref().and_then(|p| fs::read_to_string(p).ok()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// SIGTERM to the main process and, by PID, to any descendant still there after it exits;
    /// SIGKILL after 3 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id() as i32;
        let family: Vec<i32> = sys::tree(pid).iter().map(|s| s.pid).collect();
        sys::kill(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            sys::kill(pid, libc::SIGKILL);
            let _ = child.wait();
        }
        // Children of a forking server that outlived their parent (re-parented by now).
        for &p in family.iter().skip(1) {
            if sys::stat(p).is_some_and(|s| s.ppid != pid) && is_same_program(p, self.kind) {
                sys::kill(p, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_same_program(pid: i32, kind: Kind) -> bool {
    sys::comm(pid).contains(kind.name())
}

fn version_of(bin: &Path, flag: &str) -> String {
    Command::new(bin)
        .arg(flag)
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}
