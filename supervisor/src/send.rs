//! The trapped sends that carry a destination: `sendto` with a `dest_addr`, and every `sendmsg`
//! and `sendmmsg` (their `msg_name` lives in the program's memory, where the filter cannot look).
//! Without this a datagram to a destination socks.conf sends through a server would leave
//! directly.
//!
//! On an IPv4/IPv6 socket the supervisor reads everything the call points at once — the
//! address, the `msghdr`s, the iovecs and the data (at most [`DATA_MAX`] bytes), the control
//! messages — checks that the notification is still valid, routes the destination, and, if it
//! may go, performs the send itself on its copy of the program's socket with the bytes it read;
//! the program's call returns that byte count. The kernel never re-reads the program's memory
//! for such a call, so a thread rewriting the address meanwhile changes nothing.
//!
//! - A datagram socket (UDP, ping, raw; anything not TCP): `direct` sends; `deny` (and a
//!   broken configuration) fails with ECONNREFUSED, the errno the library gives that cause for
//!   every call. A UDP datagram to a destination that must go through a server is sent, on the
//!   copy, to the loopback socket standing for that destination in the socket's association
//!   (`udp`), which relays it through the server; EMSGSIZE when it and its SOCKS5 header no
//!   longer fit in one UDP datagram (as the library). Another datagram protocol through a
//!   server fails with ECONNREFUSED. A message with no address (a connected socket) is sent to
//!   the socket's peer, which the supervisor checked when it connected it.
//! - A UDP datagram to port 53 (a resolver on an unconnected socket, musl's way) goes to the
//!   supervisor's name service instead, with the real server remembered for the socket (see
//!   `dns`): a query never leaves for a name resolved on the far side. The socket's receives
//!   then report the server as the replies' source (`rewrites`, for 120 s after the
//!   query).
//! - A TCP (or MPTCP) socket: without MSG_FASTOPEN the kernel ignores the address, so the call
//!   goes on to the kernel (CONTINUE). With MSG_FASTOPEN it is a connect carrying data: `direct`
//!   performs the Fast Open call on the copy; through a server, the copy is connected through it
//!   as connect(2) would be and the data (up to [`DATA_MAX`] bytes: a short count, as a stream
//!   allows) is sent after the handshake; `deny` fails with ECONNREFUSED. A socket that is
//!   already connected gets the kernel's answer for its call (EISCONN), made on the copy.
//! - An address the kernel would reject (too short, another family) is answered EINVAL or
//!   EAFNOSUPPORT without a send; an AF_UNSPEC address on an IPv4 socket is read as IPv4, as
//!   the kernel's UDP and raw sockets read it; on an IPv6 socket it means "no address".
//! - Control messages: see `msghdr` (harmless ones are passed on, anything else is EINVAL).
//! - `sendmmsg`: every message (at most UIO_MAXIOV), each as `sendmsg`; the first failure ends
//!   the call with the count so far (the failure's errno if it is the first message), and each
//!   sent message's `msg_len` is written back, as the kernel does.
//! - Sockets of other families (AF_UNIX, netlink…): CONTINUE; they cannot reach an IP address.
//!
//! Where it runs: a datagram `sendto`/`sendmsg` is answered on the notification loop's own
//! thread (handing it to another thread would cost more than the rest): the copy is sent with
//! MSG_DONTWAIT, and only a send that would block a blocking call is finished on a handler
//! thread (`pool`). A Fast Open connect, a `sendmmsg`, and a UDP datagram whose destination
//! has no loopback socket yet (setting up an association waits for the server) go to one too.
//!
//! Not here: the filter (`filter`), the decision (`route`), the layouts (`msghdr`).

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use socks_proto::udp::{encode_header, UdpHeader};
use socks_proto::TargetAddr;

use crate::msghdr::{self, MsgHdr};
use crate::route::Route;
use crate::supervise::{copy_socket, log, target_of, Pending, Shared};
use crate::{proxy, sockaddr, sys, udp};

