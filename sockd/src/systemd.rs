//! sockd under systemd: readiness notifications to the service manager (the sd_notify(3)
//! protocol: READY, RELOADING with MONOTONIC_USEC, STOPPING, STATUS), the listening sockets it
//! passes by socket activation (sd_listen_fds(3): LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), and
//! whether standard error is the journal (JOURNAL_STREAM, systemd.exec(5)).
//!
//! Not here: binding `--listen` addresses and the signal loop (`lib.rs`), the log format
//! (`logging.rs`), the unit files (`dist/systemd/`). sockd starts no other program, so the
//! variables stay in its environment harmlessly; LISTEN_PID would make any child ignore them.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};

use log::warn;
use sd_notify::NotifyState;

use crate::sys;

/// Sends state changes to the service manager named by `NOTIFY_SOCKET`, best effort: the first
/// failure is logged (once), sockd keeps serving either way.
///
/// The sending is written here rather than with `sd_notify::notify`: that function connects to
/// the variable's value as a file path, so it cannot reach an abstract-namespace socket (`@name`,
/// as systemd and container managers hand out), and it opens a new socket per message. The
/// protocol is one datagram of `KEY=VALUE` lines; the lines come from the crate's `NotifyState`.
#[derive(Debug)]
pub struct Notifier {
    /// The socket and where it sends; `None` when `NOTIFY_SOCKET` is unset or empty.
    target: Option<Target>,
    /// Whether a failure was already reported.
    warned: AtomicBool,
}

