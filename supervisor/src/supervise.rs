//! The notification loop: receive each trapped call (`connect`, `getpeername`, the sends
//! with a destination, which `send` handles, the receives that report a source, which `recv`
//! handles, and `bind`/`listen`/`getsockname`/`accept`, which `bind` handles) from the
//! listener, handle it on a thread of a pool that grows on demand (`pool`: an idle thread,
//! or a new one when all are busy, so a slow handshake holds only the program thread that
//! asked for it; a send or a receive that cannot block is answered on the loop's thread), and
//! answer it. Ends when every supervised process is gone (the listener reports POLLHUP once
//! the last one has ended; this process is their subreaper, and reaps them on the loop's
//! thread when a SIGCHLD signalfd polled with the listener says one ended).
//!
//! A connect is handled on the supervisor's copy of the program's socket (`pidfd_getfd`, the
//! same socket): for an IPv4/IPv6 socket the address is read once from the program's memory,
//! checked (`SECCOMP_IOCTL_NOTIF_ID_VALID` once the reads are done, before anything is acted
//! on), routed, and the connect — direct
//! or through SOCKS — is made by the supervisor with the bytes it checked. The kernel never
//! re-reads the program's address for such a socket, so a thread that rewrites the address
//! during the call changes nothing. Only sockets of other families (AF_UNIX, netlink, …) get
//! `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: the kernel then re-reads the address, but a socket of
//! those families cannot connect to an IP address whatever the bytes say.
//!
//! A connect of a UDP socket to a destination socks.conf sends through a server connects the
//! copy to the loopback socket that stands for that destination in the socket's UDP
//! association (`udp`), set up as needed; `getpeername` then names the destination, and the
//! program's reads and writes stay in the kernel. Another datagram protocol (ping, raw) through
//! a server fails with ECONNREFUSED.
//!
//! The copy (`copy_socket`) is taken through a pidfd kept for the calling thread's process or
//! for the thread itself (`pidfds`: a stale one is never used for another process).
//!
//! A connect of a UDP or TCP socket to port 53 goes to the supervisor's name service (`dns`),
//! and a connect to a fake address it handed out sends the name to the server (SOCKS5
//! DOMAINNAME, SOCKS4a), as the library does; a fake address never handed out, or whose name
//! no `sockd` line covers, fails with EHOSTUNREACH. A UDP socket so redirected has the
//! responder's replies reported as the real server's by the trapped receives (`recv`).
//!
//! `getpeername` on a socket the supervisor connected through a SOCKS server (recognised by its
//! `SO_COOKIE`, and only while the socket's real peer is still that server) answers the
//! destination the program asked for, written into the program's memory; any other socket's
//! call goes on to the kernel (CONTINUE: nothing was decided from the program's memory).
//! The table of proxied sockets is bounded ([`PEERS_MAX`], oldest forgotten first: such a
//! socket then shows the server as its peer).
//!
//! Every notification gets exactly one answer: a handler that panics or returns without one
//! answers ECONNREFUSED from its guard's `Drop` (fail closed; for a send too: nothing was
//! sent).
//!
//! Not here: the filter (`filter`), the routing (`route`), the handshake (`proxy`), the UDP
//! relay (`udp`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use socks_proto::TargetAddr;

use crate::config::Settings;
use crate::pidfds::Pidfds;
use crate::route::{route, route_name, Route};
use crate::{bind, dns, filter, names, proxy, recv, send, sockaddr, sockname, sys, udp};

/// How many proxied sockets `getpeername` remembers.
pub const PEERS_MAX: usize = 1 << 16;

/// Shared by the loop and the handler threads.
#[derive(Debug)]
pub(crate) struct Shared {
    listener: OwnedFd,
    pub(crate) settings: Settings,
    peers: Mutex<Peers>,
    binds: Mutex<bind::Binds>,
    /// The name service, when names are resolved on the far side (see `dns`).
    pub(crate) dns: Option<dns::Responder>,
    /// UDP associations and the reply sources trapped receives rewrite (see `udp`).
    pub(crate) udp: udp::Udp,
    /// The pidfds descriptors are copied through, kept per process (see `pidfds`).
    pidfds: Pidfds,
}

