//! The routing decision for one outbound TCP connection: direct, deny, or through which SOCKS
//! servers — the library's rules (shim/src/route.rs), over the supervisor's settings.
//!
//! Loopback goes direct unless a socks.conf line names it explicitly (a line whose destination
//! is narrower than "everything"); a SOCKS server's own address always goes direct; with only
//! `SOCKS_SERVER`, the networks this host is attached to go direct too. A broken configuration
//! refuses everything that is not local.
//!
//! Not here: what a host name gets (`names`).

use std::net::{IpAddr, SocketAddr};

use socks_proto::rules::{ClientAction, ClientRule, ClientRules, Destination, Net};

use crate::config::{Mode, Server, Settings};

/// What to do with a connection.
#[derive(Debug)]
pub enum Route<'a> {
    /// Connect as the program asked.
    Direct,
    /// Refuse it (ECONNREFUSED) because the configuration says so.
    Deny,
    /// Refuse it because the configuration is broken (fail closed).
    Broken,
    /// Through these servers, in order.
    Proxy(&'a [Server]),
}

/// Decides for `dst` (IPv4-mapped addresses are turned into IPv4 here).
pub fn route(settings: &Settings, dst: SocketAddr) -> Route<'_> {
    let ip = dst.ip().to_canonical();
    let dst = SocketAddr::new(ip, dst.port());
    match &settings.mode {
        Mode::Off => Route::Direct,
        Mode::Broken { local_networks, .. } => {
            if ip.is_loopback() || attached(local_networks, ip) {
                Route::Direct
            } else {
                Route::Broken
            }
        }
        _ if settings.is_server(dst) => Route::Direct,
        Mode::Everything { servers, local_networks } => {
            if ip.is_loopback() || ip.is_unspecified() || attached(local_networks, ip) {
                Route::Direct
            } else if servers.is_empty() {
                Route::Broken
            } else {
                Route::Proxy(servers)
            }
        }
        Mode::Rules { rules, servers } => {
            match rules.decide(ip, dst.port(), settings.user.as_deref()) {
                Some(rule) => rule_route(rules, servers, rule, ip),
                None => Route::Direct,
            }
        }
    }
}

/// Decides for a host name behind a fake address: a socks.conf domain line for the name, else
/// the lines that match the fake address itself (the catch-all ones), as the library does.
pub fn route_name<'a>(settings: &'a Settings, name: &str, fake: SocketAddr) -> Route<'a> {
    if let Mode::Rules { rules, servers } = &settings.mode {
        if let Some(rule) = rules.decide_name(name, Some(fake.port()), settings.user.as_deref()) {
            return rule_route(rules, servers, rule, fake.ip());
        }
    }
    route(settings, fake)
}

fn rule_route<'a>(
    rules: &ClientRules,
    servers: &'a [Vec<Server>],
    rule: &ClientRule,
    ip: IpAddr,
) -> Route<'a> {
    match rule.action {
        ClientAction::Direct => Route::Direct,
        ClientAction::Deny => Route::Deny,
        ClientAction::Proxy => {
            let everything = match &rule.dst {
                Destination::Net(net) => net.nets().iter().any(|n| n.prefix_len() == Some(0)),
                Destination::Domain(_) => false,
            };
            if (ip.is_loopback() || ip.is_unspecified()) && everything {
                return Route::Direct;
            }
            let index = rules.rules.iter().position(|r| std::ptr::eq(r, rule));
            match index.and_then(|i| servers.get(i)) {
                Some(list) if !list.is_empty() => Route::Proxy(list),
                _ => Route::Broken,
            }
        }
    }
}

/// Whether `ip` (canonical) is on one of the attached networks: `socks_proto`'s `Net` does the
/// prefix match, for networks of `ip`'s own family only (`Net` reads an IPv4 /0 as "every
/// address of both families").
fn attached(networks: &[(IpAddr, u8)], ip: IpAddr) -> bool {
    networks.iter().any(|&(net, prefix)| {
        let bits = if net.is_ipv4() { 32 } else { 128 };
        net.is_ipv4() == ip.is_ipv4()
            && Net::from_prefix(net, prefix.min(bits)).is_some_and(|n| n.matches(ip))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, Environment};

    #[test]
    fn attached_by_prefix_and_family() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("literal");
        let nets = [(ip("10.1.2.3"), 16), (ip("2001:db8::1"), 64)];
        assert!(attached(&nets, ip("10.1.200.1")));
        assert!(!attached(&nets, ip("10.2.0.1")));
        assert!(attached(&nets, ip("2001:db8::ffff")));
        assert!(!attached(&nets, ip("2001:db9::1")));
        let all_v4 = [(ip("192.0.2.1"), 0)];
        assert!(attached(&all_v4, ip("198.51.100.7")));
        assert!(!attached(&all_v4, ip("2001:db8::1")), "an IPv4 /0 is not every IPv6 address");
    }

    fn at(settings: &Settings, s: &str) -> String {
        match route(settings, s.parse().expect("literal")) {
            Route::Direct => "direct".into(),
            Route::Deny => "deny".into(),
            Route::Broken => "broken".into(),
            Route::Proxy(list) => format!("proxy {}", list[0].addrs[0]),
        }
    }

    #[test]
    fn rules_loopback_servers_and_mapped() {
        let path =
            std::env::temp_dir().join(format!("socks-supervise-route-{}.conf", std::process::id()));
        std::fs::write(
            &path,
            "deny 198.51.100.9/32\ndirect 10.0.0.0/8\nsockd 127.0.0.2/32\n\
             sockd @=192.0.2.7:1080 0.0.0.0/0\n",
        )
        .expect("temp file");
        let settings = load(&Environment {
            conf: Some(path.display().to_string()),
            server: Some("192.0.2.1:1080".into()),
            ..Default::default()
        });
        assert_eq!(at(&settings, "198.51.100.9:80"), "deny");
        assert_eq!(at(&settings, "[::ffff:198.51.100.9]:80"), "deny", "IPv4-mapped");
        assert_eq!(at(&settings, "10.1.2.3:80"), "direct");
        assert_eq!(at(&settings, "127.0.0.1:80"), "direct", "loopback under a catch-all");
        assert_eq!(at(&settings, "127.0.0.2:80"), "proxy 192.0.2.1:1080", "named loopback");
        assert_eq!(at(&settings, "198.51.100.2:80"), "proxy 192.0.2.7:1080");
        assert_eq!(at(&settings, "192.0.2.7:1080"), "direct", "the server itself");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn broken_and_off() {
        let broken = load(&Environment {
            conf: Some("/nonexistent/socks.conf".into()),
            ..Default::default()
        });
        assert_eq!(at(&broken, "198.51.100.2:80"), "broken");
        assert_eq!(at(&broken, "127.0.0.1:80"), "direct");
        let off = Settings {
            mode: Mode::Off,
            names: None,
            timeout: crate::config::DEFAULT_TIMEOUT,
            user: None,
            log: 0,
        };
        assert_eq!(at(&off, "198.51.100.2:80"), "direct");
    }
}
