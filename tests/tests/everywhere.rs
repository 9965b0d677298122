//! libsocks.so everywhere (issue 7): the library named in `/etc/ld.so.preload`, so that it
//! runs inside every program, setuid ones included — in a private mount namespace whose `/etc`
//! is an overlay (`socks_e2e::preload`), never the host's.
//!
//! - With no configuration at all, a battery of ordinary programs (sh and bash scripts,
//!   coreutils, ssh-keygen, python3, setuid `su` and `passwd` run by `nobody`, programs that
//!   fork, exec, spawn threads, use vfork and posix_spawn, close all descriptors with
//!   `closerange` and `close_range`, handle signals, and programs whose connections fail) prints
//!   the same stdout and stderr and exits the same way as without the library.
//! - With `/etc/socks.conf` proxying the outside network, the same battery is still unchanged,
//!   and the programs that connect (curl, python3, bash's `/dev/tcp`) reach the destination
//!   through sockd.
//! - Secure execution: python3 with a file capability, run by `nobody` (AT_SECURE=1), loads the
//!   library from `/etc/ld.so.preload` but ignores SOCKS_SERVER, SOCKS_CONF and SOCKS_LOG (its
//!   connection goes direct and fails, sockd sees nothing, nothing is logged); the same program
//!   without the capability honours them; `/etc/socks.conf` still applies to the secure one.
//! - Stress (python3 under LD_PRELOAD): 64 threads connecting at once; connections opened from a
//!   SIGALRM handler while the main thread and other threads connect; fork while threads are
//!   in the middle of connects, the children connecting too; descriptors closed with
//!   `close_range`/`closerange` and reused, and copied every way (dup, dup2, dup3, fcntl
//!   F_DUPFD and F_DUPFD_CLOEXEC). Python runs its handlers between bytecodes, so a small
//!   program of this package (`tests/src/bin/signal-connect.rs`) connects from a real,
//!   asynchronous SIGALRM handler too. Every run has a deadline (a hang is a failure), every
//!   byte and every getpeername is checked.
//! - Signal handlers inside the library (`tests/src/bin/signal-inside.rs`): while the main
//!   thread sits in a slow getaddrinfo, SIGALRM handlers send UDP datagrams on a socket with an
//!   association (relayed, never direct), on new sockets (EAGAIN, never direct), and TCP Fast
//!   Open data (through sockd), or look up a name that goes through sockd with getaddrinfo,
//!   gethostbyname(_r) and res_query (a fake address or EAI_AGAIN/TRY_AGAIN; the name server
//!   never hears of it).
//!
//! Not here: single programs through sockd (programs.rs), threads and fork basics
//! (processes.rs).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use socks_e2e::preload::{self, setup_failure, SETCAP_FAILED};
use socks_e2e::*;

/// Deadline of every program run here.
const DEADLINE: Duration = Duration::from_secs(25);

/// One program of the battery.
#[derive(Debug, Clone)]
struct Case {
    label: &'static str,
    program: PathBuf,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
}

fn case(label: &'static str, program: impl Into<PathBuf>, args: &[&str]) -> Case {
    Case {
        label,
        program: program.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        stdin: None,
    }
}

fn python(label: &'static str, script: &str) -> Case {
    case(label, paths::require("python3", "python3"), &["-c", script])
}

/// Runs `case` as `setup` says; panics when the private /etc could not be set up.
fn run(lab: &Lab, setup: &SystemWide, case: &Case) -> Ran {
    let mut client = setup.client(lab, &case.program, &case.args).timeout(DEADLINE);
    if let Some(bytes) = &case.stdin {
        client = client.stdin(bytes.clone());
    }
    let ran = client.run();
    if let Some(why) = setup_failure(&ran) {
        panic!("{}: the private /etc could not be set up: {why}\n{}", case.label, ran.describe());
    }
    ran
}

/// Asserts two runs of one program are indistinguishable: exit status, stdout, stderr.
fn assert_same(case: &Case, plain: &Ran, preloaded: &Ran, how: &str) {
    let same = plain.status.is_some()
        && plain.status == preloaded.status
        && plain.stdout == preloaded.stdout
        && plain.stderr == preloaded.stderr;
    assert!(
        same,
        "{}: {how} the program must behave exactly as without the library\n\
         ===== without the library =====\n{}\n===== with the library =====\n{}",
        case.label,
        plain.describe(),
        preloaded.describe()
    );
}

/// Files the battery reads: two text files with fixed times, and an ssh key pair.
fn fixture(lab: &Lab) -> PathBuf {
    let dir = lab.dir.path().join("fixture");
    std::fs::create_dir_all(&dir).expect("fixture directory");
    let when = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for (name, text) in [("a.txt", "pear 3\napple 1\nfig 2\n"), ("b.txt", "second file\n")] {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("fixture file");
        let file = std::fs::File::options().write(true).open(&path).expect("fixture file");
        file.set_modified(when).expect("set mtime");
    }
    let keygen = paths::require("ssh-keygen", "openssh-client");
    let out = std::process::Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "fixture", "-f"])
        .arg(dir.join("key"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh-keygen runs");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

const BASH_SCRIPT: &str = r#"
# bash's own descriptors, listed by bash itself (a child listing them would race with bash
# closing its copy of the pipe)
for f in /proc/$$/fd/*; do printf '%s ' "${f##*/}"; done; echo
set -o pipefail
printf '%s\n' c a b | sort | tr a-z A-Z
mapfile -t lines < <(seq 3; echo four)
echo "lines=${#lines[@]} last=${lines[3]}"
trap 'echo trapped USR1' USR1
kill -USR1 $$
x=$( (echo sub; exit 0) ); echo "subshell said $x"
exec 7>/dev/null; [ -e /proc/$$/fd/7 ] && echo "fd 7 open"; exec 7>&-
echo "arith $(( $(echo 6) * 7 ))"
false | true; echo "pipeline status $?"
echo "to stderr" >&2
exit 5
"#;

const THREADS_FORK_SUBPROCESS: &str = r#"
import hashlib, os, subprocess, sys, threading
results = {}
def work(i):
    h = hashlib.sha256(str(i).encode() * 1000).hexdigest()[:12]
    out = subprocess.run(["/bin/echo", f"thread {i}"], capture_output=True, text=True).stdout
    results[i] = (h, out.strip())
threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for i in sorted(results):
    print(i, *results[i], flush=True)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.write(w, b"child says hi")
    os._exit(7)
os.close(w)
said = os.read(r, 100).decode()
_, status = os.waitpid(pid, 0)
print(said, os.waitstatus_to_exitcode(status), flush=True)
p = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('grandchild'); sys.exit(5)"],
                   capture_output=True, text=True)