/// Proxied sockets by `SO_COOKIE`: (the destination the program asked for, the server the
/// socket is really connected to).
#[derive(Debug, Default)]
pub(crate) struct Peers {
    by_cookie: HashMap<u64, (SocketAddr, SocketAddr)>,
    order: VecDeque<u64>,
    /// The last connection the tree made through a server. A BIND names it (`bind`).
    pub(crate) last: Option<LastConnection>,
}

/// The last connection the tree made through a server, for a later BIND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastConnection {
    /// The destination the program asked for (the BIND names it).
    pub(crate) dst: SocketAddr,
    /// The server (first hop) the socket was connected to.
    pub(crate) server: SocketAddr,
    /// The `@=` entry that carried it (`Server::id`): a BIND goes through this very chain, not
    /// another one that starts at the same first hop.
    pub(crate) route: usize,
}

impl Peers {
    /// A connection the supervisor made to `dst` through `granted`'s server and `@=` entry.
    pub(crate) fn insert(&mut self, cookie: u64, dst: SocketAddr, granted: &proxy::Granted) {
        let (server, route) = (granted.server, granted.route);
        self.last = Some(LastConnection { dst, server, route });
        self.insert_accepted(cookie, dst, server);
    }

    /// A socket whose peer is reported as `peer` while it is really connected to `server`, and
    /// that a later BIND does not name: a connection accepted through a BIND (the library's
    /// rule), or a DNS socket redirected to the name service.
    pub(crate) fn insert_accepted(&mut self, cookie: u64, peer: SocketAddr, server: SocketAddr) {
        if self.by_cookie.insert(cookie, (peer, server)).is_none() {
            self.order.push_back(cookie);
        }
        while self.by_cookie.len() > PEERS_MAX {
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
}

impl Shared {
    /// The peers table; a handler that panicked while holding it left a usable table.
    pub(crate) fn peers(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The BIND sockets, likewise.
    pub(crate) fn binds(&self) -> std::sync::MutexGuard<'_, bind::Binds> {
        self.binds.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Logs a line at `level` (1 error … 4 debug) as `socks-supervise[PID]: …`, PID being the
/// program's process.
pub(crate) fn log(settings: &Settings, level: u8, pid: u32, line: std::fmt::Arguments<'_>) {
    if settings.log >= level {
        eprintln!("socks-supervise[{pid}]: {line}");
    }
}

/// Serves the listener until every supervised process has ended; returns the exit code of the
/// program (`child_pid`), as a shell reports it. The processes that end are reaped on this
/// thread when `child_exits` (`sys::child_exits`) reads readable: no thread waits for them.
pub fn run(settings: Settings, listener: OwnedFd, child_exits: OwnedFd, child_pid: u32) -> i32 {
    let dns = match settings.names {
        Some(_) => match dns::Responder::bind() {
            Ok(responder) => Some(responder),
            Err(e) => {
                // Without it no port-53 connect is redirected and no fake address handed out:
                // connects to port 53 are then refused (see `connect`), nothing leaks.
                eprintln!("socks-supervise: cannot start the name service on 127.0.0.1: {e}");
                None
            }
        },
        None => None,
    };
    let shared = Arc::new(Shared {
        listener,
        settings,
        peers: Mutex::new(Peers::default()),
        binds: Mutex::new(bind::Binds::default()),
        dns,
        udp: udp::Udp::default(),
        pidfds: Pidfds::default(),
    });
    let mut status = 1;
    let mut reaped = |ended: Vec<(i32, i32)>| {
        for (pid, raw) in ended {
            if pid as u32 == child_pid {
                status = sys::exit_code(raw);
            }
        }
    };
    let mut all_gone = false;
    loop {
        let watched =
            [(shared.listener.as_fd(), libc::POLLIN), (child_exits.as_fd(), libc::POLLIN)];
        let revents = match sys::poll_many(&watched, 200) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => {
                eprintln!("socks-supervise: poll on the seccomp listener: {e}");
                break;
            }
        };
        let (listener, exits) = (revents[0], revents[1]);
        // A child ended (or the poll timed out: a last look costs one call).
        if exits != 0 || listener == 0 {
            sys::drain_signals(child_exits.as_fd());
            let (ended, none_left) = sys::reap_ended();
            reaped(ended);
            all_gone |= none_left;
        }
        if listener & libc::POLLIN != 0 {
            match sys::notif_recv(shared.listener.as_fd()) {
                Ok(notif) => dispatch(&shared, notif),
                // The call was abandoned between poll and receive (signal, exit): normal.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINTR)) => {}
                Err(e) => {
                    eprintln!("socks-supervise: SECCOMP_IOCTL_NOTIF_RECV: {e}");
                    break;
                }
            }
            continue;
        }
        if listener & (libc::POLLHUP | libc::POLLERR) != 0 || all_gone {
            break;
        }
    }
    // Every supervised process has ended (or the listener failed): wait for the rest.
    while let Some((pid, raw)) = sys::wait_any() {
        reaped(vec![(pid, raw)]);
    }
    status
}

/// Hands one notification to a handler thread (`pool`) — except a send or a receive, which
/// `send` and `recv` start on this thread: most are answered without blocking (a socket that
/// is not IP, a datagram), and only those that may wait go to a handler (the hand-over costs
/// more than the rest of the work); and except the BIND calls that cannot wait
/// (`bind::answer_inline`).
fn dispatch(shared: &Arc<Shared>, notif: libc::seccomp_notif) {
    let pending = Pending { shared: shared.clone(), id: notif.id, answered: false };
    if notif.data.arch == filter::AUDIT_ARCH_X86_64 {
        let call = match notif.data.nr as u32 {
            filter::NR_SENDTO => Some(send::Call::To),
            filter::NR_SENDMSG => Some(send::Call::Msg),
            filter::NR_SENDMMSG => Some(send::Call::Mmsg),
            _ => None,
        };
        if let Some(call) = call {
            return send::handle(pending, notif, call);
        }
        let call = match notif.data.nr as u32 {
            filter::NR_RECVFROM => Some(recv::Call::From),
            filter::NR_RECVMSG => Some(recv::Call::Msg),
            filter::NR_RECVMMSG => Some(recv::Call::Mmsg),
            _ => None,
        };
        if let Some(call) = call {
            return recv::handle(pending, notif, call);
        }
        // bind/listen/getsockname/accept that cannot block are answered here too.
        let Some(pending) = bind::answer_inline(pending, &notif) else { return };
        return spawn(pending, notif);
    }
    spawn(pending, notif);
}

/// Handles the notification on a thread of the pool: an idle one, or a new one when every
/// handler is busy (a handshake that hangs holds only its own thread).
fn spawn(pending: Pending, notif: libc::seccomp_notif) {
    if let Err(e) = crate::pool::run(move || handle(pending, notif)) {
        // The closure (and its guard, which answers) was dropped: the call failed closed.
        eprintln!("socks-supervise: cannot start a handler thread: {e}");
    }
}

/// One notification still owed an answer; answers ECONNREFUSED when dropped unanswered.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) shared: Arc<Shared>,
    id: u64,
    answered: bool,
}

impl Pending {
    fn listener(&self) -> BorrowedFd<'_> {
        self.shared.listener.as_fd()
    }

    pub(crate) fn valid(&self) -> bool {
        sys::notif_id_valid(self.listener(), self.id)
    }

    /// Answers with `-errno` (0 = success).
    pub(crate) fn reply(mut self, errno: i32) {
        self.answered = true;
        // ENOENT: the program no longer waits (killed, or a signal ended the call).
        let _ = sys::notif_send(self.listener(), self.id, 0, errno, false);
    }

    /// Answers success with the return value `value` (a byte or message count).
    pub(crate) fn reply_value(mut self, value: i64) {
        self.answered = true;
        let _ = sys::notif_send(self.listener(), self.id, value, 0, false);
    }

    /// Puts a copy of `src` at descriptor number `at` in the program (as dup2 would), without
    /// answering the call.
    pub(crate) fn install_at(
        &self,
        src: BorrowedFd<'_>,
        at: i32,
        cloexec: bool,
    ) -> std::io::Result<()> {
        sys::notif_addfd(self.listener(), self.id, src, Some(at), cloexec, false).map(|_| ())
    }

    /// Installs a copy of `src` in the program at its lowest free number and answers the call
    /// with that number: in one step (SECCOMP_ADDFD_FLAG_SEND) where the kernel has it (≥ 5.14),
    /// else installed, then answered.
    pub(crate) fn reply_with_fd(mut self, src: BorrowedFd<'_>, cloexec: bool) {
        match sys::notif_addfd(self.listener(), self.id, src, None, cloexec, true) {
            Ok(_) => self.answered = true,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                match sys::notif_addfd(self.listener(), self.id, src, None, cloexec, false) {
                    Ok(fd) => self.reply_value(i64::from(fd)),
                    Err(e) => self.reply(e.raw_os_error().unwrap_or(libc::EMFILE)),
                }
            }
            // ENOENT: the program no longer waits.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.answered = true,
            Err(e) => self.reply(e.raw_os_error().unwrap_or(libc::EMFILE)),
        }
    }

