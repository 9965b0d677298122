//! The 1992 paper's Figure 5 `sockd.conf`, verbatim, and the decisions the paper describes for
//! it; plus the golden cases of the CSTC `test_sockd_conf` script, adapted to this grammar.
//!
//! Not a test of the daemon: requests are plain values, names come from hosts/services text.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use socks_proto::rules::{Action, HostsFile, Lookup, Request, RuleSet, Services};
use std::net::IpAddr;

/// Figure 5 of Koblas & Koblas, "SOCKS" (USENIX 1992), section 3.1, character for character.
const FIGURE5: &str = r"#
# Deny all host to every host whois service
#
deny 0.0.0.0 255.255.255.255 0.0.0.0 255.255.255.255 eq whois
#
# Let lloyd.mips.com only use finger service to sgi.com
#
permit lloyd.mips.com 0.0.0.0 sgi.com 0.0.0.0 eq finger
deny lloyd.mips.com 0.0.0.0 sgi.com 0.0.0.0
#
# Allow all hosts on the 130.62 network access to the world
#
permit 130.62.0.0 0.0.255.255
#
# Deny all hosts which do not match anything in this file
# (i.e. All hosts coming in from the Internet)
#
";

/// The test's own name service: hosts at documentation addresses, sgi.com with two IPv4
/// addresses and one IPv6 address (which the IPv4 masks of Figure 5 leave out).
const HOSTS: &str = "\
192.0.2.7       lloyd.mips.com lloyd
198.51.100.1    sgi.com
198.51.100.2    sgi.com www.sgi.com
2001:db8::1     sgi.com
";

const SERVICES: &str = "\
telnet  23/tcp
whois   43/tcp  nicname
finger  79/tcp
http    80/tcp  www
";

struct Names {
    hosts: HostsFile,
    services: Services,
}

impl Lookup for Names {
    fn host(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let found = self.hosts.lookup(name);
        if found.is_empty() {
            Err(format!("{name}: Name or service not known"))
        } else {
            Ok(found)
        }
    }
    fn service(&self, name: &str) -> Option<u16> {
        self.services.tcp_port(name)
    }
    fn read_file(&self, path: &str) -> Result<String, String> {
        Err(format!("{path}: no files in this test"))
    }
}

fn names(hosts: &str) -> Names {
    Names { hosts: HostsFile::parse(hosts), services: Services::parse(SERVICES) }
}

fn figure5() -> RuleSet {
    RuleSet::parse("figure5.conf", FIGURE5, &names(HOSTS)).expect("Figure 5 parses")
}

/// (action, line of the deciding rule or 0 for default deny)
fn decide(rs: &RuleSet, src: &str, dst: &str, port: u16, user: Option<&str>) -> (Action, usize) {
    let req = Request { src: src.parse().unwrap(), dst: dst.parse().unwrap(), port, user };
    let d = rs.decide(&req);
    if d.rule.is_none() {
        assert_eq!(d.action, Action::Deny);
        assert!(d.is_default_deny());
        assert!(d.to_string().contains("default deny"), "{d}");
    }
    (d.action, d.rule.map_or(0, |r| r.line))
}

const LLOYD: &str = "192.0.2.7";
const SGI1: &str = "198.51.100.1";
const SGI2: &str = "198.51.100.2";
const ELSEWHERE: &str = "203.0.113.50";

#[test]
fn figure5_parses_to_four_rules_at_their_lines() {
    let rs = figure5();
    let listing: Vec<(usize, String)> = rs.rules.iter().map(|r| (r.line, r.to_string())).collect();
    assert_eq!(
        listing,
        vec![
            (4, "deny 0.0.0.0/0 0.0.0.0/0 eq 43".to_owned()),
            (8, "permit 192.0.2.7/32 {198.51.100.1,198.51.100.2}/32 eq 79".to_owned()),
            (9, "deny 192.0.2.7/32 {198.51.100.1,198.51.100.2}/32".to_owned()),
            (13, "permit 130.62.0.0/16".to_owned()),
        ]
    );
}

