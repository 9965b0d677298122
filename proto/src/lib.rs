//! socks-proto: the SOCKS wire protocol and the rule language, without any I/O.
//!
//! What is here: byte-exact codecs for SOCKS4, SOCKS4a, SOCKS5 (RFC 1928) and RFC 1929
//! username/password, the HTTP CONNECT request and response head (`http_connect`), the SOCKS5
//! UDP datagram header, the PROXY protocol header (v1/v2) a load balancer sends in front of a
//! stream, sans-IO server and client handshake state machines that accept bytes in arbitrary chunks, and the permit/deny rule language shared by
//! `sockd.conf` and `socks.conf`.
//!
//! What is not here: sockets, libc, threads, timers or logging. Callers own the I/O; "need more
//! bytes" is reported as a value, never as an error.
#![forbid(unsafe_code)]

pub mod addr;
pub mod auth;
pub mod client;
pub mod command;
pub mod dns;
pub mod error;
pub mod fixed;
pub mod http_connect;
pub mod proxy_protocol;
pub mod reply;
pub mod rules;
pub mod server;
pub mod udp;
pub mod v4;
pub mod v5;

pub use addr::TargetAddr;
pub use error::ProtoError;
pub use reply::Failure;