    /// Lets the kernel run the call as the program made it.
    pub(crate) fn proceed(mut self) {
        self.answered = true;
        let _ = sys::notif_send(self.listener(), self.id, 0, 0, true);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            let _ = sys::notif_send(self.listener(), self.id, 0, libc::ECONNREFUSED, false);
        }
    }
}

fn handle(pending: Pending, notif: libc::seccomp_notif) {
    if notif.data.arch != filter::AUDIT_ARCH_X86_64 {
        // The filter sends nothing else; refuse rather than guess.
        return pending.reply(libc::ENOSYS);
    }
    match notif.data.nr as u32 {
        filter::NR_CONNECT => connect(pending, notif),
        filter::NR_GETPEERNAME => getpeername(pending, notif),
        filter::NR_BIND => bind::bind(pending, notif),
        filter::NR_LISTEN => bind::listen(pending, notif),
        filter::NR_GETSOCKNAME => sockname::getsockname(pending, notif),
        filter::NR_ACCEPT => bind::accept(pending, notif, false),
        filter::NR_ACCEPT4 => bind::accept(pending, notif, true),
        filter::NR_SENDTO => send::handle(pending, notif, send::Call::To),
        filter::NR_SENDMSG => send::handle(pending, notif, send::Call::Msg),
        filter::NR_SENDMMSG => send::handle(pending, notif, send::Call::Mmsg),
        filter::NR_RECVFROM => recv::handle(pending, notif, recv::Call::From),
        filter::NR_RECVMSG => recv::handle(pending, notif, recv::Call::Msg),
        filter::NR_RECVMMSG => recv::handle(pending, notif, recv::Call::Mmsg),
        _ => pending.reply(libc::ENOSYS),
    }
}

