//! The exported datagram entry points: sendto, sendmsg, sendmmsg, recvfrom, recvmsg, recvmmsg,
//! and send, recv, write, writev, read for UDP sockets connected to a proxied peer (or virtually
//! connected to a name server, `dnswire`). Each passes straight through unless `udp` says the
//! datagram goes through (or came from) a SOCKS5 relay; then the header is added with a
//! gathering write (no copy of the payload) or stripped from a received datagram before it
//! reaches the program's buffers. Control messages on a relayed datagram are handled as
//! `ancillary` says (UDP_SEGMENT: one relayed datagram per segment).
//!
//! Every way a program can read a datagram through libc is hooked, or a DNS socket's filter
//! (`dnswire`) could be read around: also readv, preadv2/preadv64v2 at the current position
//! (offset -1; at any other offset a socket says ESPIPE), the _FORTIFY_SOURCE entry points
//! __read_chk, __recv_chk and __recvfrom_chk (glibc's call its internal functions, never the
//! hooks), and syscall(SYS_read, SYS_readv…). Not: io_uring, splice and sendfile from a socket,
//! stdio on an fdopen'd socket (glibc's internal read).
//!
//! Also a TCP socket the program connected to a name server's port 53 (`dnstcp`): after send,
//! write, writev, sendto and sendmsg the library reads the bytes from its end and answers
//! them; where it does not answer (the server reached through sockd), a query about a name
//! resolved on the far side is refused (`dnswire::tcp_query_refused`).
//!
//! Also TCP Fast Open: sendto/sendmsg/sendmmsg with MSG_FASTOPEN and a destination on a TCP
//! socket are connects carrying data, routed as `fastopen` says.
//!
//! A send from a signal handler that interrupted the library in the same thread is decided
//! too, never passed through unseen (`Guard::enter_routed`): Fast Open as a connect on the
//! heap-free path, a datagram through its socket's existing association with the header in a
//! fixed buffer (`send_datagram_without_heap`); what would need the heap (a new association,
//! control messages on a relayed datagram, a socket-level UDP_SEGMENT, more than
//! `QUIET_PARTS_MAX` iovecs) fails with `Cause::SignalContext` (EAGAIN), as does a datagram to
//! an IP destination before the settings are loaded.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr::null_mut;

use libc::{c_int, c_uint, iovec, mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::ancillary::{self, Ancillary};
use crate::config;
use crate::dnstcp;
use crate::dnswire::{self, Verdict};
use crate::fastopen::{self, FastOpen};
use crate::fdtable::{self, Kind};
use crate::ffi::real;
use crate::ffi::sockaddr::RawAddr;
use crate::guard::Guard;
use crate::intercept;
use crate::outcome::{fail, shield, Cause, Outcome};
use crate::udp::{self, QuietSend, Send, HEADER_MAX};

/// Whether `fd` may be one of the library's UDP sockets: the table's hint only (an atomic
/// load, no system call), so that other descriptors go straight through.
fn maybe_associated(fd: c_int) -> bool {
    matches!(
        fdtable::kind_hint(fd),
        Some(Kind::Udp | Kind::UdpConnected | Kind::Dns | Kind::DnsConnected)
    )
}

/// What a receive on a UDP socket the library looks at (an association, or a DNS socket)
/// needs, read once per call.
#[derive(Debug, Clone, Copy)]
struct Receiver {
    /// A DNS socket: the library's answers and the virtual peer's filter (`dnswire`).
    dns: Option<dnswire::Receiving>,
    /// Whether it has a relay (only then do datagrams come with a SOCKS5 header).
    relayed: bool,
}

/// The receiver `fd` is, if it carries an association or is a DNS socket (the only sockets
/// whose reads need a look). The table's hint first, so other descriptors cost no system
/// call; ours cost one (the table's identity check), and nothing else once `dnswire` has
/// stored the socket's own address with its entry.
fn associated(fd: c_int) -> Option<Receiver> {
    let ours =
        |kind| matches!(kind, Kind::Udp | Kind::UdpConnected | Kind::Dns | Kind::DnsConnected);
    if !maybe_associated(fd) {
        return None;
    }
    let (entry, own, token) = fdtable::get_with_own(fd)?;
    if !ours(entry.kind) {
        return None;
    }
    let dns = dnswire::Receiving::of(fd, &entry, own, token);
    Some(Receiver { dns, relayed: entry.server.len > 0 })
}

/// Reads away the datagram a receive with MSG_PEEK only looked at (one the program must not
/// see), into `scratch`, so that the next receive finds the one after it.
fn consume_if_peeked(fd: c_int, flags: c_int, scratch: &mut [u8]) {
    if flags & libc::MSG_PEEK != 0 {
        // SAFETY: a plain read of the same datagram into our own buffer of its length.
        unsafe {
            real::recv(fd, scratch.as_mut_ptr().cast(), scratch.len(), flags & !libc::MSG_PEEK)
        };
    }
}

/// Whether `fd` is a UDP socket connected to a proxied peer (send and write add the header),
/// or virtually connected to a name server (`dnswire`: the library reads the query).
fn connected_to_relay(fd: c_int) -> bool {
    let ours = |kind| matches!(kind, Kind::UdpConnected | Kind::DnsConnected);
    fdtable::kind_hint(fd).is_some_and(ours) && fdtable::get(fd).is_some_and(|e| ours(e.kind))
}

/// The bytes of an iovec array, copied (a DNS query, to be read).
///
/// # Safety
/// `parts` must describe readable memory.
unsafe fn gather(parts: &[iovec]) -> Vec<u8> {
    let mut out = Vec::with_capacity(total(parts));
    for part in parts {
        if part.iov_len > 0 && !part.iov_base.is_null() {
            // SAFETY: the caller's part is readable for iov_len bytes.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts(part.iov_base.cast::<u8>(), part.iov_len)
            });
        }
    }
    out
}

