//! sockd: the SOCKS4/4a/5 server of the firewall host. This file wires the pieces together:
//! options, logging, the rule file, the users file, then either the standalone listeners (its
//! own, opened in `listeners`, or those systemd passed) served by the threads of `workers`, or
//! one inetd session. Sessions are in `session`, BIND in
//! `bind`, relaying in `relay`, systemd's notifications and socket activation in `systemd`,
//! connections from a load balancer (PROXY protocol) in `balancer`, what `--metrics` counts
//! in `metrics` and its listener in `scrape`.
//!
//! Unsafe code is denied here and allowed only at the libc boundary: `sys`, and `libpam` (PAM's
//! functions, opened at run time for `--pam`).
#![deny(unsafe_code)]

pub mod balancer;
pub mod bind;
pub mod cli;
pub mod config;
pub mod context;
pub mod files;
pub mod libpam;
pub mod listeners;
pub mod logging;
pub mod metrics;
pub mod outbound;
pub mod pam;
pub mod relay;
pub mod scrape;
pub mod session;
pub mod sys;
pub mod systemd;
pub mod throttle;
pub mod timer_tick;
pub mod udp;
pub mod users;
pub mod workers;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use log::{error, info, warn};
use socks_proto::rules::{BUILT_IN_RULES, SKIPS_LOOPBACK_NOTE};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

pub use crate::context::{Config, Context};

use crate::cli::Options;
use crate::systemd::{Notifier, PassedListener};
use crate::users::Users;
use crate::workers::Workers;

