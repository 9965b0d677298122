//! The real libc functions, found with `dlsym(RTLD_NEXT, …)` on first use and cached. Every libc
//! call the library makes on sockets goes through here: a plain call would bind to our own
//! exported hooks. This is the libc boundary; each function is a thin, unsafe-free-to-call
//! wrapper that sets errno ENOSYS if the symbol cannot be found.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

use libc::{addrinfo, nfds_t, pollfd, size_t, sockaddr, socklen_t, ssize_t};

/// Finds `name` in the objects loaded after this one, caching it in `slot`.
fn resolve(slot: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let cached = slot.load(Ordering::Acquire);
    if !cached.is_null() {
        return cached;
    }
    // SAFETY: dlsym is thread-safe and takes a NUL-terminated name; RTLD_NEXT skips this library.
    let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    slot.store(found, Ordering::Release);
    found
}

/// Sets errno for the calling thread.
pub fn set_errno(value: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    unsafe { *libc::__errno_location() = value };
}

/// Reads errno of the calling thread.
pub fn errno() -> c_int {
    // SAFETY: as in `set_errno`.
    unsafe { *libc::__errno_location() }
}

macro_rules! real_functions {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty; )*) => {
        $(
            $(#[$doc])*
            ///
            /// # Safety
            /// The same as the libc function's: pointers must be valid as libc documents.
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
                let name = CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes());
                let Ok(name) = name else { set_errno(libc::ENOSYS); return -1 as _ };
                let f = resolve(&SLOT, name);
                if f.is_null() {
                    set_errno(libc::ENOSYS);
                    return -1 as _;
                }
                // SAFETY: the symbol is libc's function of this name, whose C signature is the
                // one declared here.
                let f: unsafe extern "C" fn($($ty),*) -> $ret = unsafe { std::mem::transmute(f) };
                // SAFETY: forwarded under the caller's guarantees.
                unsafe { f($($arg),*) }
            }
        )*
    };
}

real_functions! {
    /// connect(2).
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    /// socket(2).
    fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
    /// bind(2).
    fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    /// listen(2).
    fn listen(fd: c_int, backlog: c_int) -> c_int;
    /// accept(2).
    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    /// accept4(2).
    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int;
    /// getsockname(2).
    fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    /// getpeername(2).
    fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    /// getsockopt(2).
    fn getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut socklen_t) -> c_int;
    /// close(2).
    fn close(fd: c_int) -> c_int;
    /// close_range(2).
    fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
    /// dup(2).
    fn dup(fd: c_int) -> c_int;
    /// fork(2).
    fn fork() -> libc::pid_t;
    /// dup2(2).
    fn dup2(old: c_int, new: c_int) -> c_int;
    /// dup3(2).
    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    /// fcntl(2) with an integer argument.
    fn fcntl(fd: c_int, cmd: c_int, arg: c_int) -> c_int;
    /// poll(2).
    fn poll(fds: *mut pollfd, n: nfds_t, timeout_ms: c_int) -> c_int;
    /// send(2).
    fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t;
    /// recv(2).
    fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t;
    /// write(2).
    fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t;
    /// writev(2).
    fn writev(fd: c_int, iov: *const libc::iovec, iovcnt: c_int) -> ssize_t;
    /// read(2).
    fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t;
    /// readv(2).
    fn readv(fd: c_int, iov: *const libc::iovec, iovcnt: c_int) -> ssize_t;
    /// preadv2(2).
    fn preadv2(fd: c_int, iov: *const libc::iovec, iovcnt: c_int, offset: libc::off_t, flags: c_int) -> ssize_t;
    /// preadv64v2(2) (the same call; glibc exports both names).
    fn preadv64v2(fd: c_int, iov: *const libc::iovec, iovcnt: c_int, offset: libc::off64_t, flags: c_int) -> ssize_t;
    /// read(2) as a program built with _FORTIFY_SOURCE calls it (`buflen`: its buffer's size).
    fn __read_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t) -> ssize_t;
    /// recv(2) as a program built with _FORTIFY_SOURCE calls it.
    fn __recv_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int) -> ssize_t;
    /// recvfrom(2) as a program built with _FORTIFY_SOURCE calls it.
    fn __recvfrom_chk(fd: c_int, buf: *mut c_void, len: size_t, buflen: size_t, flags: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> ssize_t;
    /// sendto(2).
    fn sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, addrlen: socklen_t) -> ssize_t;
    /// recvfrom(2).
    fn recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> ssize_t;
    /// sendmsg(2).
    fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t;
    /// recvmsg(2).
    fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t;
    /// sendmmsg(2).
    fn sendmmsg(fd: c_int, msgs: *mut libc::mmsghdr, vlen: c_uint, flags: c_int) -> c_int;
    /// syscall(2), with the six argument registers.
    fn syscall(number: libc::c_long, a1: libc::c_long, a2: libc::c_long, a3: libc::c_long, a4: libc::c_long, a5: libc::c_long, a6: libc::c_long) -> libc::c_long;
    /// recvmmsg(2).
    fn recvmmsg(fd: c_int, msgs: *mut libc::mmsghdr, vlen: c_uint, flags: c_int, timeout: *mut libc::timespec) -> c_int;
    /// getaddrinfo(3).
    fn getaddrinfo(node: *const c_char, service: *const c_char, hints: *const addrinfo, res: *mut *mut addrinfo) -> c_int;
    /// getnameinfo(3).
    fn getnameinfo(sa: *const sockaddr, salen: socklen_t, host: *mut c_char, hostlen: socklen_t, serv: *mut c_char, servlen: socklen_t, flags: c_int) -> c_int;
    /// gethostbyname_r(3).
    fn gethostbyname_r(name: *const c_char, ret: *mut libc::hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut libc::hostent, h_errnop: *mut c_int) -> c_int;
    /// gethostbyname2_r(3).
    fn gethostbyname2_r(name: *const c_char, af: c_int, ret: *mut libc::hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut libc::hostent, h_errnop: *mut c_int) -> c_int;
    /// gethostbyaddr_r(3).
    fn gethostbyaddr_r(addr: *const c_void, len: socklen_t, kind: c_int, ret: *mut libc::hostent, buf: *mut c_char, buflen: size_t, result: *mut *mut libc::hostent, h_errnop: *mut c_int) -> c_int;
    /// getifaddrs(3).
    fn getifaddrs(list: *mut *mut libc::ifaddrs) -> c_int;
    /// fstat(2) (a libc symbol since glibc 2.33).
    fn fstat(fd: c_int, buf: *mut libc::stat) -> c_int;
}

