//! The settings lines of `socks.conf`, about names resolved on the far side: `resolve`
//! ([`ResolvePolicy`]), `fake-range` (the fake address ranges, [`DEFAULT_FAKE_V4`],
//! [`DEFAULT_FAKE_V6`]) and `fake-families` ([`FakeFamilies`]); recording them in a
//! [`ClientRules`], and its `fake_*_contains` checks.
//!
//! Settings lines may come anywhere in the file, each at most once (`fake-range` once per family);
//! a repeat is an error.
//!
//! - `resolve` ([`ResolvePolicy`], default `remote`): how a name that a `sockd` line routes is
//!   resolved. `remote`: not locally; the name gets a fake address and goes to the server, so no
//!   DNS query leaves the machine. `local`: the local resolver, as without this library (the
//!   address rules then decide). `local-then-remote`: the local resolver first, a fake address
//!   when it finds nothing.
//! - `fake-range` (defaults [`DEFAULT_FAKE_V4`] 198.18.0.0/15, the RFC 2544 benchmarking block,
//!   and [`DEFAULT_FAKE_V6`] fd73:6f63:6b73::/48, a unique-local block spelling "socks"): where
//!   fake addresses come from. IPv4 prefixes are 8 to 30, IPv6 prefixes 8 to 120; no address bits
//!   after the prefix; no overlap with the unspecified (0.0.0.0/8, ::), loopback (127.0.0.0/8,
//!   ::1), link-local (169.254.0.0/16, fe80::/10), multicast (224.0.0.0/4, ff00::/8), IPv4 limited
//!   broadcast (255.255.255.255) or IPv4-mapped (::ffff:0:0/96) blocks, which programs reject or
//!   treat specially.
//! - `fake-families` ([`FakeFamilies`], default `ipv4`): the families of fake addresses a lookup
//!   for any family (`AF_UNSPEC`) returns.
//!
//! Not here: the rule lines and the file parser that hands settings lines to this module
//! ([`super::socks_conf`]), and the map of fake addresses itself. [`ClientRules::fake_v4_contains`]
//! and [`ClientRules::fake_v6_contains`] allocate nothing.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::LineError;
use super::socks_conf::ClientRules;

/// The first IPv4 fake address range: 198.18.0.0/15, the RFC 2544 benchmarking block (131072
/// addresses, not routed on the Internet, not multicast, not loopback).
pub const DEFAULT_FAKE_V4: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 15);

/// The IPv6 fake address range: fd73:6f63:6b73::/48, a unique-local (RFC 4193) block whose
/// "global ID" spells `socks` in ASCII.
pub const DEFAULT_FAKE_V6: (Ipv6Addr, u8) =
    (Ipv6Addr::new(0xfd73, 0x6f63, 0x6b73, 0, 0, 0, 0, 0), 48);

/// The `fake-range` prefix bounds: at least 4 IPv4 addresses, at least 256 IPv6 addresses, and no
/// range so wide that it swallows a large part of the address space.
const FAKE_V4_PREFIX: (u8, u8) = (8, 30);
const FAKE_V6_PREFIX: (u8, u8) = (8, 120);

/// IPv4 blocks a fake range must not overlap: (what, network, prefix).
const RESERVED_V4: [(&str, Ipv4Addr, u8); 5] = [
    ("unspecified", Ipv4Addr::new(0, 0, 0, 0), 8),
    ("loopback", Ipv4Addr::new(127, 0, 0, 0), 8),
    ("link-local", Ipv4Addr::new(169, 254, 0, 0), 16),
    ("multicast", Ipv4Addr::new(224, 0, 0, 0), 4),
    ("limited broadcast", Ipv4Addr::new(255, 255, 255, 255), 32),
];

