//! The trapped receives that report a source address: `recvfrom` with an address argument,
//! and every `recvmsg` and `recvmmsg` (their `msg_name` lives in the program's memory). Only
//! for a socket the supervisor rewrites reply sources of (the `rewrites` table, by
//! `SO_COOKIE`: a socket with a relayed UDP destination, or one whose DNS queries go to the
//! name service) is anything done; every other call goes on to the kernel
//! (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`: nothing was decided from the program's memory), and
//! while no socket has entries at all, without even a look at the socket.
//!
//! For a socket with entries, on the notification loop's thread: the next datagram is peeked
//! at on the supervisor's copy (MSG_PEEK|MSG_DONTWAIT|MSG_TRUNC, no data copied). If its source
//! is not one of the socket's rewritten sources, CONTINUE (the kernel receives it as it would
//! have). If it is, the supervisor receives it on its copy (MSG_DONTWAIT, plus the program's
//! MSG_PEEK and MSG_TRUNC) and writes into the program's memory — after checking
//! `SECCOMP_IOCTL_NOTIF_ID_VALID` — the data (scattered over its buffers, cut to their size),
//! the source shown (the destination the program named, or the real name server instead of
//! the responder; cut to the program's address length, the full length written back), and for
//! `recvmsg` the control messages, `msg_controllen` and `msg_flags` (MSG_TRUNC when the data
//! was cut, as the kernel sets it). The call returns the byte count (the whole datagram's
//! length with MSG_TRUNC, as the kernel). `recvmmsg` on such a socket always gets one datagram
//! (rewritten or not) into its first message and returns 1 (a short count, which the call
//! allows): the kernel's own call could take one of ours after the first. MSG_ERRQUEUE and
//! MSG_OOB go on to the kernel.
//!
//! An empty queue: a non-blocking socket or MSG_DONTWAIT gets EAGAIN at once. A blocking call
//! waits on a handler thread (`pool`): poll on the copy in steps of [`WAIT_STEP`], re-checking
//! NOTIF_ID_VALID, then decides again as above. SO_RCVTIMEO is honoured (EAGAIN when it
//! expires). The filter is loaded with WAIT_KILLABLE_RECV where the kernel has it, so a
//! signal no longer interrupts a call the supervisor has received: the waiting thread looks at
//! the program thread's pending signals at each step and answers as the kernel's receive would
//! (`interrupt`: restarted after a SA_RESTART handler, EINTR after another one or with
//! SO_RCVTIMEO set), so a handler (alarm(2) around a blocking recvfrom) runs within
//! [`WAIT_STEP`].
//!
//! Races: the peek and the receive are two calls. If another thread of the program takes the
//! datagram in between, the one the supervisor receives is reported with its own (rewritten or
//! real) source; but after a CONTINUE the kernel's receive could, in that case, take one of ours
//! and report the loopback socket's address (never a datagram from anywhere else: the address
//! shown would be wrong, nothing would leak).
//!
//! Not here: the filter (`filter`), the tables (`udp`), answering (`supervise::Pending`).

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::interrupt;
use crate::msghdr;
use crate::supervise::{copy_socket, log, Pending};
use crate::{sockaddr, sys};

/// How long a blocking receive waits between two looks at the call and the signals.
pub const WAIT_STEP: Duration = Duration::from_millis(50);
/// The most data bytes received for the program at once (more than any UDP datagram).
const DATA_MAX: usize = 65_536;

/// The call, as the filter saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    From,
    Msg,
    Mmsg,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::From => "recvfrom",
            Call::Msg => "recvmsg",
            Call::Mmsg => "recvmmsg",
        }
    }
}

/// What one look at the socket decided.
enum Step {
    /// Not ours: the kernel's call.
    Continue,
    /// Nothing queued.
    Empty,
    /// Done: a byte count or message count, or an errno.
    Answer(Result<i64, i32>),
    /// The notification is gone.
    Gone,
}

/// Everything one receive needs.
struct Ctx {
    tid: u32,
    pid: u32,
    cookie: u64,
    socket: OwnedFd,
    call: Call,
    args: [u64; 6],
    flags: i32,
}

/// Handles one trapped receive (on the notification loop's thread).
pub fn handle(pending: Pending, notif: libc::seccomp_notif, call: Call) {
    let args = notif.data.args;
    if pending.shared.udp.rewrites.is_empty() || (call == Call::From && args[4] == 0) {
        return pending.proceed();
    }
    let fd = args[0] as i32;
    let (pid, socket) = match copy_socket(&pending, notif.pid, fd) {
        Ok(Some(pair)) => pair,
        Ok(None) => return,
        Err(_) => return pending.proceed(),
    };
    let Ok(cookie) = sys::socket_cookie(socket.as_fd()) else { return pending.proceed() };
    if !pending.shared.udp.rewrites.has(cookie) {
        return pending.proceed();
    }
    let flags = match call {
        Call::From | Call::Mmsg => args[3] as i32,
        Call::Msg => args[2] as i32,
    };
    if flags & (libc::MSG_ERRQUEUE | libc::MSG_OOB) != 0 {
        return pending.proceed();
    }
    let ctx = Ctx { tid: notif.pid, pid, cookie, socket, call, args, flags };
    match ctx.attempt(&pending) {
        Step::Continue => pending.proceed(),
        Step::Answer(result) => answer(pending, result),
        Step::Gone => {}
        Step::Empty if !ctx.blocking() => pending.reply(libc::EAGAIN),
        Step::Empty => {
            if let Err(e) = crate::pool::run(move || ctx.wait(pending)) {
                // The closure (and the Pending in it) was dropped: the call failed closed.
                eprintln!("socks-supervise: cannot start a handler thread: {e}");
            }
        }
    }
}

