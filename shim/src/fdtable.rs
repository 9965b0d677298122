//! What the library remembers per file descriptor, and the process's most recent proxied
//! connection (the paper's rule: a BIND names the peer of the last connection made through the
//! server).
//!
//! Per descriptor: for a socket connected through a SOCKS server, the destination the program
//! asked for (for getpeername) and the server address the socket really is connected to; for a
//! socket bound through a SOCKS BIND, the address the server listens on and the server, until
//! accept; for a UDP socket, its association; for a UDP socket whose DNS queries the library
//! answers, the name server it is (virtually) connected to or last asked.
//!
//! Every entry is tied to the socket itself, not only its number: it records the socket's
//! device and inode numbers (fstat), and a lookup whose descriptor no longer has them finds
//! nothing and drops the entry (with a UDP association's control connection). So a number
//! reused after a close the library did not see (`fclose(fdopen(s))`, glibc's `closefrom`, a
//! raw system call) never inherits the old socket's state. The library's own descriptors
//! (control connections) are tied the same way.
//!
//! A DNS socket's entry may also hold the socket's own bound address (`set_with_own`,
//! `get_with_own`), so that a receive on it asks the kernel nothing but the identity check: the
//! address is part of that one store of the entry (any later `set` of the number, whoever
//! makes it, stores none), read with the entry under the same checks.
//!
//! A fixed table indexed by fd, lock-free (atomics only) and allocation-free, so it is safe in
//! signal handlers and fork children. Descriptors at or above `TABLE_SIZE` are not tracked
//! (getpeername then reports the server's address; BIND and UDP refuse them, see
//! `Cause::TableFull`); the table costs no memory until touched.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

use socks_proto::client::ClientVersion;

use crate::ffi::real;
use crate::ffi::sockaddr::{RawAddr, RAW_LEN};

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
    /// A UDP socket the library answered a DNS query on (`dnswire`), not connected:
    /// `first` is the name server the last answered query was sent to (answers the library
    /// put into the socket are reported as from it); `server` the relay address of its
    /// association, if it has one (`len` 0: none).
    Dns,
    /// A UDP socket the program connected to a name server's port 53, connected only in this
    /// table (`dnswire`: the virtual connect): `first` is that server, `server` the relay
    /// address of its association, if it has one (`len` 0: none).
    DnsConnected,
    /// A TCP socket the program connected to a name server's port 53 (`dnstcp`): `first` is
    /// that server. With a control descriptor (`set_control`: the library's end of the
    /// loopback connection the socket really has) the library answers its queries; without
    /// one (the server reached through sockd, or no listener) queries about names resolved on
    /// the far side are refused (`dnswire::tcp_query_refused`).
    DnsTcp,
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
            Kind::Dns => 7,
            Kind::DnsConnected => 8,
            Kind::DnsTcp => 9,
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
            7 => Kind::Dns,
            8 => Kind::DnsConnected,
            9 => Kind::DnsTcp,
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

/// Which socket a descriptor number refers to: fstat's device and inode numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketId {
    dev: u64,
    ino: u64,
}

impl SocketId {
    /// The socket `fd` refers to now; `None` when `fd` is not open.
    pub fn of(fd: i32) -> Option<SocketId> {
        real::identity(fd).map(|(dev, ino)| SocketId { dev, ino })
    }
}

/// An `Entry` and its socket's identity in atomics. `state` is 0 when empty, else generation
/// (12 bits), kind (4 bits) and the two address lengths (8 bits each); readers check it did not
/// change while copying.
struct EntryCell {
    state: AtomicU32,
    words: [AtomicU64; 2 * WORDS_PER_ADDR],
    /// dev, ino.
    id: [AtomicU64; 2],
    /// The socket's own address, if stored with the entry: the IP (IPv4 as IPv4-mapped), then
    /// the port, bit 16 set for IPv4, bit 17 set when there is an address at all, and an IPv6
    /// address's scope id in the high 32 bits.
    own: [AtomicU64; 3],
}

/// `own[2]`'s bits: an IPv4 address; an address at all.
const OWN_V4: u64 = 1 << 16;
const OWN_SET: u64 = 1 << 17;