print(p.stdout.strip(), p.returncode, flush=True)
os.execv("/bin/echo", ["echo", "exec'd at the end"])
"#;

const SPAWN: &str = r#"
import os, subprocess
pid = os.posix_spawn("/bin/echo", ["echo", "posix_spawn"], os.environ)
print("status", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
pid = os.posix_spawn("/bin/sh", ["sh", "-c", "echo spawned shell >&2; exit 6"], os.environ)
print("status", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
# subprocess starts children with vfork(2) in Python 3.11 when nothing prevents it
p = subprocess.run(["/bin/sh", "-c", "echo vfork child; echo err >&2; exit 2"],
                   capture_output=True, text=True)
print(repr(p.stdout), repr(p.stderr), p.returncode, flush=True)
p = subprocess.run(["/bin/bash", "-c", 'a=$(echo one $(echo two)); echo "$a"'],
                   capture_output=True, text=True)
print(p.stdout.strip(), flush=True)
"#;

/// Closes every descriptor above 2 both ways, then connects to the loopback echo server on
/// `PORT` (direct in every configuration: loopback is never proxied).
const CLOSE_ALL: &str = r#"
import ctypes, os, socket, sys
port = int(sys.argv[1])
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(5)]
print("opened", fds, flush=True)
os.closerange(3, 65536)
print("after closerange", sorted(int(f) for f in os.listdir("/proc/self/fd")), flush=True)
libc = ctypes.CDLL(None, use_errno=True)
libc.close_range.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
for _ in range(4):
    os.open("/dev/null", os.O_RDONLY)
s = socket.socket()
rc = libc.close_range(3, 0xFFFFFFFF, 0)
s.detach()
print("close_range", rc, ctypes.get_errno() if rc else 0, flush=True)
print("after close_range", sorted(int(f) for f in os.listdir("/proc/self/fd")), flush=True)
fd = os.open("/dev/null", os.O_RDONLY)
print("next descriptor", fd, "cloexec", libc.close_range(3, 0xFFFFFFFF, 4), flush=True)
os.close(fd)
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(b"after close_range")
print("loopback", s.getpeername() == ("127.0.0.1", port), s.recv(100), "fd", s.fileno(), flush=True)
s.close()
"#;

const SIGNALS: &str = r#"
import os, signal, subprocess, time
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append("USR1"))
signal.signal(signal.SIGUSR2, lambda s, f: got.append("USR2"))
os.kill(os.getpid(), signal.SIGUSR1)
os.kill(os.getpid(), signal.SIGUSR2)
signal.signal(signal.SIGALRM, lambda s, f: got.append("ALRM"))
signal.setitimer(signal.ITIMER_REAL, 0.05)
signal.pause()
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
os.kill(os.getpid(), signal.SIGUSR1)
got.append(f"sigwait {signal.Signals(signal.sigwait([signal.SIGUSR1])).name}")
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR1])
p = subprocess.Popen(["/bin/sleep", "10"])
p.terminate()
got.append(f"child {p.wait()}")
print(" ".join(got), flush=True)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(5)
"#;

/// The programs whose behaviour must not change whatever the configuration: none of them
/// connects anywhere but loopback.
fn battery(fixture: &Path, loopback: SocketAddr) -> Vec<Case> {
    let f = |name: &str| fixture.join(name).display().to_string();
    let keygen = paths::require("ssh-keygen", "openssh-client");
    let setpriv = paths::require("setpriv", "util-linux");
    let nobody = ["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"];
    let as_nobody = |program: PathBuf, args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = nobody.iter().map(|s| (*s).to_owned()).collect();
        all.push(program.display().to_string());
        all.extend(args.iter().map(|s| (*s).to_owned()));
        all
    };
    let mut cases = vec![
        case(
            "sh: loops, $(...), stderr, exit 3",
            "/bin/sh",
            &[
                "-c",
                "echo \"sh $0 $#\"; for i in 1 2 3; do printf '%s-' \"$i\"; done; echo; \
                 x=$(echo nested $(echo deeper)); echo \"$x\"; echo to-stderr >&2; (exit 3)",
                "arg0",
                "a",
                "b",
            ],
        ),
        case(
            "bash: pipes, process substitution, trap, descriptors",
            "/bin/bash",
            &["-c", BASH_SCRIPT],
        ),
        case(
            "ls -ln",
            paths::require("ls", "coreutils"),
            &["-ln", "--time-style=+%s", &f("a.txt"), &f("b.txt")],
        ),
        case(
            "ls of a missing file",
            paths::require("ls", "coreutils"),
            &["/nonexistent/socks-e2e"],
        ),
        case("ls /proc/self/fd", paths::require("ls", "coreutils"), &["/proc/self/fd"]),
        case("cat", paths::require("cat", "coreutils"), &[&f("a.txt"), &f("b.txt")]),
        Case {
            stdin: Some(b"pear\napple\nfig\nbanana\n".to_vec()),
            ..case("sort from stdin", paths::require("sort", "coreutils"), &["-r"])
        },
        case(
            "date",
            paths::require("date", "coreutils"),
            &["-u", "-d", "@1000000000", "+%Y-%m-%d %H:%M:%S %Z"],
        ),
        case("env", paths::require("env", "coreutils"), &[]),
        case("env -i", paths::require("env", "coreutils"), &["-i", "A=1", "/usr/bin/env"]),
        case("ssh-keygen -l", keygen.clone(), &["-l", "-f", &f("key.pub")]),
        case(
            "ssh-keygen generating a key",
            "/bin/sh",
            &[
                "-c",
                "d=$(mktemp -d) && \"$0\" -q -t ed25519 -N '' -C e2e -f \"$d/k\" && \
             \"$0\" -y -f \"$d/k\" | cut -d' ' -f1,2 > \"$d/derived\" && \
             cut -d' ' -f1,2 \"$d/k.pub\" > \"$d/written\" && cmp \"$d/derived\" \"$d/written\" \
             && echo generated and verified; s=$?; rm -rf \"$d\"; exit $s",
                &keygen.display().to_string(),
            ],
        ),
        python(
            "python3: json, hashlib, stderr, exit 4",
            "import hashlib, json, sys\n\
             print(json.dumps({'sha256': hashlib.sha256(b'x' * 1000).hexdigest()}))\n\
             print('to stderr', file=sys.stderr)\nsys.exit(4)",
        ),
        python("python3: threads, fork, subprocess, exec", THREADS_FORK_SUBPROCESS),
        python("python3: posix_spawn, vfork, bash $(...)", SPAWN),
        case(
            "python3: closerange, close_range, then a loopback connection",
            paths::require("python3", "python3"),
            &["-c", CLOSE_ALL, &loopback.port().to_string()],
        ),
        python("python3: signal handlers, sigwait, death by SIGTERM", SIGNALS),
    ];
    // setuid root programs run by a user: secure-execution mode.
    let su = paths::require("su", "util-linux");
    let passwd = paths::require("passwd", "passwd");
    let mut su_case = case("setuid su --help, run by nobody", setpriv.clone(), &[]);
    su_case.args = as_nobody(su, &["--help"]);
    let mut passwd_case = case("setuid passwd -S, run by nobody", setpriv, &[]);
    passwd_case.args = as_nobody(passwd, &["-S"]);
    cases.push(su_case);
    cases.push(passwd_case);
    cases
}

