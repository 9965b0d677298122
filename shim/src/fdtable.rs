//! What the library remembers per file descriptor: for a socket it connected through a SOCKS
//! server, the destination the program asked for (for getpeername) and the server address the
//! socket really is connected to (to recognise a stale entry after the fd number was reused
//! behind our back, e.g. by an fclose we do not see).
//!
//! A fixed table indexed by fd, lock-free (atomics only) and allocation-free, so it is safe in
//! signal handlers and fork children. Descriptors at or above `TABLE_SIZE` are not tracked
//! (getpeername then reports the server's address); the table costs no memory until touched.

use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::sockaddr::{RawAddr, RAW_LEN};

/// Descriptors tracked: 0 to TABLE_SIZE-1.
pub const TABLE_SIZE: usize = 1 << 16;

const WORDS_PER_ADDR: usize = RAW_LEN.div_ceil(8);

/// One descriptor's slot. `state` is 0 when empty, else generation (high 16 bits), destination
/// length (8 bits) and server length (8 bits); readers check it did not change while copying.
struct Slot {
    state: AtomicU32,
    words: [AtomicU64; 2 * WORDS_PER_ADDR],
}

impl Slot {
    const fn new() -> Slot {
        Slot { state: AtomicU32::new(0), words: [const { AtomicU64::new(0) }; 2 * WORDS_PER_ADDR] }
    }
}

static TABLE: [Slot; TABLE_SIZE] = [const { Slot::new() }; TABLE_SIZE];
/// One more than the highest descriptor ever recorded, to bound range clears.
static HIGH_WATER: AtomicI32 = AtomicI32::new(0);

fn slot(fd: i32) -> Option<&'static Slot> {
    usize::try_from(fd).ok().and_then(|i| TABLE.get(i))
}

/// A proxied socket's two addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// What the program connected to.
    pub destination: RawAddr,
    /// The SOCKS server the socket is connected to.
    pub server: RawAddr,
}

/// Records a proxied socket.
pub fn set(fd: i32, entry: &Entry) {
    let Some(slot) = slot(fd) else { return };
    let old = slot.state.swap(0, Ordering::AcqRel);
    let generation = (old >> 16).wrapping_add(1) & 0xffff;
    store_addr(&slot.words[..WORDS_PER_ADDR], &entry.destination);
    store_addr(&slot.words[WORDS_PER_ADDR..], &entry.server);
    let state =
        (generation << 16) | ((entry.destination.len as u32) << 8) | entry.server.len as u32;
    slot.state.store(state.max(1), Ordering::Release);
    HIGH_WATER.fetch_max(fd + 1, Ordering::Relaxed);
}

/// The entry for `fd`, if any.
pub fn get(fd: i32) -> Option<Entry> {
    let slot = slot(fd)?;
    for _ in 0..4 {
        let before = slot.state.load(Ordering::Acquire);
        if before == 0 {
            return None;
        }
        let destination = load_addr(&slot.words[..WORDS_PER_ADDR], (before >> 8) as u8);
        let server = load_addr(&slot.words[WORDS_PER_ADDR..], before as u8);
        fence(Ordering::Acquire);
        if slot.state.load(Ordering::Relaxed) == before {
            return Some(Entry { destination, server });
        }
    }
    None
}

/// Forgets `fd`.
pub fn clear(fd: i32) {
    if let Some(slot) = slot(fd) {
        slot.state.store(0, Ordering::Release);
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

    fn entry(dst: &str, server: &str) -> Entry {
        Entry {
            destination: RawAddr::from_socket_addr(dst.parse().expect("literal")),
            server: RawAddr::from_socket_addr(server.parse().expect("literal")),
        }
    }

    #[test]
    fn set_get_copy_clear() {
        let e = entry("[2001:db8::1]:443", "10.0.0.1:1080");
        set(100, &e);
        assert_eq!(get(100), Some(e));
        copy(100, 101);
        assert_eq!(get(101), Some(e));
        clear(100);
        assert_eq!(get(100), None);
        copy(100, 101);
        assert_eq!(get(101), None);
        set(200, &e);
        set(201, &entry("192.0.2.1:80", "10.0.0.1:1080"));
        clear_range(200, 200);
        assert_eq!(get(200), None);
        assert!(get(201).is_some());
        clear_range(0, u32::MAX);
        assert_eq!(get(201), None);
    }

    #[test]
    fn out_of_range_is_ignored() {
        let e = entry("192.0.2.1:80", "10.0.0.1:1080");
        set(-1, &e);
        set(TABLE_SIZE as i32, &e);
        assert_eq!(get(-1), None);
        assert_eq!(get(TABLE_SIZE as i32), None);
    }
}
