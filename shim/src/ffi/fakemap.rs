//! The map between host names resolved "on the far side" and the fake addresses handed to the
//! program for them. Entry `i` stands for the i-th address of the fake IPv4 range and of the
//! fake IPv6 range alike, so one table serves both families.
//!
//! It lives in a per-user file mapped shared (`mapfile`: `$XDG_RUNTIME_DIR/socks/names-v1`,
//! else `/run/user/<euid>/socks/`, else `/tmp/socks-<euid>/`), so every process of the same
//! effective user that loads the library sees the same names: a fake address handed out in one
//! process means the same name in a separately exec'd one (Chromium resolves in its browser
//! process and connects from its network service). No thread, no lock: entries are claimed
//! with atomics and never removed, which works the same on a file-backed mapping as on an
//! anonymous one. Bounded: `CAPACITY` names, then a clear error; reset by removing the file
//! when no program uses it.
//!
//! Secure-execution programs (setuid, file capabilities) and any process whose file cannot be
//! used safely (another owner, open permissions, a symlink, the wrong size, a full or read-only
//! file system) get a private anonymous shared mapping instead, shared by fork only, as before
//! the per-user file; said once in the log (`SOCKS_LOG=warn`).
//!
//! The bytes of the file are trusted no more than any other input: only the same user can
//! write them, but every index read from it is checked, every loop bounded and every length
//! capped, so garbage means wrong answers, never a panic, a hang or a read out of bounds.
//!
//! When: never at load (issue 17). The map is opened when a name first gets a fake address,
//! when a fake address is first looked up (a connect or reverse lookup in a process that has
//! not mapped it yet: the process that resolved may be another one), and in the `fork` hook
//! just before the first fork (unless nothing is configured: [`create_if_configured`]). The
//! fork hook could leave both sides to open the file lazily, which would be cheaper only when
//! they never use a name; but when the file cannot be used, parent and child would then get
//! two private maps and lose what the child resolved, so it makes sure a map (file or
//! private) exists before forking: one open of the file per process that forks, which is what
//! every process that uses a name pays anyway.
#![allow(unsafe_code)]

use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, Ordering};

use crate::ffi::mapfile::{self, Failure, Places};
use crate::log::{self, log, Level};

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

/// The layout of the shared mapping (and of the file: `mapfile::FILE_NAME` carries its
/// version; change that name when this changes).
#[repr(C)]
struct Region {
    next: AtomicU32,
    /// Hash slots holding entry index + 1, 0 when free.
    slots: [AtomicU32; SLOTS],
    entries: [NameEntry; CAPACITY],
}

/// The bytes of a map, and of its file.
pub const SIZE: usize = std::mem::size_of::<Region>();

/// The bytes made resident when the file is opened: the counter and the slots (512 KiB),
/// which every lookup reads at places the hash decides. Entries are made resident by the
/// process that claims them, before it claims them, and no entry at or past `next` is read,
/// so a full file system fails a new name, never a read (on tmpfs a read of a hole of a
/// shared mapping needs a page too, and SIGBUS when there is none).
const RESIDENT: usize = std::mem::offset_of!(Region, entries);

static REGION: AtomicPtr<Region> = AtomicPtr::new(null_mut());

/// What `REGION` is: not made yet, a private map (why: `WHY_PRIVATE`), or the per-user file
/// (`KIND_SHARED` plus the `mapfile::Base` it is in), for the log.
static KIND: AtomicU8 = AtomicU8::new(KIND_NONE);
const KIND_NONE: u8 = 0;
const KIND_PRIVATE: u8 = 1;
const KIND_SHARED: u8 = 2;
/// Whether the kind of map was logged (once, when the log is on: the first map may be made in
/// the fork hook, before the settings switched the log on).
static SAID: AtomicBool = AtomicBool::new(false);
/// Why the file was not used: kept for the log.
static WHY_PRIVATE: AtomicU32 = AtomicU32::new(0);