/// A python3 program that connects to `dst` and echoes a line (no timings in its output, so
/// runs compare).
const CONNECT_ECHO: &str = r#"
import errno, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    s = socket.create_connection((host, port), timeout=10)
except OSError as e:
    print("error", errno.errorcode.get(e.errno, e.errno), flush=True)
    sys.exit(1)
s.sendall(b"system-wide\n")
got = b""
while len(got) < 12:
    chunk = s.recv(100)
    if not chunk:
        break
    got += chunk
print("peer %s:%d" % s.getpeername(), got, flush=True)
"#;

/// Programs that connect to the outside network: without a proxy they fail (identically with
/// and without the library); with one they get through.
fn connecting(http: SocketAddr, echo: SocketAddr) -> Vec<Case> {
    let url = format!("http://{http}/system-wide");
    let dev_tcp = format!(
        "exec 3<>/dev/tcp/{}/{} || exit 9; printf 'ping\\n' >&3; read -r line <&3; echo \"got $line\"",
        echo.ip(),
        echo.port()
    );
    vec![
        case(
            "curl",
            paths::require("curl", "curl"),
            &["-s", "--max-time", "10", "-w", "\nhttp %{http_code}\n", &url],
        ),
        case(
            "python3 connecting",
            paths::require("python3", "python3"),
            &["-c", CONNECT_ECHO, &echo.ip().to_string(), &echo.port().to_string()],
        ),
        case("bash /dev/tcp", "/bin/bash", &["-c", &dev_tcp]),
    ]
}

/// Asserts the library is in the programs `setup` runs (and not in the reference runs).
fn assert_loaded(lab: &Lab, setup: &SystemWide, expected: bool) {
    let maps =
        case("cat /proc/self/maps", paths::require("cat", "coreutils"), &["/proc/self/maps"]);
    let ran = run(lab, setup, &maps);
    ran.assert_success();
    let library = preload::library(lab).display().to_string();
    assert_eq!(
        ran.stdout_text().contains(&library),
        expected,
        "{library} must {}be mapped in a program run there\n{}",
        if expected { "" } else { "not " },
        ran.describe()
    );
}

#[test]
fn system_wide_without_configuration_changes_nothing() {
    let Some(lab) = Lab::new("everywhere-noconf") else { return };
    let (http, echo) = (lab.http(80), lab.echo(7));
    let loopback = lab.echo_in(Ns::Inside, "127.0.0.1:0".parse().expect("literal"));
    let fixture = fixture(&lab);
    let (plain, preloaded) = (SystemWide::without_library(), SystemWide::with_library());
    assert_loaded(&lab, &plain, false);
    assert_loaded(&lab, &preloaded, true);
    let mut cases = battery(&fixture, loopback.addr());
    cases.extend(connecting(http.addr(), echo.addr()));
    for case in &cases {
        let reference = run(&lab, &plain, case);
        let under = run(&lab, &preloaded, case);
        assert_same(case, &reference, &under, "with no socks.conf and no SOCKS_* variables,");
    }
    // The programs that connect failed the direct way, both times.
    assert!(http.accepted().is_empty() && echo.accepted().is_empty(), "nothing can get out");
}

#[test]
fn system_wide_with_socks_conf() {
    let Some(lab) = Lab::new("everywhere-conf") else { return };
    let (http, echo) = (lab.http(80), lab.echo(7));
    let loopback = lab.echo_in(Ns::Inside, "127.0.0.1:0".parse().expect("literal"));
    let sockd = lab.sockd(PERMIT_INSIDE);
    let fixture = fixture(&lab);
    let conf = format!(
        "# socks-e2e: the outside network through the firewall, the rest direct\n\
         sockd @={SERVER} 198.51.100.0/24\n"
    );
    let plain = SystemWide::without_library();
    let configured = SystemWide::with_library().etc_file("socks.conf", &conf);
    assert_loaded(&lab, &configured, true);
    for case in &battery(&fixture, loopback.addr()) {
        let reference = run(&lab, &plain, case);
        let under = run(&lab, &configured, case);
        assert_same(case, &reference, &under, "with /etc/socks.conf proxying the outside network,");
    }
    // Nothing in the battery went to sockd.
    assert!(sockd.lines_with(&["connected:"]).is_empty(), "{}", sockd.log());

    let cases = connecting(http.addr(), echo.addr());
    let expected = [
        "hello from outside: /system-wide\n\nhttp 200\n".to_owned(),
        format!("peer {} b'system-wide\\n'\n", echo.addr()),
        "got ping\n".to_owned(),
    ];
    for (case, expected) in cases.iter().zip(expected) {
        let ran = run(&lab, &configured, case);
        ran.assert_success();
        assert_eq!(
            ran.stdout_text(),
            expected,
            "{}: through sockd\n{}",
            case.label,
            ran.describe()
        );
        assert_eq!(ran.stderr, "", "{}: the library says nothing\n{}", case.label, ran.describe());
    }
    assert_session(&sockd, http.addr(), None);
    let client = format!("client={INSIDE_ADDR}:");
    let dst = format!("dst={} ", echo.addr());
    sockd.wait_lines(&["connected:", &client, &dst], 2, STARTUP);
    sockd.wait_lines(&["closed:", &client, &dst], 2, STARTUP);
    assert_from_firewall(&http);
    assert_from_firewall(&echo);
}

