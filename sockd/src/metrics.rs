//! What sockd counts for `--metrics`: one process-wide set of Prometheus metrics, the calls the
//! sessions make when something happens (one line at each place that also logs it), and the
//! rendering of a scrape in the Prometheus text format (0.0.4).
//!
//! Counting costs an atomic add (a label lookup under a read lock for the per-event families);
//! the relay's byte counters are resolved once, so a relayed chunk costs one relaxed atomic add
//! per direction and nothing else. Counting happens whether or not `--metrics` is given.
//!
//! Not here: the HTTP listener that serves scrapes (`scrape`), the log lines.

use std::sync::LazyLock;
use std::time::Duration;

use log::debug;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use socks_proto::server::Command;
use socks_proto::Failure;

use crate::Context;

/// How a connection ended up; the `outcome` label of `sockd_sessions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request was granted (CONNECT connected, BIND's inbound connection arrived, UDP relay
    /// opened).
    Granted,
    /// A rule (or a BIND/UDP condition) refused the request.
    Denied,
    /// The request failed with this SOCKS reply code.
    Failed(Failure),
    /// The client broke the protocol or closed in the middle of its handshake.
    BadRequest,
    /// The handshake did not complete within --handshake-timeout.
    Timeout,
    /// Refused for --max-sessions / --max-sessions-per-client.
    Limit,
    /// An unfinished handshake closed to make room (--max-handshakes).
    Evicted,
    /// Wrong username or password, or too many failed logins from the address.
    LoginFailed,
    /// The client went away before the reply to its request.
    Aborted,
    /// The client closed without sending a byte (a port scan, a health check).
    Empty,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Granted => "granted",
            Outcome::Denied => "denied",
            Outcome::Failed(_) => "failed",
            Outcome::BadRequest => "bad_request",
            Outcome::Timeout => "timeout",
            Outcome::Limit => "limit",
            Outcome::Evicted => "evicted",
            Outcome::LoginFailed => "login_failed",
            Outcome::Aborted => "aborted",
            Outcome::Empty => "empty",
        }
    }
}

/// The `command` label; `none` before a request was read.
fn command_label(command: Option<Command>) -> &'static str {
    match command {
        Some(Command::Connect) => "connect",
        Some(Command::Bind) => "bind",
        Some(Command::UdpAssociate) => "udp",
        None => "none",
    }
}

/// The `reply` label of a failure: the RFC 1928 name of its reply code.
fn reply_label(failure: Failure) -> &'static str {
    match failure {
        Failure::General => "general_failure",
        Failure::NotAllowed => "not_allowed",
        Failure::NetworkUnreachable => "network_unreachable",
        Failure::HostUnreachable => "host_unreachable",
        Failure::Refused => "connection_refused",
        Failure::TtlExpired => "ttl_expired",
        Failure::CommandNotSupported => "command_not_supported",
        Failure::AddressTypeNotSupported => "address_type_not_supported",
        Failure::Unassigned(_) => "unassigned",
    }
}

/// Why a datagram of a UDP association was dropped; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpDrop {
    /// From neither the client nor a destination the client sent to.
    Foreign,
    /// Not a valid SOCKS UDP request header.
    Malformed,
    /// FRAG != 0 (no reassembly).
    Fragment,
    /// The rules deny its destination.
    Denied,
    /// Its destination could not be resolved, or no socket could be opened to it.
    Unresolved,
}

/// Which way bytes or datagrams went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client towards the destination.
    Sent,
    /// From the destination back to the client.
    Received,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// Every metric sockd exposes (listed with their labels in sockd(8), METRICS).
struct Metrics {
    registry: Registry,
    sessions_running: IntGaugeVec,
    sessions: IntCounterVec,
    failures: IntCounterVec,
    denials: IntCounterVec,
    bytes: IntCounterVec,
    tcp_sent: IntCounter,
    tcp_received: IntCounter,
    datagrams: IntCounterVec,
    udp_dropped: IntCounterVec,
    handshake_seconds: Histogram,
    connect_seconds: Histogram,
    reloads: IntCounterVec,
    logins: IntCounterVec,
    open_fds: IntGauge,
}

/// Latency buckets in seconds: a LAN round trip to a slow Internet host or a slow client.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

