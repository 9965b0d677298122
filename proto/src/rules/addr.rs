//! Address conditions of the rule language: [`Net`] (one address + inverted mask), [`AddrMatch`]
//! (the networks one address spec stands for) and [`parse_addr_spec`].
//!
//! # Mask semantics (the choice made here)
//!
//! Masks are the paper's Cisco-style **inverted** masks ("wildcard bits"): a 1 bit in the mask
//! means "any value here". A request address matches a `cfg mask` pair when
//!
//! ```text
//! addr & !mask == cfg & !mask
//! ```
//!
//! i.e. the mask is applied to **both** sides, as CSTC's `OLD_CONF_MASK` did, not only to the
//! request as the paper's formula literally reads. Bits of `cfg` under the mask are therefore
//! ignored, and the canonical form printed by `Display` clears them. `0.0.0.0` means "exactly this
//! host", `255.255.255.255` means "any address" (see Families). Non-contiguous masks are allowed.
//! Note that CSTC 4.x switched to ordinary netmasks (`255.255.0.0` = a /16); such a file means
//! something else here, which `--check` output (CIDR where possible) makes visible.
//!
//! The modern one-token spelling `ADDR/PREFIX` (`130.62.0.0/16`, `2001:db8::/32`,
//! `host.name/24`) is the same thing with a contiguous mask. An address spec is thus either one
//! token containing `/` or two tokens `ADDR MASK`.
//!
//! # Families
//!
//! An IPv4 net matches IPv4 addresses and IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`); request
//! addresses are canonicalised before matching. An IPv6 net matches only (non-mapped) IPv6
//! addresses; a configured IPv6 net that lies inside `::ffff:0:0/96` is stored as the IPv4 net it
//! denotes. A mask of one family with an address of the other is an error.
//!
//! One exception, the paper's "any": an IPv4 spec whose mask covers all 32 bits (`0.0.0.0
//! 255.255.255.255`, `0.0.0.0/0`, or any address with that mask) is [`Net::ANY`] and matches
//! **every** address, IPv6 included. The paper wrote "any host" that way when IPv4 was all there
//! was; reading it as "any IPv4 address" let a later IPv6 (or CIDR) line walk around a `deny`
//! written in the paper's format. Narrower sets stay expressible: `::/0` is any IPv6 address
//! (IPv4-mapped ones count as IPv4), `::ffff:0.0.0.0/96` any IPv4 address (it prints that way).
//!
//! # Host names
//!
//! Names are resolved once, at parse time, through [`Lookup`]. A name may give several
//! addresses; the spec matches any of them. Only the addresses of the mask's family are used:
//! for `name MASK` that is the mask's family; for `name/PREFIX` a prefix of 32 or less selects
//! the IPv4 addresses and a longer one the IPv6 addresses. A name with no address of that family
//! is an error (so `sgi.com 0.0.0.0` never silently turns into "matches nothing").
//!
//! This module is not the rule-file grammar: it parses one address spec from a [`Cursor`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::LineError;
use super::lex::Cursor;
use super::lookup::Lookup;
use super::port::Op;

/// One address with an inverted mask, of one family. Bits under the mask are always clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Net(NetInner);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum NetInner {
    V4 {
        addr: u32,
        wild: u32,
    },
    V6 {
        addr: u128,
        wild: u128,
    },
    /// The paper's "any": every address of both families.
    Any,
}

/// The top 96 bits of the IPv4-mapped block `::ffff:0:0/96`.
const MAPPED_PREFIX: u128 = 0xffff;

impl Net {
    /// Every address, IPv4 and IPv6: what an IPv4 spec with an all-ones inverted mask (or `/0`)
    /// stands for.
    pub const ANY: Net = Net(NetInner::Any);

    /// `addr` with the inverted mask `mask`; `None` when their families differ.
    pub fn from_inverted_mask(addr: IpAddr, mask: IpAddr) -> Option<Net> {
        match (addr, mask) {
            (IpAddr::V4(a), IpAddr::V4(m)) => Some(Net::v4(u32::from(a), u32::from(m))),
            (IpAddr::V6(a), IpAddr::V6(m)) => Some(Net::v6(u128::from(a), u128::from(m))),
            _ => None,
        }
    }

