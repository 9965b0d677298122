//! The program's own DNS client over TCP (issue 16, the TCP half): `dig +tcp`, resolv.conf's
//! `options use-vc`, c-ares with TCP. When names are resolved on the far side and the name
//! server is reached directly, the library answers the queries about such names itself, with
//! no thread, and passes every other query to the real server. Design: docs/DESIGN.md,
//! "Programs with their own DNS clients".
//!
//! - **Connect** ([`connect`]): `connect(fd, SERVER:53)` on a TCP socket really connects the
//!   socket to a listener of the library's on loopback (127.0.0.1 for an AF_INET socket, [::1]
//!   for an AF_INET6 one, V6ONLY or not: an IPv4-mapped address would fail on a V6ONLY socket),
//!   made lazily, close-on-exec, at a high descriptor, and made afresh in a fork child (a
//!   listener shared with the parent could hand either process the other's connection). The
//!   connect returns what the kernel returns (EINPROGRESS when non-blocking); the library
//!   accepts the other end at once (the handshake on loopback is done before connect returns,
//!   or within a moment: it waits up to [`ACCEPT_WAIT`]) and keeps it as the socket's own
//!   descriptor (`fdtable::set_control`, so close, close_range, dup2 and closefrom treat it as
//!   an association's control connection). `fdtable` records `Kind::DnsTcp` with `first` =
//!   SERVER:53, which getpeername reports.
//! - **Each write** ([`after_write`]): the program's bytes go to the kernel as usual; the
//!   library then reads them from its end, into a bounded buffer per connection (one message
//!   may come in several writes; RFC 1035 4.2.2 framing: two-byte length, then the message).
//!   Each complete query `dnswire::decide` answers gets its framed answer written into the
//!   library's end (the program reads it from its socket as from a server); any other is sent
//!   to SERVER:53 on a connection of the library's own, opened for that query (directly,
//!   within [`FORWARD_TIMEOUT`]), and the reply written back. The program's write waits for
//!   that round trip. A server that does not answer in time: the library's end is closed (the
//!   program sees the connection end) and the log says why.
//!
//! Not here: UDP (`dnswire`), the decision (`answers`), the hooks (`ffi::udp_hooks`).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use libc::c_int;
use socks_proto::dns::{self, RCODE_REFUSED};

use crate::config;
use crate::fdtable::{self, Entry, Kind, SocketId};
use crate::ffi::real;
use crate::ffi::sockaddr::{canonical, RawAddr, RAW_LEN};
use crate::log::{log, Level};
use crate::outcome::{Cause, Outcome};
use crate::proxy;
use crate::route::{route, Route};

/// How long the library waits for its listener's end of a connect (loopback: microseconds).
const ACCEPT_WAIT: Duration = Duration::from_secs(1);
/// How long the library waits for the bytes a write reported sent to reach its end.
const ARRIVAL_WAIT: Duration = Duration::from_secs(1);
/// How long a forwarded query may take (as the supervisor's forwarding).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// The library's own descriptors go at or above this number when the limit allows.
const HIGH_FD: c_int = 512;

/// One loopback listener: its descriptor, its address, and the process that made it.
#[derive(Clone, Copy)]
struct Listener {
    fd: c_int,
    addr: RawAddr,
    pid: libc::pid_t,
}

/// The listeners (IPv4, IPv6); the lock also keeps one connect-and-accept at a time.
static LISTENERS: Mutex<[Option<Listener>; 2]> = Mutex::new([None, None]);

/// A connection's bytes not yet read as whole messages, tied to the library's end.
struct Pending {
    end: c_int,
    id: Option<SocketId>,
    bytes: Vec<u8>,
}

/// The per-connection buffers.
static PENDING: Mutex<Vec<Pending>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Moves `fd` to a close-on-exec descriptor at or above [`HIGH_FD`] (kept where it is when
/// the limit does not allow).
fn move_high(fd: c_int) -> c_int {
    match real::fcntl_int(fd, libc::F_DUPFD_CLOEXEC, HIGH_FD) {
        moved if moved >= 0 => {
            real::close_fd(fd);
            moved
        }
        _ => fd,
    }
}

/// A new listener on loopback for `family`.
fn new_listener(family: c_int) -> Result<Listener, Cause> {
    let loopback = if family == libc::AF_INET6 { "[::1]:0" } else { "127.0.0.1:0" };
    let loopback = RawAddr::from_socket_addr(loopback.parse().map_err(|_| Cause::Unsupported)?);
    let fd = real::new_socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC);
    if fd < 0 {
        return Err(Cause::Os(real::errno()));
    }
    if real::bind_to(fd, &loopback) != 0 || real::listen_on(fd, 64) != 0 {
        let cause = Cause::Os(real::errno());
        real::close_fd(fd);
        return Err(cause);
    }
    let fd = move_high(fd);
    let Some(addr) = real::local_addr(fd) else {
        let cause = Cause::Os(real::errno());
        real::close_fd(fd);
        return Err(cause);
    };
    fdtable::own(fd);
    Ok(Listener { fd, addr, pid: real::process_id() })
}

