//! BIND, as the library does it (shim/src/intercept.rs; the paper's Rbind, Rlisten,
//! Rgetsockname, Raccept), for the supervised process tree:
//!
//! - `bind` of a TCP socket to a wildcard or own address (not loopback) with port 0, once the
//!   tree has made a proxied connection (the last one, whichever process made it), becomes a
//!   SOCKS BIND naming that connection's destination, through the server it went through: the
//!   supervisor binds its copy of the socket with the bytes it read (the program's own
//!   mistakes keep their errors), connects it to the server and runs the request. The socket
//!   is remembered by `SO_COOKIE` with the address the server listens on.
//! - `listen` on such a socket succeeds without listening; `getsockname` reports the server's
//!   listening address (so ftp's PORT names it; answered in `sockname`).
//! - `accept`/`accept4` waits for the second reply (a non-blocking socket with nothing to read
//!   gets EAGAIN; the socket is the connection to the server, so poll and epoll see it readable
//!   when the reply comes, as with the library; a blocking one waits at most SO_RCVTIMEO, then
//!   EAGAIN, and a signal for the program's thread ends the wait as it ends the kernel's accept:
//!   restarted after a SA_RESTART handler, EINTR otherwise, `interrupt`), writes the connecting peer into the program's
//!   memory (after `SECCOMP_IOCTL_NOTIF_ID_VALID`), puts a quiet loopback listener in the
//!   listening descriptor's place (one accept per BIND, as the library does: the program can
//!   keep, poll and close it, and closing it never cuts the accepted connection), and hands the
//!   connection itself over with `SECCOMP_IOCTL_NOTIF_ADDFD` and `SECCOMP_ADDFD_FLAG_SEND`
//!   (installed and answered in one step; close-on-exec and non-blocking as accept4's flags
//!   say). The accepted socket then names the peer in `getpeername`. Two accepts at once on
//!   one BIND socket: one reads the second reply, the other waits its turn (EAGAIN if
//!   non-blocking) and then goes on to the quiet listener.
//!
//! Every other `bind` — a specific port, loopback, another family or type, a tree with no
//! proxied connection, a destination socks.conf does not send through a server — goes on to
//! the kernel (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`), which re-reads the address. That is safe
//! where a re-read `connect` would not be: binding only names the socket's own end and sends
//! nothing, so whatever address a racing thread puts there, no packet leaves because of it;
//! the worst it can do is keep its socket local, which the program may do anyway by asking for
//! a specific port. The kernel also checks the program's own privileges then (a port below
//! 1024), not the supervisor's. `listen`, `getsockname` and `accept` of sockets that are not
//! BIND sockets go on likewise, and without even a `pidfd_getfd` while no BIND socket exists.
//!
//! A BIND socket used for `connect` instead (a program binding its own address, port 0, before
//! connecting) is given a fresh socket first, as the library does (`unbound`).
//!
//! Not covered: a second `accept` (the quiet listener
//! waits forever, as under the library); an `accept` interrupted by a signal after the second
//! reply was read, on a kernel without `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (< 5.19): the
//! connection is lost.
//!
//! Not here: the filter (`filter`), the handshake (`proxy`), the notification loop
//! (`supervise`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use socks_proto::client::ClientVersion;
use socks_proto::server::Command;

use crate::config::Server;
use crate::interrupt;
use crate::recv::WAIT_STEP;
use crate::route::Route;
use crate::supervise::{copy_socket, log, target_of, write_sockaddr, Pending, Shared};
use crate::{filter, proxy, sockaddr, sockname, sys};

/// How many BIND sockets are remembered (oldest forgotten first: such a socket then behaves as
/// a plain socket connected to the server).
pub const BINDS_MAX: usize = 4096;

/// A socket bound through a SOCKS server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    /// Where the server listens, as the socket's family names it.
    listening: SocketAddr,
    /// The server the socket is connected to.
    server: SocketAddr,
    /// The protocol spoken (for the second reply).
    version: ClientVersion,
    /// An accept is waiting for the second reply on it (others wait their turn).
    accepting: bool,
}

/// BIND sockets by `SO_COOKIE`.
#[derive(Debug, Default)]
pub(crate) struct Binds {
    by_cookie: HashMap<u64, Bound>,
    order: VecDeque<u64>,
}