    fn v4(addr: u32, wild: u32) -> Net {
        if wild == u32::MAX {
            Net::ANY
        } else {
            Net(NetInner::V4 { addr: addr & !wild, wild })
        }
    }

    fn v6(addr: u128, wild: u128) -> Net {
        let addr = addr & !wild;
        if addr >> 32 == MAPPED_PREFIX && wild >> 32 == 0 {
            // Inside ::ffff:0:0/96: the IPv4 net it stands for (requests are canonicalised, so
            // the IPv6 form could never match). Truncation to the low 32 bits is the point.
            // Built directly: `::ffff:0:0/96` is "any IPv4 address", not the paper's "any".
            let (addr, wild) = (addr as u32, wild as u32);
            Net(NetInner::V4 { addr: addr & !wild, wild })
        } else {
            Net(NetInner::V6 { addr, wild })
        }
    }

    /// `addr/prefix`; `None` when the prefix is longer than the family's address.
    pub fn from_prefix(addr: IpAddr, prefix: u8) -> Option<Net> {
        let p = u32::from(prefix);
        let mask = match addr {
            IpAddr::V4(_) if p <= 32 => {
                IpAddr::V4(Ipv4Addr::from(u32::MAX.checked_shr(p).unwrap_or(0)))
            }
            IpAddr::V6(_) if p <= 128 => {
                IpAddr::V6(Ipv6Addr::from(u128::MAX.checked_shr(p).unwrap_or(0)))
            }
            _ => return None,
        };
        Net::from_inverted_mask(addr, mask)
    }

    /// Exactly one host (mask `0.0.0.0` or `::`).
    pub fn host(addr: IpAddr) -> Net {
        match addr {
            IpAddr::V4(a) => Net::v4(u32::from(a), 0),
            IpAddr::V6(a) => Net::v6(u128::from(a), 0),
        }
    }

    /// The configured address, bits under the mask cleared (`0.0.0.0` for [`Net::ANY`]).
    pub fn addr(&self) -> IpAddr {
        match self.0 {
            NetInner::V4 { addr, .. } => IpAddr::V4(Ipv4Addr::from(addr)),
            NetInner::V6 { addr, .. } => IpAddr::V6(Ipv6Addr::from(addr)),
            NetInner::Any => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

    /// The inverted mask (1 bits = "any value"; `255.255.255.255` for [`Net::ANY`]).
    pub fn inverted_mask(&self) -> IpAddr {
        match self.0 {
            NetInner::V4 { wild, .. } => IpAddr::V4(Ipv4Addr::from(wild)),
            NetInner::V6 { wild, .. } => IpAddr::V6(Ipv6Addr::from(wild)),
            NetInner::Any => IpAddr::V4(Ipv4Addr::BROADCAST),
        }
    }

    /// The CIDR prefix length when the mask is contiguous (ones only at the low end); 0 for
    /// [`Net::ANY`].
    pub fn prefix_len(&self) -> Option<u8> {
        let (ones, bits, contiguous) = match self.0 {
            NetInner::V4 { wild, .. } => (wild.count_ones(), 32, wild & wild.wrapping_add(1) == 0),
            NetInner::V6 { wild, .. } => (wild.count_ones(), 128, wild & wild.wrapping_add(1) == 0),
            NetInner::Any => return Some(0),
        };
        // bits - ones is at most 128, so it fits in a u8.
        contiguous.then(|| (bits - ones) as u8)
    }

    /// Whether this is an IPv4-only net ([`Net::ANY`] is not: it covers both families).
    pub fn is_ipv4(&self) -> bool {
        matches!(self.0, NetInner::V4 { .. })
    }

    /// Whether this is [`Net::ANY`], every address of both families.
    pub fn is_any(&self) -> bool {
        self.0 == NetInner::Any
    }

    /// Whether `ip` (canonicalised: `::ffff:a.b.c.d` counts as IPv4) is in this net.
    pub fn matches(&self, ip: IpAddr) -> bool {
        match (self.0, ip.to_canonical()) {
            (NetInner::Any, _) => true,
            (NetInner::V4 { addr, wild }, IpAddr::V4(a)) => u32::from(a) & !wild == addr,
            (NetInner::V6 { addr, wild }, IpAddr::V6(a)) => u128::from(a) & !wild == addr,
            _ => false,
        }
    }

    /// Whether every address of this net is a loopback address (127.0.0.0/8, `::1`): the net
    /// names loopback explicitly rather than covering it as part of something wider.
    pub fn within_loopback(&self) -> bool {
        match self.0 {
            NetInner::V4 { addr, wild } => wild >> 24 == 0 && addr >> 24 == 127,
            NetInner::V6 { addr, wild } => wild == 0 && addr == 1,
            NetInner::Any => false,
        }
    }

    /// Whether this net is exactly one address (`/32`, `/128`, mask `0.0.0.0` or `::`).
    pub fn is_single_host(&self) -> bool {
        matches!(self.0, NetInner::V4 { wild: 0, .. } | NetInner::V6 { wild: 0, .. })
    }

    /// Whether some loopback address is in this net.
    pub fn overlaps_loopback(&self) -> bool {
        match self.0 {
            // The top octet's fixed bits agree with 127's.
            NetInner::V4 { addr, wild } => (addr >> 24) == 127 & !(wild >> 24),
            NetInner::V6 { .. } => self.matches(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            NetInner::Any => true,
        }
    }

    /// The mask part of the display: `/N` or ` MASK`.
    fn fmt_mask(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix_len() {
            Some(p) => write!(f, "/{p}"),
            None => write!(f, " {}", self.inverted_mask()),
        }
    }

    /// Whether this is the IPv4-only "any IPv4 address" net, which prints in its mapped form.
    fn is_any_ipv4(&self) -> bool {
        matches!(self.0, NetInner::V4 { wild: u32::MAX, .. })
    }
}

/// `ADDR/PREFIX` when the mask is contiguous, else `ADDR MASK` (inverted mask). [`Net::ANY`] is
/// `0.0.0.0/0`; "any IPv4 address" is `::ffff:0.0.0.0/96` (so both parse back to themselves).
impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_any_ipv4() {
            return f.write_str("::ffff:0.0.0.0/96");
        }
        write!(f, "{}", self.addr())?;
        self.fmt_mask(f)
    }
}

/// What one address spec of a rule stands for: one or more [`Net`]s (several when a host name
/// resolved to several addresses), and the name if one was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrMatch {
    name: Option<String>,
    nets: Vec<Net>,
}

