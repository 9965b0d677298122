//! BIND, as the 1992 paper and RFC 1928 describe it: listen on the address of the interface
//! through which the named host is reached (the address that host can connect to), send the
//! first reply with it, accept exactly one connection, and only from the named host; the second
//! reply carries the connecting host's address, then the two are relayed.
//!
//! Not here: the rule language, relaying (see `relay`).

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use log::{error, info};
use socks_proto::server::Request;
use socks_proto::Failure;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout_at, Instant};

use crate::metrics::{self, Outcome};
use crate::outbound::{self, canonical};
use crate::session::{printable, refuse, relay_and_log, Session};
use crate::{Config, Context};

/// Serves a BIND request on `client`.
pub async fn serve(
    mut client: TcpStream,
    request: &Request,
    mut early_data: Vec<u8>,
    session: &Session,
    ctx: &Context,
    config: &Config,
) {
    let deadline = Instant::now() + ctx.timeouts.connect;
    let expected = match outbound::resolve(&request.dst, deadline).await {
        Ok(addrs) => addrs,
        Err(refusal) => {
            info!("failed: {session} error={}", refusal.message);
            return refuse(client, request, refusal.failure).await;
        }
    };
    if expected.iter().any(|sa| sa.ip().is_unspecified()) {
        info!("denied: {session} rule=bind error=BIND must name the host that will connect");
        metrics::denied_by("bind");
        return refuse(client, request, Failure::NotAllowed).await;
    }
    let expected = match outbound::permitted(
        &config.rules,
        session.client.ip(),
        session.user.as_deref(),
        &expected,
    ) {
        Ok(allowed) => allowed,
        Err(rule) => {
            info!("denied: {session} rule={rule}");
            metrics::denied_by(&rule);
            return refuse(client, request, Failure::NotAllowed).await;
        }
    };
    let listener = match listen_toward(expected[0].ip()) {
        Ok(listener) => listener,
        Err(e) => {
            if outbound::is_resource_shortage(&e) {
                error!("resource failure: {session} error=cannot listen for BIND: {e}");
            } else {
                info!("failed: {session} error=cannot listen for BIND: {e}");
            }
            return refuse(client, request, Failure::General).await;
        }
    };
    let listening = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            info!("failed: {session} error=cannot listen for BIND: {e}");
            return refuse(client, request, Failure::General).await;
        }
    };
    let mut reply = Vec::new();
    request.encode_reply(Ok(listening), &mut reply);
    if client.write_all(&reply).await.is_err() {
        metrics::session(Some(request.command), Outcome::Aborted);
        return;
    }
    info!("bind: {session} listening on {listening} for {}", printable(&request.dst.to_string()));

    let accept_deadline = Instant::now() + ctx.timeouts.bind;
    let mut client_bytes = [0u8; 4096];
    let (remote, from) = loop {
        tokio::select! {
            accepted = timeout_at(accept_deadline, listener.accept()) => match accepted {
                Ok(Ok((remote, from))) => break (remote, canonical(from)),
                Ok(Err(e)) => {
                    if outbound::is_resource_shortage(&e) {
                        error!("resource failure: {session} error=accept for BIND: {e}");
                    } else {
                        info!("failed: {session} error=accept for BIND: {e}");
                    }
                    return refuse(client, request, Failure::General).await;
                }
                Err(_) => {
                    info!("failed: {session} error=no connection within {}s", ctx.timeouts.bind.as_secs());
                    return refuse(client, request, Failure::TtlExpired).await;
                }
            },
            read = client.read(&mut client_bytes) => match read {
                Ok(0) | Err(_) => {
                    info!("failed: {session} error=client closed while waiting for the inbound connection");
                    metrics::session(Some(request.command), Outcome::Aborted);
                    return;
                }
                // Data before the second reply: keep it for the peer, as pipelined data.
                Ok(n) => early_data.extend_from_slice(&client_bytes[..n]),
            },
        }
    };
    drop(listener);
    if !expected.iter().any(|sa| sa.ip() == from.ip()) {
        info!(
            "denied: {session} rule=bind error=unexpected peer IP {} (expected {})",
            from.ip(),
            printable(&request.dst.to_string())
        );
        metrics::denied_by("bind");
        drop(remote);
        return refuse(client, request, Failure::NotAllowed).await;
    }
    let mut second = Vec::new();
    request.encode_reply(Ok(from), &mut second);
    if let Err(e) = client.write_all(&second).await {
        info!("failed: {session} error=client gone before the second reply: {e}");
        metrics::session(Some(request.command), Outcome::Aborted);
        return;
    }
    info!("connected: {session} from={from} via={listening}");
    metrics::session(Some(request.command), Outcome::Granted);
    relay_and_log(client, remote, early_data, session, ctx).await;
}

/// A listener on the local address that traffic to `host` leaves from, port chosen by the system.
fn listen_toward(host: IpAddr) -> io::Result<TcpListener> {
    let local_ip = local_address_toward(host)?;
    let std_listener = std::net::TcpListener::bind(SocketAddr::new(local_ip, 0))?;
    std_listener.set_nonblocking(true)?;
    TcpListener::from_std(std_listener)
}

/// The source address the routing table picks for `host`: connecting a UDP socket sends nothing
/// but makes the kernel choose the route and the interface address.
fn local_address_toward(host: IpAddr) -> io::Result<IpAddr> {
    let unspecified: IpAddr = match host {
        IpAddr::V4(_) => [0u8, 0, 0, 0].into(),
        IpAddr::V6(_) => [0u16; 8].into(),
    };
    let probe = UdpSocket::bind(SocketAddr::new(unspecified, 0))?;
    probe.connect(SocketAddr::new(host, 9))?;
    Ok(probe.local_addr()?.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_reached_from_loopback() {
        let ip = local_address_toward("127.0.0.1".parse().expect("literal")).expect("route");
        assert!(ip.is_loopback(), "{ip}");
    }
}