/// How often the STATUS= line shown by `systemctl status` is refreshed (only under systemd).
const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// Runs sockd with parsed options; the exit code reports success or the configuration error.
pub fn run(options: Options) -> ExitCode {
    let balancer = options.balancer();
    if let Err(message) = balancer.validate() {
        eprintln!("sockd: {message}");
        return ExitCode::FAILURE;
    }
    if options.check {
        return check(&options);
    }
    if let (Some(name), Some(path)) = (&options.add_user, &options.users) {
        return match users::add_user(path, name, &mut std::io::stdin().lock()) {
            Ok(()) => {
                eprintln!("sockd: added `{name}` to {} (password hashed)", path.display());
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("sockd: {message}");
                ExitCode::FAILURE
            }
        };
    }
    // Sockets systemd passed must be taken before sockd opens any descriptor of its own (the
    // log file, the notification socket): see `sys::adopt_passed_fds`. Under inetd they are
    // ignored: with Accept=yes systemd passes the connection, which is standard input already.
    let (passed, notifier) = if options.inetd {
        (Ok(Vec::new()), Notifier::disabled())
    } else {
        (systemd::passed_listeners(), Notifier::from_env())
    };
    let sink = match &options.log_file {
        Some(path) => match files::open_log(path) {
            Ok(file) => logging::Sink::File(file),
            Err(message) => {
                // Under inetd, standard error is the client's socket: say nothing there.
                if !options.inetd {
                    eprintln!("sockd: {message}");
                }
                return ExitCode::FAILURE;
            }
        },
        None if options.syslog => logging::Sink::Syslog,
        None if systemd::stderr_is_journal() => logging::Sink::Journal,
        None if options.inetd => logging::Sink::Syslog,
        None => logging::Sink::Stderr,
    };
    logging::init(sink, options.log_level);
    relay::use_splice(options.relay == "splice");
    balancer::configure(balancer);
    let config = match load_config(&options) {
        Ok(config) => config,
        Err(message) => {
            error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let context = Arc::new(Context::new(config, options.timeouts(), options.limits()));
    if options.inetd {
        return run_inetd(context);
    }
    let passed = match passed {
        Ok(passed) if !passed.is_empty() && !options.listen.is_empty() => {
            error!(
                "--listen given, but systemd passed {} listening sockets (LISTEN_FDS): sockd \
                 serves on one or the other; drop --listen, or the .socket unit",
                passed.len()
            );
            return ExitCode::FAILURE;
        }
        Ok(passed) => passed,
        Err(message) => {
            error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    run_standalone(context, &options, passed, &notifier)
}

/// `--check`: parse and print the effective rules, like `sshd -t`.
fn check(options: &Options) -> ExitCode {
    let loaded = config::SystemLookup::new(options.hosts.as_deref())
        .and_then(|lookup| config::load_rules(&options.config, &lookup));
    match loaded {
        Ok(rules) => {
            // Written with `writeln!`, not `println!`: a reader that stops early (`| head`)
            // ends the listing, not the process with a panic.
            let mut out = std::io::stdout().lock();
            let mut listing = writeln!(out, "# built in: {BUILT_IN_RULES}");
            for rule in &rules.rules {
                let note = if rule.permit_skips_loopback() { SKIPS_LOOPBACK_NOTE } else { "" };
                let sep = if note.is_empty() { "" } else { "; " };
                listing = listing.and_then(|()| {
                    writeln!(out, "{rule}  # {}:{}{sep}{note}", rules.file, rule.line)
                });
            }
            for line in options.balancer().describe() {
                listing = listing.and_then(|()| writeln!(out, "{line}"));
            }
            match listing.and_then(|()| out.flush()) {
                Ok(()) => {
                    eprintln!("{}: {} rules, syntax OK", rules.file, rules.rules.len());
                    ExitCode::SUCCESS
                }
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sockd: writing the rules: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(message) => {
            eprintln!("sockd: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the rule file and the users file (at start and on SIGHUP), with the warnings they call for.
fn load_config(options: &Options) -> Result<Config, String> {
    let lookup = config::SystemLookup::new(options.hosts.as_deref())?;
    let rules = config::load_rules(&options.config, &lookup)?;
    let users = options.users.as_deref().map(Users::load).transpose()?;
    let pam = options.pam.as_deref().map(pam::Pam::new).transpose()?;
    if rules.rules.is_empty() {
        warn!("{}: no rules, so every request will be denied", rules.file);
    }
    if let (Some(users), Some(path)) = (&users, &options.users) {
        for line in users.clear_text_lines() {
            warn!(
                "{}:{line}: password stored in clear; `sockd --add-user NAME --users FILE` stores it hashed",
                path.display()
            );
        }
    }
    Ok(Config { rules, users, pam })
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
        Ok(stream) => {
            relay::client_socket_shared();
            stream
        }
        Err(e) => {
            error!("--inetd: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // TCP_NODELAY here, since no listener of sockd's passed it on (see `listen`).
        let adopted = stream
            .set_nonblocking(true)
            .and_then(|()| stream.set_nodelay(true))
            .and_then(|()| tokio::net::TcpStream::from_std(stream));
        let stream = match adopted {
            Ok(stream) => stream,
            Err(e) => {
                error!("--inetd: cannot use standard input: {e}");
                return ExitCode::FAILURE;
            }
        };
        match stream.peer_addr() {
            Ok(peer) => {
                balancer::serve_unadmitted(stream, peer, context).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("--inetd: standard input has no peer: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Standalone mode: listen on every address and serve until SIGTERM or SIGINT (then let the
/// running sessions finish within the grace period); SIGHUP re-reads the rule and users files.
/// Connections are served on `--threads` threads (see `workers`); this thread, with a runtime
/// of its own, handles signals, systemd and the `--metrics` listener.
fn run_standalone(
    context: Arc<Context>,
    options: &Options,
    passed: Vec<PassedListener>,
    notifier: &Notifier,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("resource failure: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (code, workers) = runtime.block_on(serve_standalone(context, options, passed, notifier));
    // Sessions still running after the grace period are dropped here, closing their sockets.
    if let Some(mut workers) = workers {
        workers.finish();
    }
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// The listening sockets of every address, one per serving thread: SO_REUSEPORT sockets of
/// sockd's own, or each socket systemd passed duplicated for every thread (they then share its
/// one accept queue). With the text logged after each address.
type Listening = Vec<(Vec<std::net::TcpListener>, String)>;

fn open_listeners(
    options: &Options,
    passed: Vec<PassedListener>,
    threads: usize,
) -> Result<Listening, String> {
    let mut listening = Vec::new();
    if passed.is_empty() {
        for addr in options.listen_addrs() {
            let sockets = listeners::listen_shared(addr, threads)
                .map_err(|e| format!("resource failure: cannot listen on {addr}: {e}"))?;
            listening.push((sockets, String::new()));
        }
    }
    for PassedListener { listener, name } in passed {
        // As on sockd's own listeners (see `listeners::listen`): accepted connections inherit it.
        if let Err(e) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
            warn!("the socket `{name}` passed by systemd: cannot set TCP_NODELAY: {e}");
        }
        let mut sockets = Vec::with_capacity(threads);
        for _ in 1..threads {
            sockets.push(listener.try_clone().map_err(|e| {
                format!("resource failure: cannot use the socket `{name}` passed by systemd: {e}")
            })?);
        }
        sockets.push(listener);
        listening.push((sockets, format!(" (passed by systemd as `{name}`)")));
    }
    Ok(listening)
}

async fn serve_standalone(
    context: Arc<Context>,
    options: &Options,
    passed: Vec<PassedListener>,
    notifier: &Notifier,
) -> (ExitCode, Option<Workers>) {
    let threads = options.threads();
    let listening = match open_listeners(options, passed, threads) {
        Ok(listening) => listening,
        Err(message) => {
            error!("{message}");
            return (ExitCode::FAILURE, None);
        }
    };
    // Opened with the SOCKS listeners, before the privilege drop (a port below 1024 works).
    let metrics_listener = match options.metrics.map(listeners::listen).transpose() {
        Ok(listener) => listener,
        Err(e) => {
            error!("resource failure: cannot listen for --metrics: {e}");
            return (ExitCode::FAILURE, None);
        }
    };
    let metrics_listener = match metrics_listener.map(TcpListener::from_std).transpose() {
        Ok(listener) => listener,
        Err(e) => {
            error!("resource failure: cannot use the --metrics listener: {e}");
            return (ExitCode::FAILURE, None);
        }
    };
    let (Ok(mut hangup), Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("resource failure: cannot install signal handlers");
        return (ExitCode::FAILURE, None);
    };
    if let Some(path) = &options.pid_file {
        if let Err(message) = files::write_pid(path, std::process::id()) {
            error!("{message}");
            return (ExitCode::FAILURE, None);
        }
    }
    if let Some(user) = &options.user {
        if let Err(e) = sys::drop_privileges(user) {
            error!("cannot run as user {user}: {e}");
            remove_pid_file(options.pid_file.as_deref());
            return (ExitCode::FAILURE, None);
        }
        info!("running as user {user}");
    }
    let mut addrs = Vec::new();
    let mut per_thread: Vec<Vec<std::net::TcpListener>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (sockets, origin) in listening {
        if let Some(addr) = sockets.first().and_then(|s| s.local_addr().ok()) {
            info!("listening on {addr}{origin}");
            addrs.push(addr);
        }
        for (thread, socket) in per_thread.iter_mut().zip(sockets) {
            thread.push(socket);
        }
    }
    let mut workers = match Workers::start(per_thread, &context) {
        Ok(workers) => workers,
        Err(message) => {
            error!("{message}");
            remove_pid_file(options.pid_file.as_deref());
            return (ExitCode::FAILURE, None);
        }
    };
    info!("serving on {} threads", workers.count());
    let scraping = metrics_listener.map(|listener| {
        scrape::announce(&listener);
        tokio::spawn(scrape::serve(listener, context.clone()))
    });
    // Every listener is open (and accepting into its backlog since listen(2)), privileges are
    // dropped: tell systemd, which then starts the units ordered after sockd.
    let mut reload_note: Option<String> = None;
    notifier.ready(&systemd::serving_status(&addrs, context.active_sessions(), None));
    let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
    status_tick.tick().await;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                notifier.reloading();
                match load_config(options) {
                    Ok(config) => {
                        let count = config.rules.rules.len();
                        context.replace_config(config);
                        metrics::reloaded(true);
                        info!("reloaded {}: {count} rules; running sessions keep theirs", options.config.display());
                        reload_note = None;
                    }
                    Err(message) => {
                        let note = format!("reload failed, keeping the rules in use: {message}");
                        error!("{note}");
                        reload_note = Some(note);
                        metrics::reloaded(false);
                    }
                }
                // READY=1 either way: sockd serves (with the new rules or the old ones).
                let status = systemd::serving_status(&addrs, context.active_sessions(), reload_note.as_deref());
                notifier.ready(&status);
            }
            _ = status_tick.tick(), if notifier.enabled() => {
                notifier.status(&systemd::serving_status(&addrs, context.active_sessions(), reload_note.as_deref()));
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    workers.drain().await;
    if let Some(task) = scraping {
        task.abort();
    }
    let grace = Duration::from_secs(options.grace);
    notifier.stopping(&format!(
        "shutting down: {} sessions get up to {}s to finish",
        context.active_sessions(),
        grace.as_secs()
    ));
    info!(
        "shutting down: no new clients; {} sessions get up to {}s to finish",
        context.active_sessions(),
        grace.as_secs()
    );
    let deadline = Instant::now() + grace;
    while context.active_sessions() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = context.active_sessions();
    if left > 0 {
        warn!("grace period over: closing {left} sessions");
        // Relaying sessions end now and write their `closed:` lines; give them a moment.
        context.stopping.notify_waiters();
        let deadline = Instant::now() + Duration::from_millis(500);
        while context.active_sessions() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    remove_pid_file(options.pid_file.as_deref());
    (ExitCode::SUCCESS, Some(workers))
}

fn remove_pid_file(path: Option<&Path>) {
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
}
