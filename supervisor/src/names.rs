//! Names resolved on the far side, for supervised programs: what a name gets (the real name
//! server, or a fake address whose connect sends the name to sockd) and the map between the
//! fake addresses handed out and their names — `socks_client::names` and
//! `socks_client::name_table`, shared with libsocks.so (the same `resolve`, `fake-range` and
//! `fake-families` rules, the same addresses for the same entry). The supervisor keeps one
//! map per supervised process tree (every process of the tree talks to this one supervisor):
//! [`CAPACITY`] names, then lookups of new names fail (SERVFAIL) rather than resolve locally.
//!
//! Not here: the DNS messages (`socks_proto::dns`), the sockets (`dns`), the connect (`supervise`).

// Every name this module had before the move, so the other modules name them as they did (not
// all of them are used today).
#[allow(unused_imports)]
pub use socks_client::{
    name_table::FakeMap,
    names::{is_fake, plan, NamePlan as Plan, CAPACITY, NAME_MAX},
    settings::NameSettings,
};