/// Why a name got no fake address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No map could be made, or no room for a new entry in its file system.
    Unavailable,
    /// Every entry is taken.
    Full,
    /// Empty, too long, or containing a NUL.
    BadName,
}

/// Makes sure this process has the map: the per-user file, or a private anonymous map where
/// that cannot be used (and always in secure-execution programs). Called before a fork (the
/// `fork` hook), before the first name is added, and before the first fake address is looked
/// up. Threads racing here agree on one mapping (the others are unmapped). Async-signal-safe:
/// system calls and atomics, no heap.
pub fn create() {
    if !REGION.load(Ordering::Acquire).is_null() {
        return;
    }
    let (ptr, kind) = if super::real::secure_execution() {
        (anonymous(), KIND_PRIVATE)
    } else {
        match mapfile::open(&places(), SIZE, RESIDENT) {
            Ok(mapped) => (mapped.ptr.cast(), KIND_SHARED + mapped.base as u8),
            Err(failure) => {
                WHY_PRIVATE.store(encode(&failure), Ordering::Relaxed);
                (anonymous(), KIND_PRIVATE)
            }
        }
    };
    if ptr.is_null() {
        return;
    }
    match REGION.compare_exchange(null_mut(), ptr, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => KIND.store(kind, Ordering::Release),
        // SAFETY: `ptr` is the mapping of `SIZE` bytes made above, which nothing else has seen.
        Err(_) => unsafe {
            libc::munmap(ptr.cast(), SIZE);
        },
    }
    say_which();
}

/// `socks_client::settings::DEFAULT_CONF` as a C string (a unit test checks they agree).
const SYSTEM_CONF: &std::ffi::CStr = c"/etc/socks.conf";

/// For the `fork` hook: [`create`], unless this process can have no names to share — its
/// settings, once read, fake no names (nothing configured, or a broken configuration); before
/// they are read (the fork hook does not read them: files, user database), unless nothing can
/// configure it: no `SOCKS_SERVER` nor `SOCKS_CONF` (ignored in secure-execution programs) and
/// no `/etc/socks.conf`. So a library preloaded everywhere with nothing to do never makes a
/// file in the home of every user that forks. Async-signal-safe: getenv, access(2) and
/// [`create`].
pub fn create_if_configured() {
    if !REGION.load(Ordering::Acquire).is_null() {
        return;
    }
    let may_fake = if crate::config::loaded() {
        crate::config::settings().names.is_some()
    } else {
        let set = |name: &std::ffi::CStr| {
            // SAFETY: a NUL-terminated name; getenv returns NULL or a NUL-terminated value
            // that is only tested for being non-empty here.
            unsafe {
                let value = libc::getenv(name.as_ptr());
                !value.is_null() && *value != 0
            }
        };
        let secure = super::real::secure_execution();
        // SAFETY: a NUL-terminated path; access only tests it.
        let system_file = unsafe { libc::access(SYSTEM_CONF.as_ptr(), libc::F_OK) == 0 };
        system_file || (!secure && (set(c"SOCKS_SERVER") || set(c"SOCKS_CONF")))
    };
    if may_fake {
        create();
    }
}

/// Where this process looks for the file.
#[cfg(not(test))]
fn places() -> Places<'static> {
    Places::of_this_process()
}

/// Unit tests never touch the user's real map: the global map gets no usable place, so it is
/// a private one (the tests of the file use their own directories and regions).
#[cfg(test)]
fn places() -> Places<'static> {
    Places { runtime_dir: None, run_user: c"/nonexistent", tmp: c"/nonexistent", euid: 0 }
}

