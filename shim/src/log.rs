//! Diagnostics, off unless `SOCKS_LOG` asks for them: one line per message written with a single
//! write(2) of a stack buffer to standard error — no allocation, no lock, no stdio, so it is
//! safe anywhere the library runs. Messages longer than the buffer are cut.
//!
//! "Standard error" means the open file descriptor 2 was when the library was loaded (its device
//! and inode, noted once at load): a program that closed descriptor 2 and then opened a data
//! file, a pipe or a socket that got number 2 never finds a line of ours in it. When descriptor 2
//! is no longer that file (or was closed at load), messages — asked for or not — are dropped.
//! The check is an fstat(2) per message, and messages are rare.
//!
//! Panics are diagnostics too: [`quiet_panics`], called by the shield on the way into every
//! exported function, gives the library's copy of std a panic hook that logs them here (at
//! `error`) instead of std's default printing to descriptor 2.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use crate::ffi::{real, with_signals_blocked};

/// Severity, most severe first; `Off` prints nothing (`SOCKS_LOG`, parsed by the shared settings).
pub use socks_client::LogLevel as Level;

static LEVEL: AtomicU8 = AtomicU8::new(Level::Off as u8);

/// Sets the level for the rest of the process.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether messages of `level` are printed.
pub fn enabled(level: Level) -> bool {
    level != Level::Off && level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Descriptor 2's device and inode at load time, once noted.
static STDERR_DEV: AtomicU64 = AtomicU64::new(0);
static STDERR_INO: AtomicU64 = AtomicU64::new(0);
static STDERR_NOTED: AtomicBool = AtomicBool::new(false);

/// Notes which open file descriptor 2 is; called once when the library is loaded (before the
/// program's `main`), so it is the standard error the program was started with.
pub fn remember_standard_error() {
    if let Some((dev, ino)) = real::identity_at_load(2) {
        STDERR_DEV.store(dev, Ordering::Relaxed);
        STDERR_INO.store(ino, Ordering::Relaxed);
        STDERR_NOTED.store(true, Ordering::Release);
    }
}

/// Whether descriptor 2 is still the standard error the program was started with.
fn is_standard_error() -> bool {
    STDERR_NOTED.load(Ordering::Acquire)
        && real::identity(2).is_some_and(|(dev, ino)| {
            dev == STDERR_DEV.load(Ordering::Relaxed) && ino == STDERR_INO.load(Ordering::Relaxed)
        })
}

/// The panic hook's state: not set yet, being set (by one thread), set.
static PANIC_HOOK: AtomicU8 = AtomicU8::new(HOOK_UNSET);
const HOOK_UNSET: u8 = 0;
const HOOK_SETTING: u8 = 1;
const HOOK_SET: u8 = 2;

/// Makes sure a panic in the library is never printed by std's default hook (on descriptor 2,
/// whatever it is by then, with std's stderr lock and the heap): the first call sets a hook
/// that logs it with [`write_line`] when `SOCKS_LOG` asks. After that, one atomic load.
///
/// It is called before the work of every exported function, so no library code can panic
/// before the hook is set. Setting it takes std's hook lock for writing. Every signal is
/// blocked from before this thread claims the job until the hook is set, so a handler of the
/// program that calls into the library never finds the job half done in its own thread (nor
/// the lock held). Another thread that finds it being set waits for it, briefly and bounded
/// (a fork child of that instant would wait for ever): a slower setter leaves that thread a
/// moment in which a panic of its own could still reach std's default hook. Not in unit tests,
/// whose failures must show.
pub fn quiet_panics() {
    if cfg!(test) || PANIC_HOOK.load(Ordering::Acquire) == HOOK_SET {
        return;
    }
    // `set_hook` itself panics in a thread that is panicking.
    if std::thread::panicking() {
        return;
    }
    with_signals_blocked(|| {
        let claimed = PANIC_HOOK
            .compare_exchange(HOOK_UNSET, HOOK_SETTING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if claimed {
            std::panic::set_hook(Box::new(|info| log!(Level::Error, "internal error: {info}")));
            PANIC_HOOK.store(HOOK_SET, Ordering::Release);
            return;
        }
        for _ in 0..100_000 {
            if PANIC_HOOK.load(Ordering::Acquire) == HOOK_SET {
                return;
            }
            std::hint::spin_loop();
        }
    });
}

/// A fixed buffer that `fmt::Write` fills until full.
struct LineBuffer {
    bytes: [u8; 512],
    len: usize,
}

impl fmt::Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.bytes.len() - 1 - self.len;
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes `libsocks[PID]: <message>` to standard error, whatever the level (callers check),
/// unless descriptor 2 is no longer the standard error the program started with.
pub fn write_line(args: fmt::Arguments<'_>) {
    if !is_standard_error() {
        return;
    }
    let mut line = LineBuffer { bytes: [0; 512], len: 0 };
    let _ = write!(line, "libsocks[{}]: ", std::process::id());
    let _ = line.write_fmt(args);
    line.bytes[line.len] = b'\n';
    line.len += 1;
    // A failed write to standard error has nowhere to be reported.
    let _ = real::write_bytes(2, &line.bytes[..line.len]);
}

/// Logs at a level: `log!(Level::Info, "connect {} via {}", a, b)`.
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write_line(format_args!($($arg)*));
        }
    };
}
pub(crate) use log;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(Level::parse("DEBUG"), Level::Debug);
        assert_eq!(Level::parse("info"), Level::Info);
        assert_eq!(Level::parse(""), Level::Off);
        assert_eq!(Level::parse("nonsense"), Level::Off);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut line = LineBuffer { bytes: [0; 512], len: 0 };
        let long = "x".repeat(2000);
        let _ = write!(line, "{long}");
        assert_eq!(line.len, 511);
    }
}
