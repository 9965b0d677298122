//! One client connection from accept to close: the handshake (with its deadline), then the
//! command — CONNECT here, BIND in `bind` — and the log lines of the paper's three classes
//! (denied, connected/closed, resource failure) plus malformed input and timeouts.
//!
//! Not here: the byte formats (socks-proto), the rule language (socks-proto `rules`), relaying.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, error, info};
use socks_proto::server::{AuthPolicy, Command, Request, ServerHandshake, Step};
use socks_proto::{Failure, ProtoError, TargetAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::balancer::Peer;
use crate::context::{Admitted, Full};
use crate::metrics::{self, Login, Outcome};
use crate::outbound;
use crate::relay::{relay, RelayEnd, RelayStats};
use crate::{bind, udp, Config, Context};

/// How long a refused client is given to read our failure reply before the socket is closed.
const LINGER_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// Who asked for what: the fields every log line of a session carries.
#[derive(Debug, Clone)]
pub struct Session {
    /// The client's address (IPv4-mapped shown as IPv4); behind a balancer, the one its PROXY
    /// protocol header carried.
    pub client: SocketAddr,
    /// The balancer the client came through (`--accept-proxy-protocol`), if any.
    pub balancer: Option<SocketAddr>,
    /// SOCKS4 USERID or SOCKS5 username.
    pub user: Option<String>,
    /// The command.
    pub command: Command,
    /// The requested destination.
    pub dst: TargetAddr,
}

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client={} user={} cmd={} dst={}",
            Peer { addr: self.client, balancer: self.balancer },
            printable(self.user.as_deref().unwrap_or("-")),
            self.command,
            printable(&self.dst.to_string())
        )
    }
}

/// Client-chosen text (user names, host names) as it may appear in a log line: only printable
/// text is written as is, everything else as `\u{HEX}`, so no client can forge a field or a
/// line, reorder what a reader sees (bidi controls) or hide characters.
///
/// Printed as is: letters, numbers, punctuation and symbols (general categories L*, N*, P*, S*),
/// and combining marks (M*) that follow a character printed as is. Escaped: the backslash
/// itself (so an escape in the log is always sockd's), controls (Cc), format characters (Cf:
/// bidi overrides and isolates, zero-width characters, soft hyphen), every separator (Zs, Zl,
/// Zp: the space and the no-break space included, since fields are separated by spaces),
/// private use (Co), surrogates and unassigned code points (Cn, judged by Unicode 16), and a
/// combining mark with nothing printed before it to combine with.
pub fn printable(text: &str) -> String {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    let mut out = String::with_capacity(text.len());
    let mut after_printed = false;
    for c in text.chars() {
        let shown = c != '\\'
            && match get_general_category(c) {
                G::UppercaseLetter
                | G::LowercaseLetter
                | G::TitlecaseLetter
                | G::ModifierLetter
                | G::OtherLetter
                | G::DecimalNumber
                | G::LetterNumber
                | G::OtherNumber
                | G::ConnectorPunctuation
                | G::DashPunctuation
                | G::OpenPunctuation
                | G::ClosePunctuation
                | G::InitialPunctuation
                | G::FinalPunctuation
                | G::OtherPunctuation
                | G::MathSymbol
                | G::CurrencySymbol
                | G::ModifierSymbol
                | G::OtherSymbol => true,
                G::NonspacingMark | G::SpacingMark | G::EnclosingMark => after_printed,
                // Cc, Cf, Zs, Zl, Zp, Co, Cs, Cn, and any category a later version adds.
                _ => false,
            };
        if shown {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
        after_printed = shown;
    }
    out
}

/// Why a handshake did not produce a request.
enum HandshakeEnd {
    /// The client closed (or reset) the connection after sending `received` bytes.
    Closed { received: usize, error: Option<std::io::Error> },
    /// The client broke the protocol or was refused; the failure reply is already sent.
    Protocol(ProtoError),
    /// The password check failed for this user: failures in a row from the client's address,
    /// and the delay its next attempt gets.
    BadPassword(String, u32, Duration),
    /// Too many failed logins from the client's address: refused without checking.
    Throttled(String, u32),
}

/// Serves one client connection to completion. Never panics on client input; logs every outcome.
/// `admitted` is its place in the counters (standalone mode): a handshake place, which an
/// eviction may end early, then a session place once the handshake is complete.
pub async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Context>,
    admitted: Option<Admitted>,
) {
    serve_from(client, Peer::direct(peer), ctx, admitted).await;
}