impl Binds {
    fn insert(&mut self, cookie: u64, bound: Bound) {
        if self.by_cookie.insert(cookie, bound).is_none() {
            self.order.push_back(cookie);
        }
        while self.by_cookie.len() > BINDS_MAX {
            match self.order.pop_front() {
                Some(old) => {
                    self.by_cookie.remove(&old);
                }
                None => break,
            }
        }
    }

    fn remove(&mut self, cookie: u64) {
        if self.by_cookie.remove(&cookie).is_some() {
            self.order.retain(|&c| c != cookie);
        }
    }

    /// Where the server listens for BIND socket `cookie` (its `getsockname`), if it is one.
    pub(crate) fn listening(&self, cookie: u64) -> Option<SocketAddr> {
        self.by_cookie.get(&cookie).map(|b| b.listening)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_cookie.is_empty()
    }
}

/// The `@=` entry the last connection went through (`route`, its `Server::id`: two chains may
/// share a first hop, so the first hop alone does not say which), if it is in the list; else
/// the first entry whose first hop is the server it went through (a BIND routed by another
/// rule than the connection); else the whole list. As the library does (`intercept::preferred`).
fn preferred(servers: &[Server], route: usize, used: SocketAddr) -> &[Server] {
    let used = sockaddr::canonical(used);
    let position = servers.iter().position(|s| s.id == route).or_else(|| {
        servers.iter().position(|s| s.addrs.iter().any(|a| sockaddr::canonical(*a) == used))
    });
    match position {
        Some(i) => &servers[i..=i],
        None => servers,
    }
}

/// bind(2): a SOCKS BIND for a wildcard/own address with port 0 when the tree has a proxied
/// connection; the kernel's bind otherwise (see the module documentation for why CONTINUE is
/// safe here).
pub(crate) fn bind(pending: Pending, notif: libc::seccomp_notif) {
    let Some(last) = pending.shared.peers().last else { return pending.proceed() };
    let dst = last.dst;
    let fd = notif.data.args[0] as i32;
    let (addr_ptr, addr_len) = (notif.data.args[1], notif.data.args[2] as i64);
    let (pid, socket) = match copy_socket(&pending, notif.pid, fd) {
        Ok(Some(pair)) => pair,
        Ok(None) => return,
        Err(_) => return pending.proceed(),
    };
    let socket = socket.as_fd();
    let int = |name| sys::getsockopt_int(socket, libc::SOL_SOCKET, name).ok();
    let domain = match (int(libc::SO_DOMAIN), int(libc::SO_TYPE)) {
        (Some(d @ (libc::AF_INET | libc::AF_INET6)), Some(libc::SOCK_STREAM)) => d,
        _ => return pending.proceed(),
    };
    if !(0..=128).contains(&addr_len) {
        return pending.proceed();
    }
    let Ok(bytes) = sys::read_memory(notif.pid, addr_ptr, addr_len as usize) else {
        return pending.proceed();
    };
    let Some(local) = sockaddr::parse(&bytes) else { return pending.proceed() };
    if local.port() != 0 || local.ip().to_canonical().is_loopback() {
        return pending.proceed();
    }
    let settings = &pending.shared.settings;
    // A connection made by name (to a fake address) is named by that name, as connect does.
    let Ok((target, Route::Proxy(servers))) = target_of(&pending.shared, pid, "bind", dst) else {
        return pending.proceed();
    };
    if !pending.valid() {
        return;
    }
    // The real bind first, with the bytes checked, so the program's own mistakes keep their
    // own errors.
    if let Err(errno) = sys::bind_raw(socket, &bytes) {
        return pending.reply(errno);
    }
    let deadline = Instant::now() + settings.timeout;
    let servers = preferred(servers, last.route, last.server);
    let asker = Some(proxy::Asker { settings, pid });
    let granted = match proxy::request_via(
        socket,
        domain,
        Command::Bind,
        &target,
        servers,
        deadline,
        asker,
    ) {
        Ok(granted) => granted,
        Err(failed) => {
            log(settings, 1, pid, format_args!("bind for {dst} {}", failed.why));
            return pending.reply(failed.errno);
        }
    };
    let Some(listening) = proxy::for_family(granted.bound, domain) else {
        log(
            settings,
            1,
            pid,
            format_args!(
                "bind: the server listens on {}, which this socket cannot name",
                granted.bound
            ),
        );
        sys::disconnect(socket);
        return pending.reply(libc::EAFNOSUPPORT);
    };
    let Ok(cookie) = sys::socket_cookie(socket) else {
        sys::disconnect(socket);
        return pending.reply(libc::ENOTSOCK);
    };
    let bound =
        Bound { listening, server: granted.server, version: granted.version, accepting: false };
    pending.shared.binds().insert(cookie, bound);
    log(settings, 3, pid, format_args!("bind for {dst}: the server listens on {listening}"));
    pending.reply(0);
}

