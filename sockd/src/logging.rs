//! Where sockd's log lines go: standard error (foreground) with a UTC timestamp, a file
//! (`--log-file`, same format, appended), or syslog with facility LOG_DAEMON (`--syslog`, and by
//! default in inetd mode, where standard error is the client's socket), or the systemd journal
//! through standard error (when `JOURNAL_STREAM` says stderr is connected to it: each line gets
//! its syslog priority as a `<N>` prefix, sd-daemon(3), and no timestamp or PID, which the
//! journal records itself). One line per event; the messages themselves are written by the
//! callers.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::{OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::sys;

/// The destination of log lines.
#[derive(Debug)]
pub enum Sink {
    /// Standard error, one timestamped line per message.
    Stderr,
    /// A file opened for appending, one timestamped line per message.
    File(File),
    /// The system log, facility daemon.
    Syslog,
    /// Standard error connected to the systemd journal: `<priority>level: message` lines.
    Journal,
}

#[derive(Debug)]
struct Logger {
    sink: Sink,
    level: LevelFilter,
    /// Standard error for `Stderr` and `Journal`: a duplicate of descriptor 2 (see `write_line`),
    /// or `None` if it could not be duplicated (then `std::io::stderr()`, with its lock).
    stderr: Option<File>,
}

/// Taken shared to write a line of at most `PIPE_BUF` bytes and exclusively to write a longer
/// one (see `write_line`).
static LONG_LINES: RwLock<()> = RwLock::new(());

/// sockd's PID, read once: `std::process::id()` is a getpid(2) system call each time (glibc
/// stopped caching it), and a busy sockd writes two lines per connection. Safe to keep because
/// sockd never forks: one process from start to exit (no daemonizing, sessions are tasks; a
/// PAM module's helper is its own program after exec and does not log through this logger).
static PID: OnceLock<u32> = OnceLock::new();

fn pid() -> u32 {
    *PID.get_or_init(std::process::id)
}

/// Installs the logger; later calls are ignored (the first one wins).
pub fn init(sink: Sink, level: LevelFilter) {
    if let Sink::Syslog = sink {
        sys::open_syslog();
    }
    pid();
    let stderr = match sink {
        Sink::Stderr | Sink::Journal => {
            std::io::stderr().as_fd().try_clone_to_owned().ok().map(File::from)
        }
        Sink::File(_) | Sink::Syslog => None,
    };
    if log::set_boxed_logger(Box::new(Logger { sink, level, stderr })).is_ok() {
        log::set_max_level(level);
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = || {
            format!(
                "{} sockd[{}] {}: {}\n",
                utc_timestamp(SystemTime::now()),
                pid(),
                record.level().as_str().to_ascii_lowercase(),
                record.args()
            )
        };
        match &self.sink {
            Sink::Stderr => self.write_line(self.stderr.as_ref(), line().as_bytes()),
            Sink::File(file) => self.write_line(Some(file), line().as_bytes()),
            Sink::Syslog => sys::syslog(priority(record.level()), &record.args().to_string()),
            Sink::Journal => {
                let line = format!(
                    "<{}>{}: {}\n",
                    priority(record.level()),
                    record.level().as_str().to_ascii_lowercase(),
                    record.args()
                );
                self.write_line(self.stderr.as_ref(), line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

impl Logger {
    /// Writes one whole line with one write(2), so lines of concurrent sessions never
    /// interleave; a failed write of a log line has nowhere better to be reported.
    ///
    /// No process-wide lock is held for a line of at most `PIPE_BUF` bytes (all but lines
    /// with very long client-chosen names): the kernel writes it whole with respect to other
    /// writes, to a pipe (pipe(7)), a regular file or a stream socket. `std::io::stderr()`'s own
    /// lock made two serving threads that logged at the same moment wait for each other in
    /// futex(2) (issue 17). A longer line is written under an exclusive lock that every shorter
    /// line takes shared, so its possible partial writes are never split by another line.
    fn write_line(&self, to: Option<&File>, line: &[u8]) {
        let Some(file) = to else {
            let _ = std::io::stderr().lock().write_all(line);
            return;
        };
        if line.len() <= libc::PIPE_BUF {
            let _shared = LONG_LINES.read();
            let _ = (&*file).write_all(line);
        } else {
            let _exclusive = LONG_LINES.write();
            let _ = (&*file).write_all(line);
        }
    }
}

/// The syslog priority of a log level (a `connected:` line is a notice, as in the paper).
fn priority(level: Level) -> libc::c_int {
    match level {
        Level::Error => libc::LOG_ERR,
        Level::Warn => libc::LOG_WARNING,
        Level::Info => libc::LOG_NOTICE,
        Level::Debug | Level::Trace => libc::LOG_DEBUG,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a point in time (proleptic Gregorian calendar, UTC).
fn utc_timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Converts days since 1970-01-01 to (year, month, day); Howard Hinnant's well-known algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_pid_in_log_lines_is_this_process() {
        assert_eq!(pid(), std::process::id());
        assert_eq!(pid(), std::process::id(), "read again, from the cache");
    }

    #[test]
    fn lines_written_at_once_from_threads_stay_whole() {
        let path = std::env::temp_dir().join(format!("sockd-log-lines-{}", std::process::id()));
        let file = File::create(&path).expect("create");
        let logger = Logger { sink: Sink::Stderr, level: LevelFilter::Info, stderr: Some(file) };
        // Short lines (no lock but the shared one) and lines longer than PIPE_BUF (exclusive).
        let lines: Vec<String> = (0..4)
            .map(|t| {
                let len = if t % 2 == 0 { 100 } else { libc::PIPE_BUF + 500 };
                format!("{}\n", char::from(b'a' + t as u8).to_string().repeat(len))
            })
            .collect();
        std::thread::scope(|scope| {
            for line in &lines {
                let logger = &logger;
                scope.spawn(move || {
                    for _ in 0..200 {
                        logger.write_line(logger.stderr.as_ref(), line.as_bytes());
                    }
                });
            }
        });
        let written = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(written.lines().count(), 800);
        for line in written.lines() {
            assert!(lines.iter().any(|l| l.trim_end() == line), "a line was split: {line:.40}…");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_782_896_789);
        assert_eq!(utc_timestamp(t), "2026-11-27T12:34:56.789Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}