/// [`serve`] for a client whose address may have come from a balancer's PROXY header.
pub async fn serve_from(
    mut client: TcpStream,
    peer: Peer,
    ctx: Arc<Context>,
    mut admitted: Option<Admitted>,
) {
    // This session keeps these rules and users even if a SIGHUP replaces them meanwhile.
    let config = ctx.config();
    let started = Instant::now();
    let handshake =
        timeout(ctx.timeouts.handshake, read_request(&mut client, peer.addr, &config, &ctx));
    let evicted = async {
        match &admitted {
            Some(admitted) => admitted.evicted().await,
            None => std::future::pending().await,
        }
    };
    let handshake = tokio::select! {
        done = handshake => done,
        () = evicted => {
            metrics::session(None, Outcome::Evicted);
            info!(
                "evicted: client={peer} had not completed its handshake after {:.3}s; closed to \
                 make room for a new client (--max-handshakes {})",
                started.elapsed().as_secs_f64(),
                ctx.limits.max_handshakes
            );
            return;
        }
    };
    let (request, early_data, held) = match handshake {
        Ok(Ok(done)) => done,
        Err(_) => {
            metrics::session(None, Outcome::Timeout);
            info!(
                "timeout: client={peer} did not complete the handshake within {}s",
                ctx.timeouts.handshake.as_secs()
            );
            return;
        }
        Ok(Err(HandshakeEnd::Closed { received: 0, error })) => {
            metrics::session(None, Outcome::Empty);
            debug!("client={peer} closed without sending anything ({error:?})");
            return;
        }
        Ok(Err(HandshakeEnd::Closed { received, error })) => {
            metrics::session(None, Outcome::BadRequest);
            let why = error.map(|e| format!(": {e}")).unwrap_or_default();
            info!("bad request: client={peer} error=connection closed after {received} bytes, before a complete request{why}");
            return;
        }
        Ok(Err(HandshakeEnd::BadPassword(user, failures, delay))) => {
            metrics::session(None, Outcome::LoginFailed);
            info!(
                "denied: client={peer} user={} error=wrong username or password failures={failures} next-try-delay={:.1}s",
                printable(&user),
                delay.as_secs_f64()
            );
            linger_and_close(client).await;
            return;
        }
        Ok(Err(HandshakeEnd::Throttled(user, failures))) => {
            metrics::session(None, Outcome::LoginFailed);
            info!(
                "denied: client={peer} user={} error=too many failed logins from this address \
                 (failures={failures}); not checked, try again later",
                printable(&user)
            );
            linger_and_close(client).await;
            return;
        }
        Ok(Err(HandshakeEnd::Protocol(e))) => {
            metrics::session(None, Outcome::BadRequest);
            info!("bad request: client={peer} error={e}");
            linger_and_close(client).await;
            return;
        }
    };
    metrics::handshake_took(started.elapsed());
    let session = Session {
        client: peer.addr,
        balancer: peer.balancer,
        user: request.user.clone(),
        command: request.command,
        dst: request.dst.clone(),
    };
    if let Some(Err(full)) = admitted.as_mut().map(Admitted::promote) {
        let limit = match full {
            Full::Total(max) => format!("{max} sessions running (--max-sessions)"),
            Full::PerClient(max) => {
                format!("{max} sessions from this client (--max-sessions-per-client)")
            }
        };
        info!("failed: {session} error=no room for another session: {limit}");
        metrics::session(Some(request.command), Outcome::Limit);
        return send_refusal(client, held, &request, Failure::General).await;
    }
    match request.command {
        Command::Connect => {
            connect(client, held, &request, early_data, &session, &ctx, &config).await
        }
        Command::Bind => bind::serve(client, &request, early_data, &session, &ctx, &config).await,
        Command::UdpAssociate => udp::serve(client, &request, &session, &ctx, &config).await,
    }
}

