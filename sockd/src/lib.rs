//! sockd: the SOCKS4/4a/5 server of the firewall host. This file wires the pieces together:
//! options, logging, the rule file, the users file, then either the standalone listeners or
//! one inetd session. Sessions are in `session`, BIND in `bind`, relaying in `relay`.
//!
//! Unsafe code is denied here and allowed only in `sys`, the libc boundary.
#![deny(unsafe_code)]

pub mod bind;
pub mod cli;
pub mod config;
pub mod logging;
pub mod outbound;
pub mod relay;
pub mod session;
pub mod sys;
pub mod users;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use log::{error, info, warn};
use socks_proto::rules::RuleSet;
use tokio::net::TcpListener;

use crate::cli::{Options, Timeouts};
use crate::users::Users;

/// What every session needs: the rules, the users, the timeouts.
#[derive(Debug)]
pub struct Context {
    /// The parsed rule file.
    pub rules: RuleSet,
    /// RFC 1929 users, when `--users` was given.
    pub users: Option<Users>,
    /// Deadlines.
    pub timeouts: Timeouts,
}

/// Pause after a failed accept caused by a resource shortage, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Runs sockd with parsed options; the exit code reports success or the configuration error.
pub fn run(options: Options) -> ExitCode {
    if options.check {
        return check(&options);
    }
    let sink = match &options.log_file {
        Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => logging::Sink::File(file),
            Err(e) => {
                // Under inetd, standard error is the client's socket: say nothing there.
                if !options.inetd {
                    eprintln!("sockd: cannot open log file {}: {e}", path.display());
                }
                return ExitCode::FAILURE;
            }
        },
        None if options.syslog || options.inetd => logging::Sink::Syslog,
        None => logging::Sink::Stderr,
    };
    logging::init(sink, options.log_level);
    let context = match load_context(&options) {
        Ok(context) => Arc::new(context),
        Err(message) => {
            error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    if context.rules.rules.is_empty() {
        warn!("{}: no rules, so every request will be denied", context.rules.file);
    }
    if options.inetd {
        run_inetd(context)
    } else {
        run_standalone(context, options.listen_addrs())
    }
}

/// `--check`: parse and print the effective rules, like `sshd -t`.
fn check(options: &Options) -> ExitCode {
    let loaded = config::SystemLookup::new(options.hosts.as_deref())
        .and_then(|lookup| config::load_rules(&options.config, &lookup));
    match loaded {
        Ok(rules) => {
            for rule in &rules.rules {
                println!("{rule}  # {}:{}", rules.file, rule.line);
            }
            eprintln!("{}: {} rules, syntax OK", rules.file, rules.rules.len());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("sockd: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load_context(options: &Options) -> Result<Context, String> {
    let lookup = config::SystemLookup::new(options.hosts.as_deref())?;
    let rules = config::load_rules(&options.config, &lookup)?;
    let users = options.users.as_deref().map(Users::load).transpose()?;
    Ok(Context { rules, users, timeouts: options.timeouts() })
}

/// inetd mode: the connection is on standard input; one session, then exit.
fn run_inetd(context: Arc<Context>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("resource failure: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stream = match sys::stdin_socket() {
        Ok(stream) => stream,
        Err(e) => {
            error!("--inetd: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let adopted =
            stream.set_nonblocking(true).and_then(|()| tokio::net::TcpStream::from_std(stream));
        let stream = match adopted {
            Ok(stream) => stream,
            Err(e) => {
                error!("--inetd: cannot use standard input: {e}");
                return ExitCode::FAILURE;
            }
        };
        match stream.peer_addr() {
            Ok(peer) => {
                session::serve(stream, peer, context).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("--inetd: standard input has no peer: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Standalone mode: listen on every address and serve until SIGTERM or SIGINT.
fn run_standalone(context: Arc<Context>, addrs: Vec<SocketAddr>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("resource failure: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut listeners = Vec::new();
        for addr in addrs {
            match listen(addr) {
                Ok(listener) => listeners.push(listener),
                Err(e) => {
                    error!("resource failure: cannot listen on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        for listener in listeners {
            if let Ok(addr) = listener.local_addr() {
                info!("listening on {addr}");
            }
            tokio::spawn(accept_loop(listener, context.clone()));
        }
        wait_for_termination().await;
        info!("shutting down");
        ExitCode::SUCCESS
    })
}

/// A listening socket; IPv6 listeners are IPv6-only so `0.0.0.0` and `[::]` can both be given.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

async fn accept_loop(listener: TcpListener, context: Arc<Context>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(session::serve(stream, peer, context.clone()));
            }
            Err(e) if outbound::is_resource_shortage(&e) => {
                error!("resource failure: accept: {e}; new clients wait");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
            // Errors about one pending connection (it was reset, and so on) concern only it.
            Err(e) => warn!("accept: {e}"),
        }
    }
}

async fn wait_for_termination() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}