/// The most data bytes copied for one message: more than any datagram (65,535 bytes, UDP GSO
/// included); a TCP Fast Open send is cut to it (a short count, which a stream allows).
pub const DATA_MAX: usize = 65_536;
/// Largest UDP payload over IPv4 (65,535 minus the IP and UDP headers): a relayed datagram and
/// its SOCKS5 header must fit in it.
const UDP_PAYLOAD_MAX: usize = 65_507;

/// The errno-shaped marker of "the notification is gone" (never a real errno).
const GONE: i32 = -1;

/// One message as read from the program.
#[derive(Debug, Default)]
struct Message {
    /// The destination's raw bytes, `None` when the call gave none.
    name: Option<Vec<u8>>,
    /// The data, iovecs gathered.
    data: Vec<u8>,
    /// The control messages' raw bytes.
    control: Vec<u8>,
}

/// What the destination bytes mean on a socket of `domain`.
#[derive(Debug, PartialEq, Eq)]
enum Dest {
    /// No address: the socket's peer.
    None,
    /// An IP destination to route.
    Ip(SocketAddr),
    /// The kernel would refuse it with this errno.
    Invalid(i32),
}

fn destination(domain: i32, name: Option<&[u8]>) -> Dest {
    let Some(bytes) = name else { return Dest::None };
    match sockaddr::family(bytes) {
        Some(libc::AF_UNSPEC) if domain == libc::AF_INET6 => Dest::None,
        Some(libc::AF_UNSPEC) if bytes.len() >= 16 => {
            // udp_sendmsg and raw_sendmsg take AF_UNSPEC as AF_INET.
            let mut as_inet = bytes.to_vec();
            as_inet[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            sockaddr::parse(&as_inet).map_or(Dest::Invalid(libc::EINVAL), Dest::Ip)
        }
        Some(libc::AF_INET) | Some(libc::AF_INET6) | Some(libc::AF_UNSPEC) => {
            sockaddr::parse(bytes).map_or(Dest::Invalid(libc::EINVAL), Dest::Ip)
        }
        Some(_) => Dest::Invalid(libc::EAFNOSUPPORT),
        None => Dest::Invalid(libc::EINVAL),
    }
}

/// What kind of send the socket makes of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// TCP or MPTCP: the address matters only with MSG_FASTOPEN.
    Tcp,
    /// Everything else on an IP socket: each message goes where its address says.
    Datagram,
}

/// The call, as the filter saw it: `send` + to, msg or mmsg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    To,
    Msg,
    Mmsg,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::To => "sendto",
            Call::Msg => "sendmsg",
            Call::Mmsg => "sendmmsg",
        }
    }
}

