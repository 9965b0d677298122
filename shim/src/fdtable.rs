//! What the library remembers per file descriptor, and the process's most recent proxied
//! connection (the paper's rule: a BIND names the peer of the last connection made through the
//! server).
//!
//! Per descriptor: for a socket connected through a SOCKS server, the destination the program
//! asked for (for getpeername) and the server address the socket really is connected to (to
//! recognise a stale entry after the fd number was reused behind our back, e.g. by an fclose we
//! do not see); for a socket bound through a SOCKS BIND, the address the server listens on and
//! the server, until accept.
//!
//! A fixed table indexed by fd, lock-free (atomics only) and allocation-free, so it is safe in
//! signal handlers and fork children. Descriptors at or above `TABLE_SIZE` are not tracked
//! (getpeername then reports the server's address); the table costs no memory until touched.

use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

use socks_proto::client::ClientVersion;

use crate::sockaddr::{RawAddr, RAW_LEN};

/// Descriptors tracked: 0 to TABLE_SIZE-1.
pub const TABLE_SIZE: usize = 1 << 16;

const WORDS_PER_ADDR: usize = RAW_LEN.div_ceil(8);

/// What a tracked descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Connected through a server: `first` is the program's destination.
    Connected,
    /// Bound through a SOCKS BIND of this version: `first` is the address the server listens
    /// on; the second reply is still to come.
    Bound(ClientVersion),
    /// A UDP socket with a UDP ASSOCIATE: `server` is the relay address; `first` is the last
    /// fake (name) destination the program sent to, if any (its replies are reported as from it).
    Udp,
    /// A UDP socket the program connected to a proxied peer: `first` is that peer as the program
    /// named it, `server` the relay address (the socket is really connected to the relay).
    UdpConnected,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Connected => 1,
            Kind::Bound(ClientVersion::Socks4) => 2,
            Kind::Bound(ClientVersion::Socks4a) => 3,
            Kind::Bound(ClientVersion::Socks5) => 4,
            Kind::Udp => 5,
            Kind::UdpConnected => 6,
        }
    }

    fn from_code(code: u32) -> Option<Kind> {
        Some(match code {
            1 => Kind::Connected,
            2 => Kind::Bound(ClientVersion::Socks4),
            3 => Kind::Bound(ClientVersion::Socks4a),
            4 => Kind::Bound(ClientVersion::Socks5),
            5 => Kind::Udp,
            6 => Kind::UdpConnected,
            _ => return None,
        })
    }
}

/// A tracked descriptor (or the last proxied connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// Connected: the program's destination. Bound: the server's listening address.
    pub first: RawAddr,
    /// The SOCKS server the socket is connected to.
    pub server: RawAddr,
}

/// An `Entry` in atomics. `state` is 0 when empty, else generation (12 bits), kind (4 bits) and
/// the two address lengths (8 bits each); readers check it did not change while copying.
struct EntryCell {
    state: AtomicU32,
    words: [AtomicU64; 2 * WORDS_PER_ADDR],
}

impl EntryCell {
    const fn new() -> EntryCell {
        EntryCell {
            state: AtomicU32::new(0),
            words: [const { AtomicU64::new(0) }; 2 * WORDS_PER_ADDR],
        }
    }

    fn store(&self, entry: &Entry) {
        let old = self.state.swap(0, Ordering::AcqRel);
        let generation = ((old >> 20).wrapping_add(1) & 0xfff).max(1);
        store_addr(&self.words[..WORDS_PER_ADDR], &entry.first);
        store_addr(&self.words[WORDS_PER_ADDR..], &entry.server);
        let state = (generation << 20)
            | (entry.kind.code() << 16)
            | ((entry.first.len as u32) << 8)
            | entry.server.len as u32;
        self.state.store(state, Ordering::Release);
    }

    fn load(&self) -> Option<Entry> {
        for _ in 0..4 {
            let before = self.state.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            let first = load_addr(&self.words[..WORDS_PER_ADDR], (before >> 8) as u8);
            let server = load_addr(&self.words[WORDS_PER_ADDR..], before as u8);
            fence(Ordering::Acquire);
            if self.state.load(Ordering::Relaxed) == before {
                let kind = Kind::from_code((before >> 16) & 0xf)?;
                return Some(Entry { kind, first, server });
            }
        }
        None
    }