/// Reports what it is (uid, AT_SECURE, whether the library is mapped), then connects to the
/// echo server given.
const SECURE_PROBE: &str = r#"
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None)
libc.getauxval.restype = ctypes.c_ulong
libc.getauxval.argtypes = [ctypes.c_ulong]
secure = libc.getauxval(23)  # AT_SECURE
loaded = any("libsocks" in line for line in open("/proc/self/maps"))
print(f"uid={os.getuid()} secure={secure} library={'loaded' if loaded else 'absent'}", flush=True)
host, port = sys.argv[1], int(sys.argv[2])
try:
    s = socket.create_connection((host, port), timeout=10)
except OSError as e:
    print("error", errno.errorcode.get(e.errno, e.errno), flush=True)
    sys.exit(0)
s.sendall(b"secure?")
got = s.recv(100)
print("connected peer %s:%d" % s.getpeername(), got, flush=True)
"#;

#[test]
fn secure_execution_ignores_the_environment() {
    let Some(lab) = Lab::new("everywhere-secure") else { return };
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let python3 = paths::require("python3", "python3");
    // The real file (python3 is a symlink): the capability goes on a copy of it.
    let real_python = std::fs::canonicalize(&python3).expect("python3 resolves");
    let conf = lab.write("socks.conf", format!("sockd @={SERVER} 0.0.0.0/0\n"));
    let target = [echo.addr().ip().to_string(), echo.addr().port().to_string()];
    let probe = |setup: SystemWide| {
        setup
            .as_user("nobody", "nogroup")
            .client(
                &lab,
                &python3,
                ["-c", SECURE_PROBE].into_iter().chain(target.each_ref().map(String::as_str)),
            )
            .env("SOCKS_SERVER", SERVER)
            .env("SOCKS_CONF", conf.display().to_string())
            .env("SOCKS_LOG", "debug")
            .env("SOCKS_TIMEOUT", "10")
            .timeout(DEADLINE)
            .run()
    };
    let capability = "cap_net_bind_service+ep";

    // 1. Secure: the environment must be ignored, so the connection goes direct and fails.
    let secure = probe(SystemWide::with_library().file_capability(&real_python, capability));
    if let Some(why) = setup_failure(&secure) {
        if secure.status.and_then(|s| s.code()) == Some(SETCAP_FAILED) {
            socks_e2e::skip(
                "secure execution",
                &format!(
                    "file capabilities cannot be set here ({why}); without them no \
                     unprivileged program gets AT_SECURE=1 without a compiler"
                ),
            );
            return;
        }
        panic!("the private /etc could not be set up: {why}\n{}", secure.describe());
    }
    if secure.stdout_text().starts_with("uid=65534 secure=0") {
        socks_e2e::skip(
            "secure execution",
            &format!(
                "the kernel did not honour the file capability on the copy of {} (AT_SECURE \
                 stayed 0)\n{}",
                real_python.display(),
                secure.describe()
            ),
        );
        return;
    }
    assert!(secure.success(), "{}", secure.describe());
    assert_eq!(
        secure.stdout_text(),
        "uid=65534 secure=1 library=loaded\nerror ENETUNREACH\n",
        "a secure-execution program must ignore SOCKS_SERVER/SOCKS_CONF: its connection goes \
         direct (and cannot get out)\n{}",
        secure.describe()
    );
    assert_eq!(
        secure.stderr,
        "",
        "a secure-execution program must ignore SOCKS_LOG\n{}",
        secure.describe()
    );

    // 2. The same program without the capability honours the same environment.
    let plain = probe(SystemWide::with_library());
    plain.assert_success();
    assert_eq!(
        plain.stdout_text(),
        format!("uid=65534 secure=0 library=loaded\nconnected peer {} b'secure?'\n", echo.addr()),
        "the same program, not in secure-execution mode, goes through SOCKS_SERVER\n{}",
        plain.describe()
    );
    assert!(
        plain.stderr.contains("libsocks[") && plain.stderr.contains(&echo.addr().to_string()),
        "SOCKS_LOG=debug is honoured without secure execution\n{}",
        plain.describe()
    );
    let client = format!("client={INSIDE_ADDR}:");
    let dst = format!("dst={} ", echo.addr());
    sockd.wait_line(&["closed:", &client, &dst], STARTUP);

    // 3. The system's own /etc/socks.conf is not an override: it applies to secure programs.
    let system = format!("sockd @={SERVER} 198.51.100.0/24\n");
    let secure_conf = probe(
        SystemWide::with_library()
            .file_capability(&real_python, capability)
            .etc_file("socks.conf", &system),
    );
    secure_conf.assert_success();
    assert_eq!(
        secure_conf.stdout_text(),
        format!("uid=65534 secure=1 library=loaded\nconnected peer {} b'secure?'\n", echo.addr()),
        "/etc/socks.conf applies in secure-execution mode\n{}",
        secure_conf.describe()
    );
    assert_eq!(secure_conf.stderr, "", "SOCKS_LOG still ignored\n{}", secure_conf.describe());
    sockd.wait_lines(&["closed:", &client, &dst], 2, STARTUP);
    assert_eq!(
        sockd.lines_with(&["connected:", &client, &dst]).len(),
        2,
        "sockd saw exactly the two non-overridden connections, not the secure one\n{}",
        sockd.log()
    );
    assert_from_firewall(&echo);
}

/// Helpers every stress script starts with: `one(tag)` opens a connection to the outside echo
/// server, checks getpeername, echoes a payload naming `tag` and checks every byte.
const STRESS_PRELUDE: &str = r#"
import ctypes, errno, os, select, signal, socket, sys, threading, time
ECHO = ("198.51.100.2", 7)
def roundtrip(s, data):
    s.sendall(data)
    got = bytearray()
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return bytes(got) == data
def one(tag, dst=ECHO, timeout=10):
    s = socket.create_connection(dst, timeout=timeout)
    try:
        if s.getpeername() != dst:
            raise AssertionError(f"{tag}: getpeername {s.getpeername()}, not {dst}")
        if not roundtrip(s, (tag + "|").encode() * 200):
            raise AssertionError(f"{tag}: echo corrupted")
    finally:
        s.close()
"#;

/// A python3 stress script under LD_PRELOAD, through sockd, with a deadline.
fn stress(lab: &Lab, script: &str, args: &[String]) -> Ran {
    let script = format!("{STRESS_PRELUDE}{script}");
    lab.python(&script)
        .args(args)
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_TIMEOUT", "10")
        .ld_preload()
        .timeout(DEADLINE)
        .run()
}

