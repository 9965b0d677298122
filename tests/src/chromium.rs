//! Debian's Chromium (`/usr/bin/chromium`) run headless in a lab's `inside` namespace, as an
//! unprivileged user (`nobody`, through `setpriv`) with its sandbox ON (never `--no-sandbox`,
//! never `--single-process`), under `scripts/socksify` and the built libsocks.so:
//! `chromium --headless --dump-dom URL` with the flags that keep it from phoning home, a fresh
//! profile and HOME in a directory of the test's that the user owns.
//!
//! While the page is loading — the test's web site holds one of its scripts (see
//! `web::Page::held`) — [`run`] looks at every process of the browser in `/proc`: its type
//! (`--type=renderer`, the network service…), its seccomp mode, its user and pid namespaces and
//! whether libsocks.so is mapped; then it releases the held script and collects the dumped DOM
//! and stderr. The browser runs in its own process group, killed whole (with the crash handlers
//! that leave the group, found by the profile path in their command line) when it is done or
//! overruns its deadline.
//!
//! Not here: the web site (`web`), the assertions (tests/tests/runtimes.rs).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{collect, SCRUBBED};
use crate::web::Web;
use crate::{paths, Lab, Ns, SERVER};

/// The unprivileged user Chromium runs as (Debian's `nobody`).
pub const USER: &str = "nobody";
/// [`USER`]'s uid.
pub const UID: u32 = 65534;
/// The group it runs with (Debian's `nogroup`).
pub const GROUP: &str = "nogroup";
/// [`GROUP`]'s gid.
pub const GID: u32 = 65534;

/// A display of the test's own environment: removed from the browser's (as the library's
/// settings are, `process::SCRUBBED`), so it runs headless whatever the test was started from.
const DISPLAYS: [&str; 2] = ["DISPLAY", "WAYLAND_DISPLAY"];

/// How long one browser run may take at most (a loaded 2-core machine; the usual is 1–3 s).
const DEADLINE: Duration = Duration::from_secs(60);

/// The flags every run gets besides the profile directory: headless, no first-run work, no
/// background traffic to Google, no GPU. QUIC is deliberately left on: its UDP must go through
/// the relay or fail, never leave directly.
pub const FLAGS: [&str; 7] = [
    "--headless",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--no-default-browser-check",
];

/// One process of the browser as `/proc` showed it mid-load.
#[derive(Debug, Clone)]
pub struct Process {
    /// Its pid (in the test's pid namespace).
    pub pid: u32,
    /// The value of its `--type=` argument, or `browser` for the main process.
    pub kind: String,
    /// The value of `--utility-sub-type=`, for utility processes (the network service is
    /// `network.mojom.NetworkService`).
    pub sub_type: Option<String>,
    /// Its real uid (`Uid:` of /proc/PID/status, as the test's user namespace sees it).
    pub uid: Option<u32>,
    /// `Seccomp:` of /proc/PID/status (0 off, 1 strict, 2 filter).
    pub seccomp: Option<u8>,
    /// `/proc/PID/ns/user`, e.g. `user:[4026531837]`.
    pub user_ns: String,
    /// `/proc/PID/ns/pid`.
    pub pid_ns: String,
    /// `/proc/PID/ns/net`.
    pub net_ns: String,
    /// Whether libsocks.so is mapped into it.
    pub has_library: bool,
}

/// What one run produced.
#[derive(Debug)]
pub struct Run {
    /// The command line, for messages.
    pub command: String,
    /// Whether it exited with status 0 before the deadline.
    pub success: bool,
    /// How it ended (`exit status: 0`, `killed at the deadline`).
    pub status: String,
    /// The dumped DOM (stdout).
    pub dom: String,
    /// Its stderr (the library's log included), without the D-Bus complaints of a machine with
    /// no bus.
    pub stderr: String,
    /// The processes seen while the held script was pending; empty when it never was.
    pub processes: Vec<Process>,
    /// Whether the held script was requested at all (within the deadline).
    pub held_requested: bool,
    /// How long the run took.
    pub elapsed: Duration,
}

impl Run {
    /// The processes of type `kind` (`renderer`, `utility`, `zygote`…).
    pub fn of_kind(&self, kind: &str) -> Vec<&Process> {
        self.processes.iter().filter(|p| p.kind == kind).collect()
    }

    /// The network service process, if one was seen.
    pub fn network_service(&self) -> Option<&Process> {
        self.processes
            .iter()
            .find(|p| p.sub_type.as_deref() == Some("network.mojom.NetworkService"))
    }

    /// The browser (main) process, if one was seen.
    pub fn browser(&self) -> Option<&Process> {
        self.processes.iter().find(|p| p.kind == "browser")
    }

