//! What the library does for each intercepted call, in safe Rust: the hooks in `hooks` convert
//! raw arguments and call these, and turn the outcome into a return value and errno.
//!
//! Not here: pointers, errno, panics (see `hooks`).

use libc::c_int;

use crate::config;
use crate::fdtable::{self, Entry};
use crate::log::{log, Level};
use crate::proxy;
use crate::real;
use crate::route::{route, Route};
use crate::sockaddr::{canonical, RawAddr};

/// The result of handling a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not ours: make the real call with the original arguments.
    PassThrough,
    /// Handled successfully: return 0.
    Done,
    /// Handled, failed: return -1 with this errno.
    Fail(c_int),
}

/// connect(2) of `fd` to `dst` as the program gave it.
pub fn connect(fd: c_int, dst: &RawAddr) -> Outcome {
    let Some(target) = dst.socket_addr() else { return Outcome::PassThrough };
    if real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) != Some(libc::SOCK_STREAM) {
        return Outcome::PassThrough;
    }
    if fdtable::get(fd).is_some() {
        // Already connected through a server: the kernel gives the right answer (EISCONN).
        return Outcome::PassThrough;
    }
    let target = canonical(target);
    let settings = config::settings();
    match route(settings, target) {
        Route::Direct => {
            log!(Level::Debug, "connect {target}: direct");
            Outcome::PassThrough
        }
        Route::Deny => {
            log!(Level::Info, "connect {target}: denied by socks.conf");
            Outcome::Fail(libc::ECONNREFUSED)
        }
        Route::Broken => {
            log!(Level::Error, "connect {target}: refused, the configuration is broken");
            Outcome::Fail(libc::ECONNREFUSED)
        }
        Route::Proxy(servers) => {
            match proxy::connect_through(fd, target, servers, settings.timeout) {
                Ok(server) => {
                    fdtable::set(fd, &Entry { destination: *dst, server });
                    Outcome::Done
                }
                Err(errno) => Outcome::Fail(errno),
            }
        }
    }
}

/// The address getpeername(2) should report for `fd` when the kernel reports `actual`: the
/// program's destination if `fd` is a socket we connected through that server, else `actual`
/// (and a stale entry is dropped).
pub fn peer_name(fd: c_int, actual: &RawAddr) -> RawAddr {
    match fdtable::get(fd) {
        Some(entry) if entry.server.bytes[..entry.server.len] == actual.bytes[..actual.len] => {
            entry.destination
        }
        Some(_) => {
            fdtable::clear(fd);
            *actual
        }
        None => *actual,
    }
}
