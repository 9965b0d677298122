//! `reuse-connect DST...`: a test program for the library (run under it by
//! tests/tests/descriptors.rs) that closes proxied sockets in ways the library does not see and
//! connects a new socket that gets the same number. Each DST is `ADDR:PORT` or `NAME:PORT` of an
//! echo server the configuration sends through a SOCKS server.
//!
//! For each DST and each close the library does not see as close(2) — `fclose(fdopen(s))` (libc
//! closes internally) and `syscall(SYS_close, s)` (libuv's way; the library's syscall hook hands
//! it to its close hook) — it
//! connects socket A to DST, closes it that way, opens socket B (which must get A's number),
//! connects B to DST, echoes 64 bytes and reads getpeername. A third way, `unspec`, keeps the
//! socket and dissolves its connection with connect(AF_UNSPEC) (Linux lets a TCP socket
//! connect again after that), then connects it to DST again. One line per case:
//! `DST WAY reused=yes|no connect=ok|errno=E echo=ok|bad peer=ok|bad`. The test judges the lines
//! (and sockd's log, and the leak counters).
//!
//! Not here: the assertions (the test).

use std::net::{SocketAddr, ToSocketAddrs};

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() }
}

/// The destination as a sockaddr for connect(2).
fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// A new TCP socket connected to `addr`: the descriptor, or the errno of socket or connect.
fn connected(addr: SocketAddr) -> Result<i32, i32> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let (storage, len) = sockaddr_of(addr);
    // SAFETY: plain system calls; `storage` holds `len` bytes of address.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return Err(errno());
        }
        if libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) != 0 {
            let e = errno();
            libc::close(fd);
            return Err(e);
        }
        Ok(fd)
    }
}

/// Dissolves `fd`'s connection: connect(2) with AF_UNSPEC.
fn disconnect(fd: i32) {
    // SAFETY: all-zero bytes are a valid sockaddr; its family is AF_UNSPEC (0).
    let unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: `unspec` holds `len` bytes.
    let rc = unsafe { libc::connect(fd, &unspec, len) };
    assert_eq!(rc, 0, "connect(AF_UNSPEC) failed: errno {}", errno());
}

/// Closes `fd` without the library seeing a close(2) call.
fn close_unseen(fd: i32, way: &str) {
    // SAFETY: `fd` is this program's open socket; fdopen takes it over and fclose closes it;
    // syscall(SYS_close) closes it directly.
    unsafe {
        if way == "fclose" {
            let file = libc::fdopen(fd, c"r+".as_ptr());
            assert!(!file.is_null(), "fdopen failed: errno {}", errno());
            libc::fclose(file);
        } else {
            libc::syscall(libc::SYS_close, libc::c_long::from(fd));
        }
    }
}

/// Echoes 64 bytes over `fd`.
fn echo_ok(fd: i32) -> bool {
    let out = [b'r'; 64];
    // SAFETY: a local buffer of the stated size.
    let sent = unsafe { libc::send(fd, out.as_ptr().cast(), out.len(), libc::MSG_NOSIGNAL) };
    if sent != 64 {
        return false;
    }
    let mut back = [0u8; 64];
    let mut got = 0;
    while got < back.len() {
        // SAFETY: the rest of a local buffer.
        let n = unsafe { libc::recv(fd, back[got..].as_mut_ptr().cast(), back.len() - got, 0) };
        if n <= 0 {
            return false;
        }
        got += n as usize;
    }
    back == out
}

/// Whether getpeername of `fd` names `dst`.
fn peer_ok(fd: i32, dst: SocketAddr) -> bool {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes.
    let rc = unsafe {
        libc::getpeername(fd, (&mut storage as *mut libc::sockaddr_storage).cast(), &mut len)
    };
    rc == 0 && sockaddr_of(dst).0.ss_family == storage.ss_family && {
        let (want, want_len) = sockaddr_of(dst);
        // SAFETY: both are sockaddr_storage values of at least `want_len` bytes.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(
                    (&want as *const libc::sockaddr_storage).cast::<u8>(),
                    want_len as usize,
                ),
                std::slice::from_raw_parts(
                    (&storage as *const libc::sockaddr_storage).cast::<u8>(),
                    want_len as usize,
                ),
            )
        };
        len == want_len && a == b
    }
}

fn main() {
    let targets: Vec<String> = std::env::args().skip(1).collect();
    if targets.is_empty() {
        eprintln!("usage: reuse-connect ADDR:PORT|NAME:PORT...");
        std::process::exit(2);
    }
    for target in &targets {
        let Some(dst) = target.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
            println!("{target} resolve=failed");
            continue;
        };
        for way in ["fclose", "syscall", "unspec"] {
            let first = match connected(dst) {
                Ok(fd) => fd,
                Err(e) => {
                    println!("{target} {way} first-connect=errno={e}");
                    continue;
                }
            };
            let second = if way == "unspec" {
                disconnect(first);
                first
            } else {
                close_unseen(first, way);
                let family = if dst.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
                // SAFETY: a plain system call.
                unsafe { libc::socket(family, libc::SOCK_STREAM, 0) }
            };
            let reused = if second == first { "yes" } else { "no" };
            let (storage, len) = sockaddr_of(dst);
            // SAFETY: `storage` holds `len` bytes of address.
            let rc = unsafe {
                libc::connect(second, (&storage as *const libc::sockaddr_storage).cast(), len)
            };
            if rc != 0 {
                println!("{target} {way} reused={reused} connect=errno={}", errno());
            } else {
                let echo = if echo_ok(second) { "ok" } else { "bad" };
                let peer = if peer_ok(second, dst) { "ok" } else { "bad" };
                println!("{target} {way} reused={reused} connect=ok echo={echo} peer={peer}");
            }
            // SAFETY: our own descriptor.
            unsafe { libc::close(second) };
        }
    }
}