/// Handles one trapped send notification.
pub fn handle(pending: Pending, notif: libc::seccomp_notif, call: Call) {
    let args = notif.data.args;
    let fd = args[0] as i32;
    let flags = match call {
        Call::To => args[3] as i32,
        Call::Msg => args[2] as i32,
        Call::Mmsg => args[3] as i32,
    };
    if call == Call::To && args[4] == 0 {
        // No address: the kernel reads none (the filter does not send these).
        return pending.proceed();
    }
    let (pid, socket) = match copy_socket(&pending, notif.pid, fd) {
        Ok(Some(pair)) => pair,
        Ok(None) => return,
        // Not a descriptor of the program: nothing is sent whatever the kernel reads.
        Err(libc::EBADF) => return pending.reply(libc::EBADF),
        Err(errno) => {
            let e = std::io::Error::from_raw_os_error(errno);
            let settings = &pending.shared.settings;
            log(
                settings,
                1,
                notif.pid,
                format_args!("{} on fd {fd}: cannot copy it: {e}", call.name()),
            );
            return pending.reply(if errno == libc::ESRCH { errno } else { libc::EPERM });
        }
    };
    let domain = match sys::getsockopt_int(socket.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN) {
        Ok(d) => d,
        Err(e) => return pending.reply(e.raw_os_error().unwrap_or(libc::ENOTSOCK)),
    };
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        // Not an IP socket: it cannot reach an IP address, whatever the kernel reads.
        return pending.proceed();
    }
    let kind = match (
        sys::getsockopt_int(socket.as_fd(), libc::SOL_SOCKET, libc::SO_TYPE),
        sys::getsockopt_int(socket.as_fd(), libc::SOL_SOCKET, libc::SO_PROTOCOL),
    ) {
        (Ok(libc::SOCK_STREAM), Ok(libc::IPPROTO_TCP | libc::IPPROTO_MPTCP)) => Kind::Tcp,
        _ => Kind::Datagram,
    };
    if kind == Kind::Tcp && flags & libc::MSG_FASTOPEN == 0 {
        // tcp_sendmsg reads msg_name only for MSG_FASTOPEN (a deferred connect's address was
        // fixed by its connect, which the supervisor made).
        return pending.proceed();
    }
    let shared = pending.shared.clone();
    let ctx = Ctx { shared, pid, tid: notif.pid, fd, socket, domain, kind, flags, call };
    if kind == Kind::Tcp || call == Call::Mmsg {
        // A connect (Fast Open) may wait for a server, and sendmmsg may block between its
        // messages: on a handler thread.
        return spawn(move || ctx.finish(pending, args));
    }
    // A datagram: read, decide and send right here (no thread) without blocking; only a send
    // that would block a blocking call goes on to a handler thread.
    let message = match ctx.read(args) {
        Ok(m) => m,
        Err(errno) => return pending.reply(errno),
    };
    if !pending.valid() {
        return;
    }
    match ctx.plan(&message) {
        Ok(Plan::Send(to)) => {
            match ctx.send(&message, to.as_deref(), ctx.flags | libc::MSG_DONTWAIT) {
                Err(libc::EAGAIN) if ctx.blocking() => spawn(move || {
                    answer(pending, Some(ctx.send(&message, to.as_deref(), ctx.flags)));
                }),
                result => answer(pending, Some(result)),
            }
        }
        Ok(Plan::ViaServer(..) | Plan::Relay(..)) => spawn(move || {
            let result = ctx.deliver(&message);
            answer(pending, Some(result));
        }),
        Err(errno) => pending.reply(errno),
    }
}

/// Answers with a count or an errno; `None`: the notification is gone.
fn answer(pending: Pending, result: Option<Result<usize, i32>>) {
    match result {
        Some(Ok(n)) => pending.reply_value(n as i64),
        Some(Err(errno)) => pending.reply(errno),
        None => {}
    }
}

/// Runs `work` on a handler thread (`pool`: an idle one, or a new one); if none can be
/// started, the closure (and the `Pending` in it) is dropped, which fails the call closed.
fn spawn(work: impl FnOnce() + Send + 'static) {
    if let Err(e) = crate::pool::run(work) {
        eprintln!("socks-supervise: cannot start a handler thread: {e}");
    }
}

