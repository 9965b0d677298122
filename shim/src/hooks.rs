//! The exported libc entry points: each converts raw C arguments, checks the re-entry guard,
//! calls the safe logic in `intercept` (or the fd table), and returns the C result. A panic never
//! unwinds into C: it becomes -1 with an errno, and never a silent direct connection.
#![allow(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use libc::{c_int, c_uint, sockaddr, socklen_t};

use crate::config;
use crate::fdtable;
use crate::guard::Guard;
use crate::intercept::{self, Outcome};
use crate::real;
use crate::sockaddr::RawAddr;
use crate::udp;

/// Runs `f`, turning a panic into `Outcome::Fail(errno_on_panic)`.
fn shielded(errno_on_panic: c_int, f: impl FnOnce() -> Outcome) -> Outcome {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(Outcome::Fail(errno_on_panic))
}

/// connect(2): routed through a SOCKS server, refused, or passed on, as socks.conf says.
///
/// # Safety
/// As connect(2): `addr` must point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(guard) = Guard::enter_connect(config::loaded()) else {
        // SAFETY: forwarded unchanged under the caller's guarantees.
        return unsafe { real::connect(fd, addr, len) };
    };
    // SAFETY: the caller guarantees `len` readable bytes at `addr` (or a null pointer).
    let Some(dst) = (unsafe { RawAddr::from_ptr(addr, len) }) else {
        // AF_UNSPEC dissolves a UDP socket's connection: it is no longer tied to a peer.
        intercept::disconnecting(fd);
        // SAFETY: as above.
        return unsafe { real::connect(fd, addr, len) };
    };
    let nested = guard.is_nested();
    match shielded(libc::ECONNREFUSED, || intercept::connect(fd, &dst, nested)) {
        // SAFETY: as above.
        Outcome::PassThrough => unsafe { real::connect(fd, addr, len) },
        Outcome::Done => 0,
        Outcome::Fail(errno) => {
            real::set_errno(errno);
            -1
        }
    }
}

/// getpeername(2): for a proxied socket, the destination the program asked for.
///
/// # Safety
/// As getpeername(2).
#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    if fdtable::get(fd).is_none() || addr.is_null() || len.is_null() {
        // SAFETY: forwarded unchanged under the caller's guarantees.
        return unsafe { real::getpeername(fd, addr, len) };
    }
    let mut storage = [0u8; std::mem::size_of::<libc::sockaddr_storage>()];
    let mut storage_len = storage.len() as socklen_t;
    // SAFETY: `storage` is writable for `storage_len` bytes.
    let rc = unsafe { real::getpeername(fd, storage.as_mut_ptr().cast(), &mut storage_len) };
    if rc != 0 {
        return rc;
    }
    // SAFETY: the kernel wrote `storage_len` bytes (at most the buffer's size).
    let actual = unsafe { RawAddr::from_ptr(storage.as_ptr().cast(), storage_len) };
    let Some(actual) = actual else {
        // Not an IP socket after all: report what the kernel said.
        // SAFETY: forwarded unchanged under the caller's guarantees.
        return unsafe { real::getpeername(fd, addr, len) };
    };
    let reported = intercept::peer_name(fd, &actual);
    // SAFETY: the caller guarantees `*len` writable bytes at `addr`.
    unsafe { reported.write_to(addr, len) };
    0
}

/// close(2): forgets the descriptor (and a UDP socket's association). A descriptor the library
/// owns (an association's control connection) is left open: the program never opened it, so a
/// "close every descriptor" loop must not take it away.
///
/// # Safety
/// As close(2).
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if fdtable::is_owned(fd) {
        return 0;
    }
    udp::closing(fd);
    fdtable::clear(fd);
    // SAFETY: forwarded unchanged.
    unsafe { real::close(fd) }
}

/// close_range(2): forgets the descriptors it closes, and skips the ones the library owns.
///
/// # Safety
/// As close_range(2).
#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let mut owned = [0i32; 64];
    let count = fdtable::owned_in_range(first, last, &mut owned);
    if flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
        for fd in first..=last.min(fdtable::TABLE_SIZE as c_uint) {
            if fdtable::kind_hint(fd as c_int).is_some() && !fdtable::is_owned(fd as c_int) {
                udp::closing(fd as c_int);
            }
        }
        fdtable::clear_range(first, last);
    }
    // Close around the library's own descriptors: [first, o1-1], [o1+1, o2-1], …, [ok+1, last].
    let mut start = first;
    for &fd in &owned[..count] {
        let fd = fd as c_uint;
        if fd > start {
            // SAFETY: forwarded for a sub-range.
            let rc = unsafe { real::close_range(start, fd - 1, flags) };
            if rc != 0 {
                return rc;
            }
        }
        start = fd.saturating_add(1);
        if fd == c_uint::MAX {
            return 0;
        }
    }
    if start > last {
        return 0;
    }
    // SAFETY: forwarded for the rest of the range.
    unsafe { real::close_range(start, last, flags) }
}

/// dup(2): the copy describes the same proxied connection.
///
/// # Safety
/// As dup(2).
#[no_mangle]
pub unsafe extern "C" fn dup(old: c_int) -> c_int {
    // SAFETY: forwarded unchanged.
    let new = unsafe { real::dup(old) };
    if new >= 0 {
        fdtable::copy(old, new);
    }
    new
}

