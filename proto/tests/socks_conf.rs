//! A realistic workstation `socks.conf`, parsed with the test's own hosts/services tables, and
//! the decisions the library would take from it; plus a check that `ClientRules::decide` does not
//! allocate (it runs inside `connect()` of arbitrary programs).
//!
//! Not a test of the shim: destinations are plain values, nothing connects.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};

use socks_proto::rules::{
    ClientAction, ClientRules, ConfigError, ServerVersion, StaticLookup, DEFAULT_SERVER_PORT,
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
    assert_eq!(decide(&rs, "::1", 22, None), ("sockd", 20), "only the IPv4 loopback is listed");
}

#[test]
fn denials() {
    let rs = rules();
    assert_eq!(decide(&rs, "198.51.100.9", 23, Some("root")), ("deny", 9));
    assert_eq!(decide(&rs, "2001:db8::9", 23, None), ("sockd", 20), "the ban is IPv4 only");
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
    assert_eq!(s.version, Some(ServerVersion::Socks4));
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
    assert_eq!(first.version, Some(ServerVersion::Socks5));
    assert_eq!(first.username.as_deref(), Some("oper"));
    assert_eq!(first.password.as_deref(), Some("c0rrect horse"));
    assert_eq!(first.host, "fw1.example");
    assert_eq!(first.addrs, vec![sa("203.0.113.1:1081"), sa("[2001:db8:f::1]:1081")]);
    assert_eq!(second.version, None);
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
    let r = rs.decide("2001:db8::9".parse().unwrap(), 443, None).unwrap();
    assert_eq!(r.servers[0].addrs, vec![sa("[2001:db8:f::1]:1080")]);
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
    assert_eq!(lines, 4 + 9 + 10 + 16 + 13 + 20 + 20);
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
