//! What the supervisor was told: `socks.conf` (`SOCKS_CONF`, else `/etc/socks.conf`) and the
//! environment shortcuts (`SOCKS_SERVER`, `SOCKS_VERSION`, `SOCKS_USERNAME`/`SOCKS_PASSWORD`,
//! `SOCKS_TIMEOUT`, `SOCKS_LOG`), read the way libsocks.so reads them (shim/src/config.rs), with
//! the file parsed by `socks_proto::rules`. A broken configuration is not fatal: destinations
//! that are not local are then refused (fail closed), as in the library.
//!
//! Not here: the decision for one destination (`route`).
//!
//! (This duplicates the library's loader in safe code; issue 12 plans one client crate both
//! use. The library is being changed by others while this lands, so the move is left for then.)

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use socks_proto::auth::Credentials;
use socks_proto::client::{ClientVersion, Identity};
use socks_proto::rules::{
    parse_server, ClientAction, ClientRules, FakeFamilies, Lookup, ServerSpec, ServerVersion,
    Services, DEFAULT_FAKE_V4, DEFAULT_FAKE_V6,
};

use crate::names::NameSettings;
use crate::sys;

/// The default client config file.
pub const DEFAULT_CONF: &str = "/etc/socks.conf";
/// Connect plus handshake, when `SOCKS_TIMEOUT` does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// A SOCKS server ready to use.
#[derive(Debug, Clone)]
pub struct Server {
    /// Its addresses, tried in order.
    pub addrs: Vec<SocketAddr>,
    /// The protocol.
    pub version: ClientVersion,
    /// Who we say we are to it.
    pub identity: Identity,
    /// Whether it reads the whole SOCKS5 handshake in one write (`?pipeline`).
    pub pipeline: bool,
}

impl Server {
    fn from_spec(spec: &ServerSpec, version: ClientVersion, identity: &Identity) -> Server {
        let credentials = match (&spec.username, &spec.password) {
            (Some(user), password) => Some(Credentials {
                username: user.clone(),
                password: password.clone().unwrap_or_default().into_bytes(),
            }),
            (None, _) => identity.credentials.clone(),
        };
        let user_id = spec.username.clone().unwrap_or_else(|| identity.user_id.clone());
        Server {
            addrs: spec.addrs.clone(),
            version: spec.version.map_or(version, ClientVersion::from),
            identity: Identity { user_id, credentials },
            pipeline: spec.pipeline,
        }
    }
}

/// What the configuration says to do.
#[derive(Debug)]
pub enum Mode {
    /// Nothing configured: every connect runs as the program asked.
    Off,
    /// `socks.conf` rules; `servers[i]` are rule i's servers (the default ones when it named none).
    Rules { rules: ClientRules, servers: Vec<Vec<Server>> },
    /// Only `SOCKS_SERVER`: everything but local destinations goes through it.
    Everything { servers: Vec<Server>, local_networks: Vec<(IpAddr, u8)> },
    /// The configuration is broken: non-local destinations fail closed.
    Broken { local_networks: Vec<(IpAddr, u8)>, message: String },
}

/// Everything the supervisor was told.
#[derive(Debug)]
pub struct Settings {
    /// What to do.
    pub mode: Mode,
    /// Names resolved on the far side; `None` when nothing goes through a server.
    pub names: Option<crate::names::NameSettings>,
    /// Connect plus handshake limit.
    pub timeout: Duration,
    /// The local user, for `*=` lists.
    pub user: Option<String>,
    /// `SOCKS_LOG` level: 0 off, 1 error, 2 warn, 3 info, 4 debug.
    pub log: u8,
}