/// IPv6 blocks a fake range must not overlap: (what, network, prefix).
const RESERVED_V6: [(&str, Ipv6Addr, u8); 5] = [
    ("unspecified", Ipv6Addr::UNSPECIFIED, 128),
    ("loopback", Ipv6Addr::LOCALHOST, 128),
    ("IPv4-mapped", Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
    ("link-local", Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    ("multicast", Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

/// The network mask of an IPv4 prefix (a prefix over 32 counts as 32).
fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32u32.saturating_sub(u32::from(prefix))).unwrap_or(0)
}

/// The network mask of an IPv6 prefix (a prefix over 128 counts as 128).
fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128u32.saturating_sub(u32::from(prefix))).unwrap_or(0)
}

/// How the library resolves a name that a `sockd` line routes (the `resolve` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResolvePolicy {
    /// `remote` (the default): a fake address; the name itself goes to the SOCKS server, and no
    /// DNS query leaves the machine.
    #[default]
    Remote,
    /// `local`: the local resolver, as without the library.
    Local,
    /// `local-then-remote`: the local resolver first; a fake address when it finds nothing.
    LocalThenRemote,
}

impl ResolvePolicy {
    /// The value as written after `resolve`.
    pub fn keyword(self) -> &'static str {
        match self {
            ResolvePolicy::Remote => "remote",
            ResolvePolicy::Local => "local",
            ResolvePolicy::LocalThenRemote => "local-then-remote",
        }
    }

    fn from_keyword(word: &str) -> Option<ResolvePolicy> {
        [ResolvePolicy::Remote, ResolvePolicy::Local, ResolvePolicy::LocalThenRemote]
            .into_iter()
            .find(|p| p.keyword() == word)
    }
}

impl fmt::Display for ResolvePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// The families of fake addresses a lookup for any family (`AF_UNSPEC`) returns (the
/// `fake-families` setting). A lookup for one family always gets that family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FakeFamilies {
    /// `ipv4` (the default): one IPv4 fake address.
    #[default]
    Ipv4,
    /// `ipv6`: one IPv6 fake address.
    Ipv6,
    /// `both`: an IPv6 and an IPv4 fake address.
    Both,
}

impl FakeFamilies {
    /// The value as written after `fake-families`.
    pub fn keyword(self) -> &'static str {
        match self {
            FakeFamilies::Ipv4 => "ipv4",
            FakeFamilies::Ipv6 => "ipv6",
            FakeFamilies::Both => "both",
        }
    }

    fn from_keyword(word: &str) -> Option<FakeFamilies> {
        [FakeFamilies::Ipv4, FakeFamilies::Ipv6, FakeFamilies::Both]
            .into_iter()
            .find(|f| f.keyword() == word)
    }
}

impl fmt::Display for FakeFamilies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// The first word of a settings line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Setting {
    Resolve,
    FakeRange,
    FakeFamilies,
}

impl Setting {
    fn keyword(self) -> &'static str {
        match self {
            Setting::Resolve => "resolve",
            Setting::FakeRange => "fake-range",
            Setting::FakeFamilies => "fake-families",
        }
    }

    pub(super) fn from_keyword(word: &str) -> Option<Setting> {
        [Setting::Resolve, Setting::FakeRange, Setting::FakeFamilies]
            .into_iter()
            .find(|s| s.keyword() == word)
    }

    /// The values, for messages.
    fn expected(self) -> &'static str {
        match self {
            Setting::Resolve => "remote, local or local-then-remote",
            Setting::FakeRange => "an IPv4 or IPv6 network ADDR/PREFIX",
            Setting::FakeFamilies => "ipv4, ipv6 or both",
        }
    }
}

/// The line of each setting seen so far.
#[derive(Debug, Default)]
pub(super) struct SeenSettings {
    resolve: Option<usize>,
    fake_v4: Option<usize>,
    fake_v6: Option<usize>,
    fake_families: Option<usize>,
}

