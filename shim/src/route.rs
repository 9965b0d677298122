//! The routing decision for one outbound TCP connection: direct, deny, or through which SOCKS
//! servers. Pure logic over the loaded settings; allocates nothing.
//!
//! Loopback goes direct unless a socks.conf line names it explicitly (a line whose destination
//! is narrower than "everything"); a SOCKS server's own address always goes direct; with only
//! `SOCKS_SERVER`, the networks this host is attached to go direct too.

use std::net::{IpAddr, SocketAddr};

use socks_proto::rules::{ClientAction, ClientRule, ClientRules, Destination};

use crate::config::{Mode, Server, Settings};

/// What to do with a connection.
#[derive(Debug)]
pub enum Route<'a> {
    /// The real connect.
    Direct,
    /// Refuse it (ECONNREFUSED) because the configuration says so.
    Deny,
    /// Refuse it because the configuration is broken (fail closed).
    Broken,
    /// Through these servers, in order.
    Proxy(&'a [Server]),
}

/// Decides for `dst` (canonical form: IPv4-mapped already turned into IPv4).
pub fn route(settings: &Settings, dst: SocketAddr) -> Route<'_> {
    let ip = dst.ip();
    match &settings.mode {
        Mode::Off => Route::Direct,
        Mode::Broken { local_networks } => {
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
/// the lines that match the fake address itself (the catch-all ones).
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

/// Whether `ip` is on one of the attached networks.
fn attached(networks: &[(IpAddr, u8)], ip: IpAddr) -> bool {
    networks.iter().any(|&(net, prefix)| same_prefix(net, ip, prefix))
}

fn same_prefix(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, Environment};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    #[test]
    fn prefixes() {
        assert!(same_prefix(ip("10.1.2.3"), ip("10.1.200.1"), 16));
        assert!(!same_prefix(ip("10.1.2.3"), ip("10.2.0.1"), 16));
        assert!(same_prefix(ip("10.1.2.3"), ip("192.0.2.1"), 0));
        assert!(same_prefix(ip("2001:db8::1"), ip("2001:db8::ffff"), 64));
        assert!(!same_prefix(ip("2001:db8::1"), ip("10.0.0.1"), 0));
    }

    #[test]
    fn rules_and_loopback() {
        let path = std::env::temp_dir().join(format!("socks-route-{}.conf", std::process::id()));
        std::fs::write(
            &path,
            "deny 192.0.2.66/32\ndirect 192.0.2.0/24\nsockd @=198.51.100.1:1080 127.0.0.2/32 eq 80\nsockd @=198.51.100.1:1080 0.0.0.0/0\n",
        )
        .expect("temp file");
        let env = Environment { conf: Some(path.display().to_string()), ..Default::default() };
        let settings = load(&env);
        let at = |s: &str| route(&settings, s.parse().expect("literal"));
        assert!(matches!(at("192.0.2.66:80"), Route::Deny));
        assert!(matches!(at("192.0.2.7:80"), Route::Direct));
        assert!(matches!(at("203.0.113.1:80"), Route::Proxy(_)));
        assert!(matches!(at("127.0.0.1:80"), Route::Direct), "loopback under a catch-all");
        assert!(matches!(at("127.0.0.2:80"), Route::Proxy(_)), "loopback named explicitly");
        assert!(matches!(at("198.51.100.1:1080"), Route::Direct), "the server itself");
        assert!(matches!(at("[2001:db8::1]:80"), Route::Proxy(_)), "0.0.0.0/0 covers IPv6 too");
        assert!(matches!(at("[::1]:80"), Route::Direct), "IPv6 loopback under a catch-all");
        assert!(matches!(at("[::]:80"), Route::Direct), "unspecified under a catch-all");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn everything_mode_skips_local() {
        let env = Environment { server: Some("198.51.100.1:1080".into()), ..Default::default() };
        let settings = load(&env);
        assert!(matches!(
            route(&settings, "127.0.0.1:80".parse().expect("literal")),
            Route::Direct
        ));
        assert!(matches!(
            route(&settings, "203.0.113.9:80".parse().expect("literal")),
            Route::Proxy(_)
        ));
        assert!(matches!(
            route(&settings, "198.51.100.1:1080".parse().expect("literal")),
            Route::Direct
        ));
    }
}
