//! `socks-supervise --explain DEST[:PORT]` and `socks-supervise --check` (what `socksify
//! --explain` and `socksify --check` run): the configuration a supervised or preloaded program
//! would get (`SOCKS_CONF` or /etc/socks.conf, `SOCKS_SERVER`, …, loaded by `socks_client`, the
//! library's own code), explained for one destination, or only checked.
//!
//! `--explain` connects nowhere and sends no DNS query: files are read with std, and a host
//! name written in socks.conf or `SOCKS_SERVER` is looked up in /etc/hosts only (one that is not
//! there stands for 0.0.0.0 and is listed as not resolved). It prints what was read, the
//! socks.conf line that decides (file:line and its canonical text), the route (direct, deny,
//! or the servers in the order they are tried, a chain hop by hop) and, for a host name, whether it is resolved
//! locally (and why) or sent to the server by name behind a fake address. The decision itself is
//! `socks_client::route` and `socks_client::names::plan`, as in a real run; this file only
//! finds the line and the reasons around them.
//!
//! Not here: running a program (`supervise`), the `--check-conf FILE` listing of `main`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use socks_client::names::{self, NamePlan};
use socks_client::settings::{Environment, Mode, Server, Settings, HOSTS_FILE};
use socks_client::{route, route_name, Route};
use socks_proto::rules::{ClientAction, ClientRule, Destination, HostsFile};

use crate::sys;

/// The usage lines of the two options.
pub const USAGE: &str = "usage: socks-supervise [-c CONF] [-s SERVER] --explain DEST[:PORT]
  which socks.conf line decides for DEST (an address or a host name) and the route it gets,
  without connecting anywhere or querying DNS
usage: socks-supervise [-c CONF] [-s SERVER] --check
  loads the configuration as a run would; prints a one-line summary, or `file:line: message`
  (exit status 1)";