real_functions! {
    /// res_query(3).
    fn res_query(name: *const c_char, class: c_int, kind: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    /// res_search(3).
    fn res_search(name: *const c_char, class: c_int, kind: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    /// res_querydomain(3).
    fn res_querydomain(name: *const c_char, domain: *const c_char, class: c_int, kind: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    /// res_send(3).
    fn res_send(msg: *const u8, msglen: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    /// res_nquery(3).
    fn res_nquery(state: *mut c_void, name: *const c_char, class: c_int, kind: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    /// res_nsearch(3).
    fn res_nsearch(state: *mut c_void, name: *const c_char, class: c_int, kind: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    /// res_nquerydomain(3).
    fn res_nquerydomain(state: *mut c_void, name: *const c_char, domain: *const c_char, class: c_int, kind: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    /// res_nsend(3).
    fn res_nsend(state: *mut c_void, msg: *const u8, msglen: c_int, answer: *mut u8, anslen: c_int) -> c_int;
    /// getaddrinfo_a(3).
    fn getaddrinfo_a(mode: c_int, list: *mut *mut c_void, nitems: c_int, sevp: *mut libc::sigevent) -> c_int;
}

/// Sets h_errno for the calling thread (netdb.h's `__h_errno_location`).
pub fn set_h_errno(value: c_int) {
    static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
    let f = resolve(&SLOT, c"__h_errno_location");
    if f.is_null() {
        return;
    }
    // SAFETY: glibc's __h_errno_location has this signature.
    let f: unsafe extern "C" fn() -> *mut c_int = unsafe { std::mem::transmute(f) };
    // SAFETY: it returns this thread's h_errno slot, valid for the thread's life.
    unsafe { *f() = value };
}

/// freeaddrinfo(3) (returns nothing, so it is not in the table above).
///
/// # Safety
/// `res` must come from `getaddrinfo` and not be freed twice.
pub unsafe fn freeaddrinfo(res: *mut addrinfo) {
    static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
    let f = resolve(&SLOT, c"freeaddrinfo");
    if !f.is_null() {
        // SAFETY: libc's freeaddrinfo has this signature.
        let f: unsafe extern "C" fn(*mut addrinfo) = unsafe { std::mem::transmute(f) };
        // SAFETY: forwarded under the caller's guarantee.
        unsafe { f(res) }
    }
}

/// Calls libc's fcntl-like function `name` with a pointer-sized argument.
fn fcntl_like(
    slot: &AtomicPtr<c_void>,
    name: &CStr,
    fd: c_int,
    cmd: c_int,
    arg: libc::c_ulong,
) -> c_int {
    let f = resolve(slot, name);
    if f.is_null() {
        set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: fcntl and fcntl64 take (int, int, ...); on the supported targets a variadic
    // pointer-sized argument is passed like this fixed one.
    let f: unsafe extern "C" fn(c_int, c_int, libc::c_ulong) -> c_int =
        unsafe { std::mem::transmute(f) };
    // SAFETY: the argument is the caller's, as the command requires it.
    unsafe { f(fd, cmd, arg) }
}

/// fcntl(2) with any command.
///
/// # Safety
/// `arg` must be what `cmd` expects.
pub unsafe fn fcntl_raw(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
    fcntl_like(&SLOT, c"fcntl", fd, cmd, arg)
}

/// fcntl64(2) with any command.
///
/// # Safety
/// `arg` must be what `cmd` expects.
pub unsafe fn fcntl64_raw(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
    fcntl_like(&SLOT, c"fcntl64", fd, cmd, arg)
}

/// Looks up a pointer-returning libc function by name (the table above returns integers).
fn pointer_function(slot: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    resolve(slot, name)
}

/// gethostbyname(3).
///
/// # Safety
/// `name` must be a NUL-terminated string.
pub unsafe fn gethostbyname(name: *const c_char) -> *mut libc::hostent {
    static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
    let f = pointer_function(&SLOT, c"gethostbyname");
    if f.is_null() {
        return null_mut();
    }
    // SAFETY: libc's gethostbyname has this signature.
    let f: unsafe extern "C" fn(*const c_char) -> *mut libc::hostent =
        unsafe { std::mem::transmute(f) };
    // SAFETY: forwarded under the caller's guarantee.
    unsafe { f(name) }
}

/// gethostbyname2(3).
///
/// # Safety
/// `name` must be a NUL-terminated string.
pub unsafe fn gethostbyname2(name: *const c_char, af: c_int) -> *mut libc::hostent {
    static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
    let f = pointer_function(&SLOT, c"gethostbyname2");
    if f.is_null() {
        return null_mut();
    }
    // SAFETY: libc's gethostbyname2 has this signature.
    let f: unsafe extern "C" fn(*const c_char, c_int) -> *mut libc::hostent =
        unsafe { std::mem::transmute(f) };
    // SAFETY: forwarded under the caller's guarantee.
    unsafe { f(name, af) }
}

/// gethostbyaddr(3).
///
/// # Safety
/// `addr` must point to `len` readable bytes.
pub unsafe fn gethostbyaddr(
    addr: *const c_void,
    len: socklen_t,
    kind: c_int,
) -> *mut libc::hostent {
    static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
    let f = pointer_function(&SLOT, c"gethostbyaddr");
    if f.is_null() {
        return null_mut();
    }
    // SAFETY: libc's gethostbyaddr has this signature.
    let f: unsafe extern "C" fn(*const c_void, socklen_t, c_int) -> *mut libc::hostent =
        unsafe { std::mem::transmute(f) };
    // SAFETY: forwarded under the caller's guarantee.
    unsafe { f(addr, len, kind) }
}

/// freeifaddrs(3).
///
/// # Safety
/// `list` must come from `getifaddrs` and not be freed twice.
pub unsafe fn freeifaddrs(list: *mut libc::ifaddrs) {
    static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
    let f = resolve(&SLOT, c"freeifaddrs");
    if !f.is_null() {
        // SAFETY: libc's freeifaddrs has this signature.
        let f: unsafe extern "C" fn(*mut libc::ifaddrs) = unsafe { std::mem::transmute(f) };
        // SAFETY: forwarded under the caller's guarantee.
        unsafe { f(list) }
    }
}

/// write(2) of a byte slice; returns what write returned.
pub fn write_bytes(fd: c_int, bytes: &[u8]) -> ssize_t {
    // SAFETY: the slice is valid for its length.
    unsafe { write(fd, bytes.as_ptr().cast(), bytes.len()) }
}

/// send(2) of a byte slice with `flags`.
pub fn send_bytes(fd: c_int, bytes: &[u8], flags: c_int) -> ssize_t {
    // SAFETY: the slice is valid for its length.
    unsafe { send(fd, bytes.as_ptr().cast(), bytes.len(), flags) }
}

/// recv(2) into a byte slice with `flags`.
pub fn recv_into(fd: c_int, buf: &mut [u8], flags: c_int) -> ssize_t {
    // SAFETY: the slice is valid and writable for its length.
    unsafe { recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) }
}

/// poll(2) on one descriptor: the revents, 0 on timeout, -1 on error (errno set).
pub fn poll_one(fd: c_int, events: i16, timeout_ms: c_int) -> c_int {
    let mut pfd = pollfd { fd, events, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { poll(&mut pfd, 1, timeout_ms) };
    if n > 0 {
        c_int::from(pfd.revents)
    } else {
        n
    }
}

/// getsockopt(2) of an int-valued option; `None` on error (errno set).
pub fn getsockopt_int(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: value and len are valid for the sizes given.
    let rc = unsafe { getsockopt(fd, level, name, (&mut value as *mut c_int).cast(), &mut len) };
    (rc == 0).then_some(value)
}

/// What fstat(2) says `fd` is: its device and inode numbers; `None` when `fd` is not open
/// (errno set). A socket keeps its inode number while any descriptor refers to it, and a new
/// socket gets a new one, so the pair tells a socket from one that took its number.
pub fn identity(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: all-zero bytes are a valid `stat`, which fstat only writes.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a writable `stat`.
    let mut rc = unsafe { fstat(fd, &mut st) };
    if rc != 0 && errno() == libc::ENOSYS {
        // Before glibc 2.33 fstat was an inline wrapper of __fxstat, not a symbol.
        rc = fxstat(fd, &mut st);
    }
    (rc == 0).then_some((st.st_dev, st.st_ino))
}

/// [`identity`] for the load-time constructor, without libc: one `newfstatat(fd, "",
/// AT_EMPTY_PATH)` system call, what glibc's fstat makes. Finding libc's `fstat` with `dlsym`
/// costs more than the call itself (some 1,700 instructions), in every process the library is
/// loaded into (issue 17). A crate for raw system calls (rustix) would do it too, for one call
/// here. Elsewhere than x86-64, [`identity`].
#[cfg(target_arch = "x86_64")]
pub fn identity_at_load(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: all-zero bytes are a valid `stat`, which the kernel only writes.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc: isize;
    // SAFETY: newfstatat(2) reads the empty NUL-terminated path and writes one `struct stat`
    // (on x86-64 libc's `stat` is the kernel's layout) into `st`, a live local; the `syscall`
    // instruction clobbers only rax (the result), rcx and r11, and touches no stack.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_newfstatat as isize => rc,
            in("rdi") fd as isize,
            in("rsi") c"".as_ptr(),
            in("rdx") &mut st as *mut libc::stat,
            in("r10") libc::AT_EMPTY_PATH as isize,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (rc == 0).then_some((st.st_dev, st.st_ino))
}

/// [`identity`] for the load-time constructor (x86-64 has a version without libc).
#[cfg(not(target_arch = "x86_64"))]
pub fn identity_at_load(fd: c_int) -> Option<(u64, u64)> {
    identity(fd)
}

/// glibc's `__fxstat(_STAT_VER, fd, buf)`, what fstat called before glibc 2.33.
fn fxstat(fd: c_int, st: &mut libc::stat) -> c_int {
    /// `_STAT_VER` for this architecture's `struct stat`.
    #[cfg(target_arch = "x86_64")]
    const STAT_VER: c_int = 1;
    #[cfg(not(target_arch = "x86_64"))]
    const STAT_VER: c_int = 0;
    static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
    let f = resolve(&SLOT, c"__fxstat");
    if f.is_null() {
        set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: glibc's __fxstat has this signature.
    let f: unsafe extern "C" fn(c_int, c_int, *mut libc::stat) -> c_int =
        unsafe { std::mem::transmute(f) };
    // SAFETY: `st` is a writable `stat` of the layout `STAT_VER` names.
    unsafe { f(STAT_VER, fd, st) }
}

/// fcntl(2) with an int argument (F_GETFL, F_SETFL…).
pub fn fcntl_int(fd: c_int, cmd: c_int, arg: c_int) -> c_int {
    // SAFETY: these commands take an int argument and no pointers.
    unsafe { fcntl(fd, cmd, arg) }
}

/// bind(2) to a copied address.
pub fn bind_to(fd: c_int, addr: &crate::ffi::sockaddr::RawAddr) -> c_int {
    // SAFETY: `addr.bytes` holds a valid sockaddr of `addr.len` bytes.
    unsafe { bind(fd, addr.bytes.as_ptr().cast(), addr.len as socklen_t) }
}

/// getsockname(2), copied: the socket's own address; `None` when the call fails (errno tells
/// why) or the family is neither AF_INET nor AF_INET6.
pub fn local_addr(fd: c_int) -> Option<crate::ffi::sockaddr::RawAddr> {
    let mut bytes = [0u8; crate::ffi::sockaddr::RAW_LEN];
    let mut len = bytes.len() as socklen_t;
    // SAFETY: `bytes` has room for `len` bytes, and the kernel writes at most that many.
    if unsafe { getsockname(fd, bytes.as_mut_ptr().cast(), &mut len) } != 0 {
        return None;
    }
    let len = len.min(bytes.len() as socklen_t);
    // SAFETY: the first `len` bytes of `bytes` are readable (and were written by the kernel).
    unsafe { crate::ffi::sockaddr::RawAddr::from_ptr(bytes.as_ptr().cast(), len) }
}

/// getpeername(2), copied: the socket's peer; `None` when it has none (errno tells why) or
/// the family is neither AF_INET nor AF_INET6.
pub fn peer_addr(fd: c_int) -> Option<crate::ffi::sockaddr::RawAddr> {
    let mut bytes = [0u8; crate::ffi::sockaddr::RAW_LEN];
    let mut len = bytes.len() as socklen_t;
    // SAFETY: `bytes` has room for `len` bytes, and the kernel writes at most that many.
    if unsafe { getpeername(fd, bytes.as_mut_ptr().cast(), &mut len) } != 0 {
        return None;
    }
    let len = len.min(bytes.len() as socklen_t);
    // SAFETY: the first `len` bytes of `bytes` are readable (and were written by the kernel).
    unsafe { crate::ffi::sockaddr::RawAddr::from_ptr(bytes.as_ptr().cast(), len) }
}

/// sendto(2) of a byte slice to a copied address.
pub fn send_to(
    fd: c_int,
    bytes: &[u8],
    flags: c_int,
    to: &crate::ffi::sockaddr::RawAddr,
) -> ssize_t {
    // SAFETY: the slice is valid for its length; `to.bytes` holds a sockaddr of `to.len` bytes.
    unsafe {
        sendto(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            flags,
            to.bytes.as_ptr().cast(),
            to.len as socklen_t,
        )
    }
}

/// connect(2) to a Rust socket address.
pub fn connect_to(fd: c_int, addr: &crate::ffi::sockaddr::RawAddr) -> c_int {
    // SAFETY: `addr.bytes` holds a valid sockaddr of `addr.len` bytes.
    unsafe { connect(fd, addr.bytes.as_ptr().cast(), addr.len as socklen_t) }
}

/// connect(2) with AF_UNSPEC, past the library's own hook: dissolves a TCP socket's connection
/// (or its failed attempt) so that it can connect again (Linux); used between the tries of a
/// `?dynamic` chain on the program's socket.
pub fn disconnect(fd: c_int) -> c_int {
    let unspec = sockaddr { sa_family: libc::AF_UNSPEC as libc::sa_family_t, sa_data: [0; 14] };
    // SAFETY: `unspec` is a valid sockaddr of the given length for the duration of the call.
    unsafe { connect(fd, &unspec, std::mem::size_of::<sockaddr>() as socklen_t) }
}

/// Whether this process runs in secure-execution mode (setuid, setgid, capabilities): then the
/// environment must not steer the library.
pub fn secure_execution() -> bool {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// The login name of the effective user, if the user database knows it.
pub fn effective_user_name() -> Option<String> {
    let mut buffer = vec![0 as c_char; 4096];
    // SAFETY: passwd is plain data; zeroed is a valid initial value for an out-parameter.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = null_mut();
    // SAFETY: all pointers are valid for the sizes given; geteuid has no preconditions.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into `buffer`, NUL-terminated by getpwuid_r.
    let name = unsafe { CStr::from_ptr(entry.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The addresses of `host` (all families, resolver order), through the real getaddrinfo.
pub fn resolve_host(host: &str) -> Result<Vec<std::net::IpAddr>, String> {
    let name = std::ffi::CString::new(host).map_err(|_| "name contains NUL".to_string())?;
    // SAFETY: addrinfo is plain data; zeroed is the documented way to start hints.
    let mut hints: addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut list: *mut addrinfo = null_mut();
    // SAFETY: valid name, hints and out-pointer.
    let rc = unsafe { getaddrinfo(name.as_ptr(), std::ptr::null(), &hints, &mut list) };
    if rc != 0 {
        // SAFETY: gai_strerror returns a static string for any code.
        let text = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) };
        return Err(text.to_string_lossy().into_owned());
    }
    let mut found = Vec::new();
    let mut node = list;
    while !node.is_null() {
        // SAFETY: `node` is an element of the list getaddrinfo returned, not yet freed.
        let info = unsafe { &*node };
        // SAFETY: ai_addr holds ai_addrlen bytes.
        let raw = unsafe { crate::ffi::sockaddr::RawAddr::from_ptr(info.ai_addr, info.ai_addrlen) };
        if let Some(sa) = raw.and_then(|r| r.socket_addr()) {
            if !found.contains(&sa.ip()) {
                found.push(sa.ip());
            }
        }
        node = info.ai_next;
    }
    // SAFETY: `list` came from getaddrinfo and is freed once.
    unsafe { freeaddrinfo(list) };
    Ok(found)
}

/// The networks this host is directly attached to: (interface address, prefix length).
pub fn attached_networks() -> Vec<(std::net::IpAddr, u8)> {
    let mut list: *mut libc::ifaddrs = null_mut();
    // SAFETY: valid out-pointer.
    if unsafe { getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut networks = Vec::new();
    let mut node = list;
    while !node.is_null() {
        // SAFETY: `node` is an element of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*node };
        let len = std::mem::size_of::<libc::sockaddr_in6>() as socklen_t;
        // SAFETY: ifa_addr/ifa_netmask are null or point to sockaddrs of their family's size;
        // from_ptr reads no more than that family needs.
        let (addr, mask) = unsafe {
            (
                crate::ffi::sockaddr::RawAddr::from_ptr(ifa.ifa_addr, len),
                crate::ffi::sockaddr::RawAddr::from_ptr(ifa.ifa_netmask, len),
            )
        };
        if let (Some(addr), Some(mask)) =
            (addr.and_then(|a| a.socket_addr()), mask.and_then(|m| m.socket_addr()))
        {
            let prefix = match mask.ip() {
                std::net::IpAddr::V4(m) => u32::from(m).count_ones(),
                std::net::IpAddr::V6(m) => u128::from(m).count_ones(),
            };
            networks.push((addr.ip(), prefix as u8));
        }
        node = ifa.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { freeifaddrs(list) };
    networks
}

/// socket(2), which takes no pointers.
pub fn new_socket(domain: c_int, kind: c_int) -> c_int {
    // SAFETY: no pointers involved.
    unsafe { socket(domain, kind, 0) }
}

/// listen(2), which takes no pointers.
pub fn listen_on(fd: c_int, backlog: c_int) -> c_int {
    // SAFETY: no pointers involved.
    unsafe { listen(fd, backlog) }
}

/// dup3(2), which takes no pointers.
pub fn dup3_fd(old: c_int, new: c_int, flags: c_int) -> c_int {
    // SAFETY: no pointers involved.
    unsafe { dup3(old, new, flags) }
}

/// accept4(2) of a pending connection, close-on-exec and non-blocking, not asking for the
/// peer's address.
pub fn accept_cloexec(fd: c_int) -> c_int {
    // SAFETY: null address pointers are documented as "no address wanted".
    unsafe { accept4(fd, null_mut(), null_mut(), libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) }
}

/// getpid(2), which takes no pointers.
pub fn process_id() -> libc::pid_t {
    // SAFETY: no pointers involved.
    unsafe { libc::getpid() }
}

/// close(2), which takes no pointers.
pub fn close_fd(fd: c_int) -> c_int {
    // SAFETY: no pointers involved; the caller owns `fd`.
    unsafe { close(fd) }
}

/// This host's name (gethostname), if it has one.
pub fn host_name() -> Option<String> {
    let mut buf = [0 as c_char; 256];
    // SAFETY: the buffer is writable for its length; gethostname NUL-terminates within it
    // when the name fits, and we terminate it ourselves otherwise.
    if unsafe { libc::gethostname(buf.as_mut_ptr(), buf.len() - 1) } != 0 {
        return None;
    }
    buf[buf.len() - 1] = 0;
    // SAFETY: NUL-terminated above.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
    (!name.is_empty()).then_some(name)
}