    /// A multi-line description for assertion messages: command, status, processes, DOM and
    /// stderr (the last 30,000 characters of it).
    pub fn describe(&self) -> String {
        let mut text = format!(
            "command: {}\nstatus: {}\nelapsed: {:?}\nheld script requested: {}\n--- processes \
             mid-load ---\n",
            self.command, self.status, self.elapsed, self.held_requested
        );
        for p in &self.processes {
            let _ = writeln!(
                text,
                "{} {}{} uid={:?} seccomp={:?} {} {} {} library={}",
                p.pid,
                p.kind,
                p.sub_type.as_ref().map(|s| format!(" ({s})")).unwrap_or_default(),
                p.uid,
                p.seccomp,
                p.user_ns,
                p.pid_ns,
                p.net_ns,
                p.has_library
            );
        }
        let stderr = tail(&self.stderr, 30_000);
        let _ = write!(text, "--- dom ---\n{}\n--- stderr ---\n{stderr}", self.dom);
        text
    }
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Whether [`USER`] can make the namespaces Chromium's sandbox needs (user, pid and network,
/// as its zygote does) in `lab`'s `inside` namespace: `Err` says why not, with the kernel
/// settings that decide it, for the test to report as skipped. The sandbox itself is then
/// checked on the running browser; this only tells "this machine forbids it" from "broken".
pub fn sandbox_possible(lab: &Lab) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["netns", "exec", lab.ns(Ns::Inside)])
        .arg(paths::require("setpriv", "util-linux"))
        .args([&format!("--reuid={USER}"), &format!("--regid={GROUP}"), "--clear-groups", "--"])
        .arg(paths::require("unshare", "util-linux"))
        .args(["--user", "--pid", "--net", "--fork", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare (Debian package util-linux): {e}"));
    if out.status.success() {
        return Ok(());
    }
    let settings: Vec<String> = [
        "/proc/sys/user/max_user_namespaces",
        "/proc/sys/kernel/unprivileged_userns_clone",
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    ]
    .iter()
    .filter_map(|f| Some(format!("{f}={}", std::fs::read_to_string(f).ok()?.trim())))
    .collect();
    Err(format!(
        "{USER} cannot create the user, pid and network namespaces of Chromium's sandbox here \
         (`unshare --user --pid --net` as {USER}: {}; {}); the test never runs Chromium \
         without its sandbox",
        String::from_utf8_lossy(&out.stderr).trim(),
        settings.join(", ")
    ))
}

/// Makes the browser's home directory (HOME, XDG dirs, the profile) under the lab's temporary
/// directory, owned by [`USER`] and [`GROUP`]; returns it.
fn home(lab: &Lab, tag: &str) -> PathBuf {
    let home = lab.dir.path().join(format!("chromium-{tag}"));
    let dirs = ["", "profile", ".config", ".cache", "runtime"].map(|d| home.join(d));
    for dir in dirs {
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::os::unix::fs::chown(&dir, Some(UID), Some(GID)))
            .and_then(|()| std::fs::set_permissions(&dir, Permissions::from_mode(0o700)))
            .unwrap_or_else(|e| panic!("cannot prepare {}: {e}", dir.display()));
    }
    home
}

/// Runs `chromium --headless --dump-dom url` in `lab`'s `inside` namespace as [`USER`], under
/// `socksify -s 192.0.2.1:1080` with `SOCKS_LOG=debug`; `tag` names its home directory. Once
/// `web` has a request for `held` (a held page), records the browser's processes, then
/// releases it and waits for the browser to finish. Never panics on the browser's failure:
/// the caller asserts on the [`Run`]. Its `XDG_RUNTIME_DIR` (where the library keeps the
/// user's map of fake names) is a private directory of this run.
pub fn run(lab: &Lab, tag: &str, url: &str, web: &Web, held: &str) -> Run {
    run_with(lab, tag, url, web, held, &[])
}