/// A private shared anonymous mapping (null if even that fails): zero-filled, which is a
/// valid, empty `Region`.
fn anonymous() -> *mut Region {
    // SAFETY: an anonymous shared mapping with no address hint; the kernel zero-fills it, and
    // all-zero bytes are a valid, empty `Region` (atomics at 0, empty entries).
    let ptr = unsafe {
        libc::mmap(
            null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        null_mut()
    } else {
        ptr.cast()
    }
}

/// A failure in 32 bits (base, step, errno) for the log, kept without a lock.
fn encode(failure: &Failure) -> u32 {
    ((failure.base as u32) << 28)
        | ((failure.step as u32) << 20)
        | (failure.errno as u32 & 0xf_ffff)
}

fn decode(bits: u32) -> Failure {
    Failure {
        base: mapfile::Base::from_bits((bits >> 28) as u8),
        step: mapfile::Step::from_bits((bits >> 20) as u8),
        errno: (bits & 0xf_ffff) as i32,
    }
}

/// Says once which map this process uses: debug for the per-user file, warn for a private one.
fn say_which() {
    if SAID.load(Ordering::Relaxed) {
        return;
    }
    let kind = KIND.load(Ordering::Acquire);
    let level = if kind == KIND_PRIVATE { Level::Warn } else { Level::Debug };
    if kind == KIND_NONE || !log::enabled(level) || SAID.swap(true, Ordering::AcqRel) {
        return;
    }
    if kind == KIND_PRIVATE && super::real::secure_execution() {
        log!(level, "fake-name map: private to this process tree (secure-execution program)");
    } else if kind == KIND_PRIVATE {
        let why = decode(WHY_PRIVATE.load(Ordering::Relaxed));
        log!(
            level,
            "fake-name map: private to this process tree; the per-user file cannot be used: {why}"
        );
    } else {
        let places = places();
        let base = mapfile::Base::from_bits(kind - KIND_SHARED);
        let file = mapfile::FILE_NAME.to_str().unwrap_or("?");
        match base {
            mapfile::Base::RuntimeDir => {
                let dir = places.runtime_dir.and_then(|d| d.to_str().ok()).unwrap_or("?");
                log!(level, "fake-name map: the per-user file {dir}/socks/{file}");
            }
            mapfile::Base::RunUser => {
                log!(
                    level,
                    "fake-name map: the per-user file /run/user/{}/socks/{file}",
                    places.euid
                );
            }
            mapfile::Base::Tmp => {
                log!(level, "fake-name map: the per-user file /tmp/socks-{}/{file}", places.euid);
            }
        }
    }
}

fn region() -> Result<&'static Region, MapError> {
    create();
    say_which();
    let ptr = REGION.load(Ordering::Acquire);
    // SAFETY: set once by `create` to a live mapping of `SIZE` bytes that is never unmapped;
    // all access goes through atomics or through bytes published by them.
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
    // Any other state is garbage: no match.
    for _ in 0..1000 {
        match entry.state.load(Ordering::Acquire) {
            READY => {
                let len = entry.len.load(Ordering::Relaxed) as usize;
                return len <= NAME_MAX && entry.bytes[..len] == *name;
            }
            EMPTY => std::hint::spin_loop(),
            _ => return false,
        }
    }
    false
}

/// The entry index for `name`, adding it if it is new.
pub fn index_of(name: &str) -> Result<u32, MapError> {
    let (buf, len) = normalise(name)?;
    index_in(region()?, &buf[..len])
}