/// What to do with a message that may go.
enum Plan<'s> {
    /// Send it on the copy as it is (a direct destination, or no address); to the address
    /// given instead of the program's when there is one (the name service, see `dns`).
    Send(Option<Vec<u8>>),
    /// TCP Fast Open through these servers.
    ViaServer(SocketAddr, TargetAddr, &'s [crate::config::Server]),
    /// A UDP datagram for a destination with no local socket yet (see `udp`): set up (the
    /// association may wait for a server), then sent to it.
    Relay(SocketAddr, TargetAddr, &'s [crate::config::Server]),
}

/// Everything one handler needs about the call.
struct Ctx {
    shared: Arc<Shared>,
    /// The program's process (for log lines) and the calling thread (for its memory).
    pid: u32,
    tid: u32,
    /// The program's descriptor number and the supervisor's copy of its socket.
    fd: i32,
    socket: OwnedFd,
    domain: i32,
    kind: Kind,
    flags: i32,
    call: Call,
}

impl Ctx {
    /// Reads a sendto's or a sendmsg's message from the program.
    fn read(&self, args: [u64; 6]) -> Result<Message, i32> {
        match self.call {
            Call::To => read_sendto(self.tid, args, self.kind),
            Call::Msg | Call::Mmsg => read_msghdr_at(self.tid, args[1], self.kind),
        }
    }

    /// Whether the program's call would block (no MSG_DONTWAIT, no O_NONBLOCK).
    fn blocking(&self) -> bool {
        self.flags & libc::MSG_DONTWAIT == 0
            && sys::status_flags(self.socket.as_fd()).is_ok_and(|f| f & libc::O_NONBLOCK == 0)
    }

    /// The whole call on a handler thread: read, decide, send, answer.
    fn finish(self, pending: Pending, args: [u64; 6]) {
        if self.call == Call::Mmsg {
            let result = self.sendmmsg(&pending, args[1], args[2]);
            return answer(pending, result);
        }
        let message = match self.read(args) {
            Ok(m) => m,
            Err(errno) => return pending.reply(errno),
        };
        if !pending.valid() {
            return;
        }
        let result = self.deliver(&message);
        answer(pending, Some(result));
    }

    /// sendmsg(2) of `message` on the copy, as read (to `to` if given), with `flags`.
    fn send(&self, message: &Message, to: Option<&[u8]>, flags: i32) -> Result<usize, i32> {
        sys::send_message(
            self.socket.as_fd(),
            &message.data,
            to.or(message.name.as_deref()),
            &message.control,
            flags,
        )
    }

    /// Sends one message read from the program, or says why not: the byte count or an errno.
    fn deliver(&self, message: &Message) -> Result<usize, i32> {
        match self.plan(message)? {
            Plan::Send(to) => self.send(message, to.as_deref(), self.flags),
            Plan::ViaServer(dst, target, servers) => {
                self.fast_open_via(dst, &target, servers, message)
            }
            Plan::Relay(dst, target, servers) => self.relay(dst, &target, servers, message),
        }
    }

    /// Decides what becomes of one message (and logs it), or the errno that refuses it.
    fn plan(&self, message: &Message) -> Result<Plan<'_>, i32> {
        let settings = &self.shared.settings;
        let name = self.call.name();
        if !msghdr::control_is_harmless(&message.control) {
            log(settings, 2, self.pid, format_args!("{name}: control messages refused (EINVAL)"));
            return Err(libc::EINVAL);
        }
        let dst = match destination(self.domain, message.name.as_deref()) {
            Dest::None => return Ok(Plan::Send(None)),
            Dest::Invalid(errno) => return Err(errno),
            Dest::Ip(dst) => dst,
        };
        if let Some(redirected) = self.name_service(dst) {
            return redirected.map(|to| Plan::Send(Some(to)));
        }
        if self.kind == Kind::Tcp && sys::peer_name(self.socket.as_fd()).is_ok() {
            // Already connected: the kernel's answer (EISCONN), on the copy with our bytes.
            return Ok(Plan::Send(None));
        }
        let (target, routed) = target_of(&self.shared, self.pid, name, dst)?;
        match (routed, self.kind) {
            (Route::Direct, _) => {
                log(settings, 4, self.pid, format_args!("{name} {dst}: direct"));
                Ok(Plan::Send(None))
            }
            (Route::Deny, _) => {
                log(
                    settings,
                    3,
                    self.pid,
                    format_args!("{name} {dst}: denied by the configuration"),
                );
                Err(libc::ECONNREFUSED)
            }
            (Route::Broken, _) => {
                let why = match &settings.mode {
                    crate::config::Mode::Broken { message, .. } => message.as_str(),
                    _ => "no SOCKS server for it",
                };
                log(settings, 1, self.pid, format_args!("{name} {dst}: refused: {why}"));
                Err(libc::ECONNREFUSED)
            }
            (Route::Proxy(servers), Kind::Datagram) => {
                let fd = self.socket.as_fd();
                if sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL).ok()
                    != Some(libc::IPPROTO_UDP)
                {
                    log(
                        settings,
                        1,
                        self.pid,
                        format_args!("{name} {dst}: refused: only UDP datagrams go through SOCKS"),
                    );
                    return Err(libc::ECONNREFUSED);
                }
                let mut header = Vec::new();
                let fits = encode_header(&UdpHeader { frag: 0, addr: target.clone() }, &mut header)
                    .is_ok_and(|()| header.len() + message.data.len() <= UDP_PAYLOAD_MAX);
                if !fits {
                    // As the library: the datagram and the SOCKS5 header must fit in one.
                    return Err(libc::EMSGSIZE);
                }
                let existing = sys::socket_cookie(fd)
                    .ok()
                    .and_then(|cookie| udp::existing_local(&self.shared, cookie, dst));
                match existing {
                    Some(local) => {
                        log(settings, 4, self.pid, format_args!("{name} {target}: relayed"));
                        Ok(Plan::Send(Some(sockaddr::bytes(local))))
                    }
                    None => Ok(Plan::Relay(dst, target, servers)),
                }
            }
            (Route::Proxy(servers), Kind::Tcp) => Ok(Plan::ViaServer(dst, target, servers)),
        }
    }

    /// A UDP datagram to port 53 goes to the supervisor's name service instead (see `dns`),
    /// which is told the real server for this socket: the responder's address to send to, an
    /// errno, or `None` when this is not such a datagram. A socket with no port yet is bound to
    /// one first (the wildcard address, as the kernel's own binding on send), so that the
    /// responder knows it before the query arrives.
    fn name_service(&self, dst: SocketAddr) -> Option<Result<Vec<u8>, i32>> {
        let settings = &self.shared.settings;
        if self.kind != Kind::Datagram || dst.port() != 53 || settings.names.is_none() {
            return None;
        }
        let fd = self.socket.as_fd();
        if sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL).ok()
            != Some(libc::IPPROTO_UDP)
        {
            return None;
        }
        crate::dns::serve(&self.shared);
        let responder =
            self.shared.dns.as_ref().and_then(|d| Some((d, d.address(false, self.domain)?)));
        let Some((dns, responder)) = responder else { return Some(Err(libc::ECONNREFUSED)) };
        let local = || sys::local_name(fd).ok().and_then(|b| sockaddr::parse(&b));
        let mut bound = local();
        if bound.is_some_and(|l| l.port() == 0) {
            let any: SocketAddr = if self.domain == libc::AF_INET6 {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            };
            if let Err(errno) = sys::bind_raw(fd, &sockaddr::bytes(any)) {
                return Some(Err(errno));
            }
            bound = local();
        }
        let Some(bound) = bound else { return Some(Err(libc::EINVAL)) };
        dns.register(false, bound, dst, self.pid);
        if let Ok(cookie) = sys::socket_cookie(fd) {
            // recvfrom/recvmsg on it report the server as the reply's source (musl checks).
            self.shared.udp.rewrites.add_expiring(cookie, responder, dst);
        }
        let name = self.call.name();
        log(settings, 4, self.pid, format_args!("{name} {dst}: name service (UDP), answered here"));
        Some(Ok(sockaddr::bytes(responder)))
    }

    /// A UDP datagram to a destination through a server: to the local socket standing for it
    /// (see `udp`), set up now.
    fn relay(
        &self,
        dst: SocketAddr,
        target: &TargetAddr,
        servers: &[crate::config::Server],
        message: &Message,
    ) -> Result<usize, i32> {
        let settings = &self.shared.settings;
        let name = self.call.name();
        let fd = self.socket.as_fd();
        let shared = &self.shared;
        match udp::local_for(shared, self.pid, self.fd, fd, self.domain, dst, target, servers) {
            Ok(local) => {
                log(settings, 3, self.pid, format_args!("{name} {target}: relayed via {local}"));
                self.send(message, Some(&sockaddr::bytes(local)), self.flags)
            }
            Err(failed) => {
                log(settings, 1, self.pid, format_args!("{name} {target} (UDP) {}", failed.why));
                Err(failed.errno)
            }
        }
    }

    /// TCP Fast Open to a destination that goes through a server: connect the copy through it,
    /// then send the data after the handshake.
    fn fast_open_via(
        &self,
        dst: SocketAddr,
        target: &TargetAddr,
        servers: &[crate::config::Server],
        message: &Message,
    ) -> Result<usize, i32> {
        let settings = &self.shared.settings;
        let name = self.call.name();
        let deadline = Instant::now() + settings.timeout;
        let cookie = sys::socket_cookie(self.socket.as_fd()).ok();
        let asker = Some(proxy::Asker { settings, pid: self.pid });
        match proxy::connect_via(self.socket.as_fd(), self.domain, target, servers, deadline, asker)
        {
            Ok(granted) => {
                if let Some(cookie) = cookie {
                    self.shared.peers().insert(cookie, dst, &granted);
                }
                let (server, v, detour) =
                    (granted.server, granted.version.scheme(), granted.detour);
                log(
                    settings,
                    3,
                    self.pid,
                    format_args!("{name} {target} via {server} ({v}): ok{detour}"),
                );
                if message.data.is_empty() {
                    return Ok(0);
                }
                sys::send_plain(
                    self.socket.as_fd(),
                    &message.data,
                    self.flags & !libc::MSG_FASTOPEN,
                )
            }
            Err(failed) => {
                log(settings, 1, self.pid, format_args!("{name} {target} {}", failed.why));
                Err(failed.errno)
            }
        }
    }

    /// sendmmsg: each message in turn; writes back `msg_len` of those sent. The count sent or
    /// the errno; `None` when the notification is gone.
    fn sendmmsg(&self, pending: &Pending, array: u64, vlen: u64) -> Option<Result<usize, i32>> {
        let count = (vlen as usize).min(msghdr::UIO_MAXIOV);
        if count == 0 {
            return Some(Ok(0));
        }
        let headers = match sys::read_memory(self.tid, array, count * msghdr::MMSGHDR_LEN) {
            Ok(b) => b,
            Err(_) => return Some(Err(libc::EFAULT)),
        };
        let mut sent = 0usize;
        let mut first_error = None;
        for header in headers.chunks_exact(msghdr::MMSGHDR_LEN) {
            let result = read_message(self.tid, header, self.kind).and_then(|message| {
                if !pending.valid() {
                    return Err(GONE);
                }
                self.deliver(&message)
            });
            match result {
                Ok(n) => {
                    let at = array + (sent * msghdr::MMSGHDR_LEN + msghdr::MMSG_LEN_OFFSET) as u64;
                    let len = u32::try_from(n).unwrap_or(u32::MAX).to_ne_bytes();
                    if !pending.valid() {
                        return None;
                    }
                    if sys::write_memory(self.tid, at, &len).is_err() {
                        // As the kernel: a message already sent counts even so.
                        sent += 1;
                        break;
                    }
                    sent += 1;
                }
                Err(GONE) => return None,
                Err(errno) => {
                    first_error = Some(errno);
                    break;
                }
            }
        }
        Some(match (sent, first_error) {
            (0, Some(errno)) => Err(errno),
            (n, _) => Ok(n),
        })
    }
}

