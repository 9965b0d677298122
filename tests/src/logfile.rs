//! A log a program writes to a file rather than to the pipes a [`crate::Daemon`] captures:
//! `sockd --log-file` under inetd (where stdout and stderr are the client's socket) and
//! vsftpd's protocol log. Read on demand; waiting polls the file, always with a deadline.
//!
//! Not here: starting the programs that write them (`inetd`, `vsftpd`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A log file and a label for messages.
#[derive(Debug, Clone)]
pub struct LogFile {
    name: String,
    path: PathBuf,
}

impl LogFile {
    /// The log at `path`, labelled `name` in assertion messages. The file need not exist yet.
    pub fn new(name: &str, path: impl Into<PathBuf>) -> LogFile {
        LogFile { name: name.to_owned(), path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its whole contents so far (empty when it does not exist yet).
    pub fn text(&self) -> String {
        std::fs::read(&self.path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The lines containing every one of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_owned)
            .collect()
    }

    /// Waits (bounded) until `count` lines contain every one of `needles`; returns them.
    /// Panics with the whole file when they do not show up in time.
    pub fn wait_lines(&self, needles: &[&str], count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.lines_with(needles);
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} ({}): expected {count} line(s) containing {needles:?} within {timeout:?}, \
                 found {}; the file:\n{}",
                self.name,
                self.path.display(),
                found.len(),
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) for one line containing every one of `needles`.
    pub fn wait_line(&self, needles: &[&str], timeout: Duration) -> String {
        self.wait_lines(needles, 1, timeout).swap_remove(0)
    }
}
