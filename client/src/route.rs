//! The routing decision for one outbound destination: direct, deny, or through which SOCKS
//! servers. Pure logic over the settings; allocates nothing.
//!
//! Loopback goes direct unless a socks.conf line names it explicitly (a line whose destination
//! is narrower than "everything"); a SOCKS server's own address always goes direct; with only
//! `SOCKS_SERVER`, the networks this host is attached to go direct too. A broken configuration
//! refuses everything that is not local.
//!
//! Not here: what a host name gets (`names`), connecting (each front end).

use std::net::{IpAddr, SocketAddr};

use socks_proto::rules::{ClientAction, ClientRule, ClientRules, Destination};

use crate::settings::{Mode, Server, Settings};

/// What to do with a connection.
#[derive(Debug)]
pub enum Route<'a> {
    /// Connect as the program asked.
    Direct,
    /// Refuse it (ECONNREFUSED) because the configuration says so.
    Deny,
    /// Refuse it because the configuration is broken (fail closed).
    Broken,
    /// Through these servers, in order (never empty).
    Proxy(&'a [Server]),
}

/// Decides for `dst` (an IPv4-mapped address counts as the IPv4 address).
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
/// the lines that match the fake address itself (the catch-all ones).
pub fn route_name<'a>(settings: &'a Settings, name: &str, fake: SocketAddr) -> Route<'a> {
    if let Mode::Rules { rules, servers } = &settings.mode {
        if let Some(rule) = rules.decide_name(name, Some(fake.port()), settings.user.as_deref()) {
            return rule_route(rules, servers, rule, fake.ip().to_canonical());
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

/// Whether `ip` is on one of the attached networks (of its own family: an IPv4 /0 is not every
/// IPv6 address).
pub fn attached(networks: &[(IpAddr, u8)], ip: IpAddr) -> bool {
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
    use crate::settings::testing::{with_conf, Memory};
    use crate::settings::{load, Environment};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
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
    fn prefixes_by_family() {
        assert!(same_prefix(ip("10.1.2.3"), ip("10.1.200.1"), 16));
        assert!(!same_prefix(ip("10.1.2.3"), ip("10.2.0.1"), 16));
        assert!(same_prefix(ip("10.1.2.3"), ip("192.0.2.1"), 0));
        assert!(same_prefix(ip("2001:db8::1"), ip("2001:db8::ffff"), 64));
        assert!(!same_prefix(ip("2001:db8::1"), ip("2001:db9::1"), 64));
        assert!(!same_prefix(ip("2001:db8::1"), ip("10.0.0.1"), 0));
        assert!(!attached(&[(ip("192.0.2.1"), 0)], ip("2001:db8::1")), "IPv4 /0 is not IPv6");
        assert!(attached(&[(ip("192.0.2.1"), 0)], ip("198.51.100.7")));
    }

    #[test]
    fn rules_loopback_servers_and_mapped() {
        let settings = with_conf(
            "deny 192.0.2.66/32\ndirect 192.0.2.0/24\nsockd 127.0.0.2/32 eq 80\n\
             sockd @=198.51.100.1:1080 0.0.0.0/0\n",
        );
        assert_eq!(at(&settings, "192.0.2.66:80"), "deny");
        assert_eq!(at(&settings, "[::ffff:192.0.2.66]:80"), "deny", "IPv4-mapped");
        assert_eq!(at(&settings, "192.0.2.7:80"), "direct");
        assert_eq!(at(&settings, "203.0.113.1:80"), "proxy 198.51.100.1:1080");
        assert_eq!(at(&settings, "127.0.0.1:80"), "direct", "loopback under a catch-all");
        assert_eq!(at(&settings, "127.0.0.2:80"), "proxy 192.0.2.1:1080", "named loopback");
        assert_eq!(at(&settings, "127.0.0.2:81"), "direct", "port not named: the catch-all");
        assert_eq!(at(&settings, "198.51.100.1:1080"), "direct", "the server itself");
        assert_eq!(at(&settings, "[::ffff:198.51.100.1]:1080"), "direct", "the server, mapped");
        assert_eq!(at(&settings, "192.0.2.1:1080"), "direct", "the default server too");
        assert_eq!(at(&settings, "[2001:db8::1]:80"), "proxy 198.51.100.1:1080", "IPv6 too");
        assert_eq!(at(&settings, "[::1]:80"), "direct", "IPv6 loopback under a catch-all");
        assert_eq!(at(&settings, "[::]:80"), "direct", "unspecified under a catch-all");
    }

    #[test]
    fn names_by_domain_line_else_the_fake_address() {
        let settings = with_conf("direct .corp.test\ndeny .bad.test\nsockd 0.0.0.0/0\n");
        let fake: SocketAddr = "198.18.0.5:443".parse().expect("literal");
        let name = |n: &str| match route_name(&settings, n, fake) {
            Route::Direct => "direct",
            Route::Deny => "deny",
            Route::Broken => "broken",
            Route::Proxy(_) => "proxy",
        };
        assert_eq!(name("www.corp.test"), "direct");
        assert_eq!(name("x.bad.test"), "deny");
        assert_eq!(name("example.org"), "proxy");
    }

    #[test]
    fn everything_mode_skips_local() {
        let env = Environment { server: Some("198.51.100.1:1080".into()), ..Default::default() };
        let settings = load(&env, &Memory::default());
        assert_eq!(at(&settings, "127.0.0.1:80"), "direct");
        assert_eq!(at(&settings, "10.9.9.9:80"), "direct", "an attached network");
        assert_eq!(at(&settings, "0.0.0.0:80"), "direct");
        assert_eq!(at(&settings, "203.0.113.9:80"), "proxy 198.51.100.1:1080");
        assert_eq!(at(&settings, "198.51.100.1:1080"), "direct");
    }

    #[test]
    fn broken_and_off() {
        let env =
            Environment { conf: Some("/nonexistent/socks.conf".into()), ..Default::default() };
        let broken = load(&env, &Memory::default());
        assert_eq!(at(&broken, "198.51.100.2:80"), "broken");
        assert_eq!(at(&broken, "127.0.0.1:80"), "direct");
        assert_eq!(at(&broken, "10.1.2.3:80"), "direct", "attached");
        assert_eq!(at(&Settings::off(), "198.51.100.2:80"), "direct");
    }
}
