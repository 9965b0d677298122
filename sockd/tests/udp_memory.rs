//! What an idle UDP association costs sockd (issue 11, item 4): N associations, each with its
//! own client socket declared in the request and one datagram relayed each way (so every
//! buffer an association keeps has been used), then left idle. The growth of sockd's
//! proportional set size (PSS, /proc/PID/smaps_rollup) over N is the cost of one; it must stay
//! near an idle TCP session's (7.7 KiB, docs/PERFORMANCE.md). Kernel socket memory is not in
//! it, as it is not in the TCP figure.
//!
//! `cargo test -p sockd --test udp_memory -- --nocapture` prints the figure.
//!
//! Not here: hostile datagrams (udp_hostile.rs), throughput.

mod common;

use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

/// Associations held at once.
const N: usize = 1000;
/// The most an idle association may cost, in KiB (an idle TCP session: 7.7).
const LIMIT_KIB: f64 = 12.0;

/// PSS of `pid` in KiB.
fn pss_kib(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/smaps_rollup: {e}"));
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no Pss line in /proc/{pid}/smaps_rollup:\n{rollup}"))
}

/// One association with two datagrams relayed each way, a small one and a 60,000-byte one (so
/// any buffer it keeps has been written through): its control connection and socket.
fn associate_and_use(sockd: &Sockd, echo: SocketAddr, i: usize) -> (TcpStream, UdpSocket) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a client UDP socket");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    let mut control = connect(sockd.addr());
    socks5_noauth(&mut control);
    let declared = socket.local_addr().expect("local_addr");
    control.write_all(&socks5_request(CMD_UDP_ASSOCIATE, declared)).expect("write request");
    let reply = read_socks5_reply(&mut control, "UDP ASSOCIATE reply");
    assert_eq!(reply.rep, 0, "association {i}: {reply:?}\n{}", tail(&sockd.log_text(), 20));
    let SocketAddr::V4(dst) = echo else { unreachable!("the echo server is on 127.0.0.1") };
    let mut buf = vec![0u8; 65_536];
    for payload in [format!("association {i}").into_bytes(), pseudo_random(60_000, i as u64)] {
        let mut datagram = vec![0, 0, 0, 0x01];
        datagram.extend_from_slice(&dst.ip().octets());
        datagram.extend_from_slice(&dst.port().to_be_bytes());
        datagram.extend_from_slice(&payload);
        socket.send_to(&datagram, reply.addr).expect("send through the relay");
        let (n, from) = socket
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("association {i}: no reply through the relay: {e}"));
        assert!(from == reply.addr && buf[..n] == datagram[..], "association {i}: wrong reply");
    }
    (control, socket)
}

#[test]
fn an_idle_association_costs_about_a_tcp_session() {
    // Two descriptors per association here and in sockd, plus the warm-up and the runtime's.
    let needed = (4 * N + 512) as libc::rlim_t;
    if !raise_nofile_to(needed) {
        skip("an_idle_association_costs_about_a_tcp_session", "RLIMIT_NOFILE hard limit too low");
        return;
    }
    let echo = UdpEcho::start().addr;
    let sockd = SockdBuilder::new("permit 127.0.0.0/8 127.0.0.0/8\n")
        .arg("--max-sessions-per-client")
        .arg((2 * N).to_string())
        .start();
    // Warm-up: sockd's runtime, allocator arenas and the like reach their steady state.
    for i in 0..64 {
        drop(associate_and_use(&sockd, echo, i));
    }
    thread::sleep(Duration::from_millis(300));
    let before = pss_kib(sockd.pid());
    let held: Vec<(TcpStream, UdpSocket)> =
        (0..N).map(|i| associate_and_use(&sockd, echo, i)).collect();
    thread::sleep(Duration::from_millis(300));
    let after = pss_kib(sockd.pid());
    let per = (after as f64 - before as f64) / N as f64;
    println!(
        "sockd PSS: {before} KiB before, {after} KiB with {N} idle UDP associations: {per:.1} KiB each"
    );
    assert!(
        per <= LIMIT_KIB,
        "an idle UDP association costs {per:.1} KiB (PSS {before} -> {after} KiB for {N}); \
         at most {LIMIT_KIB} KiB expected"
    );
    assert_eq!(held.len(), N);
}
