//! User conditions of the rule language: [`UserList`] and [`parse_user_list`], which reads one
//! `*=user,user,/abs/file` token.
//!
//! Items are separated by commas with no blanks inside the token. An item starting with `/` is a
//! file whose contents are user ids separated by blanks, tabs, commas or newlines, with `#`
//! comments; it is read once, at parse time, through [`Lookup::read_file`]. Names are compared
//! exactly (case-sensitive), as the SOCKS4 USERID and SOCKS5 username are opaque bytes.
//!
//! This module does not know who the user of a request is; the caller passes it in.

use std::fmt;

use super::error::LineError;
use super::lookup::Lookup;

/// The users a rule applies to. A request without a user never matches a list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserList {
    users: Vec<String>,
}

impl UserList {
    /// A list of these users (duplicates dropped, order kept).
    pub fn new<I, S>(users: I) -> UserList
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list = UserList::default();
        for u in users {
            list.push(u.into());
        }
        list
    }

    fn push(&mut self, user: String) {
        if !self.users.contains(&user) {
            self.users.push(user);
        }
    }

    /// The effective user names, files expanded, in order of appearance.
    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// Whether the request's user is in the list; `None` (no user given) never matches.
    pub fn matches(&self, user: Option<&str>) -> bool {
        user.is_some_and(|u| self.users.iter().any(|x| x == u))
    }
}

/// `*=a,b,c` with files expanded. A list that came out empty (only empty files) prints as
/// `*=(none)`, which the parser does not accept back.
impl fmt::Display for UserList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.users.is_empty() {
            return f.write_str("*=(none)");
        }
        write!(f, "*={}", self.users.join(","))
    }
}

/// Parses a `*=…` token. Call it only on tokens that start with `*=`.
pub fn parse_user_list(tok: &str, lookup: &dyn Lookup) -> Result<UserList, LineError> {
    let body = tok.strip_prefix("*=").unwrap_or(tok);
    if body.is_empty() {
        return Err(LineError::empty_user_list(tok));
    }
    let mut list = UserList::default();
    for item in body.split(',') {
        if item.is_empty() {
            return Err(LineError::empty_user_name(tok));
        }
        if item.starts_with('/') {
            let text = lookup
                .read_file(item)
                .map_err(|reason| LineError::user_file_unreadable(tok, item, &reason))?;
            for user in users_in_file(&text) {
                list.push(user.to_owned());
            }
        } else {
            list.push(item.to_owned());
        }
    }
    Ok(list)
}

/// The user ids in a user-list file: separated by blanks, tabs, commas or newlines; `#` comments.
fn users_in_file(text: &str) -> impl Iterator<Item = &str> {
    text.lines().flat_map(|line| {
        let code = match line.find('#') {
            Some(at) => &line[..at],
            None => line,
        };
        code.split(|c: char| c == ',' || c.is_ascii_whitespace()).filter(|u| !u.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::lookup::StaticLookup;

    fn lookup() -> StaticLookup {
        StaticLookup::new("", "")
            .with_file(
                "/etc/socks.users",
                "# staff\nalice bob,carol\tdave # trailing\n\n,,erin\r\nalice\n",
            )
            .with_file("/empty", "# nobody yet\n")
    }

    #[test]
    fn plain_list() {
        let l = parse_user_list("*=lloyd,koblas", &lookup()).unwrap();
        assert_eq!(l.users(), ["lloyd", "koblas"]);
        assert!(l.matches(Some("lloyd")));
        assert!(l.matches(Some("koblas")));
        assert!(!l.matches(Some("Lloyd")));
        assert!(!l.matches(Some("")));
        assert!(!l.matches(None));
        assert_eq!(l.to_string(), "*=lloyd,koblas");
    }

    #[test]
    fn file_items_expand_in_place() {
        let l = parse_user_list("*=zed,/etc/socks.users,bob", &lookup()).unwrap();
        assert_eq!(l.users(), ["zed", "alice", "bob", "carol", "dave", "erin"]);
        assert!(l.matches(Some("erin")));
        assert!(!l.matches(Some("staff")));
        assert!(!l.matches(Some("trailing")));
        assert_eq!(l.to_string(), "*=zed,alice,bob,carol,dave,erin");
    }

    #[test]
    fn empty_file_gives_empty_list() {
        let l = parse_user_list("*=/empty", &lookup()).unwrap();
        assert!(l.users().is_empty());
        assert!(!l.matches(Some("anyone")));
        assert_eq!(l.to_string(), "*=(none)");
    }

    #[test]
    fn errors() {
        let e = parse_user_list("*=", &lookup()).unwrap_err();
        assert_eq!(e.message, "empty user list `*=`");
        assert_eq!(e.token.as_deref(), Some("*="));
        for t in ["*=a,,b", "*=a,", "*=,a"] {
            let e = parse_user_list(t, &lookup()).unwrap_err();
            assert_eq!(e.token.as_deref(), Some(t));
            assert!(e.message.starts_with("empty user name in"), "{e}");
        }
        let e = parse_user_list("*=a,/nope", &lookup()).unwrap_err();
        assert_eq!(e.message, "cannot read user file `/nope`: No such file or directory");
        assert_eq!(e.token.as_deref(), Some("*=a,/nope"));
    }
}
