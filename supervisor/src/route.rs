//! The routing decision for one outbound destination: direct, deny, or through which SOCKS
//! servers — `socks_client::route`, the very code libsocks.so decides with.
//!
//! Not here: what a host name gets (`names`), connecting (`supervise`, `proxy`).

pub use socks_client::route::{route, route_name, Route};
