//! One way to fail, for the whole library: every hook's work ends in an [`Outcome`] — pass the
//! call through, done, or failed with a [`Cause`] — and [`Cause::errno`] is the one table from
//! cause to errno (documented in socks.conf(5), section ERRORS). Whatever goes wrong, a
//! destination that must go through a SOCKS server gets one of these errors, never a direct
//! connection.
//!
//! The resolver hooks report through their own conventions (EAI_* codes, h_errno) and are not
//! covered by this table.
//!
//! [`shield`] is the one wrapper every exported function runs its work in: a panic becomes
//! `Cause::Panic` (errno EIO) and the call's failure value, never an unwind into C and never
//! the real call made anyway.
//!
//! Not here: where the causes arise (`intercept`, `proxy`, `udp`).

use std::panic::{catch_unwind, AssertUnwindSafe};

use libc::c_int;

use crate::real;

/// Runs `body`, the whole work of an exported function (the real call included). If it
/// panics, errno is set to `Cause::Panic.errno()` (EIO) and `failed` is returned: the call's
/// own failure value (-1, a null pointer, EAI_SYSTEM…). Every export goes through it:
///
/// ```ignore
/// pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
///     shield(-1, || intercept::listen(fd).answer(|| unsafe { real::listen(fd, backlog) }))
/// }
/// ```
pub fn shield<T>(failed: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            real::set_errno(Cause::Panic.errno());
            failed
        }
    }
}

impl Outcome {
    /// The C return value: the real call's for `PassThrough`, 0 for `Done`, -1 with the
    /// cause's errno for `Fail`.
    pub fn answer(self, real_call: impl FnOnce() -> c_int) -> c_int {
        match self {
            Outcome::PassThrough => real_call(),
            Outcome::Done => 0,
            Outcome::Fail(cause) => fail(cause),
        }
    }
}

/// Sets errno for `cause` and returns -1 (as `c_int`, `ssize_t`, `c_long`…).
pub fn fail<T: From<i8>>(cause: Cause) -> T {
    real::set_errno(cause.errno());
    T::from(-1)
}
use socks_proto::client::ClientError;
use socks_proto::{Failure, ProtoError};

/// The result of handling a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not ours: make the real call with the original arguments.
    PassThrough,
    /// Handled successfully: return 0.
    Done,
    /// Handled, failed: return -1 with `cause.errno()`.
    Fail(Cause),
}

/// Why the library failed a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A socks.conf `deny` line matched the destination.
    Denied,
    /// socks.conf (or the environment) is broken: only local destinations are reached.
    BrokenConfig,
    /// A name's fake address that no `sockd` line covers (it cannot go direct: it is fake).
    NoRoute,
    /// A fake address this process tree never handed out (e.g. from before an exec).
    FakeUnknown,
    /// No SOCKS server accepted the connection (refused, unreachable, down).
    ServersDown,
    /// The server did not connect or answer within `SOCKS_TIMEOUT`.
    Timeout,
    /// The server refused the request with this reply code.
    Server(Failure),
    /// The server refused the username/password, or offered no method we can use.
    AuthRejected,
    /// The server broke the protocol.
    Protocol,
    /// The server's protocol cannot carry the request (a name over SOCKS4, IPv6 over SOCKS4a,
    /// UDP without a SOCKS5 server, a relay address the socket's family cannot reach).
    Unsupported,
    /// A signal handler interrupted the library in this thread, and what it asked for (a UDP
    /// association) needs memory the interrupted code may be holding: try again outside it.
    SignalContext,
    /// The descriptor is beyond the library's table (65,536 descriptors), and what it asked for
    /// (BIND, a UDP association) must be remembered per descriptor.
    TableFull,
    /// A bug: the library panicked. It never unwinds into the program and never bypasses.
    Panic,
    /// A system call the library made on the program's behalf failed with this errno (the
    /// program would have seen it too).
    Os(c_int),
}