/// `--explain` / `--check` with the option's argument, under the environment `main` built
/// (the `SOCKS_*` variables, `-c` and `-s` applied).
pub fn dispatch(option: &str, argument: Option<std::ffi::OsString>, env: &Environment) -> ExitCode {
    match (option, argument.as_ref().and_then(|a| a.to_str())) {
        ("--check", None) => check(env),
        ("--explain", Some(dest)) => match Dest::parse(dest) {
            Ok(dest) => {
                print!("{}", explain(env, &dest));
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("socks-supervise: --explain {dest}: {message}\n{USAGE}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("socks-supervise: {option}: wrong arguments\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `--check`: the configuration as a run loads it (host names resolved as a run resolves
/// them). One line on stdout and status 0, or the parser's `file:line: message` on stderr and
/// status 1.
fn check(env: &Environment) -> ExitCode {
    let settings = crate::config::load(env);
    match &settings.mode {
        Mode::Broken { message, .. } => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
        Mode::Off => println!(
            "no configuration ({} not found, SOCKS_SERVER not set): programs run unchanged",
            env.conf.as_deref().unwrap_or(socks_client::settings::DEFAULT_CONF)
        ),
        Mode::Everything { .. } => println!(
            "SOCKS_SERVER={}: OK, everything that is not local goes through it",
            env.server.as_deref().unwrap_or_default()
        ),
        Mode::Rules { rules, .. } => println!(
            "{}: {} rules, syntax OK{}",
            rules.file,
            rules.rules.len(),
            env.server
                .as_deref()
                .map(|s| format!(" (default server SOCKS_SERVER={s})"))
                .unwrap_or_default()
        ),
    }
    ExitCode::SUCCESS
}

/// What `--explain` was asked about.
#[derive(Debug, PartialEq)]
enum Dest {
    /// An address, with the port if one was given.
    Addr(IpAddr, Option<u16>),
    /// A host name, with the port if one was given.
    Name(String, Option<u16>),
}

impl Dest {
    /// `ADDR`, `ADDR:PORT`, `[IPV6]:PORT`, a bare IPv6 address, `NAME` or `NAME:PORT`.
    fn parse(text: &str) -> Result<Dest, String> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Dest::Addr(ip, None));
        }
        if let Ok(sa) = text.parse::<SocketAddr>() {
            return Ok(Dest::Addr(sa.ip(), Some(sa.port())));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => {
                (host, Some(port.parse::<u16>().map_err(|_| format!("bad port {port:?}"))?))
            }
            None => (text, None),
        };
        let bad = |c: char| c.is_whitespace() || c.is_control() || "/[]:@".contains(c);
        if host.is_empty() || host.len() > names::NAME_MAX || host.contains(bad) {
            return Err("not an address or a host name".into());
        }
        Ok(Dest::Name(host.to_owned(), port))
    }
}

/// The system as `--explain` sees it: std for files, /etc/hosts for names, and a record of
/// what was read.
struct QuietSystem {
    hosts: HostsFile,
    /// Files read, in order (once each).
    read: RefCell<Vec<String>>,
    /// Names not in /etc/hosts (standing for 0.0.0.0).
    unresolved: RefCell<Vec<String>>,
}

impl socks_client::System for QuietSystem {
    fn read_file(&self, path: &str) -> std::io::Result<String> {
        let result = std::fs::read_to_string(path);
        let mut read = self.read.borrow_mut();
        let note = match &result {
            Ok(_) => path.to_owned(),
            Err(e) => format!("{path} ({e})"),
        };
        if !read.contains(&note) {
            read.push(note);
        }
        result
    }
    fn resolve_host(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let found = self.hosts.lookup(name);
        if !found.is_empty() {
            return Ok(found);
        }
        self.unresolved.borrow_mut().push(name.to_owned());
        Ok(vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)])
    }
    fn effective_user_name(&self) -> Option<String> {
        sys::effective_user_name()
    }
    fn attached_networks(&self) -> Vec<(IpAddr, u8)> {
        sys::attached_networks()
    }
    fn host_name(&self) -> Option<String> {
        sys::host_name()
    }
}

/// The whole `--explain` text for `dest`.
fn explain(env: &Environment, dest: &Dest) -> String {
    let hosts_text = std::fs::read_to_string(HOSTS_FILE).unwrap_or_default();
    let system = QuietSystem {
        hosts: HostsFile::parse(&hosts_text),
        read: RefCell::new(Vec::new()),
        unresolved: RefCell::new(Vec::new()),
    };
    let settings = socks_client::load(env, &system);
    let mut out = String::new();
    let o = &mut out;
    // Writing to a String cannot fail: the `fmt::Result`s below are always Ok.
    let _ = writeln!(o, "environment: {}", environment_text(env));
    let _ = writeln!(o, "read: {}", system.read.borrow().join(", "));
    if !system.unresolved.borrow().is_empty() {
        let _ = writeln!(
            o,
            "not resolved (not in {HOSTS_FILE}; --explain sends no DNS query, they stand for \
             0.0.0.0 here): {}",
            system.unresolved.borrow().join(", ")
        );
    }
    let _ = writeln!(o, "configuration: {}", mode_text(env, &settings));
    match dest {
        Dest::Addr(ip, port) => {
            let _ = writeln!(o, "destination: address {}", with_port(*ip, *port));
            explain_addr(o, env, &settings, *ip, *port);
        }
        Dest::Name(name, port) => {
            let _ = writeln!(
                o,
                "destination: name {name}{}",
                port.map(|p| format!(" port {p}")).unwrap_or_default()
            );
            explain_name(o, env, &settings, name, *port);
        }
    }
    out
}

fn with_port(ip: IpAddr, port: Option<u16>) -> String {
    match port {
        Some(p) => SocketAddr::new(ip, p).to_string(),
        None => {
            format!("{ip} (no port given: port 0, which a line's port condition never matches)")
        }
    }
}

/// The `SOCKS_*` variables that are set (the password as `***`).
fn environment_text(env: &Environment) -> String {
    let vars = [
        ("SOCKS_CONF", env.conf.as_deref()),
        ("SOCKS_SERVER", env.server.as_deref()),
        ("SOCKS_VERSION", env.version.as_deref()),
        ("SOCKS_USERNAME", env.username.as_deref()),
        ("SOCKS_PASSWORD", env.password.as_ref().map(|_| "***")),
        ("SOCKS_TIMEOUT", env.timeout.as_deref()),
    ];
    let set: Vec<String> =
        vars.iter().filter_map(|(n, v)| v.map(|v| format!("{n}={}", redact(v)))).collect();
    if set.is_empty() {
        "no SOCKS_* variable set".into()
    } else {
        set.join(" ")
    }
}

/// A server URL with its password (`user:PASSWORD@`) as `***`.
fn redact(value: &str) -> String {
    if value.contains('>') {
        return value.split('>').map(redact).collect::<Vec<_>>().join(">");
    }
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), value),
    };
    match rest
        .rsplit_once('@')
        .and_then(|(userinfo, host)| Some((userinfo.split_once(':')?.0, host)))
    {
        Some((user, host)) => format!("{scheme}{user}:***@{host}"),
        None => value.to_owned(),
    }
}