/// Reads until the handshake yields a request; sends method selection and auth replies (and
/// failure replies) as the state machine asks. Gives the request, the client's bytes that
/// followed it, and the replies held back: when a CONNECT request came in the same read as the
/// replies it answers (a client that pipelines, such as libsocks.so with `?pipeline`), they are
/// not written on their own but in front of the CONNECT reply, in one write — one system call
/// and one wake-up of the client fewer (issue 17). The client is waiting for that reply
/// anyway, and a client that waits for each answer never sends its request in the same read.
async fn read_request(
    client: &mut TcpStream,
    peer: SocketAddr,
    config: &Arc<Config>,
    ctx: &Context,
) -> Result<(Request, Vec<u8>, Vec<u8>), HandshakeEnd> {
    let policy =
        if config.passwords_required() { AuthPolicy::PasswordRequired } else { AuthPolicy::Open };
    let mut handshake = ServerHandshake::new(policy);
    // On the heap and only for the handshake, so it is not part of every session's task.
    let mut buffer = vec![0u8; 1024];
    let mut received = 0;
    loop {
        let n = match client.read(&mut buffer).await {
            Ok(0) => return Err(HandshakeEnd::Closed { received, error: None }),
            Ok(n) => n,
            Err(e) => return Err(HandshakeEnd::Closed { received, error: Some(e) }),
        };
        received += n;
        let mut step = handshake.feed(&buffer[..n]);
        let mut rejected = None;
        if let Step::CheckPassword(credentials) = &step {
            let ok = match ctx.logins.reserve(peer.ip(), std::time::Instant::now()) {
                Err(failures) => {
                    metrics::login(Login::Throttled);
                    rejected =
                        Some(HandshakeEnd::Throttled(credentials.username.clone(), failures));
                    false
                }
                Ok(wait) => {
                    // After failures from this address, its turn comes later (see `throttle`).
                    tokio::time::sleep(wait).await;
                    // A hashed password costs milliseconds of CPU: not on an async worker.
                    let (config, username, password) = (
                        config.clone(),
                        credentials.username.clone(),
                        credentials.password.clone(),
                    );
                    let ok = match config.pam.clone() {
                        // Off the async workers, bounded in time and number (see `pam`).
                        Some(pam) => pam.check(username, password).await,
                        None => tokio::task::spawn_blocking(move || {
                            config.users.as_ref().is_some_and(|u| u.check(&username, &password))
                        })
                        .await
                        .unwrap_or(false),
                    };
                    metrics::login(if ok { Login::Ok } else { Login::Failed });
                    if !ok {
                        let (failures, delay) =
                            ctx.logins.failed(peer.ip(), std::time::Instant::now());
                        let user = credentials.username.clone();
                        rejected = Some(HandshakeEnd::BadPassword(user, failures, delay));
                    }
                    ok
                }
            };
            step = handshake.password_checked(ok);
        }
        let output = handshake.take_output();
        let hold = matches!(&step, Step::Request(request) if request.command == Command::Connect);
        if !output.is_empty() && !hold {
            if let Err(e) = client.write_all(&output).await {
                return Err(HandshakeEnd::Closed { received, error: Some(e) });
            }
        }
        match step {
            Step::NeedMore => {}
            Step::Request(request) => {
                let held = if hold { output } else { Vec::new() };
                return Ok((request, handshake.take_leftover(), held));
            }
            Step::Failed(e) => return Err(rejected.unwrap_or(HandshakeEnd::Protocol(e))),
            Step::CheckPassword(_) => {
                return Err(HandshakeEnd::Protocol(ProtoError::NoAcceptableMethod))
            }
        }
    }
}