impl AddrMatch {
    /// A condition matching any of `nets` (duplicates dropped, order kept).
    pub fn new(name: Option<String>, nets: Vec<Net>) -> AddrMatch {
        let mut uniq: Vec<Net> = Vec::with_capacity(nets.len());
        for n in nets {
            if !uniq.contains(&n) {
                uniq.push(n);
            }
        }
        AddrMatch { name, nets: uniq }
    }

    /// The host name as written in the file, if the spec used one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The networks, in resolver order.
    pub fn nets(&self) -> &[Net] {
        &self.nets
    }

    /// Whether `ip` is in any of the networks (after canonicalising IPv4-mapped addresses).
    pub fn matches(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.matches(ip))
    }

    /// Whether `ip` is in one of the networks that lie entirely inside loopback
    /// ([`Net::within_loopback`]): the spec names `ip`'s loopback block explicitly.
    pub fn names_loopback(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.within_loopback() && n.matches(ip))
    }

    /// Whether `ip` is one of the networks that are a single address: the spec names `ip` itself.
    pub fn names_host(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.is_single_host() && n.matches(ip))
    }

    /// Whether the spec covers some loopback address only as part of something wider (`0.0.0.0/0`,
    /// `::/0`, `0.0.0.0/1`…), i.e. where [`AddrMatch::names_loopback`] makes a difference.
    pub fn wildcard_over_loopback(&self) -> bool {
        self.nets.iter().any(|n| n.overlaps_loopback() && !n.within_loopback())
    }
}

