//! `--half-close-timeout` (issue 7): once one side of a relayed session has closed its sending
//! side, the other may stay silent only that long; then sockd closes the session and logs
//! `end=half-close-timeout(Ns)` in the `closed:` line, so CLOSE-WAIT sockets cannot pile up.
//! Both ways round: the client half-closes and the destination goes silent, and the destination
//! half-closes and the client goes silent. While data still flows in the open direction the
//! session is NOT closed, however long that takes.
//!
//! Not here: ordinary half-close relaying (half_close.rs), the idle timeout (half_close.rs).

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0/8 127.0.0.0/8\n";
const TIMEOUT_SECS: u64 = 2;

fn start() -> Sockd {
    SockdBuilder::new(RULES).arg("--half-close-timeout").arg(TIMEOUT_SECS.to_string()).start()
}

/// Reads until EOF or error; returns the bytes and when the end came.
fn read_until_end(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Instant) {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (data, Instant::now()),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no end of stream within {within:?} ({} bytes read)", data.len())
            }
            Err(_) => return (data, Instant::now()),
        }
    }
}

#[test]
fn client_half_closes_and_the_silent_destination_is_cut_off() {
    // The destination reads to EOF, then holds its side open and says nothing until released;
    // then it checks that sockd has closed the connection (a write fails).
    let (tx, rx) = mpsc::channel();
    let release = Arc::new(AtomicBool::new(false));
    let released = release.clone();
    let server = TestServer::spawn("127.0.0.1:0", move |mut s| {
        let (data, _) = read_until_end(&mut s, Duration::from_secs(10));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !released.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        // The first write may still be accepted (and answered by a reset), not a later one.
        let _ = s.write_all(b"late");
        thread::sleep(Duration::from_millis(100));
        let closed = s.write_all(b"late").is_err();
        let _ = tx.send((data, closed));
    });
    let sockd = start();
    let mut s = socks5_connect(sockd.addr(), server.addr);
    let tag = client_tag(&s);
    s.write_all(b"request, then FIN").expect("write");
    s.shutdown(Shutdown::Write).expect("half-close");
    let t0 = Instant::now();
    let (got, end) = read_until_end(&mut s, Duration::from_secs(10));
    let took = end.duration_since(t0);
    release.store(true, Ordering::SeqCst);
    assert!(got.is_empty());
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(4500),
        "--half-close-timeout {TIMEOUT_SECS}: the session must end ~{TIMEOUT_SECS} s after the \
         half-close, ended after {took:?}"
    );
    let (data, closed) = recv_within(&rx, Duration::from_secs(10), "destination");
    assert_eq!(data, b"request, then FIN");
    assert!(closed, "sockd must close the silent destination's connection too");
    let end = format!("end=half-close-timeout({TIMEOUT_SECS}s)");
    sockd.wait_for_line(&["closed:", &tag, "sent=17", "received=0", &end], LOG_TIMEOUT);
}

#[test]
fn destination_half_closes_and_the_silent_client_is_cut_off() {
    let (tx, rx) = mpsc::channel();
    let server = TestServer::spawn("127.0.0.1:0", move |mut s| {
        s.write_all(b"banner, then FIN").expect("banner");
        s.shutdown(Shutdown::Write).expect("half-close");
        let fin_at = Instant::now();
        let (data, closed_at) = read_until_end(&mut s, Duration::from_secs(10));
        let _ = tx.send((data, closed_at.duration_since(fin_at)));
    });
    let sockd = start();
    let mut s = socks5_connect(sockd.addr(), server.addr);
    let tag = client_tag(&s);
    // The client reads the banner and the passed-on FIN, then stays silent, never closing.
    let (got, _) = read_until_end(&mut s, Duration::from_secs(10));
    assert_eq!(got, b"banner, then FIN");
    let (data, took) = recv_within(&rx, Duration::from_secs(10), "destination");
    assert!(data.is_empty());
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(4500),
        "the destination's connection must be closed ~{TIMEOUT_SECS} s after its FIN, took \
         {took:?}"
    );
    let end = format!("end=half-close-timeout({TIMEOUT_SECS}s)");
    sockd.wait_for_line(&["closed:", &tag, "sent=0", "received=16", &end], LOG_TIMEOUT);
    // The client's socket is closed too: writing now fails (reset) or reading gives EOF.
    thread::sleep(Duration::from_millis(100));
    let _ = s.write_all(b"x");
    thread::sleep(Duration::from_millis(100));
    let gone = s.write_all(b"y").is_err();
    assert!(gone, "the silent client's connection must be closed by sockd");
}

/// Sends `chunks` pieces of 100 bytes, one every `every`.
fn trickle(s: &mut TcpStream, chunks: usize, every: Duration) -> usize {
    let piece = [0x5au8; 100];
    for _ in 0..chunks {
        thread::sleep(every);
        s.write_all(&piece).expect("trickle");
    }
    chunks * piece.len()
}

#[test]
fn traffic_after_a_half_close_keeps_the_session_open() {
    const CHUNKS: usize = 8; // 8 x 500 ms = 4 s, twice the timeout
    let every = Duration::from_millis(500);
    let sockd = start();
    let proxy = sockd.addr();

    // The client half-closes; the destination keeps talking for 4 s, then closes.
    let server = TestServer::spawn("127.0.0.1:0", move |mut s| {
        let _ = read_until_end(&mut s, Duration::from_secs(10));
        trickle(&mut s, CHUNKS, every);
        let _ = s.shutdown(Shutdown::Write);
    });
    let dst = server.addr;
    let first = thread::spawn(move || {
        let mut c = socks5_connect(proxy, dst);
        let tag = client_tag(&c);
        c.write_all(b"go").expect("write");
        c.shutdown(Shutdown::Write).expect("half-close");
        let (got, _) = read_until_end(&mut c, Duration::from_secs(10));
        (tag, got.len())
    });

    // At the same time: the destination half-closes; the client keeps talking for 4 s.
    let (tx, rx) = mpsc::channel();
    let server2 = TestServer::spawn("127.0.0.1:0", move |mut s| {
        s.shutdown(Shutdown::Write).expect("half-close");
        let (data, _) = read_until_end(&mut s, Duration::from_secs(10));
        let _ = tx.send(data.len());
    });
    let mut c2 = socks5_connect(proxy, server2.addr);
    let tag2 = client_tag(&c2);
    let (got, _) = read_until_end(&mut c2, Duration::from_secs(10));
    assert!(got.is_empty());
    let sent = trickle(&mut c2, CHUNKS, every);
    c2.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(recv_within(&rx, Duration::from_secs(10), "destination"), sent);

    let (tag1, received) = first.join().expect("first session");
    assert_eq!(received, CHUNKS * 100, "every chunk must arrive; the session was cut short");
    let l1 = sockd.wait_for_line(&["closed:", &tag1, "sent=2", "received=800"], LOG_TIMEOUT);
    let l2 = sockd.wait_for_line(&["closed:", &tag2, "sent=800", "received=0"], LOG_TIMEOUT);
    for l in [l1, l2] {
        assert!(!l.contains("end="), "a session with traffic must end normally: {l}");
    }
}
