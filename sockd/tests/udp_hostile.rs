//! Hostile input on sockd's UDP ASSOCIATE relay port, on loopback with raw bytes: datagrams
//! from a source other than the client (another port of the client's address, another
//! address, a stranger writing to sockd's outbound socket), FRAG != 0, every truncation of a
//! header, a bad RSV and an unknown ATYP, datagrams to a destination the rules deny, and the
//! largest datagrams UDP carries. Each is dropped (or relayed whole) and counted in the
//! association's closing line; nothing crashes, and afterwards sockd still relays a normal UDP
//! round trip on a new association and a TCP CONNECT.
//!
//! Who owns an association (issue 11, items 3 and 4): the relay is locked to the address and
//! port the client declares in its request. An authenticated client must declare a port (all
//! zeros, or an address with port 0, is refused, so a neighbour on its address cannot speak
//! first and be relayed under its name); a declared address other than the client's own is
//! refused; neighbours spraying the relay from other ports are dropped and counted. A client
//! no `permit` line could ever cover (its address, its user) gets no relay at all: reply 02.
//!
//! Not here: programs using UDP through the library (tests/tests/udp.rs).

mod common;

use common::*;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};

const RULES: &str = "permit 127.0.0.0 0.255.255.255 127.0.0.0 0.255.255.255\n";

/// The largest UDP payload over IPv4.
const UDP_MAX: usize = 65_507;

