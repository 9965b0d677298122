//! Realistic workstation `socks.conf` files, parsed with the test's own hosts/services tables, and
//! the decisions the library would take from them: one in the original address-only style, one
//! that also routes host names (domain patterns and the remote-resolution settings). Plus a check
//! that `ClientRules::decide` and `ClientRules::decide_name` do not allocate (they run inside
//! `connect()` and `getaddrinfo()` of arbitrary programs).
//!
//! Not a test of the shim: destinations are plain values, nothing connects.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socks_proto::client::ClientVersion;
use socks_proto::rules::{
    ClientAction, ClientRules, ConfigError, Destination, FakeFamilies, Protocol, ResolvePolicy,
    StaticLookup, DEFAULT_FAKE_V6, DEFAULT_SERVER_PORT,
};

/// Counts allocations made by the current thread, so parallel tests do not disturb the count.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local `Cell`, which itself never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` via `alloc` above, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// A workstation inside 10.20.0.0/16 behind two firewalls, in the original client file's style
/// with today's additions mixed in.
const SOCKS_CONF: &str = r"# /etc/socks.conf -- first match wins, no match = direct
#
# Never proxy the local networks or this host.
direct 127.0.0.0 0.255.255.255
direct 10.20.0.0 0.0.255.255          # our site
direct fd00:20::/32
#
# Nobody telnets out; the interns do not leave the site at all.
deny 0.0.0.0 255.255.255.255 eq telnet
deny *=intern1,/etc/socks.interns 0.0.0.0/0
#
# The partner network: through their SOCKS4 gateway, as lloyd.
sockd @=socks4://lloyd@gw.partner.example 192.0.2.0/24
#
# Operators use the authenticated server, with an old-style fallback.
sockd *=root,oper @=socks5://oper:c0rrect%20horse@fw1.example:1081,fw2.example:socks 0.0.0.0/0
#
# Everyone else: web through the firewalls, IPv6 through the v6 proxy, the rest via $SOCKS_SERVER.
sockd @=fw1.example,[2001:db8:f::1]:1080 0.0.0.0 255.255.255.255 le https
sockd @=socks5://[2001:db8:f::1] ::/0
sockd 0.0.0.0/0
";

const HOSTS: &str = "\
192.0.2.200      gw.partner.example
203.0.113.1      fw1.example
2001:db8:f::1    fw1.example
203.0.113.2      fw2.example
";

const SERVICES: &str = "\
telnet  23/tcp
http    80/tcp  www
https   443/tcp
socks   1080/tcp
";

fn lookup() -> StaticLookup {
    StaticLookup::new(HOSTS, SERVICES).with_file("/etc/socks.interns", "# 2024\nintern2 intern3\n")
}