/// [`run`] with `extra` flags after [`FLAGS`].
pub fn run_with(lab: &Lab, tag: &str, url: &str, web: &Web, held: &str, extra: &[&str]) -> Run {
    let chromium = paths::require("chromium", "chromium");
    let home = home(lab, tag);
    let mut command = Command::new("ip");
    command.args(["netns", "exec", lab.ns(Ns::Inside)]);
    command.arg(paths::require("setpriv", "util-linux"));
    command.args([&format!("--reuid={USER}"), &format!("--regid={GROUP}")]);
    command.args(["--clear-groups", "--"]);
    command.arg(paths::socksify()).args(["-s", SERVER]);
    command.arg(&chromium).args(FLAGS).args(extra);
    command.arg(format!("--user-data-dir={}", home.join("profile").display()));
    command.args(["--dump-dom", url]);
    for name in SCRUBBED.iter().chain(&DISPLAYS) {
        command.env_remove(name);
    }
    command
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_RUNTIME_DIR", home.join("runtime"))
        .env("SOCKS_LIBRARY", paths::libsocks())
        .env("SOCKS_LOG", "debug")
        .env("no_proxy", "*");
    let shown = format!("{:?} {:?}", command.get_program(), command.get_args().collect::<Vec<_>>());
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.process_group(0);
    let start = Instant::now();
    let child = command.spawn().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let mut browser = Browser { child, home };
    let stdout = collect(browser.child.stdout.take());
    let stderr = collect(browser.child.stderr.take());

    // Wait for the held script (or the browser's end), then look at the processes.
    let deadline = start + DEADLINE;
    let mut held_requested = false;
    let mut exited = None;
    while Instant::now() < deadline {
        if web.has_request(held) {
            held_requested = true;
            break;
        }
        if let Ok(Some(status)) = browser.child.try_wait() {
            exited = Some(status);
            break;
        }
        web.wait_request(held, Duration::from_millis(50));
    }
    let processes = if held_requested { processes(browser.child.id()) } else { Vec::new() };
    web.release(held);

    let status = match exited {
        Some(status) => Some(status),
        None => loop {
            match browser.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => break None,
            }
        },
    };
    let elapsed = start.elapsed();
    drop(browser);
    let grace = Instant::now() + Duration::from_secs(5);
    let left = || grace.saturating_duration_since(Instant::now());
    let dom =
        String::from_utf8_lossy(&stdout.recv_timeout(left()).unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.recv_timeout(left()).unwrap_or_default())
        .lines()
        .filter(|l| !l.contains("dbus/"))
        .fold(String::new(), |mut all, l| {
            all.push_str(l);
            all.push('\n');
            all
        });
    Run {
        command: shown,
        success: status.is_some_and(|s| s.success()),
        status: status.map_or("killed at the deadline".to_owned(), |s| s.to_string()),
        dom,
        stderr,
        processes,
        held_requested,
        elapsed,
    }
}

/// The browser while it runs: on drop, its whole process group and the crash handlers it
/// started (which leave the group) are killed and the main process reaped.
struct Browser {
    child: Child,
    home: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group this run created (process_group(0) made
            // the child its leader); a group already gone gives ESRCH.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        for pid in pids_mentioning(&self.home) {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: kill(2) on a process whose command line names this run's private
                // home directory (a crash handler of this browser); a stale pid gives ESRCH.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every process whose command line contains `dir`.
fn pids_mentioning(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect::<Vec<u32>>()
        })
        .unwrap_or_default()
}

/// The parent of `pid` from /proc/PID/stat (the field after the parenthesised name).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and all its descendants, described (processes that vanish meanwhile are left out).
fn processes(root: u32) -> Vec<Process> {
    let parents: HashMap<u32, u32> =
        all_pids().into_iter().filter_map(|pid| Some((pid, parent(pid)?))).collect();
    let mut family = vec![root];
    let mut i = 0;
    while i < family.len() {
        let pid = family[i];
        family.extend(parents.iter().filter(|(_, &p)| p == pid).map(|(&c, _)| c));
        i += 1;
    }
    family.into_iter().filter_map(describe).filter(|p| p.kind != "-").collect()
}

/// One process of the family; `kind` `-` for the launchers before the browser (ip, setpriv,
/// socksify, the /usr/bin/chromium script) and the crash handlers.
fn describe(pid: u32) -> Option<Process> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    // Chromium's child processes rewrite their command line into one string of words
    // separated by spaces (setproctitle), so split at both; only argv[0] and flags are read.
    let args: Vec<String> = cmdline
        .split(|&b| b == 0 || b == b' ')
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let program = args.first().cloned().unwrap_or_default();
    let value = |flag: &str| args.iter().find_map(|a| a.strip_prefix(flag).map(str::to_owned));
    let kind = if !program.ends_with("/chromium") {
        "-".to_owned()
    } else {
        value("--type=").unwrap_or_else(|| "browser".to_owned())
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok());
    let seccomp =
        status.lines().find_map(|l| l.strip_prefix("Seccomp:")).and_then(|v| v.trim().parse().ok());
    let ns = |name: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
            .map(|l| l.display().to_string())
            .unwrap_or_default()
    };
    let has_library = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .is_ok_and(|maps| maps.contains("/libsocks.so"));
    Some(Process {
        pid,
        kind,
        sub_type: value("--utility-sub-type="),
        uid,
        seccomp,
        user_ns: ns("user"),
        pid_ns: ns("pid"),
        net_ns: ns("net"),
        has_library,
    })
}