/// Sends `header` followed by the caller's `parts` in one datagram, to `to` when given, with
/// the control messages `control` (kernel layout; empty for none).
///
/// # Safety
/// `parts` must describe readable memory.
unsafe fn send_with_header(
    fd: c_int,
    header: &[u8],
    parts: &[iovec],
    flags: c_int,
    to: Option<&RawAddr>,
    control: &[u8],
) -> ssize_t {
    let mut iov = Vec::with_capacity(parts.len() + 1);
    iov.push(iovec { iov_base: header.as_ptr() as *mut c_void, iov_len: header.len() });
    iov.extend_from_slice(parts);
    // SAFETY: zeroed msghdr is the documented starting point.
    let mut msg: msghdr = unsafe { std::mem::zeroed() };
    if let Some(to) = to {
        msg.msg_name = to.bytes.as_ptr() as *mut c_void;
        msg.msg_namelen = to.len as socklen_t;
    }
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    if !control.is_empty() {
        // The kernel copies the control buffer before reading it: its alignment is not asked.
        msg.msg_control = control.as_ptr() as *mut c_void;
        msg.msg_controllen = control.len();
    }
    // SAFETY: every pointer in `msg` is valid for the call (ours or the caller's).
    let sent = unsafe { real::sendmsg(fd, &msg, flags) };
    if sent < 0 {
        sent
    } else {
        (sent - header.len() as ssize_t).max(0)
    }
}

/// A write of the program's (`real_call`, whose bytes `parts` describes) on a TCP socket it
/// connected to a name server's port 53 (`Kind::DnsTcp`); any other descriptor: the real call.
/// When the library answers on the socket (`dnstcp`), the bytes are written and the library
/// reads them from its end; otherwise a write holding a query about a name resolved on the
/// far side fails (`dnswire::tcp_query_refused`). From a signal handler that interrupted the
/// library (the query cannot be read without the heap) every write on such a socket fails with
/// `Cause::SignalContext`. `outer`: the caller's guard, if it holds one already.
///
/// # Safety
/// `parts` must describe readable memory.
unsafe fn dns_tcp_write(
    fd: c_int,
    parts: &[iovec],
    outer: Option<&Guard>,
    real_call: impl Fn() -> ssize_t,
) -> ssize_t {
    if fdtable::kind_hint(fd) != Some(Kind::DnsTcp) {
        return real_call();
    }
    let own_guard = if outer.is_none() { Some(Guard::enter_routed()) } else { None };
    let Some(guard) = outer.or(own_guard.as_ref()) else { return real_call() };
    let Some(entry) = fdtable::get(fd).filter(|e| e.kind == Kind::DnsTcp) else {
        return real_call();
    };
    if guard.is_nested() {
        return fail(Cause::SignalContext);
    }
    if let Some(end) = dnstcp::end_of(fd) {
        let sent = real_call();
        if sent > 0 {
            let errno = real::errno();
            dnstcp::after_write(end, &entry.first, sent as usize);
            real::set_errno(errno);
        }
        return sent;
    }
    // SAFETY: as the caller guarantees.
    let bytes = unsafe { gather(parts) };
    dnswire::tcp_query_refused(fd, &bytes).map_or_else(real_call, fail)
}

/// The iovec array of an iovec array's bytes `start..end`.
fn slice_parts(parts: &[iovec], start: usize, end: usize) -> Vec<iovec> {
    let mut out = Vec::new();
    let mut offset = 0;
    for part in parts {
        let (from, to) = (start.max(offset), end.min(offset + part.iov_len));
        if from < to {
            // The pointer stays within the caller's part (from - offset < iov_len).
            let base = part.iov_base.cast::<u8>().wrapping_add(from - offset);
            out.push(iovec { iov_base: base.cast(), iov_len: to - from });
        }
        offset += part.iov_len;
    }
    out
}

/// The total length of an iovec array.
///
/// # Safety
/// `iov` must point to `count` iovecs (or be null with count 0).
unsafe fn iov_parts<'a>(iov: *const iovec, count: usize) -> &'a [iovec] {
    if iov.is_null() || count == 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees `count` iovecs.
        unsafe { std::slice::from_raw_parts(iov, count) }
    }
}

fn total(parts: &[iovec]) -> usize {
    parts.iter().map(|p| p.iov_len).sum()
}

