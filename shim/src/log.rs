//! Diagnostics, off unless `SOCKS_LOG` asks for them: one line per message written with a single
//! write(2) of a stack buffer to standard error — no allocation, no lock, no stdio, so it is
//! safe anywhere the library runs. Messages longer than the buffer are cut.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::real;

/// Severity, most severe first; `Off` prints nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Nothing.
    Off = 0,
    /// A connection could not be made as configured.
    Error = 1,
    /// Something unusual (a server skipped).
    Warn = 2,
    /// One line per proxied or denied connection.
    Info = 3,
    /// Every routing decision.
    Debug = 4,
}

impl Level {
    /// Parses `SOCKS_LOG`: error, warn, info, debug (or trace); anything else is off.
    pub fn parse(text: &str) -> Level {
        match text.trim().to_ascii_lowercase().as_str() {
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" | "1" | "on" | "yes" => Level::Info,
            "debug" | "trace" => Level::Debug,
            _ => Level::Off,
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Off as u8);

/// Sets the level for the rest of the process.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether messages of `level` are printed.
pub fn enabled(level: Level) -> bool {
    level != Level::Off && level as u8 <= LEVEL.load(Ordering::Relaxed)
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

/// Writes `libsocks[PID]: <message>` to standard error, whatever the level (callers check).
pub fn write_line(args: fmt::Arguments<'_>) {
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
