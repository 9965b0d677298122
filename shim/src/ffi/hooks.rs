//! The exported libc entry points: each converts raw C arguments, checks the re-entry guard,
//! calls the safe logic in `intercept` (or the fd table), and returns the C result. Each runs
//! its whole work inside `outcome::shield`: a panic never unwinds into C, becomes -1 with EIO,
//! and never a silent direct connection.
#![allow(unsafe_code)]

use libc::{c_int, c_uint, sockaddr, socklen_t};

use crate::config;
use crate::dnstcp;
use crate::fdtable;
use crate::ffi::sockaddr::RawAddr;
use crate::ffi::{fakemap, real};
use crate::guard::Guard;
use crate::intercept;
use crate::outcome::{fail, shield};
use crate::udp;

/// connect(2): routed through a SOCKS server, refused, or passed on, as socks.conf says.
///
/// # Safety
/// As connect(2): `addr` must point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: forwarded unchanged under the caller's guarantees (in every use below).
    let real_call = || unsafe { real::connect(fd, addr, len) };
    shield(-1, || {
        // SAFETY: the caller guarantees `len` readable bytes at `addr` (or a null pointer).
        let dst = unsafe { RawAddr::from_ptr(addr, len) };
        let Some(guard) = Guard::enter_connect(config::loaded()) else {
            return intercept::connect_while_loading(dst.as_ref()).answer(real_call);
        };
        let Some(dst) = dst else {
            // AF_UNSPEC dissolves a socket's connection: it is no longer tied to a peer.
            intercept::disconnecting(fd);
            return real_call();
        };
        intercept::connect(fd, &dst, guard.is_nested()).answer(real_call)
    })
}

/// getpeername(2): for a proxied socket, the destination the program asked for; for a UDP
/// socket virtually connected to a name server, that server.
///
/// # Safety
/// As getpeername(2).
#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: forwarded unchanged under the caller's guarantees (in every use below).
    let real_call = || unsafe { real::getpeername(fd, addr, len) };
    shield(-1, || {
        if fdtable::kind_hint(fd).is_none() || addr.is_null() || len.is_null() {
            return real_call();
        }
        match fdtable::get(fd) {
            None => return real_call(),
            // Virtually connected to a name server (`dnswire`): the kernel knows no peer.
            Some(entry) if entry.kind == fdtable::Kind::DnsConnected => {
                // SAFETY: the caller guarantees `*len` writable bytes at `addr`.
                unsafe { entry.first.write_to(addr, len) };
                return 0;
            }
            Some(_) => {}
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
        // Not an IP socket after all: report what the kernel said.
        let Some(actual) = actual else { return real_call() };
        let reported = intercept::peer_name(fd, &actual);
        // SAFETY: the caller guarantees `*len` writable bytes at `addr`.
        unsafe { reported.write_to(addr, len) };
        0
    })
}

/// close(2): forgets the descriptor (and a UDP socket's association). A descriptor the library
/// owns (an association's control connection) is left open: the program never opened it, so a
/// "close every descriptor" loop must not take it away.
///
/// # Safety
/// As close(2).
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    shield(-1, || {
        if fdtable::is_owned(fd) {
            return 0;
        }
        udp::closing(fd);
        fdtable::clear(fd);
        // SAFETY: forwarded unchanged.
        unsafe { real::close(fd) }
    })
}

/// close_range(2): forgets the descriptors it closes, and skips the ones the library owns.
///
/// # Safety
/// As close_range(2).
#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    shield(-1, || {
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
    })
}

/// dup(2): the copy describes the same proxied connection.
///
/// # Safety
/// As dup(2).
#[no_mangle]
pub unsafe extern "C" fn dup(old: c_int) -> c_int {
    shield(-1, || {
        // SAFETY: forwarded unchanged.
        let new = unsafe { real::dup(old) };
        if new >= 0 {
            fdtable::copy(old, new);
        }
        new
    })
}

/// dup2(2): the target forgets what it was and describes what `old` describes.
///
/// # Safety
/// As dup2(2).
#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    shield(-1, || {
        if old != new {
            udp::before_replacing(new);
        }
        // SAFETY: forwarded unchanged.
        let rc = unsafe { real::dup2(old, new) };
        if rc >= 0 && old != new {
            fdtable::copy(old, new);
        }
        rc
    })
}

/// dup3(2): as dup2.
///
/// # Safety
/// As dup3(2).
#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    shield(-1, || {
        if old != new {
            udp::before_replacing(new);
        }
        // SAFETY: forwarded unchanged.
        let rc = unsafe { real::dup3(old, new, flags) };
        if rc >= 0 {
            fdtable::copy(old, new);
        }
        rc
    })
}