fn mode_text(env: &Environment, settings: &Settings) -> String {
    match &settings.mode {
        Mode::Off => format!(
            "none ({} not found and SOCKS_SERVER not set): every connection goes direct",
            env.conf.as_deref().unwrap_or(socks_client::settings::DEFAULT_CONF)
        ),
        Mode::Broken { message, .. } => {
            format!("BROKEN: {message}; destinations that are not local are refused")
        }
        Mode::Everything { .. } => {
            "SOCKS_SERVER only: everything that is not local goes through it".into()
        }
        Mode::Rules { rules, .. } => {
            format!(
                "{} ({} lines, first match wins, no match: direct)",
                rules.file,
                rules.rules.len()
            )
        }
    }
}

/// The line and the route for an address.
fn explain_addr(
    o: &mut String,
    env: &Environment,
    settings: &Settings,
    ip: IpAddr,
    port: Option<u16>,
) {
    let dst = SocketAddr::new(ip.to_canonical(), port.unwrap_or(0));
    let rule = match &settings.mode {
        Mode::Rules { rules, .. } => rules.decide(dst.ip(), dst.port(), settings.user.as_deref()),
        _ => None,
    };
    write_line(o, settings, rule);
    let why = override_reason(settings, dst, rule);
    write_route(o, env, rule, route(settings, dst), why);
}

/// Why the route is not simply the line's: the server's own address, loopback under a
/// catch-all, a local address with `SOCKS_SERVER` only or a broken file.
fn override_reason(
    settings: &Settings,
    dst: SocketAddr,
    rule: Option<&ClientRule>,
) -> Option<&'static str> {
    let ip = dst.ip();
    match &settings.mode {
        Mode::Off => None,
        Mode::Broken { .. } => {
            Some("a broken configuration refuses all but loopback and attached networks")
        }
        _ if settings.is_server(dst) => Some("the address of a SOCKS server always goes direct"),
        Mode::Everything { .. } => (ip.is_loopback() || ip.is_unspecified())
            .then_some("loopback goes direct")
            .or(Some("with SOCKS_SERVER only, loopback and the attached networks go direct")),
        Mode::Rules { .. } => {
            let catch_all = rule.is_some_and(|r| {
                r.action == ClientAction::Proxy
                    && matches!(&r.dst, Destination::Net(n) if n.nets().iter().any(|n| n.prefix_len() == Some(0)))
            });
            (catch_all && (ip.is_loopback() || ip.is_unspecified()))
                .then_some("loopback is proxied only by a line that names it, not by a catch-all")
        }
    }
}

fn write_line(o: &mut String, settings: &Settings, rule: Option<&ClientRule>) {
    if let Mode::Rules { rules, .. } = &settings.mode {
        let _ = match rule {
            Some(rule) => writeln!(o, "line: {}:{}: {rule}", rules.file, rule.line),
            None => writeln!(o, "line: none matches (no match: direct)"),
        };
    }
}

/// `route: …` and, for servers, one line each in the order a connection tries them.
fn write_route(
    o: &mut String,
    env: &Environment,
    rule: Option<&ClientRule>,
    route: Route<'_>,
    why: Option<&str>,
) {
    let because = why.map(|w| format!(" ({w})")).unwrap_or_default();
    let _ = match route {
        Route::Direct => writeln!(o, "route: direct{because}"),
        Route::Deny => writeln!(o, "route: deny (the program gets ECONNREFUSED)"),
        Route::Broken => writeln!(o, "route: refused (ECONNREFUSED){because}"),
        Route::Proxy(servers) => {
            let spread = servers.first().is_some_and(|s| s.spread);
            let order = if spread {
                "?spread: each connection starts at a different server, then the others in turn"
            } else {
                "in order, the first that answers"
            };
            let _ = writeln!(o, "route: through {} server(s), {order}", servers.len());
            for (i, server) in servers.iter().enumerate() {
                let written = rule
                    .and_then(|r| r.servers.get(i).map(ToString::to_string))
                    .or_else(|| env.server.as_deref().map(redact));
                let _ = writeln!(o, "  {}. {}", i + 1, server_text(server, written.as_deref()));
            }
            Ok(())
        }
    };
}

