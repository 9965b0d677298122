//! The few DNS messages (RFC 1035 section 4) the client side writes itself, for names resolved
//! on the far side: the reading of a query (header and questions), and a response with one
//! A/AAAA record holding a fake address, a PTR record naming it, or no record and a code. The
//! library answers the resolver calls that hand a program a raw answer (`res_query`, `res_send`
//! and their kin) and the program's own DNS queries to UDP port 53 with them, the supervisor
//! those of the programs it supervises.
//!
//! Written here rather than taken from a DNS crate: the library is loaded into every process,
//! the crates that build messages (hickory-proto, domain) bring dozens of dependencies and
//! features for a job of a hundred lines, and this needs only the header, names in plain
//! labels and one compression pointer.
//!
//! Not here: sockets or C entry points, and deciding what a name gets (the library's and the
//! supervisor's `names`).

use std::net::IpAddr;

/// Record types and the class used here (RFC 1035 3.2.2, RFC 3596).
pub const TYPE_A: u16 = 1;
/// AAAA.
pub const TYPE_AAAA: u16 = 28;
/// PTR.
pub const TYPE_PTR: u16 = 12;
/// The Internet class.
pub const CLASS_IN: u16 = 1;
/// RCODE 3: the name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;
/// RCODE 2: the server failed.
pub const RCODE_SERVFAIL: u8 = 2;
/// RCODE 5: the server refuses to answer.
pub const RCODE_REFUSED: u8 = 5;

const HEADER_LEN: usize = 12;

/// One question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name, labels joined with dots, no trailing dot.
    pub name: String,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
}

/// What a query message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// ID.
    pub id: u16,
    /// Whether recursion was desired (RD).
    pub recursion_desired: bool,
    /// The questions, in order.
    pub questions: Vec<Question>,
}

/// Reads a message's header and questions; `None` when it is not a well-formed query
/// (truncated, a response, a compressed or over-long name).
pub fn parse_query(message: &[u8]) -> Option<Query> {
    let header = message.get(..HEADER_LEN)?;
    if header[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([header[0], header[1]]);
    let count = u16::from_be_bytes([header[4], header[5]]);
    let mut at = HEADER_LEN;
    let mut questions = Vec::with_capacity(usize::from(count.min(8)));
    for _ in 0..count {
        let mut name = String::new();
        loop {
            let len = usize::from(*message.get(at)?);
            at += 1;
            if len == 0 {
                break;
            }
            // Queries carry plain labels; 0xC0 (pointers) and 0x40/0x80 are not for questions.
            if len > 63 {
                return None;
            }
            let label = message.get(at..at + len)?;
            at += len;
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(std::str::from_utf8(label).ok()?);
            if name.len() > 255 {
                return None;
            }
        }
        let fixed = message.get(at..at + 4)?;
        at += 4;
        questions.push(Question {
            name,
            qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
            qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        });
    }
    Some(Query { id, recursion_desired: message[2] & 0x01 != 0, questions })
}

/// Appends `name` as labels; `None` for an empty label or one over 63 bytes, or a name over 255.
fn push_name(out: &mut Vec<u8>, name: &str) -> Option<()> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > 253 {
        return None;
    }
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    Some(())
}

/// The data of the one record a response carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    /// An A record for IPv4, an AAAA record for IPv6.
    Address(IpAddr),
    /// A PTR record naming this host.
    Pointer(String),
}

/// A response to the one question `question` with id `id`: one record (time to live 0 — a fake
/// address means nothing outside this process tree) with RCODE 0, or no record with `rcode`.
/// `None` when a name cannot be written.
pub fn response(
    id: u16,
    recursion_desired: bool,
    question: &Question,
    record: Option<Rdata>,
    rcode: u8,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER_LEN + 2 * question.name.len() + 2 + 4 + 28);
    out.extend_from_slice(&id.to_be_bytes());
    // QR=1, OPCODE=0, AA=0, TC=0, RD as asked; RA=1, Z=0, RCODE.
    out.push(0x80 | u8::from(recursion_desired));
    out.push(0x80 | if record.is_some() { 0 } else { rcode & 0x0f });
    let answers = u16::from(record.is_some());
    for count in [1u16, answers, 0, 0] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    push_name(&mut out, &question.name)?;
    out.extend_from_slice(&question.qtype.to_be_bytes());
    out.extend_from_slice(&question.qclass.to_be_bytes());
    if let Some(record) = record {
        // The owner name: a pointer to the question's name at offset 12 (RFC 1035 4.1.4).
        out.extend_from_slice(&[0xc0, HEADER_LEN as u8]);
        let (rtype, data): (u16, Vec<u8>) = match record {
            Rdata::Address(IpAddr::V4(v4)) => (TYPE_A, v4.octets().to_vec()),
            Rdata::Address(IpAddr::V6(v6)) => (TYPE_AAAA, v6.octets().to_vec()),
            Rdata::Pointer(name) => {
                let mut data = Vec::with_capacity(name.len() + 2);
                push_name(&mut data, &name)?;
                (TYPE_PTR, data)
            }
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}

/// The address a reverse-lookup name stands for (`4.3.2.1.in-addr.arpa` is 1.2.3.4, RFC 1035
/// 3.5; 32 nibbles under `ip6.arpa`, RFC 3596 2.5), if `name` is one. Allocates nothing (a
/// signal handler's res_query inside the library asks too).
pub fn reverse_address(name: &str) -> Option<IpAddr> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let under = |suffix: &str| -> Option<&str> {
        let cut = name.len().checked_sub(suffix.len())?;
        let tail = name.get(cut..)?;
        tail.eq_ignore_ascii_case(suffix).then(|| &name[..cut])
    };
    if let Some(labels) = under(".in-addr.arpa") {
        // The first label is the last octet.
        let mut octets = [0u8; 4];
        let mut count = 0;
        for part in labels.split('.') {
            if count == 4
                || part.is_empty()
                || part.len() > 3
                || !part.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            octets[3 - count] = part.parse().ok()?;
            count += 1;
        }
        return (count == 4).then(|| IpAddr::from(octets));
    }
    let labels = under(".ip6.arpa")?;
    // The first label is the lowest nibble.
    let mut value: u128 = 0;
    let mut count = 0;
    for nibble in labels.split('.') {
        let &[digit] = nibble.as_bytes() else { return None };
        if count == 32 {
            return None;
        }
        value |= u128::from(char::from(digit).to_digit(16)?) << (4 * count);
        count += 1;
    }
    (count == 32).then(|| IpAddr::from(value.to_be_bytes()))
}

