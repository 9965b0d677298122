//! `getsockname` for the supervised program: what a socket's own address looks like when the
//! supervisor stands between it and the network.
//!
//! - A BIND socket (`bind`): the address the server listens on (so ftp's PORT names it).
//! - A UDP socket relayed through sockd and connected to its destination: the program's socket
//!   is really connected to a loopback socket of the supervisor (an L, see `udp`), so the
//!   kernel names 127.0.0.1 (`::1`, `::ffff:127.0.0.1`). Shown instead, with the socket's own
//!   port: this host's address towards sockd's relay — what the library's socket, really
//!   connected to the relay, shows, and the address a direct socket would have on the same
//!   network (`udp::shown_name`). A socket the program bound to an address of its own keeps
//!   the kernel's answer, and so does an unconnected one (the wildcard address, as without
//!   the supervisor).
//! - Anything else: the kernel's answer (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`), without even a
//!   look at the socket while no BIND socket and no relayed UDP socket exists.
//!
//! Not here: making BIND sockets (`bind`) or associations (`udp`).

use std::os::fd::AsFd;

use crate::supervise::{copy_socket, log, write_sockaddr, Pending};
use crate::{sockaddr, sys, udp};

/// getsockname(2), answered on the notification loop's thread.
pub(crate) fn getsockname(pending: Pending, notif: libc::seccomp_notif) {
    if pending.shared.binds().is_empty() && pending.shared.udp.rewrites.is_empty() {
        return pending.proceed();
    }
    let (pid, socket) = match copy_socket(&pending, notif.pid, notif.data.args[0] as i32) {
        Ok(Some(pair)) => pair,
        Ok(None) => return,
        Err(_) => return pending.proceed(),
    };
    let Ok(cookie) = sys::socket_cookie(socket.as_fd()) else { return pending.proceed() };
    let bound = pending.shared.binds().listening(cookie);
    let (shown, what) = match bound {
        Some(listening) => (listening, "BIND"),
        None => {
            let kernel = sys::local_name(socket.as_fd()).ok().and_then(|b| sockaddr::parse(&b));
            match kernel.and_then(|k| udp::shown_name(&pending.shared, cookie, k)) {
                Some(shown) => (shown, "UDP, relayed"),
                None => return pending.proceed(),
            }
        }
    };
    let (addr_ptr, len_ptr) = (notif.data.args[1], notif.data.args[2]);
    match write_sockaddr(&pending, notif.pid, addr_ptr, len_ptr, shown) {
        Ok(true) => {
            log(&pending.shared.settings, 4, pid, format_args!("getsockname: {shown} ({what})"));
            pending.reply(0);
        }
        Ok(false) => {}
        Err(errno) => pending.reply(errno),
    }
}