impl Cause {
    /// The errno for this cause: the one table of the library.
    pub fn errno(self) -> c_int {
        match self {
            Cause::Denied | Cause::BrokenConfig | Cause::ServersDown => libc::ECONNREFUSED,
            Cause::NoRoute | Cause::FakeUnknown => libc::EHOSTUNREACH,
            Cause::Timeout => libc::ETIMEDOUT,
            Cause::Server(failure) => match failure {
                Failure::NetworkUnreachable => libc::ENETUNREACH,
                Failure::HostUnreachable => libc::EHOSTUNREACH,
                Failure::TtlExpired => libc::ETIMEDOUT,
                Failure::AddressTypeNotSupported => libc::EAFNOSUPPORT,
                Failure::General
                | Failure::NotAllowed
                | Failure::Refused
                | Failure::CommandNotSupported
                | Failure::Unassigned(_) => libc::ECONNREFUSED,
            },
            Cause::AuthRejected => libc::EACCES,
            Cause::Protocol => libc::EPROTO,
            Cause::Unsupported => libc::EAFNOSUPPORT,
            Cause::SignalContext => libc::EAGAIN,
            Cause::TableFull => libc::EMFILE,
            Cause::Panic => libc::EIO,
            Cause::Os(errno) => errno,
        }
    }

    /// The cause of a failed client handshake.
    pub fn of_handshake(error: &ClientError) -> Cause {
        match error {
            ClientError::Refused(failure) => Cause::Server(*failure),
            ClientError::AuthRejected | ClientError::Protocol(ProtoError::NoAcceptableMethod) => {
                Cause::AuthRejected
            }
            ClientError::Protocol(_) => Cause::Protocol,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_errno_per_cause() {
        assert_eq!(Cause::Denied.errno(), libc::ECONNREFUSED);
        assert_eq!(Cause::BrokenConfig.errno(), libc::ECONNREFUSED);
        assert_eq!(Cause::ServersDown.errno(), libc::ECONNREFUSED);
        assert_eq!(Cause::NoRoute.errno(), libc::EHOSTUNREACH);
        assert_eq!(Cause::FakeUnknown.errno(), libc::EHOSTUNREACH);
        assert_eq!(Cause::Timeout.errno(), libc::ETIMEDOUT);
        assert_eq!(Cause::Server(Failure::NotAllowed).errno(), libc::ECONNREFUSED);
        assert_eq!(Cause::Server(Failure::Refused).errno(), libc::ECONNREFUSED);
        assert_eq!(Cause::Server(Failure::HostUnreachable).errno(), libc::EHOSTUNREACH);
        assert_eq!(Cause::Server(Failure::NetworkUnreachable).errno(), libc::ENETUNREACH);
        assert_eq!(Cause::Server(Failure::TtlExpired).errno(), libc::ETIMEDOUT);
        assert_eq!(Cause::AuthRejected.errno(), libc::EACCES);
        assert_eq!(Cause::Protocol.errno(), libc::EPROTO);
        assert_eq!(Cause::Unsupported.errno(), libc::EAFNOSUPPORT);
        assert_eq!(Cause::SignalContext.errno(), libc::EAGAIN);
        assert_eq!(Cause::TableFull.errno(), libc::EMFILE);
        assert_eq!(Cause::Panic.errno(), libc::EIO);
        assert_eq!(Cause::Os(libc::EBADF).errno(), libc::EBADF);
    }

    #[test]
    fn the_shield_turns_a_panic_into_eio_and_the_failure_value() {
        real::set_errno(0);
        assert_eq!(shield(-1, || 7), 7);
        assert_eq!(real::errno(), 0);
        let rc: c_int = shield(-1, || panic!("a bug"));
        assert_eq!((rc, real::errno()), (-1, libc::EIO));
        let p: *mut u8 = shield(std::ptr::null_mut(), || panic!("a bug"));
        assert!(p.is_null());
        assert_eq!(Outcome::Fail(Cause::Denied).answer(|| 0), -1);
        assert_eq!(real::errno(), libc::ECONNREFUSED);
        assert_eq!(Outcome::PassThrough.answer(|| 5), 5);
        assert_eq!(Outcome::Done.answer(|| 5), 0);
    }

    #[test]
    fn handshake_failures() {
        let of = |e: ClientError| Cause::of_handshake(&e).errno();
        assert_eq!(of(ClientError::Refused(Failure::NotAllowed)), libc::ECONNREFUSED);
        assert_eq!(of(ClientError::AuthRejected), libc::EACCES);
        assert_eq!(of(ClientError::Protocol(ProtoError::NoAcceptableMethod)), libc::EACCES);
        assert_eq!(of(ClientError::Protocol(ProtoError::BadReplyVersion(4))), libc::EPROTO);
    }
}