/// A `fake-range` value: `IPv4/PREFIX` or `IPv6/PREFIX` within the family's prefix bounds, no
/// address bits after the prefix, clear of the reserved blocks.
fn parse_fake_range(tok: &str) -> Result<(IpAddr, u8), LineError> {
    let (addr, prefix) = tok.split_once('/').ok_or_else(|| LineError::bad_fake_range(tok))?;
    let addr: IpAddr = addr.parse().map_err(|_| LineError::bad_fake_range(tok))?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::bad_fake_range(tok));
    }
    // Digits only: a parse failure means a huge number, which is out of bounds anyway.
    let prefix: u8 = prefix.parse().unwrap_or(u8::MAX);
    match addr {
        IpAddr::V4(a) => {
            let (min, max) = FAKE_V4_PREFIX;
            if !(min..=max).contains(&prefix) {
                return Err(LineError::fake_range_prefix(tok, "IPv4", min, max));
            }
            let net = Ipv4Addr::from(u32::from(a) & mask_v4(prefix));
            if net != a {
                return Err(LineError::fake_range_host_bits(tok, &format!("{net}/{prefix}")));
            }
            for (what, block, len) in RESERVED_V4 {
                let m = mask_v4(prefix.min(len));
                if u32::from(net) & m == u32::from(block) & m {
                    let block = format!("{block}/{len}");
                    return Err(LineError::fake_range_reserved(tok, what, &block));
                }
            }
            Ok((IpAddr::V4(net), prefix))
        }
        IpAddr::V6(a) => {
            let (min, max) = FAKE_V6_PREFIX;
            if !(min..=max).contains(&prefix) {
                return Err(LineError::fake_range_prefix(tok, "IPv6", min, max));
            }
            let net = Ipv6Addr::from(u128::from(a) & mask_v6(prefix));
            if net != a {
                return Err(LineError::fake_range_host_bits(tok, &format!("{net}/{prefix}")));
            }
            for (what, block, len) in RESERVED_V6 {
                let m = mask_v6(prefix.min(len));
                if u128::from(net) & m == u128::from(block) & m {
                    let block = format!("{block}/{len}");
                    return Err(LineError::fake_range_reserved(tok, what, &block));
                }
            }
            Ok((IpAddr::V6(net), prefix))
        }
    }
}

// The settings half of `ClientRules`; the rules half and the parser that calls `apply_setting`
// are in socks_conf.rs.
impl ClientRules {
    /// Parses the value of settings line `number` and records it; a setting seen before is an
    /// error naming the first line.
    pub(super) fn apply_setting(
        &mut self,
        setting: Setting,
        tokens: &[&str],
        number: usize,
        seen: &mut SeenSettings,
    ) -> Result<(), LineError> {
        let keyword = setting.keyword();
        let value = match tokens {
            [_, value] => *value,
            [_] => return Err(LineError::missing_setting_value(keyword, setting.expected())),
            [_, _, extra, ..] => return Err(LineError::trailing_after_setting(extra, keyword)),
            // The lexer never yields an empty line, and a settings line starts with its keyword.
            [] => return Err(LineError::missing_setting_value(keyword, setting.expected())),
        };
        let unknown = || LineError::unknown_setting_value(value, keyword, setting.expected());
        let (slot, what) = match setting {
            Setting::Resolve => {
                self.resolve = ResolvePolicy::from_keyword(value).ok_or_else(unknown)?;
                (&mut seen.resolve, "`resolve` setting")
            }
            Setting::FakeFamilies => {
                self.fake_families = FakeFamilies::from_keyword(value).ok_or_else(unknown)?;
                (&mut seen.fake_families, "`fake-families` setting")
            }
            Setting::FakeRange => match parse_fake_range(value)? {
                (IpAddr::V4(net), prefix) => {
                    self.fake_v4 = (net, prefix);
                    (&mut seen.fake_v4, "IPv4 `fake-range`")
                }
                (IpAddr::V6(net), prefix) => {
                    self.fake_v6 = (net, prefix);
                    (&mut seen.fake_v6, "IPv6 `fake-range`")
                }
            },
        };
        if let Some(first) = *slot {
            return Err(LineError::duplicate_setting(keyword, what, first));
        }
        *slot = Some(number);
        Ok(())
    }

