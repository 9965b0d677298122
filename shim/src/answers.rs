//! What the library answers to one DNS question about a name resolved on the far side, shared
//! by the two places that answer DNS themselves: the resolver calls that hand the program a raw
//! message (`res_query`, `res_send` and kin, in `ffi::resolv_hooks`) and the program's own DNS
//! client's queries to port 53 (`dnswire`). One decision, two styles:
//!
//! - [`Style::Resolver`] (res_*): an A or AAAA question gets the name's fake address of that
//!   family; any other question about such a name, or about a fake address other than its PTR,
//!   is refused (`Cause::RemoteQuestion`); with `resolve local-then-remote` the local resolver
//!   is asked first ([`Resolved::LocalThen`]).
//! - [`Style::Wire`] (a query on the wire, as the supervisor answers them, `supervisor/src/dns.rs`):
//!   an A question gets a fake IPv4 address and an AAAA question a fake IPv6 address only when
//!   `fake-families` includes that family; every other type an empty NOERROR answer (a refusal
//!   would send the resolver to the next server or search suffix). A PTR for a fake address
//!   handed out gets the name, for one never handed out NXDOMAIN, any other type about it an
//!   empty NOERROR. A full map is SERVFAIL. `resolve local-then-remote` names go to the real
//!   server unchanged ([`Resolved::Local`]): falling back to a fake address would mean holding
//!   the query until the server has answered, which the library cannot do without blocking the
//!   program or a thread.
//!
//! Not here: the message format (`socks_proto::dns`), sockets and C structures.

use std::net::IpAddr;

use socks_proto::dns::{
    self, Question, Rdata, CLASS_IN, RCODE_NXDOMAIN, RCODE_SERVFAIL, TYPE_A, TYPE_AAAA, TYPE_PTR,
};

use crate::config::Settings;
use crate::ffi::dns_hooks;
use crate::ffi::fakemap::NAME_MAX;
use crate::log::{log, Level};
use crate::names::{self, Plan};
use crate::outcome::Cause;

/// Whose question it is (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A res_* call: refuse what only the server could answer.
    Resolver,
    /// A query the program's own DNS client sent to port 53: answer as a name server would.
    Wire,
}

/// What a question gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Not ours: the real call (or the real name server).
    Local,
    /// This response message.
    Answer(Vec<u8>),
    /// The real call; this response if it fails (Resolver style only).
    LocalThen(Vec<u8>),
    /// Refused for this cause, never asked locally (Resolver style only).
    Refused(Cause),
}

/// The short name of a record type for log lines.
pub fn type_name(qtype: u16) -> String {
    match qtype {
        TYPE_A => "A".to_owned(),
        TYPE_AAAA => "AAAA".to_owned(),
        TYPE_PTR => "PTR".to_owned(),
        15 => "MX".to_owned(),
        other => format!("type {other}"),
    }
}

/// Decides for a reverse-lookup name (`….in-addr.arpa`, `….ip6.arpa`) standing for `ip`.
fn resolve_reverse(
    settings: &Settings,
    ip: IpAddr,
    question: Question,
    id: u16,
    rd: bool,
    style: Style,
) -> Resolved {
    if !names::is_fake(settings, ip) {
        return Resolved::Local;
    }
    let mut buf = [0u8; NAME_MAX];
    let target = names::name_of(settings, ip, &mut buf);
    let is_ptr = question.qclass == CLASS_IN && question.qtype == TYPE_PTR;
    let reply = |record: Option<Rdata>, rcode: u8| {
        dns::response(id, rd, &question, record, rcode)
            .map_or(Resolved::Refused(Cause::BadName), Resolved::Answer)
    };
    match (target, style) {
        (Some(target), _) if is_ptr => reply(Some(Rdata::Pointer(target.to_string())), 0),
        (_, Style::Resolver) => Resolved::Refused(Cause::RemoteQuestion),
        (Some(_), Style::Wire) => reply(None, 0),
        (None, Style::Wire) => reply(None, RCODE_NXDOMAIN),
    }
}

