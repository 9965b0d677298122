//! The settings of a SOCKS client front end: `socks.conf` (`SOCKS_CONF`, else
//! `/etc/socks.conf`, parsed by `socks_proto::rules`) and the environment shortcuts
//! (`SOCKS_SERVER`, `SOCKS_VERSION`, `SOCKS_USERNAME`/`SOCKS_PASSWORD`, `SOCKS_TIMEOUT`,
//! `SOCKS_LOG`), as documented in socks.conf(5). No file and no `SOCKS_SERVER`: `Mode::Off`, the
//! front end does nothing. A broken configuration is not fatal: `Mode::Broken` carries the
//! message, and destinations that are not local are then refused (fail closed).
//!
//! Everything outside the process's memory comes through [`System`] (files, host names in the
//! rules, the login name, the attached networks, the host name) and [`Environment`] (the
//! variables, which the front end reads — or, in a secure-execution program, does not).
//!
//! Not here: the decision for one destination (`route`), names (`names`), printing anything
//! (the front end prints the broken-configuration message its own way).

use std::cell::OnceCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socks_proto::addr::TargetAddr;
use socks_proto::auth::Credentials;
use socks_proto::client::{ClientVersion, Identity};
use socks_proto::rules::{
    parse_server, ClientAction, ClientRules, FakeFamilies, HostsFile, Lookup, ServerSpec, Services,
    DEFAULT_FAKE_V4, DEFAULT_FAKE_V6,
};
use socks_proto::server::Command;

/// The default client config file.
pub const DEFAULT_CONF: &str = "/etc/socks.conf";
/// Names always resolved locally.
pub const HOSTS_FILE: &str = "/etc/hosts";
/// Service names in socks.conf ports.
pub const SERVICES_FILE: &str = "/etc/services";
/// Connect plus handshake, when `SOCKS_TIMEOUT` does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// What a front end reads from the system for the settings, its own way.
pub trait System {
    /// A file's text: socks.conf, /etc/hosts, /etc/services, a `*=/path` user list.
    fn read_file(&self, path: &str) -> std::io::Result<String>;
    /// The addresses of a host name written in socks.conf or `SOCKS_SERVER`; Err = reason.
    fn resolve_host(&self, name: &str) -> Result<Vec<IpAddr>, String>;
    /// The effective user's login name (asked only for `*=` lists and SOCKS4 user ids).
    fn effective_user_name(&self) -> Option<String>;
    /// The networks this host is attached to, as (address, prefix length).
    fn attached_networks(&self) -> Vec<(IpAddr, u8)>;
    /// This host's own name.
    fn host_name(&self) -> Option<String>;
}

/// `SOCKS_LOG`, most severe first; `Off` prints nothing. A level compares with its number too
/// (0 off … 4 debug), as the supervisor's log calls pass it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum LogLevel {
    /// Nothing.
    #[default]
    Off = 0,
    /// A connection could not be made as configured.
    Error = 1,
    /// Something unusual (a server skipped).
    Warn = 2,
    /// One line per proxied or denied connection.
    Info = 3,
    /// Every routing decision.
    Debug = 4,
}

impl LogLevel {
    /// Parses `SOCKS_LOG`: error, warn, info (or 1, on, yes), debug (or trace), in any case and
    /// with spaces around; anything else is off.
    pub fn parse(text: &str) -> LogLevel {
        match text.trim().to_ascii_lowercase().as_str() {
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" | "1" | "on" | "yes" => LogLevel::Info,
            "debug" | "trace" => LogLevel::Debug,
            _ => LogLevel::Off,
        }
    }

    /// The level for a number (above 4: debug).
    pub fn from_number(n: u8) -> LogLevel {
        match n {
            0 => LogLevel::Off,
            1 => LogLevel::Error,
            2 => LogLevel::Warn,
            3 => LogLevel::Info,
            _ => LogLevel::Debug,
        }
    }
}

impl PartialEq<u8> for LogLevel {
    fn eq(&self, other: &u8) -> bool {
        *self as u8 == *other
    }
}

impl PartialOrd<u8> for LogLevel {
    fn partial_cmp(&self, other: &u8) -> Option<std::cmp::Ordering> {
        (*self as u8).partial_cmp(other)
    }
}

