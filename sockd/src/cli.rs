//! The command line of `sockd`: every option, its default and its help text.
//! Only parsing lives here; what the options do is in `lib.rs` and the modules it calls.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// SOCKS4, SOCKS4a and SOCKS5 server for a firewall host, with a permit/deny rule file in the
/// format of the 1992 SOCKS paper.
#[derive(Debug, Clone, Parser)]
#[command(name = "sockd", version, about, long_about = None)]
pub struct Options {
    /// Rule file (permit/deny lines, first match wins, no match = deny).
    #[arg(short = 'f', long = "config", value_name = "FILE", default_value = "/etc/sockd.conf")]
    pub config: PathBuf,

    /// Address to listen on, IPv4 or IPv6 (`[::1]:1080`); repeatable. Port 0 picks a free port.
    /// Default 127.0.0.1:1080, so a fresh install is never an open proxy. Listening sockets
    /// passed by systemd (socket activation, LISTEN_FDS) replace it; giving both is an error.
    #[arg(short = 'l', long = "listen", value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,

    /// inetd mode: the client connection is on standard input; serve it, then exit.
    #[arg(long)]
    pub inetd: bool,

    /// Log to syslog (facility daemon) instead of standard error. Implied by --inetd, unless
    /// standard error is the systemd journal (JOURNAL_STREAM).
    #[arg(long)]
    pub syslog: bool,

    /// Append log lines to this file instead (any mode; useful under inetd without a syslog daemon).
    /// Created with mode 0640 if missing; a symbolic link or anything but a regular file there
    /// is refused.
    #[arg(long, value_name = "FILE", conflicts_with = "syslog")]
    pub log_file: Option<PathBuf>,

    /// Parse the rule file, print the effective rules one per line and exit; exit status 1 and
    /// the error (file:line: message) on a bad file.
    #[arg(long)]
    pub check: bool,

    /// Username/password file (`user:password` lines, `#` comments). When given, SOCKS5 clients
    /// must authenticate (RFC 1929) and SOCKS4 requests are refused.
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,

    /// Resolve host names in the rule file from this hosts-format file before the system resolver.
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,

    /// Seconds to resolve and connect to a destination (all its addresses together).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,

    /// Seconds a client has to send its whole greeting, authentication and request.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_timeout: u64,

    /// Seconds a relayed session may stay silent in both directions before it is closed; 0 = never.
    #[arg(long, value_name = "SECS", default_value_t = 7200)]
    pub idle_timeout: u64,

    /// Once one side of a relayed session has closed, seconds the other may stay silent before
    /// the session is closed (so half-closed sockets cannot pile up).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub half_close_timeout: u64,

    /// Established sessions (handshake complete) at once, all clients together; while they are
    /// all taken, new clients are refused at the door and it is logged.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_sessions: u64,

    /// Established sessions at once from one client address.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_sessions_per_client: u64,

    /// Connections still in their handshake at once (they hold no session place); when full, a
    /// new connection closes the oldest unfinished handshake of the address holding the most.
    /// Default: a quarter of --max-sessions.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_handshakes: Option<u64>,

    /// On SIGTERM or SIGINT, seconds running sessions get to finish before sockd exits.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub grace: u64,

    /// After opening the listeners (and the log and pid files), run as this user.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Write the process id to this file; removed at exit. A symbolic link or anything but a
    /// regular file there is refused.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Add NAME to the --users file with a password read from standard input, stored hashed
    /// (SHA-512 crypt), then exit.
    #[arg(long, value_name = "NAME", requires = "users")]
    pub add_user: Option<String>,

    /// Seconds a BIND waits for the inbound connection.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub bind_timeout: u64,

    /// How the relay moves bytes: `splice` (zero-copy through a pipe, Linux) or `copy`
    /// (through a user-space buffer).
    #[arg(long, value_name = "HOW", default_value = "splice", value_parser = ["splice", "copy"])]
    pub relay: String,

    /// Connections from this address block (`10.0.0.0/24`, `2001:db8::/64`, or one address) come
    /// from a load balancer and must start with a PROXY protocol header (v1 or v2) within the
    /// handshake timeout; the client address it carries is the client's for rules, limits and
    /// logs. Repeatable. See BEHIND A LOAD BALANCER in sockd(8).
    #[arg(long, value_name = "CIDR", value_parser = crate::balancer::parse_cidr)]
    pub accept_proxy_protocol: Vec<crate::balancer::Cidr>,

    /// The address UDP ASSOCIATE replies name instead of the relay's own (NAT, a balancer);
    /// the relay listens there if it is a local address, else on every local address of its
    /// family. At most one IPv4 and
    /// one IPv6 address; each applies to relays of its family.
    #[arg(long, value_name = "ADDR")]
    pub udp_advertise: Vec<std::net::IpAddr>,

    /// Threads that accept and serve connections, each with its own listening socket per
    /// address (SO_REUSEPORT) and its own connections. Default: one per CPU sockd may run on.
    /// Not with --inetd (one connection, one thread).
    #[arg(long, value_name = "N", conflicts_with = "inetd", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// Least severe messages logged: error, warn, info or debug.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: log::LevelFilter,

    /// Serve Prometheus metrics (`GET /metrics`, text format) on this address, a listener of
    /// its own, never a SOCKS one; port 0 picks a free port. Not with --inetd.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "inetd")]
    pub metrics: Option<SocketAddr>,

    /// Check RFC 1929 usernames and passwords through this PAM service (/etc/pam.d/SERVICE)
    /// instead of a users file; SOCKS5 clients must log in and SOCKS4 requests are refused.
    #[arg(long, value_name = "SERVICE", conflicts_with = "users")]
    pub pam: Option<String>,
}

/// The timeouts a session obeys, taken from the options.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Resolve plus connect to the destination.
    pub connect: Duration,
    /// Greeting, authentication and request.
    pub handshake: Duration,
    /// Silence in both directions while relaying; `None` = no limit.
    pub idle: Option<Duration>,
    /// Silence of the remaining direction once the other has closed.
    pub half_close: Duration,
    /// Waiting for the inbound connection of a BIND.
    pub bind: Duration,
}

impl Options {
    /// The listen addresses, with the safe default when none was given.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        if self.listen.is_empty() {
            vec![SocketAddr::from(([127, 0, 0, 1], 1080))]
        } else {
            self.listen.clone()
        }
    }

    /// The serving threads: `--threads`, or one per CPU this process may run on.
    pub fn threads(&self) -> usize {
        match self.threads {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// The admission limits.
    pub fn limits(&self) -> crate::context::Limits {
        let clamp = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let max_sessions = clamp(self.max_sessions);
        crate::context::Limits {
            max_sessions,
            max_per_client: clamp(self.max_sessions_per_client),
            max_handshakes: self.max_handshakes.map_or((max_sessions / 4).max(1), clamp),
        }
    }

    /// `--accept-proxy-protocol` and `--udp-advertise`.
    pub fn balancer(&self) -> crate::balancer::Settings {
        crate::balancer::Settings {
            trusted: self.accept_proxy_protocol.clone(),
            advertise: self.udp_advertise.clone(),
        }
    }

    /// The timeouts as durations.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(self.connect_timeout),
            handshake: Duration::from_secs(self.handshake_timeout),
            idle: (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout)),
            half_close: Duration::from_secs(self.half_close_timeout),
            bind: Duration::from_secs(self.bind_timeout),
        }
    }
}