/// The program's thread group and the supervisor's copy of its descriptor `fd`, checked to
/// belong to the call still waiting (until then `pid` might be a recycled number naming
/// another process). `Err(errno)`: the copy failed; `Ok(None)`: the call is gone.
pub(crate) fn copy_socket(
    pending: &Pending,
    tid: u32,
    fd: i32,
) -> Result<Option<(u32, OwnedFd)>, i32> {
    let (pid, socket) = pending.shared.pidfds.copy(tid, fd)?;
    Ok(pending.valid().then_some((pid, socket)))
}

fn getpeername(pending: Pending, notif: libc::seccomp_notif) {
    let fd = notif.data.args[0] as i32;
    let (addr_ptr, len_ptr) = (notif.data.args[1], notif.data.args[2]);
    // Whatever is not a socket we proxied is the kernel's to answer, errors included.
    let (pid, socket) = match copy_socket(&pending, notif.pid, fd) {
        Ok(Some(pair)) => pair,
        Ok(None) => return,
        Err(_) => return pending.proceed(),
    };
    let Ok(cookie) = sys::socket_cookie(socket.as_fd()) else { return pending.proceed() };
    let Some((dst, server)) = pending.shared.peers().by_cookie.get(&cookie).copied() else {
        return pending.proceed();
    };
    let real = sys::peer_name(socket.as_fd()).ok().and_then(|b| sockaddr::parse(&b));
    if real.map(sockaddr::canonical) != Some(sockaddr::canonical(server)) {
        // Disconnected or connected elsewhere since: the kernel's answer is the right one.
        pending.shared.peers().remove(cookie);
        return pending.proceed();
    }
    match write_sockaddr(&pending, notif.pid, addr_ptr, len_ptr, dst) {
        Ok(true) => {}
        Ok(false) => return,
        Err(errno) => return pending.reply(errno),
    }
    log(&pending.shared.settings, 4, pid, format_args!("getpeername: {dst} (via {server})"));
    pending.reply(0);
}