/// Answers on the notification loop's thread the calls that cannot wait — `listen` and
/// `getsockname` always, `accept` while no BIND socket exists, `bind` while the tree has no
/// proxied connection — and gives back the others (a BIND handshake, an accept that may wait
/// for its second reply), which get a thread of their own. A thread costs more than such a
/// call's work (docs/PERFORMANCE.md).
pub(crate) fn answer_inline(pending: Pending, notif: &libc::seccomp_notif) -> Option<Pending> {
    match notif.data.nr as u32 {
        filter::NR_LISTEN => listen(pending, *notif),
        filter::NR_GETSOCKNAME => sockname::getsockname(pending, *notif),
        filter::NR_ACCEPT | filter::NR_ACCEPT4 if pending.shared.binds().is_empty() => {
            pending.proceed()
        }
        filter::NR_BIND if pending.shared.peers().last.is_none() => pending.proceed(),
        _ => return Some(pending),
    }
    None
}

/// The BIND socket behind the call's descriptor (`args[0]`), with the supervisor's copy of it;
/// `None` when the call has been answered (gone) or goes on to the kernel.
fn bound_socket(
    pending: Pending,
    notif: &libc::seccomp_notif,
) -> Option<(Pending, u32, std::os::fd::OwnedFd, u64, Bound)> {
    if pending.shared.binds().is_empty() {
        pending.proceed();
        return None;
    }
    let (pid, socket) = match copy_socket(&pending, notif.pid, notif.data.args[0] as i32) {
        Ok(Some(pair)) => pair,
        Ok(None) => return None,
        Err(_) => {
            pending.proceed();
            return None;
        }
    };
    let cookie = sys::socket_cookie(socket.as_fd()).ok();
    let bound = cookie.and_then(|c| pending.shared.binds().by_cookie.get(&c).copied());
    match (cookie, bound) {
        (Some(cookie), Some(bound)) => Some((pending, pid, socket, cookie, bound)),
        _ => {
            pending.proceed();
            None
        }
    }
}

/// listen(2): nothing to do for a BIND socket (the server listens).
pub(crate) fn listen(pending: Pending, notif: libc::seccomp_notif) {
    if let Some((pending, ..)) = bound_socket(pending, &notif) {
        pending.reply(0);
    }
}