/// CONNECT: resolve, check the rules, connect, reply (after `held`, the handshake's replies held
/// back, see `read_request`), relay.
async fn connect(
    mut client: TcpStream,
    held: Vec<u8>,
    request: &Request,
    early_data: Vec<u8>,
    session: &Session,
    ctx: &Context,
    config: &Config,
) {
    let deadline = Instant::now() + ctx.timeouts.connect;
    let addrs = match outbound::resolve(&request.dst, deadline).await {
        Ok(addrs) => addrs,
        Err(refusal) => {
            info!("failed: {session} error={}", refusal.message);
            return refuse_after(client, held, request, refusal.failure).await;
        }
    };
    let allowed = match outbound::permitted(
        &config.rules,
        session.client.ip(),
        session.user.as_deref(),
        &addrs,
    ) {
        Ok(allowed) => allowed,
        Err(rule) => {
            info!("denied: {session} rule={rule}");
            metrics::denied_by(&rule);
            return refuse_after(client, held, request, Failure::NotAllowed).await;
        }
    };
    let connecting = Instant::now();
    let (remote, connected_to) = match outbound::connect_any(&allowed, deadline).await {
        Ok(connected) => {
            metrics::connect_took(connecting.elapsed());
            connected
        }
        Err(refusal) => {
            if refusal.resource {
                error!("resource failure: {session} error={}", refusal.message);
            } else {
                info!("failed: {session} error={}", refusal.message);
            }
            return refuse_after(client, held, request, refusal.failure).await;
        }
    };
    let bound = match remote.local_addr() {
        Ok(bound) => bound,
        Err(e) => {
            info!("failed: {session} error=connection lost at once: {e}");
            return refuse_after(client, held, request, Failure::General).await;
        }
    };
    let mut reply = held;
    request.encode_reply(Ok(bound), &mut reply);
    if let Err(e) = client.write_all(&reply).await {
        info!("failed: {session} error=client gone before the reply: {e}");
        metrics::session(Some(request.command), Outcome::Aborted);
        return;
    }
    info!("connected: {session} addr={connected_to} via={bound}");
    metrics::session(Some(request.command), Outcome::Granted);
    relay_and_log(client, remote, early_data, session, ctx).await;
}

/// Relays (forwarding the client's early data first) and logs the `closed:` line.
pub async fn relay_and_log(
    client: TcpStream,
    mut remote: TcpStream,
    early_data: Vec<u8>,
    session: &Session,
    ctx: &Context,
) {
    let started = Instant::now();
    // The client's socket has TCP_NODELAY already: Linux copies it from the listening socket
    // to every connection accepted there, and sockd sets it on its listeners (and on standard
    // input under inetd) — see `crate::listen` and `run_inetd`. The far side is set here: outbound
    // connections and BIND's accepted one (whose listener is not set).
    let _ = remote.set_nodelay(true);
    let mut stats = if early_data.is_empty() {
        RelayStats { sent: 0, received: 0, end: RelayEnd::Finished }
    } else {
        match remote.write_all(&early_data).await {
            Ok(()) => {
                metrics::tcp_bytes(metrics::Direction::Sent).inc_by(early_data.len() as u64);
                RelayStats { sent: early_data.len() as u64, received: 0, end: RelayEnd::Finished }
            }
            Err(e) => RelayStats { sent: 0, received: 0, end: RelayEnd::Failed(e) },
        }
    };
    if matches!(stats.end, RelayEnd::Finished) {
        let more =
            relay(client, remote, ctx.timeouts.idle, ctx.timeouts.half_close, &ctx.stopping).await;
        stats = RelayStats { sent: stats.sent + more.sent, received: more.received, end: more.end };
    }
    let how = match &stats.end {
        RelayEnd::Finished => String::new(),
        RelayEnd::Idle => {
            format!(" end=idle-timeout({}s)", ctx.timeouts.idle.map_or(0, |d| d.as_secs()))
        }
        RelayEnd::Shutdown => " end=shutdown".to_string(),
        RelayEnd::HalfClosedIdle => {
            format!(" end=half-close-timeout({}s)", ctx.timeouts.half_close.as_secs())
        }
        RelayEnd::Failed(e) => format!(" end=error({e})"),
    };
    info!(
        "closed: {session} sent={} received={} secs={:.3}{how}",
        stats.sent,
        stats.received,
        started.elapsed().as_secs_f64()
    );
}