/// One outgoing datagram: to `dst` if given, else to the connected peer; `control` is the
/// program's ancillary data (empty for none), which a relayed datagram gets as `ancillary`
/// says (segmented by UDP_SEGMENT, one SOCKS5 header per segment).
///
/// # Safety
/// As sendmsg(2) for `parts` and `dst`.
unsafe fn send_datagram(
    fd: c_int,
    parts: &[iovec],
    flags: c_int,
    dst: Option<RawAddr>,
    control: &[u8],
) -> Option<ssize_t> {
    let len = total(parts);
    // A DNS query the library may answer itself (`dnswire`); on a virtually connected socket
    // the datagram goes to the name server by address (the socket is not connected).
    let (dst, virtual_peer) = match dnswire::query_target(fd, dst.as_ref()) {
        Some((server, virtual_peer)) => {
            // SAFETY: as the caller guarantees.
            let query = unsafe { gather(parts) };
            match dnswire::answer(fd, &server, &query, virtual_peer) {
                Some(Ok(n)) => return Some(n as ssize_t),
                Some(Err(cause)) => return Some(fail(cause)),
                None => (Some(server), virtual_peer),
            }
        }
        None => (dst, false),
    };
    // Read now, used only if the datagram is relayed: a direct one keeps its control as it is.
    let wanted = ancillary::parse(control);
    // Each segment is a datagram of its own: its size is what must fit with the header.
    let unit = match &wanted {
        Ok(Ancillary { segment: Some(size), .. }) if *size > 0 => len.min(usize::from(*size)),
        _ => len,
    };
    // A panic while planning is the shield's: EIO, never the real call.
    let plan_for = |unit: usize| match &dst {
        Some(dst) => udp::plan_send(fd, dst, unit),
        None => match udp::plan_connected_send(fd, unit) {
            Some(Ok(header)) => Send::Relay {
                relay: RawAddr { bytes: [0; crate::ffi::sockaddr::RAW_LEN], len: 0 },
                header,
            },
            Some(Err(cause)) => Send::Fail(cause),
            None => Send::PassThrough,
        },
    };
    let plan = match plan_for(unit) {
        // Too large as one datagram, but a socket-level segment size may cut it (asked only
        // here: a direct datagram costs no system call before the real one).
        Send::Fail(Cause::Os(libc::EMSGSIZE))
            if matches!(&wanted, Ok(Ancillary { segment: None, .. })) =>
        {
            match real::getsockopt_int(fd, libc::IPPROTO_UDP, ancillary::UDP_SEGMENT) {
                Some(size) if size > 0 && (size as usize) < len => plan_for(size as usize),
                _ => Send::Fail(Cause::Os(libc::EMSGSIZE)),
            }
        }
        plan => plan,
    };
    let (relay, header) = match plan {
        Send::PassThrough if virtual_peer => {
            // SAFETY: the caller's parts and control, to the name server's address.
            let sent = unsafe { send_with_header(fd, &[], parts, flags, dst.as_ref(), control) };
            return Some(sent);
        }
        Send::PassThrough => return None,
        Send::Fail(cause) => return Some(fail(cause)),
        Send::Relay { relay, header } => (relay, header),
    };
    let Ancillary { mut kept, segment } = match wanted {
        Ok(wanted) => wanted,
        Err(cause) => return Some(fail(cause)),
    };
    // A socket-level segment size would cut the header from its payload: overridden with 0
    // on every relayed datagram (a message's own UDP_SEGMENT wins over it, as in the kernel).
    let socket_segment = if len > 0 {
        real::getsockopt_int(fd, libc::IPPROTO_UDP, ancillary::UDP_SEGMENT).filter(|s| *s > 0)
    } else {
        None
    };
    let size = segment.unwrap_or_else(|| socket_segment.map_or(0, |s| s as u16));
    if socket_segment.is_some() {
        ancillary::push_segment(&mut kept, 0);
    }
    // A connected socket is connected to the relay already: no address.
    let to = (relay.len > 0).then_some(&relay);
    let mut sent_total: ssize_t = 0;
    for (start, end) in ancillary::segments(len, size) {
        let piece = slice_parts(parts, start, end);
        // SAFETY: `piece` lies within the caller's parts.
        let sent = unsafe { send_with_header(fd, &header, &piece, flags, to, &kept) };
        if sent < 0 {
            return Some(if sent_total > 0 { sent_total } else { sent });
        }
        sent_total += sent;
    }
    Some(sent_total)
}

/// The most iovecs a datagram sent from a signal handler inside the library may have (they are
/// copied to the stack, behind the header's).
const QUIET_PARTS_MAX: usize = 32;

/// As [`send_datagram`], for a send from a signal handler that interrupted the library in this
/// thread: no heap (see the module documentation).
///
/// # Safety
/// As sendmsg(2) for `parts` and `dst`.
unsafe fn send_datagram_without_heap(
    fd: c_int,
    parts: &[iovec],
    flags: c_int,
    dst: Option<RawAddr>,
    control: &[u8],
) -> Option<ssize_t> {
    if !config::loaded() {
        // No rules yet (reading them takes the heap): an IP destination may be proxied.
        let ip = dst.as_ref().and_then(RawAddr::socket_addr).is_some();
        return ip.then(|| fail(Cause::SignalContext));
    }
    if dnswire::query_target(fd, dst.as_ref()).is_some() {
        // Reading the query and building an answer take the heap.
        return Some(fail(Cause::SignalContext));
    }
    let len = total(parts);
    let (relay, header, header_len) = match udp::plan_send_without_heap(fd, dst.as_ref(), len) {
        QuietSend::PassThrough => return None,
        QuietSend::Fail(cause) => return Some(fail(cause)),
        QuietSend::Relay { relay, header, header_len } => (relay, header, header_len),
    };
    let socket_segment = || {
        len > 0
            && real::getsockopt_int(fd, libc::IPPROTO_UDP, ancillary::UDP_SEGMENT)
                .is_some_and(|size| size > 0)
    };
    if !control.is_empty() || parts.len() > QUIET_PARTS_MAX || socket_segment() {
        return Some(fail(Cause::SignalContext));
    }
    let empty = iovec { iov_base: null_mut(), iov_len: 0 };
    let mut iov = [empty; QUIET_PARTS_MAX + 1];
    iov[0] = iovec { iov_base: header.as_ptr() as *mut c_void, iov_len: header_len };
    iov[1..=parts.len()].copy_from_slice(parts);
    // SAFETY: zeroed msghdr is the documented starting point.
    let mut msg: msghdr = unsafe { std::mem::zeroed() };
    if relay.len > 0 {
        msg.msg_name = relay.bytes.as_ptr() as *mut c_void;
        msg.msg_namelen = relay.len as socklen_t;
    }
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = parts.len() + 1;
    // SAFETY: every pointer in `msg` is valid for the call (ours on this stack, or the
    // caller's parts).
    let sent = unsafe { real::sendmsg(fd, &msg, flags) };
    Some(if sent < 0 { sent } else { (sent - header_len as ssize_t).max(0) })
}

/// MSG_FASTOPEN with a destination (see `fastopen`): `None` when not a TCP socket (the datagram
/// paths decide), else the result of the whole call. `send_data` sends the payload on the
/// socket once it is connected through a server, with the flags it is given.
fn fast_open(
    fd: c_int,
    dst: &RawAddr,
    flags: c_int,
    real_call: impl FnOnce() -> ssize_t,
    send_data: impl FnOnce(c_int) -> ssize_t,
) -> Option<ssize_t> {
    let Some(guard) = Guard::enter_connect(config::loaded()) else {
        return match intercept::connect_while_loading(Some(dst)) {
            Outcome::Fail(cause) => Some(fail(cause)),
            _ => Some(real_call()),
        };
    };
    match fastopen::connect(fd, dst, guard.is_nested()) {
        FastOpen::NotStream => None,
        FastOpen::PassThrough => Some(real_call()),
        FastOpen::Connected => Some(send_data(flags & !libc::MSG_FASTOPEN)),
        FastOpen::Fail(cause) => Some(fail(cause)),
    }
}