/// What a server or a hop of a chain speaks (`Socks(version)` or `Http`), from socks-proto's
/// server entries, with `scheme()` for messages.
pub use socks_proto::rules::Protocol;

/// A hop of a chain after the first: the hop before it is asked to connect to `target`.
#[derive(Debug, Clone)]
pub struct Hop {
    /// How the hop before names it: its address when written as one, else its name (which
    /// the hop before resolves).
    pub target: TargetAddr,
    /// What it speaks.
    pub protocol: Protocol,
    /// Who we say we are to it (for HTTP, `credentials` are the Basic user and password).
    pub identity: Identity,
    /// `?pipeline` (SOCKS5 only).
    pub pipeline: bool,
    /// The hop as written, password as `***`, for messages.
    pub shown: String,
}

/// A SOCKS server (or an HTTP proxy, or a chain of them) ready to use. A single SOCKS server,
/// the common case, has `protocol` SOCKS and an empty `next`.
#[derive(Debug, Clone)]
pub struct Server {
    /// Its number in these settings (0, 1, …; every rule's copy has its own), for state a front
    /// end keeps about it, such as when it last failed.
    pub id: usize,
    /// Its addresses, tried in order.
    pub addrs: Vec<SocketAddr>,
    /// The SOCKS version (of the first hop); meaningless when `protocol` is `Http`.
    pub version: ClientVersion,
    /// What the first hop speaks (`Socks(version)`, or `Http`).
    pub protocol: Protocol,
    /// The hops after the first, in order; empty for a single server.
    pub next: Vec<Hop>,
    /// The first hop as written, password as `***`, for messages.
    pub shown: String,
    /// Who we say we are to it.
    pub identity: Identity,
    /// Whether it reads the whole SOCKS5 handshake in one write (`?pipeline`).
    pub pipeline: bool,
    /// Whether its list has `?spread` (the same on every server of a list): connections start
    /// at different servers (`order`).
    pub spread: bool,
    /// `?dynamic` (a chain's option): a hop that is down is left out and the chain tried again
    /// without it ([`Server::without_hop`]), as long as a hop remains.
    pub dynamic: bool,
}

/// The version and identity a server line that does not say gets.
struct Defaults {
    version: ClientVersion,
    identity: Identity,
}

impl Server {
    fn from_spec(id: usize, spec: &ServerSpec, spread: bool, defaults: &Defaults) -> Server {
        let protocol = protocol_of(spec, defaults);
        Server {
            id,
            addrs: spec.addrs.clone(),
            version: match protocol {
                Protocol::Socks(v) => v,
                Protocol::Http => defaults.version,
            },
            protocol,
            identity: identity_of(spec, defaults),
            pipeline: spec.pipeline,
            spread,
            dynamic: spec.dynamic,
            next: spec.next.iter().map(|hop| Hop::from_spec(hop, defaults)).collect(),
            shown: shown_hop(spec),
        }
    }

    /// Whether this is one SOCKS server (no chain, not HTTP): the only kind that can carry
    /// UDP ASSOCIATE, and the only kind the heap-free connect path speaks.
    pub fn is_single_socks(&self) -> bool {
        self.next.is_empty() && matches!(self.protocol, Protocol::Socks(_))
    }

