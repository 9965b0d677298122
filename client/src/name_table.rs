//! The store of fake names for a front end that is an ordinary process (the supervisor): one per
//! supervised process tree, a hash map behind a mutex. Entry `i` stands for address `i + 1` of
//! each fake range (`names`); the same name (without case and trailing dot) always gets the
//! same entry. Bounded: [`CAPACITY`] names, then new names get nothing (the caller fails the
//! lookup rather than resolve it locally).
//!
//! Not here: the library's store, which must survive fork and work without the heap or a lock
//! (`shim/src/ffi/fakemap.rs`); what a name gets (`names::plan`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::names::{fake_v4, fake_v6, index_of_fake, storable, CAPACITY};
use crate::settings::Settings;

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

impl FakeMap {
    /// The entries; a thread that panicked while holding them left them usable.
    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fake address of `name` in the family of `v6`, added if new; `None` when the map or
    /// the range is full, the name cannot be carried, or nothing goes through a server.
    pub fn fake_for(&self, settings: &Settings, name: &str, v6: bool) -> Option<IpAddr> {
        let names = settings.names.as_ref()?;
        let name = storable(name)?.to_ascii_lowercase();
        let mut entries = self.entries();
        let index = match entries.by_name.get(&name) {
            Some(&i) => i,
            None => {
                if entries.names.len() >= CAPACITY {
                    return None;
                }
                let i = u32::try_from(entries.names.len()).ok()?;
                entries.names.push(name.clone());
                entries.by_name.insert(name, i);
                i
            }
        };
        if v6 {
            fake_v6(names, index).map(IpAddr::V6)
        } else {
            fake_v4(names, index).map(IpAddr::V4)
        }
    }

    /// The name behind a fake address handed out.
    pub fn name_of(&self, settings: &Settings, ip: IpAddr) -> Option<String> {
        let index = index_of_fake(settings, ip)?;
        self.entries().names.get(index as usize).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::is_fake;
    use crate::settings::testing::with_conf;
    use std::net::Ipv4Addr;

    #[test]
    fn fakes_round_trip() {
        let s = with_conf("sockd 0.0.0.0/0\n");
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
        assert_eq!(map.fake_for(&s, "", false), None);
        assert_eq!(map.fake_for(&Settings::off(), "x.test", false), None, "nothing to fake");
    }

    #[test]
    fn a_full_range_gives_nothing() {
        let s = with_conf("fake-range 10.99.0.0/30\nsockd 0.0.0.0/0\n");
        let map = FakeMap::default();
        assert!(map.fake_for(&s, "a.test", false).is_some());
        assert!(map.fake_for(&s, "b.test", false).is_some());
        assert_eq!(map.fake_for(&s, "c.test", false), None, "10.99.0.3 is never handed out");
        assert!(map.fake_for(&s, "c.test", true).is_some(), "the IPv6 range still has room");
    }
}