fn server_text(server: &Server, written: Option<&str>) -> String {
    let addrs: Vec<String> = server.addrs.iter().map(ToString::to_string).collect();
    let mut text = format!("{} {}", server.protocol.scheme(), addrs.join(" "));
    if let Some(written) = written {
        let _ = write!(text, " (written {written})");
    }
    if server.pipeline {
        text.push_str(" ?pipeline: the whole handshake in one write");
    }
    for (i, hop) in server.next.iter().enumerate() {
        let last =
            if i + 1 == server.next.len() { "; it is asked for the destination" } else { "" };
        let _ = write!(
            text,
            "\n     hop {} of {}: {}, reached through hop {}{last}",
            i + 2,
            server.hop_count(),
            hop.shown,
            i + 1
        );
    }
    if server.dynamic {
        text.push_str(
            "\n     ?dynamic: a hop that is down is left out and the chain tried again without \
             it, while a hop remains (never direct)",
        );
    }
    text
}

/// Whether and why a name is resolved locally, then the line and the route.
fn explain_name(
    o: &mut String,
    env: &Environment,
    settings: &Settings,
    name: &str,
    port: Option<u16>,
) {
    let plan = names::plan(settings, name);
    let bare = name.strip_suffix('.').unwrap_or(name);
    let user = settings.user.as_deref();
    let domain_rule = match &settings.mode {
        Mode::Rules { rules, .. } => rules.decide_name(bare, None, user),
        _ => None,
    };
    let local_reason = match &settings.names {
        None => match &settings.mode {
            Mode::Off => "no configuration".to_owned(),
            Mode::Broken { .. } => "the configuration is broken; names are not faked".to_owned(),
            _ => "nothing goes through a server".to_owned(),
        },
        Some(_) if bare.eq_ignore_ascii_case("localhost") => "localhost".to_owned(),
        Some(n) if n.hosts.contains(bare) => format!("it is in {HOSTS_FILE}"),
        Some(n) if n.own_host_name.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(bare)) => {
            "it is this host's own name".to_owned()
        }
        Some(_) => match (domain_rule, &settings.mode) {
            (Some(rule), Mode::Rules { rules, .. }) => {
                format!("the domain line {}:{}: {rule}", rules.file, rule.line)
            }
            (None, Mode::Rules { rules, .. }) if !rules.has_proxy_rule() => {
                "no `sockd` line: nothing needs a fake address".to_owned()
            }
            (None, Mode::Rules { rules, .. }) => {
                format!("no domain line matches and `resolve {}` is set", rules.resolve)
            }
            _ => String::new(),
        },
    };
    match plan {
        NamePlan::Local => {
            let _ = writeln!(o, "name: resolved locally ({local_reason})");
            let known = settings.names.as_ref().map(|n| n.hosts.lookup(bare)).unwrap_or_default();
            match known.first() {
                Some(&ip) => {
                    let _ = writeln!(o, "address: {ip} (from {HOSTS_FILE})");
                    explain_addr(o, env, settings, ip, port);
                }
                None => {
                    let _ = match &settings.mode {
                        Mode::Off => writeln!(o, "route: direct"),
                        Mode::Broken { .. } => writeln!(
                            o,
                            "route: refused unless the resolver returns a loopback address or \
                             one on an attached network"
                        ),
                        _ => writeln!(
                            o,
                            "route: decided by the address the resolver returns (run --explain \
                             with that address)"
                        ),
                    };
                }
            }
            return;
        }
        NamePlan::Fake => {
            let _ = writeln!(
                o,
                "name: sent to the server by name (the program gets a fake address; no local \
                 DNS query){}",
                domain_rule.map(|_| "").unwrap_or(match &settings.mode {
                    Mode::Everything { .. } =>
                        ", as with SOCKS_SERVER every name that is not local",
                    _ =>
                        ", as `resolve remote` (the default) says for names no domain line matches",
                })
            );
        }
        NamePlan::LocalThenFake => {
            let _ = writeln!(
                o,
                "name: resolved locally first (`resolve local-then-remote`); if the resolver finds \
                 nothing, sent to the server by name behind a fake address, as follows"
            );
        }
    }
    let Some(fake) = settings.names.as_ref().and_then(|n| names::fake_v4(n, 0)) else {
        let _ = writeln!(o, "route: refused (no fake address range)");
        return;
    };
    let fake = SocketAddr::new(IpAddr::V4(fake), port.unwrap_or(0));
    let rule = match &settings.mode {
        Mode::Rules { rules, .. } => rules
            .decide_name(bare, Some(fake.port()), user)
            .or_else(|| rules.decide(fake.ip(), fake.port(), user)),
        _ => None,
    };
    write_line(o, settings, rule);
    let why = match rule {
        Some(r) if matches!(r.dst, Destination::Net(_)) => {
            Some("a fake address matches the address lines")
        }
        _ => None,
    };
    let route = route_name(settings, bare, fake);
    write_route(
        o,
        env,
        rule,
        route,
        if matches!(settings.mode, Mode::Rules { .. }) { why } else { None },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let addr = |s: &str| s.parse::<IpAddr>().expect("literal");
        assert_eq!(Dest::parse("192.0.2.7"), Ok(Dest::Addr(addr("192.0.2.7"), None)));
        assert_eq!(Dest::parse("192.0.2.7:80"), Ok(Dest::Addr(addr("192.0.2.7"), Some(80))));
        assert_eq!(Dest::parse("2001:db8::1"), Ok(Dest::Addr(addr("2001:db8::1"), None)));
        assert_eq!(
            Dest::parse("[2001:db8::1]:443"),
            Ok(Dest::Addr(addr("2001:db8::1"), Some(443)))
        );
        assert_eq!(Dest::parse("example.org"), Ok(Dest::Name("example.org".into(), None)));
        assert_eq!(Dest::parse("example.org:22"), Ok(Dest::Name("example.org".into(), Some(22))));
        for bad in ["", "a b", "x:99999", "x:", "[::1", "a/b", ":80"] {
            assert!(Dest::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact("socks5://u:secret@h:1080"), "socks5://u:***@h:1080");
        assert_eq!(redact("socks5://u@h:1080"), "socks5://u@h:1080");
        assert_eq!(redact("h:1080"), "h:1080");
        assert_eq!(redact("u:p:q@h:1080"), "u:***@h:1080");
        assert_eq!(
            redact("u:pw@a>http://v:pw2@b:3128"),
            "u:***@a>http://v:***@b:3128",
            "every hop of a chain"
        );
    }

    #[test]
    fn a_chain_is_shown_hop_by_hop() {
        let env = Environment {
            server: Some(
                "socks5://u:pw@127.0.0.1:1080>socks4a://hop2.far>http://a:b@proxy.corp:3128".into(),
            ),
            ..Environment::default()
        };
        let settings = crate::config::load(&env);
        let Mode::Everything { servers, .. } = &settings.mode else {
            panic!("{:?}", settings.mode)
        };
        let text = server_text(&servers[0], None);
        assert_eq!(
            text,
            "socks5 127.0.0.1:1080\n     hop 2 of 3: socks4a://hop2.far:1080, reached through hop 1\n     \
             hop 3 of 3: http://a:***@proxy.corp:3128, reached through hop 2; it is asked for the \
             destination"
        );
        assert!(!text.contains("pw") && !text.contains(":b@"), "{text}");
    }

    #[test]
    fn a_dynamic_chain_says_so() {
        let env = Environment {
            server: Some("127.0.0.1:1080>192.0.2.9:1080?dynamic".into()),
            ..Environment::default()
        };
        let settings = crate::config::load(&env);
        let Mode::Everything { servers, .. } = &settings.mode else {
            panic!("{:?}", settings.mode)
        };
        let text = server_text(&servers[0], None);
        assert!(text.ends_with("?dynamic: a hop that is down is left out and the chain tried again without it, while a hop remains (never direct)"), "{text}");
        let plain = Environment { server: Some("127.0.0.1:1080>192.0.2.9:1080".into()), ..env };
        let settings = crate::config::load(&plain);
        let Mode::Everything { servers, .. } = &settings.mode else {
            panic!("{:?}", settings.mode)
        };
        assert!(!server_text(&servers[0], None).contains("dynamic"));
    }
}
