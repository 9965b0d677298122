//! Services started per connection by Debian's `openbsd-inetd`, the way the paper ran sockd
//! and the way fingerd and telnetd still run: one inetd per namespace that needs it, with its
//! own configuration file (no `/etc/inetd.conf`), in the foreground (`-d`, which also prints
//! each connection it hands over), tracked by pid like every [`Daemon`].
//!
//! inetd writes `/run/inetd.pid` even in the foreground. So that a test never touches the host's
//! file (nor a system inetd's), it runs in a mount namespace of its own whose `/run` is an empty
//! directory of the test (`unshare --mount`, then `mount --bind`). The services it starts
//! inherit that `/run`: telnetd and login find no utmp there and record nothing on the host.
//!
//! Waiting for a service reads the kernel's socket table ([`crate::Topology::is_listening`])
//! rather than connecting, since a connection would start the service.
//!
//! Not here: what the services are asked (the tests), the sockd started standalone (`lib.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::logfile::LogFile;
use crate::{paths, Daemon, Lab, Ns, FW_INSIDE_ADDR, SOCKS_PORT, STARTUP};

/// One `stream tcp4 nowait` line of an inetd.conf.
#[derive(Debug, Clone)]
pub struct Service {
    /// Address and port inetd listens on.
    pub addr: SocketAddr,
    /// The service name from /etc/services to write instead of the port number, when given
    /// (it must name the same port).
    pub service_name: Option<String>,
    /// User the program runs as.
    pub user: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments after argv[0] (no blanks: inetd.conf splits on them).
    pub args: Vec<String>,
}

impl Service {
    /// The inetd.conf line: `ADDR:SERVICE stream tcp4 nowait USER PROGRAM ARGV0 ARGS…`, SERVICE
    /// being the port number (openbsd-inetd takes one) or the service name. `tcp4`, since the
    /// address is an IPv4 one.
    pub fn line(&self) -> String {
        let argv0 = self.program.file_name().map_or_else(
            || self.program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let service = self.service_name.clone().unwrap_or_else(|| self.addr.port().to_string());
        let mut line = format!(
            "{}:{service} stream tcp4 nowait {} {} {argv0}",
            self.addr.ip(),
            self.user,
            self.program.display()
        );
        for arg in &self.args {
            assert!(
                !arg.is_empty() && !arg.contains(char::is_whitespace),
                "inetd.conf cannot carry the argument {arg:?}"
            );
            line.push(' ');
            line.push_str(arg);
        }
        line
    }
}

/// fingerd (Debian `fingerd`) on `addr`, as `nobody`, as Debian's own inetd.conf line has it.
pub fn fingerd(addr: SocketAddr) -> Service {
    Service {
        addr,
        service_name: None,
        user: "nobody".to_owned(),
        program: paths::require("in.fingerd", "fingerd"),
        args: Vec::new(),
    }
}

/// GNU inetutils telnetd on `addr`, running `/bin/login`, or `exec_login` instead when given.
pub fn telnetd(addr: SocketAddr, exec_login: Option<&Path>) -> Service {
    let args = match exec_login {
        Some(program) => vec!["-E".to_owned(), program.display().to_string()],
        None => Vec::new(),
    };
    Service {
        addr,
        service_name: None,
        user: "root".to_owned(),
        program: paths::require("telnetd", "inetutils-telnetd"),
        args,
    }
}

/// Our sockd in inetd mode on `addr` with rule file `conf`, logging to `log`: the README's
/// `socks stream tcp nowait … sockd --inetd` line (as root here, so it may also log to a file
/// in the test's directory), with the service named `socks` when the port is 1080.
pub fn sockd(addr: SocketAddr, conf: &Path, log: &Path) -> Service {
    Service {
        addr,
        service_name: (addr.port() == SOCKS_PORT).then(|| "socks".to_owned()),
        user: "root".to_owned(),
        program: paths::sockd(),
        args: [
            "--inetd",
            "-f",
            &conf.display().to_string(),
            "--log-file",
            &log.display().to_string(),
            "--connect-timeout",
            "5",
        ]
        .map(str::to_owned)
        .to_vec(),
    }
}

/// sockd run by inetd on the firewall: inetd itself, sockd's rule file and its log.
#[derive(Debug)]
pub struct InetdSockd {
    /// openbsd-inetd in `fw`.
    pub inetd: Daemon,
    /// The rule file every sockd it starts reads.
    pub conf: PathBuf,
    /// The file every sockd it starts appends its lines to.
    pub log: LogFile,
}

impl Lab {
    /// openbsd-inetd in namespace `ns` serving `services`, once it listens on all of them.
    /// `name` labels its output and names its files in the temporary directory.
    pub fn inetd(&self, ns: Ns, name: &str, services: &[Service]) -> Daemon {
        let inetd = paths::require("inetd", "openbsd-inetd");
        let unshare = paths::require("unshare", "util-linux");
        let mount = paths::require("mount", "mount");
        let mut conf = format!("# socks-e2e: {name}, started by the test {}\n", self.name());
        for service in services {
            conf.push_str(&service.line());
            conf.push('\n');
        }
        let conf = self.write(&format!("inetd-{name}.conf"), conf);
        let run = self.dir.path().join(format!("inetd-{name}-run"));
        std::fs::create_dir_all(&run)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", run.display()));
        let daemon = Daemon::spawn(
            self.ns(ns),
            name,
            &unshare,
            &[
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                "\"$0\" --bind \"$1\" /run && shift && exec \"$@\"",
                &mount.display().to_string(),
                &run.display().to_string(),
                &inetd.display().to_string(),
                "-d",
                &conf.display().to_string(),
            ],
        );
        for service in services {
            assert!(
                self.net.wait_listener(ns, service.addr, STARTUP),
                "{}: inetd did not listen on {} within {STARTUP:?}; its log:\n{}",
                self.name(),
                service.addr,
                daemon.log()
            );
        }
        daemon
    }

    /// sockd under inetd in `fw` on 192.0.2.1:1080 with `rules`, logging to a file.
    pub fn sockd_under_inetd(&self, rules: &str) -> InetdSockd {
        let conf = self.write("sockd-inetd.conf", rules);
        let log = self.dir.path().join("sockd-inetd.log");
        let addr = SocketAddr::from((FW_INSIDE_ADDR, SOCKS_PORT));
        let inetd = self.inetd(Ns::Fw, "inetd-fw", &[sockd(addr, &conf, &log)]);
        InetdSockd { inetd, conf, log: LogFile::new("sockd under inetd", log) }
    }
}
