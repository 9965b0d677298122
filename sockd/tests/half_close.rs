//! Half-close through the relay: a client that sends and then shuts down its write side must
//! still receive the destination's whole answer followed by EOF; a destination that closes its
//! write side first must still receive everything the client sends afterwards. Also the idle
//! timeout, which must end a silent session and log it.
//!
//! Not here: handshake framing (framing.rs).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n";

/// Destination that reads to EOF, reports what it got, then answers with `reply` and closes.
fn answer_after_eof_server(reply: Vec<u8>) -> (TestServer, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = TestServer::spawn("127.0.0.1:0", move |mut s| {
        let mut got = Vec::new();
        let ok = s.read_to_end(&mut got).is_ok();
        let _ = tx.lock().map(|t| t.send(got));
        if ok {
            let _ = s.write_all(&reply);
        }
        let _ = s.shutdown(Shutdown::Both);
    });
    (server, rx)
}

/// Destination that sends `banner`, shuts down its write side, then reads to EOF and reports.
fn speak_first_server(banner: Vec<u8>) -> (TestServer, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = TestServer::spawn("127.0.0.1:0", move |mut s| {
        if s.write_all(&banner).is_err() {
            return;
        }
        let _ = s.shutdown(Shutdown::Write);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let _ = tx.lock().map(|t| t.send(got));
    });
    (server, rx)
}

fn client_closes_first(v4: bool) {
    let request = pseudo_random(100 * 1024, 11);
    let reply = pseudo_random(300 * 1024, 12);
    let (server, rx) = answer_after_eof_server(reply.clone());
    let sockd = Sockd::start(RULES);
    let mut s = if v4 {
        socks4_connect(sockd.addr(), server.v4(), b"")
    } else {
        socks5_connect(sockd.addr(), server.addr)
    };
    let tag = client_tag(&s);
    s.write_all(&request).expect("write request");
    s.shutdown(Shutdown::Write).expect("shutdown write");
    let got = recv_within(&rx, Duration::from_secs(10), "destination EOF");
    assert_eq!(got.len(), request.len(), "destination must see all bytes, then EOF");
    assert!(got == request, "request corrupted in transit");
    let answer = read_to_eof(&mut s, "answer after half-close");
    assert_eq!(
        answer.len(),
        reply.len(),
        "client must receive the whole answer after its own shutdown; log:\n{}",
        sockd.log_text()
    );
    assert!(answer == reply, "answer corrupted in transit");
    let dst = format!("dst={}", server.dst());
    sockd.wait_for_line(&["closed:", &tag, &dst, "sent=102400", "received=307200"], LOG_TIMEOUT);
}

#[test]
fn client_shutdown_write_then_receives_answer_socks5() {
    client_closes_first(false);
}

#[test]
fn client_shutdown_write_then_receives_answer_socks4() {
    client_closes_first(true);
}

#[test]
fn destination_closes_first_client_keeps_sending() {
    let banner = pseudo_random(300 * 1024, 21);
    let late = pseudo_random(100 * 1024, 22);
    let (server, rx) = speak_first_server(banner.clone());
    let sockd = Sockd::start(RULES);
    let mut s = socks5_connect(sockd.addr(), server.addr);
    let tag = client_tag(&s);
    let got = read_to_eof(&mut s, "banner then EOF");
    assert!(got == banner, "banner differs ({} of {} bytes)", got.len(), banner.len());
    // The destination's write side is closed; ours is still open and must keep working.
    thread::sleep(Duration::from_millis(200));
    for chunk in late.chunks(10 * 1024) {
        s.write_all(chunk).expect("client keeps sending after the destination's EOF");
        thread::sleep(Duration::from_millis(10));
    }
    s.shutdown(Shutdown::Write).expect("shutdown write");
    let got = recv_within(&rx, Duration::from_secs(10), "destination read to EOF");
    assert_eq!(
        got.len(),
        late.len(),
        "destination must receive everything sent after its own half-close; log:\n{}",
        sockd.log_text()
    );
    assert!(got == late, "late data corrupted");
    let dst = format!("dst={}", server.dst());
    sockd.wait_for_line(&["closed:", &tag, &dst, "sent=102400", "received=307200"], LOG_TIMEOUT);
}

#[test]
fn idle_timeout_closes_silent_session() {
    let echo = echo_server();
    let sockd = SockdBuilder::new(RULES).arg("--idle-timeout").arg("1").start();
    let mut s = socks5_connect(sockd.addr(), echo.addr);
    let tag = client_tag(&s);
    assert_echo(&mut s, b"before idling");
    let t0 = Instant::now();
    let (rest, _) = expect_closed(&mut s, Duration::from_secs(6), "idle session");
    let took = t0.elapsed();
    assert!(rest.is_empty(), "no bytes may be injected into an idle session: {rest:02x?}");
    assert!(
        took >= Duration::from_millis(700),
        "closed after {took:?}, before the 1 s idle timeout"
    );
    sockd.wait_for_line(&["closed:", &tag, "sent=13", "received=13"], LOG_TIMEOUT);
}