/// One net: as [`Net`]'s `Display`. Several nets sharing one mask (the normal case, a name with
/// several addresses): `{A,B}/N` or `{A,B} MASK`. Several nets with different masks (only possible
/// through [`AddrMatch::new`]): `{A/N,B MASK}`. The brace forms are not accepted by the parser.
impl fmt::Display for AddrMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.nets.as_slice() {
            [] => f.write_str("{}"),
            [one] => write!(f, "{one}"),
            [first, rest @ ..] => {
                let same_mask = rest.iter().all(|n| n.inverted_mask() == first.inverted_mask())
                    && self.nets.iter().all(|n| n.prefix_len() != Some(0));
                f.write_str("{")?;
                for (i, n) in self.nets.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    if same_mask {
                        write!(f, "{}", n.addr())?;
                    } else {
                        write!(f, "{n}")?;
                    }
                }
                f.write_str("}")?;
                if same_mask {
                    first.fmt_mask(f)?;
                }
                Ok(())
            }
        }
    }
}

/// Whether `tok` is meant as a numeric address (so a parse failure is "bad address", not a
/// host name to look up).
fn looks_numeric(tok: &str) -> bool {
    tok.contains(':') || tok.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Whether `tok` is a syntactically plausible host name.
pub(crate) fn is_host_name(tok: &str) -> bool {
    let mut bytes = tok.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_')
        && tok.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The address part of a spec before resolution.
enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// Classifies the address part `host` of token `tok` (they differ for `host/prefix`).
fn parse_host<'a>(host: &'a str, tok: &str) -> Result<Host<'a>, LineError> {
    if looks_numeric(host) {
        host.parse::<IpAddr>().map(Host::Ip).map_err(|_| LineError::bad_address(tok))
    } else if is_host_name(host) {
        Ok(Host::Name(host))
    } else {
        Err(LineError::bad_address(tok))
    }
}