/// Asserts the run finished in time, exited 0 and printed `expected` lines (in order, each a
/// prefix of its line).
fn assert_stress(ran: &Ran, what: &str, expected: &[&str]) {
    assert!(
        ran.status.is_some(),
        "{what}: the program hung (killed at the deadline)\n{}",
        ran.describe()
    );
    ran.assert_success();
    let text = ran.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{what}\n{}", ran.describe());
    for (line, want) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(want),
            "{what}: `{line}` must start with `{want}`\n{}",
            ran.describe()
        );
    }
}

/// Reads `key=N` from a line of the program's output.
fn number(ran: &Ran, key: &str) -> usize {
    let text = ran.stdout_text();
    let found = text.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='));
    found
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}=N in the output\n{}", ran.describe()))
}

#[test]
fn stress_64_threads_connect_at_once() {
    let Some(lab) = Lab::new("everywhere-threads") else { return };
    let echo = lab.echo(7);
    let loopback = lab.echo_in(Ns::Inside, "127.0.0.1:0".parse().expect("literal"));
    let sockd = lab.sockd(PERMIT_INSIDE);
    // Three connections per thread, released together by a barrier: blocking, with a timeout
    // (non-blocking + poll in Python), and raw non-blocking (connect_ex + select + SO_ERROR);
    // one in eight goes to the loopback echo server (direct) in the middle of the rest.
    let script = r#"
N = 64
LOOP = ("127.0.0.1", int(sys.argv[1]))
barrier = threading.Barrier(N)
results = [None] * N
copies_wrong = []
def open_conn(dst, mode):
    if mode == 0:
        return socket.create_connection(dst)
    if mode == 1:
        return socket.create_connection(dst, timeout=15)
    s = socket.socket()
    s.setblocking(False)
    rc = s.connect_ex(dst)
    if rc not in (0, errno.EINPROGRESS):
        raise OSError(rc, os.strerror(rc))
    if rc:
        _, writable, _ = select.select([], [s], [], 15)
        if not writable:
            raise TimeoutError("non-blocking connect did not finish")
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
    s.setblocking(True)
    return s
def worker(i):
    try:
        barrier.wait(timeout=15)
        for r in range(3):
            dst = LOOP if (i + r) % 8 == 7 else ECHO
            s = open_conn(dst, (i + r) % 3)
            if s.getpeername() != dst:
                raise AssertionError(f"round {r}: peer {s.getpeername()}, not {dst}")
            # socket.dup() copies with fcntl(F_DUPFD_CLOEXEC): the copy must say the same.
            d = s.dup()
            if d.getpeername() != dst:
                copies_wrong.append(f"thread {i} round {r}: {d.getpeername()}")
            d.close()
            if not roundtrip(s, os.urandom(8192 + 64 * i)):
                raise AssertionError(f"round {r}: echo corrupted")
            s.close()
        results[i] = "ok"
    except Exception as e:
        results[i] = f"error {e!r}"
threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for i, r in enumerate(results):
    print(i, r)
print(f"copies wrong={len(copies_wrong)} {copies_wrong[:3]}")
"#;
    let ran = stress(&lab, script, &[loopback.addr().port().to_string()]);
    let mut expected: Vec<String> = (0..64).map(|i| format!("{i} ok")).collect();
    expected.push("copies wrong=".to_owned());
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_stress(&ran, "64 threads connecting at once", &expected);
    let proxied =
        (0..64).flat_map(|i| (0..3).map(move |r| (i + r) % 8 != 7)).filter(|p| *p).count();
    let exchanges = echo.wait_done(proxied, STARTUP);
    assert_eq!(exchanges.len(), proxied, "every proxied connection, once");
    assert!(exchanges.iter().all(|e| e.received == e.sent && e.received >= 8192), "{exchanges:?}");
    assert_from_firewall(&echo);
    loopback.wait_done(64 * 3 - proxied, STARTUP);
    let client = format!("client={INSIDE_ADDR}:");
    sockd.wait_lines(&["closed:", &client, "dst=198.51.100.2:7 "], proxied, STARTUP);
    assert_eq!(sockd.lines_with(&["connected:", &client]).len(), proxied, "{}", sockd.log());
    // Last, so that everything above is known first: a copy of a proxied socket made the way
    // Python's socket.dup() makes it must name the same destination.
    assert!(
        ran.stdout_text().contains("copies wrong=0 "),
        "getpeername of socket.dup() copies (fcntl F_DUPFD_CLOEXEC) of proxied sockets must \
         name the destination, not the SOCKS server\n{}",
        ran.stdout_text().lines().last().unwrap_or_default()
    );
}

#[test]
fn stress_connect_from_a_signal_handler() {
    let Some(lab) = Lab::new("everywhere-signal") else { return };
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    // SIGALRM every 3 ms interrupts whatever the threads are doing (inside the library's
    // connect and handshake too: EINTR); the handler opens a proxied connection of its own
    // while the main thread (whose connection it interrupted) and three others keep
    // connecting.
    let script = r#"
handled = skipped = 0
busy = False
errors = []
def on_alarm(signum, frame):
    global busy, handled, skipped
    if busy:
        skipped += 1
        return
    busy = True
    try:
        one(f"handler {handled}")
        handled += 1
    except Exception as e:
        errors.append(f"handler: {e!r}")
    finally:
        busy = False
# The first connection imports encodings.idna (for getaddrinfo); a handler that interrupted
# that import and connected would trip Python's own import lock (KeyError), so do it first.
one("warm-up")
signal.signal(signal.SIGALRM, on_alarm)
stop = threading.Event()
def background(k):
    n = 0
    while not stop.is_set():
        try:
            one(f"thread {k} {n}")
        except Exception as e:
            errors.append(f"thread {k}: {e!r}")
        n += 1
threads = [threading.Thread(target=background, args=(k,)) for k in range(3)]
for t in threads:
    t.start()
signal.setitimer(signal.ITIMER_REAL, 0.003, 0.003)
main = 0
start = time.monotonic()
while time.monotonic() - start < 3 or (handled < 20 and time.monotonic() - start < 12):
    try:
        one(f"main {main}")
    except Exception as e:
        import traceback
        errors.append(f"main: {e!r} " + traceback.format_exc().replace("\n", " | "))
    main += 1
signal.setitimer(signal.ITIMER_REAL, 0)
stop.set()
for t in threads:
    t.join()
print(f"main={main} handler={handled} errors={len(errors)}")
for e in errors[:20]:
    print(e)
"#;
    let ran = stress(&lab, script, &[]);
    assert_stress(&ran, "connections from a SIGALRM handler", &["main="]);
    assert!(ran.stdout_text().contains(" errors=0"), "{}", ran.describe());
    let (main, handler) = (number(&ran, "main"), number(&ran, "handler"));
    assert!(main >= 20 && handler >= 20, "main={main} handler={handler}\n{}", ran.describe());
    assert_from_firewall(&echo);
    let client = format!("client={INSIDE_ADDR}:");
    sockd.wait_lines(&["closed:", &client, "dst=198.51.100.2:7 "], main + handler + 1, STARTUP);
}

