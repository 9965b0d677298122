//! The libc boundary of the supervisor: every `unsafe` block of the crate is here, each with its
//! `// SAFETY:` note, and each function returns `io::Result` (or an errno) instead of raw codes.
//! Seccomp (loading the filter in the child, the listener's ioctls), pidfds, reading the
//! program's memory, raw `connect`/`send`/`recv`/`poll` on descriptors the supervisor copied,
//! `getifaddrs`, and process housekeeping (subreaper, `waitpid`).
//!
//! Not here: decisions (`route`), the SOCKS handshake (`proxy`), the notification loop
//! (`supervise`).
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

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

/// Starts `command` under the seccomp `filter`: in the child, between fork and exec, sets
/// `no_new_privs`, loads the filter with `SECCOMP_FILTER_FLAG_NEW_LISTENER` (and
/// `WAIT_KILLABLE_RECV` where the kernel has it, ≥ 5.19) and sends the listener to the parent
/// over a datagram socket pair with `SCM_RIGHTS`. `sendmsg` is not a trapped call, so the
/// hand-over cannot wait on the supervisor. Returns the child and the listener.
pub fn spawn_supervised(
    command: &mut Command,
    filter: Vec<libc::sock_filter>,
) -> io::Result<(Child, OwnedFd)> {
    let (ours, theirs) = UnixDatagram::pair()?;
    let theirs_fd = theirs.as_raw_fd();
    let len = u16::try_from(filter.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seccomp filter too long"))?;
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (prctl, seccomp, sendmsg, close) on memory prepared before the fork (`filter`, moved in
    // and not reallocated); it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            let prog = libc::sock_fprog { len, filter: filter.as_ptr() as *mut libc::sock_filter };
            let load = |flags: libc::c_ulong| {
                check_long(libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    flags,
                    &prog as *const libc::sock_fprog,
                ))
            };
            let listener = match load(
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
                    | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            ) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    load(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER)?
                }
                other => other?,
            } as RawFd;
            let sent = send_fd(theirs_fd, listener);
            libc::close(listener);
            sent
        });
    }
    let child = command.spawn();
    drop(theirs);
    let child = child?;
    let listener = recv_fd(ours.as_raw_fd())?;
    Ok((child, listener))
}

/// Sends `fd` over the socket `sock` (one byte of data, one SCM_RIGHTS descriptor).
///
/// # Safety
/// Only async-signal-safe work: callable between fork and exec.
unsafe fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast::<c_void>(), iov_len: 1 };
    #[repr(C)]
    struct Cmsg {
        header: libc::cmsghdr,
        fd: RawFd,
    }
    // SAFETY: an all-zero cmsghdr/msghdr is a valid value (integers and null pointers).
    let mut cmsg: Cmsg = unsafe { std::mem::zeroed() };
    cmsg.header.cmsg_level = libc::SOL_SOCKET;
    cmsg.header.cmsg_type = libc::SCM_RIGHTS;
    // SAFETY: CMSG_LEN only computes a length.
    cmsg.header.cmsg_len = unsafe { libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) } as usize;
    cmsg.fd = fd;
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut cmsg as *mut Cmsg).cast::<c_void>();
    // SAFETY: CMSG_SPACE only computes a length.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    // SAFETY: msg points at live iov and control buffers of the lengths given.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one descriptor sent by `send_fd`; an end of file (the child failed before sending)
/// is an error.
fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast::<c_void>(), iov_len: 1 };
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast::<c_void>();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at live buffers of the lengths given; MSG_CMSG_CLOEXEC marks the fd.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR reads only within msg_controllen.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if n == 0 || cmsg.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the child sent no seccomp listener (it failed before exec)",
        ));
    }
    // SAFETY: cmsg is non-null and points into `control`; an SCM_RIGHTS message of ours carries
    // one int, read unaligned to be safe.
    let (level, kind, fd) = unsafe {
        (
            (*cmsg).cmsg_level,
            (*cmsg).cmsg_type,
            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>()),
        )
    };
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS || fd < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no descriptor in the message"));
    }
    // SAFETY: the kernel just installed `fd` in this process for us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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

/// Disconnects a socket (connect to AF_UNSPEC), so it can connect again; errors ignored.
pub fn disconnect(fd: BorrowedFd<'_>) {
    let unspec = (libc::AF_UNSPEC as u16).to_ne_bytes();
    let mut addr = [0u8; 16];
    addr[..2].copy_from_slice(&unspec);
    let _ = connect_raw(fd, &addr);
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