/// sendto(2).
///
/// # Safety
/// As sendto(2).
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { sendto_unshielded(fd, buf, len, flags, addr, addrlen) })
}

/// The work of [`sendto`], run inside the shield.
///
/// # Safety
/// As [`sendto`].
unsafe fn sendto_unshielded(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::sendto(fd, buf, len, flags, addr, addrlen) };
    if flags & libc::MSG_FASTOPEN != 0 && !addr.is_null() {
        // SAFETY: the caller guarantees `addrlen` readable bytes at `addr`.
        if let Some(dst) = unsafe { RawAddr::from_ptr(addr, addrlen) } {
            // SAFETY: `buf` holds `len` readable bytes.
            let send = |flags| unsafe { real::send(fd, buf, len, flags) };
            if let Some(rc) = fast_open(fd, &dst, flags, real_call, send) {
                return rc;
            }
        }
    }
    let guard = Guard::enter_routed();
    let dst = if addr.is_null() {
        None
    } else {
        // SAFETY: the caller guarantees `addrlen` readable bytes at `addr`.
        match unsafe { RawAddr::from_ptr(addr, addrlen) } {
            Some(dst) => Some(dst),
            None => return real_call(),
        }
    };
    let part = [iovec { iov_base: buf as *mut c_void, iov_len: len }];
    if dst.is_none() && !connected_to_relay(fd) {
        // SAFETY: `buf` holds `len` readable bytes.
        return unsafe { dns_tcp_write(fd, &part, Some(&guard), real_call) };
    }
    if guard.is_nested() {
        // SAFETY: `buf` holds `len` readable bytes.
        return unsafe { send_datagram_without_heap(fd, &part, flags, dst, &[]) }
            .unwrap_or_else(real_call);
    }
    // SAFETY: `buf` holds `len` readable bytes.
    unsafe { send_datagram(fd, &part, flags, dst, &[]) }.unwrap_or_else(real_call)
}

/// send(2).
///
/// # Safety
/// As send(2).
#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { send_unshielded(fd, buf, len, flags) })
}

/// The work of [`send`], run inside the shield.
///
/// # Safety
/// As [`send`].
unsafe fn send_unshielded(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::send(fd, buf, len, flags) };
    if !connected_to_relay(fd) {
        let part = [iovec { iov_base: buf as *mut c_void, iov_len: len }];
        // SAFETY: `buf` holds `len` readable bytes.
        return unsafe { dns_tcp_write(fd, &part, None, real_call) };
    }
    let guard = Guard::enter_routed();
    let part = [iovec { iov_base: buf as *mut c_void, iov_len: len }];
    if guard.is_nested() {
        // SAFETY: `buf` holds `len` readable bytes.
        return unsafe { send_datagram_without_heap(fd, &part, flags, None, &[]) }
            .unwrap_or_else(real_call);
    }
    // SAFETY: `buf` holds `len` readable bytes.
    unsafe { send_datagram(fd, &part, flags, None, &[]) }.unwrap_or_else(real_call)
}

/// write(2): a datagram when `fd` is a UDP socket connected to a proxied peer.
///
/// # Safety
/// As write(2).
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { write_unshielded(fd, buf, len) })
}

/// The work of [`write`], run inside the shield.
///
/// # Safety
/// As [`write`].
unsafe fn write_unshielded(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::write(fd, buf, len) };
    if !connected_to_relay(fd) {
        let part = [iovec { iov_base: buf as *mut c_void, iov_len: len }];
        // SAFETY: `buf` holds `len` readable bytes.
        return unsafe { dns_tcp_write(fd, &part, None, real_call) };
    }
    let guard = Guard::enter_routed();
    let part = [iovec { iov_base: buf as *mut c_void, iov_len: len }];
    if guard.is_nested() {
        // SAFETY: `buf` holds `len` readable bytes.
        return unsafe { send_datagram_without_heap(fd, &part, 0, None, &[]) }
            .unwrap_or_else(real_call);
    }
    // SAFETY: `buf` holds `len` readable bytes.
    unsafe { send_datagram(fd, &part, 0, None, &[]) }.unwrap_or_else(real_call)
}

/// writev(2): one datagram, as write, on a UDP socket connected to a proxied peer or virtually
/// connected to a name server; checked as send on a TCP socket connected to a name server
/// (`dnswire`). Every other descriptor costs one table look-up and goes straight through.
///
/// # Safety
/// As writev(2).
#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::writev(fd, iov, iovcnt) };
    let ours = matches!(
        fdtable::kind_hint(fd),
        Some(Kind::DnsTcp | Kind::UdpConnected | Kind::DnsConnected)
    );
    if !ours || iovcnt <= 0 {
        return real_call();
    }
    shield(-1, || {
        // SAFETY: the caller passes `iovcnt` iovecs.
        let parts = unsafe { iov_parts(iov, iovcnt as usize) };
        if !connected_to_relay(fd) {
            // SAFETY: as the caller guarantees.
            return unsafe { dns_tcp_write(fd, parts, None, real_call) };
        }
        let guard = Guard::enter_routed();
        if guard.is_nested() {
            // SAFETY: as the caller guarantees.
            return unsafe { send_datagram_without_heap(fd, parts, 0, None, &[]) }
                .unwrap_or_else(real_call);
        }
        // SAFETY: as the caller guarantees.
        unsafe { send_datagram(fd, parts, 0, None, &[]) }.unwrap_or_else(real_call)
    })
}

