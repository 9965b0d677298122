//! Whether a signal interrupts a program's call that the supervisor is waiting in (a blocking
//! receive, `recv`), and what the call then returns, so the program sees what the kernel's own
//! call would have given it (signal(7), "Interruption of system calls and library functions by
//! signal handlers").
//!
//! The filter is loaded with WAIT_KILLABLE_RECV where the kernel has it, so a signal does not
//! end a call the supervisor has received: the waiting thread looks for one at each step
//! ([`interruption`], from `/proc/TID/status`: SigPnd and ShdPnd not in SigBlk) and answers.
//! The answer is the kernel's own for an interrupted blocking socket receive
//! (`sock_intr_errno`): ERESTARTSYS without a receive timeout — the kernel turns it, on the way
//! back to the program, into a restart of the call after a SA_RESTART handler (or a stop and
//! continue) and into EINTR after any other handler — and EINTR with SO_RCVTIMEO set, which is
//! never restarted ([`answer`]). That is also what the kernel itself puts in the notification's
//! result when a signal ends the wait of a filter without WAIT_KILLABLE_RECV.
//!
//! ERESTARTSYS must only reach a thread the kernel will deliver a signal to on its way back
//! (else the program would see errno 512): a signal sent to the thread itself, or to the
//! process when this thread is the thread group leader (which the kernel offers it to first:
//! `complete_signal`) or no other thread of it leaves that signal unblocked. A process signal
//! another thread could take is the kernel's to place: the wait goes on while it is pending for
//! one step (another thread that took it has handled it by then), and ends with EINTR (never
//! ERESTARTSYS) if it is still pending after that step.
//!
//! The same holds for a blocking accept on a BIND socket (`bind`), which the kernel also
//! restarts after a SA_RESTART handler and ends with EINTR when SO_RCVTIMEO is set.
//!
//! Not here: the waiting itself (`recv`, `bind`), answering (`supervise::Pending`).

/// ERESTARTSYS (include/linux/errno.h): "restart the call if the handler has SA_RESTART".
/// Kernel-internal; never seen by the program, which gets a restart or EINTR instead.
pub const ERESTARTSYS: i32 = 512;

/// What a pending signal means for thread `tid` of process `pid`, waiting in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// No unblocked signal is pending for the thread.
    None,
    /// A signal the kernel delivers to this thread on its way back from the call.
    ToThisThread,
    /// A process signal that another thread, which does not block it, may take.
    MaybeAnotherThread,
}

/// The signal masks of one thread's `/proc/…/status`: (SigPnd, ShdPnd, SigBlk).
fn masks(path: &str) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    Some((field("SigPnd:"), field("ShdPnd:"), field("SigBlk:")))
}

/// Whether a signal interrupts thread `tid` of process `pid` (see the module header).
pub fn interruption(tid: u32, pid: u32) -> Interruption {
    let Some((own, shared, blocked)) = masks(&format!("/proc/{tid}/status")) else {
        return Interruption::None;
    };
    if own & !blocked != 0 {
        return Interruption::ToThisThread;
    }
    let shared = shared & !blocked;
    if shared == 0 {
        return Interruption::None;
    }
    if tid == pid {
        // The kernel offers a process signal to the thread group leader first, and the leader
        // takes it unless it blocks it (not so here) or already has a signal to handle.
        return Interruption::ToThisThread;
    }
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Interruption::MaybeAnotherThread;
    };
    let others_take = threads.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name != tid.to_string()
            && masks(&format!("/proc/{pid}/task/{name}/status"))
                .is_some_and(|(_, _, theirs)| shared & !theirs != 0)
    });
    match others_take {
        true => Interruption::MaybeAnotherThread,
        false => Interruption::ToThisThread,
    }
}

/// One waiting call's look at its thread's signals, step after step (see the module header).
#[derive(Debug)]
pub struct Watch {
    tid: u32,
    pid: u32,
    /// Whether the previous step saw a process signal another thread may take.
    shared_seen: bool,
}

impl Watch {
    /// For a call made by thread `tid` of process `pid`.
    pub fn new(tid: u32, pid: u32) -> Watch {
        Watch { tid, pid, shared_seen: false }
    }

    /// The errno to end the call with now, if a signal interrupts it: [`answer`] for a signal
    /// this thread takes; EINTR for a process signal still pending one step after it was first
    /// seen (`timed`: the socket has a receive timeout).
    pub fn interrupted(&mut self, timed: bool) -> Option<i32> {
        match interruption(self.tid, self.pid) {
            Interruption::ToThisThread => Some(answer(timed)),
            Interruption::MaybeAnotherThread if self.shared_seen => Some(libc::EINTR),
            Interruption::MaybeAnotherThread => {
                self.shared_seen = true;
                None
            }
            Interruption::None => {
                self.shared_seen = false;
                None
            }
        }
    }
}

/// The errno an interrupted blocking socket receive returns: ERESTARTSYS (restarted after a
/// SA_RESTART handler), or EINTR when the socket has a receive timeout (`timed`).
pub fn answer(timed: bool) -> i32 {
    if timed {
        libc::EINTR
    } else {
        ERESTARTSYS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_thread_is_not_interrupted() {
        let pid = std::process::id();
        assert_eq!(interruption(pid, pid), Interruption::None);
    }

    #[test]
    fn a_receive_timeout_is_never_restarted() {
        assert_eq!(answer(true), libc::EINTR);
        assert_eq!(answer(false), ERESTARTSYS);
    }
}
