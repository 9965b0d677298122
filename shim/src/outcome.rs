//! One way to fail, for the whole library: every hook's work ends in an [`Outcome`] — pass the
//! call through, done, or failed with a [`Cause`] — and [`Cause::errno`] is the one table from
//! cause to errno (documented in socks.conf(5), section ERRORS). Whatever goes wrong, a
//! destination that must go through a SOCKS server gets one of these errors, never a direct
//! connection.
//!
//! The resolver functions report a cause in their own conventions as well: [`Cause::eai`] is
//! the EAI_* code getaddrinfo and getnameinfo return, [`Cause::h_errno`] the h_errno that
//! gethostbyname*, the `_r` variants and the res_* family set (next to errno, which is always
//! [`Cause::errno`]; the `_r` variants return it). Both tables are beside the errno table in
//! socks.conf(5).
//!
//! [`shield`] is the one wrapper every exported function runs its work in: a panic becomes
//! `Cause::Panic` (errno EIO) and the call's failure value, never an unwind into C and never
//! the real call made anyway. Before the body runs, it makes sure the library's panic hook is
//! set (`log::quiet_panics`), so a panic is never printed on the program's stderr. The
//! resolver functions that report through h_errno use [`shield_resolver`], the same shield
//! that also sets h_errno.
//!
//! Not here: where the causes arise (`intercept`, `proxy`, `udp`).

use std::panic::{catch_unwind, AssertUnwindSafe};

use libc::c_int;
use socks_proto::client::ClientError;
use socks_proto::http_connect::HttpConnectError;
use socks_proto::{Failure, ProtoError};

use crate::ffi::real;

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
    crate::log::quiet_panics();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            real::set_errno(Cause::Panic.errno());
            failed
        }
    }
}

/// [`shield`] for the functions that report through h_errno (gethostbyname*, res_*): a panic
/// also sets h_errno to `Cause::Panic.h_errno()` (NO_RECOVERY).
pub fn shield_resolver<T>(failed: T, body: impl FnOnce() -> T) -> T {
    crate::log::quiet_panics();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            real::set_h_errno(Cause::Panic.h_errno());
            real::set_errno(Cause::Panic.errno());
            failed
        }
    }
}

/// For the res_* family: sets errno and h_errno for `cause` and returns -1.
pub fn fail_resolver(cause: Cause) -> c_int {
    real::set_h_errno(cause.h_errno());
    real::set_errno(cause.errno());
    -1
}