/// sendmsg(2). Ancillary data on a relayed datagram is handled as `ancillary` describes;
/// MSG_FASTOPEN with a destination on a TCP socket as `fastopen` describes.
///
/// # Safety
/// As sendmsg(2).
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { sendmsg_unshielded(fd, msg, flags) })
}

/// The work of [`sendmsg`], run inside the shield.
///
/// # Safety
/// As [`sendmsg`].
unsafe fn sendmsg_unshielded(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::sendmsg(fd, msg, flags) };
    // SAFETY: the caller passes a valid msghdr (or null, which the real call reports).
    let Some(m) = (unsafe { msg.as_ref() }) else { return real_call() };
    if flags & libc::MSG_FASTOPEN != 0 && !m.msg_name.is_null() {
        // SAFETY: msg_name holds msg_namelen bytes.
        if let Some(dst) = unsafe { RawAddr::from_ptr(m.msg_name.cast(), m.msg_namelen) } {
            let send = |flags| {
                // The same message without its address: the socket is connected now.
                let mut plain = *m;
                plain.msg_name = null_mut();
                plain.msg_namelen = 0;
                // SAFETY: the caller's message, minus the address.
                unsafe { real::sendmsg(fd, &plain, flags) }
            };
            if let Some(rc) = fast_open(fd, &dst, flags, real_call, send) {
                return rc;
            }
        }
    }
    let guard = Guard::enter_routed();
    let dst = if m.msg_name.is_null() {
        None
    } else {
        // SAFETY: msg_name holds msg_namelen bytes.
        match unsafe { RawAddr::from_ptr(m.msg_name.cast(), m.msg_namelen) } {
            Some(dst) => Some(dst),
            None => return real_call(),
        }
    };
    if dst.is_none() && !connected_to_relay(fd) {
        // SAFETY: msg_iov holds msg_iovlen iovecs.
        let parts = unsafe { iov_parts(m.msg_iov, m.msg_iovlen) };
        // SAFETY: as the caller guarantees.
        return unsafe { dns_tcp_write(fd, parts, Some(&guard), real_call) };
    }
    let control: &[u8] = if m.msg_control.is_null() || m.msg_controllen == 0 {
        &[]
    } else {
        // SAFETY: msg_control holds msg_controllen readable bytes.
        unsafe { std::slice::from_raw_parts(m.msg_control.cast::<u8>(), m.msg_controllen) }
    };
    // SAFETY: msg_iov holds msg_iovlen iovecs.
    let parts = unsafe { iov_parts(m.msg_iov, m.msg_iovlen) };
    if guard.is_nested() {
        // SAFETY: as the caller guarantees.
        return unsafe { send_datagram_without_heap(fd, parts, flags, dst, control) }
            .unwrap_or_else(real_call);
    }
    // SAFETY: as the caller guarantees.
    unsafe { send_datagram(fd, parts, flags, dst, control) }.unwrap_or_else(real_call)
}

/// sendmmsg(2): each message as sendmsg would send it (UDP sockets, and TCP Fast Open).
///
/// # Safety
/// As sendmmsg(2).
#[no_mangle]
pub unsafe extern "C" fn sendmmsg(
    fd: c_int,
    msgs: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { sendmmsg_unshielded(fd, msgs, vlen, flags) })
}

/// The work of [`sendmmsg`], run inside the shield.
///
/// # Safety
/// As [`sendmmsg`].
unsafe fn sendmmsg_unshielded(fd: c_int, msgs: *mut mmsghdr, vlen: c_uint, flags: c_int) -> c_int {
    let ours = !msgs.is_null()
        && vlen > 0
        && (udp::is_udp(fd) || (flags & libc::MSG_FASTOPEN != 0 && fastopen_candidate(fd)));
    if !ours {
        // SAFETY: forwarded unchanged.
        return unsafe { real::sendmmsg(fd, msgs, vlen, flags) };
    }
    let mut sent = 0;
    for i in 0..vlen as usize {
        // SAFETY: the caller passes `vlen` messages.
        let entry = unsafe { &mut *msgs.add(i) };
        // SAFETY: our sendmsg under the caller's guarantees for this message.
        let n = unsafe { sendmsg(fd, &entry.msg_hdr, flags) };
        if n < 0 {
            return if sent == 0 { -1 } else { sent };
        }
        entry.msg_len = n as c_uint;
        sent += 1;
    }
    sent
}

/// Whether `fd` is a TCP socket (whose MSG_FASTOPEN sends are connects).
fn fastopen_candidate(fd: c_int) -> bool {
    real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
}

