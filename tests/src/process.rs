//! Running real programs in a namespace: [`Daemon`] (a server in the background whose output is
//! captured line by line and can be waited for) and [`Client`] (a program run to completion
//! under the library, with a deadline). Everything goes through `ip netns exec NS …`, which
//! execs the program in place, so the pid we hold is the program's.
//!
//! The library is never preloaded into `ip` itself: [`Preload::Env`] passes `LD_PRELOAD` through
//! `env`, and [`Preload::Socksify`] runs `scripts/socksify`, which sets it for the program only.
//! Variables from the test's own environment that would change the library's behaviour
//! (`LD_PRELOAD`, `SOCKS_*`) are removed first.
//!
//! Not here: the network (`netns`) or the destination servers (`servers`).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::paths;

/// Environment variables the library (or the loader) reacts to, removed from every command so
/// the test's own environment cannot leak into what is tested.
pub(crate) const SCRUBBED: [&str; 9] = [
    "LD_PRELOAD",
    "SOCKS_CONF",
    "SOCKS_SERVER",
    "SOCKS_VERSION",
    "SOCKS_USERNAME",
    "SOCKS_PASSWORD",
    "SOCKS_TIMEOUT",
    "SOCKS_LOG",
    "SOCKS_LIBRARY",
];

/// The network namespace the test itself runs in: no `ip netns exec`, so no root needed.
pub const OWN_NETNS: &str = "";

fn base_command(ns: &str) -> Command {
    let mut command = if ns == OWN_NETNS {
        Command::new("/usr/bin/env")
    } else {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]);
        command
    };
    for name in SCRUBBED {
        command.env_remove(name);
    }
    command
}

#[derive(Debug, Default)]
struct Lines {
    text: Mutex<String>,
    grew: Condvar,
}

/// A program running in the background (a SOCKS server, sshd) with its stdout and stderr
/// captured line by line; killed and reaped on drop.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
    lines: Arc<Lines>,
    readers: Vec<JoinHandle<()>>,
}