/// The listener for `family`, made now if this process has none (a fork child's inherited one
/// is closed and replaced).
fn listener(slots: &mut [Option<Listener>; 2], family: c_int) -> Result<Listener, Cause> {
    let slot = &mut slots[usize::from(family == libc::AF_INET6)];
    match *slot {
        Some(l) if l.pid == real::process_id() && fdtable::is_owned(l.fd) => return Ok(l),
        Some(l) => {
            if fdtable::is_owned(l.fd) {
                fdtable::disown(l.fd);
                real::close_fd(l.fd);
            }
            *slot = None;
        }
        None => {}
    }
    let made = new_listener(family)?;
    *slot = Some(made);
    Ok(made)
}

/// Accepts the connection `fd` made to `listener`, within [`ACCEPT_WAIT`]; a connection from
/// anything else (it cannot be ours) is closed.
fn accept_end(listener: &Listener, fd: c_int) -> Result<c_int, Cause> {
    let own = real::local_addr(fd).and_then(|a| a.socket_addr()).map(canonical);
    let deadline = Instant::now() + ACCEPT_WAIT;
    loop {
        proxy::wait_for(listener.fd, libc::POLLIN, deadline)?;
        let end = real::accept_cloexec(listener.fd);
        if end < 0 {
            match real::errno() {
                libc::EAGAIN | libc::EINTR | libc::ECONNABORTED => continue,
                errno => return Err(Cause::Os(errno)),
            }
        }
        let peer = real::peer_addr(end).and_then(|a| a.socket_addr()).map(canonical);
        if peer.is_some() && peer == own {
            return Ok(end);
        }
        real::close_fd(end);
    }
}

/// connect(2) of TCP socket `fd` to name server `dst` (port 53, names resolved on the far
/// side): connected to the library's listener when the server is reached directly; `None`
/// when the connect goes on as before (the server is reached through sockd, or the library
/// cannot answer here: its queries are then checked by `dnswire::tcp_query_refused`).
pub fn connect(fd: c_int, dst: &RawAddr) -> Option<Outcome> {
    let mark = || fdtable::set(fd, &Entry { kind: Kind::DnsTcp, first: *dst, server: NONE });
    if !fdtable::trackable(fd) {
        return None;
    }
    if fdtable::get(fd).is_some_and(|e| e.kind == Kind::DnsTcp) && fdtable::control(fd).is_some() {
        return Some(Outcome::Fail(Cause::Os(libc::EISCONN)));
    }
    let server = dst.socket_addr().map(canonical)?;
    if !matches!(route(config::settings(), server), Route::Direct) {
        mark();
        return None;
    }
    let family = real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if UNUSABLE.load(std::sync::atomic::Ordering::Relaxed) {
        log!(Level::Error, "dns: TCP connect to {server} in a child forked from a signal handler: queries about names resolved on the far side are refused");
        mark();
        return None;
    }
    let mut slots = lock(&LISTENERS);
    let listener = match listener(&mut slots, family) {
        Ok(listener) => listener,
        Err(cause) => {
            log!(Level::Error, "dns: no loopback listener for TCP queries ({cause:?}): queries about names resolved on the far side are refused");
            mark();
            return None;
        }
    };
    let rc = real::connect_to(fd, &listener.addr);
    let errno = real::errno();
    if rc != 0 && !matches!(errno, libc::EINPROGRESS | libc::EINTR) {
        return Some(Outcome::Fail(Cause::Os(errno)));
    }
    let end = match accept_end(&listener, fd) {
        Ok(end) => move_high(end),
        Err(cause) => {
            log!(
                Level::Error,
                "dns: TCP connect to {server}: the library's end never came ({cause:?})"
            );
            return Some(Outcome::Fail(Cause::Os(libc::ECONNREFUSED)));
        }
    };
    drop(slots);
    // A socket connected before (and dissolved with AF_UNSPEC) had an end of its own: it goes.
    release(fd);
    fdtable::set(fd, &Entry { kind: Kind::DnsTcp, first: *dst, server: NONE });
    fdtable::set_control(fd, end);
    log!(Level::Debug, "dns: TCP connect to {server}: kept in the library (queries are read)");
    Some(if rc == 0 { Outcome::Done } else { Outcome::Fail(Cause::Os(errno)) })
}

/// An empty address.
const NONE: RawAddr = RawAddr { bytes: [0; RAW_LEN], len: 0 };

