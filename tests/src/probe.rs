//! A small Python 3 client that tries a list of destinations with a *blocking*
//! `socket.create_connection` each, and reports per destination one line
//! `RESULT host:port connected peer=IP:PORT echo=ok|BAD secs=S` or
//! `RESULT host:port error=ERRNO_NAME secs=S` — the errno name and the time connect took are
//! what the rule and failure tests assert on. Destinations that connect are expected to be echo
//! servers: a payload naming the destination is sent and must come back intact, then the
//! socket is closed (no half-close: microsocks, for one, closes both ways on the first EOF).
//!
//! Not here: running it (a [`crate::Client`] does) or the assertions.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::Ran;

/// The script for `targets`, in order.
pub fn script(targets: &[SocketAddr]) -> String {
    let list: Vec<String> =
        targets.iter().map(|t| format!("(\"{}\", {})", t.ip(), t.port())).collect();
    format!(
        r#"
import errno, socket, sys, time
for host, port in [{list}]:
    t0 = time.monotonic()
    try:
        s = socket.create_connection((host, port))
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        print(f"RESULT {{host}}:{{port}} error={{name}} secs={{time.monotonic() - t0:.3f}}", flush=True)
        continue
    secs = time.monotonic() - t0
    peer = "%s:%d" % s.getpeername()[:2]
    data = (f"payload for {{host}}:{{port}} " * 300).encode()
    s.sendall(data)
    s.settimeout(10)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    echo = "ok" if got == data else f"BAD({{len(got)}}/{{len(data)}})"
    print(f"RESULT {{host}}:{{port}} connected peer={{peer}} echo={{echo}} secs={{secs:.3f}}", flush=True)
"#,
        list = list.join(", ")
    )
}

/// One destination's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `None` when connected, else the errno name (`ECONNREFUSED`, …).
    pub error: Option<String>,
    /// What getpeername said, when connected.
    pub peer: Option<String>,
    /// Whether the echoed bytes matched.
    pub echo_ok: bool,
    /// Seconds the connect call took.
    pub secs: f64,
}

/// Parses the `RESULT` lines of a run; panics (with the run) when one is missing.
pub fn results(ran: &Ran, targets: &[SocketAddr]) -> HashMap<SocketAddr, Outcome> {
    let mut found = HashMap::new();
    for line in ran.stdout_text().lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("RESULT") {
            continue;
        }
        let Some(target) = words.next().and_then(|t| t.parse::<SocketAddr>().ok()) else {
            continue;
        };
        let mut outcome = Outcome { error: None, peer: None, echo_ok: false, secs: f64::NAN };
        for word in words {
            match word.split_once('=') {
                Some(("error", e)) => outcome.error = Some(e.to_owned()),
                Some(("peer", p)) => outcome.peer = Some(p.to_owned()),
                Some(("echo", e)) => outcome.echo_ok = e == "ok",
                Some(("secs", s)) => outcome.secs = s.parse().unwrap_or(f64::NAN),
                _ => {}
            }
        }
        found.insert(target, outcome);
    }
    for target in targets {
        assert!(found.contains_key(target), "no result for {target}\n{}", ran.describe());
    }
    found
}