impl EntryCell {
    const fn new() -> EntryCell {
        EntryCell {
            state: AtomicU32::new(0),
            words: [const { AtomicU64::new(0) }; 2 * WORDS_PER_ADDR],
            id: [const { AtomicU64::new(0) }; 2],
            own: [const { AtomicU64::new(0) }; 3],
        }
    }

    fn store(&self, entry: &Entry, id: SocketId, own: Option<SocketAddr>) {
        let old = self.state.swap(0, Ordering::AcqRel);
        self.fill(old, entry, id, own);
    }

    /// Stores `entry` with `own` only if the cell still holds what was read under `state`
    /// (claimed with a compare-and-swap, so a store made meanwhile is never overwritten).
    fn store_if(&self, state: u32, entry: &Entry, id: SocketId, own: SocketAddr) {
        if self.state.compare_exchange(state, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            self.fill(state, entry, id, Some(own));
        }
    }

    /// Writes a claimed cell (state 0) whose previous state was `old`, and publishes it.
    fn fill(&self, old: u32, entry: &Entry, id: SocketId, own: Option<SocketAddr>) {
        let generation = ((old >> 20).wrapping_add(1) & 0xfff).max(1);
        store_own(&self.own, own);
        store_addr(&self.words[..WORDS_PER_ADDR], &entry.first);
        store_addr(&self.words[WORDS_PER_ADDR..], &entry.server);
        self.id[0].store(id.dev, Ordering::Relaxed);
        self.id[1].store(id.ino, Ordering::Relaxed);
        let state = (generation << 20)
            | (entry.kind.code() << 16)
            | ((entry.first.len as u32) << 8)
            | entry.server.len as u32;
        self.state.store(state, Ordering::Release);
    }

    /// The entry, its socket's identity, and the state word it was read under.
    fn load(&self) -> Option<(Entry, SocketId, u32)> {
        self.load_with_own().map(|(entry, id, state, _)| (entry, id, state))
    }

    /// As [`EntryCell::load`], with the own address stored with the entry.
    fn load_with_own(&self) -> Option<(Entry, SocketId, u32, Option<SocketAddr>)> {
        for _ in 0..4 {
            let before = self.state.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            let first = load_addr(&self.words[..WORDS_PER_ADDR], (before >> 8) as u8);
            let server = load_addr(&self.words[WORDS_PER_ADDR..], before as u8);
            let id = SocketId {
                dev: self.id[0].load(Ordering::Relaxed),
                ino: self.id[1].load(Ordering::Relaxed),
            };
            let own = load_own(&self.own);
            fence(Ordering::Acquire);
            if self.state.load(Ordering::Relaxed) == before {
                let kind = Kind::from_code((before >> 16) & 0xf)?;
                return Some((Entry { kind, first, server }, id, before, own));
            }
        }
        None
    }

    /// The kind alone, without checking the socket (a hint).
    fn kind(&self) -> Option<Kind> {
        match self.state.load(Ordering::Acquire) {
            0 => None,
            state => Kind::from_code((state >> 16) & 0xf),
        }
    }

