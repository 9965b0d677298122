//! The libc boundary of the supervisor: every `unsafe` block of the crate is here, each with its
//! `// SAFETY:` note, and each function returns `io::Result` (or an errno) instead of raw codes.
//! Starting the program (a clone sharing memory and descriptors, the filter loaded in the
//! child), the listener's ioctls, pidfds, reading the
//! program's memory, raw `connect`/`send`/`sendmsg`/`recv`/`recvmsg`/`poll` on descriptors the
//! supervisor copied (and `poll` over several, SO_RCVTIMEO),
//! `getifaddrs`, and process housekeeping (subreaper, a SIGCHLD signalfd, `waitpid`).
//!
//! Not here: decisions (`route`), the SOCKS handshake (`proxy`), the notification loop
//! (`supervise`).
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The errno of the last failed call.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// A C string for exec; an argument or variable with a NUL byte cannot be passed.
fn c_string(bytes: &[u8]) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(bytes).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "an argument or variable contains a NUL byte")
    })
}

/// Starts `program` (looked up in `PATH` when it has no slash, as `execvp`) with `args` and
/// this process's environment with `env` set, under the seccomp `filter`; returns the child's
/// pid and the filter's listener.
///
/// The child is cloned as `posix_spawn` does it — sharing this process's memory
/// (`CLONE_VM`), this process waiting until it has exec'd or ended (`CLONE_VFORK`) — and also
/// sharing its descriptor table (`CLONE_FILES`). In the child, between clone and exec, it sets
/// `no_new_privs` and loads the filter with `SECCOMP_FILTER_FLAG_NEW_LISTENER` (and
/// `WAIT_KILLABLE_RECV` where the kernel has it, ≥ 5.19); the listener is then already in this
/// process's table, and the exec gives the child a table of its own without it (the listener
/// is close-on-exec). Nothing is sent, nothing copied: `sendmsg` would be a trapped call
/// nobody could answer yet, and a hand-over through pipes and `pidfd_getfd` (as before) cost
/// a thread and three wake-ups. The child resets the signal mask and SIGPIPE (as
/// `std::process` does). A failure in the child (the filter, the exec) comes back as its errno,
/// the child reaped.
pub fn spawn_supervised(
    program: &std::ffi::OsStr,
    args: &[std::ffi::OsString],
    env: &[(&str, &str)],
    filter: &[libc::sock_filter],
) -> io::Result<(u32, OwnedFd)> {
    use std::os::unix::ffi::OsStrExt;
    // Everything the child uses is prepared before the clone: it allocates nothing.
    let file = c_string(program.as_bytes())?;
    let mut argv_owned = vec![file.clone()];
    for arg in args {
        argv_owned.push(c_string(arg.as_bytes())?);
    }
    let mut envp_owned = Vec::new();
    for (name, value) in std::env::vars_os() {
        if env.iter().any(|(n, _)| name.as_bytes() == n.as_bytes()) {
            continue;
        }
        let mut pair = name.as_bytes().to_vec();
        pair.push(b'=');
        pair.extend_from_slice(value.as_bytes());
        envp_owned.push(c_string(&pair)?);
    }
    for (name, value) in env {
        envp_owned.push(c_string(format!("{name}={value}").as_bytes())?);
    }
    let argv: Vec<*const libc::c_char> =
        argv_owned.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp: Vec<*const libc::c_char> =
        envp_owned.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let len = u16::try_from(filter.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seccomp filter too long"))?;
    let prog = libc::sock_fprog { len, filter: filter.as_ptr() as *mut libc::sock_filter };
    let mut shared = Spawn {
        prog: &prog,
        file: file.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        listener: -1,
        errno: 0,
    };
    // The child's stack (it shares the memory, not the stack): execvp's path search is its
    // deepest use, a few kilobytes.
    let mut stack = vec![0u128; CHILD_STACK / 16];
    // SAFETY: one past the end of `stack`, 16-byte aligned (u128 elements): where a downward
    // growing stack starts.
    let top = unsafe { stack.as_mut_ptr().add(stack.len()) }.cast::<c_void>();
    // SAFETY: sigfillset/pthread_sigmask write the sets given. Every signal is blocked across
    // the clone, so no handler of this process runs on the child's stack; the child unblocks
    // them just before exec.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut before);
    }
    // SAFETY: `spawn_child` runs on `stack`, which outlives the child's use of it (CLONE_VFORK:
    // this call returns only once the child has exec'd or ended), and reads and writes only
    // `shared`, which lives as long.
    let pid = unsafe {
        libc::clone(
            spawn_child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::SIGCHLD,
            (&mut shared as *mut Spawn).cast::<c_void>(),
        )
    };
    let cloned = if pid < 0 { Err(io::Error::last_os_error()) } else { Ok(pid as u32) };
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
    let pid = cloned?;
    drop(stack);
    // SAFETY: the child wrote these before its exec or exit, which this thread waited for;
    // read through volatile loads as written by another task.
    let (listener, errno) = unsafe {
        (std::ptr::read_volatile(&shared.listener), std::ptr::read_volatile(&shared.errno))
    };
    // SAFETY: when set, a descriptor the child created in the table this process shares, that
    // nobody else owns.
    let listener = (listener >= 0).then(|| unsafe { OwnedFd::from_raw_fd(listener) });
    if errno != 0 {
        reap(pid);
        return Err(io::Error::from_raw_os_error(errno));
    }
    match listener {
        Some(listener) => Ok((pid, listener)),
        None => {
            reap(pid);
            Err(io::Error::other("the child ended before it loaded the seccomp filter"))
        }
    }
}