fn answer(pending: Pending, result: Result<i64, i32>) {
    match result {
        Ok(n) => pending.reply_value(n),
        Err(errno) => pending.reply(errno),
    }
}

impl Ctx {
    /// Whether the program's call would block (no MSG_DONTWAIT, no O_NONBLOCK).
    fn blocking(&self) -> bool {
        self.flags & libc::MSG_DONTWAIT == 0
            && sys::status_flags(self.socket.as_fd()).is_ok_and(|f| f & libc::O_NONBLOCK == 0)
    }

    /// A blocking receive with an empty queue, on a handler thread (see the module header).
    fn wait(self, pending: Pending) {
        let deadline = sys::receive_timeout(self.socket.as_fd()).map(|t| Instant::now() + t);
        let step_ms = WAIT_STEP.as_millis() as i32;
        let mut signals = interrupt::Watch::new(self.tid, self.pid);
        loop {
            let readable = sys::poll_one(self.socket.as_fd(), libc::POLLIN, step_ms);
            if !pending.valid() {
                return;
            }
            if let Some(errno) = signals.interrupted(deadline.is_some()) {
                return pending.reply(errno);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return pending.reply(libc::EAGAIN);
            }
            match readable {
                Ok(0) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                _ => {}
            }
            match self.attempt(&pending) {
                Step::Empty => continue,
                Step::Continue => return pending.proceed(),
                Step::Answer(result) => return answer(pending, result),
                Step::Gone => return,
            }
        }
    }

    /// Peeks at the next datagram and, if it is from a rewritten source, receives it for the
    /// program.
    fn attempt(&self, pending: &Pending) -> Step {
        let fd = self.socket.as_fd();
        let peek = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC;
        let head = match sys::recv_message(fd, &mut [], 0, peek) {
            Ok(head) => head,
            Err(libc::EAGAIN) => return Step::Empty,
            Err(libc::EINTR) => return Step::Empty,
            // A pending error (ICMP) and the like: the kernel's to report.
            Err(_) => return Step::Continue,
        };
        let rewrites = &pending.shared.udp.rewrites;
        let ours = sockaddr::parse(&head.name).and_then(|src| rewrites.shown(self.cookie, src));
        // The kernel's recvmmsg could take one of ours after the head: it gets one message here.
        if ours.is_none() && self.call != Call::Mmsg {
            return Step::Continue;
        }
        let step = match self.call {
            Call::From => self.recvfrom(pending),
            Call::Msg => self.recvmsg(pending, self.args[1]).map_or(Step::Gone, Step::Answer),
            Call::Mmsg => self.recvmmsg(pending),
        };
        match step {
            // Another thread of the program took the datagram since the peek.
            Step::Answer(Err(libc::EAGAIN)) => Step::Empty,
            step => step,
        }
    }

    /// Receives on the copy into a buffer of `room` bytes (at most [`DATA_MAX`]) with room for
    /// `control` control bytes: the datagram, its data, and the source to show.
    fn receive(
        &self,
        pending: &Pending,
        room: u64,
        control: usize,
    ) -> Result<(sys::Received, Vec<u8>, Option<SocketAddr>), i32> {
        let mut data = vec![0u8; room.min(DATA_MAX as u64) as usize];
        let flags = (self.flags & (libc::MSG_PEEK | libc::MSG_TRUNC)) | libc::MSG_DONTWAIT;
        let got = sys::recv_message(self.socket.as_fd(), &mut data, control, flags)?;
        let kept = got.len.min(data.len());
        data.truncate(kept);
        let source = sockaddr::parse(&got.name);
        let shown = source.map(|s| pending.shared.udp.rewrites.shown(self.cookie, s).unwrap_or(s));
        if let Some(shown) = shown {
            log(
                &pending.shared.settings,
                4,
                self.pid,
                format_args!("{}: {} bytes from {shown}", self.call.name(), got.len),
            );
        }
        Ok((got, data, shown))
    }

    fn recvfrom(&self, pending: &Pending) -> Step {
        let (buf, len, addr, len_ptr) = (self.args[1], self.args[2], self.args[4], self.args[5]);
        let room = match read_u32(self.tid, len_ptr) {
            Ok(room) => room as i32,
            Err(errno) => return Step::Answer(Err(errno)),
        };
        if room < 0 {
            return Step::Answer(Err(libc::EINVAL));
        }
        let (got, data, shown) = match self.receive(pending, len, 0) {
            Ok(found) => found,
            Err(errno) => return Step::Answer(Err(errno)),
        };
        if !pending.valid() {
            return Step::Gone;
        }
        let written = write_memory(self.tid, buf, &data).and_then(|()| match shown {
            Some(shown) => write_name(self.tid, addr, len_ptr, room as u32, shown),
            None => write_memory(self.tid, len_ptr, &0u32.to_ne_bytes()),
        });
        Step::Answer(written.map(|()| got.len as i64))
    }