    /// Why `command` cannot go through this entry at all (before any connection is made), if
    /// so: BIND ending at an HTTP proxy (CONNECT opens outbound tunnels only), UDP through a
    /// chain or an HTTP proxy (UDP ASSOCIATE through a chain does not exist in SOCKS5). The
    /// library and the supervisor refuse the same things.
    pub fn refusal(&self, command: Command) -> Option<&'static str> {
        if self.is_single_socks() {
            return None;
        }
        let last = self.next.last().map_or(self.protocol, |hop| hop.protocol);
        match command {
            Command::Connect => None,
            Command::Bind if last == Protocol::Http => {
                Some("BIND cannot go through an HTTP proxy (CONNECT opens outbound tunnels only)")
            }
            Command::Bind => None,
            Command::UdpAssociate => {
                Some("UDP cannot go through a chain of proxies or an HTTP proxy")
            }
        }
    }

    /// The whole entry as written (`A>B>C`), passwords as `***`, for messages.
    pub fn chain_text(&self) -> String {
        let mut text = self.shown.clone();
        for hop in &self.next {
            text.push('>');
            text.push_str(&hop.shown);
        }
        text
    }

    /// How many hops (1 for a single server).
    pub fn hop_count(&self) -> usize {
        1 + self.next.len()
    }

    /// This chain without its hop `skip` (0 = the first), for `?dynamic`: the same entry (its
    /// `id`, so its health is shared) with one hop fewer. `None` when no hop would remain, or
    /// when the first hop is left out and the second is written as a name: the library and the
    /// supervisor connect to the first hop themselves and do not resolve a later hop's name.
    pub fn without_hop(&self, skip: usize) -> Option<Server> {
        if self.next.is_empty() || skip > self.next.len() {
            return None;
        }
        let mut rest = self.clone();
        if skip > 0 {
            rest.next.remove(skip - 1);
            return Some(rest);
        }
        let second = rest.next.remove(0);
        let TargetAddr::Ip(addr) = second.target else { return None };
        rest.addrs = vec![addr];
        rest.protocol = second.protocol;
        if let Protocol::Socks(version) = second.protocol {
            rest.version = version;
        }
        rest.identity = second.identity;
        rest.pipeline = second.pipeline;
        rest.shown = second.shown;
        Some(rest)
    }

    /// How long one step of a chain may take — the connect to its first hop, or one hop's
    /// handshake — given the time `left` of `SOCKS_TIMEOUT` when the chain was started: an
    /// equal share per hop (`left / hops`), at least [`HOP_TIME_FLOOR`]; every step also ends
    /// at the overall deadline. A single server gets all of `left`.
    pub fn hop_share(&self, left: Duration) -> Duration {
        let hops = u32::try_from(self.hop_count()).unwrap_or(u32::MAX);
        if hops == 1 {
            return left;
        }
        (left / hops).max(HOP_TIME_FLOOR)
    }
}

/// The least time one hop of a chain gets before it is given up ([`Server::hop_share`]), so a
/// long chain under a short `SOCKS_TIMEOUT` still leaves each hop a round trip or two.
pub const HOP_TIME_FLOOR: Duration = Duration::from_secs(2);

impl Hop {
    fn from_spec(spec: &ServerSpec, defaults: &Defaults) -> Hop {
        let target = match spec.addrs.first() {
            Some(addr) => TargetAddr::Ip(*addr),
            None => TargetAddr::Domain(spec.host.clone(), spec.port()),
        };
        Hop {
            target,
            protocol: protocol_of(spec, defaults),
            identity: identity_of(spec, defaults),
            pipeline: spec.pipeline,
            shown: shown_hop(spec),
        }
    }
}

fn protocol_of(spec: &ServerSpec, defaults: &Defaults) -> Protocol {
    spec.protocol.unwrap_or(Protocol::Socks(defaults.version))
}

fn identity_of(spec: &ServerSpec, defaults: &Defaults) -> Identity {
    let credentials = match (&spec.username, &spec.password) {
        (Some(user), password) => Some(Credentials {
            username: user.clone(),
            password: password.clone().unwrap_or_default().into_bytes(),
        }),
        (None, _) => defaults.identity.credentials.clone(),
    };
    let user_id = spec.username.clone().unwrap_or_else(|| defaults.identity.user_id.clone());
    Identity { user_id, credentials }
}

/// One hop as written (its `Display`, passwords `***`), without the hops after it.
fn shown_hop(spec: &ServerSpec) -> String {
    ServerSpec { next: Vec::new(), dynamic: false, ..spec.clone() }.to_string()
}

/// What the configuration says to do.
#[derive(Debug)]
pub enum Mode {
    /// Nothing configured: every call passes through.
    Off,
    /// `socks.conf` rules; `servers[i]` are rule i's servers (the default ones when it named none).
    Rules { rules: ClientRules, servers: Vec<Vec<Server>> },
    /// Only `SOCKS_SERVER`: everything but local destinations goes through it.
    Everything { servers: Vec<Server>, local_networks: Vec<(IpAddr, u8)> },
    /// The configuration is broken (`message` says how): non-local destinations fail closed.
    Broken { local_networks: Vec<(IpAddr, u8)>, message: String },
}