    /// Whether `ip` is in the IPv4 fake range. Allocates nothing.
    pub fn fake_v4_contains(&self, ip: Ipv4Addr) -> bool {
        let (net, prefix) = self.fake_v4;
        let mask = mask_v4(prefix);
        u32::from(ip) & mask == u32::from(net) & mask
    }

    /// Whether `ip` is in the IPv6 fake range. Allocates nothing.
    pub fn fake_v6_contains(&self, ip: Ipv6Addr) -> bool {
        let (net, prefix) = self.fake_v6;
        let mask = mask_v6(prefix);
        u128::from(ip) & mask == u128::from(net) & mask
    }

    /// The settings that differ from their defaults, as they would be written.
    pub(super) fn changed_settings(&self) -> impl Iterator<Item = String> + '_ {
        let resolve =
            (self.resolve != ResolvePolicy::default()).then(|| format!("resolve {}", self.resolve));
        let v4 = (self.fake_v4 != DEFAULT_FAKE_V4)
            .then(|| format!("fake-range {}/{}", self.fake_v4.0, self.fake_v4.1));
        let v6 = (self.fake_v6 != DEFAULT_FAKE_V6)
            .then(|| format!("fake-range {}/{}", self.fake_v6.0, self.fake_v6.1));
        let families = (self.fake_families != FakeFamilies::default())
            .then(|| format!("fake-families {}", self.fake_families));
        [resolve, v4, v6, families].into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::socks_conf_fixture::{check_err, parse, OK};

    #[test]
    fn settings_defaults() {
        let rs = parse("direct 10.0.0.0/8\n").unwrap();
        assert_eq!(rs.resolve, ResolvePolicy::Remote);
        assert_eq!(rs.fake_v4, (Ipv4Addr::new(198, 18, 0, 0), 15));
        assert_eq!(rs.fake_v6, ("fd73:6f63:6b73::".parse().unwrap(), 48));
        assert_eq!((rs.fake_v4, rs.fake_v6), (DEFAULT_FAKE_V4, DEFAULT_FAKE_V6));
        assert_eq!(rs.fake_families, FakeFamilies::Ipv4);
        assert_eq!(rs.to_string(), "socks.conf:1: direct 10.0.0.0/8\n", "defaults not listed");
    }

    #[test]
    fn settings_anywhere_in_the_file() {
        let rs = parse(
            "fake-families both   # AAAA and A for AF_UNSPEC\n\
             direct .corp.example\n\
             fake-range 10.99.0.0/16\n\
             sockd @=fw 0.0.0.0/0\n\
             resolve local-then-remote\n\
             fake-range fd00:5::/64\n",
        )
        .unwrap();
        assert_eq!(rs.rules.len(), 2);
        assert_eq!((rs.rules[0].line, rs.rules[1].line), (2, 4));
        assert_eq!(rs.resolve, ResolvePolicy::LocalThenRemote);
        assert_eq!(rs.fake_v4, (Ipv4Addr::new(10, 99, 0, 0), 16));
        assert_eq!(rs.fake_v6, ("fd00:5::".parse().unwrap(), 64));
        assert_eq!(rs.fake_families, FakeFamilies::Both);
        assert_eq!(
            rs.to_string(),
            "socks.conf:2: direct .corp.example\n\
             socks.conf:4: sockd @=fw:1080 0.0.0.0/0\n\
             socks.conf: resolve local-then-remote\n\
             socks.conf: fake-range 10.99.0.0/16\n\
             socks.conf: fake-range fd00:5::/64\n\
             socks.conf: fake-families both\n"
        );
    }