/// bind(2): port 0 on a wildcard or own address, after a proxied connection, becomes a BIND
/// on the SOCKS server (ftp's active mode); anything else is the real bind.
///
/// # Safety
/// As bind(2): `addr` must point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: forwarded unchanged under the caller's guarantees (in every use below).
    let real_call = || unsafe { real::bind(fd, addr, len) };
    shield(-1, || {
        let Some(_guard) = Guard::enter() else { return real_call() };
        // SAFETY: the caller guarantees `len` readable bytes at `addr` (or a null pointer).
        let Some(local) = (unsafe { RawAddr::from_ptr(addr, len) }) else { return real_call() };
        intercept::bind(fd, &local).answer(real_call)
    })
}

/// listen(2): a no-op for a socket bound through the server.
///
/// # Safety
/// As listen(2).
#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    // SAFETY: forwarded unchanged.
    shield(-1, || intercept::listen(fd).answer(|| unsafe { real::listen(fd, backlog) }))
}

/// getsockname(2): for a socket bound through the server, the address the server listens on.
///
/// # Safety
/// As getsockname(2).
#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    shield(-1, || match intercept::sock_name(fd) {
        Some(listening) if !addr.is_null() && !len.is_null() => {
            // SAFETY: the caller guarantees `*len` writable bytes at `addr`.
            unsafe { listening.write_to(addr, len) };
            0
        }
        // SAFETY: forwarded unchanged under the caller's guarantees.
        _ => unsafe { real::getsockname(fd, addr, len) },
    })
}

/// accept(2) and accept4(2) share this: the second BIND reply for a socket bound through the
/// server, else the real call.
///
/// # Safety
/// As accept4(2); `real_call` is the real accept or accept4 with the caller's arguments.
unsafe fn accept_common(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
    real_call: impl FnOnce() -> c_int,
) -> c_int {
    shield(-1, || {
        if fdtable::kind_hint(fd).is_none() {
            return real_call();
        }
        let Some(_guard) = Guard::enter() else { return real_call() };
        match intercept::accept(fd, flags) {
            Ok(None) => real_call(),
            Ok(Some((accepted, peer))) => {
                if !addr.is_null() && !len.is_null() {
                    // SAFETY: the caller guarantees `*len` writable bytes at `addr`.
                    unsafe { peer.write_to(addr, len) };
                }
                accepted
            }
            Err(cause) => fail(cause),
        }
    })
}

/// accept(2).
///
/// # Safety
/// As accept(2).
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: forwarded under the caller's guarantees (both here and in the real call).
    unsafe { accept_common(fd, addr, len, 0, || real::accept(fd, addr, len)) }
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
    // SAFETY: forwarded under the caller's guarantees (both here and in the real call).
    unsafe { accept_common(fd, addr, len, flags, || real::accept4(fd, addr, len, flags)) }
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
    shield(-1, || {
        // SAFETY: forwarded unchanged.
        let rc = unsafe { real::fcntl_raw(fd, cmd, arg) };
        if rc >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) {
            fdtable::copy(fd, rc);
        }
        rc
    })
}

/// fork(2): first makes sure the map of fake addresses exists (the per-user file, or the
/// private map a process that cannot use it gets) when names may be faked at all, so that
/// parent and child share it even when the file cannot be used (it is not created at load:
/// `ffi::fakemap` says why here); and holds the locks of the library's DNS-over-TCP answers
/// across the fork (`dnstcp::ForkHold`), so the child never finds one held by a thread it does
/// not have. vfork is not hooked: its child may only exec or exit, so it has no names to share.
///
/// # Safety
/// As fork(2).
#[no_mangle]
pub unsafe extern "C" fn fork() -> libc::pid_t {
    shield(-1, || {
        fakemap::create_if_configured();
        // A fork from a signal handler that interrupted the library in this thread must not
        // wait for locks this thread may hold.
        let guard = Guard::enter();
        let hold = dnstcp::ForkHold::before_fork(guard.is_some());
        // SAFETY: forwarded; fork takes no arguments.
        let pid = unsafe { real::fork() };
        if pid == 0 {
            hold.child();
        }
        pid
    })
}

/// fcntl64(2), which programs built with 64-bit file offsets call instead of fcntl.
///
/// # Safety
/// As fcntl(2).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[no_mangle]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    shield(-1, || {
        // SAFETY: forwarded unchanged.
        let rc = unsafe { real::fcntl64_raw(fd, cmd, arg) };
        if rc >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) {
            fdtable::copy(fd, rc);
        }
        rc
    })
}
