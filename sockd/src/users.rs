//! The RFC 1929 users file given with `--users`: `user:password` per line, `#` comments, blank
//! lines ignored. Loaded once at start; checked with a comparison that does not stop at the
//! first differing byte. Passwords are never logged.
//!
//! Not here: the sub-negotiation itself (socks-proto `auth`, driven by the session).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Username to password.
#[derive(Clone, Default)]
pub struct Users {
    entries: HashMap<String, Vec<u8>>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Users({} entries)", self.entries.len())
    }
}

impl Users {
    /// Reads and parses a users file; errors name the file and line.
    pub fn load(path: &Path) -> Result<Users, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read users file: {e}", path.display()))?;
        Users::parse(&path.display().to_string(), &text)
    }

    /// Parses users-file text; `file` is only used in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Users, String> {
        let mut entries = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let lineno = index + 1;
            let Some((user, password)) = line.split_once(':') else {
                return Err(format!("{file}:{lineno}: expected `user:password`"));
            };
            if user.is_empty() || user.len() > 255 {
                return Err(format!("{file}:{lineno}: user name must be 1 to 255 bytes"));
            }
            if password.len() > 255 {
                return Err(format!(
                    "{file}:{lineno}: password longer than 255 bytes for `{user}`"
                ));
            }
            if entries.insert(user.to_string(), password.as_bytes().to_vec()).is_some() {
                return Err(format!("{file}:{lineno}: user `{user}` listed twice"));
            }
        }
        if entries.is_empty() {
            return Err(format!("{file}: no users: every SOCKS5 client would be refused"));
        }
        Ok(Users { entries })
    }

    /// Whether `password` is right for `user`.
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        match self.entries.get(user) {
            Some(expected) => same_bytes(expected, password),
            None => false,
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_check() {
        let users = Users::parse("u", "# comment\n\nalice:secret\nbob:pa:ss\n").expect("valid");
        assert!(users.check("alice", b"secret"));
        assert!(!users.check("alice", b"secreT"));
        assert!(!users.check("alice", b"secret2"));
        assert!(users.check("bob", b"pa:ss"));
        assert!(!users.check("carol", b""));
        assert!(!format!("{users:?}").contains("secret"));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            Users::parse("u", "alice\n").err().as_deref(),
            Some("u:1: expected `user:password`")
        );
        assert_eq!(
            Users::parse("u", "a:1\na:2\n").err().as_deref(),
            Some("u:2: user `a` listed twice")
        );
        assert!(Users::parse("u", "# none\n").is_err());
        assert!(Users::parse("u", ":pw\n").is_err());
    }
}