impl Settings {
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

/// The environment variables that matter, read once.
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
    /// This process's environment.
    pub fn of_process() -> Environment {
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

/// `SOCKS_LOG` as a level number.
fn log_level(text: Option<&str>) -> u8 {
    match text.map(str::to_ascii_lowercase).as_deref() {
        Some("error") => 1,
        Some("warn") | Some("warning") => 2,
        Some("info") | Some("1") | Some("yes") | Some("on") => 3,
        Some("debug") | Some("trace") => 4,
        _ => 0,
    }
}

/// Looks names up for the rule parser through the system resolver.
struct SystemLookup;

impl Lookup for SystemLookup {
    fn host(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        (name, 0)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| e.to_string())
    }
    fn service(&self, name: &str) -> Option<u16> {
        let text = std::fs::read_to_string("/etc/services").ok()?;
        Services::parse(&text).tcp_port(name)
    }
    fn read_file(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }
}

/// Builds the settings from an environment (and the files it names).
pub fn load(env: &Environment) -> Settings {
    let log = log_level(env.log.as_deref());
    let timeout = match env.timeout.as_deref().map(str::parse::<f64>) {
        Some(Ok(secs)) if secs > 0.0 && secs < 86_400.0 => Duration::from_secs_f64(secs),
        _ => DEFAULT_TIMEOUT,
    };
    let broken = |message: String| Settings {
        mode: Mode::Broken { local_networks: sys::attached_networks(), message },
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
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some((path, text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && env.conf.is_none() => None,
            Err(e) => return broken(format!("{path}: {e}")),
        },
    };
    if conf_text.is_none() && env.server.is_none() {
        return Settings { mode: Mode::Off, names: None, timeout, user: None, log };
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
            Settings { mode, names, timeout, user, log }
        }
        Err(message) => broken(message),
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
    let lookup = SystemLookup;
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
    let user = if needs_user { sys::effective_user_name() } else { None };
    let credentials = env.username.as_ref().map(|name| Credentials {
        username: name.clone(),
        password: env.password.clone().unwrap_or_default().into_bytes(),
    });
    let user_id = env.username.clone().or_else(|| user.clone()).unwrap_or_default();
    let identity = Identity { user_id, credentials };
    let (Some((path, _)), Some(rules)) = (conf, rules) else {
        let servers =
            default_spec.iter().map(|spec| Server::from_spec(spec, version, &identity)).collect();
        let local_networks = sys::attached_networks();
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
        servers.push(
            specs.into_iter().map(|spec| Server::from_spec(spec, version, &identity)).collect(),
        );
    }
    Ok((Mode::Rules { rules, servers }, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_conf(name: &str, text: &str) -> String {
        let path = std::env::temp_dir()
            .join(format!("socks-supervise-{}-{name}.conf", std::process::id()));
        std::fs::write(&path, text).expect("temp file");
        path.display().to_string()
    }

    #[test]
    fn off_server_rules_and_broken() {
        let off = load(&Environment { conf: Some("/nonexistent/x".into()), ..Default::default() });
        assert!(matches!(off.mode, Mode::Broken { .. }), "a named missing file is broken");
        let everything =
            load(&Environment { server: Some("192.0.2.1:1080".into()), ..Default::default() });
        match &everything.mode {
            Mode::Everything { servers, .. } => {
                assert_eq!(servers[0].addrs, ["192.0.2.1:1080".parse().expect("literal")]);
                assert_eq!(servers[0].version, ClientVersion::Socks5);
            }
            other => panic!("{other:?}"),
        }
        let conf = write_conf("rules", "deny 198.51.100.9/32\nsockd 0.0.0.0/0\n");
        let no_server = load(&Environment { conf: Some(conf.clone()), ..Default::default() });
        assert!(
            matches!(&no_server.mode, Mode::Broken { message, .. } if message.contains(":2:")),
            "{:?}",
            no_server.mode
        );
        let rules = load(&Environment {
            conf: Some(conf.clone()),
            server: Some("socks4://192.0.2.1:1081".into()),
            timeout: Some("2.5".into()),
            log: Some("info".into()),
            ..Default::default()
        });
        assert_eq!(rules.timeout, Duration::from_millis(2500));
        assert_eq!(rules.log, 3);
        match &rules.mode {
            Mode::Rules { servers, .. } => {
                assert!(servers[0].is_empty());
                assert_eq!(servers[1][0].version, ClientVersion::Socks4);
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_file(conf);
    }
}