    fn clear(&self) {
        self.state.store(0, Ordering::Release);
    }
}

static TABLE: [EntryCell; TABLE_SIZE] = [const { EntryCell::new() }; TABLE_SIZE];
/// For a UDP socket with an association: the descriptor of its TCP control connection, +1
/// (0 = none).
static CONTROL: [AtomicI32; TABLE_SIZE] = [const { AtomicI32::new(0) }; TABLE_SIZE];
/// Descriptors the library owns (control connections): the program's close and close_range
/// leave them alone. One bit per descriptor.
static OWNED: [AtomicU64; TABLE_SIZE / 64] = [const { AtomicU64::new(0) }; TABLE_SIZE / 64];
/// One more than the highest descriptor ever recorded, to bound range clears.
static HIGH_WATER: AtomicI32 = AtomicI32::new(0);
/// The most recent connection made through a server: its destination and server.
static LAST_CONNECTED: EntryCell = EntryCell::new();

fn cell(fd: i32) -> Option<&'static EntryCell> {
    usize::try_from(fd).ok().and_then(|i| TABLE.get(i))
}

/// Records a tracked descriptor.
pub fn set(fd: i32, entry: &Entry) {
    let Some(cell) = cell(fd) else { return };
    cell.store(entry);
    HIGH_WATER.fetch_max(fd + 1, Ordering::Relaxed);
}

/// The entry for `fd`, if any.
pub fn get(fd: i32) -> Option<Entry> {
    cell(fd)?.load()
}

/// Remembers an outbound connection made through a server, for later BINDs.
pub fn remember_last_connected(entry: &Entry) {
    LAST_CONNECTED.store(entry);
}

/// The last connection made through a server in this process (or its parent before fork).
pub fn last_connected() -> Option<Entry> {
    LAST_CONNECTED.load()
}

/// Records `control` as the association control connection of UDP socket `fd`, and as ours.
pub fn set_control(fd: i32, control: i32) {
    if let (Some(slot), Ok(index)) =
        (usize::try_from(fd).ok().and_then(|i| CONTROL.get(i)), usize::try_from(control))
    {
        if let Some(word) = OWNED.get(index / 64) {
            word.fetch_or(1 << (index % 64), Ordering::AcqRel);
            slot.store(control + 1, Ordering::Release);
        }
    }
}

/// The control connection of UDP socket `fd`, if it has one.
pub fn control(fd: i32) -> Option<i32> {
    let slot = usize::try_from(fd).ok().and_then(|i| CONTROL.get(i))?;
    let value = slot.load(Ordering::Acquire);
    (value > 0).then_some(value - 1)
}

/// Detaches and returns the control connection of `fd` (when the program closes `fd`); the
/// caller closes it.
pub fn take_control(fd: i32) -> Option<i32> {
    let slot = usize::try_from(fd).ok().and_then(|i| CONTROL.get(i))?;
    let value = slot.swap(0, Ordering::AcqRel);
    if value <= 0 {
        return None;
    }
    let control = value - 1;
    if let Some(word) = usize::try_from(control).ok().and_then(|i| OWNED.get(i / 64)) {
        word.fetch_and(!(1 << (control % 64)), Ordering::AcqRel);
    }
    Some(control)
}

/// The UDP socket whose control connection is `control`, if any.
pub fn owner_of(control: i32) -> Option<i32> {
    let end = usize::try_from(HIGH_WATER.load(Ordering::Relaxed)).unwrap_or(0).min(TABLE_SIZE);
    CONTROL[..end]
        .iter()
        .position(|slot| slot.load(Ordering::Acquire) == control + 1)
        .map(|i| i as i32)
}

/// Whether the library owns descriptor `fd` (the program must not close it).
pub fn is_owned(fd: i32) -> bool {
    let Ok(index) = usize::try_from(fd) else { return false };
    OWNED.get(index / 64).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (index % 64)) != 0)
}

/// The owned descriptors from `first` to `last`, ascending, into `out`; how many.
pub fn owned_in_range(first: u32, last: u32, out: &mut [i32]) -> usize {
    let mut count = 0;
    for (w, word) in OWNED.iter().enumerate() {
        let mut bits = word.load(Ordering::Acquire);
        while bits != 0 && count < out.len() {
            let bit = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let fd = (w * 64 + bit) as u32;
            if fd >= first && fd <= last {
                out[count] = fd as i32;
                count += 1;
            }
        }
    }
    count
}