/// Decides for one question about `name` under `settings`; `id` and `rd` go into a response.
pub fn resolve_question(
    settings: &Settings,
    name: &str,
    qclass: u16,
    qtype: u16,
    id: u16,
    rd: bool,
    style: Style,
) -> Resolved {
    if let Some(ip) = dns::reverse_address(name) {
        let question = Question { name: name.to_string(), qtype, qclass };
        return resolve_reverse(settings, ip, question, id, rd, style);
    }
    let family = match (qtype, style) {
        (TYPE_A, Style::Resolver) => libc::AF_INET,
        (TYPE_AAAA, Style::Resolver) => libc::AF_INET6,
        _ => libc::AF_UNSPEC,
    };
    let plan = names::plan(settings, name, family);
    let address_question = qclass == CLASS_IN && matches!(qtype, TYPE_A | TYPE_AAAA);
    let question = || Question { name: name.to_string(), qtype, qclass };
    let answer = || -> Result<Vec<u8>, Cause> {
        let fakes = names::fakes_for(settings, name).map_err(|e| dns_hooks::map_error(name, e))?;
        let address = if qtype == TYPE_A { IpAddr::V4(fakes.v4) } else { IpAddr::V6(fakes.v6) };
        log!(Level::Debug, "resolve {name} (type {qtype}): remote, as {address}");
        dns::response(id, rd, &question(), Some(Rdata::Address(address)), 0).ok_or(Cause::BadName)
    };
    match (plan, style) {
        (Plan::Local, _) => Resolved::Local,
        (Plan::Fake { .. }, Style::Resolver) if address_question => {
            answer().map_or_else(Resolved::Refused, Resolved::Answer)
        }
        (Plan::Fake { .. }, Style::Resolver) => {
            log!(Level::Info, "resolve {name} (type {qtype}): refused, resolved on the far side");
            Resolved::Refused(Cause::RemoteQuestion)
        }
        (Plan::LocalThenFake { .. }, Style::Resolver) if address_question => {
            answer().map_or(Resolved::Local, Resolved::LocalThen)
        }
        (Plan::LocalThenFake { .. }, _) => Resolved::Local,
        (Plan::Fake { v4, v6 }, Style::Wire) => {
            let faked =
                qclass == CLASS_IN && ((qtype == TYPE_A && v4) || (qtype == TYPE_AAAA && v6));
            let message = if faked {
                match answer() {
                    Ok(message) => Some(message),
                    Err(Cause::MapFull | Cause::MapUnavailable) => {
                        dns::response(id, rd, &question(), None, RCODE_SERVFAIL)
                    }
                    Err(cause) => return Resolved::Refused(cause),
                }
            } else {
                // The name exists on the far side, with no record of this type here.
                dns::response(id, rd, &question(), None, 0)
            };
            message.map_or(Resolved::Refused(Cause::BadName), Resolved::Answer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings_with;
    use crate::ffi::fakemap;

    /// (RCODE, ANCOUNT) of an answer.
    fn summary(resolved: &Resolved) -> (u8, u16) {
        match resolved {
            Resolved::Answer(m) => (m[3] & 0x0f, u16::from_be_bytes([m[6], m[7]])),
            other => panic!("not an answer: {other:?}"),
        }
    }

    const MX: u16 = 15;

    #[test]
    fn wire_answers_as_a_name_server() {
        fakemap::create();
        let s = settings_with("direct .corp.example\nsockd .example.test\nsockd 0.0.0.0/0\n");
        let ask = |name: &str, qtype: u16| {
            resolve_question(&s, name, CLASS_IN, qtype, 7, true, Style::Wire)
        };
        assert_eq!(summary(&ask("www.example.test", TYPE_A)), (0, 1));
        // fake-families ipv4 (the default): the name has no AAAA here, nor any other type.
        assert_eq!(summary(&ask("www.example.test", TYPE_AAAA)), (0, 0));
        assert_eq!(summary(&ask("www.example.test", MX)), (0, 0));
        assert_eq!(ask("intranet.corp.example", TYPE_A), Resolved::Local);
        let fake = names::fakes_for(&s, "www.example.test").expect("room").v4.octets();
        let reverse = format!("{}.{}.{}.{}.in-addr.arpa", fake[3], fake[2], fake[1], fake[0]);
        assert_eq!(summary(&ask(&reverse, TYPE_PTR)), (0, 1));
        assert_eq!(summary(&ask(&reverse, MX)), (0, 0));
        assert_eq!(summary(&ask("250.255.19.198.in-addr.arpa", TYPE_PTR)), (RCODE_NXDOMAIN, 0));
        assert_eq!(ask("2.100.51.198.in-addr.arpa", TYPE_PTR), Resolved::Local);
        // The resolver calls refuse what only the server could answer.
        let refused =
            resolve_question(&s, "www.example.test", CLASS_IN, MX, 7, true, Style::Resolver);
        assert_eq!(refused, Resolved::Refused(Cause::RemoteQuestion));
    }

    #[test]
    fn fake_families_and_local_then_remote() {
        fakemap::create();
        let both = settings_with("fake-families both\nsockd 0.0.0.0/0\n");
        let aaaa =
            resolve_question(&both, "v6.example.test", CLASS_IN, TYPE_AAAA, 1, true, Style::Wire);
        assert_eq!(summary(&aaaa), (0, 1));
        let later = settings_with("resolve local-then-remote\nsockd 0.0.0.0/0\n");
        let wire =
            resolve_question(&later, "x.example.test", CLASS_IN, TYPE_A, 1, true, Style::Wire);
        assert_eq!(wire, Resolved::Local, "the wire cannot wait for the server's answer");
        let res =
            resolve_question(&later, "x.example.test", CLASS_IN, TYPE_A, 1, true, Style::Resolver);
        assert!(matches!(res, Resolved::LocalThen(_)), "{res:?}");
    }
}