fn family_name(v4: bool) -> &'static str {
    if v4 {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Resolves `name` and keeps the canonicalised addresses of one family.
fn resolve(
    name: &str,
    tok: &str,
    want_v4: bool,
    why: &str,
    lookup: &dyn Lookup,
) -> Result<Vec<IpAddr>, LineError> {
    let all = lookup.host(name).map_err(|reason| LineError::unknown_host(tok, &reason))?;
    if all.is_empty() {
        return Err(LineError::unknown_host(tok, "no addresses"));
    }
    let kept: Vec<IpAddr> =
        all.into_iter().map(|ip| ip.to_canonical()).filter(|ip| ip.is_ipv4() == want_v4).collect();
    if kept.is_empty() {
        return Err(LineError::mask_family(
            tok,
            &format!("host `{name}` has no {} address ({why})", family_name(want_v4)),
        ));
    }
    Ok(kept)
}

/// Parses one address spec at the cursor: `ADDR/PREFIX` (one token) or `ADDR MASK` (two tokens).
///
/// `ADDR` is an IPv4 or IPv6 address or a host name (resolved now through `lookup`); `MASK` is
/// an inverted mask of the same family. See the module documentation for the semantics.
/// A missing token is reported as a missing address (the caller usually checks first, to name
/// which address is missing).
pub fn parse_addr_spec(
    cur: &mut Cursor<'_, '_>,
    lookup: &dyn Lookup,
) -> Result<AddrMatch, LineError> {
    let tok = cur.next().ok_or_else(|| LineError::missing_address("address"))?;
    if let Some((host, prefix)) = tok.rsplit_once('/') {
        return parse_cidr(tok, host, prefix, lookup);
    }
    let host = parse_host(tok, tok)?;
    let mask_tok = match cur.peek() {
        Some(m) if Op::from_keyword(m).is_none() => m,
        _ => return Err(LineError::missing_mask(tok)),
    };
    cur.next();
    let mask: IpAddr = mask_tok.parse().map_err(|_| LineError::bad_mask(mask_tok))?;
    let mask_v4 = mask.is_ipv4();
    let (name, addrs) = match host {
        Host::Ip(ip) => {
            if ip.is_ipv4() != mask_v4 {
                return Err(LineError::mask_family(
                    mask_tok,
                    &format!(
                        "mask `{mask_tok}` is {} but address `{tok}` is {}",
                        family_name(mask_v4),
                        family_name(ip.is_ipv4())
                    ),
                ));
            }
            (None, vec![ip])
        }
        Host::Name(name) => {
            let why = format!("mask `{mask_tok}` is {}", family_name(mask_v4));
            (Some(name.to_owned()), resolve(name, tok, mask_v4, &why, lookup)?)
        }
    };
    let nets = addrs.into_iter().filter_map(|a| Net::from_inverted_mask(a, mask)).collect();
    Ok(AddrMatch::new(name, nets))
}

/// `host/prefix` (already split at the last `/`).
fn parse_cidr(
    tok: &str,
    host: &str,
    prefix: &str,
    lookup: &dyn Lookup,
) -> Result<AddrMatch, LineError> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::bad_prefix(tok, "expected a number of bits"));
    }
    // Digits only: a parse failure means a huge number, which is simply too long.
    let bits: u32 = prefix.parse().unwrap_or(u32::MAX);
    let host = parse_host(host, tok)?;
    let (name, addrs, bits) = match host {
        Host::Ip(ip) => {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if bits > max {
                return Err(LineError::bad_prefix(
                    tok,
                    &format!("{} prefixes are 0 to {max}", family_name(ip.is_ipv4())),
                ));
            }
            (None, vec![ip], bits)
        }
        Host::Name(name) => {
            if bits > 128 {
                return Err(LineError::bad_prefix(tok, "prefixes are 0 to 32 or 0 to 128"));
            }
            let v4 = bits <= 32;
            let why = if v4 {
                "a prefix of 32 or less selects IPv4 addresses"
            } else {
                "a prefix over 32 selects IPv6 addresses"
            };
            (Some(name.to_owned()), resolve(name, tok, v4, why, lookup)?, bits)
        }
    };
    // bits <= 128 here.
    let bits = bits as u8;
    let nets = addrs.into_iter().filter_map(|a| Net::from_prefix(a, bits)).collect();
    Ok(AddrMatch::new(name, nets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::lookup::StaticLookup;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn lookup() -> StaticLookup {
        StaticLookup::new(
            "192.0.2.7 lloyd.mips.com\n198.51.100.1 sgi.com\n198.51.100.2 sgi.com\n\
             2001:db8::1 sgi.com\n2001:db8::5 v6only\n::ffff:203.0.113.9 mapped\n",
            "",
        )
    }

    fn spec(s: &str) -> Result<(AddrMatch, usize), LineError> {
        let toks: Vec<&str> = s.split_whitespace().collect();
        let mut c = Cursor::new(&toks);
        let m = parse_addr_spec(&mut c, &lookup())?;
        Ok((m, c.rest().len()))
    }

    fn ok(s: &str) -> AddrMatch {
        spec(s).unwrap().0
    }

    #[test]
    fn inverted_mask_exact_any_and_network() {
        let exact = ok("192.0.2.7 0.0.0.0");
        assert!(exact.matches(ip("192.0.2.7")));
        assert!(!exact.matches(ip("192.0.2.8")));
        assert_eq!(exact.to_string(), "192.0.2.7/32");

        let any = ok("0.0.0.0 255.255.255.255");
        assert!(any.matches(ip("1.2.3.4")));
        assert!(any.matches(ip("255.255.255.255")));
        assert_eq!(any.to_string(), "0.0.0.0/0");

        let net = ok("130.62.0.0 0.0.255.255");
        assert!(net.matches(ip("130.62.0.0")));
        assert!(net.matches(ip("130.62.255.255")));
        assert!(!net.matches(ip("130.63.0.1")));
        assert!(!net.matches(ip("130.61.255.255")));
        assert_eq!(net.to_string(), "130.62.0.0/16");
    }

    #[test]
    fn paper_any_is_every_address_of_both_families() {
        for spelling in ["0.0.0.0 255.255.255.255", "0.0.0.0/0", "10.1.2.3 255.255.255.255"] {
            let any = ok(spelling);
            assert_eq!(any.nets(), &[Net::ANY], "{spelling}");
            assert!(any.nets()[0].is_any() && !any.nets()[0].is_ipv4());
            for a in ["1.2.3.4", "::ffff:1.2.3.4", "2001:db8::1", "::1", "::", "0.0.0.0"] {
                assert!(any.matches(ip(a)), "{spelling} must match {a}");
            }
            assert_eq!(any.to_string(), "0.0.0.0/0");
        }
        // A name with the all-ones mask is the same "any".
        assert_eq!(ok("sgi.com 255.255.255.255").nets(), &[Net::ANY]);
        // Narrower "any"s stay one family.
        let v6 = ok("::/0");
        assert!(v6.matches(ip("2001:db8::1")) && v6.matches(ip("::1")));
        assert!(!v6.matches(ip("10.0.0.1")) && !v6.matches(ip("::ffff:10.0.0.1")));
        let v4 = ok("::ffff:0.0.0.0/96");
        assert!(v4.nets()[0].is_ipv4() && !v4.nets()[0].is_any());
        assert!(v4.matches(ip("10.0.0.1")) && v4.matches(ip("::ffff:10.0.0.1")));
        assert!(!v4.matches(ip("2001:db8::1")) && !v4.matches(ip("::1")));
        assert_eq!(v4.to_string(), "::ffff:0.0.0.0/96", "prints so that it parses back");
        assert_eq!(ok(&v4.to_string()), v4);
        assert_eq!(ok("::ffff:1.2.3.4 ::ffff:ffff").to_string(), "::ffff:0.0.0.0/96");
        // One bit short of all ones is an ordinary IPv4 net.
        let half = ok("0.0.0.0 127.255.255.255");
        assert!(half.matches(ip("1.2.3.4")) && !half.matches(ip("128.0.0.1")));
        assert!(!half.matches(ip("2001:db8::1")));
    }

    #[test]
    fn loopback_named_or_covered() {
        let named = |s: &str, a: &str| ok(s).names_loopback(ip(a));
        let wide = |s: &str| ok(s).wildcard_over_loopback();
        for (spec, addr) in [
            ("127.0.0.0/8", "127.0.0.1"),
            ("127.0.0.1/32", "127.0.0.1"),
            ("127.0.0.1 0.0.0.0", "::ffff:127.0.0.1"),
            ("127.1.0.0 0.0.255.255", "127.1.2.3"),
            ("127.0.0.1 0.255.0.0", "127.9.0.1"),
            ("::1/128", "::1"),
            ("::ffff:127.0.0.0/104", "127.3.3.3"),
        ] {
            assert!(named(spec, addr), "{spec} names {addr}");
            assert!(!wide(spec), "{spec} is inside loopback");
        }
        for (spec, addr) in [
            ("0.0.0.0/0", "127.0.0.1"),
            ("0.0.0.0/1", "127.0.0.1"),
            ("126.0.0.0/7", "127.0.0.1"),
            ("127.0.0.0 1.255.255.255", "127.0.0.1"),
            ("::/0", "::1"),
            ("::/127", "::1"),
            ("::ffff:0.0.0.0/96", "127.0.0.1"),
            ("127.0.0.0/8", "::1"),
            ("::1/128", "127.0.0.1"),
            ("127.0.0.0/8", "128.0.0.1"),
        ] {
            assert!(!named(spec, addr), "{spec} does not name {addr}");
        }
        for spec in ["0.0.0.0/0", "0.0.0.0/1", "126.0.0.0/7", "::/0", "::/127", "::ffff:0:0/96"] {
            assert!(wide(spec), "{spec} covers loopback as part of something wider");
        }
        for spec in ["10.0.0.0/8", "128.0.0.0/1", "2001:db8::/32", "::2/128", "126.0.0.0/8"] {
            assert!(!wide(spec), "{spec} does not cover loopback");
        }
    }

    #[test]
    fn names_one_host() {
        let named = |s: &str, a: &str| ok(s).names_host(ip(a));
        assert!(named("192.0.2.7/32", "192.0.2.7"));
        assert!(named("192.0.2.7 0.0.0.0", "::ffff:192.0.2.7"));
        assert!(named("lloyd.mips.com 0.0.0.0", "192.0.2.7"));
        assert!(named("sgi.com 0.0.0.0", "198.51.100.2"));
        assert!(named("2001:db8::1/128", "2001:db8::1"));
        assert!(!named("192.0.2.7/32", "192.0.2.8"));
        assert!(!named("192.0.2.0/24", "192.0.2.7"), "a network does not name its hosts");
        assert!(!named("0.0.0.0/0", "192.0.2.7"));
        assert!(!named("::/0", "2001:db8::1"));
        assert!(!named("2001:db8::/127", "2001:db8::1"));
        assert!(ok("1.2.3.4/32").nets()[0].is_single_host());
        assert!(!Net::ANY.is_single_host());
    }

    #[test]
    fn mask_applies_to_both_sides() {
        // Host bits set under the mask are ignored (CSTC OLD_CONF_MASK behaviour).
        let m = ok("130.62.7.9 0.0.255.255");
        assert!(m.matches(ip("130.62.1.2")));
        assert_eq!(m.to_string(), "130.62.0.0/16");
        // A CSTC-style ordinary netmask means something else here: x.x.0.0 for any x.
        let cstc = ok("128.12.0.0 255.255.0.0");
        assert!(cstc.matches(ip("9.9.0.0")));
        assert!(!cstc.matches(ip("128.12.6.34")));
        assert_eq!(cstc.to_string(), "0.0.0.0 255.255.0.0");
    }

    #[test]
    fn non_contiguous_mask() {
        let m = ok("10.0.0.1 0.255.0.0");
        assert!(m.matches(ip("10.7.0.1")));
        assert!(!m.matches(ip("10.7.0.2")));
        assert_eq!(m.nets()[0].prefix_len(), None);
        assert_eq!(m.to_string(), "10.0.0.1 0.255.0.0");
    }

    #[test]
    fn cidr_v4_and_consumption() {
        let (m, rest) = spec("130.62.0.0/16 eq 23").unwrap();
        assert_eq!(rest, 2);
        assert!(m.matches(ip("130.62.200.1")));
        assert!(!m.matches(ip("130.63.0.0")));
        let (m, rest) = spec("130.62.0.0 0.0.255.255 eq 23").unwrap();
        assert_eq!(rest, 2);
        assert_eq!(m.to_string(), "130.62.0.0/16");
        assert_eq!(ok("130.62.1.1/16").to_string(), "130.62.0.0/16");
        assert_eq!(ok("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(ok("1.2.3.4/32").to_string(), "1.2.3.4/32");
        assert!(ok("1.2.3.4/31").matches(ip("1.2.3.5")));
        assert!(!ok("1.2.3.4/31").matches(ip("1.2.3.6")));
    }

    #[test]
    fn ipv6_cidr_and_inverted() {
        let m = ok("2001:db8::/32");
        assert!(m.matches(ip("2001:db8:ffff::1")));
        assert!(!m.matches(ip("2001:db9::1")));
        assert!(!m.matches(ip("32.1.13.184")));
        assert_eq!(m.to_string(), "2001:db8::/32");
        let inv = ok("2001:db8:: ::ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(inv.to_string(), "2001:db8::/32");
        let host = ok("::1 ::");
        assert!(host.matches(ip("::1")));
        assert!(!host.matches(ip("::2")));
        assert_eq!(host.to_string(), "::1/128");
        let any6 = ok("::/0");
        assert!(!any6.nets()[0].is_any(), "::/0 is any IPv6 address, not the paper's any");
        assert!(any6.matches(ip("2001:db8::1")));
        assert!(!any6.matches(ip("10.0.0.1")));
        assert!(!any6.matches(ip("::ffff:10.0.0.1")), "mapped counts as IPv4");
    }

    #[test]
    fn v4_mapped_requests_and_config() {
        let m = ok("130.62.0.0/16");
        assert!(m.matches(ip("::ffff:130.62.3.4")));
        assert!(!m.matches(ip("::ffff:130.63.3.4")));
        // A configured mapped net is the IPv4 net.
        let mapped = ok("::ffff:130.62.0.0/112");
        assert!(mapped.nets()[0].is_ipv4());
        assert_eq!(mapped.to_string(), "130.62.0.0/16");
        assert!(mapped.matches(ip("130.62.9.9")));
        // A name resolving to a mapped address is IPv4.
        assert_eq!(ok("mapped 0.0.0.0").to_string(), "203.0.113.9/32");
    }

    #[test]
    fn names_single_and_multiple() {
        let l = ok("lloyd.mips.com 0.0.0.0");
        assert_eq!(l.name(), Some("lloyd.mips.com"));
        assert!(l.matches(ip("192.0.2.7")));
        assert_eq!(l.to_string(), "192.0.2.7/32");

        let s = ok("sgi.com 0.0.0.0");
        assert!(s.matches(ip("198.51.100.1")));
        assert!(s.matches(ip("198.51.100.2")));
        assert!(!s.matches(ip("2001:db8::1")), "IPv4 mask keeps IPv4 addresses");
        assert_eq!(s.to_string(), "{198.51.100.1,198.51.100.2}/32");

        let s24 = ok("sgi.com/24");
        assert_eq!(s24.to_string(), "198.51.100.0/24", "duplicates after masking merge");
        let s6 = ok("sgi.com/64");
        assert_eq!(s6.to_string(), "2001:db8::/64");
        let s6inv = ok("sgi.com ::");
        assert_eq!(s6inv.to_string(), "2001:db8::1/128");

        let odd = ok("sgi.com 0.0.255.0");
        assert_eq!(odd.to_string(), "{198.51.0.1,198.51.0.2} 0.0.255.0");
    }

    #[test]
    fn display_mixed_masks() {
        let m = AddrMatch::new(
            None,
            vec![
                Net::from_prefix(ip("10.0.0.0"), 8).unwrap(),
                Net::from_inverted_mask(ip("10.0.0.1"), ip("0.255.0.0")).unwrap(),
            ],
        );
        assert_eq!(m.to_string(), "{10.0.0.0/8,10.0.0.1 0.255.0.0}");
        assert_eq!(AddrMatch::new(None, vec![]).to_string(), "{}");
    }

    #[test]
    fn net_constructors() {
        assert_eq!(Net::from_prefix(ip("1.2.3.4"), 33), None);
        assert_eq!(Net::from_prefix(ip("::"), 129), None);
        assert_eq!(Net::from_inverted_mask(ip("1.2.3.4"), ip("::")), None);
        assert_eq!(Net::host(ip("1.2.3.4")).to_string(), "1.2.3.4/32");
        assert_eq!(Net::host(ip("::1")).to_string(), "::1/128");
        let n = Net::from_prefix(ip("10.1.2.3"), 8).unwrap();
        assert_eq!(n.addr(), ip("10.0.0.0"));
        assert_eq!(n.inverted_mask(), ip("0.255.255.255"));
        assert_eq!(n.prefix_len(), Some(8));
    }

    fn err(s: &str) -> LineError {
        spec(s).unwrap_err()
    }

    #[test]
    fn errors() {
        let e = err("10.0.0.1");
        assert_eq!(e.token.as_deref(), Some("10.0.0.1"));
        assert!(e.message.contains("has no mask"), "{e}");
        let e = err("10.0.0.1 eq 23");
        assert_eq!(e.token.as_deref(), Some("10.0.0.1"));
        assert!(e.message.contains("has no mask"), "{e}");
        assert!(err("1.2.3 0.0.0.0").message.starts_with("bad address `1.2.3`"));
        assert!(err("300.1.1.1/8").message.starts_with("bad address `300.1.1.1/8`"));
        assert!(err("fe80::1%eth0 ::").message.starts_with("bad address"));
        assert!(err("a!b 0.0.0.0").message.starts_with("bad address `a!b`"));
        assert!(err("/8").message.starts_with("bad address `/8`"));
        assert!(err("1.2.3.4 sgi.com").message.starts_with("bad mask `sgi.com`"));
        assert!(err("1.2.3.4/x").message.starts_with("bad CIDR prefix in `1.2.3.4/x`"));
        assert!(err("1.2.3.4/").message.starts_with("bad CIDR prefix"));
        assert!(err("1.2.3.4/33").message.contains("IPv4 prefixes are 0 to 32"));
        assert!(err("::/129").message.contains("IPv6 prefixes are 0 to 128"));
        assert!(err("sgi.com/999999999999").message.starts_with("bad CIDR prefix"));
        let e = err("1.2.3.4 ::");
        assert_eq!(e.token.as_deref(), Some("::"));
        assert_eq!(
            e.message,
            "mask family mismatch: mask `::` is IPv6 but address `1.2.3.4` is IPv4"
        );
        let e = err("v6only 0.0.0.0");
        assert_eq!(e.token.as_deref(), Some("v6only"));
        assert!(e.message.contains("has no IPv4 address"), "{e}");
        assert!(err("lloyd.mips.com/64").message.contains("has no IPv6 address"));
        let e = err("nowhere.example 0.0.0.0");
        assert_eq!(e.message, "unknown host `nowhere.example`: not in the hosts table");
        let mut c = Cursor::new(&[]);
        assert!(parse_addr_spec(&mut c, &lookup()).is_err());
    }
}
