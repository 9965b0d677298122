//! The map between host names resolved "on the far side" and the fake addresses handed to the
//! program for them. Entry `i` stands for the i-th address of the fake IPv4 range and of the
//! fake IPv6 range alike, so one table serves both families.
//!
//! It lives in one shared anonymous mapping, so a process and all its forked children (in both
//! directions) see the same names, with no thread, no lock and no file: entries are claimed with
//! atomics and never removed. `exec` starts a new map, so fake addresses mean nothing across
//! exec. Bounded: `CAPACITY` names, then a clear error.
//!
//! The mapping is created the first time the process needs it, not at load (a shared mapping
//! costs the kernel a file of its own, set up and torn down, in every process the library is
//! preloaded into: issue 17): when a name first gets a fake address, or just before the
//! process first forks (the `fork` hook calls [`create`]), so parent and child share it.
//! A name looked up before then has no fake address, and none was handed out.
#![allow(unsafe_code)]

use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// Names the map can hold, and the longest name (what SOCKS5 and SOCKS4a can carry): the
/// shared client crate's bounds, so the library and the supervisor hold as many.
pub use socks_client::names::{CAPACITY, NAME_MAX};
const SLOTS: usize = 2 * CAPACITY;

const EMPTY: u32 = 0;
const READY: u32 = 2;

#[repr(C)]
struct NameEntry {
    state: AtomicU32,
    len: AtomicU32,
    bytes: [u8; NAME_MAX],
}

/// The layout of the shared mapping.
#[repr(C)]
struct Region {
    next: AtomicU32,
    /// Hash slots holding entry index + 1, 0 when free.
    slots: [AtomicU32; SLOTS],
    entries: [NameEntry; CAPACITY],
}

static REGION: AtomicPtr<Region> = AtomicPtr::new(null_mut());

/// Why a name got no fake address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// The shared mapping could not be created at load time.
    Unavailable,
    /// Every entry is taken.
    Full,
    /// Empty, too long, or containing a NUL.
    BadName,
}

/// Creates the shared mapping unless it exists: before a fork (the `fork` hook) and before the
/// first name is added. Threads racing here agree on one mapping (the others are unmapped).
/// Async-signal-safe: an mmap and atomics.
pub fn create() {
    if !REGION.load(Ordering::Acquire).is_null() {
        return;
    }
    let size = std::mem::size_of::<Region>();
    // SAFETY: an anonymous shared mapping with no address hint; the kernel zero-fills it, and
    // all-zero bytes are a valid, empty `Region` (atomics at 0, empty entries).
    let ptr = unsafe {
        libc::mmap(
            null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return;
    }
    if REGION.compare_exchange(null_mut(), ptr.cast(), Ordering::AcqRel, Ordering::Acquire).is_err()
    {
        // SAFETY: `ptr` is the mapping of `size` bytes made above, which nothing else has seen.
        unsafe { libc::munmap(ptr, size) };
    }
}

fn region() -> Result<&'static Region, MapError> {
    let ptr = REGION.load(Ordering::Acquire);
    // SAFETY: set once by `create` to a live mapping of `size_of::<Region>()` bytes that is
    // never unmapped; all access goes through atomics or through bytes published by them.
    unsafe { ptr.as_ref() }.ok_or(MapError::Unavailable)
}

/// 32-bit FNV-1a of the name.
fn hash(name: &[u8]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for &b in name {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as usize
}

/// Lower-cased name without a trailing dot, in a stack buffer.
fn normalise(name: &str) -> Result<([u8; NAME_MAX], usize), MapError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name).as_bytes();
    if trimmed.is_empty() || trimmed.len() > NAME_MAX || trimmed.contains(&0) {
        return Err(MapError::BadName);
    }
    let mut buf = [0u8; NAME_MAX];
    for (d, s) in buf.iter_mut().zip(trimmed) {
        *d = s.to_ascii_lowercase();
    }
    Ok((buf, trimmed.len()))
}

fn entry_matches(entry: &NameEntry, name: &[u8]) -> bool {
    // A claimed entry is published before its slot, so READY is normally seen at once; wait
    // briefly for a writer in another process that is between the two steps.
    for _ in 0..1000 {
        if entry.state.load(Ordering::Acquire) == READY {
            let len = entry.len.load(Ordering::Relaxed) as usize;
            return entry.bytes[..len.min(NAME_MAX)] == *name;
        }
        std::hint::spin_loop();
    }
    false
}