/// How names that go through a server are faked (see `names`).
#[derive(Debug)]
pub struct NameSettings {
    /// The fake IPv4 range.
    pub fake_v4: (Ipv4Addr, u8),
    /// The fake IPv6 range.
    pub fake_v6: (Ipv6Addr, u8),
    /// What a lookup that names no family (AF_UNSPEC, or an A/AAAA choice) gets.
    pub families: FakeFamilies,
    /// /etc/hosts: names in it are always resolved locally.
    pub hosts: HostsFile,
    /// This host's own name, resolved locally too.
    pub own_host_name: Option<String>,
}

impl NameSettings {
    fn new(
        fake_v4: (Ipv4Addr, u8),
        fake_v6: (Ipv6Addr, u8),
        families: FakeFamilies,
        system: &dyn System,
    ) -> Self {
        let hosts = system.read_file(HOSTS_FILE).map(|t| HostsFile::parse(&t)).unwrap_or_default();
        NameSettings { fake_v4, fake_v6, families, hosts, own_host_name: system.host_name() }
    }
}

/// Everything the front end was told.
#[derive(Debug)]
pub struct Settings {
    /// What to do.
    pub mode: Mode,
    /// Names resolved on the far side; `None` when nothing goes through a server.
    pub names: Option<NameSettings>,
    /// Connect plus handshake limit.
    pub timeout: Duration,
    /// The local user, for `*=` lists.
    pub user: Option<String>,
    /// `SOCKS_LOG`.
    pub log: LogLevel,
}

impl Settings {
    /// Settings that do nothing (`Mode::Off`), with the default timeout.
    pub fn off() -> Settings {
        Settings {
            mode: Mode::Off,
            names: None,
            timeout: DEFAULT_TIMEOUT,
            user: None,
            log: LogLevel::Off,
        }
    }

    /// Whether `addr` is one of the servers (connections to a server are never proxied).
    pub fn is_server(&self, addr: SocketAddr) -> bool {
        let listed = |list: &[Server]| {
            list.iter()
                .flat_map(|s| s.addrs.iter())
                .any(|a| a.ip().to_canonical() == addr.ip() && a.port() == addr.port())
        };
        match &self.mode {
            Mode::Rules { servers, .. } => servers.iter().any(|l| listed(l)),
            Mode::Everything { servers, .. } => listed(servers),
            _ => false,
        }
    }
}

/// The environment variables that matter; empty ones count as unset.
#[derive(Debug, Default, Clone)]
pub struct Environment {
    /// SOCKS_CONF.
    pub conf: Option<String>,
    /// SOCKS_SERVER.
    pub server: Option<String>,
    /// SOCKS_VERSION.
    pub version: Option<String>,
    /// SOCKS_USERNAME.
    pub username: Option<String>,
    /// SOCKS_PASSWORD.
    pub password: Option<String>,
    /// SOCKS_TIMEOUT (seconds).
    pub timeout: Option<String>,
    /// SOCKS_LOG.
    pub log: Option<String>,
}

impl Environment {
    /// The variables as `var` gives them (the front end's own way of reading its environment).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Environment {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        Environment {
            conf: var("SOCKS_CONF"),
            server: var("SOCKS_SERVER"),
            version: var("SOCKS_VERSION"),
            username: var("SOCKS_USERNAME"),
            password: var("SOCKS_PASSWORD"),
            timeout: var("SOCKS_TIMEOUT"),
            log: var("SOCKS_LOG"),
        }
    }
}

/// Looks names up for the rule parser through the front end's [`System`].
struct ParserLookup<'s> {
    system: &'s dyn System,
    /// /etc/services, read only if the file names a service (it is long to parse).
    services: OnceCell<Option<Services>>,
}