/// After the program wrote `written` bytes on a `Kind::DnsTcp` socket whose library end is
/// `end`, connected to `server`: reads them from the library's end and answers each complete
/// query. Any failure closes the library's end (the program sees the connection end).
pub fn after_write(end: c_int, server: &RawAddr, written: usize) {
    if UNUSABLE.load(std::sync::atomic::Ordering::Relaxed) {
        log!(
            Level::Error,
            "dns: TCP connection to {}: not served in a child forked from a signal handler; closed",
            shown(server)
        );
        close_end(end);
        return;
    }
    if let Err(why) = serve(end, server, written) {
        log!(Level::Error, "dns: TCP connection to {}: {why}; closed", shown(server));
        close_end(end);
    }
}

fn shown(server: &RawAddr) -> String {
    server.socket_addr().map_or_else(String::new, |s| s.to_string())
}

/// The work of [`after_write`]. The connection's buffer is taken out of [`PENDING`] for the
/// work and put back after: no lock is held while a query is forwarded (up to
/// [`FORWARD_TIMEOUT`]), so other connections, and `fork`, never wait for that.
fn serve(end: c_int, server: &RawAddr, written: usize) -> Result<(), String> {
    let id = SocketId::of(end);
    let mut bytes = {
        let mut all = lock(&PENDING);
        all.retain(|p| p.end != end || p.id == id);
        match all.iter().position(|p| p.end == end) {
            Some(index) => all.swap_remove(index).bytes,
            None => Vec::new(),
        }
    };
    let result = read_and_answer(end, server, written, &mut bytes);
    if result.is_ok() && !bytes.is_empty() {
        lock(&PENDING).push(Pending { end, id, bytes });
    }
    result
}

/// Reads the `written` bytes from the library's end `end` into `bytes`, answering each
/// complete query as it arrives.
fn read_and_answer(
    end: c_int,
    server: &RawAddr,
    written: usize,
    bytes: &mut Vec<u8>,
) -> Result<(), String> {
    let deadline = Instant::now() + ARRIVAL_WAIT;
    let mut received = 0;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = real::recv_into(end, &mut chunk, libc::MSG_DONTWAIT);
        if n > 0 {
            received += n as usize;
            bytes.extend_from_slice(&chunk[..n as usize]);
            answer_complete(end, server, bytes)?;
            continue;
        }
        if n == 0 {
            // The program shut its sending side down: nothing more comes.
            return Ok(());
        }
        match real::errno() {
            libc::EINTR => continue,
            libc::EAGAIN if received >= written => return Ok(()),
            libc::EAGAIN => proxy::wait_for(end, libc::POLLIN, deadline)
                .map_err(|_| "the bytes written did not arrive".to_string())?,
            errno => return Err(format!("reading the query failed (errno {errno})")),
        }
    }
}

/// Answers every complete message at the start of `bytes`, and removes it.
fn answer_complete(end: c_int, server: &RawAddr, bytes: &mut Vec<u8>) -> Result<(), String> {
    while bytes.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        if bytes.len() < 2 + len {
            break;
        }
        let query: Vec<u8> = bytes.drain(..2 + len).skip(2).collect();
        let reply = match crate::dnswire::decide(&query) {
            Some(Ok(message)) => message,
            Some(Err(cause)) => {
                refusal(&query).ok_or(format!("no answer can be made ({cause:?})"))?
            }
            None => forward(server, &query)?,
        };
        let mut framed = Vec::with_capacity(2 + reply.len());
        framed.extend_from_slice(&u16::try_from(reply.len()).unwrap_or(0).to_be_bytes());
        framed.extend_from_slice(&reply);
        proxy::send_all(end, &framed, Instant::now() + ARRIVAL_WAIT)
            .map_err(|cause| format!("the answer could not be written ({cause:?})"))?;
    }
    // What is left is the start of one message: at most the two-byte length and 65535 bytes.
    Ok(())
}

/// A REFUSED response to `query`, if it can be read.
fn refusal(query: &[u8]) -> Option<Vec<u8>> {
    let parsed = dns::parse_query(query)?;
    let first = parsed.questions.first()?;
    dns::response(parsed.id, parsed.recursion_desired, first, None, RCODE_REFUSED)
}

/// Sends `query` to `server` over a TCP connection of the library's own (directly), and
/// returns the reply, within [`FORWARD_TIMEOUT`].
fn forward(server: &RawAddr, query: &[u8]) -> Result<Vec<u8>, String> {
    let addr = server.socket_addr().ok_or("no server address")?;
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let fd = real::new_socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK);
    if fd < 0 {
        return Err(format!("no socket for the server (errno {})", real::errno()));
    }
    let result = exchange(fd, server, query);
    real::close_fd(fd);
    result.map_err(|cause| format!("the server did not answer a forwarded query ({cause:?})"))
}

