//! Threads and processes under the library: a python3 program opening 50 connections at once
//! from 50 threads through sockd (every byte checked, every session logged), and a program
//! that forks — a child that connects first (the configuration is then read in the child), and
//! a child that inherits a proxied socket and connects too — with getpeername everywhere
//! reporting the destination.
//!
//! Not here: single-connection programs (programs.rs).

use socks_e2e::*;

#[test]
fn fifty_concurrent_connections_from_threads() {
    let Some(lab) = Lab::new("threads") else { return };
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    // Every thread waits at a barrier, so the 50 connects really overlap; each sends its own
    // 32 KiB and must get exactly those bytes back.
    let script = r#"
import socket, threading
N = 50
barrier = threading.Barrier(N)
results = [None] * N
def worker(i):
    data = bytes((i * 31 + j * 7) % 251 for j in range(32768))
    try:
        barrier.wait(timeout=10)
        # Even threads connect blocking, odd ones with a timeout (non-blocking + poll).
        s = socket.create_connection(("198.51.100.2", 7), timeout=None if i % 2 == 0 else 15)
        peer = "%s:%d" % s.getpeername()
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        s.close()
        results[i] = "ok" if got == data and peer == "198.51.100.2:7" else f"bad peer={peer} len={len(got)}"
    except Exception as e:
        results[i] = f"error {e!r}"
threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for i, r in enumerate(results):
    print(i, r)
"#;
    let ran = lab
        .python(script)
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_TIMEOUT", "10")
        .ld_preload()
        .run();
    ran.assert_success();
    let expected: String = (0..50).map(|i| format!("{i} ok\n")).collect();
    assert_eq!(ran.stdout_text(), expected, "{}", ran.describe());
    let exchanges = echo.wait_done(50, STARTUP);
    assert!(exchanges.iter().all(|e| e.received == 32768 && e.sent == 32768), "{exchanges:?}");
    assert_from_firewall(&echo);
    let client = format!("client={INSIDE_ADDR}:");
    sockd.wait_lines(&["connected:", &client, "dst=198.51.100.2:7 "], 50, STARTUP);
    sockd.wait_lines(
        &["closed:", &client, "dst=198.51.100.2:7 ", "sent=32768 received=32768"],
        50,
        STARTUP,
    );
}

#[test]
fn fork_and_connect_in_the_child() {
    let Some(lab) = Lab::new("fork") else { return };
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let script = r#"
import os, socket, sys
def roundtrip(s, data):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return "ok" if got == data else f"BAD({len(got)}/{len(data)})"
def peer(s):
    return "%s:%d" % s.getpeername()
def child(tag, inherited=None):
    try:
        if inherited is not None:
            print(f"{tag} inherited-peer={peer(inherited)}", flush=True)
        s = socket.create_connection(("198.51.100.2", 7), timeout=10)
        print(f"{tag} peer={peer(s)} echo={roundtrip(s, tag.encode() * 5000)}", flush=True)
        s.close()
        os._exit(0)
    except BaseException as e:
        print(f"{tag} error {e!r}", flush=True)
        os._exit(1)
# 1. The first connect of the program happens in a child.
pid = os.fork()
if pid == 0:
    child("child1")
_, status = os.waitpid(pid, 0)
print(f"child1 status={status}", flush=True)
# 2. The parent connects, then forks; the child sees the proxied socket and connects too.
s = socket.create_connection(("198.51.100.2", 7), timeout=10)
print(f"parent peer={peer(s)}", flush=True)
pid = os.fork()
if pid == 0:
    child("child2", inherited=s)
_, status = os.waitpid(pid, 0)
print(f"child2 status={status}", flush=True)
print(f"parent echo={roundtrip(s, b'parent' * 5000)} peer={peer(s)}", flush=True)
s.close()
"#;
    let ran = lab
        .python(script)
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_TIMEOUT", "10")
        .env("SOCKS_LOG", "info")
        .ld_preload()
        .run();
    ran.assert_success();
    assert_eq!(
        ran.stdout_text(),
        "child1 peer=198.51.100.2:7 echo=ok\n\
         child1 status=0\n\
         parent peer=198.51.100.2:7\n\
         child2 inherited-peer=198.51.100.2:7\n\
         child2 peer=198.51.100.2:7 echo=ok\n\
         child2 status=0\n\
         parent echo=ok peer=198.51.100.2:7\n",
        "{}",
        ran.describe()
    );
    // Three proxied connects, from three different processes' view of the library.
    let said = format!("connect {} via {SERVER} (socks5): ok", echo.addr());
    assert_eq!(ran.stderr.matches(&said).count(), 3, "{}", ran.describe());
    let exchanges = echo.wait_done(3, STARTUP);
    assert_from_firewall(&echo);
    let mut sizes: Vec<u64> = exchanges.iter().map(|e| e.received).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [30000, 30000, 30000], "child1, child2 and parent payloads");
    let client = format!("client={INSIDE_ADDR}:");
    sockd.wait_lines(
        &["closed:", &client, "dst=198.51.100.2:7 ", "sent=30000 received=30000"],
        3,
        STARTUP,
    );
}