/// Forgets `fd`.
pub fn clear(fd: i32) {
    if let Some(cell) = cell(fd) {
        cell.clear();
    }
}

/// Forgets every descriptor from `first` to `last` inclusive.
pub fn clear_range(first: u32, last: u32) {
    let end = (HIGH_WATER.load(Ordering::Relaxed).max(0) as u32).min(last.saturating_add(1));
    for fd in first..end {
        clear(fd as i32);
    }
}

/// Makes `to` describe what `from` describes (after dup): same socket, same entry.
pub fn copy(from: i32, to: i32) {
    match get(from) {
        Some(entry) => {
            if let Some(cell) = cell(to) {
                cell.store(&entry);
                HIGH_WATER.fetch_max(to + 1, Ordering::Relaxed);
            }
        }
        None => clear(to),
    }
}

fn store_addr(words: &[AtomicU64], addr: &RawAddr) {
    for (i, word) in words.iter().enumerate() {
        let mut chunk = [0u8; 8];
        let start = i * 8;
        let end = (start + 8).min(RAW_LEN);
        chunk[..end - start].copy_from_slice(&addr.bytes[start..end]);
        word.store(u64::from_ne_bytes(chunk), Ordering::Relaxed);
    }
}

fn load_addr(words: &[AtomicU64], len: u8) -> RawAddr {
    let mut bytes = [0u8; RAW_LEN];
    for (i, word) in words.iter().enumerate() {
        let chunk = word.load(Ordering::Relaxed).to_ne_bytes();
        let start = i * 8;
        let end = (start + 8).min(RAW_LEN);
        bytes[start..end].copy_from_slice(&chunk[..end - start]);
    }
    RawAddr { bytes, len: usize::from(len).min(RAW_LEN) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind, first: &str, server: &str) -> Entry {
        Entry {
            kind,
            first: RawAddr::from_socket_addr(first.parse().expect("literal")),
            server: RawAddr::from_socket_addr(server.parse().expect("literal")),
        }
    }

    #[test]
    fn set_get_copy_clear() {
        let e = entry(Kind::Connected, "[2001:db8::1]:443", "10.0.0.1:1080");
        set(100, &e);
        assert_eq!(get(100), Some(e));
        remember_last_connected(&e);
        assert_eq!(last_connected(), Some(e));
        copy(100, 101);
        assert_eq!(get(101), Some(e));
        clear(100);
        assert_eq!(get(100), None);
        copy(100, 101);
        assert_eq!(get(101), None);
        let bound =
            entry(Kind::Bound(ClientVersion::Socks4), "198.51.100.1:40000", "10.0.0.1:1080");
        set(200, &bound);
        assert_eq!(get(200), Some(bound));
        set(201, &entry(Kind::Connected, "192.0.2.1:80", "10.0.0.1:1080"));
        clear_range(200, 200);
        assert_eq!(get(200), None);
        assert!(get(201).is_some());
        clear_range(0, u32::MAX);
        assert_eq!(get(201), None);
    }

    #[test]
    fn control_connections_are_owned() {
        let e = entry(Kind::Udp, "192.0.2.1:53", "10.0.0.1:4000");
        set(300, &e);
        set_control(300, 700);
        assert_eq!(control(300), Some(700));
        assert!(is_owned(700));
        assert_eq!(owner_of(700), Some(300));
        let mut found = [0; 4];
        assert_eq!(owned_in_range(600, 800, &mut found), 1);
        assert_eq!(found[0], 700);
        assert_eq!(owned_in_range(701, 800, &mut found), 0);
        assert_eq!(take_control(300), Some(700));
        assert!(!is_owned(700));
        assert_eq!(control(300), None);
        clear(300);
    }

    #[test]
    fn out_of_range_is_ignored() {
        let e = entry(Kind::Bound(ClientVersion::Socks5), "192.0.2.1:80", "10.0.0.1:1080");
        set(-1, &e);
        set(TABLE_SIZE as i32, &e);
        assert_eq!(get(-1), None);
        assert_eq!(get(TABLE_SIZE as i32), None);
    }
}