/// Writes `addr` as getpeername/getsockname/accept do into thread `tid`'s memory: min(*len,
/// size) bytes of the address at `addr_ptr`, the full size at `len_ptr` — after checking that
/// the call still waits. `Ok(false)`: it does not (nothing written); `Err(errno)` for the
/// program.
pub(crate) fn write_sockaddr(
    pending: &Pending,
    tid: u32,
    addr_ptr: u64,
    len_ptr: u64,
    addr: SocketAddr,
) -> Result<bool, i32> {
    let len = match sys::read_memory(tid, len_ptr, 4) {
        Ok(b) => i32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        Err(_) => return Err(libc::EFAULT),
    };
    if len < 0 {
        return Err(libc::EINVAL);
    }
    let bytes = sockaddr::bytes(addr);
    let shown = &bytes[..bytes.len().min(len as usize)];
    if !pending.valid() {
        return Ok(false);
    }
    let size = (bytes.len() as i32).to_ne_bytes();
    sys::write_memory(tid, addr_ptr, shown)
        .and_then(|()| sys::write_memory(tid, len_ptr, &size))
        .map_err(|_| libc::EFAULT)?;
    Ok(true)
}

fn connect(pending: Pending, notif: libc::seccomp_notif) {
    let settings = &pending.shared.settings;
    let fd = notif.data.args[0] as i32;
    let addr_ptr = notif.data.args[1];
    let addr_len = notif.data.args[2] as i32;
    let (pid, socket) = match copy_socket(&pending, notif.pid, fd) {
        Ok(Some(pair)) => pair,
        Ok(None) => return,
        Err(errno) => {
            let e = std::io::Error::from_raw_os_error(errno);
            log(settings, 1, notif.pid, format_args!("connect on fd {fd}: cannot copy it: {e}"));
            let errno =
                if matches!(errno, libc::EBADF | libc::ESRCH) { errno } else { libc::EPERM };
            return pending.reply(errno);
        }
    };
    let socket = match bind::unbound(&pending, pid, fd, socket) {
        Ok(socket) => socket,
        Err(errno) => return pending.reply(errno),
    };
    let domain = match sys::getsockopt_int(socket.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN) {
        Ok(d) => d,
        Err(e) => return pending.reply(e.raw_os_error().unwrap_or(libc::ENOTSOCK)),
    };
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        // Not an IP socket: it cannot reach an IP address, whatever address the kernel reads.
        return pending.proceed();
    }
    if !(0..=128).contains(&addr_len) {
        return pending.reply(libc::EINVAL);
    }
    let bytes = match sys::read_memory(notif.pid, addr_ptr, addr_len as usize) {
        Ok(b) => b,
        Err(_) => return pending.reply(libc::EFAULT),
    };
    if !pending.valid() {
        return;
    }
    // A TCP socket already in use (connecting, connected, listening) starts nothing new,
    // whatever the address says: it gets the kernel's answer (EALREADY, EISCONN, or 0 for a
    // connect that completed in the background), made on our copy with our bytes, and what the
    // supervisor remembers of it stays. Routing it instead would run a handshake over a live
    // connection, or report a connect that never happened.
    // TCP_INFO answers for a TCP socket only: its success is the SO_TYPE and SO_PROTOCOL
    // answer for the common case, and those are asked only of other sockets.
    let tcp_state = sys::tcp_state(socket.as_fd());
    if tcp_state.as_ref().is_ok_and(|&state| state != sys::TCP_CLOSE) {
        return pending.reply(sys::connect_raw(socket.as_fd(), &bytes).err().unwrap_or(0));
    }
    // Whatever this connect does, the socket's earlier proxied destination is history.
    let cookie = sys::socket_cookie(socket.as_fd()).ok();
    if let Some(cookie) = cookie {
        pending.shared.peers().remove(cookie);
    }
    let Some(dst) = sockaddr::parse(&bytes) else {
        // AF_UNSPEC (disconnect), a short or foreign address: the kernel's answer, on our copy
        // with our bytes.
        return pending.reply(sys::connect_raw(socket.as_fd(), &bytes).err().unwrap_or(0));
    };
    let (stream, tcp, udp) = if tcp_state.is_ok() {
        (true, true, false)
    } else {
        let stream = sys::getsockopt_int(socket.as_fd(), libc::SOL_SOCKET, libc::SO_TYPE)
            .is_ok_and(|t| t == libc::SOCK_STREAM);
        let protocol =
            sys::getsockopt_int(socket.as_fd(), libc::SOL_SOCKET, libc::SO_PROTOCOL).ok();
        let tcp = stream && protocol == Some(libc::IPPROTO_TCP);
        (stream, tcp, !stream && protocol == Some(libc::IPPROTO_UDP))
    };
    if dst.port() == 53 && (tcp || udp) && settings.names.is_some() {
        return name_service(pending, &socket, pid, domain, dst, tcp, cookie);
    }
    // A fake address stands for its name, which is what the server is asked for.
    let (target, routed) = match target_of(&pending.shared, pid, "connect", dst) {
        Ok(found) => found,
        Err(errno) => return pending.reply(errno),
    };
    match routed {
        Route::Direct => {
            log(settings, 4, pid, format_args!("connect {dst}: direct"));
            pending.reply(sys::connect_raw(socket.as_fd(), &bytes).err().unwrap_or(0));
        }
        Route::Deny => {
            log(settings, 3, pid, format_args!("connect {dst}: denied by the configuration"));
            pending.reply(libc::ECONNREFUSED);
        }
        Route::Broken => {
            let why = match &settings.mode {
                crate::config::Mode::Broken { message, .. } => message.as_str(),
                _ => "no SOCKS server for it",
            };
            log(settings, 1, pid, format_args!("connect {dst}: refused: {why}"));
            pending.reply(libc::ECONNREFUSED);
        }
        Route::Proxy(servers) if udp => {
            let local = udp::local_for(
                &pending.shared,
                pid,
                fd,
                socket.as_fd(),
                domain,
                dst,
                &target,
                servers,
            );
            match local {
                Ok(local) => {
                    let result = sys::connect_raw(socket.as_fd(), &sockaddr::bytes(local));
                    if let (Ok(()), Some(cookie)) = (result, cookie) {
                        pending.shared.peers().insert_accepted(cookie, dst, local);
                    }
                    log(
                        settings,
                        3,
                        pid,
                        format_args!("connect {target} (UDP): relayed via {local}"),
                    );
                    pending.reply(result.err().unwrap_or(0));
                }
                Err(failed) => {
                    log(settings, 1, pid, format_args!("connect {target} (UDP) {}", failed.why));
                    pending.reply(failed.errno);
                }
            }
        }
        Route::Proxy(_) if !stream => {
            log(
                settings,
                1,
                pid,
                format_args!(
                    "connect {dst}: refused: only UDP datagrams go through SOCKS (this socket \
                     is another datagram protocol)"
                ),
            );
            pending.reply(libc::ECONNREFUSED);
        }
        Route::Proxy(servers) => {
            let deadline = Instant::now() + settings.timeout;
            // An IPv4-mapped destination of an IPv6 socket is asked for as IPv4 (`canonical`).
            let asker = Some(proxy::Asker { settings, pid });
            match proxy::connect_via(socket.as_fd(), domain, &target, servers, deadline, asker) {
                Ok(granted) => {
                    let server = granted.server;
                    if let Some(cookie) = cookie {
                        pending.shared.peers().insert(cookie, dst, &granted);
                    }
                    let (name, detour) = (granted.version.scheme(), granted.detour);
                    log(
                        settings,
                        3,
                        pid,
                        format_args!("connect {target} via {server} ({name}): ok{detour}"),
                    );
                    pending.reply(0);
                }
                Err(failed) => {
                    log(settings, 1, pid, format_args!("connect {target} {}", failed.why));
                    pending.reply(failed.errno);
                }
            }
        }
    }
}

