//! The pidfds the supervisor copies the program's descriptors through, kept from one trapped
//! call to the next instead of opened for each (a `pidfd_open`, and for a thread that does not
//! lead its group a read of `/proc/TID/status`, per call otherwise).
//!
//! Kept by the notifying thread's id: a group leader's entry is a pidfd of its process; another
//! thread's (Linux ≥ 6.9, `PIDFD_THREAD`) is a pidfd of that thread, with its group read once
//! from `/proc`. A pidfd names one process or thread for good: once it has ended,
//! `pidfd_getfd` through it fails (ESRCH), and while it lives no other can carry its number. So
//! an entry never lends one process's descriptors to another that got the number later: a copy
//! through a cached pidfd that fails is retried once through a fresh one, the stale entry
//! dropped. (The caller still checks that the call waits, `SECCOMP_IOCTL_NOTIF_ID_VALID`,
//! before it acts on the copy.) On kernels without `PIDFD_THREAD` another thread's calls open
//! a pidfd of the group each time, as before, and nothing of them is kept.
//!
//! Bounded ([`KEPT_MAX`]): when full, entries of ended processes and threads are dropped, and
//! all of them if that is not enough (they are reopened on use).
//!
//! Not here: what is done with the copy (`supervise`, `bind`, `send`, `recv`).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::sys;

/// How many pidfds are kept (each is a descriptor of the supervisor).
pub const KEPT_MAX: usize = 256;

/// Pidfds by thread id: (the thread's group, a pidfd of the process or of the thread).
#[derive(Debug, Default)]
pub struct Pidfds {
    by_tid: Mutex<HashMap<u32, (u32, Arc<OwnedFd>)>>,
}

/// The thread group of thread `tid` (`Tgid:` in /proc/TID/status).
fn thread_group(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
}

/// A fresh pidfd for thread `tid` and its group; `keep`: whether it may be kept (it names the
/// thread itself, or its process when it leads it).
fn open(tid: u32) -> Result<(u32, Arc<OwnedFd>, bool), i32> {
    // pidfd_open without flags takes a group leader only: every call of a single-threaded
    // program.
    if let Ok(pidfd) = sys::pidfd_open(tid) {
        return Ok((tid, Arc::new(pidfd), true));
    }
    if let Ok(pidfd) = sys::pidfd_open_thread(tid) {
        // Opened first, so a thread that ended before /proc was read fails the copy below
        // rather than lend its number's new owner's group to it.
        let pid = thread_group(tid).ok_or(libc::ESRCH)?;
        return Ok((pid, Arc::new(pidfd), true));
    }
    let pid = thread_group(tid).ok_or(libc::ESRCH)?;
    let pidfd = sys::pidfd_open(pid).map_err(|e| e.raw_os_error().unwrap_or(libc::ESRCH))?;
    Ok((pid, Arc::new(pidfd), false))
}

impl Pidfds {
    fn lock(&self) -> MutexGuard<'_, HashMap<u32, (u32, Arc<OwnedFd>)>> {
        self.by_tid.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread group of `tid` and a copy of its descriptor `fd` (`pidfd_getfd`); the errno
    /// when the copy cannot be made.
    pub fn copy(&self, tid: u32, fd: i32) -> Result<(u32, OwnedFd), i32> {
        let cached = self.lock().get(&tid).cloned();
        if let Some((pid, pidfd)) = cached {
            if let Ok(copy) = sys::pidfd_getfd(pidfd.as_fd(), fd) {
                return Ok((pid, copy));
            }
            // Ended (the number may be another's now), or the descriptor is not there: either
            // way a fresh pidfd gives the answer that counts.
            let mut kept = self.lock();
            if kept.get(&tid).is_some_and(|(_, p)| Arc::ptr_eq(p, &pidfd)) {
                kept.remove(&tid);
            }
        }
        let (pid, pidfd, keep) = open(tid)?;
        let copy = sys::pidfd_getfd(pidfd.as_fd(), fd)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EBADF))?;
        if keep {
            self.keep(tid, pid, pidfd);
        }
        Ok((pid, copy))
    }

    fn keep(&self, tid: u32, pid: u32, pidfd: Arc<OwnedFd>) {
        let mut kept = self.lock();
        if kept.len() >= KEPT_MAX && !kept.contains_key(&tid) {
            // A pidfd polls readable once its process (or thread) has ended.
            let entries: Vec<(u32, Arc<OwnedFd>)> =
                kept.iter().map(|(t, (_, p))| (*t, p.clone())).collect();
            let polled: Vec<_> = entries.iter().map(|(_, p)| (p.as_fd(), libc::POLLIN)).collect();
            match sys::poll_many(&polled, 0) {
                Ok(revents) => {
                    for ((t, _), r) in entries.iter().zip(revents) {
                        if r != 0 {
                            kept.remove(t);
                        }
                    }
                }
                Err(_) => kept.clear(),
            }
            if kept.len() >= KEPT_MAX {
                kept.clear();
            }
        }
        kept.insert(tid, (pid, pidfd));
    }

    /// How many pidfds are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn same_file(a: &OwnedFd, b: &std::fs::File) -> bool {
        use std::os::unix::fs::MetadataExt;
        let a = std::fs::File::from(a.try_clone().expect("dup")).metadata().expect("stat a");
        let b = b.metadata().expect("stat b");
        (a.dev(), a.ino()) == (b.dev(), b.ino())
    }

    #[test]
    fn copies_from_this_process_and_keeps_its_pidfd() {
        let file = std::fs::File::open("/proc/self/status").expect("open");
        let pidfds = Pidfds::default();
        let me = std::process::id();
        let (pid, copy) = pidfds.copy(me, file.as_raw_fd()).expect("copy");
        assert_eq!(pid, me);
        assert!(same_file(&copy, &file));
        assert_eq!(pidfds.len(), 1);
        let (_, again) = pidfds.copy(me, file.as_raw_fd()).expect("copy through the kept pidfd");
        assert!(same_file(&again, &file));
        assert_eq!(pidfds.copy(me, 1 << 20).map(|_| ()), Err(libc::EBADF));
    }

    #[test]
    fn another_thread_names_its_group() {
        let file = std::fs::File::open("/proc/self/status").expect("open");
        let raw = file.as_raw_fd();
        let pidfds = Arc::new(Pidfds::default());
        let p = pidfds.clone();
        let (tid, got) = std::thread::spawn(move || {
            // This thread's id, without gettid (unsafe outside `sys`).
            let tid: u32 = std::fs::read_link("/proc/thread-self")
                .expect("thread-self")
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
                .expect("tid");
            (tid, p.copy(tid, raw))
        })
        .join()
        .expect("thread");
        let (pid, copy) = got.expect("copy through the thread");
        assert_ne!(tid, pid);
        assert_eq!(pid, std::process::id());
        assert!(same_file(&copy, &file));
        // The thread has ended: its number no longer copies anything (and, if reused, not
        // through the old pidfd).
        assert!(pidfds.copy(tid, raw).is_err());
    }

    #[test]
    fn an_ended_process_is_not_copied_from() {
        let mut child = std::process::Command::new("sleep").arg("10").spawn().expect("sleep");
        let pidfds = Pidfds::default();
        let pid = child.id();
        pidfds.copy(pid, 0).expect("its stdin");
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert!(pidfds.copy(pid, 0).is_err(), "a reaped process's pidfd copies nothing");
        assert_eq!(pidfds.len(), 0, "and is not kept");
    }
}
