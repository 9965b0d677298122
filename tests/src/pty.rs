//! Scripted terminal sessions: a small Python 3 driver (standard library only) runs a program
//! on a pseudo-terminal, as a person at a terminal would, and plays a script of steps —
//! wait for some text, type some text — each wait bounded. telnet needs this: with a pipe on
//! its standard input it sends everything at once and quits at end of input, before the
//! far side has answered.
//!
//! The driver prints the whole transcript on stdout, then `PTY: exit=CODE` (or
//! `PTY: exit=killed` when the program did not end by itself), and exits 1 after printing
//! `PTY: expected … did not arrive` when a wait runs out.
//!
//! Not here: the library (the driven command line carries `socksify` itself, so Python runs
//! plain and only the driven program is under the library).

use std::ffi::OsString;

use crate::{paths, Client, Lab};

/// One step of a session.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// Wait (at most 15 s) until this text has arrived after what earlier steps matched.
    Expect(&'a str),
    /// Type this text (`\r` is the Return key).
    Send(&'a str),
    /// Wait (at most 15 s) for the program to close the terminal: the far side ended it.
    Eof,
}

const DRIVER: &str = r#"
import os, pty, select, sys, time
steps = []
for item in os.environ["PTY_STEPS"].split():
    kind, _, data = item.partition(":")
    steps.append((kind, bytes.fromhex(data)))
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
buf = b""
eof = False
def read_some(deadline):
    global buf, eof
    left = deadline - time.monotonic()
    if eof or left <= 0:
        return False
    ready, _, _ = select.select([fd], [], [], left)
    if not ready:
        return False
    try:
        data = os.read(fd, 65536)
    except OSError:
        data = b""
    if not data:
        eof = True
        return False
    buf += data
    return True
pos, failed = 0, None
for kind, data in steps:
    if kind == "send":
        os.write(fd, data)
        continue
    deadline = time.monotonic() + 15
    if kind == "eof":
        while read_some(deadline):
            pass
        if not eof:
            failed = "the end of the session"
            break
        continue
    while data not in buf[pos:]:
        if not read_some(deadline):
            failed = repr(data.decode(errors="replace"))
            break
    if failed:
        break
    pos = buf.index(data, pos) + len(data)
code = "killed"
for _ in range(100 if eof else 1):
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        code = str(os.waitstatus_to_exitcode(status))
        break
    time.sleep(0.05)
if code == "killed":
    os.kill(pid, 9)
    os.waitpid(pid, 0)
sys.stdout.buffer.write(buf.replace(b"\r", b""))
print(f"\nPTY: exit={code}")
if failed:
    print(f"PTY: expected {failed} did not arrive")
    sys.exit(1)
"#;

impl Lab {
    /// The driver running `argv` (program path first) on a terminal in `inside` through
    /// `steps`; add `env` and run it like any [`Client`].
    pub fn pty_session(&self, argv: &[OsString], steps: &[Step<'_>]) -> Client {
        let hex = |data: &str| data.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let steps: Vec<String> = steps
            .iter()
            .map(|step| match step {
                Step::Expect(text) => format!("expect:{}", hex(text)),
                Step::Send(text) => format!("send:{}", hex(text)),
                Step::Eof => "eof:".to_owned(),
            })
            .collect();
        self.client(paths::require("python3", "python3"))
            .args([OsString::from("-c"), OsString::from(DRIVER)])
            .args(argv.iter().cloned())
            .env("PTY_STEPS", steps.join(" "))
    }
}
