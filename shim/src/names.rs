//! Names resolved on the far side. A host name that socks.conf sends through a SOCKS server
//! (and that /etc/hosts does not know) is never looked up here: the program gets a fake address
//! from a reserved range, in the family it asked for, and a later connect to that address sends
//! the name to the server (SOCKS5 DOMAINNAME, SOCKS4a). Reverse lookups of a fake address give
//! the name back. Pure decisions over the settings and the shared `fakemap`; the hooks do the
//! libc calls.
//!
//! Not here: the C structures (hostent, addrinfo) — see `hooks` and `hostent`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use socks_proto::rules::{ClientAction, FakeFamilies, ResolvePolicy};

use crate::config::{Mode, Settings};
use crate::ffi::fakemap::{self, MapError, NAME_MAX};

/// What to do with a name lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The real resolver.
    Local,
    /// Fake addresses of these families, no lookup at all.
    Fake { v4: bool, v6: bool },
    /// The real resolver, and fake addresses if it finds nothing.
    LocalThenFake { v4: bool, v6: bool },
}

/// The fake addresses of one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fakes {
    /// In the IPv4 range.
    pub v4: Ipv4Addr,
    /// In the IPv6 range.
    pub v6: Ipv6Addr,
}

/// Decides how to resolve `name` for a caller asking for `family` (AF_INET, AF_INET6 or
/// AF_UNSPEC). Allocates nothing (a signal handler's lookup inside the library asks too).
pub fn plan(settings: &Settings, name: &str, family: i32) -> Plan {
    let Some(names) = &settings.names else { return Plan::Local };
    if name.parse::<IpAddr>().is_ok() || name.contains('%') || name.is_empty() {
        return Plan::Local;
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.eq_ignore_ascii_case("localhost")
        || names.hosts.contains(bare)
        || names.own_host_name.as_deref().is_some_and(|own| own.eq_ignore_ascii_case(bare))
    {
        return Plan::Local;
    }
    let (v4, v6) = match family {
        libc::AF_INET => (true, false),
        libc::AF_INET6 => (false, true),
        _ => match names.families {
            FakeFamilies::Ipv4 => (true, false),
            FakeFamilies::Ipv6 => (false, true),
            FakeFamilies::Both => (true, true),
        },
    };
    let remote = Plan::Fake { v4, v6 };
    match &settings.mode {
        Mode::Everything { .. } => remote,
        Mode::Rules { rules, .. } => {
            match rules.decide_name(bare, None, settings.user.as_deref()).map(|r| r.action) {
                Some(ClientAction::Direct) => Plan::Local,
                Some(ClientAction::Deny | ClientAction::Proxy) => remote,
                None => match rules.resolve {
                    ResolvePolicy::Remote if rules.has_proxy_rule() => remote,
                    ResolvePolicy::Remote | ResolvePolicy::Local => Plan::Local,
                    ResolvePolicy::LocalThenRemote => Plan::LocalThenFake { v4, v6 },
                },
            }
        }
        Mode::Off | Mode::Broken { .. } => Plan::Local,
    }
}

/// The fake addresses for `name` (the same name always gets the same ones in a process tree).
pub fn fakes_for(settings: &Settings, name: &str) -> Result<Fakes, MapError> {
    let names = settings.names.as_ref().ok_or(MapError::Unavailable)?;
    let index = fakemap::index_of(name)?;
    let (base4, prefix4) = names.fake_v4;
    let (base6, prefix6) = names.fake_v6;
    let offset = u128::from(index) + 1;
    // The first and last address of each range are never handed out.
    if offset + 1 >= 1u128 << (32 - u32::from(prefix4))
        || offset + 1 >= 1u128 << (128 - u32::from(prefix6)).min(127)
    {
        return Err(MapError::Full);
    }
    let v4 = Ipv4Addr::from(u32::from(base4) + offset as u32);
    let v6 = Ipv6Addr::from(u128::from(base6) + offset);
    Ok(Fakes { v4, v6 })
}

/// The entry index a fake address stands for, if it is one.
fn index_of_fake(settings: &Settings, ip: IpAddr) -> Option<u32> {
    let names = settings.names.as_ref()?;
    let offset = match ip.to_canonical() {
        IpAddr::V4(ip) => {
            let (base, prefix) = names.fake_v4;
            let size = 1u64 << (32 - u32::from(prefix));
            let offset = u64::from(u32::from(ip)).checked_sub(u64::from(u32::from(base)))?;
            (offset < size).then_some(u128::from(offset))?
        }
        IpAddr::V6(ip) => {
            let (base, prefix) = names.fake_v6;
            let offset = u128::from(ip).checked_sub(u128::from(base))?;
            let bits = 128 - u32::from(prefix);
            (bits >= 128 || offset < 1u128 << bits).then_some(offset)?
        }
    };
    u32::try_from(offset.checked_sub(1)?).ok()
}

/// Whether `ip` lies in one of the fake ranges (whether or not a name is behind it).
pub fn is_fake(settings: &Settings, ip: IpAddr) -> bool {
    index_of_fake(settings, ip).is_some()
}

/// The name behind a fake address, copied into `buf`.
pub fn name_of<'b>(
    settings: &Settings,
    ip: IpAddr,
    buf: &'b mut [u8; NAME_MAX],
) -> Option<&'b str> {
    let index = index_of_fake(settings, ip)?;
    let len = fakemap::name_of(index, buf)?;
    std::str::from_utf8(&buf[..len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, Environment};

    fn settings_with(conf: &str) -> Settings {
        let path = std::env::temp_dir().join(format!(
            "socks-names-{}-{}.conf",
            std::process::id(),
            conf.len()
        ));
        std::fs::write(&path, conf).expect("temp file");
        let env = Environment {
            conf: Some(path.display().to_string()),
            server: Some("192.0.2.1:1080".into()),
            ..Default::default()
        };
        let settings = load(&env);
        let _ = std::fs::remove_file(path);
        settings
    }

    #[test]
    fn plans() {
        fakemap::create();
        let s = settings_with("direct .corp.example\nsockd .example.test\nsockd 0.0.0.0/0\n");
        assert_eq!(
            plan(&s, "www.example.test", libc::AF_UNSPEC),
            Plan::Fake { v4: true, v6: false }
        );
        assert_eq!(
            plan(&s, "www.example.test", libc::AF_INET6),
            Plan::Fake { v4: false, v6: true }
        );
        assert_eq!(plan(&s, "intranet.corp.example", libc::AF_UNSPEC), Plan::Local);
        assert_eq!(plan(&s, "localhost", libc::AF_UNSPEC), Plan::Local);
        assert_eq!(plan(&s, "192.0.2.7", libc::AF_UNSPEC), Plan::Local);
        assert_eq!(plan(&s, "elsewhere.test", libc::AF_INET), Plan::Fake { v4: true, v6: false });
        let local = settings_with("resolve local\nsockd .example.test\n");
        assert_eq!(plan(&local, "elsewhere.test", libc::AF_INET), Plan::Local);
        assert_eq!(
            plan(&local, "a.example.test", libc::AF_INET),
            Plan::Fake { v4: true, v6: false }
        );
        let both =
            settings_with("resolve local-then-remote\nfake-families both\nsockd 0.0.0.0/0\n");
        assert_eq!(
            plan(&both, "x.test", libc::AF_UNSPEC),
            Plan::LocalThenFake { v4: true, v6: true }
        );
    }

    #[test]
    fn fakes_round_trip() {
        fakemap::create();
        let s = settings_with("sockd 0.0.0.0/0\n");
        let fakes = fakes_for(&s, "round.trip.test").expect("room");
        assert!(is_fake(&s, fakes.v4.into()));
        assert!(is_fake(&s, fakes.v6.into()));
        assert!(is_fake(&s, IpAddr::V6(fakes.v4.to_ipv6_mapped())));
        let mut buf = [0u8; NAME_MAX];
        assert_eq!(name_of(&s, fakes.v4.into(), &mut buf), Some("round.trip.test"));
        assert_eq!(name_of(&s, fakes.v6.into(), &mut buf), Some("round.trip.test"));
        assert!(!is_fake(&s, "192.0.2.1".parse().expect("literal")));
        assert!(
            !is_fake(&s, "198.18.0.0".parse().expect("literal")),
            "the network address is never used"
        );
        assert_eq!(fakes_for(&s, "ROUND.trip.test."), Ok(fakes));
    }
}