/// What to ask a server for when the program named `dst` (in call `what`), and how to route
/// it: the name behind a fake address the supervisor handed out, else the address itself
/// (IPv4-mapped made IPv4). EHOSTUNREACH, logged, for a fake address never handed out or
/// whose name no `sockd` line covers — as the library.
pub(crate) fn target_of<'s>(
    shared: &'s Shared,
    pid: u32,
    what: &str,
    dst: SocketAddr,
) -> Result<(TargetAddr, Route<'s>), i32> {
    let settings = &shared.settings;
    let canonical = sockaddr::canonical(dst);
    if !names::is_fake(settings, canonical.ip()) {
        return Ok((TargetAddr::Ip(canonical), route(settings, dst)));
    }
    let name = shared.dns.as_ref().and_then(|d| d.fakes.name_of(settings, canonical.ip()));
    let Some(name) = name else {
        log(
            settings,
            1,
            pid,
            format_args!("{what} {dst}: a fake address this process tree never handed out"),
        );
        return Err(libc::EHOSTUNREACH);
    };
    let routed = route_name(settings, &name, canonical);
    if matches!(routed, Route::Direct) {
        log(
            settings,
            1,
            pid,
            format_args!(
                "{what} {name}:{}: a name resolved for the proxy, but no sockd line covers it",
                dst.port()
            ),
        );
        return Err(libc::EHOSTUNREACH);
    }
    Ok((TargetAddr::Domain(name, dst.port()), routed))
}