/// Counts the refusal (`denied` for X'02', else `failed` with its code), sends the failure reply
/// for `request` and closes.
pub async fn refuse(client: TcpStream, request: &Request, failure: Failure) {
    refuse_after(client, Vec::new(), request, failure).await;
}

/// [`refuse`], the failure reply written after `held` (the handshake's replies held back).
async fn refuse_after(client: TcpStream, held: Vec<u8>, request: &Request, failure: Failure) {
    let outcome =
        if failure == Failure::NotAllowed { Outcome::Denied } else { Outcome::Failed(failure) };
    metrics::session(Some(request.command), outcome);
    send_refusal(client, held, request, failure).await;
}

/// Sends `held` and the failure reply for `request` in one write, and closes.
async fn send_refusal(mut client: TcpStream, held: Vec<u8>, request: &Request, failure: Failure) {
    let mut reply = held;
    request.encode_reply(Err(failure), &mut reply);
    if let Err(e) = client.write_all(&reply).await {
        debug!(
            "client={} gone before the failure reply: {e}",
            client.peer_addr().map_or_else(|_| "?".into(), |a| a.to_string())
        );
        return;
    }
    linger_and_close(client).await;
}

/// Half-closes, then reads (and discards) until the client closes or a short time passes, so the
/// last reply is not destroyed by a reset when unread client bytes are pending at close.
async fn linger_and_close(mut client: TcpStream) {
    if client.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 512];
    let drain = async {
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    if timeout(LINGER_AFTER_FAILURE, drain).await.is_err() {
        debug!(
            "client did not close within {}s after a failure reply; closing",
            LINGER_AFTER_FAILURE.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_cannot_forge_log_fields() {
        assert_eq!(printable("alice"), "alice");
        assert_eq!(printable("a b\nconnected: x"), "a\\u{20}b\\u{a}connected:\\u{20}x");
        assert_eq!(printable("evil\\x"), "evil\\u{5c}x");
        assert_eq!(printable("bücher.example"), "bücher.example");
    }

    #[test]
    fn only_printable_text_reaches_the_log() {
        // Bidi controls, zero-width and other format characters (Cf).
        assert_eq!(printable("ad\u{202e}nimda"), "ad\\u{202e}nimda");
        for c in ['\u{202a}', '\u{2066}', '\u{2069}', '\u{200b}', '\u{200d}', '\u{ad}', '\u{feff}']
        {
            assert_eq!(printable(&format!("a{c}b")), format!("a\\u{{{:x}}}b", u32::from(c)));
        }
        // Separators other than the space: no-break, line and paragraph separators (Zs, Zl, Zp).
        assert_eq!(
            printable("a\u{a0}b\u{2028}c\u{2029}d\u{3000}"),
            "a\\u{a0}b\\u{2028}c\\u{2029}d\\u{3000}"
        );
        // C1 controls, private use, unassigned.
        assert_eq!(
            printable("\u{85}\u{9b}\u{e000}\u{378}\u{10ffff}"),
            "\\u{85}\\u{9b}\\u{e000}\\u{378}\\u{10ffff}"
        );
        // Combining marks combine with a printed character, not with what sockd wrote before.
        assert_eq!(printable("e\u{301}"), "e\u{301}");
        assert_eq!(printable("\u{301}x"), "\\u{301}x");
        assert_eq!(printable("\u{202e}\u{301}"), "\\u{202e}\\u{301}");
        // Printable text of every script stays readable.
        assert_eq!(printable("Ωμέγα-データ_№1€"), "Ωμέγα-データ_№1€");
    }
}