/// One framed query and its framed reply on connected-to-be socket `fd`.
fn exchange(fd: c_int, server: &RawAddr, query: &[u8]) -> Result<Vec<u8>, Cause> {
    let deadline = Instant::now() + FORWARD_TIMEOUT;
    proxy::connect_socket(fd, server, deadline)?;
    let mut framed = Vec::with_capacity(2 + query.len());
    framed.extend_from_slice(&u16::try_from(query.len()).unwrap_or(0).to_be_bytes());
    framed.extend_from_slice(query);
    proxy::send_all(fd, &framed, deadline)?;
    let mut length = [0u8; 2];
    read_exact(fd, &mut length, deadline)?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(length))];
    read_exact(fd, &mut reply, deadline)?;
    Ok(reply)
}

fn read_exact(fd: c_int, mut buffer: &mut [u8], deadline: Instant) -> Result<(), Cause> {
    while !buffer.is_empty() {
        let n = proxy::recv_some(fd, buffer, deadline)?;
        if n == 0 {
            return Err(Cause::Os(libc::ECONNRESET));
        }
        buffer = &mut buffer[n..];
    }
    Ok(())
}

/// The library's end of the connection of `fd` (a `Kind::DnsTcp` socket): its own, or that of a
/// dup of the same socket.
pub fn end_of(fd: c_int) -> Option<c_int> {
    fdtable::control(fd).or_else(|| fdtable::sibling(fd, Kind::DnsTcp).and_then(fdtable::control))
}

/// The program closes `fd`, whose control descriptor is `end` (detached already): when `fd` is a
/// DNS-over-TCP socket with a dup still open, the end moves to that dup (true); else the caller
/// closes it.
pub fn hand_over(fd: c_int, end: c_int) -> bool {
    if fdtable::kind_hint(fd) != Some(Kind::DnsTcp) {
        return false;
    }
    match fdtable::sibling(fd, Kind::DnsTcp) {
        Some(dup) if fdtable::control(dup).is_none() => {
            fdtable::set_control(dup, end);
            true
        }
        _ => false,
    }
}

/// Closes the library's end of `fd`'s connection, if it has one (connect with AF_UNSPEC).
pub fn release(fd: c_int) {
    if let Some(end) = end_of(fd) {
        close_end(end);
    }
}

/// Closes the library's end `end`, detached from the socket that holds it.
fn close_end(end: c_int) {
    // A number the program closed behind the library's back (and may use again) is not ours
    // to close.
    let ours = fdtable::is_owned(end);
    if let Some(holder) = fdtable::owner_of(end) {
        fdtable::take_control(holder);
    }
    forget(end);
    if ours {
        real::close_fd(end);
    }
}

/// The locks held across a `fork` (the `fork` hook): taken before, released after in both
/// processes, so a child never starts with a lock another thread of its parent held (that
/// thread does not exist in the child, and the child would wait for it forever). `None` parts
/// could not be taken (a fork from a signal handler that interrupted the library in this
/// thread, which may hold them): the child then answers no TCP query ([`ForkHold::child`]).
pub struct ForkHold {
    listeners: Option<MutexGuard<'static, [Option<Listener>; 2]>>,
    pending: Option<MutexGuard<'static, Vec<Pending>>>,
}

/// `mutex`'s guard: waited for when `may_wait`, else only if free (`None` when held).
fn take<T>(mutex: &'static Mutex<T>, may_wait: bool) -> Option<MutexGuard<'static, T>> {
    if may_wait {
        return Some(lock(mutex));
    }
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Set in a child forked while the locks could not be taken: TCP queries fail closed there.
static UNUSABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl ForkHold {
    /// Takes the locks: waiting for them when `may_wait` (the hook entered the library
    /// normally; they are held for at most [`ACCEPT_WAIT`]), else only if they are free.
    pub fn before_fork(may_wait: bool) -> ForkHold {
        ForkHold { listeners: take(&LISTENERS, may_wait), pending: take(&PENDING, may_wait) }
    }

    /// In the child: releases what was held; without both locks, TCP queries fail closed.
    pub fn child(self) {
        if self.listeners.is_none() || self.pending.is_none() {
            UNUSABLE.store(true, std::sync::atomic::Ordering::Relaxed);
            // The guards not taken stay locked forever in this process: never touched again.
        }
    }
}

/// Forgets the buffer of the library's end `end` (closed with the program's socket). Skipped
/// when the buffers are in use (a close from a signal handler that interrupted [`after_write`]
/// in this thread): a stale buffer is dropped when its number is next used for another end.
pub fn forget(end: c_int) {
    if let Ok(mut all) = PENDING.try_lock() {
        all.retain(|p| p.end != end);
    }
}
