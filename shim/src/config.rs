//! The library's settings, read once per process on the first connect that could need them:
//! `socks.conf` (`SOCKS_CONF`, else `/etc/socks.conf`), the environment shortcuts
//! (`SOCKS_SERVER`, `SOCKS_VERSION`, `SOCKS_USERNAME`/`SOCKS_PASSWORD`, `SOCKS_TIMEOUT`,
//! `SOCKS_LOG`), ignored entirely in secure-execution programs. No file and no environment:
//! the library does nothing. A broken configuration is reported once on stderr and makes every
//! connection that is not local fail closed.
//!
//! Not here: matching a destination (`route`) or talking to servers (`proxy`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use socks_proto::auth::Credentials;
use socks_proto::client::{ClientVersion, Identity};
use socks_proto::rules::{
    parse_server, ClientAction, ClientRules, FakeFamilies, HostsFile, Lookup, ServerSpec,
    ServerVersion, Services, DEFAULT_FAKE_V4, DEFAULT_FAKE_V6,
};

use crate::ffi::real;
use crate::log::{self, Level};

/// The default client config file.
pub const DEFAULT_CONF: &str = "/etc/socks.conf";
/// Connect plus handshake, when `SOCKS_TIMEOUT` does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a server that failed is skipped (unless every server failed).
pub const SERVER_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A SOCKS server ready to use, with its failure record.
#[derive(Debug)]
pub struct Server {
    /// Its addresses, tried in order.
    pub addrs: Vec<SocketAddr>,
    /// The protocol.
    pub version: ClientVersion,
    /// Who we say we are to it.
    pub identity: Identity,
    /// Whether it reads the whole SOCKS5 handshake in one write (`?pipeline`).
    pub pipeline: bool,
    /// Seconds since the epoch when it last failed; 0 = never.
    failed_at: AtomicU64,
}

impl Server {
    fn from_spec(spec: &ServerSpec, defaults: &Defaults) -> Server {
        let credentials = match (&spec.username, &spec.password) {
            (Some(user), password) => Some(Credentials {
                username: user.clone(),
                password: password.clone().unwrap_or_default().into_bytes(),
            }),
            (None, _) => defaults.identity.credentials.clone(),
        };
        let user_id = spec.username.clone().unwrap_or_else(|| defaults.identity.user_id.clone());
        Server {
            addrs: spec.addrs.clone(),
            version: spec.version.map_or(defaults.version, ClientVersion::from),
            identity: Identity { user_id, credentials },
            pipeline: spec.pipeline,
            failed_at: AtomicU64::new(0),
        }
    }

    /// Whether it has not failed recently.
    pub fn is_alive(&self) -> bool {
        let failed = self.failed_at.load(Ordering::Relaxed);
        failed == 0 || now_secs().saturating_sub(failed) >= SERVER_RETRY_AFTER.as_secs()
    }

    /// Records a failure to reach it.
    pub fn mark_failed(&self) {
        self.failed_at.store(now_secs().max(1), Ordering::Relaxed);
    }

