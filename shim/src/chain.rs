//! The handshakes of a chain of proxies (or of a lone HTTP proxy) on a program's socket that is
//! already connected to the first hop: each hop in turn is asked for the next hop's address,
//! the last one for the destination (by name for a fake address; an HTTP hop with
//! `CONNECT name:port`). The HTTP answer is read with `socks_proto::http_connect`, never a byte
//! past its blank line: what follows belongs to the program. Every failure names the hop.
//!
//! The chain's hops after the first are reached through the hop before them, so only the first
//! hop's address is connected to here; the whole walk runs within the connection's one deadline
//! (`SOCKS_TIMEOUT`), and a hop that does not answer in time is named in the log.
//!
//! Not here: connecting to the first hop and choosing the chain (`proxy`), single SOCKS
//! servers (`proxy` drives them directly), the heap-free path (which refuses chains).

use std::net::SocketAddr;
use std::time::Instant;

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

/// Why `command` cannot go through `server` at all (before any connection is made), if so.
pub fn refusal(server: &Server, command: Command) -> Option<&'static str> {
    if server.is_single_socks() {
        return None;
    }
    let last = server.next.last().map_or(server.protocol, |hop| hop.protocol);
    match command {
        Command::Connect => None,
        Command::Bind if last == Protocol::Http => {
            Some("BIND cannot go through an HTTP proxy (CONNECT opens outbound tunnels only)")
        }
        Command::Bind => None,
        Command::UdpAssociate => Some("UDP cannot go through a chain of proxies or an HTTP proxy"),
    }
}

/// Runs every hop's handshake on `fd` (connected to the first hop), the last asking for
/// `command` to `target`. Errors say which hop (`hop 2 of 3 (socks5://…)`).
pub fn run(
    fd: c_int,
    server: &Server,
    command: Command,
    target: &TargetAddr,
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
            message: format!("hop {} of {count} ({shown}): {why}", i + 1),
        };
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
