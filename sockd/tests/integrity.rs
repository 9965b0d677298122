//! Data integrity (issue 7): a large transfer through sockd in both directions at once, each
//! direction ended by a half-close, arrives complete and unaltered — the sha256 of what each
//! side sent equals the sha256 of what the other received, and the `closed:` line counts every
//! byte. The data is pseudo-random, streamed in chunks of varying size (never held whole in
//! memory), and hashed by coreutils' `sha256sum` fed through a pipe.
//!
//! Also: kill -9 of sockd in the middle of a transfer makes the client fail fast (its read
//! returns EOF or a reset within 2 s, its writes fail), it does not hang.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0/8 127.0.0.0/8\n";
/// Bytes each way: 256 MiB.
const TOTAL: u64 = 256 << 20;
/// The pseudo-random pool chunks are cut from (at varying offsets, so no two chunks align).
const POOL: usize = 4 << 20;
const MAX_CHUNK: usize = 64 << 10;

/// A running `sha256sum` fed through its standard input.
struct Sha256Pipe {
    child: Child,
    stdin: Option<ChildStdin>,
    bytes: u64,
}

impl Sha256Pipe {
    fn new() -> Sha256Pipe {
        let prog = require_program("sha256sum", "coreutils");
        let mut child = Command::new(prog)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sha256sum");
        let stdin = child.stdin.take();
        Sha256Pipe { child, stdin, bytes: 0 }
    }

    fn update(&mut self, data: &[u8]) {
        self.stdin.as_mut().expect("open").write_all(data).expect("write to sha256sum");
        self.bytes += data.len() as u64;
    }

    /// The hex digest and the byte count.
    fn finish(mut self) -> (String, u64) {
        drop(self.stdin.take());
        let mut out = String::new();
        self.child.stdout.take().expect("piped").read_to_string(&mut out).expect("digest");
        let st = self.child.wait().expect("sha256sum exit");
        assert!(st.success(), "sha256sum failed: {st}");
        let digest = out.split_whitespace().next().expect("digest").to_string();
        assert_eq!(digest.len(), 64, "{out}");
        (digest, self.bytes)
    }
}

/// Streams `total` pseudo-random bytes (from `seed`) to `s` in chunks of varying size,
/// hashing them; half-closes at the end. Returns the digest and count of what was written.
fn send_stream(s: &mut TcpStream, total: u64, seed: u64) -> (String, u64) {
    let pool = pseudo_random(POOL + MAX_CHUNK, seed);
    let mut hash = Sha256Pipe::new();
    let mut sent = 0u64;
    let mut k = 0u64;
    while sent < total {
        let off = ((k.wrapping_mul(2_654_435_761) ^ seed) % POOL as u64) as usize;
        let len =
            (1 + (k.wrapping_mul(40_503) % MAX_CHUNK as u64) as usize).min((total - sent) as usize);
        let chunk = &pool[off..off + len];
        s.write_all(chunk).expect("send stream");
        hash.update(chunk);
        sent += len as u64;
        k += 1;
    }
    s.shutdown(Shutdown::Write).expect("half-close after the stream");
    hash.finish()
}

/// Reads `s` to EOF, hashing; returns the digest and count.
fn receive_stream(s: &mut TcpStream) -> (String, u64) {
    let mut hash = Sha256Pipe::new();
    let mut buf = vec![0u8; 128 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hash.update(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("receive stream: {e} after {} bytes", hash.bytes),
        }
    }
    hash.finish()
}

#[test]
fn sha256_of_256_mib_each_way_at_once_with_half_closes() {
    // The destination: sends its stream and receives the client's, at the same time.
    let (tx, rx) = mpsc::channel();
    let server = TestServer::spawn("127.0.0.1:0", move |s| {
        let mut reader = s.try_clone().expect("clone");
        let mut writer = s;
        let sender = thread::spawn(move || send_stream(&mut writer, TOTAL, 0xD0D0));
        let received = receive_stream(&mut reader);
        let sent = sender.join().expect("destination sender");
        let _ = tx.send((sent, received));
    });
    let sockd = Sockd::start(RULES);
    let t0 = Instant::now();
    let s = socks5_connect(sockd.addr(), server.addr);
    let tag = client_tag(&s);
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut writer = s.try_clone().expect("clone");
    let mut reader = s;
    let sender = thread::spawn(move || send_stream(&mut writer, TOTAL, 0xC11E));
    let client_received = receive_stream(&mut reader);
    let client_sent = sender.join().expect("client sender");
    let (server_sent, server_received) =
        recv_within(&rx, Duration::from_secs(60), "destination digests");
    let took = t0.elapsed();
    eprintln!(
        "{} MiB each way in {took:?}: client->dst {} / {}, dst->client {} / {}",
        TOTAL >> 20,
        client_sent.0,
        server_received.0,
        server_sent.0,
        client_received.0
    );
    assert_eq!(client_sent.1, TOTAL);
    assert_eq!(server_sent.1, TOTAL);
    assert_eq!(server_received, client_sent, "client -> destination: digest and byte count");
    assert_eq!(client_received, server_sent, "destination -> client: digest and byte count");
    let line = sockd.wait_for_line(
        &["closed:", &tag, &format!("sent={TOTAL}"), &format!("received={TOTAL}")],
        LOG_TIMEOUT,
    );
    assert!(!line.contains("end="), "a complete transfer ends normally: {line}");
}

#[test]
fn kill_9_of_sockd_mid_transfer_makes_the_client_fail_fast() {
    let echo = echo_server();
    let mut sockd = Sockd::start(RULES);
    let s = socks5_connect(sockd.addr(), echo.addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut writer = s.try_clone().expect("clone");
    let mut reader = s;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let (stop2, written2) = (stop.clone(), written.clone());
    let sender = thread::spawn(move || {
        let chunk = pseudo_random(32 << 10, 3);
        while !stop2.load(Ordering::SeqCst) {
            if let Err(e) = writer.write_all(&chunk) {
                return (Instant::now(), Some(e));
            }
            written2.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        (Instant::now(), None)
    });
    // Let data flow for a moment (the echo sends it all back).
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    while received < 8 << 20 {
        match reader.read(&mut buf) {
            Ok(0) => panic!("EOF before the kill"),
            Ok(n) => received += n as u64,
            Err(e) => panic!("read before the kill: {e}"),
        }
    }
    let killed_at = Instant::now();
    sockd.kill9();
    let end = loop {
        match reader.read(&mut buf) {
            Ok(0) => break "EOF".to_string(),
            Ok(n) => received += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the client's read hangs after kill -9 of sockd ({received} bytes read)")
            }
            Err(e) => break format!("{e}"),
        }
    };
    let read_took = killed_at.elapsed();
    // The writer fails on its own too (no stop flag needed), or is stopped if it never blocks.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !sender.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    let (write_end, write_err) = sender.join().expect("sender");
    eprintln!(
        "after kill -9: read ended by {end} in {read_took:?}; writer: {write_err:?} after {:?}; \
         {} bytes written, {received} read",
        write_end.saturating_duration_since(killed_at),
        written.load(Ordering::SeqCst)
    );
    assert!(read_took < Duration::from_secs(2), "the client's read took {read_took:?} to end");
    assert!(write_err.is_some(), "writing to a dead proxy must fail, not go on or hang");
    assert!(
        write_end.saturating_duration_since(killed_at) < Duration::from_secs(2),
        "the client's write took too long to fail"
    );
}