/// One received datagram on `receiver` with the relay's header stripped, into the caller's
/// `parts`; the source to report in `name`.
///
/// # Safety
/// `parts` must describe writable memory; `name`/`namelen` as recvfrom(2); `control` as
/// recvmsg(2)'s msg_control.
#[allow(clippy::too_many_arguments)]
unsafe fn receive_datagram(
    fd: c_int,
    receiver: Receiver,
    parts: &[iovec],
    flags: c_int,
    name: *mut sockaddr,
    namelen: *mut socklen_t,
    control: Option<(&mut *mut c_void, &mut size_t)>,
    msg_flags: Option<&mut c_int>,
) -> ssize_t {
    let room = total(parts);
    let mut temp = vec![0u8; room.min(65_536) + HEADER_MAX];
    let Receiver { dns, relayed } = receiver;
    let mut control = control;
    loop {
        let mut from = [0u8; std::mem::size_of::<libc::sockaddr_storage>()];
        let mut iov = iovec { iov_base: temp.as_mut_ptr().cast(), iov_len: temp.len() };
        // SAFETY: zeroed msghdr is the documented starting point.
        let mut msg: msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = from.as_mut_ptr().cast();
        msg.msg_namelen = from.len() as socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some((buf, len)) = control.as_mut() {
            msg.msg_control = **buf;
            msg.msg_controllen = **len;
        }
        // SAFETY: every pointer in `msg` is valid (ours or the caller's control buffer).
        let n = unsafe { real::recvmsg(fd, &mut msg, flags) };
        if n < 0 {
            return n;
        }
        let got = (n as usize).min(temp.len());
        // SAFETY: the kernel wrote msg_namelen bytes of address.
        let source = unsafe { RawAddr::from_ptr(from.as_ptr().cast(), msg.msg_namelen) };
        let unwrapped =
            source.filter(|_| relayed).and_then(|s| udp::unwrap_received(fd, &temp[..got], &s));
        let verdict = match (&unwrapped, &dns) {
            (None, Some(dns)) => dns.judge(source.as_ref()),
            _ => Verdict::Keep,
        };
        let (skip, reported) = match (unwrapped, verdict) {
            // The library's answer, reported as from the name server the query went to.
            (None, Verdict::Answer(server)) => (0, Some(server)),
            // Not from the virtual peer: dropped (consumed if we only peeked), the next read.
            (None, Verdict::Drop) => {
                consume_if_peeked(fd, flags, &mut temp);
                continue;
            }
            // Not from the relay: the datagram as it came.
            (None, Verdict::Keep) => (0, source),
            // From the relay but unreadable: drop it (consuming it if we only peeked).
            (Some((skip, _)), _) if skip >= got => {
                consume_if_peeked(fd, flags, &mut temp);
                continue;
            }
            (Some((skip, reported)), _) => (skip, Some(reported)),
        };
        let payload = &temp[skip..got];
        let mut copied = 0;
        for part in parts {
            if copied == payload.len() {
                break;
            }
            let take = part.iov_len.min(payload.len() - copied);
            // SAFETY: the caller's part is writable for iov_len bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    payload[copied..].as_ptr(),
                    part.iov_base.cast::<u8>(),
                    take,
                )
            };
            copied += take;
        }
        let full = (n as usize).saturating_sub(skip);
        if let Some(out) = msg_flags {
            *out = msg.msg_flags | if full > copied { libc::MSG_TRUNC } else { 0 };
        }
        if let Some((_, len)) = control {
            *len = msg.msg_controllen;
        }
        match (reported, name.is_null() || namelen.is_null()) {
            // SAFETY: the caller's name buffer holds *namelen bytes.
            (Some(reported), false) => unsafe { reported.write_to(name, namelen) },
            (None, false) => {
                // A non-IP source (not ours): copy it as the kernel gave it.
                // SAFETY: both buffers hold at least the copied length.
                unsafe {
                    let n = (msg.msg_namelen as usize).min(*namelen as usize);
                    std::ptr::copy_nonoverlapping(from.as_ptr(), name.cast::<u8>(), n);
                    *namelen = msg.msg_namelen;
                }
            }
            _ => {}
        }
        let result = if flags & libc::MSG_TRUNC != 0 { full } else { copied };
        return result as ssize_t;
    }
}

/// recvfrom(2).
///
/// # Safety
/// As recvfrom(2).
#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { recvfrom_unshielded(fd, buf, len, flags, addr, addrlen) })
}

/// The work of [`recvfrom`], run inside the shield.
///
/// # Safety
/// As [`recvfrom`].
unsafe fn recvfrom_unshielded(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::recvfrom(fd, buf, len, flags, addr, addrlen) };
    let Some(receiver) = associated(fd) else { return real_call() };
    let Some(_guard) = Guard::enter() else { return real_call() };
    let part = [iovec { iov_base: buf, iov_len: len }];
    // SAFETY: as the caller guarantees.
    unsafe { receive_datagram(fd, receiver, &part, flags, addr, addrlen, None, None) }
}

/// recv(2).
///
/// # Safety
/// As recv(2).
#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { recv_unshielded(fd, buf, len, flags) })
}

/// The work of [`recv`], run inside the shield.
///
/// # Safety
/// As [`recv`].
unsafe fn recv_unshielded(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::recv(fd, buf, len, flags) };
    let Some(receiver) = associated(fd) else { return real_call() };
    let Some(_guard) = Guard::enter() else { return real_call() };
    let part = [iovec { iov_base: buf, iov_len: len }];
    // SAFETY: as the caller guarantees.
    unsafe { receive_datagram(fd, receiver, &part, flags, null_mut(), null_mut(), None, None) }
}

/// read(2): a datagram without its relay header when `fd` is an associated UDP socket.
///
/// # Safety
/// As read(2).
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { read_unshielded(fd, buf, len) })
}

/// The work of [`read`], run inside the shield.
///
/// # Safety
/// As [`read`].
unsafe fn read_unshielded(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::read(fd, buf, len) };
    let Some(receiver) = associated(fd) else { return real_call() };
    let Some(_guard) = Guard::enter() else { return real_call() };
    let part = [iovec { iov_base: buf, iov_len: len }];
    // SAFETY: as the caller guarantees.
    unsafe { receive_datagram(fd, receiver, &part, 0, null_mut(), null_mut(), None, None) }
}

/// A receive that reports no source (read, readv, preadv2 at the current position) on `fd`
/// into `parts`: a datagram as [`recv`] gives it when `fd` is one of the library's UDP
/// sockets; `real_call` otherwise.
///
/// # Safety
/// `parts` must describe writable memory.
unsafe fn receive_plain(
    fd: c_int,
    parts: &[iovec],
    flags: c_int,
    real_call: impl FnOnce() -> ssize_t,
) -> ssize_t {
    let Some(receiver) = associated(fd) else { return real_call() };
    let Some(_guard) = Guard::enter() else { return real_call() };
    // SAFETY: as the caller guarantees.
    unsafe { receive_datagram(fd, receiver, parts, flags, null_mut(), null_mut(), None, None) }
}

/// The most iovecs readv(2) takes (UIO_MAXIOV); more is the kernel's EINVAL.
const IOV_MAX: c_int = 1024;

