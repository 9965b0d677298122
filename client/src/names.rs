//! Names resolved on the far side. A host name that socks.conf sends through a SOCKS server (and
//! that /etc/hosts, `localhost` and the host's own name do not cover) is never looked up
//! locally: the program gets a fake address from a reserved range (`fake-range`, in the families
//! `fake-families` says), and a later connect to that address sends the name to the server
//! (SOCKS5 DOMAINNAME, SOCKS4a). Reverse lookups of a fake address give the name back.
//!
//! Entry `i` of a front end's name store stands for address `i + 1` of the IPv4 range and of
//! the IPv6 range alike (the first and last address of each range are never handed out), so one
//! store serves both families; this module does that arithmetic. Pure and allocation-free (the
//! library asks from signal handlers too).
//!
//! Not here: the stores themselves (`name_table` for an ordinary process; the library's
//! fork-shared one in `shim/src/ffi/fakemap.rs`), DNS messages (`socks_proto::dns`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use socks_proto::rules::{ClientAction, FakeFamilies, ResolvePolicy};

use crate::settings::{Mode, NameSettings, Settings};

/// Names a store holds (a process tree's worth).
pub const CAPACITY: usize = 1 << 16;
/// Longest name (what SOCKS5 and SOCKS4a carry).
pub const NAME_MAX: usize = 255;

/// What to do with a lookup of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePlan {
    /// The real resolver.
    Local,
    /// Fake addresses, no lookup at all.
    Fake,
    /// The real resolver, and fake addresses if it finds nothing (`resolve local-then-remote`).
    LocalThenFake,
}

/// Decides for `name` (a trailing dot is ignored). An address literal, a name with a scope
/// (`%`), `localhost`, a name in /etc/hosts and the host's own name are always local; an
/// address with a trailing dot (`192.0.2.7.`) is no literal to libc, so it is a name like any
/// other (asking the local resolver for it would leak it).
pub fn plan(settings: &Settings, name: &str) -> NamePlan {
    let Some(names) = &settings.names else { return NamePlan::Local };
    if name.parse::<IpAddr>().is_ok() || name.contains('%') {
        return NamePlan::Local;
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty()
        || bare.eq_ignore_ascii_case("localhost")
        || names.hosts.contains(bare)
        || names.own_host_name.as_deref().is_some_and(|own| own.eq_ignore_ascii_case(bare))
    {
        return NamePlan::Local;
    }
    match &settings.mode {
        Mode::Everything { .. } => NamePlan::Fake,
        Mode::Rules { rules, .. } => {
            match rules.decide_name(bare, None, settings.user.as_deref()).map(|r| r.action) {
                Some(ClientAction::Direct) => NamePlan::Local,
                Some(ClientAction::Deny | ClientAction::Proxy) => NamePlan::Fake,
                None => match rules.resolve {
                    ResolvePolicy::Remote if rules.has_proxy_rule() => NamePlan::Fake,
                    ResolvePolicy::Remote | ResolvePolicy::Local => NamePlan::Local,
                    ResolvePolicy::LocalThenRemote => NamePlan::LocalThenFake,
                },
            }
        }
        Mode::Off | Mode::Broken { .. } => NamePlan::Local,
    }
}

/// Which families of fake address a lookup gets: `(v4, v6)`. `asked` is the family the caller
/// named, `None` for either (AF_UNSPEC), which `fake-families` decides.
pub fn fake_families(names: &NameSettings, asked: Option<bool>) -> (bool, bool) {
    match asked {
        Some(v6) => (!v6, v6),
        None => match names.families {
            FakeFamilies::Ipv4 => (true, false),
            FakeFamilies::Ipv6 => (false, true),
            FakeFamilies::Both => (true, true),
        },
    }
}

/// The name in the form stores keep (no trailing dot; compare without case), or `None` when it
/// cannot be carried: empty, longer than [`NAME_MAX`], or containing a NUL.
pub fn storable(name: &str) -> Option<&str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty() && name.len() <= NAME_MAX && !name.contains('\0')).then_some(name)
}

/// The IPv4 fake address of store entry `index`, or `None` past the end of the range.
pub fn fake_v4(names: &NameSettings, index: u32) -> Option<Ipv4Addr> {
    let (base, prefix) = names.fake_v4;
    let offset = u128::from(index) + 1;
    (offset + 1 < 1u128 << (32 - u32::from(prefix.min(32))))
        .then(|| Ipv4Addr::from(u32::from(base).wrapping_add(offset as u32)))
}

/// The IPv6 fake address of store entry `index`, or `None` past the end of the range.
pub fn fake_v6(names: &NameSettings, index: u32) -> Option<Ipv6Addr> {
    let (base, prefix) = names.fake_v6;
    let offset = u128::from(index) + 1;
    (offset + 1 < 1u128 << (128 - u32::from(prefix.min(128))).min(127))
        .then(|| Ipv6Addr::from(u128::from(base).wrapping_add(offset)))
}