#[test]
fn stress_fork_while_threads_connect() {
    let Some(lab) = Lab::new("everywhere-fork") else { return };
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    // Four threads connect in a loop; meanwhile the main thread forks 16 times. Each child
    // (whose copy of the library may have been mid-connect in another thread at the fork)
    // checks the proxied socket it inherited and makes two connections of its own; a child
    // that hangs is killed by its alarm (and reported), not waited for forever.
    let script = r#"
CHILDREN = 16
keep = socket.create_connection(ECHO, timeout=10)
stop = threading.Event()
errors = []
counts = [0] * 4
def background(k):
    while not stop.is_set():
        try:
            one(f"thread {k} {counts[k]}")
            counts[k] += 1
        except Exception as e:
            errors.append(f"thread {k}: {e!r}")
threads = [threading.Thread(target=background, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
time.sleep(0.1)
children = []
for n in range(CHILDREN):
    time.sleep(0.02)
    pid = os.fork()
    if pid == 0:
        signal.alarm(10)
        try:
            if keep.getpeername() != ECHO:
                raise AssertionError(f"inherited socket: peer {keep.getpeername()}")
            one(f"child {n}")
            one(f"child {n} again", timeout=None)
            os._exit(0)
        except BaseException as e:
            os.write(2, f"child {n}: {e!r}\n".encode())
            os._exit(1)
    children.append(pid)
statuses = []
deadline = time.monotonic() + 15
for pid in children:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            statuses.append("ok" if code == 0 else "hung" if code == -signal.SIGALRM else code)
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            statuses.append("hung")
            break
        time.sleep(0.01)
stop.set()
for t in threads:
    t.join()
kept = "ok" if keep.getpeername() == ECHO and roundtrip(keep, b"kept across forks" * 100) else "BAD"
keep.close()
print(f"children ok={statuses.count('ok')} of {CHILDREN}: {statuses}")
print(f"threads connections={sum(counts)} errors={len(errors)} {errors[:5]}")
print(f"kept socket {kept}")
"#;
    let ran = stress(&lab, script, &[]);
    assert_stress(
        &ran,
        "fork while threads connect",
        &["children ok=16 of 16", "threads connections=", "kept socket ok"],
    );
    assert!(ran.stdout_text().contains(" errors=0 "), "{}", ran.describe());
    let threads = number(&ran, "connections");
    assert!(threads >= 8, "the threads kept connecting during the forks\n{}", ran.describe());
    assert_from_firewall(&echo);
    let client = format!("client={INSIDE_ADDR}:");
    // The kept socket, two per child, and every thread connection.
    sockd.wait_lines(&["closed:", &client, "dst=198.51.100.2:7 "], 1 + 32 + threads, STARTUP);
}

#[test]
fn stress_descriptors_closed_and_reused() {
    let Some(lab) = Lab::new("everywhere-fds") else { return };
    let echo = lab.echo(7);
    let loopback = lab.echo_in(Ns::Inside, "127.0.0.1:0".parse().expect("literal"));
    let sockd = lab.sockd(PERMIT_INSIDE);
    // Proxied sockets closed behind Python's back (close_range, closerange, dup2 over them);
    // their numbers are then reused by direct loopback sockets, whose getpeername must be
    // their own, never the destination a previous socket on that number was proxied to.
    let script = r#"
LOOP = ("127.0.0.1", int(sys.argv[1]))
libc = ctypes.CDLL(None, use_errno=True)
libc.close_range.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
def peer(fd):
    s = socket.socket(fileno=fd)
    try:
        return s.getpeername()
    finally:
        s.detach()
bad = []
for rnd in range(10):
    proxied = [socket.create_connection(ECHO, timeout=10) for _ in range(4)]
    fds = sorted(s.detach() for s in proxied)
    if any(peer(fd) != ECHO for fd in fds):
        bad.append(f"round {rnd}: proxied peers {[peer(fd) for fd in fds]}")
    if rnd % 2 == 0:
        rc = libc.close_range(fds[0], fds[-1], 0)
    else:
        os.closerange(fds[0], fds[-1] + 1)
        rc = 0
    if rc != 0:
        bad.append(f"round {rnd}: close_range failed errno {ctypes.get_errno()}")
    direct = [socket.create_connection(LOOP, timeout=10) for _ in range(4)]
    reused = sorted(s.fileno() for s in direct)
    if reused != fds:
        bad.append(f"round {rnd}: numbers {reused}, not {fds}")
    for s in direct:
        if s.getpeername() != LOOP:
            bad.append(f"round {rnd}: fd {s.fileno()} peer {s.getpeername()}, not {LOOP}")
        if not roundtrip(s, b"direct" * 100):
            bad.append(f"round {rnd}: loopback echo corrupted")
    # dup2 both ways: a proxied socket over a direct one's number, and back.
    p = socket.create_connection(ECHO, timeout=10)
    os.dup2(p.fileno(), direct[0].fileno())
    if peer(direct[0].fileno()) != ECHO:
        bad.append(f"round {rnd}: dup2 of a proxied socket reports {peer(direct[0].fileno())}")
    os.dup2(direct[1].fileno(), p.fileno())
    if p.getpeername() != LOOP:
        bad.append(f"round {rnd}: dup2 of a direct socket over a proxied one reports {p.getpeername()}")
    for s in direct + [p]:
        s.close()
# Every way of copying a descriptor: the copy describes the same proxied connection.
import fcntl
p = socket.create_connection(ECHO, timeout=10)
ways = {
    "dup": lambda fd: libc.dup(fd),
    "dup2": lambda fd: os.dup2(fd, 100),
    "dup3": lambda fd: os.dup2(fd, 101, inheritable=False),
    "fcntl(F_DUPFD)": lambda fd: fcntl.fcntl(fd, fcntl.F_DUPFD, 0),
    "fcntl(F_DUPFD_CLOEXEC)": lambda fd: fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0),
}
wrong = []
for name, copy in ways.items():
    c = copy(p.fileno())
    if peer(c) != ECHO:
        wrong.append(f"{name}: {peer(c)}")
    os.close(c)
p.close()
print(f"rounds=10 problems={len(bad)}")
for b in bad[:20]:
    print(b)
print(f"copies wrong={len(wrong)} {wrong}")
"#;
    let ran = stress(&lab, script, &[loopback.addr().port().to_string()]);
    assert_stress(&ran, "descriptors closed and reused", &["rounds=10 problems=0", "copies"]);
    assert_from_firewall(&echo);
    let client = format!("client={INSIDE_ADDR}:");
    sockd.wait_lines(&["connected:", &client, "dst=198.51.100.2:7 "], 51, STARTUP);
    assert!(
        ran.stdout_text().contains("copies wrong=0 "),
        "every copy of a proxied socket (dup, dup2, dup3, fcntl F_DUPFD and F_DUPFD_CLOEXEC) \
         must name the destination in getpeername, not the SOCKS server\n{}",
        ran.describe()
    );
}

#[test]
fn stress_connect_in_an_asynchronous_signal_handler() {
    let Some(lab) = Lab::new("everywhere-async-signal") else { return };
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    // Python runs its handlers between bytecodes; this program (tests/src/bin) connects from a
    // real SIGALRM handler, which may interrupt the library's own connect in that thread.
    let ran = lab
        .client(env!("CARGO_BIN_EXE_signal-connect"))
        .args([echo.addr().to_string(), "3".to_owned()])
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_TIMEOUT", "10")
        .ld_preload()
        .timeout(DEADLINE)
        .run();
    assert!(ran.status.is_some(), "deadlock: killed at the deadline\n{}", ran.describe());
    ran.assert_success();
    let (main, threads) = (number(&ran, "main"), number(&ran, "threads"));
    let (handler, failed) = (number(&ran, "handler"), number(&ran, "handler_failed"));
    assert!(main >= 20 && threads >= 20, "the program kept connecting\n{}", ran.describe());
    assert!(handler >= 20, "the handler ran and connected\n{}", ran.describe());
    assert_eq!(
        (failed, number(&ran, "bad")),
        (0, 0),
        "every connection, in the handler or not, must go through sockd with its bytes intact \
         (last_errno 101 = ENETUNREACH: a connect that went direct)\n{}",
        ran.describe()
    );
    assert_from_firewall(&echo);
    let client = format!("client={INSIDE_ADDR}:");
    sockd.wait_lines(
        &["closed:", &client, "dst=198.51.100.2:7 "],
        main + threads + handler,
        STARTUP,
    );
}

#[test]
fn stress_connect_in_a_signal_handler_during_a_slow_lookup() {
    let Some(lab) = Lab::new("everywhere-signal-lookup") else { return };
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    // Names under .corp.example are looked up locally, with the workstation's resolver, whose
    // name server never answers: the main thread sits inside the library's getaddrinfo hook
    // while SIGALRM handlers connect to a destination that goes through sockd.
    let conf =
        lab.write("socks.conf", format!("direct .corp.example\nsockd @={SERVER} 0.0.0.0/0\n"));
    let ran = slow_lookup_client(&lab, env!("CARGO_BIN_EXE_signal-connect"), &conf)
        .args([echo.addr().to_string(), "2".to_owned(), "slow.corp.example".to_owned()])
        .run();
    assert!(ran.status.is_some(), "deadlock: killed at the deadline\n{}", ran.describe());
    ran.assert_success();
    let (handler, failed) = (number(&ran, "handler"), number(&ran, "handler_failed"));
    let in_lookup = number(&ran, "in_lookup");
    assert!(
        in_lookup >= 5,
        "the handler connected while the main thread was inside getaddrinfo\n{}",
        ran.describe()
    );
    assert_eq!(
        failed,
        0,
        "a connection from a signal handler that interrupted the library's getaddrinfo must go \
         through sockd (last_errno 101 = ENETUNREACH: it went direct)\n{}",
        ran.describe()
    );
    assert_from_firewall(&echo);
    let client = format!("client={INSIDE_ADDR}:");
    sockd.wait_lines(&["closed:", &client, "dst=198.51.100.2:7 "], handler, STARTUP);
}

/// The library reads its settings at its first call; a connect or a TCP Fast Open send from a
/// signal handler that interrupts that first reading (made slow here: the server's host name is
/// looked up with a resolver that never answers) cannot be routed yet, and must fail closed
/// (EAGAIN), never go direct (ENETUNREACH on this workstation).
#[test]
fn a_connect_from_a_signal_handler_during_the_first_settings_read_is_never_direct() {
    let Some(lab) = Lab::new("everywhere-signal-settings") else { return };
    let leaks = LeakCounter::install(&lab);
    let echo = lab.echo(7);
    let conf = lab.write("socks.conf", "sockd @=fw.corp.example:1080 0.0.0.0/0\n");
    let ran = slow_lookup_client(&lab, env!("CARGO_BIN_EXE_signal-connect"), &conf)
        .args([&echo.addr().to_string(), "0.5", "slow.corp.example", "early"])
        .run();
    assert!(ran.status.is_some(), "deadlock: killed at the deadline\n{}", ran.describe());
    ran.assert_success();
    assert!(
        number(&ran, "again") >= 5 && number(&ran, "unreachable") == 0,
        "handlers that interrupted the settings read must fail with EAGAIN, never connect \
         directly (unreachable = ENETUNREACH/EHOSTUNREACH)\n{}",
        ran.describe()
    );
    let fast_open = slow_lookup_client(&lab, env!("CARGO_BIN_EXE_signal-inside"), &conf)
        .args(["fastopen", &echo.addr().to_string(), "0.5", "slow.corp.example", "early"])
        .run();
    fast_open.assert_success();
    assert!(
        number(&fast_open, "failed_eagain") >= 5 && number(&fast_open, "failed_unreachable") == 0,
        "Fast Open sends from handlers that interrupted the settings read must fail with \
         EAGAIN, never go direct (unreachable = ENETUNREACH/EHOSTUNREACH)\n{}",
        fast_open.describe()
    );
    assert!(echo.accepted().is_empty(), "nothing reached the destination: {:?}", echo.accepted());
    let (v4, v6) = leaks.leaked_destinations();
    let dns = format!("{DEAD_DNS_ADDR} . udp . 53");
    assert!(
        v4.iter().all(|d| *d == dns) && v6.is_empty(),
        "only the settings' own lookup left: {v4:?} {v6:?}\n{}",
        leaks.table()
    );
}

/// A client under the library with `conf` whose local name lookups are slow: names under
/// .corp.example (or a server's host named so) go to the workstation's resolver, whose name
/// server never answers, and time out after 1 s.
fn slow_lookup_client(lab: &Lab, program: &str, conf: &Path) -> Client {
    lab.client(program)
        .env("SOCKS_CONF", conf.display().to_string())
        .env("SOCKS_TIMEOUT", "10")
        .env("RES_OPTIONS", "timeout:1 attempts:1")
        .ld_preload()
        .timeout(DEADLINE)
}

/// Runs `signal-inside MODE TARGET 2 slow.corp.example` under the library with `conf`: names
/// under .corp.example are looked up locally, with a resolver that never answers, so the main
/// thread sits inside the library's getaddrinfo hook while SIGALRM handlers send or look up.
fn signal_inside(lab: &Lab, conf: &Path, mode: &str, target: &str) -> Ran {
    let ran = slow_lookup_client(lab, env!("CARGO_BIN_EXE_signal-inside"), conf)
        .args([mode, target, "2", "slow.corp.example"])
        .run();
    assert!(ran.status.is_some(), "deadlock: killed at the deadline\n{}", ran.describe());
    ran.assert_success();
    assert!(
        number(&ran, "in_lookup") >= 5,
        "the handler ran while the main thread was inside getaddrinfo\n{}",
        ran.describe()
    );
    ran
}

/// The socks.conf of the signal-handler tests: .corp.example local, everything else through
/// sockd.
fn corp_local_conf(lab: &Lab) -> PathBuf {
    lab.write("socks.conf", format!("direct .corp.example\nsockd @={SERVER} 0.0.0.0/0\n"))
}

#[test]
fn udp_sends_from_a_signal_handler_during_a_slow_lookup_use_the_association() {
    let Some(lab) = Lab::new("everywhere-signal-udp") else { return };
    let leaks = LeakCounter::install(&lab);
    let echo = lab.udp_echo(7);
    let _sockd = lab.sockd(PERMIT_INSIDE);
    let conf = corp_local_conf(&lab);
    let ran = signal_inside(&lab, &conf, "udp", &echo.addr().to_string());
    let (handler, failed) = (number(&ran, "handler"), number(&ran, "handler_failed"));
    assert!(handler >= 5, "the handler sent datagrams\n{}", ran.describe());
    assert_eq!(
        failed,
        0,
        "sendto/sendmsg/sendmmsg from a signal handler that interrupted the library's \
         getaddrinfo must go through the socket's association (last_errno 101 = ENETUNREACH: \
         it went direct)\n{}",
        ran.describe()
    );
    // The first datagram (outside the handler) and every handler's datagram, all relayed.
    let datagrams = echo.wait_datagrams(handler + 1, STARTUP);
    for d in &datagrams {
        assert_eq!(d.peer.ip(), std::net::IpAddr::V4(FW_OUTSIDE_ADDR), "relayed: {d:?}");
    }
    leaks.assert_only_sockd_and(
        "UDP from a signal handler",
        &[format!("{DEAD_DNS_ADDR} . udp . 53")],
    );
}

#[test]
fn udp_send_from_a_signal_handler_without_an_association_fails_with_eagain() {
    let Some(lab) = Lab::new("everywhere-signal-udp-fresh") else { return };
    let leaks = LeakCounter::install(&lab);
    let echo = lab.udp_echo(7);
    let conf = corp_local_conf(&lab);
    let ran = signal_inside(&lab, &conf, "udp-fresh", &echo.addr().to_string());
    assert_eq!(
        (number(&ran, "handler"), number(&ran, "last_errno")),
        (0, libc::EAGAIN as usize),
        "a datagram that needs a new association cannot be sent from a signal handler that \
         interrupted the library: EAGAIN (SignalContext), never direct (101 = ENETUNREACH)\n{}",
        ran.describe()
    );
    assert!(echo.datagrams().is_empty(), "nothing arrived: {:?}", echo.datagrams());
    let (v4, v6) = leaks.leaked_destinations();
    let dns = format!("{DEAD_DNS_ADDR} . udp . 53");
    assert!(
        v4.iter().all(|d| *d == dns) && v6.is_empty(),
        "only the slow lookup's queries left: {v4:?} {v6:?}\n{}",
        leaks.table()
    );
}

#[test]
fn fast_open_from_a_signal_handler_during_a_slow_lookup_goes_through_sockd() {
    let Some(lab) = Lab::new("everywhere-signal-tfo") else { return };
    let leaks = LeakCounter::install(&lab);
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let conf = corp_local_conf(&lab);
    let ran = signal_inside(&lab, &conf, "fastopen", &echo.addr().to_string());
    let (handler, failed) = (number(&ran, "handler"), number(&ran, "handler_failed"));
    assert!(handler >= 5, "the handler sent with MSG_FASTOPEN\n{}", ran.describe());
    assert_eq!(
        failed,
        0,
        "a Fast Open send from a signal handler that interrupted the library's getaddrinfo must \
         go through sockd\n{}",
        ran.describe()
    );
    assert_from_firewall(&echo);
    let client = format!("client={INSIDE_ADDR}:");
    sockd.wait_lines(&["closed:", &client, "dst=198.51.100.2:7 "], handler, STARTUP);
    leaks.assert_only_sockd_and(
        "Fast Open from a signal handler",
        &[format!("{DEAD_DNS_ADDR} . udp . 53")],
    );
}
#[test]
fn lookups_from_a_signal_handler_during_a_slow_lookup_never_ask_locally() {
    let Some(lab) = Lab::new("everywhere-signal-resolve") else { return };
    // The workstation's name server logs every question; .corp.example is forwarded to a
    // server that never answers, so the main thread's lookups are slow.
    let dns = dns::inside_lan_dns(&lab, &["--server=/corp.example/192.0.2.99".to_owned()]);
    let conf = corp_local_conf(&lab);
    let ran = signal_inside(&lab, &conf, "resolve", dns::WWW);
    let (fake, again, other) = (number(&ran, "fake"), number(&ran, "again"), number(&ran, "other"));
    assert_eq!(
        other,
        0,
        "a lookup from a signal handler that interrupted the library's getaddrinfo gets a fake \
         address or EAI_AGAIN/TRY_AGAIN, nothing else\n{}",
        ran.describe()
    );
    assert!(fake + again >= 5, "the handler looked up\n{}", ran.describe());
    assert!(
        !dns.queries_for("slow.corp.example").is_empty(),
        "the main thread's lookups reached the name server: {:?}",
        dns.all_queries()
    );
    assert_eq!(
        dns.queries_for(dns::WWW),
        Vec::<String>::new(),
        "{} goes through sockd: never asked of the local name server\n{}",
        dns::WWW,
        ran.describe()
    );
}