fn rules() -> ClientRules {
    ClientRules::parse("/etc/socks.conf", SOCKS_CONF, &lookup()).expect("the sample parses")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// (action, line) of the deciding rule; ("direct", 0) when no line matches.
fn decide(rs: &ClientRules, dst: &str, port: u16, user: Option<&str>) -> (&'static str, usize) {
    let dst: IpAddr = dst.parse().unwrap();
    rs.decide(dst, port, user).map_or(("direct", 0), |r| (r.action.keyword(), r.line))
}

#[test]
fn listing() {
    let rs = rules();
    assert_eq!(
        rs.to_string(),
        "/etc/socks.conf:4: direct 127.0.0.0/8\n\
         /etc/socks.conf:5: direct 10.20.0.0/16\n\
         /etc/socks.conf:6: direct fd00:20::/32\n\
         /etc/socks.conf:9: deny 0.0.0.0/0 eq 23\n\
         /etc/socks.conf:10: deny *=intern1,intern2,intern3 0.0.0.0/0\n\
         /etc/socks.conf:13: sockd @=socks4://lloyd@gw.partner.example:1080 192.0.2.0/24\n\
         /etc/socks.conf:16: sockd @=socks5://oper:***@fw1.example:1081,fw2.example:1080 \
         *=root,oper 0.0.0.0/0\n\
         /etc/socks.conf:19: sockd @=fw1.example:1080,[2001:db8:f::1]:1080 0.0.0.0/0 le 443\n\
         /etc/socks.conf:20: sockd @=socks5://[2001:db8:f::1]:1080 ::/0\n\
         /etc/socks.conf:21: sockd 0.0.0.0/0\n"
    );
    assert!(!format!("{rs:?}").contains("horse"), "Debug hides the password");
}

#[test]
fn local_destinations_go_direct() {
    let rs = rules();
    assert_eq!(decide(&rs, "127.0.0.1", 23, None), ("direct", 4), "before the telnet ban");
    assert_eq!(decide(&rs, "10.20.3.4", 22, Some("intern1")), ("direct", 5));
    assert_eq!(decide(&rs, "::ffff:10.20.3.4", 22, None), ("direct", 5), "v4-mapped");
    assert_eq!(decide(&rs, "fd00:20::9", 22, None), ("direct", 6));
    // Only the IPv4 loopback is listed: ::1 falls to the catch-all web line (0.0.0.0
    // 255.255.255.255 is any address); the library keeps loopback direct under a catch-all.
    assert_eq!(decide(&rs, "::1", 22, None), ("sockd", 19));
}

#[test]
fn denials() {
    let rs = rules();
    assert_eq!(decide(&rs, "198.51.100.9", 23, Some("root")), ("deny", 9));
    assert_eq!(decide(&rs, "2001:db8::9", 23, None), ("deny", 9), "the any mask covers IPv6");
    assert_eq!(decide(&rs, "2001:db8::9", 443, Some("intern2")), ("deny", 10));
    for intern in ["intern1", "intern2", "intern3"] {
        assert_eq!(decide(&rs, "198.51.100.9", 443, Some(intern)), ("deny", 10));
    }
    assert_eq!(decide(&rs, "198.51.100.9", 443, Some("intern4")), ("sockd", 19));
}

#[test]
fn partner_network_through_socks4() {
    let rs = rules();
    let r = rs.decide("192.0.2.17".parse().unwrap(), 8443, Some("root")).unwrap();
    assert_eq!((r.action, r.line), (ClientAction::Proxy, 13));
    let s = &r.servers[0];
    assert_eq!(s.protocol, Some(Protocol::Socks(ClientVersion::Socks4)));
    assert_eq!(s.username.as_deref(), Some("lloyd"));
    assert_eq!(s.password, None);
    assert_eq!(s.addrs, vec![sa("192.0.2.200:1080")]);
}

#[test]
fn operators_use_credentials_and_fallback() {
    let rs = rules();
    let r = rs.decide("198.51.100.9".parse().unwrap(), 8080, Some("oper")).unwrap();
    assert_eq!(r.line, 16);
    let [first, second] = r.servers.as_slice() else { panic!("two servers: {r}") };
    assert_eq!(first.protocol, Some(Protocol::Socks(ClientVersion::Socks5)));
    assert_eq!(first.username.as_deref(), Some("oper"));
    assert_eq!(first.password.as_deref(), Some("c0rrect horse"));
    assert_eq!(first.host, "fw1.example");
    assert_eq!(first.addrs, vec![sa("203.0.113.1:1081"), sa("[2001:db8:f::1]:1081")]);
    assert_eq!(second.protocol, None);
    assert_eq!(second.addrs, vec![sa("203.0.113.2:1080")]);
    assert_eq!(second.port(), DEFAULT_SERVER_PORT);
}

#[test]
fn everyone_else() {
    let rs = rules();
    assert_eq!(decide(&rs, "198.51.100.9", 443, None), ("sockd", 19));
    assert_eq!(decide(&rs, "198.51.100.9", 444, None), ("sockd", 21));
    let r = rs.decide("198.51.100.9".parse().unwrap(), 444, None).unwrap();
    assert!(r.servers.is_empty(), "the default server from the environment");
    // The web line's "any" covers IPv6 too; other IPv6 ports go to the v6 proxy.
    let r = rs.decide("2001:db8::9".parse().unwrap(), 443, None).unwrap();
    assert_eq!(r.line, 19);
    assert_eq!(r.servers[0].addrs, vec![sa("203.0.113.1:1080"), sa("[2001:db8:f::1]:1080")]);
    let r = rs.decide("2001:db8::9".parse().unwrap(), 8443, None).unwrap();
    assert_eq!(r.line, 20);
    assert_eq!(r.servers[0].addrs, vec![sa("[2001:db8:f::1]:1080")]);
}

/// The same site with no resolver for outside names: names are routed by domain, resolved by the
/// firewall, and the program connects to fake addresses.
const DNS_CONF: &str = r"# /etc/socks.conf -- names resolved on the far side
#
# Settings may come anywhere; these are the ones that differ from the defaults (and one that
# does not, written out for the reader).
resolve remote
fake-families both                     # getaddrinfo(AF_UNSPEC) gets an AAAA and an A
fake-range 198.18.0.0/16
#
# Our own names resolve here, and so do the networks they live on.
direct .corp.example
direct .Localdomain.
direct 127.0.0.0/8
direct 10.20.0.0/16
direct fd00:20::/32
#
# No ads, on the web ports (names only: their addresses change every day).
deny .ads.example eq http
deny .ads.example eq https
#
# The partner's names go to their SOCKS4a gateway, which resolves them.
sockd @=socks4a://lloyd@gw.partner.example .partner.example
#
# Operators reach the vendor through the authenticated server.
sockd *=root,oper @=socks5://oper:c0rrect%20horse@fw1.example:1081 .vendor.example ge 1024
#
# The rest of these domains and IPv4 (0.0.0.0/0 would be IPv6 too) via the firewalls, IPv6 via v6.
sockd @=fw1.example,fw2.example:socks .com
sockd @=fw1.example,fw2.example:socks .org
sockd @=fw1.example,fw2.example:socks ::ffff:0.0.0.0/96
sockd @=socks5://[2001:db8:f::1] ::/0
fake-range fd73:6f63:6b73:1::/64
";

fn dns_rules() -> ClientRules {
    ClientRules::parse("/etc/socks.conf", DNS_CONF, &lookup()).expect("the DNS sample parses")
}

/// (action, line) of the domain rule deciding `name`; ("none", 0) when no domain line matches.
fn decide_name(
    rs: &ClientRules,
    name: &str,
    port: Option<u16>,
    user: Option<&str>,
) -> (&'static str, usize) {
    rs.decide_name(name, port, user).map_or(("none", 0), |r| (r.action.keyword(), r.line))
}

#[test]
fn dns_listing_and_settings() {
    let rs = dns_rules();
    assert_eq!(
        rs.to_string(),
        "/etc/socks.conf:10: direct .corp.example\n\
         /etc/socks.conf:11: direct .localdomain\n\
         /etc/socks.conf:12: direct 127.0.0.0/8\n\
         /etc/socks.conf:13: direct 10.20.0.0/16\n\
         /etc/socks.conf:14: direct fd00:20::/32\n\
         /etc/socks.conf:17: deny .ads.example eq 80\n\
         /etc/socks.conf:18: deny .ads.example eq 443\n\
         /etc/socks.conf:21: sockd @=socks4a://lloyd@gw.partner.example:1080 .partner.example\n\
         /etc/socks.conf:24: sockd @=socks5://oper:***@fw1.example:1081 *=root,oper \
         .vendor.example ge 1024\n\
         /etc/socks.conf:27: sockd @=fw1.example:1080,fw2.example:1080 .com\n\
         /etc/socks.conf:28: sockd @=fw1.example:1080,fw2.example:1080 .org\n\
         /etc/socks.conf:29: sockd @=fw1.example:1080,fw2.example:1080 ::ffff:0.0.0.0/96\n\
         /etc/socks.conf:30: sockd @=socks5://[2001:db8:f::1]:1080 ::/0\n\
         /etc/socks.conf: fake-range 198.18.0.0/16\n\
         /etc/socks.conf: fake-range fd73:6f63:6b73:1::/64\n\
         /etc/socks.conf: fake-families both\n"
    );
    assert_eq!(rs.resolve, ResolvePolicy::Remote);
    assert_eq!(rs.fake_families, FakeFamilies::Both);
    assert_eq!(rs.fake_v4, (Ipv4Addr::new(198, 18, 0, 0), 16));
    assert_ne!(rs.fake_v6, DEFAULT_FAKE_V6);
    assert!(rs.has_proxy_rule());
    assert_eq!(rs.rules[0].dst, Destination::Domain("corp.example".to_owned()));
    assert!(matches!(rs.rules[2].dst, Destination::Net(_)));
    assert!(!format!("{rs:?}").contains("horse"), "Debug hides the password");
}

#[test]
fn dns_local_names_resolve_here() {
    let rs = dns_rules();
    assert_eq!(decide_name(&rs, "wiki.corp.example", None, None), ("direct", 10));
    assert_eq!(decide_name(&rs, "CORP.EXAMPLE.", Some(443), None), ("direct", 10));
    assert_eq!(decide_name(&rs, "printer.localdomain", None, Some("intern1")), ("direct", 11));
    assert_eq!(decide_name(&rs, "localhost", None, None), ("none", 0), "left to the caller");
    assert_eq!(decide_name(&rs, "10.20.1.1", None, None), ("none", 0), "addresses are not names");
}

#[test]
fn dns_ads_refused_on_web_ports() {
    let rs = dns_rules();
    assert_eq!(decide_name(&rs, "t.ads.example", None, None), ("deny", 17), "port unknown");
    assert_eq!(decide_name(&rs, "t.ads.example", Some(80), None), ("deny", 17));
    assert_eq!(decide_name(&rs, "t.ads.example", Some(443), None), ("deny", 18));
    assert_eq!(decide_name(&rs, "t.ads.example", Some(8080), None), ("none", 0));
    assert_eq!(decide_name(&rs, "notads.example", Some(80), None), ("none", 0));
}

#[test]
fn dns_partner_and_operators() {
    let rs = dns_rules();
    let r = rs.decide_name("ftp.partner.example", None, None).unwrap();
    assert_eq!((r.action, r.line), (ClientAction::Proxy, 21));
    assert_eq!(
        r.servers[0].protocol,
        Some(Protocol::Socks(ClientVersion::Socks4a)),
        "SOCKS4a carries the name"
    );
    assert_eq!(r.servers[0].addrs, vec![sa("192.0.2.200:1080")]);

    assert_eq!(decide_name(&rs, "api.vendor.example", Some(8443), Some("oper")), ("sockd", 24));
    assert_eq!(decide_name(&rs, "api.vendor.example", None, Some("root")), ("sockd", 24));
    assert_eq!(decide_name(&rs, "api.vendor.example", Some(443), Some("oper")), ("none", 0));
    assert_eq!(decide_name(&rs, "api.vendor.example", None, Some("bob")), ("none", 0));
    let r = rs.decide_name("api.vendor.example", None, Some("oper")).unwrap();
    assert_eq!(r.servers[0].password.as_deref(), Some("c0rrect horse"));
}

#[test]
fn dns_everything_else_through_the_firewalls() {
    let rs = dns_rules();
    assert_eq!(decide_name(&rs, "www.example.com", Some(443), None), ("sockd", 27));
    assert_eq!(decide_name(&rs, "example.org.", None, None), ("sockd", 28));
    assert_eq!(decide_name(&rs, "example.net", None, None), ("none", 0));
    let r = rs.decide_name("www.example.com", None, None).unwrap();
    assert_eq!(r.servers.len(), 2);
    assert_eq!(r.servers[1].addrs, vec![sa("203.0.113.2:1080")]);

    // The program then connects to a fake address: the address rules route it.
    assert!(rs.fake_v4_contains(Ipv4Addr::new(198, 18, 7, 9)));
    assert!(!rs.fake_v4_contains(Ipv4Addr::new(198, 19, 0, 1)), "/16 here, not the default /15");
    let fake6: Ipv6Addr = "fd73:6f63:6b73:1::2a".parse().unwrap();
    assert!(rs.fake_v6_contains(fake6));
    assert!(!rs.fake_v6_contains("fd73:6f63:6b73:2::2a".parse().unwrap()));
    assert_eq!(decide(&rs, "198.18.7.9", 443, None), ("sockd", 29));
    assert_eq!(decide(&rs, "fd73:6f63:6b73:1::2a", 443, None), ("sockd", 30));
    assert_eq!(decide(&rs, "10.20.1.1", 443, None), ("direct", 13), "domain lines skipped");
}

#[test]
fn dns_errors_name_file_line_and_token() {
    let text = DNS_CONF.replace("resolve remote", "resolve remotely");
    let e = ClientRules::parse("/etc/socks.conf", &text, &lookup()).unwrap_err();
    assert_eq!((e.line, e.token.as_deref()), (5, Some("remotely")));
    assert_eq!(
        e.to_string(),
        "/etc/socks.conf:5: unknown `resolve` value `remotely` \
         (expected remote, local or local-then-remote)"
    );
    let text = format!("{DNS_CONF}fake-range 10.99.0.0/16\n");
    let e = ClientRules::parse("/etc/socks.conf", &text, &lookup()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/socks.conf:32: second IPv4 `fake-range` (the first is on line 7)"
    );
    let text = DNS_CONF.replace("direct .corp.example", "direct .corp.example 0.0.255.255");
    let e = ClientRules::parse("/etc/socks.conf", &text, &lookup()).unwrap_err();
    assert_eq!((e.line, e.token.as_deref()), (10, Some("0.0.255.255")));
}

#[test]
fn decide_does_not_allocate() {
    let rs = rules();
    let cases: Vec<(IpAddr, u16, Option<&str>)> = [
        ("127.0.0.1", 23, None),
        ("198.51.100.9", 23, Some("root")),
        ("198.51.100.9", 443, Some("intern3")),
        ("198.51.100.9", 8080, Some("oper")),
        ("::ffff:192.0.2.17", 1, Some("nobody")),
        ("2001:db8::9", 65535, None),
        ("fe80::1", 0, Some("")),
    ]
    .into_iter()
    .map(|(ip, port, user)| (ip.parse().unwrap(), port, user))
    .collect();
    let before = allocations();
    let mut lines = 0;
    for &(dst, port, user) in &cases {
        lines += rs.decide(dst, port, user).map_or(0, |r| r.line);
    }
    assert_eq!(allocations(), before, "decide allocated");
    assert_eq!(lines, 4 + 9 + 10 + 16 + 13 + 20 + 19);

    let rs = dns_rules();
    let names: [(&str, Option<u16>, Option<&str>); 9] = [
        ("wiki.corp.example", None, None),
        ("WWW.Example.COM.", Some(443), Some("bob")),
        ("t.ads.example", Some(80), None),
        ("t.ads.example", Some(8080), None),
        ("api.vendor.example", None, Some("oper")),
        ("api.vendor.example", Some(80), Some("intern2")),
        ("ex\u{e4}mple.org", None, None),
        ("", None, None),
        ("no-such-name", Some(0), Some("")),
    ];
    let fake6: Ipv6Addr = "fd73:6f63:6b73:1::1".parse().unwrap();
    let before = allocations();
    let mut lines = 0;
    for &(name, port, user) in &names {
        lines += rs.decide_name(name, port, user).map_or(0, |r| r.line);
    }
    for &(dst, port, user) in &cases {
        lines += rs.decide(dst, port, user).map_or(0, |r| r.line);
    }
    let fakes = usize::from(rs.fake_v4_contains(Ipv4Addr::new(198, 18, 0, 1)))
        + usize::from(rs.fake_v6_contains(fake6));
    assert_eq!(allocations(), before, "decide_name, decide or a fake_*_contains allocated");
    assert_eq!(lines, (10 + 27 + 17 + 24 + 28) + (12 + 29 + 29 + 29 + 29 + 30 + 30));
    assert_eq!(fakes, 2);
}

#[test]
fn errors_name_file_line_and_token() {
    let text = SOCKS_CONF.replace("fw2.example:socks", "fw2.example:sock");
    let e: ConfigError = ClientRules::parse("/etc/socks.conf", &text, &lookup()).unwrap_err();
    assert_eq!(e.line, 16);
    assert_eq!(
        e.token.as_deref(),
        Some("@=socks5://oper:***@fw1.example:1081,fw2.example:sock"),
        "the token, password hidden"
    );
    assert_eq!(
        e.to_string(),
        "/etc/socks.conf:16: bad port `sock` in server `fw2.example:sock` \
         (expected 1 to 65535 or a tcp service name)"
    );
}
