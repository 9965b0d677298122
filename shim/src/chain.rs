//! The handshakes of a chain of proxies (or of a lone HTTP proxy) on a program's socket that is
//! already connected to the first hop: each hop in turn is asked for the next hop's address,
//! the last one for the destination (by name for a fake address; an HTTP hop with
//! `CONNECT name:port`). The HTTP answer is read with `socks_proto::http_connect`, never a byte
//! past its blank line: what follows belongs to the program. Every failure names the hop.
//!
//! The chain's hops after the first are reached through the hop before them, so only the first
//! hop's address is connected to here; the whole walk runs within the connection's one deadline
//! (`SOCKS_TIMEOUT`), each hop's handshake within its share of it (`Server::hop_share`), and a
//! hop that does not answer in time is named in the log.
//!
//! Not here: connecting to the first hop and choosing the chain (`proxy`), single SOCKS
//! servers (`proxy` drives them directly), the heap-free path (which refuses chains).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libc::c_int;
use socks_client::settings::Protocol;
use socks_proto::client::{ClientHandshake, ClientVersion, Identity};
use socks_proto::http_connect::{encode_request, ResponseReader, ResponseStep};
pub use socks_proto::server::Command;
use socks_proto::TargetAddr;

use crate::config::Server;
use crate::outcome::Cause;
use crate::proxy::{describe, exchange, recv_some, send_all};

/// What the last hop granted: its protocol and the address its reply names (for HTTP, none:
/// port 0 of the unspecified address).
pub struct ChainGranted {
    /// The last hop's SOCKS version (for a BIND's second reply); `None` for HTTP.
    pub version: Option<ClientVersion>,
    /// The reply's address (CONNECT: the outbound address; BIND: where the last hop listens).
    pub bound: TargetAddr,
}

/// A hop's failure: the cause (for errno) and what went wrong.
type HopFailure = (Cause, String);

/// A chain's failure: the cause, which hop (0 = the first), and the message naming it.
pub struct ChainFailure {
    /// For errno.
    pub cause: Cause,
    /// The hop that failed, 0 for the first.
    pub hop: usize,
    /// `hop 2 of 3 (socks5://…): why`.
    pub message: String,
}

