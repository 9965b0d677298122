//! Names resolved on the far side, for supervised programs: what a name gets (the real name
//! server, or a fake address whose connect sends the name to sockd) and the map between the
//! fake addresses handed out and their names — the library's rules (shim/src/names.rs) over the
//! same socks.conf settings (`resolve`, `fake-range`, `fake-families`, parsed by
//! `socks_proto::rules`).
//!
//! The map lives in the supervisor, one per supervised process tree (every process of the tree
//! talks to this one supervisor), behind a mutex: it is an ordinary process. Entry `i` stands for
//! address `i + 1` of the IPv4 range and of the IPv6 range alike, as in the library; the same
//! name always gets the same entry. Bounded: [`CAPACITY`] names, then lookups of new names fail
//! (SERVFAIL) rather than resolve locally.
//!
//! A copy of the library's decisions, kept minimal: both go to the shared client crate of issue
//! 12 ("Shape"), where this ends.
//!
//! Not here: the DNS messages (`socks_proto::dns`), the sockets (`dns`), the connect (`supervise`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use socks_proto::rules::{ClientAction, FakeFamilies, HostsFile, ResolvePolicy};

use crate::config::{Mode, Settings};

/// Names the map holds.
pub const CAPACITY: usize = 1 << 16;
/// Longest name (what SOCKS5 and SOCKS4a carry).
pub const NAME_MAX: usize = 255;

/// How names that go through a server are faked.
#[derive(Debug)]
pub struct NameSettings {
    /// The fake IPv4 range.
    pub fake_v4: (Ipv4Addr, u8),
    /// The fake IPv6 range.
    pub fake_v6: (Ipv6Addr, u8),
    /// Which families an A and an AAAA query get fakes for.
    pub families: FakeFamilies,
    /// /etc/hosts: names in it are always resolved locally.
    pub hosts: HostsFile,
    /// This host's own name, resolved locally too.
    pub own_host_name: Option<String>,
}

impl NameSettings {
    /// Reads /etc/hosts and the host name.
    pub fn new(fake_v4: (Ipv4Addr, u8), fake_v6: (Ipv6Addr, u8), families: FakeFamilies) -> Self {
        let hosts =
            std::fs::read_to_string("/etc/hosts").map(|t| HostsFile::parse(&t)).unwrap_or_default();
        let own_host_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        NameSettings { fake_v4, fake_v6, families, hosts, own_host_name }
    }
}

/// What to do with a query for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The real name server.
    Local,
    /// A fake address; nothing is asked.
    Fake,
    /// The real name server, and a fake address if it finds nothing.
    LocalThenFake,
}

/// Decides for `name` (a plain name, no trailing dot needed).
pub fn plan(settings: &Settings, name: &str) -> Plan {
    let Some(names) = &settings.names else { return Plan::Local };
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() || bare.parse::<IpAddr>().is_ok() {
        return Plan::Local;
    }
    if bare.eq_ignore_ascii_case("localhost")
        || names.hosts.contains(bare)
        || names.own_host_name.as_deref().is_some_and(|own| own.eq_ignore_ascii_case(bare))
    {
        return Plan::Local;
    }
    match &settings.mode {
        Mode::Everything { .. } => Plan::Fake,
        Mode::Rules { rules, .. } => {
            match rules.decide_name(bare, None, settings.user.as_deref()).map(|r| r.action) {
                Some(ClientAction::Direct) => Plan::Local,
                Some(ClientAction::Deny | ClientAction::Proxy) => Plan::Fake,
                None => match rules.resolve {
                    ResolvePolicy::Remote if rules.has_proxy_rule() => Plan::Fake,
                    ResolvePolicy::Remote | ResolvePolicy::Local => Plan::Local,
                    ResolvePolicy::LocalThenRemote => Plan::LocalThenFake,
                },
            }
        }
        Mode::Off | Mode::Broken { .. } => Plan::Local,
    }
}

/// The names handed out, by entry index.
#[derive(Debug, Default)]
pub struct FakeMap {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_name: HashMap<String, u32>,
    names: Vec<String>,
}

/// Lower-cased, no trailing dot; `None` when empty or too long.
fn normalise(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty() && name.len() <= NAME_MAX && !name.contains('\0'))
        .then(|| name.to_ascii_lowercase())
}

