//! The destination condition of a `socks.conf` rule ([`Destination`]): an address spec (parsed by
//! [`super::addr`], as in `sockd.conf`) or a domain pattern, whose parsing and matching are here.
//!
//! A destination starting with `.` is a domain suffix: `.example.test` matches the name
//! `example.test` itself and every name ending in `.example.test`, but not `badexample.test`.
//! Matching ignores ASCII case and one trailing dot on the name. The pattern is kept in lower case
//! without its leading dot (a trailing dot on the pattern is dropped too); its labels hold letters,
//! digits, `-` and `_` (international names in their `xn--` form), and a bare `.` is an error. No
//! mask follows a domain pattern; `OP PORT` may. Domain patterns are about names and address
//! specs about addresses: `ClientRules::decide` (an address) skips domain lines, and
//! `ClientRules::decide_name` (a name being looked up) skips address lines; each keeps the file
//! order among the lines it looks at. Nothing is resolved to pick a domain rule.
//!
//! Not here: the rest of the line (where the destination stands, the `OP PORT` after it, the
//! message for a host name written without a mask: [`super::socks_conf`]). Matching allocates
//! nothing.

use std::fmt;
use std::net::IpAddr;

use super::addr::AddrMatch;
use super::error::LineError;

/// The destination condition of a `socks.conf` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `ADDR MASK` or `ADDR/PREFIX`: matches addresses, never names.
    Net(AddrMatch),
    /// `.example.test`: the lower-case suffix without the leading dot; matches names, never
    /// addresses.
    Domain(String),
}

impl Destination {
    /// Whether `ip` is in the networks (IPv4-mapped addresses canonicalised); `false` for a
    /// domain pattern. Allocates nothing.
    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        match self {
            Destination::Net(m) => m.matches(ip),
            Destination::Domain(_) => false,
        }
    }

    /// Whether `name` is the domain or a name under it (ASCII case ignored, one trailing dot on
    /// `name` ignored); `false` for an address spec. Allocates nothing.
    pub fn matches_name(&self, name: &str) -> bool {
        match self {
            Destination::Net(_) => false,
            Destination::Domain(suffix) => domain_matches(suffix, name),
        }
    }

    /// The suffix of a domain pattern (lower case, no leading dot).
    pub fn domain(&self) -> Option<&str> {
        match self {
            Destination::Domain(d) => Some(d),
            Destination::Net(_) => None,
        }
    }
}

/// `.suffix` for a domain pattern, [`AddrMatch`]'s `Display` for an address spec.
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Net(m) => write!(f, "{m}"),
            Destination::Domain(d) => write!(f, ".{d}"),
        }
    }
}

/// Whether `name` equals `suffix` or ends in `.suffix`, ignoring ASCII case and one trailing dot
/// of `name`. `suffix` is non-empty and lower case. Byte-wise, so any `name` is safe.
fn domain_matches(suffix: &str, name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
    let suffix = suffix.as_bytes();
    match name.len().checked_sub(suffix.len()) {
        None => false,
        Some(0) => name.eq_ignore_ascii_case(suffix),
        Some(at) => name[at - 1] == b'.' && name[at..].eq_ignore_ascii_case(suffix),
    }
}

/// The longest host name in DNS (RFC 1035), without the trailing dot.
const MAX_DOMAIN: usize = 253;
/// The longest DNS label (RFC 1035).
const MAX_LABEL: usize = 63;