/// Runs every hop's handshake on `fd` (connected to the first hop), the last asking for
/// `command` to `target`. Each hop's handshake ends after `share` (and at `deadline` in any
/// case). Errors say which hop (`hop 2 of 3 (socks5://…)`).
pub fn run(
    fd: c_int,
    server: &Server,
    command: Command,
    target: &TargetAddr,
    share: Duration,
    deadline: Instant,
) -> Result<ChainGranted, ChainFailure> {
    let count = server.hop_count();
    let hops = std::iter::once((server.protocol, &server.identity, server.pipeline, &server.shown))
        .chain(server.next.iter().map(|h| (h.protocol, &h.identity, h.pipeline, &h.shown)));
    let mut granted = ChainGranted { version: None, bound: TargetAddr::Ip(unspecified()) };
    for (i, (protocol, identity, pipeline, shown)) in hops.enumerate() {
        let last = i + 1 == count;
        let (ask, for_what) = match server.next.get(i) {
            Some(next) if !last => (&next.target, Command::Connect),
            _ => (target, command),
        };
        let name_hop = |(cause, why): HopFailure| ChainFailure {
            cause,
            hop: i,
            message: match server.next.get(i) {
                // The hop answered but could not open the way to the next one: name both.
                Some(next) if !last => format!(
                    "hop {} of {count} ({shown}) could not reach hop {} ({}): {why}",
                    i + 1,
                    i + 2,
                    next.shown
                ),
                _ => format!("hop {} of {count} ({shown}): {why}", i + 1),
            },
        };
        let deadline = deadline.min(Instant::now() + share);
        granted = match protocol {
            Protocol::Socks(version) => {
                socks_hop(fd, version, for_what, ask, identity, pipeline, deadline)
                    .map(|bound| ChainGranted { version: Some(version), bound })
                    .map_err(name_hop)?
            }
            Protocol::Http if for_what != Command::Connect => {
                return Err(name_hop((
                    Cause::Denied,
                    format!("{for_what} cannot go through an HTTP proxy"),
                )))
            }
            Protocol::Http => http_hop(fd, ask, identity, deadline)
                .map(|()| ChainGranted { version: None, bound: TargetAddr::Ip(unspecified()) })
                .map_err(name_hop)?,
        };
    }
    Ok(granted)
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

fn socks_hop(
    fd: c_int,
    version: ClientVersion,
    command: Command,
    target: &TargetAddr,
    identity: &Identity,
    pipeline: bool,
    deadline: Instant,
) -> Result<TargetAddr, HopFailure> {
    let mut hs = ClientHandshake::new(version, command, target, identity.clone())
        .map_err(|e| (Cause::Unsupported, e.to_string()))?;
    if pipeline {
        hs = hs.pipelined();
    }
    exchange(fd, &mut hs, deadline)
}

/// One HTTP CONNECT: the request, then the answer read exactly to its blank line.
fn http_hop(
    fd: c_int,
    target: &TargetAddr,
    identity: &Identity,
    deadline: Instant,
) -> Result<(), HopFailure> {
    let io = |cause: Cause| (cause, describe(cause).to_string());
    let credentials =
        identity.credentials.as_ref().map(|c| (c.username.as_str(), c.password.as_slice()));
    let mut request = Vec::new();
    encode_request(target, credentials, &mut request)
        .map_err(|e| (Cause::Unsupported, e.to_string()))?;
    send_all(fd, &request, deadline).map_err(io)?;
    let mut reader = ResponseReader::new();
    let mut buffer = [0u8; 512];
    loop {
        let want = reader.wanted().min(buffer.len());
        let n = recv_some(fd, &mut buffer[..want], deadline).map_err(io)?;
        if n == 0 {
            return Err((
                Cause::Os(libc::ECONNRESET),
                "proxy closed the connection before its answer ended".into(),
            ));
        }
        match reader.feed(&buffer[..n]) {
            Ok(ResponseStep::NeedMore) => {}
            Ok(ResponseStep::Open { .. }) => return Ok(()),
            Err(e) => return Err((Cause::of_http(&e), e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::real;
    use crate::proxy::request_through;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    /// Reads one HTTP request head (to its blank line) from `s`.
    fn read_head(s: &mut std::net::TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).expect("request"), 1, "request cut short");
            head.push(byte[0]);
        }
        String::from_utf8(head).expect("ASCII request")
    }

    fn servers_for(value: String) -> Vec<Server> {
        let env = crate::config::Environment { server: Some(value), ..Default::default() };
        match crate::config::load(&env).mode {
            crate::config::Mode::Everything { servers, .. } => servers,
            other => panic!("{other:?}"),
        }
    }

    fn connect_through(servers: &[Server], target: &TargetAddr) -> (c_int, Result<(), Cause>) {
        let fd = real::new_socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC);
        assert!(fd >= 0);
        let result = request_through(fd, Command::Connect, target, servers, Duration::from_secs(5))
            .map(|_| ());
        (fd, result)
    }

    #[test]
    fn http_hop_leaves_the_stream_after_the_head_unread() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback listener");
        let addr = listener.local_addr().expect("bound");
        let proxy = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("the library connects");
            let head = read_head(&mut s);
            // The answer and the tunnel's first bytes in one write: the library must stop at
            // the blank line.
            s.write_all(b"HTTP/1.1 200 Connection established\r\nVia: t\r\n\r\nhello")
                .expect("answer");
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            head
        });
        let servers = servers_for(format!("http://u:p%3Ew@{addr}"));
        let (fd, result) =
            connect_through(&servers, &TargetAddr::Domain("example.org".into(), 443));
        assert!(result.is_ok(), "{result:?}");
        let mut first = [0u8; 16];
        assert_eq!(real::recv_into(fd, &mut first, 0), 5, "exactly the tunnel's bytes are left");
        assert_eq!(&first[..5], b"hello");
        real::close_fd(fd);
        let head = proxy.join().expect("proxy thread");
        assert!(head.starts_with("CONNECT example.org:443 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("Proxy-Authorization: Basic dTpwPnc=\r\n"), "u:p>w: {head}");
    }

    #[test]
    fn http_407_is_a_refused_password() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback listener");
        let addr = listener.local_addr().expect("bound");
        let proxy = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("the library connects");
            read_head(&mut s);
            s.write_all(b"HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n")
                .expect("answer");
        });
        let servers = servers_for(format!("http://{addr}"));
        let (fd, result) =
            connect_through(&servers, &TargetAddr::Ip("192.0.2.7:80".parse().expect("literal")));
        assert_eq!(result, Err(Cause::AuthRejected));
        assert_eq!(Cause::AuthRejected.errno(), libc::EACCES);
        real::close_fd(fd);
        proxy.join().expect("proxy thread");
    }

    #[test]
    fn socks5_then_http_hop_in_turn() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback listener");
        let addr = listener.local_addr().expect("bound");
        let hops = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("the library connects");
            let mut greeting = [0u8; 3];
            s.read_exact(&mut greeting).expect("greeting");
            assert_eq!(greeting, [5, 1, 0]);
            s.write_all(&[5, 0]).expect("selection");
            // CONNECT to the next hop, by name: proxy.far:3128.
            let mut request = [0u8; 5 + 9 + 2];
            s.read_exact(&mut request).expect("request");
            assert_eq!(&request[..5], &[5, 1, 0, 3, 9]);
            assert_eq!(&request[5..14], b"proxy.far");
            assert_eq!(&request[14..], &3128u16.to_be_bytes());
            s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 9]).expect("reply");
            // Now the HTTP hop speaks on the same stream.
            let head = read_head(&mut s);
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\nworld").expect("answer");
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            head
        });
        let servers = servers_for(format!("socks5://{addr}>http://proxy.far:3128"));
        assert_eq!(servers[0].hop_count(), 2);
        let (fd, result) = connect_through(&servers, &TargetAddr::Domain("example.org".into(), 80));
        assert!(result.is_ok(), "{result:?}");
        let mut first = [0u8; 16];
        assert_eq!(real::recv_into(fd, &mut first, 0), 5);
        assert_eq!(&first[..5], b"world");
        real::close_fd(fd);
        let head = hops.join().expect("hop thread");
        assert!(head.starts_with("CONNECT example.org:80 HTTP/1.1\r\n"), "{head}");
    }

    #[test]
    fn refusals_before_any_connection() {
        let servers = servers_for("socks5://127.0.0.1:9>http://proxy.far:3128".into());
        assert!(servers[0].refusal(Command::Bind).is_some(), "BIND cannot end at HTTP");
        assert!(servers[0].refusal(Command::UdpAssociate).is_some());
        assert!(servers[0].refusal(Command::Connect).is_none());
        let socks_chain = servers_for("127.0.0.1:9>socks5://10.0.0.2:1080".into());
        assert!(socks_chain[0].refusal(Command::Bind).is_none(), "BIND at the last SOCKS hop");
        assert!(socks_chain[0].refusal(Command::UdpAssociate).is_some());
        let single = servers_for("127.0.0.1:9".into());
        assert!(single[0].refusal(Command::UdpAssociate).is_none());
    }
}