/// The RCODE of a response message, if it has a header.
pub fn rcode(message: &[u8]) -> Option<u8> {
    message.get(3).map(|b| b & 0x0f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `www.example.test` IN A, id 0x1234, RD, as res_mkquery writes it.
    const QUERY: [u8; 34] = [
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 3, b'w', b'w',
        b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 4, b't', b'e', b's', b't', 0, 0x00,
        0x01, 0x00, 0x01,
    ];

    #[test]
    fn reads_a_query_and_every_truncation_fails() {
        let query = parse_query(&QUERY).expect("well formed");
        assert_eq!(query.id, 0x1234);
        assert!(query.recursion_desired);
        assert_eq!(
            query.questions,
            [Question { name: "www.example.test".into(), qtype: TYPE_A, qclass: CLASS_IN }]
        );
        for cut in 0..QUERY.len() {
            assert_eq!(parse_query(&QUERY[..cut]), None, "{cut} bytes");
        }
        let mut response = QUERY;
        response[2] |= 0x80;
        assert_eq!(parse_query(&response), None);
        let mut pointer = QUERY;
        pointer[12] = 0xc0;
        assert_eq!(parse_query(&pointer), None);
    }

    #[test]
    fn writes_answers_and_refusals() {
        let question = parse_query(&QUERY).expect("well formed").questions.remove(0);
        let a = response(
            0x1234,
            true,
            &question,
            Some(Rdata::Address("198.18.0.1".parse().expect("ip"))),
            0,
        )
        .expect("fits");
        assert_eq!(&a[..12], [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&a[12..34], &QUERY[12..]);
        assert_eq!(&a[34..], [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 198, 18, 0, 1]);
        let aaaa = response(
            7,
            false,
            &question,
            Some(Rdata::Address("fd73:6f63:6b73::1".parse().expect("ip"))),
            0,
        )
        .expect("fits");
        assert_eq!(&aaaa[34..46], [0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 0, 0, 16]);
        assert_eq!(aaaa.len(), 46 + 16);
        let refused = response(9, true, &question, None, RCODE_REFUSED).expect("fits");
        assert_eq!(&refused[..12], [0, 9, 0x81, 0x85, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(rcode(&refused), Some(RCODE_REFUSED));
        assert_eq!(refused.len(), 34);
        let bad = Question { name: "a..b".into(), qtype: TYPE_A, qclass: CLASS_IN };
        assert_eq!(response(1, true, &bad, None, RCODE_REFUSED), None);
        let long = Question { name: "x".repeat(64), qtype: TYPE_A, qclass: CLASS_IN };
        assert_eq!(response(1, true, &long, None, RCODE_REFUSED), None);
        let reverse =
            Question { name: "1.0.18.198.in-addr.arpa".into(), qtype: TYPE_PTR, qclass: CLASS_IN };
        let ptr =
            response(3, true, &reverse, Some(Rdata::Pointer("a.test".into())), 0).expect("fits");
        let tail = [0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 0, 0, 8, 1, b'a', 4, b't', b'e', b's', b't', 0];
        assert!(ptr.ends_with(&tail), "{ptr:?}");
    }

    #[test]
    fn reads_reverse_names() {
        assert_eq!(
            reverse_address("1.0.18.198.in-addr.arpa"),
            Some("198.18.0.1".parse().expect("ip"))
        );
        assert_eq!(
            reverse_address("1.0.18.198.IN-ADDR.ARPA."),
            Some("198.18.0.1".parse().expect("ip"))
        );
        let six = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.7.b.6.3.6.f.6.3.7.d.f.ip6.arpa";
        assert_eq!(reverse_address(six), Some("fd73:6f63:6b73::1".parse().expect("ip")));
        assert_eq!(reverse_address("0.18.198.in-addr.arpa"), None);
        assert_eq!(reverse_address("256.0.18.198.in-addr.arpa"), None);
        assert_eq!(reverse_address("x.0.18.198.in-addr.arpa"), None);
        assert_eq!(reverse_address(&six[2..]), None);
        assert_eq!(reverse_address("www.example.test"), None);
        assert_eq!(reverse_address("9.1.0.18.198.in-addr.arpa"), None, "five labels");
        assert_eq!(reverse_address(&format!("0.{six}")), None, "33 nibbles");
        assert_eq!(reverse_address("in-addr.arpa"), None);
    }
}