    #[test]
    fn settings_every_value() {
        for (text, policy) in [
            ("resolve remote", ResolvePolicy::Remote),
            ("resolve local", ResolvePolicy::Local),
            ("resolve local-then-remote", ResolvePolicy::LocalThenRemote),
        ] {
            let rs = parse(text).unwrap();
            assert_eq!(rs.resolve, policy);
            assert_eq!(format!("resolve {policy}"), text);
            assert!(rs.rules.is_empty());
        }
        for (text, families) in [
            ("fake-families ipv4", FakeFamilies::Ipv4),
            ("fake-families ipv6", FakeFamilies::Ipv6),
            ("fake-families both", FakeFamilies::Both),
        ] {
            assert_eq!(parse(text).unwrap().fake_families, families);
            assert_eq!(format!("fake-families {families}"), text);
        }
        // Explicit defaults are allowed (and count as the one occurrence).
        let rs =
            parse("resolve remote\nfake-range 198.18.0.0/15\nfake-range fd73:6f63:6b73::/48\n")
                .unwrap();
        assert_eq!(
            (rs.resolve, rs.fake_v4, rs.fake_v6),
            (ResolvePolicy::Remote, DEFAULT_FAKE_V4, DEFAULT_FAKE_V6)
        );
    }

    #[test]
    fn fake_range_bounds_accepted() {
        for (text, net, prefix) in [
            ("fake-range 10.0.0.0/8", "10.0.0.0", 8),
            ("fake-range 100.64.0.0/10", "100.64.0.0", 10),
            ("fake-range 198.18.0.0/30", "198.18.0.0", 30),
            ("fake-range 223.255.255.252/30", "223.255.255.252", 30),
        ] {
            let rs = parse(text).unwrap();
            assert_eq!(rs.fake_v4, (net.parse().unwrap(), prefix), "{text}");
        }
        for (text, net, prefix) in [
            ("fake-range 2001:db8::/32", "2001:db8::", 32),
            ("fake-range fd00::/8", "fd00::", 8),
            ("fake-range fd73:6f63:6b73::ff00/120", "fd73:6f63:6b73::ff00", 120),
            ("fake-range 64:ff9b::/96", "64:ff9b::", 96),
        ] {
            let rs = parse(text).unwrap();
            assert_eq!(rs.fake_v6, (net.parse().unwrap(), prefix), "{text}");
        }
        // Next to the reserved blocks, touching none.
        for text in [
            "fake-range 1.0.0.0/8",
            "fake-range 126.0.0.0/8",
            "fake-range 128.0.0.0/8",
            "fake-range 169.253.0.0/16",
            "fake-range 169.255.0.0/16",
            "fake-range 223.0.0.0/8",
            "fake-range 255.255.255.248/30",
            "fake-range 240.0.0.0/8",
            "fake-range ::1:0/120",
            "fake-range fec0::/10",
            "fake-range fe00::/9",
        ] {
            assert!(parse(text).is_ok(), "{text}: {:?}", parse(text));
        }
    }

    #[test]
    fn fake_range_contains() {
        let rs = parse("").unwrap();
        assert!(rs.fake_v4_contains(Ipv4Addr::new(198, 18, 0, 0)));
        assert!(rs.fake_v4_contains(Ipv4Addr::new(198, 19, 255, 255)));
        assert!(!rs.fake_v4_contains(Ipv4Addr::new(198, 20, 0, 0)));
        assert!(!rs.fake_v4_contains(Ipv4Addr::new(198, 17, 255, 255)));
        assert!(rs.fake_v6_contains("fd73:6f63:6b73::1".parse().unwrap()));
        assert!(rs.fake_v6_contains("fd73:6f63:6b73:ffff:ffff:ffff:ffff:ffff".parse().unwrap()));
        assert!(!rs.fake_v6_contains("fd73:6f63:6b74::".parse().unwrap()));
        assert!(!rs.fake_v6_contains("::ffff:198.18.0.1".parse().unwrap()));

        let rs = parse("fake-range 10.99.0.0/30\nfake-range 2001:db8::ff00/120\n").unwrap();
        assert!(rs.fake_v4_contains(Ipv4Addr::new(10, 99, 0, 3)));
        assert!(!rs.fake_v4_contains(Ipv4Addr::new(10, 99, 0, 4)));
        assert!(rs.fake_v6_contains("2001:db8::ffff".parse().unwrap()));
        assert!(!rs.fake_v6_contains("2001:db8::1:ff00".parse().unwrap()));

        // Hand-built extremes do not overflow.
        let mut rs = parse("").unwrap();
        rs.fake_v4 = (Ipv4Addr::UNSPECIFIED, 0);
        rs.fake_v6 = (Ipv6Addr::LOCALHOST, 200);
        assert!(rs.fake_v4_contains(Ipv4Addr::BROADCAST));
        assert!(rs.fake_v6_contains(Ipv6Addr::LOCALHOST));
        assert!(!rs.fake_v6_contains(Ipv6Addr::UNSPECIFIED));
    }