/// The data of one message: `iov` as (base, length) pairs, gathered; EMSGSIZE past
/// [`DATA_MAX`] on a datagram socket, cut to it on a stream.
fn read_data(tid: u32, iov: &[(u64, u64)], kind: Kind) -> Result<Vec<u8>, i32> {
    let total = iov.iter().fold(0u64, |sum, &(_, len)| sum.saturating_add(len));
    if total > DATA_MAX as u64 && kind == Kind::Datagram {
        return Err(libc::EMSGSIZE);
    }
    let mut data = Vec::with_capacity(total.min(DATA_MAX as u64) as usize);
    for &(base, len) in iov {
        let room = DATA_MAX - data.len();
        let take = (len.min(room as u64)) as usize;
        if take == 0 {
            continue;
        }
        let part = sys::read_memory(tid, base, take).map_err(|_| libc::EFAULT)?;
        data.extend_from_slice(&part);
    }
    Ok(data)
}

/// Reads a sendto's address and data.
fn read_sendto(tid: u32, args: [u64; 6], kind: Kind) -> Result<Message, i32> {
    let (buf, len, addr, addrlen) = (args[1], args[2], args[4], args[5] as i32);
    if !(0..=msghdr::NAME_MAX as i32).contains(&addrlen) {
        return Err(libc::EINVAL);
    }
    let name = sys::read_memory(tid, addr, addrlen as usize).map_err(|_| libc::EFAULT)?;
    let data = read_data(tid, &[(buf, len)], kind)?;
    Ok(Message { name: Some(name), data, control: Vec::new() })
}