#[derive(Debug)]
struct Target {
    /// `NOTIFY_SOCKET` as given, for messages.
    name: String,
    /// The parsed address, or why it cannot be used.
    addr: Result<UnixAddr, String>,
    /// An unbound datagram socket (close-on-exec), opened once.
    socket: Result<UnixDatagram, String>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`; without it every call does nothing.
    pub fn from_env() -> Notifier {
        Notifier::for_socket(std::env::var_os("NOTIFY_SOCKET"))
    }

    /// A notifier sending to `value` (a `NOTIFY_SOCKET` value), or one that does nothing.
    pub fn for_socket(value: Option<OsString>) -> Notifier {
        let target = value.filter(|v| !v.is_empty()).map(|value| Target {
            name: value.to_string_lossy().into_owned(),
            addr: parse_notify_socket(value.as_bytes()),
            socket: UnixDatagram::unbound().map_err(|e| format!("cannot open a socket: {e}")),
        });
        Notifier { target, warned: AtomicBool::new(false) }
    }

    /// A notifier that does nothing (inetd mode, `--check`).
    pub fn disabled() -> Notifier {
        Notifier::for_socket(None)
    }

    /// Whether a service manager asked for notifications.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// READY=1 with a status line: every listener is open and privileges are dropped.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// RELOADING=1 with the time it started, as `Type=notify-reload` and systemd 253+ expect.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// STOPPING=1 with a status line.
    pub fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// A new STATUS= line alone.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        let Some(target) = &self.target else { return };
        let message: String = states.iter().map(|state| format!("{}\n", one_line(state))).collect();
        let sent = match (&target.socket, &target.addr) {
            (Ok(socket), Ok(addr)) => {
                socket.send_to_addr(message.as_bytes(), addr).map_err(|e| e.to_string()).and_then(
                    |n| (n == message.len()).then_some(()).ok_or_else(|| "short write".to_string()),
                )
            }
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        };
        if let Err(e) = sent {
            if !self.warned.swap(true, Ordering::Relaxed) {
                warn!(
                    "cannot notify the service manager at NOTIFY_SOCKET={}: {e}; sockd keeps \
                     serving (this is reported once)",
                    target.name
                );
            }
        }
    }
}

/// A state as one protocol line: a STATUS text never carries a newline into the next field.
fn one_line(state: &NotifyState<'_>) -> String {
    state.to_string().replace('\n', " ")
}

/// The address in `NOTIFY_SOCKET`: an absolute path, or `@name` for the abstract namespace.
fn parse_notify_socket(value: &[u8]) -> Result<UnixAddr, String> {
    match value.first() {
        Some(b'/') => UnixAddr::from_pathname(std::ffi::OsStr::from_bytes(value))
            .map_err(|e| format!("unusable path: {e}")),
        Some(b'@') => UnixAddr::from_abstract_name(&value[1..])
            .map_err(|e| format!("unusable abstract name: {e}")),
        _ => {
            Err("not an absolute path or an @abstract name (the only kinds sockd supports)".into())
        }
    }
}

/// One listening socket handed over by systemd, ready for tokio.
#[derive(Debug)]
pub struct PassedListener {
    /// Non-blocking, close-on-exec, validated as a listening TCP socket.
    pub listener: TcpListener,
    /// Its name from `LISTEN_FDNAMES` (`FileDescriptorName=`; "unknown" without one).
    pub name: String,
}

/// The listening sockets systemd passed to this process, if `LISTEN_PID` names it (otherwise,
/// per sd_listen_fds(3), the variables were meant for another process and are ignored: an empty
/// list). Each must be an IPv4 or IPv6 stream socket that is listening; anything else is an
/// error naming the descriptor, so sockd never starts serving less than it was given.
///
/// Must run before sockd opens any descriptor of its own (see `sys::adopt_passed_fds`).
pub fn passed_listeners() -> Result<Vec<PassedListener>, String> {
    let what = || {
        let count = std::env::var("LISTEN_FDS").unwrap_or_default();
        let range = match count.parse::<u32>() {
            Ok(1) => ", fd 3".to_string(),
            Ok(n) if n > 1 => format!(", fds 3 to {}", u64::from(n) + 2),
            _ => String::new(),
        };
        format!("sockets passed by systemd (LISTEN_FDS={count}{range})")
    };
    let passed: Vec<(i32, String)> =
        sd_notify::listen_fds_with_names().map_err(|e| format!("{}: {e}", what()))?.collect();
    let (Some(first), Some(last)) = (passed.first(), passed.last()) else {
        return Ok(Vec::new());
    };
    let fds = sys::adopt_passed_fds(first.0..last.0 + 1).map_err(|e| format!("{}: {e}", what()))?;
    fds.into_iter()
        .zip(passed)
        .map(|(fd, (number, name))| {
            let listener = validate(fd).map_err(|e| {
                format!("fd {number} (named `{name}`) passed by systemd: {e}; sockd needs a listening TCP socket (ListenStream= of an IP address or port, Accept=no)")
            })?;
            Ok(PassedListener { listener, name })
        })
        .collect()
}

/// Checks that a passed descriptor is a listening IPv4/IPv6 stream socket and makes it
/// non-blocking and close-on-exec, as sockd's own listeners are.
fn validate(fd: std::os::fd::OwnedFd) -> Result<TcpListener, String> {
    let socket = socket2::Socket::from(fd);
    let domain = socket.domain().map_err(|e| format!("not a socket ({e})"))?;
    if domain != socket2::Domain::IPV4 && domain != socket2::Domain::IPV6 {
        return Err(format!("not an IPv4 or IPv6 socket ({domain:?})"));
    }
    match socket.r#type().map_err(|e| e.to_string())? {
        socket2::Type::STREAM => {}
        socket2::Type::DGRAM => return Err("a datagram (UDP) socket".into()),
        other => return Err(format!("not a stream socket ({other:?})")),
    }
    if !socket.is_listener().map_err(|e| e.to_string())? {
        return Err("a stream socket that is not listening".into());
    }
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    socket.set_cloexec(true).map_err(|e| e.to_string())?;
    Ok(socket.into())
}

/// Whether standard error is the journal: systemd sets `JOURNAL_STREAM=DEV:INODE` to the
/// stream it connected there (systemd.exec(5)); a match means lines on stderr reach the journal
/// with their priority prefix, and a mismatch (stderr redirected since) means they would not.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    use std::os::fd::AsFd;
    let stat = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| std::fs::File::from(fd).metadata());
    matches!(stat, Ok(meta) if meta.dev() == dev && meta.ino() == ino)
}

/// The STATUS= text while serving: where sockd listens and how many sessions run.
pub fn serving_status(addrs: &[SocketAddr], sessions: usize, note: Option<&str>) -> String {
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let mut status = format!("listening on {}; {sessions} sessions", list.join(", "));
    if let Some(note) = note {
        status.push_str("; ");
        status.push_str(note);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_kinds() {
        assert!(parse_notify_socket(b"/run/systemd/notify").is_ok());
        let abstract_addr = parse_notify_socket(b"@sockd-test").expect("abstract");
        assert_eq!(abstract_addr.as_abstract_name(), Some(&b"sockd-test"[..]));
        assert!(parse_notify_socket(b"relative/path").is_err());
        assert!(parse_notify_socket(b"vsock:2:1234").is_err());
    }

    #[test]
    fn status_lines_stay_one_line() {
        assert_eq!(one_line(&NotifyState::Status("a\nb")), "STATUS=a b");
        assert_eq!(one_line(&NotifyState::Ready), "READY=1");
    }

    #[test]
    fn unset_or_empty_socket_disables() {
        assert!(!Notifier::for_socket(None).enabled());
        assert!(!Notifier::for_socket(Some(OsString::new())).enabled());
        assert!(Notifier::for_socket(Some("/nonexistent/notify".into())).enabled());
    }

    #[test]
    fn serving_status_lists_addresses() {
        let addrs = ["127.0.0.1:1080".parse().expect("addr"), "[::1]:1080".parse().expect("addr")];
        assert_eq!(
            serving_status(&addrs, 3, Some("x")),
            "listening on 127.0.0.1:1080, [::1]:1080; 3 sessions; x"
        );
    }
}