/// readv(2): a datagram as read gives it, scattered over the caller's buffers, when `fd` is
/// one of the library's UDP sockets. Every other descriptor costs one table look-up (an atomic
/// load) and goes straight through.
///
/// # Safety
/// As readv(2).
#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::readv(fd, iov, iovcnt) };
    if !maybe_associated(fd) || iovcnt <= 0 || iovcnt > IOV_MAX {
        return real_call();
    }
    shield(-1, || {
        // SAFETY: the caller passes `iovcnt` iovecs of writable memory.
        unsafe { receive_plain(fd, iov_parts(iov, iovcnt as usize), 0, real_call) }
    })
}

/// The RWF_* flags a read on a socket accepts (RWF_HIPRI to RWF_NOAPPEND; the kernel acts on
/// RWF_NOWAIT only, as MSG_DONTWAIT). Others are the kernel's to refuse.
const SOCKET_READ_FLAGS: c_int = 0x3f;

/// preadv2(2) and preadv64v2: at offset -1 (the current position) a readv with flags, which
/// on a socket reads a datagram; at any other offset a socket says ESPIPE (straight through).
///
/// # Safety
/// As preadv2(2).
unsafe fn preadv2_with(
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: i64,
    flags: c_int,
    real_call: impl FnOnce() -> ssize_t,
) -> ssize_t {
    let ours = offset == -1
        && maybe_associated(fd)
        && iovcnt > 0
        && iovcnt <= IOV_MAX
        && flags & !SOCKET_READ_FLAGS == 0;
    if !ours {
        return real_call();
    }
    let flags = if flags & libc::RWF_NOWAIT != 0 { libc::MSG_DONTWAIT } else { 0 };
    shield(-1, || {
        // SAFETY: the caller passes `iovcnt` iovecs of writable memory.
        unsafe { receive_plain(fd, iov_parts(iov, iovcnt as usize), flags, real_call) }
    })
}

/// preadv2(2); see [`preadv2_with`].
///
/// # Safety
/// As preadv2(2).
#[no_mangle]
pub unsafe extern "C" fn preadv2(
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: libc::off_t,
    flags: c_int,
) -> ssize_t {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::preadv2(fd, iov, iovcnt, offset, flags) };
    // SAFETY: the caller's arguments, under the caller's guarantees.
    unsafe { preadv2_with(fd, iov, iovcnt, offset, flags, real_call) }
}

/// preadv64v2, glibc's other name of preadv2(2); see [`preadv2_with`].
///
/// # Safety
/// As preadv2(2).
#[no_mangle]
pub unsafe extern "C" fn preadv64v2(
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: libc::off64_t,
    flags: c_int,
) -> ssize_t {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::preadv64v2(fd, iov, iovcnt, offset, flags) };
    // SAFETY: the caller's arguments, under the caller's guarantees.
    unsafe { preadv2_with(fd, iov, iovcnt, offset, flags, real_call) }
}

/// __read_chk: read(2) in a program built with _FORTIFY_SOURCE (glibc's version calls its
/// internal read, never the `read` hook). A length past the buffer goes to glibc's, which
/// aborts the program as it would without the library.
///
/// # Safety
/// As read(2), `buflen` being the size of `buf`.
#[no_mangle]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
) -> ssize_t {
    if len > buflen || !maybe_associated(fd) {
        // SAFETY: forwarded unchanged under the caller's guarantees.
        return unsafe { real::__read_chk(fd, buf, len, buflen) };
    }
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { read_unshielded(fd, buf, len) })
}

/// __recv_chk: recv(2) in a program built with _FORTIFY_SOURCE; as [`__read_chk`].
///
/// # Safety
/// As recv(2), `buflen` being the size of `buf`.
#[no_mangle]
pub unsafe extern "C" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    if len > buflen || !maybe_associated(fd) {
        // SAFETY: forwarded unchanged under the caller's guarantees.
        return unsafe { real::__recv_chk(fd, buf, len, buflen, flags) };
    }
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { recv_unshielded(fd, buf, len, flags) })
}

/// __recvfrom_chk: recvfrom(2) in a program built with _FORTIFY_SOURCE; as [`__read_chk`].
///
/// # Safety
/// As recvfrom(2), `buflen` being the size of `buf`.
#[no_mangle]
pub unsafe extern "C" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    if len > buflen || !maybe_associated(fd) {
        // SAFETY: forwarded unchanged under the caller's guarantees.
        return unsafe { real::__recvfrom_chk(fd, buf, len, buflen, flags, addr, addrlen) };
    }
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { recvfrom_unshielded(fd, buf, len, flags, addr, addrlen) })
}

/// recvmsg(2).
///
/// # Safety
/// As recvmsg(2).
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { recvmsg_unshielded(fd, msg, flags) })
}

/// The work of [`recvmsg`], run inside the shield.
///
/// # Safety
/// As [`recvmsg`].
unsafe fn recvmsg_unshielded(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    let receiver = if msg.is_null() { None } else { associated(fd) };
    let Some(receiver) = receiver else {
        // SAFETY: forwarded unchanged under the caller's guarantees.
        return unsafe { real::recvmsg(fd, msg, flags) };
    };
    let Some(_guard) = Guard::enter() else {
        // SAFETY: as above.
        return unsafe { real::recvmsg(fd, msg, flags) };
    };
    // SAFETY: the caller passes a valid msghdr (checked non-null).
    unsafe { recvmsg_on(fd, receiver, msg, flags) }
}

/// One message into `msg` (non-null), as [`recvmsg`] receives it on `receiver`.
///
/// # Safety
/// As recvmsg(2), with `msg` non-null.
unsafe fn recvmsg_on(fd: c_int, receiver: Receiver, msg: *mut msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller passes a valid msghdr.
    let m = unsafe { &mut *msg };
    // SAFETY: msg_iov holds msg_iovlen iovecs.
    let parts = unsafe { iov_parts(m.msg_iov, m.msg_iovlen) };
    let mut namelen = m.msg_namelen;
    let name = m.msg_name.cast::<sockaddr>();
    let mut control_len = m.msg_controllen;
    let control = (!m.msg_control.is_null()).then_some((&mut m.msg_control, &mut control_len));
    let mut out_flags = 0;
    // SAFETY: as the caller guarantees.
    let n = unsafe {
        receive_datagram(
            fd,
            receiver,
            parts,
            flags,
            name,
            if name.is_null() { null_mut() } else { &mut namelen },
            control,
            Some(&mut out_flags),
        )
    };
    if n >= 0 {
        m.msg_namelen = namelen;
        m.msg_controllen = control_len;
        m.msg_flags = out_flags;
    }
    n
}