    /// Empties the cell if it still holds what was read under `state`.
    fn clear_if(&self, state: u32) {
        let _ = self.state.compare_exchange(state, 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    fn clear(&self) {
        self.state.store(0, Ordering::Release);
    }
}

static TABLE: [EntryCell; TABLE_SIZE] = [const { EntryCell::new() }; TABLE_SIZE];
/// For a UDP socket with an association: the descriptor of its TCP control connection, +1
/// (0 = none); for a `Kind::DnsTcp` socket the library answers, its end of the loopback
/// connection.
static CONTROL: [AtomicI32; TABLE_SIZE] = [const { AtomicI32::new(0) }; TABLE_SIZE];
/// Descriptors the library owns (control connections): the program's close and close_range
/// leave them alone. One bit per descriptor.
static OWNED: [AtomicU64; TABLE_SIZE / 64] = [const { AtomicU64::new(0) }; TABLE_SIZE / 64];
/// The inode number of each owned descriptor's socket, so a number the program took over
/// after closing ours behind our back (closefrom, a raw close_range) is the program's again.
static OWNED_INO: [AtomicU64; TABLE_SIZE] = [const { AtomicU64::new(0) }; TABLE_SIZE];
/// One more than the highest descriptor ever recorded, to bound range clears.
static HIGH_WATER: AtomicI32 = AtomicI32::new(0);
/// The most recent connection made through a server: its destination and server. Its identity
/// words hold no socket (the connection is remembered past its close); the first holds the
/// `@=` entry that carried it (`Server::id`), read and written with the entry as one.
static LAST_CONNECTED: EntryCell = EntryCell::new();

fn cell(fd: i32) -> Option<&'static EntryCell> {
    usize::try_from(fd).ok().and_then(|i| TABLE.get(i))
}

/// Whether `fd` can be tracked at all (0 to `TABLE_SIZE`-1).
pub fn trackable(fd: i32) -> bool {
    cell(fd).is_some()
}

/// Records a tracked descriptor, tied to the socket `fd` refers to now. Nothing is recorded
/// for a descriptor that is not open or not trackable.
pub fn set(fd: i32, entry: &Entry) {
    let Some(cell) = cell(fd) else { return };
    let Some(id) = SocketId::of(fd) else { return };
    cell.store(entry, id, None);
    HIGH_WATER.fetch_max(fd + 1, Ordering::Relaxed);
}

/// As [`set`], with the socket's own bound address (a DNS socket's, `dnswire`), which
/// [`get_with_own`] gives back without asking the kernel. The caller knows it is the socket's
/// address now and for as long as the entry lasts (a bound UDP socket keeps its address).
pub fn set_with_own(fd: i32, entry: &Entry, own: SocketAddr) {
    let Some(cell) = cell(fd) else { return };
    let Some(id) = SocketId::of(fd) else { return };
    cell.store(entry, id, Some(own));
    HIGH_WATER.fetch_max(fd + 1, Ordering::Relaxed);
}

/// The entry for `fd` as [`get`] finds it (the same single identity check), with the own
/// address stored with it, if any, and a token to add one later ([`add_own`]).
pub fn get_with_own(fd: i32) -> Option<(Entry, Option<SocketAddr>, OwnToken)> {
    let cell = cell(fd)?;
    let (entry, id, state, own) = cell.load_with_own()?;
    if SocketId::of(fd) != Some(id) {
        // Not the socket the entry describes: `get` drops it (with its control connection).
        let _ = get(fd);
        return None;
    }
    Some((entry, own, OwnToken { fd, state, entry, id }))
}

/// What [`add_own`] needs: which store of which entry the address was found for.
#[derive(Debug, Clone, Copy)]
pub struct OwnToken {
    fd: i32,
    state: u32,
    entry: Entry,
    id: SocketId,
}

/// Stores `own` with the entry `token` was read with, unless the entry changed since (an entry
/// stored without it, by `set`: after a dup, an association, a disconnect).
pub fn add_own(token: OwnToken, own: SocketAddr) {
    if let Some(cell) = cell(token.fd) {
        cell.store_if(token.state, &token.entry, token.id, own);
    }
}

/// The entry for `fd`, if it describes the socket `fd` refers to now. An entry left by a socket
/// that was closed without the library seeing it is dropped here (its UDP control connection
/// closed), and `None` returned: the descriptor is new to the library.
pub fn get(fd: i32) -> Option<Entry> {
    let cell = cell(fd)?;
    let (entry, id, state) = cell.load()?;
    if SocketId::of(fd) == Some(id) {
        return Some(entry);
    }
    cell.clear_if(state);
    if let Some(control) = take_control(fd) {
        real::close_fd(control);
    }
    None
}

/// What the table holds for number `fd`, without checking that it still describes the same
/// socket (no system call): only to skip work for descriptors that are surely not ours. Act
/// on [`get`].
pub fn kind_hint(fd: i32) -> Option<Kind> {
    cell(fd)?.kind()
}

/// Remembers an outbound connection made through a server, and the `@=` entry that carried it
/// (its `Server::id`: a chain is known by its entry, not by its first hop), for later BINDs.
pub fn remember_last_connected(entry: &Entry, route: usize) {
    LAST_CONNECTED.store(entry, SocketId { dev: route as u64, ino: 0 }, None);
}

/// The last connection made through a server in this process (or its parent before fork), and
/// the `@=` entry that carried it.
pub fn last_connected() -> Option<(Entry, usize)> {
    LAST_CONNECTED.load().map(|(entry, id, _)| (entry, id.dev as usize))
}

/// Records `control` as the association control connection of UDP socket `fd`, and as ours.
pub fn set_control(fd: i32, control: i32) {
    if let (Some(slot), Ok(index)) =
        (usize::try_from(fd).ok().and_then(|i| CONTROL.get(i)), usize::try_from(control))
    {
        if let (Some(word), Some(ino)) = (OWNED.get(index / 64), OWNED_INO.get(index)) {
            ino.store(SocketId::of(control).map_or(0, |id| id.ino), Ordering::Release);
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
/// caller closes it. `None` also when that number is no longer the library's socket (closed
/// behind its back, by closefrom or a raw close_range, and maybe reused by the program since):
/// the library must never close a descriptor of the program's.
pub fn take_control(fd: i32) -> Option<i32> {
    let slot = usize::try_from(fd).ok().and_then(|i| CONTROL.get(i))?;
    let value = slot.swap(0, Ordering::AcqRel);
    if value <= 0 {
        return None;
    }
    let control = value - 1;
    let ours = is_owned(control);
    disown(control);
    ours.then_some(control)
}

/// Marks `fd` as the library's own descriptor with no socket it belongs to (the DNS listener,
/// `dnstcp`): the program's close and close_range leave it alone.
pub fn own(fd: i32) {
    let Ok(index) = usize::try_from(fd) else { return };
    if let (Some(word), Some(ino)) = (OWNED.get(index / 64), OWNED_INO.get(index)) {
        ino.store(SocketId::of(fd).map_or(0, |id| id.ino), Ordering::Release);
        word.fetch_or(1 << (index % 64), Ordering::AcqRel);
    }
}

/// Forgets that the library owns `fd` (before closing it).
pub fn disown(fd: i32) {
    if let Some(word) = usize::try_from(fd).ok().and_then(|i| OWNED.get(i / 64)) {
        word.fetch_and(!(1 << (fd % 64)), Ordering::AcqRel);
    }
}

/// The UDP socket whose control connection is `control`, if any.
pub fn owner_of(control: i32) -> Option<i32> {
    let end = usize::try_from(HIGH_WATER.load(Ordering::Relaxed)).unwrap_or(0).min(TABLE_SIZE);
    CONTROL[..end]
        .iter()
        .position(|slot| slot.load(Ordering::Acquire) == control + 1)
        .map(|i| i as i32)
}

/// Another descriptor than `fd` whose entry is `kind` and describes the same socket (a dup of
/// it), if any: the lowest.
pub fn sibling(fd: i32, kind: Kind) -> Option<i32> {
    let id = SocketId::of(fd)?;
    let end = usize::try_from(HIGH_WATER.load(Ordering::Relaxed)).unwrap_or(0).min(TABLE_SIZE);
    (0..end).map(|i| i as i32).find(|&other| {
        other != fd
            && TABLE[other as usize].kind() == Some(kind)
            && TABLE[other as usize].load().is_some_and(|(_, stored, _)| stored == id)
            && get(other).is_some_and(|e| e.kind == kind)
    })
}

/// Whether the library owns descriptor `fd` (the program must not close it). A number marked
/// ours whose socket is no longer the one we opened (we lost it to a close we did not see) is
/// the program's: it is forgotten here, and its UDP socket loses the association.
pub fn is_owned(fd: i32) -> bool {
    let Ok(index) = usize::try_from(fd) else { return false };
    let marked =
        OWNED.get(index / 64).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (index % 64)) != 0);
    if !marked {
        return false;
    }
    let ino = OWNED_INO.get(index).map_or(0, |i| i.load(Ordering::Acquire));
    if SocketId::of(fd).is_some_and(|id| id.ino == ino) {
        return true;
    }
    if let Some(owner) = owner_of(fd) {
        if let Some(slot) = CONTROL.get(owner as usize) {
            let _ = slot.compare_exchange(fd + 1, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
    disown(fd);
    false
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
            if fd >= first && fd <= last && is_owned(fd as i32) {
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
        Some(entry) => set(to, &entry),
        None => clear(to),
    }
}

fn store_own(words: &[AtomicU64; 3], own: Option<SocketAddr>) {
    let Some(own) = own else {
        words[2].store(0, Ordering::Relaxed);
        return;
    };
    let (ip, flags) = match own {
        SocketAddr::V4(v4) => (v4.ip().to_ipv6_mapped(), OWN_V4),
        SocketAddr::V6(v6) => (*v6.ip(), u64::from(v6.scope_id()) << 32),
    };
    let bits = u128::from(ip);
    words[0].store((bits >> 64) as u64, Ordering::Relaxed);
    words[1].store(bits as u64, Ordering::Relaxed);
    words[2].store(u64::from(own.port()) | flags | OWN_SET, Ordering::Relaxed);
}

fn load_own(words: &[AtomicU64; 3]) -> Option<SocketAddr> {
    let rest = words[2].load(Ordering::Relaxed);
    if rest & OWN_SET == 0 {
        return None;
    }
    let bits = (u128::from(words[0].load(Ordering::Relaxed)) << 64)
        | u128::from(words[1].load(Ordering::Relaxed));
    let ip = Ipv6Addr::from(bits);
    Some(match ip.to_ipv4_mapped() {
        Some(v4) if rest & OWN_V4 != 0 => SocketAddr::new(IpAddr::V4(v4), rest as u16),
        _ => SocketAddr::V6(SocketAddrV6::new(ip, rest as u16, 0, (rest >> 32) as u32)),
    })
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
    use std::net::SocketAddr;
    use std::os::fd::{AsRawFd, IntoRawFd};

    fn entry(kind: Kind, first: &str, server: &str) -> Entry {
        Entry {
            kind,
            first: RawAddr::from_socket_addr(first.parse().expect("literal")),
            server: RawAddr::from_socket_addr(server.parse().expect("literal")),
        }
    }

    /// A real open socket (entries are tied to what a descriptor refers to).
    fn socket() -> std::net::UdpSocket {
        std::net::UdpSocket::bind("127.0.0.1:0").expect("a loopback socket")
    }

    #[test]
    fn set_get_copy_clear() {
        let (a, c, d) = (socket(), socket(), socket());
        let b = a.try_clone().expect("dup");
        let (a, b, c, d) = (a.as_raw_fd(), b.as_raw_fd(), c.as_raw_fd(), d.as_raw_fd());
        let e = entry(Kind::Connected, "[2001:db8::1]:443", "10.0.0.1:1080");
        set(a, &e);
        assert_eq!(get(a), Some(e));
        remember_last_connected(&e, 7);
        assert_eq!(last_connected(), Some((e, 7)), "the entry and the route that carried it");
        copy(a, b);
        assert_eq!(get(b), Some(e));
        clear(a);
        assert_eq!(get(a), None);
        copy(a, b);
        assert_eq!(get(b), None);
        let bound =
            entry(Kind::Bound(ClientVersion::Socks4), "198.51.100.1:40000", "10.0.0.1:1080");
        set(c, &bound);
        assert_eq!(get(c), Some(bound));
        set(d, &entry(Kind::Connected, "192.0.2.1:80", "10.0.0.1:1080"));
        clear_range(c as u32, c as u32);
        assert_eq!(get(c), None);
        assert!(get(d).is_some());
        clear_range(d as u32, u32::MAX);
        assert_eq!(get(d), None);
    }

    #[test]
    fn a_reused_number_does_not_inherit_the_entry() {
        let first = socket().into_raw_fd();
        let e = entry(Kind::Connected, "192.0.2.7:80", "10.0.0.1:1080");
        set(first, &e);
        assert_eq!(kind_hint(first), Some(Kind::Connected));
        // Closed behind the table's back; a new socket takes the number.
        // (libc's close, not the library's hook: the table does not see it.)
        real::close_fd(first);
        let second = socket();
        let fd = second.as_raw_fd();
        if fd == first {
            assert_eq!(get(fd), None, "a new socket on a reused number is not the old one");
            assert_eq!(kind_hint(fd), None, "the stale entry is dropped");
        }
        drop(second);
        // A descriptor that is not open has no entry either. (A number no other test's socket
        // can take meanwhile: descriptors are handed out lowest first, and `first` may be
        // taken by a test running in parallel.)
        let unused = 60_000;
        assert_eq!(real::close_fd(unused), -1, "descriptor {unused} must not be open");
        set(unused, &e);
        assert_eq!(get(unused), None);
    }

    #[test]
    fn control_connections_are_owned() {
        let (udp, ctl) = (socket(), socket());
        let (udp, ctl) = (udp.as_raw_fd(), ctl.as_raw_fd());
        let e = entry(Kind::Udp, "192.0.2.1:53", "10.0.0.1:4000");
        set(udp, &e);
        set_control(udp, ctl);
        assert_eq!(control(udp), Some(ctl));
        assert!(is_owned(ctl));
        assert_eq!(owner_of(ctl), Some(udp));
        let mut found = [0; 4];
        assert_eq!(owned_in_range(ctl as u32, ctl as u32 + 100, &mut found), 1);
        assert_eq!(found[0], ctl);
        assert_eq!(owned_in_range(ctl as u32 + 1, ctl as u32 + 100, &mut found), 0);
        assert_eq!(take_control(udp), Some(ctl));
        assert!(!is_owned(ctl));
        assert_eq!(control(udp), None);
        clear(udp);
    }

    #[test]
    fn an_owned_number_taken_over_by_the_program_is_the_programs() {
        let udp = socket();
        let ctl = socket().into_raw_fd();
        set(udp.as_raw_fd(), &entry(Kind::Udp, "192.0.2.1:53", "10.0.0.1:4000"));
        set_control(udp.as_raw_fd(), ctl);
        assert!(is_owned(ctl));
        // Closed behind the table's back, as closefrom would.
        real::close_fd(ctl);
        let program = socket();
        if program.as_raw_fd() == ctl {
            assert!(!is_owned(ctl), "the program's new socket is not ours");
            assert_eq!(control(udp.as_raw_fd()), None);
        }
        assert_eq!(take_control(udp.as_raw_fd()), None, "a lost control is never handed back");
        clear(udp.as_raw_fd());
    }

    #[test]
    fn a_control_number_lost_and_reused_is_never_closed() {
        let udp = socket();
        let ctl = socket().into_raw_fd();
        set(udp.as_raw_fd(), &entry(Kind::Udp, "192.0.2.1:53", "10.0.0.1:4000"));
        set_control(udp.as_raw_fd(), ctl);
        // Closed behind the table's back, and the number taken by "the program" (a dup2 onto
        // it, so this holds whatever other tests open meanwhile).
        let program = socket();
        assert_eq!(real::dup3_fd(program.as_raw_fd(), ctl, 0), ctl);
        assert_eq!(take_control(udp.as_raw_fd()), None, "not ours any more: not to be closed");
        assert!(SocketId::of(ctl).is_some(), "the program's descriptor is still open");
        real::close_fd(ctl);
        clear(udp.as_raw_fd());
    }

    #[test]
    fn a_dns_entry_keeps_its_own_address_until_stored_again() {
        let a = socket();
        let fd = a.as_raw_fd();
        let e = entry(Kind::DnsConnected, "192.0.2.53:53", "0.0.0.0:0");
        for own in ["127.0.0.1:5353", "[fe80::1%7]:53", "[::ffff:192.0.2.2]:4000"] {
            let own: SocketAddr = own.parse().expect("literal");
            set_with_own(fd, &e, own);
            let (found, stored, _) = get_with_own(fd).expect("the entry");
            assert_eq!((found, stored), (e, Some(own)), "{own}");
        }
        // Any other store of the number (a dup's copy, an association) has none.
        set(fd, &e);
        let (_, stored, token) = get_with_own(fd).expect("the entry");
        assert_eq!(stored, None);
        let own: SocketAddr = "0.0.0.0:4000".parse().expect("literal");
        add_own(token, own);
        assert_eq!(get_with_own(fd).map(|(_, own, _)| own), Some(Some(own)));
        // A token read before another store adds nothing to the newer entry.
        let (_, _, stale) = get_with_own(fd).expect("the entry");
        set(fd, &e);
        add_own(stale, own);
        assert_eq!(get_with_own(fd).map(|(_, own, _)| own), Some(None));
        assert_eq!(get(fd), Some(e), "the entry itself is untouched");
        clear(fd);
        assert!(get_with_own(fd).is_none());
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