/// The store entry a fake address stands for, if `ip` lies in a fake range (an IPv4-mapped
/// address counts as the IPv4 address).
pub fn index_of_fake(settings: &Settings, ip: IpAddr) -> Option<u32> {
    let names = settings.names.as_ref()?;
    let offset = match ip.to_canonical() {
        IpAddr::V4(ip) => {
            let (base, prefix) = names.fake_v4;
            let size = 1u64 << (32 - u32::from(prefix.min(32)));
            let offset = u64::from(u32::from(ip)).checked_sub(u64::from(u32::from(base)))?;
            (offset < size).then_some(u128::from(offset))?
        }
        IpAddr::V6(ip) => {
            let (base, prefix) = names.fake_v6;
            let offset = u128::from(ip).checked_sub(u128::from(base))?;
            let bits = 128 - u32::from(prefix.min(128));
            (bits >= 128 || offset < 1u128 << bits).then_some(offset)?
        }
    };
    u32::try_from(offset.checked_sub(1)?).ok()
}

/// Whether `ip` lies in one of the fake ranges (whether or not a name is behind it).
pub fn is_fake(settings: &Settings, ip: IpAddr) -> bool {
    index_of_fake(settings, ip).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::testing::with_conf;
    use crate::settings::{load, Environment};

    #[test]
    fn plans() {
        let s = with_conf("direct .corp.example\nsockd .example.test\nsockd 0.0.0.0/0\n");
        assert_eq!(plan(&s, "www.example.test"), NamePlan::Fake);
        assert_eq!(plan(&s, "www.example.test."), NamePlan::Fake);
        assert_eq!(plan(&s, "intranet.corp.example"), NamePlan::Local);
        assert_eq!(plan(&s, "localhost"), NamePlan::Local);
        assert_eq!(plan(&s, "LocalHost."), NamePlan::Local);
        assert_eq!(plan(&s, "printer"), NamePlan::Local, "in /etc/hosts");
        assert_eq!(plan(&s, "workstation"), NamePlan::Local, "the host's own name");
        assert_eq!(plan(&s, "192.0.2.7"), NamePlan::Local);
        assert_eq!(plan(&s, "192.0.2.7."), NamePlan::Fake, "no literal: a name, never leaked");
        assert_eq!(plan(&s, "fe80::1%eth0"), NamePlan::Local);
        assert_eq!(plan(&s, ""), NamePlan::Local);
        assert_eq!(plan(&s, "."), NamePlan::Local, "the root is no name to fake");
        assert_eq!(plan(&s, "elsewhere.test"), NamePlan::Fake);
        let local = with_conf("resolve local\nsockd .example.test\n");
        assert_eq!(plan(&local, "elsewhere.test"), NamePlan::Local);
        assert_eq!(plan(&local, "a.example.test"), NamePlan::Fake);
        let then = with_conf("resolve local-then-remote\nsockd 0.0.0.0/0\n");
        assert_eq!(plan(&then, "x.test"), NamePlan::LocalThenFake);
        let none = with_conf("direct 0.0.0.0/0\n");
        assert_eq!(plan(&none, "x.test"), NamePlan::Local, "no line goes through a server");
        let broken = load(
            &Environment { conf: Some("/nonexistent".into()), ..Default::default() },
            &crate::settings::testing::Memory::default(),
        );
        assert_eq!(
            plan(&broken, "x.test"),
            NamePlan::Local,
            "a broken configuration fakes nothing"
        );
    }

    #[test]
    fn families() {
        let s = with_conf("fake-families both\nsockd 0.0.0.0/0\n");
        let names = s.names.as_ref().expect("names");
        assert_eq!(fake_families(names, None), (true, true));
        assert_eq!(fake_families(names, Some(true)), (false, true));
        assert_eq!(fake_families(names, Some(false)), (true, false));
        let v4 = with_conf("sockd 0.0.0.0/0\n");
        assert_eq!(fake_families(v4.names.as_ref().expect("names"), None), (true, false));
    }

    #[test]
    fn addresses_round_trip() {
        let s = with_conf("sockd 0.0.0.0/0\n");
        let names = s.names.as_ref().expect("names");
        let v4 = fake_v4(names, 0).expect("room");
        let v6 = fake_v6(names, 0).expect("room");
        assert_eq!(v4, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(v6, "fd73:6f63:6b73::1".parse::<Ipv6Addr>().expect("literal"));
        assert_eq!(index_of_fake(&s, v4.into()), Some(0));
        assert_eq!(index_of_fake(&s, v6.into()), Some(0));
        assert_eq!(index_of_fake(&s, IpAddr::V6(v4.to_ipv6_mapped())), Some(0));
        let last = fake_v4(names, CAPACITY as u32 - 1).expect("the default range holds them all");
        assert_eq!(index_of_fake(&s, last.into()), Some(CAPACITY as u32 - 1));
        assert!(!is_fake(&s, "198.18.0.0".parse().expect("literal")), "network address");
        assert!(!is_fake(&s, "192.0.2.1".parse().expect("literal")));
        assert!(!is_fake(&Settings::off(), v4.into()), "nothing is fake with nothing configured");
        let small = with_conf("fake-range 10.99.0.0/30\nsockd 0.0.0.0/0\n");
        let names = small.names.as_ref().expect("names");
        assert_eq!(fake_v4(names, 1), Some(Ipv4Addr::new(10, 99, 0, 2)));
        assert_eq!(fake_v4(names, 2), None, "the last address is never handed out");
    }

    #[test]
    fn storable_names() {
        assert_eq!(storable("Example.TEST."), Some("Example.TEST"));
        assert_eq!(storable(""), None);
        assert_eq!(storable("."), None);
        assert_eq!(storable("a\0b"), None);
        assert_eq!(storable(&"x".repeat(NAME_MAX)).map(str::len), Some(NAME_MAX));
        assert_eq!(storable(&"x".repeat(NAME_MAX + 1)), None);
    }
}