/// The entry index for the normalised `name` in `region`, adding it if it is new. Every slot
/// is looked at most twice (a lost race on a slot looks at it again), so a table whose slots
/// are all taken, or hold garbage, ends in `Full`, never a loop.
fn index_in(region: &Region, name: &[u8]) -> Result<u32, MapError> {
    let mut slot = hash(name) % SLOTS;
    let mut claimed: Option<u32> = None;
    for _ in 0..2 * SLOTS {
        let value = region.slots[slot].load(Ordering::Acquire);
        if value != EMPTY {
            let index = value - 1;
            // Only a claimed entry is read (a slot is filled after its entry is claimed; one
            // naming an entry past `next` is garbage, and that entry may be a hole).
            let claimed_already = index < region.next.load(Ordering::Acquire);
            let known = region.entries.get(index as usize).filter(|_| claimed_already);
            if known.is_some_and(|entry| entry_matches(entry, name)) {
                return Ok(index);
            }
            slot = (slot + 1) % SLOTS;
            continue;
        }
        let index = match claimed {
            Some(index) => index,
            None => {
                let index = claim(region, name)?;
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
    Err(MapError::Full)
}

/// Takes the next free entry and writes `name` into it (published READY). Its pages are made
/// resident before it is claimed (on a full file system, a write to a hole of a shared file
/// mapping is SIGBUS), so no claimed entry is ever a hole that a reader could fault on; a
/// process that cannot make them resident claims nothing. Bounded: a claim lost to another
/// process is retried a limited number of times.
fn claim(region: &Region, name: &[u8]) -> Result<u32, MapError> {
    for _ in 0..1000 {
        let index = region.next.load(Ordering::Acquire);
        let Some(entry) = region.entries.get(index as usize) else {
            return Err(MapError::Full);
        };
        if !mapfile::populate(std::ptr::from_ref(entry).cast(), std::mem::size_of::<NameEntry>()) {
            return Err(MapError::Unavailable);
        }
        if region
            .next
            .compare_exchange(index, index + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        // SAFETY: this process alone claimed `index` (the compare-exchange), and nobody reads
        // an entry's bytes before its state is READY, published below with Release; `name` is
        // at most NAME_MAX bytes (normalised).
        unsafe {
            let bytes = entry.bytes.as_ptr().cast_mut();
            std::ptr::copy_nonoverlapping(name.as_ptr(), bytes, name.len().min(NAME_MAX));
        }
        entry.len.store(name.len() as u32, Ordering::Relaxed);
        entry.state.store(READY, Ordering::Release);
        return Ok(index);
    }
    Err(MapError::Unavailable)
}

/// Copies the name of entry `index` into `out`; its length, or `None` for an unused index.
pub fn name_of(index: u32, out: &mut [u8; NAME_MAX]) -> Option<usize> {
    name_in(region().ok()?, index, out)
}

/// As [`name_of`], in `region`: `None` too for an entry that holds no valid name (empty, too
/// long, or with a NUL), or that was never claimed.
fn name_in(region: &Region, index: u32, out: &mut [u8; NAME_MAX]) -> Option<usize> {
    // Entries from `next` on were never claimed (and may be holes of the file: not read).
    if index >= region.next.load(Ordering::Acquire) {
        return None;
    }
    let entry = region.entries.get(index as usize)?;
    if entry.state.load(Ordering::Acquire) != READY {
        return None;
    }
    let len = entry.len.load(Ordering::Relaxed) as usize;
    if len == 0 || len > NAME_MAX {
        return None;
    }
    out[..len].copy_from_slice(&entry.bytes[..len]);
    (!out[..len].contains(&0)).then_some(len)
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
    fn the_system_file_is_the_shared_default() {
        assert_eq!(SYSTEM_CONF.to_str(), Ok(socks_client::settings::DEFAULT_CONF));
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

    /// A directory of its own for one test, with the three places inside it, removed on drop.
    struct Scratch {
        root: std::path::PathBuf,
        runtime: std::ffi::CString,
        run_user: std::ffi::CString,
        tmp: std::ffi::CString,
    }

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            let root =
                std::env::temp_dir().join(format!("socks-fakemap-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            for dir in ["runtime", "run-user", "tmp"] {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(root.join(dir))
                    .expect("temp dir");
                let _ = std::fs::set_permissions(
                    root.join(dir),
                    std::fs::Permissions::from_mode(0o700),
                );
            }
            Scratch {
                runtime: mapfile::c_path(&root.join("runtime")),
                run_user: mapfile::c_path(&root.join("run-user")),
                tmp: mapfile::c_path(&root.join("tmp")),
                root,
            }
        }

        fn places(&self, euid: u32) -> Places<'_> {
            Places {
                runtime_dir: Some(&self.runtime),
                run_user: &self.run_user,
                tmp: &self.tmp,
                euid,
            }
        }

        fn path(&self, relative: &str) -> std::path::PathBuf {
            self.root.join(relative)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    /// The map at `places`, mapped for the rest of the test process.
    fn open_at(places: &Places<'_>) -> Result<&'static Region, Failure> {
        // SAFETY: a live mapping of SIZE bytes, never unmapped.
        mapfile::open(places, SIZE, RESIDENT).map(|m| unsafe { &*m.ptr.cast::<Region>() })
    }

    fn name(region: &Region, index: u32) -> Option<String> {
        let mut buf = [0u8; NAME_MAX];
        let len = name_in(region, index, &mut buf)?;
        Some(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    /// Runs `child` in a forked process that reports a u32 back; waits for it.
    fn in_child(child: impl FnOnce() -> u32) -> u32 {
        let mut fds = [0; 2];
        // SAFETY: a valid array of two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only opens the map, touches it and the pipe, then leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let value = child();
            // SAFETY: writing 4 bytes from a live local; leaving without the harness's cleanup.
            unsafe {
                libc::write(fds[1], (&value as *const u32).cast(), 4);
                libc::_exit(0);
            }
        }
        let mut value = u32::MAX;
        let mut status = 0;
        // SAFETY: reading 4 bytes into a live local, then reaping our own child.
        unsafe {
            libc::close(fds[1]);
            libc::read(fds[0], (&mut value as *mut u32).cast(), 4);
            libc::waitpid(pid, &mut status, 0);
            libc::close(fds[0]);
        }
        if value == u32::MAX {
            eprintln!("the child reported nothing; wait status {status:#x}");
        }
        value
    }

    #[test]
    fn the_file_is_private_sparse_and_in_the_runtime_directory() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let scratch = Scratch::new("place");
        let mapped = mapfile::open(&scratch.places(euid()), SIZE, RESIDENT).expect("usable");
        assert_eq!(mapped.base, mapfile::Base::RuntimeDir);
        let dir = std::fs::metadata(scratch.path("runtime/socks")).expect("made");
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
        let file = std::fs::symlink_metadata(scratch.path("runtime/socks/names-v1")).expect("made");
        assert!(file.is_file());
        assert_eq!(file.permissions().mode() & 0o777, 0o600);
        assert_eq!(file.len(), SIZE as u64);
        assert!(file.blocks() * 512 < SIZE as u64 / 10, "sparse: {} blocks", file.blocks());
        assert_eq!(
            std::fs::read_dir(scratch.path("runtime/socks")).expect("dir").count(),
            1,
            "no temporary file left behind"
        );

        // No runtime directory (or one that is not absolute): /run/user/<euid> when private…
        std::fs::create_dir(scratch.path("run-user/4242")).expect("dir");
        std::fs::set_permissions(
            scratch.path("run-user/4242"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod");
        let other = Places { runtime_dir: Some(c"relative/dir"), ..scratch.places(euid()) };
        let user = Places { euid: 4242, ..other };
        // (Owned by us, not 4242: refused, and on to /tmp, also refused for 4242.)
        assert_eq!(
            mapfile::open(&user, SIZE, RESIDENT).map(|m| m.base).expect_err("not 4242's"),
            Failure {
                base: mapfile::Base::Tmp,
                step: mapfile::Step::DirectoryNotPrivate,
                errno: 0
            }
        );
        let mine = euid().to_string();
        std::fs::create_dir(scratch.path(&format!("run-user/{mine}"))).expect("dir");
        std::fs::set_permissions(
            scratch.path(&format!("run-user/{mine}")),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod");
        assert_eq!(
            mapfile::open(&other, SIZE, RESIDENT).map(|m| m.base).ok(),
            Some(mapfile::Base::RunUser)
        );
        // …else /tmp/socks-<euid>, made 0700.
        let none = Places { runtime_dir: None, run_user: c"/nonexistent", ..other };
        assert_eq!(
            mapfile::open(&none, SIZE, RESIDENT).map(|m| m.base).ok(),
            Some(mapfile::Base::Tmp)
        );
        let tmp = std::fs::metadata(scratch.path(&format!("tmp/socks-{mine}"))).expect("made");
        assert_eq!(tmp.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn unusable_places_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = Scratch::new("refused");
        let places = scratch.places(euid());
        let nowhere = Places { run_user: c"/nonexistent", tmp: c"/nonexistent", ..places };
        let step = |places: &Places<'_>| open_at(places).map(|_| ()).map_err(|f| f.step);

        // Another user's runtime directory (a root process with XDG_RUNTIME_DIR of user 1000
        // after `su`): passed over, nothing made in it.
        let foreign = Places { euid: euid().wrapping_add(1000), ..nowhere };
        assert_eq!(step(&foreign), Err(mapfile::Step::NoTmp));
        assert!(
            !scratch.path("runtime/socks").exists(),
            "nothing made in another user's directory"
        );

        // `socks` a symlink to a directory elsewhere: refused, never followed.
        std::fs::create_dir(scratch.path("elsewhere")).expect("dir");
        std::os::unix::fs::symlink(scratch.path("elsewhere"), scratch.path("runtime/socks"))
            .expect("symlink");
        assert_eq!(step(&nowhere), Err(mapfile::Step::OpenDirectory));
        assert!(!scratch.path("elsewhere/names-v1").exists());
        std::fs::remove_file(scratch.path("runtime/socks")).expect("rm");

        // `socks` open to others.
        std::fs::create_dir(scratch.path("runtime/socks")).expect("dir");
        std::fs::set_permissions(
            scratch.path("runtime/socks"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        assert_eq!(step(&nowhere), Err(mapfile::Step::DirectoryNotPrivate));
        std::fs::set_permissions(
            scratch.path("runtime/socks"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod");

        // The file a symlink (to a file of the right size).
        let target = scratch.path("elsewhere/target");
        std::fs::File::create(&target).and_then(|f| f.set_len(SIZE as u64)).expect("file");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::symlink(&target, scratch.path("runtime/socks/names-v1"))
            .expect("symlink");
        assert_eq!(step(&nowhere), Err(mapfile::Step::OpenFile));
        std::fs::remove_file(scratch.path("runtime/socks/names-v1")).expect("rm");

        // The wrong size, then the wrong mode, then a directory in its place.
        let file = scratch.path("runtime/socks/names-v1");
        std::fs::File::create(&file).and_then(|f| f.set_len(4096)).expect("file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(step(&nowhere), Err(mapfile::Step::FileSize));
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_len(SIZE as u64))
            .expect("size");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(step(&nowhere), Err(mapfile::Step::FileNotPrivate));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(step(&nowhere).is_ok(), "now right");
        std::fs::remove_file(&file).expect("rm");
        std::fs::create_dir(&file).expect("dir");
        assert_eq!(step(&nowhere).map_err(|_| ()), Err(()));
    }

    #[test]
    fn processes_opening_the_file_independently_share_names() {
        let scratch = Scratch::new("fork");
        let places = scratch.places(euid());
        // Nothing mapped before the fork: the child opens (and makes) the file itself.
        let child = in_child(|| {
            open_at(&places)
                .map_or(u32::MAX - 1, |r| index_in(r, b"from-the-child.test").unwrap_or(u32::MAX))
        });
        assert!(child < CAPACITY as u32, "the child's index: {child}");
        let region = open_at(&places).expect("usable");
        assert_eq!(name(region, child).as_deref(), Some("from-the-child.test"));
        let mine = index_in(region, b"from-the-parent.test").expect("room");
        assert_ne!(mine, child);
        let seen = in_child(|| {
            open_at(&places)
                .map_or(u32::MAX - 1, |r| index_in(r, b"from-the-parent.test").unwrap_or(u32::MAX))
        });
        assert_eq!(seen, mine, "a new process finds the parent's name at the same index");
        assert_eq!(region.next.load(Ordering::Relaxed), 2, "nothing added twice");
    }

    #[test]
    fn processes_creating_the_file_at_once_end_on_one() {
        let scratch = Scratch::new("race");
        let places = scratch.places(euid());
        let mut fds = [0; 2];
        // SAFETY: a valid array of two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let mut pids = Vec::new();
        for i in 0..6u8 {
            // SAFETY: the child waits on the pipe, opens the map, adds a name and _exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let mut byte = 0u8;
                // SAFETY: closing our copy of the write end, then reading one byte into a live
                // local (EOF, once the parent closes its end, releases every child at once).
                unsafe {
                    libc::close(fds[1]);
                    libc::read(fds[0], (&mut byte as *mut u8).cast(), 1);
                }
                let ok = open_at(&places).is_ok_and(|r| index_in(r, &[b'n', b'0' + i]).is_ok());
                // SAFETY: leaving without the harness's cleanup.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            pids.push(pid);
        }
        // SAFETY: closing our pipe ends releases the children together; then reaping them.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        for pid in pids {
            let mut status = 0;
            // SAFETY: our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child {pid} failed"
            );
        }
        let region = open_at(&places).expect("usable");
        assert_eq!(region.next.load(Ordering::Relaxed), 6, "all six names in one file");
        for i in 0..6u8 {
            let index = index_in(region, &[b'n', b'0' + i]).expect("known");
            assert!(index < 6);
        }
        assert_eq!(std::fs::read_dir(scratch.path("runtime/socks")).expect("dir").count(), 1);
    }

    /// In a child: mounts a tmpfs of `options` over the scratch runtime directory (in a mount
    /// namespace of its own), opens the map there and adds names until one fails. Reports how
    /// many went in, or 1000 + why it stopped (1000: no mount, 1001: the file refused with
    /// `NoRoom`, 1002: another error, 1003: never full, 1004: a read-only file system);
    /// `u32::MAX` when killed (SIGBUS).
    fn fill_on_tmpfs(scratch: &Scratch, options: &'static std::ffi::CStr) -> u32 {
        let places = scratch.places(0);
        let runtime = scratch.runtime.clone();
        in_child(move || {
            // SAFETY: plain system calls on NUL-terminated strings, in this child only.
            let mounted = unsafe {
                libc::unshare(libc::CLONE_NEWNS) == 0
                    && libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        null_mut(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        null_mut(),
                    ) == 0
                    && libc::mount(
                        c"socks-test".as_ptr(),
                        runtime.as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        options.as_ptr().cast(),
                    ) == 0
            };
            if !mounted {
                return 1000;
            }
            let region = match open_at(&places) {
                Ok(region) => region,
                Err(f) if f.step == mapfile::Step::NoRoom => return 1001,
                Err(f) if f.errno == libc::EROFS => return 1004,
                Err(_) => return 1002,
            };
            for n in 0..5000u32 {
                match index_in(region, format!("host{n}.full.test").as_bytes()) {
                    Ok(_) => {}
                    Err(MapError::Unavailable) => return n,
                    Err(_) => return 1002,
                }
            }
            1003
        })
    }

    /// A full file system (tmpfs) refuses the file when it is opened (the caller then uses a
    /// private map), as a read-only one does, or fails a new name once the file is in use; the program is never killed
    /// by SIGBUS. Needs root (mounts); without it the test says SKIPPED.
    #[test]
    fn a_full_file_system_fails_the_name_not_the_program() {
        if euid() != 0 {
            eprintln!("SKIPPED: a_full_file_system_fails_the_name_not_the_program: needs root");
            return;
        }
        let scratch = Scratch::new("full");
        assert_eq!(
            fill_on_tmpfs(&scratch, c"size=64k,mode=0700"),
            1001,
            "no room for the slots: the file is refused (NoRoom)"
        );
        assert_eq!(fill_on_tmpfs(&scratch, c"ro,mode=0700"), 1004, "read-only: refused");
        // Room for the slots and some entries (32 pages of 4 KiB: a few hundred names).
        let added = fill_on_tmpfs(&scratch, c"size=656k,mode=0700");
        assert!((100..1000).contains(&added), "names until full, then Unavailable: {added}");
    }

    /// Fills `region` with pseudo-random bytes.
    fn scribble(region: &Region, mut seed: u64) {
        let bytes = std::ptr::from_ref(region).cast::<u8>().cast_mut();
        for i in 0..SIZE {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // SAFETY: inside the mapping of SIZE bytes, which only this test uses.
            unsafe { bytes.add(i).write_volatile(seed as u8) };
        }
    }

    /// Every function on garbage, in a file that passes every check: wrong answers at worst,
    /// never a panic, a hang or an access out of bounds.
    #[test]
    fn garbage_in_the_file_is_harmless() {
        let scratch = Scratch::new("garbage");
        let region = open_at(&scratch.places(euid())).expect("usable");
        for seed in [1u64, 0x9e37_79b9_7f4a_7c15, u64::MAX] {
            scribble(region, seed);
            for index in (0..2000).chain([CAPACITY as u32 - 1, CAPACITY as u32, u32::MAX]) {
                let _ = name(region, index);
            }
            for n in 0..50 {
                if let Ok(index) = index_in(region, format!("host{n}.garbage.test").as_bytes()) {
                    assert!((index as usize) < CAPACITY);
                }
            }
        }
        // Every slot taken by an index past the end, `next` at its maximum: full, not a loop.
        for slot in &region.slots {
            slot.store(u32::MAX, Ordering::Relaxed);
        }
        region.next.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(index_in(region, b"no.room.test"), Err(MapError::Full));
        assert_eq!(region.next.load(Ordering::Relaxed), u32::MAX, "untouched by a failed claim");
        // Every slot naming entry 0, whose length is past NAME_MAX and state READY.
        for slot in &region.slots {
            slot.store(1, Ordering::Relaxed);
        }
        region.entries[0].state.store(READY, Ordering::Relaxed);
        region.entries[0].len.store(u32::MAX, Ordering::Relaxed);
        region.next.store(2, Ordering::Relaxed);
        assert_eq!(index_in(region, b"no.slot.test"), Err(MapError::Full));
        assert_eq!(name(region, 0), None, "a length past NAME_MAX is no name");
        // A NUL inside a name is no name either (next to a valid one).
        region.entries[1].state.store(READY, Ordering::Relaxed);
        region.entries[1].len.store(3, Ordering::Relaxed);
        // SAFETY: this test alone uses the mapping.
        unsafe { entry_bytes(&region.entries[1]).copy_from(b"abc".as_ptr(), 3) };
        assert_eq!(name(region, 1).as_deref(), Some("abc"));
        // SAFETY: as above.
        unsafe { entry_bytes(&region.entries[1]).copy_from(b"a\0b".as_ptr(), 3) };
        assert_eq!(name(region, 1), None);
        // Past `next`: never claimed, not read.
        region.next.store(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { entry_bytes(&region.entries[1]).copy_from(b"abc".as_ptr(), 3) };
        assert_eq!(name(region, 1), None);
    }

    fn entry_bytes(entry: &NameEntry) -> *mut u8 {
        entry.bytes.as_ptr().cast_mut()
    }
}