/// The child's stack size in bytes.
const CHILD_STACK: usize = 256 * 1024;

/// What [`spawn_supervised`] and its child share.
struct Spawn {
    prog: *const libc::sock_fprog,
    file: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Set by the child: the listener's number.
    listener: RawFd,
    /// Set by the child when it fails: the errno.
    errno: i32,
}

/// The child of [`spawn_supervised`], from clone to exec: never returns (exec, or `_exit(127)`
/// with the errno left in the shared `Spawn`). It only makes system calls: it runs on the
/// parent's memory while the parent waits, and must leave no lock or allocation half done.
extern "C" fn spawn_child(arg: *mut c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Spawn` the parent passed, alive while it waits for this child.
    let shared = unsafe { &mut *arg.cast::<Spawn>() };
    // SAFETY: plain system calls on memory prepared before the clone or on this stack.
    unsafe {
        let fail = |shared: &mut Spawn| -> ! {
            std::ptr::write_volatile(&mut shared.errno, errno());
            libc::_exit(127)
        };
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(shared);
        }
        let load = |flags: libc::c_ulong| {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, shared.prog)
        };
        let mut listener = load(
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        );
        if listener < 0 && errno() == libc::EINVAL {
            listener = load(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER);
        }
        if listener < 0 {
            fail(shared);
        }
        std::ptr::write_volatile(&mut shared.listener, listener as RawFd);
        // The program starts with SIGPIPE at its default (this process ignores it, and an
        // ignored signal stays ignored across exec) and no signal blocked.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execvpe(shared.file, shared.argv, shared.envp);
        fail(shared)
    }
}

/// waitpid(2) for `pid`, whose exit nobody will report.
fn reap(pid: u32) {
    let mut status = 0;
    // SAFETY: `status` is a valid int to write.
    while unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) } < 0 && errno() == libc::EINTR
    {
    }
}

/// An all-zero notification, as SECCOMP_IOCTL_NOTIF_RECV requires.
pub fn empty_notif() -> libc::seccomp_notif {
    libc::seccomp_notif {
        id: 0,
        pid: 0,
        flags: 0,
        data: libc::seccomp_data { nr: 0, arch: 0, instruction_pointer: 0, args: [0; 6] },
    }
}

/// SECCOMP_IOCTL_NOTIF_RECV: the next notification (blocks; poll first).
pub fn notif_recv(listener: BorrowedFd<'_>) -> io::Result<libc::seccomp_notif> {
    let mut notif = empty_notif();
    // SAFETY: the ioctl writes one seccomp_notif into `notif`, which is that type and zeroed.
    check(unsafe {
        libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut notif)
    })?;
    Ok(notif)
}

/// SECCOMP_IOCTL_NOTIF_SEND: answer notification `id` with `-error` (0 = success, `val` then
/// the return value) or, with `continue_call`, let the kernel run the call itself.
pub fn notif_send(
    listener: BorrowedFd<'_>,
    id: u64,
    val: i64,
    error: i32,
    continue_call: bool,
) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val,
        error: -error,
        flags: if continue_call { libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32 } else { 0 },
    };
    // SAFETY: the ioctl reads one seccomp_notif_resp from `resp`.
    check(unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) })?;
    Ok(())
}

/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (linux/seccomp.h, Linux ≥ 6.6).
const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: libc::c_ulong = 1;

/// SECCOMP_IOCTL_NOTIF_SET_FLAGS with `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`: the program and the
/// supervisor hand a notification to each other on the same CPU (the waker's) instead of
/// waking a thread elsewhere — the round trip is mostly two wake-ups. Linux ≥ 6.6; an error
/// (older kernels: EINVAL) changes nothing else.
pub fn notif_sync_wake_up(listener: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: this ioctl takes its flags by value, not through a pointer.
    check(unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        )
    })?;
    Ok(())
}

/// SECCOMP_IOCTL_NOTIF_ID_VALID: whether the program still waits in notification `id` (so the
/// pid and the memory read for it still belong to that call).
pub fn notif_id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    let mut id = id;
    // SAFETY: the ioctl reads one u64 from `id`.
    unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) == 0 }
}

/// pidfd_open(2) for process `pid` (a thread group leader).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = check_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) })?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `PIDFD_THREAD` (linux/pidfd.h, Linux ≥ 6.9; the value of O_EXCL).
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

/// pidfd_open(2) with `PIDFD_THREAD` for thread `tid`, leader or not (Linux ≥ 6.9; EINVAL
/// before). `pidfd_getfd` through it copies from the thread's descriptor table, which is its
/// process's.
pub fn pidfd_open_thread(tid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = check_long(unsafe {
        libc::syscall(libc::SYS_pidfd_open, tid as libc::pid_t, PIDFD_THREAD)
    })?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_getfd(2): a copy, in this process, of descriptor `fd` of the process behind `pidfd`
/// (the same open file description: same socket, same flags). Close-on-exec is set.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes two descriptors numbers and flags and returns a new descriptor.
    let copy =
        check_long(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy as RawFd) })
}

/// Reads `len` bytes at `addr` in process (thread) `pid` with process_vm_readv, falling back to
/// `/proc/PID/mem` where cross-memory attach is not available (ENOSYS). A short read is EFAULT.
pub fn read_memory(pid: u32, addr: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast::<c_void>(), iov_len: len };
    let remote = libc::iovec { iov_base: addr as usize as *mut c_void, iov_len: len };
    // SAFETY: `local` describes `buf`, writable for `len` bytes; `remote` is only read by the
    // kernel on the other process's side, which checks it.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n == len as isize {
        return Ok(buf);
    }
    if n < 0 && errno() == libc::ENOSYS {
        use std::os::unix::fs::FileExt;
        let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
        mem.read_exact_at(&mut buf, addr)?;
        return Ok(buf);
    }
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Err(io::Error::from_raw_os_error(libc::EFAULT))
}

/// Writes `data` at `addr` in process (thread) `pid` with process_vm_writev, falling back to
/// `/proc/PID/mem` where cross-memory attach is not available; a short write is EFAULT.
pub fn write_memory(pid: u32, addr: u64, data: &[u8]) -> io::Result<()> {
    let local = libc::iovec { iov_base: data.as_ptr() as *mut c_void, iov_len: data.len() };
    let remote = libc::iovec { iov_base: addr as usize as *mut c_void, iov_len: data.len() };
    // SAFETY: `local` describes `data`, which the kernel only reads; `remote` is checked by the
    // kernel on the other process's side.
    let n = unsafe { libc::process_vm_writev(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n == data.len() as isize {
        return Ok(());
    }
    if n < 0 && errno() == libc::ENOSYS {
        use std::os::unix::fs::FileExt;
        let mem = std::fs::OpenOptions::new().write(true).open(format!("/proc/{pid}/mem"))?;
        return mem.write_all_at(data, addr);
    }
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Err(io::Error::from_raw_os_error(libc::EFAULT))
}

/// The socket's cookie (SO_COOKIE): a number the kernel never reuses for another socket, so
/// state kept for a socket is not inherited by a descriptor number reused after a close.
pub fn socket_cookie(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut value: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `value` is a u64 of the length given.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut value as *mut u64).cast::<c_void>(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// `TCP_CLOSE` from linux/tcp_states.h: a TCP socket neither connecting, connected nor
/// listening.
pub const TCP_CLOSE: u8 = 7;

/// The TCP state of `fd` (`tcpi_state`, the first byte of `struct tcp_info`); an error for a
/// socket that is not TCP.
pub fn tcp_state(fd: BorrowedFd<'_>) -> io::Result<u8> {
    let mut state: u8 = 0;
    // The kernel copies min(len, sizeof(struct tcp_info)) bytes: one asks for the state alone.
    let mut len = 1 as libc::socklen_t;
    // SAFETY: `state` is one writable byte, the length given.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut state as *mut u8).cast::<c_void>(),
            &mut len,
        )
    })?;
    Ok(state)
}

/// connect(2) of `fd` to the raw socket address `addr` (as the program passed it); the errno
/// on failure.
pub fn connect_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> Result<(), i32> {
    // Copy into a sockaddr_storage so the kernel reads an aligned buffer of the right size.
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = addr.len().min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `storage` is at least `len` bytes long and does not overlap `addr`.
    unsafe {
        std::ptr::copy_nonoverlapping(
            addr.as_ptr(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        );
    }
    // SAFETY: `storage` holds `len` valid bytes of a socket address.
    let ret = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>(),
            len as libc::socklen_t,
        )
    };
    if ret < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// bind(2) of `fd` to the raw socket address `addr` (bytes the supervisor checked); the errno
/// on failure.
pub fn bind_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> Result<(), i32> {
    let (storage, len) = storage_of(addr);
    // SAFETY: `storage` holds `len` valid bytes of a socket address.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>(),
            len,
        )
    };
    if ret < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// A new TCP socket of `family` (close-on-exec in the supervisor).
pub fn tcp_socket(family: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with integer arguments returns a new descriptor or -1.
    let fd = check(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new TCP socket of `family` listening on loopback, port 0, backlog 1: the quiet listener
/// that takes a BIND socket's place in the program once its one connection is accepted.
pub fn quiet_listener(family: i32) -> io::Result<OwnedFd> {
    let fd = tcp_socket(family)?;
    let loopback: std::net::SocketAddr = if family == libc::AF_INET6 {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    } else {
        (std::net::Ipv4Addr::LOCALHOST, 0).into()
    };
    bind_raw(fd.as_fd(), &crate::sockaddr::bytes(loopback))
        .map_err(io::Error::from_raw_os_error)?;
    // SAFETY: listen(2) on a descriptor we own.
    check(unsafe { libc::listen(fd.as_raw_fd(), 1) })?;
    Ok(fd)
}

/// SECCOMP_IOCTL_NOTIF_ADDFD: installs a copy of `src` in the program waiting in notification
/// `id` — at number `at` (replacing what is there, as dup2 would) or at the lowest free
/// number — close-on-exec when `cloexec`; with `send`, the call is answered at once with the
/// new number (SECCOMP_ADDFD_FLAG_SEND, Linux ≥ 5.14: installed and answered atomically).
/// Returns the number in the program.
pub fn notif_addfd(
    listener: BorrowedFd<'_>,
    id: u64,
    src: BorrowedFd<'_>,
    at: Option<i32>,
    cloexec: bool,
    send: bool,
) -> io::Result<i32> {
    let mut flags = 0u32;
    if at.is_some() {
        flags |= libc::SECCOMP_ADDFD_FLAG_SETFD as u32;
    }
    if send {
        flags |= libc::SECCOMP_ADDFD_FLAG_SEND as u32;
    }
    let mut addfd = libc::seccomp_notif_addfd {
        id,
        flags,
        srcfd: src.as_raw_fd() as u32,
        newfd: at.unwrap_or(0) as u32,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: the ioctl reads one seccomp_notif_addfd from `addfd`.
    check(unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ADDFD, &mut addfd) })
}

/// getpeername(2) of our copy: the raw address bytes.
pub fn peer_name(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes.
    check(unsafe {
        libc::getpeername(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr>(),
            &mut len,
        )
    })?;
    // SAFETY: `storage` is a plain struct of at least `len` initialised bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&storage as *const libc::sockaddr_storage).cast::<u8>(),
            len as usize,
        )
    };
    Ok(bytes.to_vec())
}

/// getsockname(2) of our copy: the raw address bytes.
pub fn local_name(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes.
    check(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr>(),
            &mut len,
        )
    })?;
    // SAFETY: `storage` is a plain struct of at least `len` initialised bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&storage as *const libc::sockaddr_storage).cast::<u8>(),
            (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>()),
        )
    };
    Ok(bytes.to_vec())
}

/// Disconnects a socket (connect to AF_UNSPEC), so it can connect again; errors ignored.
pub fn disconnect(fd: BorrowedFd<'_>) {
    let unspec = (libc::AF_UNSPEC as u16).to_ne_bytes();
    let mut addr = [0u8; 16];
    addr[..2].copy_from_slice(&unspec);
    let _ = connect_raw(fd, &addr);
}

/// A sockaddr copied into an aligned `sockaddr_storage`: (storage, length).
fn storage_of(addr: &[u8]) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = addr.len().min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `storage` is at least `len` bytes long and does not overlap `addr`.
    unsafe {
        std::ptr::copy_nonoverlapping(
            addr.as_ptr(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        );
    }
    (storage, len as libc::socklen_t)
}

/// sendmsg(2) on `fd` (a descriptor the supervisor copied) of `data` as one buffer, to `name`
/// (raw sockaddr bytes, as the program passed them; `None` = no address) with the control
/// messages `control` (raw bytes, as the program passed them) and `flags` plus MSG_NOSIGNAL
/// (a broken pipe is the program's error, never a signal to the supervisor). The byte count,
/// or the errno.
pub fn send_message(
    fd: BorrowedFd<'_>,
    data: &[u8],
    name: Option<&[u8]>,
    control: &[u8],
    flags: i32,
) -> Result<usize, i32> {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut c_void, iov_len: data.len() };
    let mut storage = name.map(storage_of);
    // cmsghdr wants 8-byte alignment: copy into u64 words.
    let mut aligned = vec![0u64; control.len().div_ceil(8)];
    // SAFETY: `aligned` has room for `control.len()` bytes and does not overlap it.
    unsafe {
        std::ptr::copy_nonoverlapping(
            control.as_ptr(),
            aligned.as_mut_ptr().cast::<u8>(),
            control.len(),
        );
    }
    // SAFETY: an all-zero msghdr is a valid value (integers and null pointers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some((storage, len)) = storage.as_mut() {
        msg.msg_name = (storage as *mut libc::sockaddr_storage).cast::<c_void>();
        msg.msg_namelen = *len;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !control.is_empty() {
        msg.msg_control = aligned.as_mut_ptr().cast::<c_void>();
        msg.msg_controllen = control.len();
    }
    // SAFETY: `msg` points at a live iovec over `data`, a live sockaddr_storage of the length
    // given and a live control buffer of the length given; the kernel only reads them.
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags | libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// send(2) of `data` with `flags` plus MSG_NOSIGNAL: the byte count, or the errno.
pub fn send_plain(fd: BorrowedFd<'_>, data: &[u8], flags: i32) -> Result<usize, i32> {
    // SAFETY: `data` is readable for its length.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            data.as_ptr().cast::<c_void>(),
            data.len(),
            flags | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// poll(2) on one descriptor: the returned events, or 0 on timeout.
pub fn poll_one(fd: BorrowedFd<'_>, events: i16, timeout_ms: i32) -> io::Result<i16> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = check(unsafe { libc::poll(&mut pfd, 1, timeout_ms) })?;
    Ok(if n == 0 { 0 } else { pfd.revents })
}

/// getsockopt(2) of an int option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is an int of the length given.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast::<c_void>(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// The file status flags (F_GETFL).
pub fn status_flags(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: F_GETFL takes no argument.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })
}

/// Sets the file status flags (F_SETFL).
pub fn set_status_flags(fd: BorrowedFd<'_>, flags: i32) -> io::Result<()> {
    // SAFETY: F_SETFL takes an int.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) })?;
    Ok(())
}

/// send(2) that never blocks and never raises SIGPIPE.
pub fn send_nonblocking(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is readable for its length.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            data.as_ptr().cast::<c_void>(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// recv(2) that never blocks.
pub fn recv_nonblocking(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length.
    let n = unsafe {
        libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast::<c_void>(), buf.len(), libc::MSG_DONTWAIT)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The networks this host is attached to, as (address, prefix length), from getifaddrs.
pub fn attached_networks() -> Vec<(IpAddr, u8)> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        // SAFETY: non-null ifa_addr/ifa_netmask point to sockaddrs of their family.
        let pair = unsafe { (sockaddr_ip(ifa.ifa_addr), sockaddr_ip(ifa.ifa_netmask)) };
        if let (Some(addr), Some(mask)) = pair {
            let prefix = match mask {
                IpAddr::V4(m) => u32::from(m).count_ones(),
                IpAddr::V6(m) => u128::from(m).count_ones(),
            };
            out.push((addr, prefix as u8));
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    out
}

/// The IP address in a sockaddr, if it is AF_INET or AF_INET6.
///
/// # Safety
/// `sa` is null or points to a sockaddr as long as its family says.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: non-null, per the contract.
    match i32::from(unsafe { (*sa).sa_family }) {
        libc::AF_INET => {
            // SAFETY: an AF_INET sockaddr is a sockaddr_in.
            let sin = unsafe { &*sa.cast::<libc::sockaddr_in>() };
            Some(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()))
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 sockaddr is a sockaddr_in6.
            let sin6 = unsafe { &*sa.cast::<libc::sockaddr_in6>() };
            Some(IpAddr::from(sin6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

/// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER), so a
/// program that forks and exits its parent stays ours to wait for.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })?;
    Ok(())
}

/// Blocks SIGCHLD in the calling thread (and so in every thread it starts later) and returns a
/// signalfd (non-blocking, close-on-exec) that reads readable when a child ends: the loop then
/// reaps with [`reap_ended`], and needs no thread waiting in `waitpid`.
pub fn child_exits() -> io::Result<OwnedFd> {
    // SAFETY: an all-zero sigset_t is a valid value to initialise.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live sigset_t; the mask calls read it and write nothing else.
    let fd = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        let ret = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
    };
    let fd = check(fd)?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Empties the signalfd of [`child_exits`] (the signals are counted again by reaping).
pub fn drain_signals(fd: BorrowedFd<'_>) {
    let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    // SAFETY: `info` is writable for its length; the descriptor is non-blocking.
    while unsafe { libc::read(fd.as_raw_fd(), info.as_mut_ptr().cast::<c_void>(), info.len()) } > 0
    {
    }
}

/// Reaps every child that has ended, without waiting: their (pid, raw status), and whether no
/// child is left at all (ECHILD).
pub fn reap_ended() -> (Vec<(i32, i32)>, bool) {
    let mut ended = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid int to write.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            ended.push((pid, status));
        } else if pid == 0 {
            return (ended, false);
        } else if errno() != libc::EINTR {
            return (ended, true);
        }
    }
}

/// waitpid(-1): the next child to end, as (pid, raw status); `None` when none is left (ECHILD).
pub fn wait_any() -> Option<(i32, i32)> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid int to write.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            return Some((pid, status));
        }
        if errno() != libc::EINTR {
            return None;
        }
    }
}

/// The exit code a shell would report for a raw wait status.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// Ignores SIGINT and SIGQUIT in the supervisor (after the program started with the default
/// dispositions): a Ctrl-C goes to the program, whose exit ends the supervisor; a supervisor
/// killed first would leave the program's connects failing with ENOSYS.
pub fn ignore_terminal_signals() {
    for sig in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: SIG_IGN is a valid disposition for these signals.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}

/// This host's name (`/proc/sys/kernel/hostname`), if it has one.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// The login name of the effective user, from /etc/passwd (for `*=` lists and SOCKS4 user ids).
pub fn effective_user_name() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}

/// poll(2) on several descriptors: `(fd, events)` in, the returned events of each out (0 for
/// those with none); all 0 on timeout.
pub fn poll_many(fds: &[(BorrowedFd<'_>, i16)], timeout_ms: i32) -> io::Result<Vec<i16>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, events)| libc::pollfd { fd: fd.as_raw_fd(), events: *events, revents: 0 })
        .collect();
    // SAFETY: `pfds` is a live array of `pfds.len()` pollfds.
    check(unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) })?;
    Ok(pfds.iter().map(|p| p.revents).collect())
}

/// One datagram received by [`recv_message`].
#[derive(Debug, Default)]
pub struct Received {
    /// The byte count the call returned (the datagram's whole length with MSG_TRUNC).
    pub len: usize,
    /// The source address's raw bytes (empty when the kernel gave none).
    pub name: Vec<u8>,
    /// The control messages' raw bytes.
    pub control: Vec<u8>,
    /// `msg_flags` as the kernel set them (MSG_TRUNC, MSG_CTRUNC, …).
    pub flags: i32,
}

/// recvmsg(2) on `fd` (a descriptor the supervisor copied) into `buf`, with room for
/// `control_len` control bytes, with `flags`: the datagram's source, control and flags, or the
/// errno.
pub fn recv_message(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    control_len: usize,
    flags: i32,
) -> Result<Received, i32> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast::<c_void>(), iov_len: buf.len() };
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // cmsghdr wants 8-byte alignment: u64 words.
    let mut control = vec![0u64; control_len.div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid value (integers and null pointers).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut storage as *mut libc::sockaddr_storage).cast::<c_void>();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if control_len > 0 {
        msg.msg_control = control.as_mut_ptr().cast::<c_void>();
        msg.msg_controllen = control_len;
    }
    // SAFETY: `msg` points at a live iovec over `buf`, a live sockaddr_storage and a live
    // control buffer, each writable for the length given.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
    if n < 0 {
        return Err(errno());
    }
    let name_len = (msg.msg_namelen as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `storage` is a plain struct of at least `name_len` initialised bytes.
    let name = unsafe {
        std::slice::from_raw_parts(
            (&storage as *const libc::sockaddr_storage).cast::<u8>(),
            name_len,
        )
    };
    let control_used = msg.msg_controllen.min(control_len);
    // SAFETY: `control` holds at least `control_len` initialised bytes.
    let control_bytes =
        unsafe { std::slice::from_raw_parts(control.as_ptr().cast::<u8>(), control_used) };
    Ok(Received {
        len: n as usize,
        name: name.to_vec(),
        control: control_bytes.to_vec(),
        flags: msg.msg_flags,
    })
}

/// The receive timeout of a socket (SO_RCVTIMEO), `None` when it has none.
pub fn receive_timeout(fd: BorrowedFd<'_>) -> Option<std::time::Duration> {
    let mut value = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `value` is a timeval of the length given.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&mut value as *mut libc::timeval).cast::<c_void>(),
            &mut len,
        )
    };
    if ret < 0 || (value.tv_sec == 0 && value.tv_usec == 0) {
        return None;
    }
    Some(
        std::time::Duration::from_secs(value.tv_sec.max(0) as u64)
            + std::time::Duration::from_micros(value.tv_usec.max(0) as u64),
    )
}