/// The entry index for `name`, adding it if it is new.
pub fn index_of(name: &str) -> Result<u32, MapError> {
    let (buf, len) = normalise(name)?;
    let name = &buf[..len];
    create();
    let region = region()?;
    let mut slot = hash(name) % SLOTS;
    let mut claimed: Option<u32> = None;
    loop {
        let value = region.slots[slot].load(Ordering::Acquire);
        if value != EMPTY {
            let index = value - 1;
            if entry_matches(&region.entries[index as usize], name) {
                return Ok(index);
            }
            slot = (slot + 1) % SLOTS;
            continue;
        }
        let index = match claimed {
            Some(index) => index,
            None => {
                let index = region.next.fetch_add(1, Ordering::AcqRel);
                if index as usize >= CAPACITY {
                    region.next.fetch_sub(1, Ordering::AcqRel);
                    return Err(MapError::Full);
                }
                let entry = &region.entries[index as usize];
                // SAFETY: this process alone claimed `index` (fetch_add), and nobody reads an
                // entry's bytes before its state is READY, published below with Release.
                unsafe {
                    let bytes = entry.bytes.as_ptr().cast_mut();
                    std::ptr::copy_nonoverlapping(name.as_ptr(), bytes, len);
                }
                entry.len.store(len as u32, Ordering::Relaxed);
                entry.state.store(READY, Ordering::Release);
                claimed = Some(index);
                index
            }
        };
        match region.slots[slot].compare_exchange(
            EMPTY,
            index + 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Ok(index),
            // Someone filled this slot meanwhile (maybe with our name): look at it again. If it
            // was our name, our claimed entry stays unused; a bounded, harmless loss.
            Err(_) => continue,
        }
    }
}

/// Copies the name of entry `index` into `out`; its length, or `None` for an unused index.
pub fn name_of(index: u32, out: &mut [u8; NAME_MAX]) -> Option<usize> {
    let region = region().ok()?;
    let entry = region.entries.get(index as usize)?;
    if entry.state.load(Ordering::Acquire) != READY {
        return None;
    }
    let len = (entry.len.load(Ordering::Relaxed) as usize).min(NAME_MAX);
    out[..len].copy_from_slice(&entry.bytes[..len]);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_share_across_fork() {
        create();
        let a = index_of("Example.TEST.").expect("room");
        assert_eq!(index_of("example.test"), Ok(a));
        let b = index_of("other.example.test").expect("room");
        assert_ne!(a, b);
        let mut buf = [0u8; NAME_MAX];
        let len = name_of(a, &mut buf).expect("known");
        assert_eq!(&buf[..len], b"example.test");
        assert_eq!(name_of(CAPACITY as u32 - 1, &mut buf), None);
        assert_eq!(index_of(""), Err(MapError::BadName));
        assert_eq!(index_of(&"x".repeat(256)), Err(MapError::BadName));

        // A child adds a name and reports its index through a pipe; the parent sees the entry.
        let mut fds = [0; 2];
        // SAFETY: a valid array of two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only touches the shared map and the pipe, then leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let index = index_of("from-the-child.test").map_or(u32::MAX, |i| i);
            // SAFETY: writing 4 bytes from a live local; leaving without the harness's cleanup.
            unsafe {
                libc::write(fds[1], (&index as *const u32).cast(), 4);
                libc::_exit(0);
            }
        }
        let mut child_index = u32::MAX;
        // SAFETY: reading 4 bytes into a live local, then reaping our own child.
        unsafe {
            libc::read(fds[0], (&mut child_index as *mut u32).cast(), 4);
            libc::waitpid(pid, null_mut(), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        let len = name_of(child_index, &mut buf).expect("the child's entry is visible");
        assert_eq!(&buf[..len], b"from-the-child.test");
        assert_eq!(index_of("from-the-child.test"), Ok(child_index));
    }

    #[test]
    fn many_names() {
        create();
        let mut seen = std::collections::HashSet::new();
        for i in 0..3000 {
            let index = index_of(&format!("host{i}.many.test")).expect("room");
            assert!(seen.insert(index));
        }
        for i in 0..3000 {
            let index = index_of(&format!("host{i}.many.test")).expect("room");
            assert!(seen.contains(&index));
        }
    }
}