    /// Records that it answered.
    pub fn mark_alive(&self) {
        self.failed_at.store(0, Ordering::Relaxed);
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
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
    /// The configuration is broken: non-local destinations fail closed.
    Broken { local_networks: Vec<(IpAddr, u8)> },
}

/// How names that go through a server are faked (see `names`).
#[derive(Debug)]
pub struct NameSettings {
    /// The fake IPv4 range.
    pub fake_v4: (Ipv4Addr, u8),
    /// The fake IPv6 range.
    pub fake_v6: (Ipv6Addr, u8),
    /// What AF_UNSPEC lookups get.
    pub families: FakeFamilies,
    /// /etc/hosts: names in it are always resolved locally.
    pub hosts: HostsFile,
    /// This host's own name, resolved locally too.
    pub own_host_name: Option<String>,
}

impl NameSettings {
    fn new(fake_v4: (Ipv4Addr, u8), fake_v6: (Ipv6Addr, u8), families: FakeFamilies) -> Self {
        let hosts =
            std::fs::read_to_string("/etc/hosts").map(|t| HostsFile::parse(&t)).unwrap_or_default();
        NameSettings { fake_v4, fake_v6, families, hosts, own_host_name: real::host_name() }
    }
}

/// Everything the library was told.
#[derive(Debug)]
pub struct Settings {
    /// What to do.
    pub mode: Mode,
    /// Remote name resolution; `None` when nothing goes through a server.
    pub names: Option<NameSettings>,
    /// Connect plus handshake limit.
    pub timeout: Duration,
    /// The local user, for `*=` lists.
    pub user: Option<String>,
}

impl Settings {
    /// Every server address, so connections to a server itself are never proxied.
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

struct Defaults {
    version: ClientVersion,
    identity: Identity,
}

/// Looks names up for the rule parser through the real libc, not our hooks.
struct LibcLookup {
    /// /etc/services, read only if the file names a service (it is long to parse).
    services: std::cell::OnceCell<Option<Services>>,
}

impl Lookup for LibcLookup {
    fn host(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        real::resolve_host(name)
    }
    fn service(&self, name: &str) -> Option<u16> {
        let services = self.services.get_or_init(|| {
            std::fs::read_to_string("/etc/services").ok().map(|t| Services::parse(&t))
        });
        services.as_ref()?.tcp_port(name)
    }
    fn read_file(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Whether the settings have been read already (without reading them).
pub fn loaded() -> bool {
    SETTINGS.get().is_some()
}

/// The settings, read on first use.
pub fn settings() -> &'static Settings {
    // (The panic hook that keeps panics off the program's stderr is set at load, in `hooks`.)
    SETTINGS.get_or_init(|| load(&Environment::of_process()))
}

/// The environment variables the library reads (none in secure-execution mode).
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
    fn of_process() -> Environment {
        if real::secure_execution() {
            return Environment::default();
        }
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
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

/// Builds the settings from an environment (and the files it names).
pub fn load(env: &Environment) -> Settings {
    log::set_level(env.log.as_deref().map_or(Level::Off, Level::parse));
    let timeout = match env.timeout.as_deref().map(str::parse::<f64>) {
        Some(Ok(secs)) if secs > 0.0 && secs < 86_400.0 => Duration::from_secs_f64(secs),
        _ => DEFAULT_TIMEOUT,
    };
    let conf_path = match (&env.conf, &env.server) {
        (Some(path), _) => Some(path.as_str()),
        // SOCKS_SERVER alone is a one-off: the system-wide file does not apply.
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_CONF),
    };
    let conf_text = match conf_path {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some((path, text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && env.conf.is_none() => None,
            Err(e) => return broken(timeout, format!("{path}: {e}")),
        },
    };
    if conf_text.is_none() && env.server.is_none() {
        return Settings { mode: Mode::Off, names: None, timeout, user: None };
    }
    match build(env, conf_text) {
        Ok((mode, user)) => {
            let names = match &mode {
                Mode::Rules { rules, .. } => {
                    Some(NameSettings::new(rules.fake_v4, rules.fake_v6, rules.fake_families))
                }
                Mode::Everything { .. } => {
                    Some(NameSettings::new(DEFAULT_FAKE_V4, DEFAULT_FAKE_V6, FakeFamilies::Ipv4))
                }
                Mode::Off | Mode::Broken { .. } => None,
            };
            Settings { mode, names, timeout, user }
        }
        Err(message) => broken(timeout, message),
    }
}

fn build(
    env: &Environment,
    conf: Option<(&str, String)>,
) -> Result<(Mode, Option<String>), String> {
    let version = match env.version.as_deref() {
        None | Some("5") | Some("socks5") => ClientVersion::Socks5,
        Some("4") | Some("socks4") => ClientVersion::Socks4,
        Some("4a") | Some("socks4a") => ClientVersion::Socks4a,
        Some(other) => return Err(format!("SOCKS_VERSION={other}: expected 4, 4a or 5")),
    };
    let lookup = LibcLookup { services: std::cell::OnceCell::new() };
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
    let socks4 = |v: Option<ServerVersion>| {
        matches!(
            v.map_or(version, ClientVersion::from),
            ClientVersion::Socks4 | ClientVersion::Socks4a
        )
    };
    let needs_user = default_spec.as_ref().is_some_and(|s| socks4(s.version))
        || rules.as_ref().is_some_and(|r| {
            r.rules
                .iter()
                .any(|rule| rule.users.is_some() || rule.servers.iter().any(|s| socks4(s.version)))
        });
    let user = if needs_user { real::effective_user_name() } else { None };
    let credentials = env.username.as_ref().map(|name| Credentials {
        username: name.clone(),
        password: env.password.clone().unwrap_or_default().into_bytes(),
    });
    let user_id = env.username.clone().or_else(|| user.clone()).unwrap_or_default();
    let defaults = Defaults { version, identity: Identity { user_id, credentials } };
    let (Some((path, _)), Some(rules)) = (conf, rules) else {
        let servers = default_spec.iter().map(|spec| Server::from_spec(spec, &defaults)).collect();
        let local_networks = real::attached_networks();
        return Ok((Mode::Everything { servers, local_networks }, user));
    };
    let mut servers = Vec::with_capacity(rules.rules.len());
    for rule in &rules.rules {
        let specs: Vec<&ServerSpec> = match (rule.action, &default_spec) {
            (ClientAction::Proxy, _) if !rule.servers.is_empty() => rule.servers.iter().collect(),
            (ClientAction::Proxy, Some(spec)) => vec![spec],
            (ClientAction::Proxy, None) => {
                return Err(format!(
                    "{path}:{}: `sockd` line without @=server and no SOCKS_SERVER set",
                    rule.line
                ))
            }
            _ => Vec::new(),
        };
        servers.push(specs.into_iter().map(|spec| Server::from_spec(spec, &defaults)).collect());
    }
    Ok((Mode::Rules { rules, servers }, user))
}

fn broken(timeout: Duration, message: String) -> Settings {
    // Asked for or not, a broken configuration is said once: connections will fail because of it.
    log::write_line(format_args!(
        "configuration error: {message}; connections that are not local will be refused"
    ));
    Settings {
        mode: Mode::Broken { local_networks: real::attached_networks() },
        names: None,
        timeout,
        user: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_conf(text: &str) -> String {
        let path = std::env::temp_dir().join(format!(
            "socks-shim-test-{}-{}.conf",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&path, text).expect("temp file");
        path.display().to_string()
    }

    #[test]
    fn nothing_configured_is_off() {
        let env =
            Environment { conf: Some("/nonexistent/socks.conf".into()), ..Default::default() };
        assert!(
            matches!(load(&env).mode, Mode::Broken { .. }),
            "an explicit missing file is an error"
        );
        let env = Environment::default();
        if !std::path::Path::new(DEFAULT_CONF).exists() {
            assert!(matches!(load(&env).mode, Mode::Off));
        }
    }

    #[test]
    fn server_only() {
        let env = Environment {
            server: Some("127.0.0.1:1080".into()),
            version: Some("4a".into()),
            ..Default::default()
        };
        let settings = load(&env);
        let Mode::Everything { servers, .. } = &settings.mode else {
            panic!("{:?}", settings.mode)
        };
        assert_eq!(servers[0].version, ClientVersion::Socks4a);
        assert!(settings.is_server("127.0.0.1:1080".parse().expect("literal")));
    }

    #[test]
    fn rules_with_and_without_default_server() {
        let path = write_conf("direct 10.0.0.0/8\nsockd 0.0.0.0/0\n");
        let env = Environment { conf: Some(path.clone()), ..Default::default() };
        assert!(matches!(load(&env).mode, Mode::Broken { .. }));
        let env = Environment {
            conf: Some(path.clone()),
            server: Some("socks5://192.0.2.1:1081".into()),
            ..Default::default()
        };
        let settings = load(&env);
        let Mode::Rules { servers, .. } = &settings.mode else { panic!("{:?}", settings.mode) };
        assert!(servers[0].is_empty());
        assert_eq!(
            servers[1][0].addrs,
            vec!["192.0.2.1:1081".parse::<SocketAddr>().expect("literal")]
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn bad_version_and_failover_clock() {
        let env = Environment {
            server: Some("127.0.0.1:1080".into()),
            version: Some("6".into()),
            ..Default::default()
        };
        assert!(matches!(load(&env).mode, Mode::Broken { .. }));
        let env = Environment { server: Some("127.0.0.1:1080".into()), ..Default::default() };
        let Mode::Everything { servers, .. } = load(&env).mode else { panic!() };
        assert!(servers[0].is_alive());
        servers[0].mark_failed();
        assert!(!servers[0].is_alive());
        servers[0].mark_alive();
        assert!(servers[0].is_alive());
    }
}