impl FakeMap {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The fake address of `name` in the family of `v6`, added if new; `None` when the map or
    /// the range is full or the name cannot be carried.
    pub fn fake_for(&self, settings: &Settings, name: &str, v6: bool) -> Option<IpAddr> {
        let names = settings.names.as_ref()?;
        let name = normalise(name)?;
        let mut entries = self.entries();
        let index = match entries.by_name.get(&name) {
            Some(&i) => i,
            None => {
                if entries.names.len() >= CAPACITY {
                    return None;
                }
                let i = entries.names.len() as u32;
                entries.names.push(name.clone());
                entries.by_name.insert(name, i);
                i
            }
        };
        let offset = u128::from(index) + 1;
        // The first and last address of each range are never handed out.
        let (base4, prefix4) = names.fake_v4;
        let (base6, prefix6) = names.fake_v6;
        if v6 {
            (offset + 1 < 1u128 << (128 - u32::from(prefix6)).min(127))
                .then(|| IpAddr::V6(Ipv6Addr::from(u128::from(base6) + offset)))
        } else {
            (offset + 1 < 1u128 << (32 - u32::from(prefix4)))
                .then(|| IpAddr::V4(Ipv4Addr::from(u32::from(base4) + offset as u32)))
        }
    }

    /// The name behind a fake address handed out.
    pub fn name_of(&self, settings: &Settings, ip: IpAddr) -> Option<String> {
        let index = index_of_fake(settings, ip)?;
        self.entries().names.get(index as usize).cloned()
    }
}

/// The entry index a fake address stands for, if it lies in a fake range.
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

/// Whether `ip` lies in one of the fake ranges (whether or not it was handed out).
pub fn is_fake(settings: &Settings, ip: IpAddr) -> bool {
    index_of_fake(settings, ip).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, Environment};

    fn settings_with(conf: &str) -> Settings {
        let path = std::env::temp_dir().join(format!(
            "socks-supervise-names-{}-{}.conf",
            std::process::id(),
            conf.len()
        ));
        std::fs::write(&path, conf).expect("temp file");
        let settings = load(&Environment {
            conf: Some(path.display().to_string()),
            server: Some("192.0.2.1:1080".into()),
            ..Default::default()
        });
        let _ = std::fs::remove_file(path);
        settings
    }

    #[test]
    fn plans() {
        let s = settings_with("direct .corp.example\nsockd .example.test\nsockd 0.0.0.0/0\n");
        assert_eq!(plan(&s, "www.example.test"), Plan::Fake);
        assert_eq!(plan(&s, "www.example.test."), Plan::Fake);
        assert_eq!(plan(&s, "intranet.corp.example"), Plan::Local);
        assert_eq!(plan(&s, "localhost"), Plan::Local);
        assert_eq!(plan(&s, "192.0.2.7"), Plan::Local);
        let local = settings_with("resolve local\nsockd .example.test\n");
        assert_eq!(plan(&local, "elsewhere.test"), Plan::Local);
        assert_eq!(plan(&local, "a.example.test"), Plan::Fake);
        let then = settings_with("resolve local-then-remote\nsockd 0.0.0.0/0\n");
        assert_eq!(plan(&then, "x.test"), Plan::LocalThenFake);
        let off = load(&Environment { conf: Some("/nonexistent".into()), ..Default::default() });
        assert_eq!(plan(&off, "x.test"), Plan::Local, "a broken configuration fakes nothing");
    }

    #[test]
    fn fakes_round_trip() {
        let s = settings_with("sockd 0.0.0.0/0\n");
        let map = FakeMap::default();
        let v4 = map.fake_for(&s, "Round.Trip.test.", false).expect("room");
        let v6 = map.fake_for(&s, "round.trip.test", true).expect("room");
        assert_eq!(v4, "198.18.0.1".parse::<IpAddr>().expect("literal"));
        assert_eq!(v6, "fd73:6f63:6b73::1".parse::<IpAddr>().expect("literal"));
        assert_eq!(map.name_of(&s, v4).as_deref(), Some("round.trip.test"));
        assert_eq!(map.name_of(&s, v6).as_deref(), Some("round.trip.test"));
        let mapped = IpAddr::V6(Ipv4Addr::new(198, 18, 0, 1).to_ipv6_mapped());
        assert_eq!(map.name_of(&s, mapped).as_deref(), Some("round.trip.test"));
        let other = map.fake_for(&s, "other.test", false).expect("room");
        assert_eq!(other, "198.18.0.2".parse::<IpAddr>().expect("literal"));
        let never: IpAddr = "198.18.0.9".parse().expect("literal");
        assert!(is_fake(&s, never) && map.name_of(&s, never).is_none());
        assert!(!is_fake(&s, "198.18.0.0".parse().expect("literal")), "network address");
        assert!(!is_fake(&s, "192.0.2.1".parse().expect("literal")));
        assert_eq!(map.fake_for(&s, "", false), None);
    }
}