/// recvmmsg(2): each message as recvmsg would receive it (the first may wait, the rest do not).
///
/// # Safety
/// As recvmmsg(2).
#[no_mangle]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    msgs: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { recvmmsg_unshielded(fd, msgs, vlen, flags, timeout) })
}

/// The work of [`recvmmsg`], run inside the shield.
///
/// # Safety
/// As [`recvmmsg`].
unsafe fn recvmmsg_unshielded(
    fd: c_int,
    msgs: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    let receiver = if msgs.is_null() || vlen == 0 { None } else { associated(fd) };
    let Some(receiver) = receiver else {
        // SAFETY: forwarded unchanged.
        return unsafe { real::recvmmsg(fd, msgs, vlen, flags, timeout) };
    };
    let Some(_guard) = Guard::enter() else {
        // SAFETY: forwarded unchanged.
        return unsafe { real::recvmmsg(fd, msgs, vlen, flags, timeout) };
    };
    let mut received = 0;
    for i in 0..vlen as usize {
        let these = if i == 0 { flags } else { flags | libc::MSG_DONTWAIT } & !libc::MSG_WAITFORONE;
        // SAFETY: the caller passes `vlen` messages.
        let entry = unsafe { &mut *msgs.add(i) };
        // SAFETY: the caller's message, under the caller's guarantees for it.
        let n = unsafe { recvmsg_on(fd, receiver, &mut entry.msg_hdr, these) };
        if n < 0 {
            return if received == 0 { -1 } else { received };
        }
        entry.msg_len = n as c_uint;
        received += 1;
    }
    received
}

/// syscall(2): libuv (node, dig) sends and receives datagrams with raw `syscall(SYS_sendmmsg…)`
/// rather than the libc wrappers, and closes descriptors with `syscall(SYS_close)`, so the
/// system calls that carry datagrams, connect sockets, close or copy descriptors are handed to
/// the hooks; every other number goes straight to libc.
///
/// Declared with six fixed arguments: on x86_64 and aarch64 Linux, variadic integer arguments
/// travel exactly like fixed ones, and surplus arguments are ignored by the kernel.
///
/// # Safety
/// As syscall(2) for the given number.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[no_mangle]
pub unsafe extern "C" fn syscall(
    number: libc::c_long,
    a1: libc::c_long,
    a2: libc::c_long,
    a3: libc::c_long,
    a4: libc::c_long,
    a5: libc::c_long,
    a6: libc::c_long,
) -> libc::c_long {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(-1, || unsafe { syscall_unshielded(number, a1, a2, a3, a4, a5, a6) })
}

/// The work of [`syscall`], run inside the shield.
///
/// # Safety
/// As [`syscall`].
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn syscall_unshielded(
    number: libc::c_long,
    a1: libc::c_long,
    a2: libc::c_long,
    a3: libc::c_long,
    a4: libc::c_long,
    a5: libc::c_long,
    a6: libc::c_long,
) -> libc::c_long {
    // SAFETY: (every arm) the caller passes this system call's arguments, which the matching
    // hook takes with their C types.
    unsafe {
        match number {
            libc::SYS_sendmmsg => {
                sendmmsg(a1 as c_int, a2 as *mut mmsghdr, a3 as c_uint, a4 as c_int) as libc::c_long
            }
            libc::SYS_recvmmsg => recvmmsg(
                a1 as c_int,
                a2 as *mut mmsghdr,
                a3 as c_uint,
                a4 as c_int,
                a5 as *mut libc::timespec,
            ) as libc::c_long,
            libc::SYS_sendmsg => {
                sendmsg(a1 as c_int, a2 as *const msghdr, a3 as c_int) as libc::c_long
            }
            libc::SYS_recvmsg => {
                recvmsg(a1 as c_int, a2 as *mut msghdr, a3 as c_int) as libc::c_long
            }
            libc::SYS_sendto => sendto(
                a1 as c_int,
                a2 as *const c_void,
                a3 as size_t,
                a4 as c_int,
                a5 as *const sockaddr,
                a6 as socklen_t,
            ) as libc::c_long,
            libc::SYS_read => read(a1 as c_int, a2 as *mut c_void, a3 as size_t) as libc::c_long,
            libc::SYS_readv => readv(a1 as c_int, a2 as *const iovec, a3 as c_int) as libc::c_long,
            libc::SYS_recvfrom => recvfrom(
                a1 as c_int,
                a2 as *mut c_void,
                a3 as size_t,
                a4 as c_int,
                a5 as *mut sockaddr,
                a6 as *mut socklen_t,
            ) as libc::c_long,
            libc::SYS_connect => {
                crate::ffi::hooks::connect(a1 as c_int, a2 as *const sockaddr, a3 as socklen_t)
                    as libc::c_long
            }
            // libuv closes (and copies) descriptors this way: the library's state for the
            // socket, a UDP association's control connection included, goes with it.
            libc::SYS_close => crate::ffi::hooks::close(a1 as c_int) as libc::c_long,
            libc::SYS_close_range => {
                crate::ffi::hooks::close_range(a1 as c_uint, a2 as c_uint, a3 as c_int)
                    as libc::c_long
            }
            libc::SYS_dup => crate::ffi::hooks::dup(a1 as c_int) as libc::c_long,
            libc::SYS_dup3 => {
                crate::ffi::hooks::dup3(a1 as c_int, a2 as c_int, a3 as c_int) as libc::c_long
            }
            _ => real::syscall(number, a1, a2, a3, a4, a5, a6),
        }
    }
}