/// Reads the msghdr at `at` and everything it points at.
fn read_msghdr_at(tid: u32, at: u64, kind: Kind) -> Result<Message, i32> {
    let header = sys::read_memory(tid, at, msghdr::MSGHDR_LEN).map_err(|_| libc::EFAULT)?;
    read_message(tid, &header, kind)
}

/// Reads what the msghdr at the start of `header` points at.
fn read_message(tid: u32, header: &[u8], kind: Kind) -> Result<Message, i32> {
    let MsgHdr { name, namelen, iov, iovlen, control, controllen } =
        msghdr::parse_msghdr(header).ok_or(libc::EFAULT)?;
    let name = if name == 0 {
        None
    } else {
        if namelen as usize > msghdr::NAME_MAX {
            return Err(libc::EINVAL);
        }
        Some(sys::read_memory(tid, name, namelen as usize).map_err(|_| libc::EFAULT)?)
    };
    if iovlen > msghdr::UIO_MAXIOV as u64 {
        return Err(libc::EMSGSIZE);
    }
    let iov = if iovlen == 0 {
        Vec::new()
    } else {
        let bytes = sys::read_memory(tid, iov, iovlen as usize * msghdr::IOVEC_LEN)
            .map_err(|_| libc::EFAULT)?;
        msghdr::parse_iovecs(&bytes)
    };
    let data = read_data(tid, &iov, kind)?;
    let control = if control == 0 || controllen == 0 {
        Vec::new()
    } else if controllen > msghdr::CONTROL_MAX as u64 {
        return Err(libc::ENOBUFS);
    } else {
        sys::read_memory(tid, control, controllen as usize).map_err(|_| libc::EFAULT)?
    };
    Ok(Message { name, data, control })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let v4: SocketAddr = "198.51.100.2:53".parse().expect("literal");
        let v6: SocketAddr = "[2001:db8::2]:53".parse().expect("literal");
        let b4 = sockaddr::bytes(v4);
        let b6 = sockaddr::bytes(v6);
        assert_eq!(destination(libc::AF_INET, None), Dest::None);
        assert_eq!(destination(libc::AF_INET, Some(&b4)), Dest::Ip(v4));
        assert_eq!(destination(libc::AF_INET6, Some(&b4)), Dest::Ip(v4), "v4 from a v6 socket");
        assert_eq!(destination(libc::AF_INET6, Some(&b6)), Dest::Ip(v6));
        assert_eq!(destination(libc::AF_INET6, Some(&b6[..24])), Dest::Ip(v6), "RFC 2133 size");
        // AF_UNSPEC: IPv4 on an IPv4 socket (as udp_sendmsg reads it), nothing on IPv6.
        let mut unspec = b4.clone();
        unspec[..2].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(destination(libc::AF_INET, Some(&unspec)), Dest::Ip(v4));
        assert_eq!(destination(libc::AF_INET6, Some(&unspec)), Dest::None);
        assert_eq!(destination(libc::AF_INET, Some(&unspec[..8])), Dest::Invalid(libc::EINVAL));
        assert_eq!(destination(libc::AF_INET, Some(&b4[..15])), Dest::Invalid(libc::EINVAL));
        assert_eq!(destination(libc::AF_INET, Some(&[])), Dest::Invalid(libc::EINVAL));
        assert_eq!(
            destination(libc::AF_INET, Some(&[1, 0, b'/'])),
            Dest::Invalid(libc::EAFNOSUPPORT)
        );
    }
}