/// Parses a domain pattern token (it starts with `.`) into its lower-case suffix.
pub(super) fn parse_domain(tok: &str) -> Result<String, LineError> {
    let body = tok.strip_prefix('.').unwrap_or(tok);
    let body = body.strip_suffix('.').unwrap_or(body);
    let bad = |detail: &str| Err(LineError::bad_domain_pattern(tok, detail));
    if body.is_empty() {
        return bad("no name after the dot (write a suffix such as .example.test)");
    }
    if body.len() > MAX_DOMAIN {
        return bad("longer than 253 bytes");
    }
    for label in body.split('.') {
        if label.is_empty() {
            return bad("empty label (two dots in a row)");
        }
        if label.len() > MAX_LABEL {
            return bad("a label is longer than 63 bytes");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) {
            return bad("only letters, digits, `-` and `_` between the dots \
                 (international names in their xn-- form)");
        }
    }
    Ok(body.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::socks_conf_fixture::{check_err, ip, parse, OK};

    fn domain(pattern: &str) -> Destination {
        let rs = parse(&format!("direct {pattern}")).unwrap();
        rs.rules[0].dst.clone()
    }

    #[test]
    fn domain_pattern_suffix_exact_case_and_trailing_dot() {
        let d = domain(".example.test");
        assert_eq!(d, Destination::Domain("example.test".to_owned()));
        assert_eq!(d.domain(), Some("example.test"));
        assert_eq!(d.to_string(), ".example.test");
        for name in [
            "example.test",
            "www.example.test",
            "a.b.c.example.test",
            "EXAMPLE.Test",
            "WWW.Example.TEST",
            "example.test.",
            "www.example.test.",
        ] {
            assert!(d.matches_name(name), "{name}");
        }
        for name in [
            "badexample.test",
            "example.test.evil",
            "xample.test",
            "test",
            "example.test..",
            "",
            ".",
            "example",
            "ex\u{e4}mple.test",
        ] {
            assert!(!d.matches_name(name), "{name}");
        }
        assert!(d.matches_name(".example.test"), "empty first label: still under the domain");
        assert!(!d.matches_ip(ip("192.0.2.1")), "a domain never matches an address");
    }

    #[test]
    fn domain_pattern_is_stored_lower_case_without_dots() {
        assert_eq!(domain(".Corp.EXAMPLE").domain(), Some("corp.example"));
        assert_eq!(domain(".corp.example.").domain(), Some("corp.example"), "FQDN form");
        assert_eq!(domain(".test").domain(), Some("test"), "a whole top-level domain");
        assert_eq!(domain(".xn--bcher-kva.example").domain(), Some("xn--bcher-kva.example"));
        assert_eq!(domain("._srv.example").domain(), Some("_srv.example"));
        let long = format!(".{}.{}", "a".repeat(63), "b".repeat(63));
        assert!(domain(&long).matches_name(&long[1..]));
        // Numeric labels are labels like any other.
        assert!(domain(".1.2").matches_name("3.1.2"));
    }

    #[test]
    fn net_destinations_never_match_names() {
        let d = parse("direct 0.0.0.0/0").unwrap().rules[0].dst.clone();
        assert!(matches!(&d, Destination::Net(m) if m.to_string() == "0.0.0.0/0"));
        assert_eq!(d.domain(), None);
        assert!(!d.matches_name("example.test"));
        assert!(!d.matches_name("0.0.0.0"));
        assert!(d.matches_ip(ip("203.0.113.1")));
    }

    #[test]
    fn err_bad_domain_pattern() {
        check_err(
            &format!("{OK}sockd @=fw .\n"),
            3,
            Some("."),
            "socks.conf:3: bad domain pattern `.`: no name after the dot \
             (write a suffix such as .example.test)",
        );
        let cases = [
            ("..", "no name after the dot"),
            (".a..b", "empty label (two dots in a row)"),
            ("...", "empty label (two dots in a row)"),
            (".a.b..", "empty label (two dots in a row)"),
            (".ex!ample.test", "only letters, digits, `-` and `_` between the dots"),
            (".exämple.test", "only letters, digits, `-` and `_` between the dots"),
            (".*.example.test", "only letters, digits, `-` and `_` between the dots"),
            (".example.test/24", "only letters, digits, `-` and `_` between the dots"),
        ];
        for (tok, detail) in cases {
            let e = parse(&format!("direct {tok}")).unwrap_err();
            assert_eq!(e.token.as_deref(), Some(tok));
            assert!(e.message.starts_with(&format!("bad domain pattern `{tok}`: {detail}")), "{e}");
        }
        let label = format!(".{}.example", "a".repeat(64));
        let e = parse(&format!("direct {label}")).unwrap_err();
        assert!(e.message.ends_with("a label is longer than 63 bytes"), "{e}");
        let long = ".a".repeat(128);
        let e = parse(&format!("direct {long}")).unwrap_err();
        assert!(e.message.ends_with("longer than 253 bytes"), "{e}");
        assert!(parse(&format!("direct {}", &long[2..])).is_ok(), "253 bytes is fine");
    }
}
