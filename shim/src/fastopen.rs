//! TCP Fast Open (issue 11, item 10): `sendto`, `sendmsg` or `sendmmsg` with MSG_FASTOPEN and a
//! destination on an unconnected TCP socket is a connect carrying its first data. It is routed
//! exactly as connect(2) would be: a destination socks.conf sends through a server is connected
//! through the server (the SOCKS handshake cannot ride in the SYN, so the program's data follows
//! the handshake as an ordinary send), a denied one fails as connect fails, and only a direct
//! destination keeps the real Fast Open call.
//!
//! A `sendto` with a destination on an unconnected TCP socket *without* MSG_FASTOPEN needs
//! nothing: the kernel ignores the address and fails with EPIPE. `TCP_FASTOPEN_CONNECT` is a
//! socket option followed by connect(2), which is hooked.
//!
//! Not here: the C structures and the data sent after the connect (see `udp_hooks`).

use libc::c_int;

use crate::ffi::real;
use crate::ffi::sockaddr::RawAddr;
use crate::intercept;
use crate::outcome::{Cause, Outcome};

/// What a send with MSG_FASTOPEN and a destination becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastOpen {
    /// Not a TCP socket: the datagram paths decide.
    NotStream,
    /// A direct destination (or an already connected socket): the real call, unchanged.
    PassThrough,
    /// Connected through a server: send the data as a plain send, without address or flag.
    Connected,
    /// Refused: -1 with this cause's errno (the same as connect's).
    Fail(Cause),
}

/// Routes a Fast Open send on `fd` to `dst` as connect(2) would route it; `nested` as for
/// `intercept::connect`. A panic is the exported function's shield's (EIO), never a direct
/// connection.
pub fn connect(fd: c_int, dst: &RawAddr, nested: bool) -> FastOpen {
    if real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) != Some(libc::SOCK_STREAM) {
        return FastOpen::NotStream;
    }
    match intercept::connect(fd, dst, nested) {
        Outcome::PassThrough => FastOpen::PassThrough,
        Outcome::Done => FastOpen::Connected,
        Outcome::Fail(cause) => FastOpen::Fail(cause),
    }
}
