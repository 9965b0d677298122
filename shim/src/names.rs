//! Names resolved on the far side, for the library's resolver hooks: the shared decisions of
//! `socks_client::names` (which names get fake addresses, the fake-address arithmetic) put in
//! the hooks' terms (a libc address family; the per-user `fakemap` as the store). A name
//! that socks.conf sends through a SOCKS server is never looked up here: the program gets a fake
//! address in the family it asked for, and a later connect to it sends the name to the server.
//! Allocates nothing (a signal handler's lookup inside the library asks too).
//!
//! Not here: the C structures (hostent, addrinfo) — see `hooks` and `hostent`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use socks_client::names::{self as shared, NamePlan};

pub use socks_client::names::is_fake;

use crate::config::Settings;
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
/// AF_UNSPEC).
pub fn plan(settings: &Settings, name: &str, family: i32) -> Plan {
    let Some(names) = &settings.names else { return Plan::Local };
    let asked = match family {
        libc::AF_INET => Some(false),
        libc::AF_INET6 => Some(true),
        _ => None,
    };
    let (v4, v6) = shared::fake_families(names, asked);
    match shared::plan(settings, name) {
        NamePlan::Local => Plan::Local,
        NamePlan::Fake => Plan::Fake { v4, v6 },
        NamePlan::LocalThenFake => Plan::LocalThenFake { v4, v6 },
    }
}

/// The fake addresses for `name` (the same name always gets the same ones in one map);
/// `Full` when either range has no room left for it.
pub fn fakes_for(settings: &Settings, name: &str) -> Result<Fakes, MapError> {
    let names = settings.names.as_ref().ok_or(MapError::Unavailable)?;
    let index = fakemap::index_of(name)?;
    match (shared::fake_v4(names, index), shared::fake_v6(names, index)) {
        (Some(v4), Some(v6)) => Ok(Fakes { v4, v6 }),
        _ => Err(MapError::Full),
    }
}

/// The name behind a fake address, copied into `buf`.
pub fn name_of<'b>(
    settings: &Settings,
    ip: IpAddr,
    buf: &'b mut [u8; NAME_MAX],
) -> Option<&'b str> {
    let index = shared::index_of_fake(settings, ip)?;
    let len = fakemap::name_of(index, buf)?;
    std::str::from_utf8(&buf[..len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings_with;

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