impl Lookup for ParserLookup<'_> {
    fn host(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        self.system.resolve_host(name)
    }
    fn service(&self, name: &str) -> Option<u16> {
        let services = self
            .services
            .get_or_init(|| self.system.read_file(SERVICES_FILE).ok().map(|t| Services::parse(&t)));
        services.as_ref()?.tcp_port(name)
    }
    fn read_file(&self, path: &str) -> Result<String, String> {
        self.system.read_file(path).map_err(|e| e.to_string())
    }
}

/// Builds the settings from an environment and the files it names.
pub fn load(env: &Environment, system: &dyn System) -> Settings {
    let log = env.log.as_deref().map_or(LogLevel::Off, LogLevel::parse);
    let timeout = match env.timeout.as_deref().map(str::parse::<f64>) {
        Some(Ok(secs)) if secs > 0.0 && secs < 86_400.0 => Duration::from_secs_f64(secs),
        _ => DEFAULT_TIMEOUT,
    };
    let broken = |message: String| Settings {
        mode: Mode::Broken { local_networks: system.attached_networks(), message },
        names: None,
        timeout,
        user: None,
        log,
    };
    let conf_path = match (&env.conf, &env.server) {
        (Some(path), _) => Some(path.as_str()),
        // SOCKS_SERVER alone is a one-off: the system-wide file does not apply.
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_CONF),
    };
    let conf_text = match conf_path {
        None => None,
        Some(path) => match system.read_file(path) {
            Ok(text) => Some((path, text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && env.conf.is_none() => None,
            Err(e) => return broken(format!("{path}: {e}")),
        },
    };
    if conf_text.is_none() && env.server.is_none() {
        return Settings { mode: Mode::Off, names: None, timeout, user: None, log };
    }
    match build(env, conf_text, system) {
        Ok((mode, user)) => {
            let names = match &mode {
                Mode::Rules { rules, .. } => Some(NameSettings::new(
                    rules.fake_v4,
                    rules.fake_v6,
                    rules.fake_families,
                    system,
                )),
                Mode::Everything { .. } => Some(NameSettings::new(
                    DEFAULT_FAKE_V4,
                    DEFAULT_FAKE_V6,
                    FakeFamilies::Ipv4,
                    system,
                )),
                Mode::Off | Mode::Broken { .. } => None,
            };
            Settings { mode, names, timeout, user, log }
        }
        Err(message) => broken(message),
    }
}

fn build(
    env: &Environment,
    conf: Option<(&str, String)>,
    system: &dyn System,
) -> Result<(Mode, Option<String>), String> {
    let version = match env.version.as_deref() {
        None | Some("5") | Some("socks5") => ClientVersion::Socks5,
        Some("4") | Some("socks4") => ClientVersion::Socks4,
        Some("4a") | Some("socks4a") => ClientVersion::Socks4a,
        Some(other) => return Err(format!("SOCKS_VERSION={other}: expected 4, 4a or 5")),
    };
    let lookup = ParserLookup { system, services: OnceCell::new() };
    let default_spec = match &env.server {
        None => None,
        Some(text) => {
            Some(parse_server(text, &lookup).map_err(|e| format!("SOCKS_SERVER={text}: {e}"))?)
        }
    };
    let rules = match &conf {
        Some((path, text)) => {
            Some(ClientRules::parse(path, text, &lookup).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    // The login name costs a user-database lookup: only for `*=` lists and SOCKS4 user ids.
    let socks4 = |spec: &ServerSpec| {
        spec.hops().any(|hop| {
            matches!(
                hop.protocol.unwrap_or(Protocol::Socks(version)),
                Protocol::Socks(ClientVersion::Socks4 | ClientVersion::Socks4a)
            )
        })
    };
    let needs_user = default_spec.as_ref().is_some_and(socks4)
        || rules.as_ref().is_some_and(|r| {
            r.rules.iter().any(|rule| rule.users.is_some() || rule.servers.iter().any(socks4))
        });
    let user = if needs_user { system.effective_user_name() } else { None };
    let credentials = env.username.as_ref().map(|name| Credentials {
        username: name.clone(),
        password: env.password.clone().unwrap_or_default().into_bytes(),
    });
    let user_id = env.username.clone().or_else(|| user.clone()).unwrap_or_default();
    let defaults = Defaults { version, identity: Identity { user_id, credentials } };
    let mut next_id = 0;
    let mut server = |spec: &ServerSpec, spread: bool| {
        next_id += 1;
        Server::from_spec(next_id - 1, spec, spread, &defaults)
    };
    let (Some((path, _)), Some(rules)) = (conf, rules) else {
        let servers = default_spec.iter().map(|spec| server(spec, false)).collect();
        let local_networks = system.attached_networks();
        return Ok((Mode::Everything { servers, local_networks }, user));
    };
    let mut servers = Vec::with_capacity(rules.rules.len());
    for rule in &rules.rules {
        let (specs, spread): (Vec<&ServerSpec>, bool) = match (rule.action, &default_spec) {
            (ClientAction::Proxy, _) if !rule.servers.is_empty() => {
                (rule.servers.iter().collect(), rule.spread)
            }
            (ClientAction::Proxy, Some(spec)) => (vec![spec], false),
            (ClientAction::Proxy, None) => {
                return Err(format!(
                    "{path}:{}: `sockd` line without @=server and no SOCKS_SERVER set",
                    rule.line
                ))
            }
            _ => (Vec::new(), false),
        };
        servers.push(specs.into_iter().map(|spec| server(spec, spread)).collect());
    }
    Ok((Mode::Rules { rules, servers }, user))
}

/// A [`System`] in memory, for the unit tests of this crate.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::collections::HashMap;

    /// Files by path; host names `*.test` resolve to 192.0.2.99; attached to 10.0.0.0/8.
    #[derive(Debug, Default)]
    pub(crate) struct Memory {
        pub files: HashMap<String, String>,
        pub host_name: Option<String>,
    }

    impl Memory {
        pub(crate) fn with(files: &[(&str, &str)]) -> Memory {
            let files = files.iter().map(|&(p, t)| (p.to_owned(), t.to_owned())).collect();
            Memory { files, host_name: Some("workstation".into()) }
        }
    }

    impl System for Memory {
        fn read_file(&self, path: &str) -> std::io::Result<String> {
            self.files.get(path).cloned().ok_or_else(|| std::io::ErrorKind::NotFound.into())
        }
        fn resolve_host(&self, name: &str) -> Result<Vec<IpAddr>, String> {
            match name.ends_with(".test") {
                true => Ok(vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99))]),
                false => Err(format!("{name}: unknown host")),
            }
        }
        fn effective_user_name(&self) -> Option<String> {
            Some("alice".into())
        }
        fn attached_networks(&self) -> Vec<(IpAddr, u8)> {
            vec![(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 8)]
        }
        fn host_name(&self) -> Option<String> {
            self.host_name.clone()
        }
    }

    /// The settings for `conf` (as /t/socks.conf, with /etc/hosts naming `printer`) with `SOCKS_SERVER=192.0.2.1:1080`.
    pub(crate) fn with_conf(conf: &str) -> Settings {
        let system = Memory::with(&[("/t/socks.conf", conf), (HOSTS_FILE, "10.1.1.1 printer\n")]);
        let env = Environment {
            conf: Some("/t/socks.conf".into()),
            server: Some("192.0.2.1:1080".into()),
            ..Default::default()
        };
        load(&env, &system)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Memory;
    use super::*;

    #[test]
    fn nothing_configured_is_off_and_a_named_missing_file_is_broken() {
        let none = Memory::default();
        let env =
            Environment { conf: Some("/nonexistent/socks.conf".into()), ..Default::default() };
        match load(&env, &none).mode {
            Mode::Broken { message, local_networks } => {
                assert!(message.starts_with("/nonexistent/socks.conf: "), "{message}");
                assert_eq!(local_networks.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        let off = load(&Environment::default(), &none);
        assert!(matches!(off.mode, Mode::Off) && off.names.is_none());
        let system = Memory::with(&[(DEFAULT_CONF, "sockd @=192.0.2.1:1080 0.0.0.0/0\n")]);
        assert!(matches!(load(&Environment::default(), &system).mode, Mode::Rules { .. }));
        let alone = Environment { server: Some("192.0.2.1:1080".into()), ..Default::default() };
        assert!(
            matches!(load(&alone, &system).mode, Mode::Everything { .. }),
            "SOCKS_SERVER alone ignores /etc/socks.conf"
        );
    }

    #[test]
    fn server_only() {
        let env = Environment {
            server: Some("127.0.0.1:1080".into()),
            version: Some("4a".into()),
            ..Default::default()
        };
        let settings = load(&env, &Memory::default());
        let Mode::Everything { servers, local_networks } = &settings.mode else {
            panic!("{:?}", settings.mode)
        };
        assert_eq!(servers[0].version, ClientVersion::Socks4a);
        assert_eq!(servers[0].identity.user_id, "alice", "SOCKS4 sends the login name");
        assert_eq!(local_networks.len(), 1);
        assert!(settings.is_server("127.0.0.1:1080".parse().expect("literal")));
        assert!(!settings.is_server("127.0.0.1:1081".parse().expect("literal")));
        let names = settings.names.as_ref().expect("names go through the server");
        assert_eq!(names.families, FakeFamilies::Ipv4);
    }

    #[test]
    fn rules_with_and_without_default_server() {
        let conf = "deny 198.51.100.9/32\nsockd 0.0.0.0/0\n";
        let system = Memory::with(&[("/t/socks.conf", conf)]);
        let env = Environment { conf: Some("/t/socks.conf".into()), ..Default::default() };
        let no_server = load(&env, &system);
        assert!(
            matches!(&no_server.mode, Mode::Broken { message, .. } if message.contains(":2:")),
            "{:?}",
            no_server.mode
        );
        let env = Environment {
            conf: Some("/t/socks.conf".into()),
            server: Some("socks4://192.0.2.1:1081".into()),
            timeout: Some("2.5".into()),
            log: Some(" Info ".into()),
            username: Some("bob".into()),
            ..Default::default()
        };
        let settings = load(&env, &system);
        assert_eq!(settings.timeout, Duration::from_millis(2500));
        assert_eq!(settings.log, LogLevel::Info);
        assert!(settings.log >= 3 && settings.log < 4, "a level compares with its number");
        let Mode::Rules { servers, .. } = &settings.mode else { panic!("{:?}", settings.mode) };
        assert!(servers[0].is_empty());
        assert_eq!(servers[1][0].addrs, ["192.0.2.1:1081".parse().expect("literal")]);
        assert_eq!(servers[1][0].version, ClientVersion::Socks4);
        assert_eq!(servers[1][0].identity.user_id, "bob", "SOCKS_USERNAME is the user id");
    }

    #[test]
    fn bad_values() {
        let system = Memory::default();
        let env = Environment {
            server: Some("127.0.0.1:1080".into()),
            version: Some("6".into()),
            timeout: Some("-1".into()),
            ..Default::default()
        };
        let settings = load(&env, &system);
        assert!(
            matches!(&settings.mode, Mode::Broken { message, .. } if message.contains("SOCKS_VERSION=6"))
        );
        assert_eq!(settings.timeout, DEFAULT_TIMEOUT);
        let env = Environment { server: Some("nowhere.invalid:1080".into()), ..Default::default() };
        assert!(matches!(load(&env, &system).mode, Mode::Broken { .. }), "unknown server host");
        let env = Environment { server: Some("proxy.test:1080".into()), ..Default::default() };
        assert!(load(&env, &system).is_server("192.0.2.99:1080".parse().expect("literal")));
    }

    #[test]
    fn server_ids_are_distinct() {
        let conf = "sockd 192.0.2.0/24\nsockd @=198.51.100.1:1080,198.51.100.2:1080 0.0.0.0/0\n";
        let system = Memory::with(&[("/t/socks.conf", conf)]);
        let env = Environment {
            conf: Some("/t/socks.conf".into()),
            server: Some("192.0.2.1:1080".into()),
            ..Default::default()
        };
        let Mode::Rules { servers, .. } = load(&env, &system).mode else { panic!() };
        let ids: Vec<usize> = servers.iter().flatten().map(|s| s.id).collect();
        assert_eq!(ids, [0, 1, 2]);
    }

    #[test]
    fn level_names_and_numbers() {
        assert_eq!(LogLevel::parse("WARNING"), LogLevel::Warn);
        assert_eq!(LogLevel::parse("trace"), LogLevel::Debug);
        assert_eq!(LogLevel::parse("loud"), LogLevel::Off);
        assert_eq!(LogLevel::from_number(9), LogLevel::Debug);
        assert!(LogLevel::Error == 1 && LogLevel::Off < 1);
    }

    #[test]
    fn chains_become_hops() {
        let conf = "sockd @=socks5://u:pw@jump.test:1081>socks4a://10.9.9.9:1080>http://a:b@proxy.corp:3128,http://proxy.test 0.0.0.0/0\n";
        let settings = testing::with_conf(conf);
        let Mode::Rules { servers, .. } = &settings.mode else { panic!("{:?}", settings.mode) };
        let chain = &servers[0][0];
        assert_eq!(chain.hop_count(), 3);
        assert!(!chain.is_single_socks());
        assert_eq!(chain.protocol, Protocol::Socks(ClientVersion::Socks5));
        assert_eq!(chain.addrs, ["192.0.2.99:1081".parse().expect("literal")]);
        assert_eq!(chain.next[0].protocol, Protocol::Socks(ClientVersion::Socks4a));
        assert_eq!(chain.next[0].target, TargetAddr::Ip("10.9.9.9:1080".parse().expect("literal")));
        assert_eq!(chain.next[1].protocol, Protocol::Http);
        assert_eq!(chain.next[1].target, TargetAddr::Domain("proxy.corp".into(), 3128));
        let creds = chain.next[1].identity.credentials.as_ref().expect("Basic credentials");
        assert_eq!((creds.username.as_str(), creds.password.as_slice()), ("a", &b"b"[..]));
        assert_eq!(
            chain.chain_text(),
            "socks5://u:***@jump.test:1081>socks4a://10.9.9.9:1080>http://a:***@proxy.corp:3128"
        );
        let http = &servers[0][1];
        assert_eq!((http.protocol, http.hop_count()), (Protocol::Http, 1));
        assert_eq!(http.addrs, ["192.0.2.99:8080".parse().expect("literal")]);
        assert!(!http.is_single_socks(), "an HTTP proxy carries no UDP");
        assert!(settings.is_server("192.0.2.99:1081".parse().expect("literal")));
        let env = Environment {
            server: Some("jump.test>http://proxy.corp:3128".into()),
            ..Default::default()
        };
        let Mode::Everything { servers, .. } = load(&env, &Memory::default()).mode else {
            panic!("SOCKS_SERVER takes a chain")
        };
        assert_eq!(servers[0].hop_count(), 2);
    }

    #[test]
    fn a_dynamic_chain_without_a_hop() {
        let env = Environment {
            server: Some("192.0.2.1:1080>socks4a://192.0.2.2:1081>hop3.far:1080?dynamic".into()),
            ..Default::default()
        };
        let settings = load(&env, &Memory::default());
        let Mode::Everything { servers, .. } = &settings.mode else {
            panic!("{:?}", settings.mode)
        };
        let chain = &servers[0];
        assert!(chain.dynamic);
        assert_eq!(chain.shown, "192.0.2.1:1080", "?dynamic is the chain's, not the first hop's");
        let no_middle = chain.without_hop(1).expect("two hops remain");
        assert_eq!(no_middle.chain_text(), "192.0.2.1:1080>hop3.far:1080");
        assert_eq!(no_middle.id, chain.id, "the same entry");
        let no_first = chain.without_hop(0).expect("the second hop is an address");
        assert_eq!(no_first.addrs, ["192.0.2.2:1081".parse().expect("literal")]);
        assert_eq!(no_first.protocol, Protocol::Socks(ClientVersion::Socks4a));
        assert_eq!(no_first.chain_text(), "socks4a://192.0.2.2:1081>hop3.far:1080");
        assert!(no_first.without_hop(0).is_none(), "hop3.far is a name: not a first hop");
        let last = no_middle.without_hop(1).expect("one hop remains");
        assert!(last.without_hop(0).is_none(), "at least one hop remains");
        assert_eq!(last.hop_count(), 1);
    }
}