#[test]
fn whois_is_denied_for_everyone() {
    let rs = figure5();
    for src in [LLOYD, "130.62.1.2", "130.62.255.255", ELSEWHERE, "::ffff:130.62.9.9"] {
        for dst in [SGI1, ELSEWHERE, "192.0.2.43"] {
            assert_eq!(decide(&rs, src, dst, 43, None), (Action::Deny, 4), "{src} -> {dst}");
            assert_eq!(decide(&rs, src, dst, 43, Some("lloyd")), (Action::Deny, 4));
        }
    }
}

#[test]
fn lloyd_may_finger_sgi_and_nothing_else_there() {
    let rs = figure5();
    for sgi in [SGI1, SGI2] {
        assert_eq!(decide(&rs, LLOYD, sgi, 79, Some("lloyd")), (Action::Permit, 8));
        assert_eq!(decide(&rs, LLOYD, sgi, 79, None), (Action::Permit, 8));
        assert_eq!(decide(&rs, LLOYD, sgi, 23, Some("lloyd")), (Action::Deny, 9), "telnet");
        assert_eq!(decide(&rs, LLOYD, sgi, 80, None), (Action::Deny, 9));
        assert_eq!(decide(&rs, LLOYD, sgi, 78, None), (Action::Deny, 9));
        assert_eq!(decide(&rs, LLOYD, sgi, 80, None), (Action::Deny, 9));
        assert_eq!(decide(&rs, LLOYD, sgi, 43, None), (Action::Deny, 4), "whois first");
    }
    // A v4-mapped client address is lloyd too.
    assert_eq!(decide(&rs, "::ffff:192.0.2.7", SGI1, 79, None), (Action::Permit, 8));
    assert_eq!(decide(&rs, "::ffff:192.0.2.7", "::ffff:198.51.100.2", 23, None), (Action::Deny, 9));
    // sgi.com's IPv6 address is not covered by the IPv4 masks: default deny.
    assert_eq!(decide(&rs, LLOYD, "2001:db8::1", 79, None), (Action::Deny, 0));
}

#[test]
fn lloyd_elsewhere_is_default_denied() {
    let rs = figure5();
    for port in [21, 23, 79, 80] {
        assert_eq!(decide(&rs, LLOYD, ELSEWHERE, port, Some("lloyd")), (Action::Deny, 0));
    }
    assert_eq!(decide(&rs, LLOYD, "198.51.100.3", 79, None), (Action::Deny, 0));
}

#[test]
fn lloyd_inside_130_62_reaches_the_world() {
    // The same file with lloyd.mips.com numbered inside 130.62/16.
    let hosts = HOSTS.replace("192.0.2.7 ", "130.62.4.7");
    let rs = RuleSet::parse("figure5.conf", FIGURE5, &names(&hosts)).unwrap();
    assert_eq!(decide(&rs, "130.62.4.7", SGI1, 79, None), (Action::Permit, 8));
    assert_eq!(decide(&rs, "130.62.4.7", SGI1, 23, None), (Action::Deny, 9));
    assert_eq!(decide(&rs, "130.62.4.7", ELSEWHERE, 23, None), (Action::Permit, 13));
    assert_eq!(decide(&rs, "130.62.4.7", ELSEWHERE, 43, None), (Action::Deny, 4));
}

#[test]
fn net_130_62_reaches_anything_but_whois() {
    let rs = figure5();
    for src in ["130.62.0.0", "130.62.0.1", "130.62.77.200", "130.62.255.255", "::ffff:130.62.1.1"]
    {
        for (dst, port) in
            [(SGI1, 23), (SGI2, 79), (ELSEWHERE, 80), (ELSEWHERE, 42), (ELSEWHERE, 44)]
        {
            assert_eq!(
                decide(&rs, src, dst, port, None),
                (Action::Permit, 13),
                "{src} {dst}:{port}"
            );
        }
        assert_eq!(decide(&rs, src, "2001:db8::80", 80, Some("x")), (Action::Permit, 13));
        assert_eq!(decide(&rs, src, ELSEWHERE, 43, None), (Action::Deny, 4));
    }
}