    #[test]
    fn err_missing_setting_value() {
        check_err(
            &format!("{OK}resolve\n"),
            3,
            Some("resolve"),
            "socks.conf:3: `resolve` needs a value (expected remote, local or local-then-remote)",
        );
        check_err(
            "fake-range # later",
            1,
            Some("fake-range"),
            "socks.conf:1: `fake-range` needs a value (expected an IPv4 or IPv6 network \
             ADDR/PREFIX)",
        );
        check_err(
            "fake-families",
            1,
            Some("fake-families"),
            "socks.conf:1: `fake-families` needs a value (expected ipv4, ipv6 or both)",
        );
    }

    #[test]
    fn err_unknown_setting_value() {
        check_err(
            &format!("{OK}resolve remotely\n"),
            3,
            Some("remotely"),
            "socks.conf:3: unknown `resolve` value `remotely` \
             (expected remote, local or local-then-remote)",
        );
        check_err(
            "fake-families all",
            1,
            Some("all"),
            "socks.conf:1: unknown `fake-families` value `all` (expected ipv4, ipv6 or both)",
        );
        for text in ["resolve Remote", "resolve local_then_remote", "fake-families IPv4"] {
            assert!(parse(text).unwrap_err().message.starts_with("unknown `"), "{text}");
        }
    }

    #[test]
    fn err_trailing_after_setting() {
        check_err(
            &format!("{OK}resolve local remote\n"),
            3,
            Some("remote"),
            "socks.conf:3: unexpected `remote` after the `resolve` setting (one value per line)",
        );
        check_err(
            "fake-range 10.99.0.0 0.0.255.255",
            1,
            Some("0.0.255.255"),
            "socks.conf:1: unexpected `0.0.255.255` after the `fake-range` setting \
             (one value per line)",
        );
    }

    #[test]
    fn err_duplicate_setting() {
        check_err(
            "resolve local\ndirect 10.0.0.0/8\nresolve local\n",
            3,
            Some("resolve"),
            "socks.conf:3: second `resolve` setting (the first is on line 1)",
        );
        check_err(
            "fake-families ipv6\n\n\nfake-families both",
            4,
            Some("fake-families"),
            "socks.conf:4: second `fake-families` setting (the first is on line 1)",
        );
        check_err(
            "fake-range 10.99.0.0/16\nfake-range fd00:5::/64\nfake-range 10.98.0.0/16\n",
            3,
            Some("fake-range"),
            "socks.conf:3: second IPv4 `fake-range` (the first is on line 1)",
        );
        check_err(
            "fake-range fd00:5::/64\nfake-range fd00:5::/64\n",
            2,
            Some("fake-range"),
            "socks.conf:2: second IPv6 `fake-range` (the first is on line 1)",
        );
    }

    #[test]
    fn err_bad_fake_range() {
        check_err(
            &format!("{OK}fake-range 10.99.0.0\n"),
            3,
            Some("10.99.0.0"),
            "socks.conf:3: bad fake range `10.99.0.0` (expected an IPv4 or IPv6 network \
             ADDR/PREFIX, e.g. 198.18.0.0/15)",
        );
        for tok in [
            "fake.example/16",
            "10.99.0.0/",
            "10.99.0.0/x",
            "10.99.0.0/+16",
            "/16",
            "10.99.0/16",
            "10.99.0.0/16/1",
            "[fd00::]/64",
        ] {
            let e = parse(&format!("fake-range {tok}")).unwrap_err();
            assert_eq!(e.token.as_deref(), Some(tok));
            assert!(e.message.starts_with(&format!("bad fake range `{tok}`")), "{e}");
        }
    }

