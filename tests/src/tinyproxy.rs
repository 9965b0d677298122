//! Debian's `tinyproxy` as an HTTP CONNECT proxy for the chain tests: run in the foreground
//! (`-d`) with its own configuration file in the lab's directory, allowing CONNECT only to the
//! ports a test names (`ConnectPort`), from the addresses it names (`Allow`), with Basic
//! authentication when asked (`BasicAuth`). Its log goes to its standard error, captured by
//! [`Daemon`].
//!
//! Not here: the chains themselves (tests/tests/chains.rs).

use std::net::SocketAddr;

use crate::{paths, Daemon, Lab, Ns, STARTUP};

/// What a tinyproxy instance is told.
#[derive(Debug, Clone)]
pub struct Tinyproxy<'a> {
    /// Where it listens, in `ns`.
    pub ns: Ns,
    /// Its address and port.
    pub listen: SocketAddr,
    /// Networks allowed to use it (`Allow`), e.g. `192.0.2.0/24`.
    pub allow: &'a [&'a str],
    /// The only ports CONNECT may reach (`ConnectPort`).
    pub connect_ports: &'a [u16],
    /// `BasicAuth USER PASSWORD`, when given.
    pub basic_auth: Option<(&'a str, &'a str)>,
}

impl Tinyproxy<'_> {
    /// Starts it (as `tinyproxy-PORT` in the test output) and waits until it listens, as seen
    /// from `seen_from`.
    pub fn start(&self, lab: &Lab, seen_from: Ns) -> Daemon {
        let program = paths::require("tinyproxy", "tinyproxy");
        let mut conf = format!(
            "# socks-e2e: an HTTP CONNECT proxy for the chain tests\n\
             Port {}\nListen {}\nTimeout 30\nMaxClients 20\nLogLevel Info\n\
             DisableViaHeader Yes\n",
            self.listen.port(),
            self.listen.ip()
        );
        for net in self.allow {
            conf.push_str(&format!("Allow {net}\n"));
        }
        for port in self.connect_ports {
            conf.push_str(&format!("ConnectPort {port}\n"));
        }
        if let Some((user, password)) = self.basic_auth {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let name = format!("tinyproxy-{}", self.listen.port());
        let file = lab.write(&format!("{name}.conf"), conf);
        let daemon = Daemon::spawn(
            lab.ns(self.ns),
            &name,
            &program,
            &["-d", "-c", &file.display().to_string()],
        );
        assert!(
            lab.net.wait_listening(seen_from, self.listen, STARTUP),
            "{name} did not listen on {} within {STARTUP:?}; its log:\n{}",
            self.listen,
            daemon.log()
        );
        daemon
    }
}
