//! The routing decision for one outbound connection: direct, deny, or through which SOCKS
//! servers — `socks_client::route`, shared with the supervisor (pure, allocates nothing).
//!
//! Not here: the rules themselves (socks.conf(5)); acting on the decision (`intercept`, `udp`).

pub use socks_client::route::{route, route_name, Route};