/// dup2(2): the target forgets what it was and describes what `old` describes.
///
/// # Safety
/// As dup2(2).
#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    if old != new {
        udp::before_replacing(new);
    }
    // SAFETY: forwarded unchanged.
    let rc = unsafe { real::dup2(old, new) };
    if rc >= 0 && old != new {
        fdtable::copy(old, new);
    }
    rc
}

/// dup3(2): as dup2.
///
/// # Safety
/// As dup3(2).
#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    if old != new {
        udp::before_replacing(new);
    }
    // SAFETY: forwarded unchanged.
    let rc = unsafe { real::dup3(old, new, flags) };
    if rc >= 0 {
        fdtable::copy(old, new);
    }
    rc
}

/// bind(2): port 0 on a wildcard or own address, after a proxied connection, becomes a BIND
/// on the SOCKS server (ftp's active mode); anything else is the real bind.
///
/// # Safety
/// As bind(2): `addr` must point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    let Some(_guard) = Guard::enter() else {
        // SAFETY: forwarded unchanged under the caller's guarantees.
        return unsafe { real::bind(fd, addr, len) };
    };
    // SAFETY: the caller guarantees `len` readable bytes at `addr` (or a null pointer).
    let Some(local) = (unsafe { RawAddr::from_ptr(addr, len) }) else {
        // SAFETY: as above.
        return unsafe { real::bind(fd, addr, len) };
    };
    match shielded(libc::EADDRNOTAVAIL, || intercept::bind(fd, &local)) {
        // SAFETY: as above.
        Outcome::PassThrough => unsafe { real::bind(fd, addr, len) },
        Outcome::Done => 0,
        Outcome::Fail(errno) => {
            real::set_errno(errno);
            -1
        }
    }
}

/// listen(2): a no-op for a socket bound through the server.
///
/// # Safety
/// As listen(2).
#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    match intercept::listen(fd) {
        Outcome::Done => 0,
        Outcome::Fail(errno) => {
            real::set_errno(errno);
            -1
        }
        // SAFETY: forwarded unchanged.
        Outcome::PassThrough => unsafe { real::listen(fd, backlog) },
    }
}

/// getsockname(2): for a socket bound through the server, the address the server listens on.
///
/// # Safety
/// As getsockname(2).
#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    match intercept::sock_name(fd) {
        Some(listening) if !addr.is_null() && !len.is_null() => {
            // SAFETY: the caller guarantees `*len` writable bytes at `addr`.
            unsafe { listening.write_to(addr, len) };
            0
        }
        // SAFETY: forwarded unchanged under the caller's guarantees.
        _ => unsafe { real::getsockname(fd, addr, len) },
    }
}

/// accept(2) and accept4(2) share this: the second BIND reply for a socket bound through the
/// server, else the real call.
///
/// # Safety
/// As accept4(2).
unsafe fn accept_common(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> Option<c_int> {
    let _guard = Guard::enter()?;
    let result = catch_unwind(AssertUnwindSafe(|| intercept::accept(fd, flags)))
        .unwrap_or(Err(libc::ECONNABORTED));
    match result {
        Ok(None) => None,
        Ok(Some((accepted, peer))) => {
            if !addr.is_null() && !len.is_null() {
                // SAFETY: the caller guarantees `*len` writable bytes at `addr`.
                unsafe { peer.write_to(addr, len) };
            }
            Some(accepted)
        }
        Err(errno) => {
            real::set_errno(errno);
            Some(-1)
        }
    }
}

/// accept(2).
///
/// # Safety
/// As accept(2).
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: forwarded under the caller's guarantees.
    match unsafe { accept_common(fd, addr, len, 0) } {
        Some(rc) => rc,
        // SAFETY: as above.
        None => unsafe { real::accept(fd, addr, len) },
    }
}

/// accept4(2).
///
/// # Safety
/// As accept4(2).
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded under the caller's guarantees.
    match unsafe { accept_common(fd, addr, len, flags) } {
        Some(rc) => rc,
        // SAFETY: as above.
        None => unsafe { real::accept4(fd, addr, len, flags) },
    }
}

/// fcntl(2): a copy made with F_DUPFD or F_DUPFD_CLOEXEC describes the same proxied connection.
///
/// Declared with one pointer-sized argument: on x86_64 and aarch64 Linux a variadic integer or
/// pointer argument travels exactly like a fixed one.
///
/// # Safety
/// As fcntl(2).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[no_mangle]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    // SAFETY: forwarded unchanged.
    let rc = unsafe { real::fcntl_raw(fd, cmd, arg) };
    if rc >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) {
        fdtable::copy(fd, rc);
    }
    rc
}

/// fcntl64(2), which programs built with 64-bit file offsets call instead of fcntl.
///
/// # Safety
/// As fcntl(2).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    // SAFETY: forwarded unchanged.
    let rc = unsafe { real::fcntl64_raw(fd, cmd, arg) };
    if rc >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) {
        fdtable::copy(fd, rc);
    }
    rc
}