impl Daemon {
    /// Starts `program ARGS` in namespace `ns`; `name` labels its lines in the test output.
    pub fn spawn(ns: &str, name: &str, program: &Path, args: &[&str]) -> Daemon {
        let mut command = base_command(ns);
        command.arg(program).args(args);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child =
            command.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let lines = Arc::new(Lines::default());
        let mut readers = Vec::new();
        let out = child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>);
        let err = child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>);
        for pipe in [out, err].into_iter().flatten() {
            let (lines, name) = (lines.clone(), name.to_owned());
            readers.push(std::thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = Vec::new();
                while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                    let text = String::from_utf8_lossy(&line);
                    eprint!("[{name}] {text}");
                    lines.text.lock().unwrap_or_else(|p| p.into_inner()).push_str(&text);
                    lines.grew.notify_all();
                    line.clear();
                }
            }));
        }
        Daemon { name: name.to_owned(), child, lines, readers }
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        self.lines.text.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The lines containing every one of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_owned)
            .collect()
    }

    /// Waits (bounded) until `count` lines contain every one of `needles`; returns those lines.
    /// Panics with the whole log when they do not show up in time.
    pub fn wait_lines(&self, needles: &[&str], count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut text = self.lines.text.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let found: Vec<String> = text
                .lines()
                .filter(|line| needles.iter().all(|n| line.contains(n)))
                .map(str::to_owned)
                .collect();
            if found.len() >= count {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: expected {count} line(s) containing {needles:?} within {timeout:?}, found \
                 {}; its log:\n{}",
                self.name,
                found.len(),
                *text
            );
            text = self.lines.grew.wait_timeout(text, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Waits (bounded) for one line containing every one of `needles`.
    pub fn wait_line(&self, needles: &[&str], timeout: Duration) -> String {
        let mut lines = self.wait_lines(needles, 1, timeout);
        lines.swap_remove(0)
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its label.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipes close with the process (unless it left children, which the topology kills).
        let deadline = Instant::now() + Duration::from_secs(2);
        for reader in self.readers.drain(..) {
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }
}

/// How the library gets into a [`Client`].
#[derive(Debug, Clone)]
pub enum Preload {
    /// Not at all (the program runs plain).
    None,
    /// `env LD_PRELOAD=…/libsocks.so PROGRAM`.
    Env,
    /// `scripts/socksify OPTIONS… PROGRAM`.
    Socksify(Vec<String>),
}

/// A program to run to completion in a namespace; see [`Client::run`].
#[derive(Debug, Clone)]
pub struct Client {
    ns: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    preload: Preload,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

/// What a [`Client`] run produced.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The command line, for messages.
    pub command: String,
    /// Exit status; `None` when it overran its deadline and was killed.
    pub status: Option<ExitStatus>,
    /// Standard output, as bytes.
    pub stdout: Vec<u8>,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
}

impl Ran {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Standard output as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// A multi-line description for assertion messages.
    pub fn describe(&self) -> String {
        let shown = if self.stdout.len() > 2000 {
            format!("({} bytes)", self.stdout.len())
        } else {
            self.stdout_text()
        };
        format!(
            "command: {}\nstatus: {}\nelapsed: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.status.map_or("killed at the deadline".to_owned(), |s| s.to_string()),
            self.elapsed,
            shown,
            self.stderr
        )
    }

    /// Panics with the description unless it exited with status 0.
    pub fn assert_success(&self) -> &Ran {
        assert!(self.success(), "the program failed\n{}", self.describe());
        self
    }
}

impl Client {
    /// `program` in namespace `ns`, without the library, 30 s deadline.
    pub fn new(ns: &str, program: impl Into<PathBuf>) -> Client {
        Client {
            ns: ns.to_owned(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            preload: Preload::None,
            stdin: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Appends arguments.
    pub fn args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Client {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the program.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Client {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    /// Chooses how the library is loaded.
    pub fn preload(mut self, preload: Preload) -> Client {
        self.preload = preload;
        self
    }

    /// `LD_PRELOAD=…/libsocks.so` (shorthand for [`Preload::Env`]).
    pub fn ld_preload(self) -> Client {
        self.preload(Preload::Env)
    }

    /// `socksify OPTIONS…` (shorthand for [`Preload::Socksify`]).
    pub fn socksify(self, options: &[&str]) -> Client {
        self.preload(Preload::Socksify(options.iter().map(|s| (*s).to_owned()).collect()))
    }

    /// Feeds `bytes` on standard input (then closes it); otherwise stdin is /dev/null.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Client {
        self.stdin = Some(bytes.into());
        self
    }

    /// Changes the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    fn command(&self) -> Command {
        let mut command = base_command(&self.ns);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        match &self.preload {
            Preload::None => {}
            Preload::Env => {
                let mut preload = OsString::from("LD_PRELOAD=");
                preload.push(paths::libsocks());
                command.arg("/usr/bin/env").arg(preload);
            }
            Preload::Socksify(options) => {
                // socksify must find the library under test, not an installed one.
                command.env("SOCKS_LIBRARY", paths::libsocks());
                command.arg(paths::socksify()).args(options);
            }
        }
        command.arg(&self.program).args(&self.args);
        command
    }

    /// Runs it to completion; after the deadline it is killed and `status` is `None`.
    pub fn run(&self) -> Ran {
        let mut command = self.command();
        let shown = format!(
            "{}{:?} {:?}",
            self.env.iter().map(|(k, v)| format!("{k}={v} ")).collect::<String>(),
            command.get_program(),
            command.get_args().collect::<Vec<_>>()
        );
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let start = Instant::now();
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
        if let (Some(bytes), Some(mut pipe)) = (self.stdin.clone(), child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        let stdout = collect(child.stdout.take());
        let stderr = collect(child.stderr.take());
        let deadline = start + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let elapsed = start.elapsed();
        // Children it left behind may hold the pipes: wait for them a little, not forever.
        let grace = Instant::now() + Duration::from_secs(5);
        let left = || grace.saturating_duration_since(Instant::now());
        let stdout = stdout.recv_timeout(left()).unwrap_or_default();
        let stderr = stderr.recv_timeout(left()).unwrap_or_default();
        Ran {
            command: shown,
            status,
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed,
        }
    }
}

/// Reads all of `pipe` on a thread of its own; the bytes arrive on the channel at its end.
pub(crate) fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = tx.send(bytes);
    });
    rx
}