/// netdb.h's h_errno values.
pub mod netdb {
    use libc::c_int;
    /// See errno.
    pub const NETDB_INTERNAL: c_int = -1;
    /// Authoritative answer: no such host.
    pub const HOST_NOT_FOUND: c_int = 1;
    /// Non-authoritative answer, or a server failure: try again later.
    pub const TRY_AGAIN: c_int = 2;
    /// A non-recoverable error (glibc's h_errno for a REFUSED answer).
    pub const NO_RECOVERY: c_int = 3;
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
    /// A fake address never handed out in this process's map (another user's, or a private map's).
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
    /// A signal handler interrupted the library in this thread, and what it asked for needs
    /// memory the interrupted code may be holding (a UDP association, a datagram with control
    /// messages, a name lookup answered with a fake address the heap-free path cannot give):
    /// try again outside it. Never the real call instead.
    SignalContext,
    /// A control message (ancillary data) on a relayed datagram that the relay cannot carry
    /// (IP options, SCM_RIGHTS, an unknown type, a malformed header): as the kernel fails a
    /// control message it cannot use.
    ControlMessage,
    /// A resolver question about a name resolved on the far side that only the server could
    /// answer (anything but an A/AAAA or a fake address's PTR question): refused, never asked
    /// locally.
    RemoteQuestion,
    /// A DNS query over TCP (port 53, reached directly) asks about a name resolved on the far
    /// side, on a connection the library does not answer on (made from a signal handler inside
    /// the library, or no loopback listener): never let reach the local name server
    /// (`dnswire`).
    RemoteNameOverTcp,
    /// The fake address map is full: a new name resolved on the far side gets no address.
    MapFull,
    /// The fake address map could not be created (its shared mapping, made before the first
    /// name or the first fork).
    MapUnavailable,
    /// A name that cannot stand behind a fake address (longer than 255 bytes, a NUL byte).
    BadName,
    /// The answer does not fit in the caller's buffer (res_*, getnameinfo).
    AnswerTooLong,
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
            Cause::ControlMessage | Cause::BadName => libc::EINVAL,
            Cause::RemoteQuestion | Cause::RemoteNameOverTcp => libc::ECONNREFUSED,
            Cause::MapFull | Cause::MapUnavailable => libc::ENOMEM,
            Cause::AnswerTooLong => libc::EMSGSIZE,
            Cause::TableFull => libc::EMFILE,
            Cause::Panic => libc::EIO,
            Cause::Os(errno) => errno,
        }
    }

    /// The EAI_* code getaddrinfo(3) and getnameinfo(3) return for this cause (EAI_SYSTEM:
    /// see errno).
    pub fn eai(self) -> c_int {
        match self {
            Cause::SignalContext => libc::EAI_AGAIN,
            Cause::MapFull => libc::EAI_MEMORY,
            Cause::BadName => libc::EAI_NONAME,
            Cause::AnswerTooLong => libc::EAI_OVERFLOW,
            Cause::Panic | Cause::Os(_) => libc::EAI_SYSTEM,
            _ => libc::EAI_FAIL,
        }
    }

    /// The h_errno gethostbyname*, their `_r` variants and the res_* family set for this cause.
    pub fn h_errno(self) -> c_int {
        match self {
            Cause::SignalContext => netdb::TRY_AGAIN,
            Cause::BadName => netdb::HOST_NOT_FOUND,
            Cause::AnswerTooLong | Cause::Os(_) => netdb::NETDB_INTERNAL,
            _ => netdb::NO_RECOVERY,
        }
    }

    /// The cause of a failed HTTP CONNECT (see socks.conf(5) ERRORS): 407 (or 401) as a refused
    /// password, 504 as a timeout, any other status as a refusal, a broken answer as a
    /// protocol error.
    pub fn of_http(error: &HttpConnectError) -> Cause {
        match error {
            // 401 too: tinyproxy (1.11) answers a CONNECT with wrong credentials with it.
            HttpConnectError::ProxyAuthRequired { .. }
            | HttpConnectError::Refused { status: 401, .. } => Cause::AuthRejected,
            HttpConnectError::Refused { status: 504, .. } => Cause::Server(Failure::TtlExpired),
            HttpConnectError::Refused { .. } => Cause::Server(Failure::Refused),
            HttpConnectError::BadHost | HttpConnectError::BadCredentials => Cause::Unsupported,
            HttpConnectError::NotHttp
            | HttpConnectError::Malformed(_)
            | HttpConnectError::HeadTooLong
            | HttpConnectError::TooManyHeaders
            | HttpConnectError::Finished => Cause::Protocol,
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
        assert_eq!(Cause::ControlMessage.errno(), libc::EINVAL);
        assert_eq!(Cause::RemoteQuestion.errno(), libc::ECONNREFUSED);
        assert_eq!(Cause::RemoteNameOverTcp.errno(), libc::ECONNREFUSED);
        assert_eq!(Cause::MapFull.errno(), libc::ENOMEM);
        assert_eq!(Cause::MapUnavailable.errno(), libc::ENOMEM);
        assert_eq!(Cause::BadName.errno(), libc::EINVAL);
        assert_eq!(Cause::AnswerTooLong.errno(), libc::EMSGSIZE);
        assert_eq!(Cause::TableFull.errno(), libc::EMFILE);
        assert_eq!(Cause::Panic.errno(), libc::EIO);
        assert_eq!(Cause::Os(libc::EBADF).errno(), libc::EBADF);
    }

    #[test]
    fn resolver_conventions() {
        assert_eq!(Cause::SignalContext.eai(), libc::EAI_AGAIN);
        assert_eq!(Cause::SignalContext.h_errno(), netdb::TRY_AGAIN);
        assert_eq!(Cause::MapFull.eai(), libc::EAI_MEMORY);
        assert_eq!(Cause::MapFull.h_errno(), netdb::NO_RECOVERY);
        assert_eq!(Cause::MapUnavailable.eai(), libc::EAI_FAIL);
        assert_eq!(Cause::BadName.eai(), libc::EAI_NONAME);
        assert_eq!(Cause::BadName.h_errno(), netdb::HOST_NOT_FOUND);
        assert_eq!(Cause::RemoteQuestion.h_errno(), netdb::NO_RECOVERY);
        assert_eq!(Cause::AnswerTooLong.eai(), libc::EAI_OVERFLOW);
        assert_eq!(Cause::AnswerTooLong.h_errno(), netdb::NETDB_INTERNAL);
        assert_eq!(Cause::Panic.eai(), libc::EAI_SYSTEM);
        assert_eq!(Cause::Panic.h_errno(), netdb::NO_RECOVERY);
        assert_eq!(Cause::Os(libc::ERANGE).h_errno(), netdb::NETDB_INTERNAL);
        real::set_h_errno(0);
        let p: *mut u8 = shield_resolver(std::ptr::null_mut(), || panic!("a bug"));
        assert!(p.is_null());
        assert_eq!(real::errno(), libc::EIO);
        assert_eq!(fail_resolver(Cause::SignalContext), -1);
        assert_eq!(real::errno(), libc::EAGAIN);
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
