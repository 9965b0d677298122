//! The relay under load: a full-duplex 8 MiB transfer (a relay that cannot read while it
//! writes deadlocks here), many sessions at once, and the CONNECT reply's BND.ADDR/BND.PORT,
//! which RFC 1928 defines as the address sockd used towards the destination.
//!
//! Not here: half-close and the idle timeout (half_close.rs).

mod common;

use common::*;
use std::io::Write;
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

const RULES: &str = "permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n";

#[test]
fn connect_reply_names_the_outbound_address() {
    let echo = echo_server();
    let sockd = Sockd::start(RULES);
    let mut s = connect(sockd.addr());
    socks5_noauth(&mut s);
    s.write_all(&socks5_request(CMD_CONNECT, echo.addr)).expect("request");
    let r = read_socks5_reply(&mut s, "CONNECT reply");
    assert_eq!(r.rep, 0, "{r:?}");
    assert_echo(&mut s, b"x");
    let peers = echo.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(
        r.addr, peers[0],
        "RFC 1928: BND.ADDR/BND.PORT of a CONNECT reply is the address sockd connected from"
    );
}

#[test]
fn full_duplex_8_mib() {
    const SIZE: usize = 8 * 1024 * 1024;
    let echo = echo_server();
    let sockd = Sockd::start(RULES);
    let mut s = socks5_connect(sockd.addr(), echo.addr);
    let tag = client_tag(&s);
    let data = pseudo_random(SIZE, 0xd0d0);
    let mut writer = s.try_clone().expect("clone");
    let to_send = data.clone();
    let t0 = Instant::now();
    let w = thread::spawn(move || {
        for chunk in to_send.chunks(64 * 1024) {
            writer.write_all(chunk).expect("write while the echo flows back");
        }
        writer.shutdown(Shutdown::Write).expect("shutdown");
    });
    let back = read_to_eof(&mut s, "8 MiB echo");
    w.join().expect("writer thread");
    assert_eq!(back.len(), SIZE, "all bytes must come back");
    assert!(back == data, "echoed data differs");
    eprintln!("8 MiB each way in {:?}", t0.elapsed());
    sockd.wait_for_line(&["closed:", &tag, "sent=8388608", "received=8388608"], LOG_TIMEOUT);
}

#[test]
fn many_concurrent_sessions() {
    const N: usize = 40;
    let echo = echo_server();
    let sockd = Sockd::start(RULES);
    let proxy = sockd.addr();
    let target = echo.v4();
    let handles: Vec<_> = (0..N)
        .map(|i| {
            thread::spawn(move || {
                let mut s = if i % 2 == 0 {
                    socks5_connect(proxy, target.into())
                } else {
                    socks4_connect(proxy, target, format!("user{i}").as_bytes())
                };
                let payload = pseudo_random(64 * 1024, i as u64);
                // Hold every session open until all have echoed once.
                assert_echo(&mut s, &payload[..1024]);
                thread::sleep(Duration::from_millis(300));
                assert_echo(&mut s, &payload[1024..]);
                s.shutdown(Shutdown::Write).expect("shutdown");
                assert!(read_to_eof(&mut s, "EOF").is_empty());
            })
        })
        .collect();
    let mut failed = 0;
    for h in handles {
        if h.join().is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 0, "{failed} of {N} concurrent sessions failed; log:\n{}", sockd.log_text());
    assert_eq!(echo.accepted(), N);
    let deadline = Instant::now() + LOG_TIMEOUT;
    while sockd.count_lines(&["closed:", "sent=65536", "received=65536"]) < N {
        assert!(
            Instant::now() < deadline,
            "{N} closed: lines with 65536 bytes each way expected; log:\n{}",
            sockd.log_text()
        );
        thread::sleep(Duration::from_millis(20));
    }
}