/// accept(2)/accept4(2) (`with_flags`: the fourth argument is accept4's flags) on a BIND
/// socket: the inbound connection, handed over by ADDFD.
pub(crate) fn accept(pending: Pending, notif: libc::seccomp_notif, with_flags: bool) {
    let Some((pending, pid, socket, cookie, bound)) = bound_socket(pending, &notif) else {
        return;
    };
    let settings = &pending.shared.settings;
    let flags = if with_flags { notif.data.args[3] as i32 } else { 0 };
    if flags & !(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) != 0 {
        return pending.reply(libc::EINVAL);
    }
    let (addr_ptr, len_ptr) = (notif.data.args[1], notif.data.args[2]);
    let copy = socket.as_fd();
    let status = match sys::status_flags(copy) {
        Ok(s) => s,
        Err(e) => return pending.reply(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    let blocking = status & libc::O_NONBLOCK == 0;
    // A blocking accept waits as the kernel's would: for SO_RCVTIMEO at most (then EAGAIN),
    // and until a signal for the program's thread interrupts it (`interrupt`).
    let timed = sys::receive_timeout(copy).map(|t| Instant::now() + t);
    let mut signals = interrupt::Watch::new(notif.pid, pid);
    let mut interrupted = || match signals.interrupted(timed.is_some()) {
        Some(errno) => Some(errno),
        None if timed.is_some_and(|t| Instant::now() >= t) => Some(libc::EAGAIN),
        None => None,
    };
    // One accept at a time reads the second reply; a concurrent one waits its turn (EAGAIN if
    // non-blocking), then finds the quiet listener, as it would under the library.
    let _turn = loop {
        match Turn::take(&pending, cookie) {
            Some(Ok(turn)) => break turn,
            Some(Err(())) if !blocking => return pending.reply(libc::EAGAIN),
            Some(Err(())) if !pending.valid() => return,
            Some(Err(())) => match interrupted() {
                Some(errno) => return pending.reply(errno),
                None => std::thread::sleep(WAIT_STEP),
            },
            None => return pending.proceed(),
        }
    };
    // Until the second reply starts to arrive: EAGAIN for a non-blocking socket; a blocking
    // one waits (the server bounds the wait with its own BIND timeout) while the program does.
    loop {
        let timeout = if blocking { WAIT_STEP.as_millis() } else { 0 };
        match sys::poll_one(copy, libc::POLLIN, timeout as i32) {
            Ok(0) if !blocking => return pending.reply(libc::EAGAIN),
            Ok(0) if !pending.valid() => return,
            Ok(0) => {
                if let Some(errno) = interrupted() {
                    return pending.reply(errno);
                }
            }
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return pending.reply(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
    let deadline = Instant::now() + settings.timeout;
    let peer = match proxy::second_reply(copy, bound.version, deadline) {
        Ok(peer) => peer,
        Err(failed) => {
            log(settings, 1, pid, format_args!("accept: second reply: {}", failed.why));
            // The inbound connection the BIND waited for is not coming.
            pending.shared.binds().remove(cookie);
            return pending.reply(libc::ECONNABORTED);
        }
    };
    pending.shared.binds().remove(cookie);
    let domain = sys::getsockopt_int(copy, libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(0);
    let peer = proxy::for_family(peer, domain).unwrap_or(peer);
    // From now on the socket is a connection to `peer`, through the server.
    pending.shared.peers().insert_accepted(cookie, peer, bound.server);
    if addr_ptr != 0 {
        match write_sockaddr(&pending, notif.pid, addr_ptr, len_ptr, peer) {
            Ok(true) => {}
            Ok(false) => return,
            Err(errno) => return pending.reply(errno),
        }
    }
    let nonblocking = if flags & libc::SOCK_NONBLOCK != 0 { libc::O_NONBLOCK } else { 0 };
    if let Err(e) = sys::set_status_flags(copy, (status & !libc::O_NONBLOCK) | nonblocking) {
        return pending.reply(e.raw_os_error().unwrap_or(libc::EIO));
    }
    // The listening descriptor becomes a quiet listener of its own (keeping its close-on-exec
    // flag), so that closing it leaves the accepted connection alone.
    let fd = notif.data.args[0] as i32;
    let quiet = match sys::quiet_listener(domain) {
        Ok(quiet) => quiet,
        Err(e) => return pending.reply(e.raw_os_error().unwrap_or(libc::EMFILE)),
    };
    if let Err(e) = pending.install_at(quiet.as_fd(), fd, close_on_exec(pid, fd)) {
        return pending.reply(e.raw_os_error().unwrap_or(libc::EMFILE));
    }
    log(settings, 3, pid, format_args!("accept: connection from {peer} (via {})", bound.server));
    pending.reply_with_fd(copy, flags & libc::SOCK_CLOEXEC != 0);
}

/// A BIND socket used for `connect` after all (a program that binds to its own address, port
/// 0, before connecting): as the library does, the program's descriptor gets a fresh TCP
/// socket of the same family, its close-on-exec and non-blocking flags kept — the bind was to
/// port 0, so nothing is lost — and the connect goes on with it (the BIND at the server is
/// dropped with the old socket). Returns the socket to connect: `socket` itself when it is no
/// BIND socket; `Err(errno)` when the swap failed.
pub(crate) fn unbound(
    pending: &Pending,
    pid: u32,
    fd: i32,
    socket: OwnedFd,
) -> Result<OwnedFd, i32> {
    if pending.shared.binds().is_empty() {
        return Ok(socket);
    }
    let Ok(cookie) = sys::socket_cookie(socket.as_fd()) else { return Ok(socket) };
    if !pending.shared.binds().by_cookie.contains_key(&cookie) {
        return Ok(socket);
    }
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let domain =
        sys::getsockopt_int(socket.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN).map_err(errno)?;
    let status = sys::status_flags(socket.as_fd()).map_err(errno)?;
    let fresh = sys::tcp_socket(domain).map_err(errno)?;
    sys::set_status_flags(fresh.as_fd(), status & libc::O_NONBLOCK).map_err(errno)?;
    pending.install_at(fresh.as_fd(), fd, close_on_exec(pid, fd)).map_err(errno)?;
    pending.shared.binds().remove(cookie);
    log(
        &pending.shared.settings,
        4,
        pid,
        format_args!("connect on fd {fd}: a BIND socket after all, replaced by a fresh one"),
    );
    Ok(fresh)
}

/// The one accept reading a BIND socket's second reply; gives the turn back when dropped.
struct Turn {
    shared: Arc<Shared>,
    cookie: u64,
}

impl Turn {
    /// `Some(Ok)`: the turn is ours; `Some(Err)`: another accept has it; `None`: the socket is
    /// no longer a BIND socket.
    fn take(pending: &Pending, cookie: u64) -> Option<Result<Turn, ()>> {
        let mut binds = pending.shared.binds();
        let bound = binds.by_cookie.get_mut(&cookie)?;
        if bound.accepting {
            return Some(Err(()));
        }
        bound.accepting = true;
        Some(Ok(Turn { shared: pending.shared.clone(), cookie }))
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(bound) = self.shared.binds().by_cookie.get_mut(&self.cookie) {
            bound.accepting = false;
        }
    }
}

/// Whether descriptor `fd` of process `pid` is close-on-exec (`flags:` in its fdinfo, octal).
fn close_on_exec(pid: u32, fd: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| i64::from_str_radix(v.trim(), 8).ok())
        .is_some_and(|flags| flags & i64::from(libc::O_CLOEXEC) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_table_is_bounded_oldest_first() {
        let a: SocketAddr = "192.0.2.1:1080".parse().expect("literal");
        let bound =
            Bound { listening: a, server: a, version: ClientVersion::Socks5, accepting: false };
        let mut binds = Binds::default();
        assert!(binds.is_empty());
        for cookie in 0..(BINDS_MAX as u64 + 3) {
            binds.insert(cookie, bound);
        }
        assert_eq!(binds.by_cookie.len(), BINDS_MAX);
        assert!(!binds.by_cookie.contains_key(&2) && binds.by_cookie.contains_key(&3));
        binds.remove(3);
        assert_eq!(binds.order.len(), BINDS_MAX - 1);
    }

    #[test]
    fn bind_goes_through_the_entry_that_carried_the_connection() {
        let path = std::env::temp_dir()
            .join(format!("socks-supervise-{}-bind-chains.conf", std::process::id()));
        std::fs::write(
            &path,
            "sockd @=socks5://192.0.2.1:1080>socks5://198.51.100.2:1081,\
             socks5://192.0.2.1:1080>socks5://198.51.100.2:1082 0.0.0.0/0\n",
        )
        .expect("temp file");
        let settings = crate::config::load(&crate::config::Environment {
            conf: Some(path.display().to_string()),
            ..Default::default()
        });
        let _ = std::fs::remove_file(path);
        let socks_client::Mode::Rules { servers, .. } = &settings.mode else {
            panic!("{:?}", settings.mode)
        };
        let list = &servers[0];
        let fw: SocketAddr = "192.0.2.1:1080".parse().expect("literal");
        // Both chains start at the firewall: the second carried the connection.
        let chosen = preferred(list, list[1].id, fw);
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].id, list[1].id, "the second chain, not the first with that hop");
        // An entry of another rule: the first hop decides, as before.
        assert_eq!(preferred(list, usize::MAX, fw)[0].id, list[0].id);
        let elsewhere: SocketAddr = "203.0.113.1:1080".parse().expect("literal");
        assert_eq!(preferred(list, usize::MAX, elsewhere).len(), 2, "unknown: the whole list");
    }

    #[test]
    fn own_close_on_exec_flag_is_read() {
        let pid = std::process::id();
        let file = std::fs::File::open("/proc/self/status").expect("open");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        assert!(close_on_exec(pid, fd), "std opens with O_CLOEXEC");
        assert!(!close_on_exec(pid, -1), "no such descriptor");
    }
}
