//! The pid file and the log file (issue 11, item 6): sockd opens them as root, before it drops
//! privileges with `--user`, in directories that user may be able to write. A symbolic link
//! planted there must not make root truncate or append to another file, and nothing but a
//! regular file (no FIFO, no directory, no hard link to another file) is written: sockd refuses
//! to start, naming the path and why.
//!
//! The symlink attack needs root (to be root when the files are opened, and to give the
//! directory to `nobody`); without root that test reports itself skipped (`common::skip`). The
//! FIFO and the regular-file cases run as any user.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0/8 127.0.0.0/8\n";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// nobody's uid and gid from /etc/passwd.
fn nobody_ids() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("nobody:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// Starts sockd with `args` after the rule file and a free port.
fn spawn_sockd(dir: &TempDir, args: &[&std::ffi::OsStr]) -> Child {
    let conf = dir.write("sockd.conf", RULES);
    let mut cmd = Command::new(sockd_bin());
    cmd.arg("-f").arg(conf).args(["-l", "127.0.0.1:0"]).args(args);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"))
}

/// Waits up to 5 s for sockd to refuse to start; returns its standard error. Panics (after
/// killing it) when it is still running: it went on with a file it must not use.
fn expect_refusal(mut child: Child, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: sockd did not refuse to start (still running after 5 s)");
            }
        }
    };
    let mut err = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
    }
    assert!(!status.success(), "{what}: sockd must exit with a failure, got {status}: {err}");
    err
}

/// Waits for `needle` in the log file at `path`; panics after 10 s.
fn wait_in_file(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {} within 10 s: {text}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A root-only file with known contents.
fn secret(dir: &TempDir, name: &str, contents: &str) -> PathBuf {
    let path = dir.write(name, contents);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

#[test]
fn planted_symlinks_do_not_make_root_write_other_files() {
    if !is_root() {
        skip("planted_symlinks_do_not_make_root_write_other_files", "needs root");
        return;
    }
    let Some((uid, gid)) = nobody_ids() else {
        skip("planted_symlinks_do_not_make_root_write_other_files", "no user nobody");
        return;
    };
    // run/ belongs to nobody, who plants links to two root-only files there.
    let dir = TempDir::new("files-symlink");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("mkdir run");
    std::os::unix::fs::chown(&run, Some(uid), Some(gid)).expect("chown run");
    let shadow = secret(&dir, "shadow", "root:secret-hash:19000::::::\n");
    let authorized = secret(&dir, "authorized_keys", "ssh-ed25519 AAAA root@host\n");
    let (pid_file, log_file) = (run.join("sockd.pid"), run.join("sockd.log"));
    std::os::unix::fs::symlink(&shadow, &pid_file).expect("plant pid symlink");
    std::os::unix::fs::symlink(&authorized, &log_file).expect("plant log symlink");
    for link in [&pid_file, &log_file] {
        std::os::unix::fs::lchown(link, Some(uid), Some(gid)).expect("lchown");
    }
    let user = ["--user".as_ref(), "nobody".as_ref()];

    // Both at once, then each alone (the first refusal would hide the second).
    for (what, args) in [
        (
            "both",
            vec![
                "--pid-file".as_ref(),
                pid_file.as_os_str(),
                "--log-file".as_ref(),
                log_file.as_os_str(),
            ],
        ),
        ("pid file", vec!["--pid-file".as_ref(), pid_file.as_os_str()]),
        ("log file", vec!["--log-file".as_ref(), log_file.as_os_str()]),
    ] {
        let mut all = user.to_vec();
        all.extend(args);
        let err = expect_refusal(spawn_sockd(&dir, &all), what);
        assert_eq!(
            std::fs::read_to_string(&shadow).expect("shadow"),
            "root:secret-hash:19000::::::\n",
            "{what}: the pid file's symlink target was written"
        );
        assert_eq!(
            std::fs::read_to_string(&authorized).expect("authorized_keys"),
            "ssh-ed25519 AAAA root@host\n",
            "{what}: the log file's symlink target was written"
        );
        let named = if what == "pid file" { &pid_file } else { &log_file };
        assert!(
            err.contains(&named.display().to_string()) && err.contains("symbolic link"),
            "{what}: the error names the path and the symbolic link: {err}"
        );
    }
}

#[test]
fn pid_and_log_files_must_be_regular_files() {
    let dir = TempDir::new("files-fifo");
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo");
    for option in ["--pid-file", "--log-file"] {
        let err = expect_refusal(spawn_sockd(&dir, &[option.as_ref(), fifo.as_os_str()]), option);
        assert!(
            err.contains(&fifo.display().to_string()) && err.contains("not a regular file"),
            "{option} on a FIFO: the error names the path and says why: {err}"
        );
    }
    // A hard link to another file is not the pid file's own file either.
    let other = dir.write("other", "keep me\n");
    let linked = dir.path().join("linked.pid");
    std::fs::hard_link(&other, &linked).expect("hard link");
    let err = expect_refusal(
        spawn_sockd(&dir, &["--pid-file".as_ref(), linked.as_os_str()]),
        "hard link",
    );
    assert!(err.contains(&linked.display().to_string()) && err.contains("link"), "{err}");
    assert_eq!(std::fs::read_to_string(&other).expect("other"), "keep me\n");
}

#[test]
fn regular_pid_and_log_files_are_written_as_before() {
    let dir = TempDir::new("files-regular");
    // An old pid file longer than the new contents, an old log to append to.
    let pid_file = dir.write("sockd.pid", "123456789\nstale\n");
    let log_file = dir.write("sockd.log", "old line\n");
    let mut args = vec!["--pid-file".as_ref(), pid_file.as_os_str()];
    args.extend(["--log-file".as_ref(), log_file.as_os_str()]);
    let mut child = spawn_sockd(&dir, &args);
    let log = wait_in_file(&log_file, "listening on");
    assert!(log.starts_with("old line\n"), "the log is appended to: {log}");
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    assert_eq!(pid, format!("{}\n", child.id()), "the pid file holds the pid and nothing else");
    let _ = child.kill();
    let _ = child.wait();
    // New files are created; the log is not readable by everyone (it names users).
    let fresh_log = dir.path().join("new.log");
    let mut child = spawn_sockd(&dir, &["--log-file".as_ref(), fresh_log.as_os_str()]);
    wait_in_file(&fresh_log, "listening on");
    let mode = std::fs::metadata(&fresh_log).expect("new log").permissions().mode();
    assert_eq!(mode & 0o007, 0, "a new log file is not world-readable: {:o}", mode & 0o777);
    let _ = child.kill();
    let _ = child.wait();
}
