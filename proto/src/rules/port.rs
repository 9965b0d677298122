//! Port conditions of the rule language: the operators `eq neq lt gt le ge` ([`Op`]), a
//! condition [`PortMatch`], and [`parse_port_spec`] which reads `OP PORT` from a [`Cursor`].
//!
//! A port is a decimal number 0..=65535 or a TCP service name resolved at parse time through
//! [`Lookup::service`] (i.e. `/etc/services`). This module does not decide where in a line a
//! port condition may appear; the file grammar does.

use std::fmt;

use super::error::LineError;
use super::lex::Cursor;
use super::lookup::Lookup;

/// A comparison operator of a port condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `eq`: equal.
    Eq,
    /// `neq`: not equal.
    Neq,
    /// `lt`: less than.
    Lt,
    /// `gt`: greater than.
    Gt,
    /// `le`: less than or equal.
    Le,
    /// `ge`: greater than or equal.
    Ge,
}

impl Op {
    /// The operator spelled `word` (lower case, as in the paper), if any.
    pub fn from_keyword(word: &str) -> Option<Op> {
        Some(match word {
            "eq" => Op::Eq,
            "neq" => Op::Neq,
            "lt" => Op::Lt,
            "gt" => Op::Gt,
            "le" => Op::Le,
            "ge" => Op::Ge,
            _ => return None,
        })
    }

    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Neq => "neq",
            Op::Lt => "lt",
            Op::Gt => "gt",
            Op::Le => "le",
            Op::Ge => "ge",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// `OP PORT`: a request port `p` matches when `p OP PORT` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMatch {
    /// The comparison.
    pub op: Op,
    /// The configured port (service names already resolved).
    pub port: u16,
}

impl PortMatch {
    /// Whether request port `port` satisfies the condition.
    pub fn matches(&self, port: u16) -> bool {
        match self.op {
            Op::Eq => port == self.port,
            Op::Neq => port != self.port,
            Op::Lt => port < self.port,
            Op::Gt => port > self.port,
            Op::Le => port <= self.port,
            Op::Ge => port >= self.port,
        }
    }
}

/// `OP PORT` with the port as a number, e.g. `eq 79`.
impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.port)
    }
}

/// Parses a port number or service name.
pub fn parse_port(tok: &str, lookup: &dyn Lookup) -> Result<u16, LineError> {
    let digits = tok.strip_prefix('-').unwrap_or(tok);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if tok.starts_with('-') {
            return Err(LineError::port_out_of_range(tok));
        }
        return digits.parse::<u16>().map_err(|_| LineError::port_out_of_range(tok));
    }
    lookup.service(tok).ok_or_else(|| LineError::unknown_service(tok))
}

/// Parses `OP PORT` at the cursor (two tokens). The next token must be an operator.
pub fn parse_port_spec(
    cur: &mut Cursor<'_, '_>,
    lookup: &dyn Lookup,
) -> Result<PortMatch, LineError> {
    let op_tok = cur.next().ok_or_else(|| LineError::unknown_operator(""))?;
    let op = Op::from_keyword(op_tok).ok_or_else(|| LineError::unknown_operator(op_tok))?;
    let port_tok = cur.next().ok_or_else(|| LineError::operator_without_port(op_tok))?;
    let port = parse_port(port_tok, lookup)?;
    Ok(PortMatch { op, port })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::lookup::StaticLookup;

    fn lookup() -> StaticLookup {
        StaticLookup::new("", "finger 79/tcp\nwhois 43/tcp nicname\n")
    }

    fn spec(s: &str) -> Result<PortMatch, LineError> {
        let toks: Vec<&str> = s.split_whitespace().collect();
        let mut c = Cursor::new(&toks);
        let r = parse_port_spec(&mut c, &lookup());
        if r.is_ok() {
            assert!(c.is_empty());
        }
        r
    }

    #[test]
    fn every_operator_with_boundaries() {
        let cases: [(&str, [bool; 3]); 6] = [
            // ports 78, 79, 80 against 79
            ("eq", [false, true, false]),
            ("neq", [true, false, true]),
            ("lt", [true, false, false]),
            ("gt", [false, false, true]),
            ("le", [true, true, false]),
            ("ge", [false, true, true]),
        ];
        for (op, want) in cases {
            let m = spec(&format!("{op} 79")).unwrap();
            assert_eq!(m.op.keyword(), op);
            assert_eq!(m.to_string(), format!("{op} 79"));
            for (p, w) in [78u16, 79, 80].into_iter().zip(want) {
                assert_eq!(m.matches(p), w, "{p} {op} 79");
            }
        }
    }

    #[test]
    fn extremes() {
        assert!(!spec("lt 0").unwrap().matches(0));
        assert!(spec("ge 0").unwrap().matches(0));
        assert!(spec("le 65535").unwrap().matches(65535));
        assert!(!spec("gt 65535").unwrap().matches(65535));
        assert!(spec("eq 65535").unwrap().matches(65535));
        assert!(spec("eq +80").is_err());
    }

    #[test]
    fn service_names() {
        assert_eq!(spec("eq finger").unwrap().port, 79);
        assert_eq!(spec("neq nicname").unwrap().to_string(), "neq 43");
    }

    #[test]
    fn errors() {
        let e = spec("eqq 79").unwrap_err();
        assert_eq!(e.token.as_deref(), Some("eqq"));
        assert_eq!(e.message, "unknown operator `eqq` (expected eq, neq, lt, gt, le or ge)");
        assert_eq!(spec("EQ 79").unwrap_err().token.as_deref(), Some("EQ"));
        let e = spec("eq").unwrap_err();
        assert_eq!(e.message, "operator `eq` without a port");
        let e = spec("eq 65536").unwrap_err();
        assert_eq!(e.message, "port `65536` out of range (0 to 65535)");
        assert!(spec("eq -1").unwrap_err().message.contains("out of range"));
        assert!(spec("eq 99999999999999999999").unwrap_err().message.contains("out of range"));
        let e = spec("eq gopher").unwrap_err();
        assert_eq!(e.message, "unknown service `gopher` (not a port number or a tcp service name)");
        let mut c = Cursor::new(&[]);
        assert!(parse_port_spec(&mut c, &lookup()).is_err());
    }
}