/// `RSV RSV FRAG ATYP=1 ADDR PORT` + payload, for an IPv4 destination.
fn datagram(frag: u8, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let SocketAddr::V4(dst) = dst else { panic!("IPv4 only: {dst}") };
    let mut v = vec![0, 0, frag, 0x01];
    v.extend_from_slice(&dst.ip().octets());
    v.extend_from_slice(&dst.port().to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A client UDP socket on 127.0.0.1 (or `ip`), with a receive timeout.
fn udp_socket(ip: Ipv4Addr) -> UdpSocket {
    let socket = UdpSocket::bind((ip, 0)).expect("bind a client UDP socket");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    socket
}

/// An association: the control connection, sockd's relay address, and its `client=` tag.
struct Association {
    control: TcpStream,
    relay: SocketAddr,
    tag: String,
}

/// UDP ASSOCIATE with `dst` as where the client will send from (zeros allowed).
fn associate(sockd: &Sockd, dst: SocketAddr) -> Association {
    let mut control = connect(sockd.addr());
    socks5_noauth(&mut control);
    associated(sockd, control, dst)
}

/// The same after logging in as `user` (password `user-pw`).
fn associate_as(sockd: &Sockd, user: &str, dst: SocketAddr) -> Association {
    let mut control = connect(sockd.addr());
    login(&mut control, user);
    associated(sockd, control, dst)
}

/// Greeting and RFC 1929 login as `user` with password `user-pw`; asserts success.
fn login(control: &mut TcpStream, user: &str) {
    control.write_all(&socks5_greeting(&[0x02])).expect("greeting");
    assert_eq!(read_n(control, 2, "method selection"), [0x05, 0x02]);
    control.write_all(&rfc1929_request(user, &format!("{user}-pw"))).expect("login");
    assert_eq!(read_n(control, 2, "RFC 1929 status"), [0x01, 0x00], "{user} must log in");
}

/// Sends the request on a control connection past its handshake and asserts it is granted.
fn associated(sockd: &Sockd, mut control: TcpStream, dst: SocketAddr) -> Association {
    control.write_all(&socks5_request(CMD_UDP_ASSOCIATE, dst)).expect("write UDP ASSOCIATE");
    let reply = read_socks5_reply(&mut control, "UDP ASSOCIATE reply");
    assert_eq!(reply.rep, 0x00, "UDP ASSOCIATE must succeed: {reply:?}\n{}", sockd.log_text());
    assert_eq!(
        reply.addr.ip(),
        sockd.addr().ip(),
        "the relay must be on the address the client reached sockd on: {reply:?}"
    );
    assert_ne!(reply.addr.port(), 0, "the relay needs a port: {reply:?}");
    let tag = client_tag(&control);
    sockd.wait_for_line(&["udp:", &tag, "cmd=udp-associate"], LOG_TIMEOUT);
    Association { control, relay: reply.addr, tag }
}

/// Sends `payload` to `dst` through the relay and expects it back from `dst`, header and all.
fn round_trip(socket: &UdpSocket, relay: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    socket.send_to(&datagram(0, dst, payload), relay).expect("send through the relay");
    let mut buf = vec![0u8; 65_536];
    let (n, from) = socket.recv_from(&mut buf).unwrap_or_else(|e| {
        panic!("no reply through the relay for a {}-byte datagram: {e}", payload.len())
    });
    assert_eq!(from, relay, "the reply must come from the relay");
    let expected = datagram(0, dst, payload);
    assert_eq!(n, expected.len(), "reply length for a {}-byte payload", payload.len());
    assert!(buf[..n] == expected[..], "the reply must be the header with {dst}, then the payload");
}

/// Closes the control connection and returns the association's `closed:` line.
fn close(sockd: &Sockd, association: Association) -> String {
    drop(association.control);
    sockd.wait_for_line(&["closed:", &association.tag, "cmd=udp-associate"], LOG_TIMEOUT)
}

/// Asserts the closing line carries exactly these counters.
fn assert_counts(line: &str, expected: &[(&str, usize)]) {
    for (name, value) in expected {
        let token = format!("{name}={value}");
        assert!(
            line.split_whitespace().any(|t| t == token),
            "the closed line must carry {token}: {line}"
        );
    }
}

#[test]
fn hostile_datagrams_are_dropped_and_counted() {
    let echo = UdpEcho::start();
    let tcp_echo = echo_server();
    let mut sockd = Sockd::start(RULES);
    let client = udp_socket(Ipv4Addr::LOCALHOST);
    // DST zeros: the client's port is learned from its first datagram.
    let association = associate(&sockd, "0.0.0.0:0".parse().expect("literal"));
    let relay = association.relay;
    round_trip(&client, relay, echo.addr, b"first, from the client");

    // Another port of the client's address, and another address altogether.
    let same_ip = udp_socket(Ipv4Addr::LOCALHOST);
    same_ip.send_to(&datagram(0, echo.addr, b"spoofed port"), relay).expect("send");
    let other_ip = udp_socket(Ipv4Addr::new(127, 0, 0, 2));
    other_ip.send_to(&datagram(0, echo.addr, b"spoofed address"), relay).expect("send");
    // A stranger writing to the outbound socket sockd relays from (where the echo server saw
    // the datagrams come from): not a host the client sent to.
    let outbound = echo.seen()[0].0;
    let stranger = udp_socket(Ipv4Addr::LOCALHOST);
    stranger.send_to(b"unsolicited", outbound).expect("send to sockd's outbound socket");
    let foreign = 3;

    // Fragments.
    for frag in [1u8, 0x7f, 0x80, 0xff] {
        client.send_to(&datagram(frag, echo.addr, b"fragment"), relay).expect("send");
    }
    let fragments = 4;

    // Every truncation of an IPv4 header (0 to 9 bytes, an empty datagram included), an IPv6
    // header cut short, a domain longer than the datagram, a bad RSV, an unknown ATYP.
    let whole = datagram(0, echo.addr, b"");
    let mut malformed: Vec<Vec<u8>> = (0..whole.len()).map(|n| whole[..n].to_vec()).collect();
    malformed.push(vec![0, 0, 0, 0x04, 0x20, 0x01, 0x0d, 0xb8]);
    malformed.push([&[0u8, 0, 0, 0x03, 40][..], b"short.example"].concat());
    malformed.push([&[0u8, 1][..], &whole[2..], b"bad RSV"].concat());
    malformed.push([&[0u8, 0, 0, 0x05][..], &[1, 2, 3, 4, 5, 6], b"bad ATYP"].concat());
    for bytes in &malformed {
        client.send_to(bytes, relay).expect("send a malformed datagram");
    }

    // Still relaying for the client, including the largest payload that fits (65,497 bytes
    // after the 10-byte header) and a 65,000-byte one, whole.
    round_trip(&client, relay, echo.addr, b"after the noise");
    let big = pseudo_random(65_000, 9);
    round_trip(&client, relay, echo.addr, &big);
    let largest = pseudo_random(UDP_MAX - 10, 10);
    round_trip(&client, relay, echo.addr, &largest);

    let bytes = 22 + 15 + 65_000 + (UDP_MAX - 10);
    let line = close(&sockd, association);
    assert_counts(
        &line,
        &[
            ("sent", bytes),
            ("received", bytes),
            ("datagrams-sent", 4),
            ("datagrams-received", 4),
            ("dropped-foreign", foreign),
            ("dropped-malformed", malformed.len()),
            ("dropped-fragments", fragments),
            ("dropped-denied", 0),
            ("dropped-unresolved", 0),
        ],
    );
    // The echo server heard only the four relayed datagrams, all from sockd's outbound socket.
    let seen = echo.seen();
    assert_eq!(
        seen.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [22, 15, 65_000, UDP_MAX - 10],
        "{seen:?}"
    );
    assert!(seen.iter().all(|(peer, _)| *peer == outbound), "{seen:?}");

    // Nothing broke: a new association relays, and so does a TCP CONNECT.
    sockd.assert_alive();
    let again = udp_socket(Ipv4Addr::LOCALHOST);
    let association = associate(&sockd, again.local_addr().expect("local_addr"));
    round_trip(&again, association.relay, echo.addr, b"a new association");
    let line = close(&sockd, association);
    assert_counts(
        &line,
        &[("datagrams-sent", 1), ("datagrams-received", 1), ("dropped-foreign", 0)],
    );
    assert_served(&sockd, &tcp_echo);
    sockd.assert_alive();
}

#[test]
fn announced_port_is_enforced_and_denials_are_logged_once() {
    let echo = UdpEcho::start();
    let denied = UdpEcho::start();
    let rules = format!("deny 127.0.0.0/8 127.0.0.1/32 eq {}\n{RULES}", denied.addr.port());
    let mut sockd = Sockd::start(&rules);
    let client = udp_socket(Ipv4Addr::LOCALHOST);
    // The client announces its port: even its very first datagram from elsewhere is foreign.
    let association = associate(&sockd, client.local_addr().expect("local_addr"));
    let relay = association.relay;
    let early = udp_socket(Ipv4Addr::LOCALHOST);
    early.send_to(&datagram(0, echo.addr, b"not the announced port"), relay).expect("send");
    for i in 0..3 {
        client
            .send_to(&datagram(0, denied.addr, format!("denied {i}").as_bytes()), relay)
            .expect("send");
    }
    round_trip(&client, relay, echo.addr, b"permitted");
    let line = close(&sockd, association);
    assert_counts(
        &line,
        &[
            ("sent", 9),
            ("received", 9),
            ("datagrams-sent", 1),
            ("datagrams-received", 1),
            ("dropped-foreign", 1),
            ("dropped-denied", 3),
        ],
    );
    let udp_dst = format!("udp-dst={}", denied.addr);
    let rule = sockd.rule_tag(1);
    assert_eq!(
        sockd.count_lines(&["denied:", "cmd=udp-associate", &udp_dst, &rule]),
        1,
        "a denied destination is logged once, not per datagram:\n{}",
        sockd.log_text()
    );
    // sockd handled those datagrams before the round trip that followed them: the denied
    // destination heard nothing, the echo server only the permitted datagram.
    assert!(denied.seen().is_empty(), "{:?}", denied.seen());
    assert_eq!(echo.seen().len(), 1, "{:?}", echo.seen());
    sockd.assert_alive();
}

/// Users alice and bob, clear-text passwords (sockd accepts them with a warning; no hashing
/// cost in a test).
const USERS: &str = "alice:alice-pw\nbob:bob-pw\n";

/// sockd with `rules` and the users file: every SOCKS5 client must log in.
fn sockd_with_users(rules: &str) -> Sockd {
    let builder = SockdBuilder::new(rules);
    let users = builder.file("users", USERS);
    builder.arg("--users").arg(users).start()
}

/// Logs in as `user` on a control connection from `src`, asks for UDP ASSOCIATE declaring
/// `declared`: the reply and the control connection.
fn ask(
    sockd: &Sockd,
    src: Ipv4Addr,
    user: Option<&str>,
    declared: SocketAddr,
) -> (Socks5Reply, TcpStream) {
    let mut control = connect_from(src, sockd.addr());
    match user {
        Some(user) => login(&mut control, user),
        None => socks5_noauth(&mut control),
    }
    control.write_all(&socks5_request(CMD_UDP_ASSOCIATE, declared)).expect("write UDP ASSOCIATE");
    (read_socks5_reply(&mut control, "UDP ASSOCIATE reply"), control)
}

/// Whether `socket` gets an answer to a datagram for `dst` sent to `relay` within 2 s.
fn relayed(socket: &UdpSocket, relay: SocketAddr, dst: SocketAddr, payload: &[u8]) -> bool {
    socket.set_read_timeout(Some(std::time::Duration::from_secs(2))).expect("read timeout");
    socket.send_to(&datagram(0, dst, payload), relay).expect("send to the relay");
    let mut buf = [0u8; 2048];
    socket.recv_from(&mut buf).is_ok()
}

#[test]
fn authenticated_association_must_declare_its_port() {
    let echo = UdpEcho::start();
    let sockd = sockd_with_users(RULES);
    let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let own_ip_no_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    for declared in [unspecified, own_ip_no_port] {
        let (reply, control) = ask(&sockd, Ipv4Addr::LOCALHOST, Some("alice"), declared);
        if reply.rep == 0x00 {
            // The attack this prevents: a neighbour on alice's address speaks first, the relay
            // locks onto it, and what it sends and receives is logged as alice's.
            let neighbour = udp_socket(Ipv4Addr::LOCALHOST);
            let taken = relayed(&neighbour, reply.addr, echo.addr, b"neighbour first");
            panic!(
                "alice's association declaring {declared} was granted; a neighbour's datagram \
                 {} relayed under her name\n{}",
                if taken { "was" } else { "was not" },
                sockd.log_text()
            );
        }
        assert_eq!(reply.rep, 0x02, "refused as not allowed: {reply:?}");
        sockd.wait_for_line(
            &[
                "denied:",
                &client_tag(&control),
                "user=alice",
                "cmd=udp-associate",
                "must declare the port it sends from",
            ],
            LOG_TIMEOUT,
        );
    }
    assert!(echo.seen().is_empty(), "nothing may have been relayed: {:?}", echo.seen());
}

#[test]
fn authenticated_association_is_locked_to_the_declared_socket() {
    let echo = UdpEcho::start();
    let sockd = sockd_with_users(RULES);
    let client = udp_socket(Ipv4Addr::LOCALHOST);
    let port = client.local_addr().expect("local_addr").port();
    // The address part may be left unspecified (the control connection's address); then the
    // full address.
    for declared in
        [SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), client.local_addr().expect("local_addr")]
    {
        let association = associate_as(&sockd, "alice", declared);
        // Neighbours on the same address spray the relay before alice sends anything.
        let neighbours: Vec<UdpSocket> = (0..20).map(|_| udp_socket(Ipv4Addr::LOCALHOST)).collect();
        for n in &neighbours {
            n.send_to(&datagram(0, echo.addr, b"neighbour"), association.relay).expect("spray");
        }
        round_trip(&client, association.relay, echo.addr, b"alice's own");
        let line = close(&sockd, association);
        assert!(line.contains("user=alice"), "{line}");
        assert_counts(
            &line,
            &[("datagrams-sent", 1), ("datagrams-received", 1), ("dropped-foreign", 20)],
        );
    }
    // The echo server heard alice twice and no neighbour.
    assert_eq!(
        echo.seen().iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [11, 11],
        "{:?}",
        echo.seen()
    );
}

#[test]
fn declared_address_must_be_the_clients_own() {
    let echo = UdpEcho::start();
    for users in [false, true] {
        let sockd = if users { sockd_with_users(RULES) } else { Sockd::start(RULES) };
        let user = users.then_some("bob");
        // The control connection comes from 127.0.0.1, the declared socket is on 127.0.0.2.
        let elsewhere = udp_socket(Ipv4Addr::new(127, 0, 0, 2));
        let declared = elsewhere.local_addr().expect("local_addr");
        let (reply, control) = ask(&sockd, Ipv4Addr::LOCALHOST, user, declared);
        if reply.rep == 0x00 {
            let taken = relayed(&elsewhere, reply.addr, echo.addr, b"from elsewhere");
            panic!(
                "an association declaring {declared} for a client on 127.0.0.1 was granted \
                 (users: {users}); a datagram from {declared} {} relayed\n{}",
                if taken { "was" } else { "was not" },
                sockd.log_text()
            );
        }
        assert_eq!(reply.rep, 0x02, "refused as not allowed: {reply:?}");
        sockd.wait_for_line(
            &[
                "denied:",
                &client_tag(&control),
                "cmd=udp-associate",
                "is not the client's address 127.0.0.1",
            ],
            LOG_TIMEOUT,
        );
        // The same socket address seen from its own host is fine.
        let (reply, _control) = ask(&sockd, Ipv4Addr::new(127, 0, 0, 2), user, declared);
        assert_eq!(reply.rep, 0x00, "{reply:?}\n{}", sockd.log_text());
        round_trip(&elsewhere, reply.addr, echo.addr, b"from its own host");
    }
}

#[test]
fn clients_no_permit_line_covers_get_no_relay() {
    let echo = UdpEcho::start();
    // alice may use UDP from 127.0.0.2 only, bob from anywhere but 127.0.0.3.
    let rules = "deny 127.0.0.3/32\n\
                 permit *=bob 127.0.0.0/8 127.0.0.0/8\n\
                 permit 127.0.0.2/32 127.0.0.0/8\n";
    let sockd = sockd_with_users(rules);
    let cases: [(&str, Ipv4Addr, bool); 5] = [
        ("alice", Ipv4Addr::new(127, 0, 0, 1), false),
        ("alice", Ipv4Addr::new(127, 0, 0, 2), true),
        ("bob", Ipv4Addr::new(127, 0, 0, 1), true),
        ("bob", Ipv4Addr::new(127, 0, 0, 3), false),
        ("alice", Ipv4Addr::new(127, 0, 0, 3), false),
    ];
    for (user, src, granted) in cases {
        let client = udp_socket(src);
        let declared = client.local_addr().expect("local_addr");
        let (reply, control) = ask(&sockd, src, Some(user), declared);
        let tag = client_tag(&control);
        if granted {
            assert_eq!(reply.rep, 0x00, "{user} from {src}: {reply:?}\n{}", sockd.log_text());
            round_trip(&client, reply.addr, echo.addr, user.as_bytes());
        } else {
            assert_eq!(
                reply.rep,
                0x02,
                "{user} from {src}: no permit line covers this client, so no relay: {reply:?}\n{}",
                sockd.log_text()
            );
            let line = sockd.wait_for_line(&["denied:", &tag, "cmd=udp-associate"], LOG_TIMEOUT);
            assert!(line.contains("no permit line"), "the reason must be logged: {line}");
            assert_eq!(sockd.count_lines(&["udp:", &tag]), 0, "no relay may be opened: {line}");
        }
    }
    let heard: Vec<IpAddr> = echo.seen().iter().map(|(peer, _)| peer.ip()).collect();
    assert_eq!(heard.len(), 2, "only the granted clients' datagrams: {:?}", echo.seen());
}