impl Metrics {
    fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<_> {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let histogram = |name: &str, help: &str| -> prometheus::Result<_> {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let metric = Histogram::with_opts(opts)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let sessions_running = IntGaugeVec::new(
            Opts::new(
                "sockd_sessions_running",
                "Connections being served now: established sessions, and connections still in \
                 their handshake.",
            ),
            &["state"],
        )?;
        registry.register(Box::new(sessions_running.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new("sockd_build_info", "Always 1; the version of sockd in the label."),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info.get_metric_with_label_values(&[env!("CARGO_PKG_VERSION")])?.set(1);
        let open_fds = IntGauge::new(
            "sockd_open_fds",
            "File descriptors open in the sockd process (counted in /proc/self/fd at scrape time).",
        )?;
        registry.register(Box::new(open_fds.clone()))?;
        let bytes = counter(
            "sockd_relayed_bytes_total",
            "Bytes relayed: sent = client to destination, received = destination to client.",
            &["transport", "direction"],
        )?;
        let tcp_sent = bytes.get_metric_with_label_values(&["tcp", "sent"])?;
        let tcp_received = bytes.get_metric_with_label_values(&["tcp", "received"])?;
        for direction in ["sent", "received"] {
            bytes.get_metric_with_label_values(&["udp", direction])?;
        }
        let metrics = Metrics {
            sessions: counter(
                "sockd_sessions_total",
                "Connections by command (none before a request was read) and outcome.",
                &["command", "outcome"],
            )?,
            failures: counter(
                "sockd_session_failures_total",
                "Requests that failed (outcome=failed), by command and SOCKS reply code.",
                &["command", "reply"],
            )?,
            denials: counter(
                "sockd_denials_total",
                "Requests and UDP destinations denied, by the rule that denied them (FILE:LINE, \
                 default, or the condition).",
                &["rule"],
            )?,
            datagrams: counter(
                "sockd_udp_datagrams_total",
                "UDP datagrams relayed: sent = client to destination, received = back.",
                &["direction"],
            )?,
            udp_dropped: counter(
                "sockd_udp_dropped_total",
                "UDP datagrams dropped, by reason.",
                &["reason"],
            )?,
            handshake_seconds: histogram(
                "sockd_handshake_seconds",
                "Time from accept to a complete request (greeting, authentication, request).",
            )?,
            connect_seconds: histogram(
                "sockd_connect_seconds",
                "Time to connect to a CONNECT destination (after name resolution), successful \
                 connects only.",
            )?,
            reloads: counter(
                "sockd_reloads_total",
                "Configuration reloads (SIGHUP), by result.",
                &["result"],
            )?,
            logins: counter(
                "sockd_logins_total",
                "RFC 1929 username/password checks, by result (ok, failed, throttled).",
                &["result"],
            )?,
            registry,
            sessions_running,
            bytes,
            tcp_sent,
            tcp_received,
            open_fds,
        };
        // Families that are known in advance appear from the first scrape, at zero.
        for result in ["ok", "failed"] {
            metrics.reloads.get_metric_with_label_values(&[result])?;
        }
        for direction in ["sent", "received"] {
            metrics.datagrams.get_metric_with_label_values(&[direction])?;
        }
        for reason in ["foreign", "malformed", "fragment", "denied", "unresolved"] {
            metrics.udp_dropped.get_metric_with_label_values(&[reason])?;
        }
        Ok(metrics)
    }
}

/// The metrics, built on first use.
static METRICS: LazyLock<Metrics> = LazyLock::new(|| match Metrics::new() {
    Ok(metrics) => metrics,
    // Only a bad metric name or label set fails, a mistake in this file that the unit test
    // `every_metric_renders` catches: not something a run of sockd can meet.
    Err(e) => panic!("sockd metrics definition: {e}"),
});

/// Counts a connection's outcome (and its reply code when it failed).
pub fn session(command: Option<Command>, outcome: Outcome) {
    let command = command_label(command);
    inc(&METRICS.sessions, &[command, outcome.label()]);
    if let Outcome::Failed(failure) = outcome {
        inc(&METRICS.failures, &[command, reply_label(failure)]);
    }
}

/// Counts a denial by `rule` (as logged: `FILE:LINE`, `default`, …).
pub fn denied_by(rule: &str) {
    inc(&METRICS.denials, &[rule]);
}

/// The counter of TCP bytes relayed in `direction`, for the relay to add to per chunk.
pub fn tcp_bytes(direction: Direction) -> &'static IntCounter {
    match direction {
        Direction::Sent => &METRICS.tcp_sent,
        Direction::Received => &METRICS.tcp_received,
    }
}

/// Counts one UDP datagram of `bytes` payload bytes relayed in `direction`.
pub fn udp_datagram(direction: Direction, bytes: usize) {
    inc(&METRICS.datagrams, &[direction.label()]);
    if let Ok(counter) = METRICS.bytes.get_metric_with_label_values(&["udp", direction.label()]) {
        counter.inc_by(bytes as u64);
    }
}

/// Counts one dropped UDP datagram.
pub fn udp_dropped(reason: UdpDrop) {
    let reason = match reason {
        UdpDrop::Foreign => "foreign",
        UdpDrop::Malformed => "malformed",
        UdpDrop::Fragment => "fragment",
        UdpDrop::Denied => "denied",
        UdpDrop::Unresolved => "unresolved",
    };
    inc(&METRICS.udp_dropped, &[reason]);
}

/// Records how long a handshake took.
pub fn handshake_took(elapsed: Duration) {
    METRICS.handshake_seconds.observe(elapsed.as_secs_f64());
}

/// Records how long connecting to a destination took.
pub fn connect_took(elapsed: Duration) {
    METRICS.connect_seconds.observe(elapsed.as_secs_f64());
}

/// Counts a reload, successful or not.
pub fn reloaded(ok: bool) {
    inc(&METRICS.reloads, &[if ok { "ok" } else { "failed" }]);
}

/// Result of one username/password check; the `result` label of `sockd_logins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The password was right.
    Ok,
    /// Wrong user or password (or the check could not be made).
    Failed,
    /// Not checked: too many failures from the address.
    Throttled,
}

/// Counts a login attempt.
pub fn login(result: Login) {
    let label = match result {
        Login::Ok => "ok",
        Login::Failed => "failed",
        Login::Throttled => "throttled",
    };
    inc(&METRICS.logins, &[label]);
}

fn inc(family: &IntCounterVec, labels: &[&str]) {
    if let Ok(counter) = family.get_metric_with_label_values(labels) {
        counter.inc();
    }
}

/// Content-Type of what `render` returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A scrape: every metric in the text format, the gauges read now.
pub fn render(ctx: &Context) -> String {
    let metrics = &*METRICS;
    let (sessions, handshakes) = ctx.counts();
    let set = |state: &str, value: usize| {
        if let Ok(gauge) = metrics.sessions_running.get_metric_with_label_values(&[state]) {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    };
    set("established", sessions);
    set("handshake", handshakes);
    metrics.open_fds.set(open_fds());
    let mut text = String::new();
    if let Err(e) = TextEncoder::new().encode_utf8(&metrics.registry.gather(), &mut text) {
        debug!("metrics: cannot encode: {e}");
    }
    text
}

/// Descriptors open now, not counting the one used to list them; -1 when /proc cannot be read.
fn open_fds() -> i64 {
    match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries.count() as i64 - 1,
        Err(_) => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_renders() {
        session(Some(Command::Connect), Outcome::Failed(Failure::Refused));
        denied_by("/etc/sockd.conf:3");
        tcp_bytes(Direction::Sent).inc_by(10);
        udp_datagram(Direction::Received, 5);
        udp_dropped(UdpDrop::Fragment);
        handshake_took(Duration::from_millis(3));
        connect_took(Duration::from_millis(3));
        reloaded(false);
        login(Login::Throttled);
        let mut text = String::new();
        TextEncoder::new().encode_utf8(&METRICS.registry.gather(), &mut text).expect("encodes");
        for needle in [
            "sockd_sessions_total{command=\"connect\",outcome=\"failed\"} 1",
            "sockd_session_failures_total{command=\"connect\",reply=\"connection_refused\"} 1",
            "sockd_denials_total{rule=\"/etc/sockd.conf:3\"} 1",
            "sockd_relayed_bytes_total{direction=\"sent\",transport=\"tcp\"} 10",
            "sockd_relayed_bytes_total{direction=\"received\",transport=\"udp\"} 5",
            "sockd_udp_datagrams_total{direction=\"received\"} 1",
            "sockd_udp_dropped_total{reason=\"fragment\"} 1",
            "sockd_handshake_seconds_count 1",
            "sockd_connect_seconds_bucket{le=\"0.005\"} 1",
            "sockd_reloads_total{result=\"failed\"} 1",
            "sockd_reloads_total{result=\"ok\"} 0",
            "sockd_logins_total{result=\"throttled\"} 1",
            "sockd_build_info{version=\"",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }
}