    #[test]
    fn err_fake_range_prefix() {
        check_err(
            &format!("{OK}fake-range 198.18.0.0/31\n"),
            3,
            Some("198.18.0.0/31"),
            "socks.conf:3: fake range `198.18.0.0/31`: an IPv4 fake range has a prefix of 8 to 30",
        );
        check_err(
            "fake-range fd00::/121",
            1,
            Some("fd00::/121"),
            "socks.conf:1: fake range `fd00::/121`: an IPv6 fake range has a prefix of 8 to 120",
        );
        for tok in ["0.0.0.0/0", "64.0.0.0/7", "10.0.0.0/32", "10.0.0.0/99999", "::/0", "fc00::/7"]
        {
            let e = parse(&format!("fake-range {tok}")).unwrap_err();
            assert!(e.message.contains("fake range has a prefix of"), "{e}");
        }
    }

    #[test]
    fn err_fake_range_host_bits() {
        check_err(
            &format!("{OK}fake-range 198.18.0.1/15\n"),
            3,
            Some("198.18.0.1/15"),
            "socks.conf:3: fake range `198.18.0.1/15` has address bits set after the prefix \
             (write 198.18.0.0/15)",
        );
        check_err(
            "fake-range fd73:6f63:6b73::1/48",
            1,
            Some("fd73:6f63:6b73::1/48"),
            "socks.conf:1: fake range `fd73:6f63:6b73::1/48` has address bits set after the \
             prefix (write fd73:6f63:6b73::/48)",
        );
    }

    #[test]
    fn err_fake_range_reserved() {
        check_err(
            &format!("{OK}fake-range 127.0.0.0/16\n"),
            3,
            Some("127.0.0.0/16"),
            "socks.conf:3: fake range `127.0.0.0/16` overlaps the loopback block 127.0.0.0/8 \
             (choose a range clear of unspecified, loopback, link-local, multicast and broadcast \
             addresses, such as 198.18.0.0/15 or fd73:6f63:6b73::/48)",
        );
        let cases = [
            ("0.0.0.0/8", "unspecified block 0.0.0.0/8"),
            ("0.128.0.0/9", "unspecified block 0.0.0.0/8"),
            ("127.128.0.0/9", "loopback block 127.0.0.0/8"),
            ("169.254.1.0/24", "link-local block 169.254.0.0/16"),
            ("169.0.0.0/8", "link-local block 169.254.0.0/16"),
            ("224.0.0.0/8", "multicast block 224.0.0.0/4"),
            ("239.255.0.0/16", "multicast block 224.0.0.0/4"),
            ("232.0.0.0/8", "multicast block 224.0.0.0/4"),
            ("255.255.255.252/30", "limited broadcast block 255.255.255.255/32"),
            ("::/8", "unspecified block ::/128"),
            ("::/120", "unspecified block ::/128"),
            ("::ffff:198.18.0.0/111", "IPv4-mapped block ::ffff:0.0.0.0/96"),
            ("fe80::/16", "link-local block fe80::/10"),
            ("febf:ff00::/24", "link-local block fe80::/10"),
            ("fe00::/8", "link-local block fe80::/10"),
            ("ff02::/16", "multicast block ff00::/8"),
        ];
        for (tok, detail) in cases {
            let e = parse(&format!("fake-range {tok}")).unwrap_err();
            assert_eq!(e.token.as_deref(), Some(tok));
            assert!(
                e.message.starts_with(&format!("fake range `{tok}` overlaps the {detail} (")),
                "{e}"
            );
        }
    }
}
