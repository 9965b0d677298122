//! The few places where sockd needs libc directly: syslog, adopting the socket inetd hands over
//! on standard input and the sockets systemd passes (socket activation), and dropping
//! privileges. Each unsafe block states why it is sound; callers get safe functions.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::net::TcpStream;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Opens the syslog connection as `sockd` with the PID, facility LOG_DAEMON.
pub fn open_syslog() {
    // openlog keeps the ident pointer, so it must live for the whole process: a 'static C string.
    static IDENT: &[u8] = b"sockd\0";
    // SAFETY: IDENT is NUL-terminated and 'static; openlog has no other preconditions.
    unsafe {
        libc::openlog(IDENT.as_ptr().cast(), libc::LOG_PID | libc::LOG_NDELAY, libc::LOG_DAEMON)
    };
}

/// Sends one message to syslog at `priority` (a LOG_* level). NUL bytes are replaced.
pub fn syslog(priority: libc::c_int, message: &str) {
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: both strings are valid NUL-terminated C strings; the format "%s" consumes exactly
    // the one argument given, so no user text is ever interpreted as a format.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), text.as_ptr()) };
}

/// Takes ownership of standard input as a TCP socket (inetd mode), after checking it is one.
pub fn stdin_socket() -> io::Result<TcpStream> {
    // SAFETY: fd 0 stays open for the duration of this borrow; we only query it.
    let fd = unsafe { BorrowedFd::borrow_raw(0) };
    let sock = socket2::SockRef::from(&fd);
    match sock.r#type() {
        Ok(socket2::Type::STREAM) if sock.is_listener().unwrap_or(false) => {
            return Err(io::Error::other(
                "standard input is a listening socket, not a connection: run sockd --inetd \
                 per connection (inetd `nowait`, systemd Accept=yes)",
            ))
        }
        Ok(socket2::Type::STREAM) => {}
        Ok(_) => return Err(io::Error::other("standard input is not a stream socket")),
        Err(e) => {
            return Err(io::Error::new(e.kind(), format!("standard input is not a socket: {e}")))
        }
    }
    // SAFETY: fd 0 is an open stream socket (checked above) that nothing else in this process
    // owns; inetd gave it to us, and from here on the returned TcpStream is its only owner.
    Ok(unsafe { TcpStream::from_raw_fd(0) })
}

/// Whether the descriptors systemd passed have been taken (they can be, once per process).
static PASSED_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Takes ownership of the descriptors systemd passed (sd_listen_fds(3): `LISTEN_FDS` of them
/// from fd 3 on), after checking each is open. Only the first call in a process takes them; a
/// later one is an error, so no descriptor gets two owners. The caller must make this call
/// before the process opens any descriptor of its own (it is the first thing `sockd::run` does
/// in standalone mode), so that an open descriptor in the range can only be an inherited one.
pub fn adopt_passed_fds(fds: std::ops::Range<RawFd>) -> io::Result<Vec<OwnedFd>> {
    if PASSED_TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(io::Error::other("the sockets passed by systemd were already taken"));
    }
    let mut owned = Vec::with_capacity(fds.len());
    for fd in fds {
        // SAFETY: F_GETFD only queries the descriptor table entry; any integer is allowed.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("fd {fd}: {e}")));
        }
        // SAFETY: fd is open (checked above) and was inherited: the caller runs before sockd
        // opens anything, and LISTEN_PID named this process, so systemd handed this descriptor
        // to us; the guard above lets this happen once, so the OwnedFd is its only owner.
        owned.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(owned)
}

/// Runs the rest of the process as `user`: its group as the only group, then its uid.
pub fn drop_privileges(user: &str) -> io::Result<()> {
    let name = CString::new(user).map_err(|_| io::Error::other("user name contains NUL"))?;
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: zeroed passwd is a valid out-parameter.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the sizes given.
    let rc = unsafe {
        libc::getpwnam_r(name.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found)
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    if found.is_null() {
        return Err(io::Error::other(format!("no user `{user}`")));
    }
    let (uid, gid) = (entry.pw_uid, entry.pw_gid);
    // SAFETY: plain system calls with integer arguments and a one-element group list.
    unsafe {
        if libc::setgroups(1, &gid) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
            return Err(io::Error::last_os_error());
        }
        // Make sure there is no way back.
        if uid != 0 && libc::setuid(0) == 0 {
            return Err(io::Error::other("could still regain root after dropping privileges"));
        }
    }
    Ok(())
}

/// A non-blocking pipe, for moving bytes between sockets with splice(2).
#[derive(Debug)]
pub struct Pipe {
    /// The end splice reads from.
    pub read: std::os::fd::OwnedFd,
    /// The end splice writes to.
    pub write: std::os::fd::OwnedFd,
}

/// Pipe capacity asked for (the kernel may give less; 64 KiB is the default).
const PIPE_CAPACITY: libc::c_int = 256 * 1024;

/// A new non-blocking, close-on-exec pipe, enlarged when the system allows.
pub fn pipe() -> io::Result<Pipe> {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let pipe = unsafe {
        Pipe {
            read: std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            write: std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        }
    };
    // Best effort: a larger pipe moves more per system call.
    // SAFETY: F_SETPIPE_SZ takes an int; failure leaves the default size.
    unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, PIPE_CAPACITY) };
    Ok(pipe)
}

/// splice(2) of up to `len` bytes from `from` to `to`, without blocking; how many moved
/// (0 = end of stream when `from` is a socket).
pub fn splice(from: std::os::fd::RawFd, to: std::os::fd::RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (borrowed from live
    // objects by the caller); null offsets are required for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