/// A connect of a UDP or TCP socket to port 53: the socket is connected to the supervisor's
/// name service instead (see `dns`), which knows the real server; `getpeername` names that
/// server. Without a running name service the connect is refused: a lookup must not leak.
fn name_service(
    pending: Pending,
    socket: &OwnedFd,
    pid: u32,
    domain: i32,
    server: SocketAddr,
    tcp: bool,
    cookie: Option<u64>,
) {
    let settings = &pending.shared.settings;
    dns::serve(&pending.shared);
    let responder = pending.shared.dns.as_ref().and_then(|d| d.address(tcp, domain));
    let Some(responder) = responder else {
        log(settings, 1, pid, format_args!("connect {server}: no name service (refused)"));
        return pending.reply(libc::ECONNREFUSED);
    };
    let result = sys::connect_raw(socket.as_fd(), &sockaddr::bytes(responder));
    if matches!(result, Ok(()) | Err(libc::EINPROGRESS)) {
        let local = sys::local_name(socket.as_fd()).ok().and_then(|b| sockaddr::parse(&b));
        if let (Some(dns), Some(local)) = (&pending.shared.dns, local) {
            dns.register(tcp, local, server, pid);
        }
        if let Some(cookie) = cookie {
            // Remembered for getpeername only: a BIND names the last connection through a
            // SOCKS server, never the name service.
            pending.shared.peers().insert_accepted(cookie, server, responder);
            if !tcp {
                // recvfrom/recvmsg on it report the server as the reply's source.
                pending.shared.udp.rewrites.add_expiring(cookie, responder, server);
            }
        }
        let kind = if tcp { "TCP" } else { "UDP" };
        log(
            settings,
            4,
            pid,
            format_args!("connect {server}: name service ({kind}), answered here"),
        );
    }
    pending.reply(result.err().unwrap_or(0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_table_is_bounded_oldest_first() {
        let a: SocketAddr = "198.51.100.2:80".parse().expect("literal");
        let b: SocketAddr = "192.0.2.1:1080".parse().expect("literal");
        let mut peers = Peers::default();
        for cookie in 0..(PEERS_MAX as u64 + 10) {
            peers.insert_accepted(cookie, a, b);
        }
        assert_eq!(peers.by_cookie.len(), PEERS_MAX);
        assert!(!peers.by_cookie.contains_key(&9) && peers.by_cookie.contains_key(&10));
        peers.insert_accepted(10, b, a);
        assert_eq!(peers.by_cookie[&10], (b, a));
        assert_eq!(peers.order.len(), PEERS_MAX, "a replaced entry is not queued twice");
        peers.remove(10);
        assert!(!peers.by_cookie.contains_key(&10));
        assert_eq!(peers.order.len(), PEERS_MAX - 1);
    }
}