    /// recvmsg into the msghdr at `at`: the byte count or errno; `None` when the call is gone.
    fn recvmsg(&self, pending: &Pending, at: u64) -> Option<Result<i64, i32>> {
        let header = match sys::read_memory(self.tid, at, msghdr::MSGHDR_LEN) {
            Ok(h) => h,
            Err(_) => return Some(Err(libc::EFAULT)),
        };
        let Some(m) = msghdr::parse_msghdr(&header) else { return Some(Err(libc::EFAULT)) };
        if m.iovlen > msghdr::UIO_MAXIOV as u64 {
            return Some(Err(libc::EMSGSIZE));
        }
        let iov = if m.iovlen == 0 {
            Vec::new()
        } else {
            match sys::read_memory(self.tid, m.iov, m.iovlen as usize * msghdr::IOVEC_LEN) {
                Ok(bytes) => msghdr::parse_iovecs(&bytes),
                Err(_) => return Some(Err(libc::EFAULT)),
            }
        };
        let room = iov.iter().fold(0u64, |sum, &(_, len)| sum.saturating_add(len));
        let control =
            if m.control == 0 { 0 } else { (m.controllen as usize).min(msghdr::CONTROL_MAX) };
        let (got, data, shown) = match self.receive(pending, room, control) {
            Ok(found) => found,
            Err(errno) => return Some(Err(errno)),
        };
        if !pending.valid() {
            return None;
        }
        let mut flags = got.flags;
        if got.len > data.len() {
            flags |= libc::MSG_TRUNC;
        }
        let written = scatter(self.tid, &iov, &data)
            .and_then(|()| match (m.name, shown) {
                (0, _) => Ok(()),
                (name, Some(shown)) => {
                    let bytes = sockaddr::bytes(shown);
                    let cut = bytes.len().min(m.namelen as usize);
                    write_memory(self.tid, name, &bytes[..cut]).and_then(|()| {
                        write_memory(self.tid, at + 8, &(bytes.len() as u32).to_ne_bytes())
                    })
                }
                (_, None) => write_memory(self.tid, at + 8, &0u32.to_ne_bytes()),
            })
            .and_then(|()| {
                if m.control == 0 {
                    return Ok(());
                }
                write_memory(self.tid, m.control, &got.control)?;
                write_memory(self.tid, at + 40, &(got.control.len() as u64).to_ne_bytes())
            })
            .and_then(|()| write_memory(self.tid, at + 48, &flags.to_ne_bytes()));
        Some(written.map(|()| got.len as i64))
    }

    /// recvmmsg: one datagram into the first message, `msg_len` written; returns 1.
    fn recvmmsg(&self, pending: &Pending) -> Step {
        let (array, vlen) = (self.args[1], self.args[2]);
        if vlen == 0 {
            return Step::Answer(Ok(0));
        }
        match self.recvmsg(pending, array) {
            None => Step::Gone,
            Some(Err(errno)) => Step::Answer(Err(errno)),
            Some(Ok(n)) => {
                let len = u32::try_from(n).unwrap_or(u32::MAX).to_ne_bytes();
                let at = array + msghdr::MMSG_LEN_OFFSET as u64;
                Step::Answer(write_memory(self.tid, at, &len).map(|()| 1))
            }
        }
    }
}

fn read_u32(tid: u32, at: u64) -> Result<u32, i32> {
    let b = sys::read_memory(tid, at, 4).map_err(|_| libc::EFAULT)?;
    Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn write_memory(tid: u32, at: u64, data: &[u8]) -> Result<(), i32> {
    if data.is_empty() {
        return Ok(());
    }
    sys::write_memory(tid, at, data).map_err(|_| libc::EFAULT)
}

/// Writes `addr` at `addr_ptr` cut to `room` bytes and its full length at `len_ptr`.
fn write_name(
    tid: u32,
    addr_ptr: u64,
    len_ptr: u64,
    room: u32,
    addr: SocketAddr,
) -> Result<(), i32> {
    let bytes = sockaddr::bytes(addr);
    let cut = bytes.len().min(room as usize);
    write_memory(tid, addr_ptr, &bytes[..cut])?;
    write_memory(tid, len_ptr, &(bytes.len() as u32).to_ne_bytes())
}

/// Writes `data` over the buffers `iov` in order.
fn scatter(tid: u32, iov: &[(u64, u64)], mut data: &[u8]) -> Result<(), i32> {
    for &(base, len) in iov {
        if data.is_empty() {
            break;
        }
        let take = (len.min(data.len() as u64)) as usize;
        write_memory(tid, base, &data[..take])?;
        data = &data[take..];
    }
    Ok(())
}