#[test]
fn everyone_else_is_denied_by_default() {
    let rs = figure5();
    for src in ["130.63.0.1", "130.61.255.255", "10.0.0.1", ELSEWHERE, SGI1, "2001:db8::7", "::1"] {
        for (dst, port) in [(SGI1, 79), (ELSEWHERE, 80), (LLOYD, 23)] {
            assert_eq!(decide(&rs, src, dst, port, None), (Action::Deny, 0), "{src} {dst}:{port}");
        }
    }
}

/// The CSTC 4.x `test_sockd_conf` script's rule file, translated: CSTC's ordinary netmasks
/// become inverted masks, the `: mail …` shell command is dropped, and line 3's port condition
/// gets the destination `0.0.0.0/0` this grammar requires. The `#NO_IDENTD:`/`#BAD_ID:` lines
/// stay (they are comments here). Line numbers are unchanged.
const CSTC_ADAPTED: &str = "\
deny\t*=bonnie,clyde\t128.12.6.0 0.0.0.255
permit\t*=ylee\t128.12.6.4 0.0.0.0 137.12.0.0 0.0.255.255
deny\t128.12.0.0 0.0.255.255 0.0.0.0/0 eq telnet
permit\t128.12.0.0 0.0.255.255
#NO_IDENTD: /usr/ucb/mail -s 'please run identd on %A' root
#BAD_ID: /usr/ucb/mail -s '%U pretends to be %u on %A' root
";

#[test]
fn cstc_golden_cases() {
    let lookup = names("");
    let rs = RuleSet::parse("junk.conf", CSTC_ADAPTED, &lookup).unwrap();
    let ftp = 21;
    let cases: [(&str, &str, &str, u16, Action, usize); 8] = [
        ("clyde", "128.12.6.34", "112.3.24.1", ftp, Action::Deny, 1),
        ("ylee", "128.12.6.4", "137.12.4.15", 23, Action::Permit, 2),
        ("jane", "128.12.2.13", "137.12.4.15", 23, Action::Deny, 3),
        ("jim", "128.12.6.4", "126.87.13.2", 23, Action::Deny, 3),
        ("ylee", "128.12.6.4", "126.87.13.2", ftp, Action::Permit, 4),
        ("sam", "128.12.36.7", "10.53.23.1", 70, Action::Permit, 4),
        ("don", "23.2.6.127", "10.53.23.1", 70, Action::Deny, 0),
        ("clyde", "128.12.1.62", "112.3.24.1", ftp, Action::Permit, 4),
    ];
    for (user, src, dst, port, action, line) in cases {
        assert_eq!(
            decide(&rs, src, dst, port, Some(user)),
            (action, line),
            "{user} {src} {dst}:{port}"
        );
    }
}

#[test]
fn cstc_original_lines_give_clear_errors() {
    let lookup = names("");
    let e = RuleSet::parse(
        "junk.conf",
        "deny\t*=bonnie,clyde\t128.12.6.0 255.255.255.0 : /usr/ucb/mail -s 'Rejected SOCKS access by %u' root\n",
        &lookup,
    )
    .unwrap_err();
    assert_eq!((e.line, e.token.as_deref()), (1, Some(":")));
    assert!(e.to_string().contains("shell commands are not supported"), "{e}");

    let e = RuleSet::parse("junk.conf", "deny\t128.12.0.0 255.255.0.0 eq telnet\n", &lookup)
        .unwrap_err();
    assert_eq!((e.line, e.token.as_deref()), (1, Some("eq")));

    let e =
        RuleSet::parse("junk.conf", "permit ?=I 128.12.0.0 0.0.255.255\n", &lookup).unwrap_err();
    assert_eq!((e.line, e.token.as_deref()), (1, Some("?=I")));
}
