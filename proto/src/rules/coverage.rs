//! Questions about a client as a whole rather than one request: [`RuleSet::may_permit`] says
//! whether any `permit` line could ever let this client (address and user) reach anything, so
//! a command that has no destination yet (UDP ASSOCIATE) can be refused up front.
//!
//! A query built on the rules' own conditions (`AddrMatch::matches`, `UserList::matches`); it
//! does not change how a request is matched (that is [`RuleSet::decide`]).

use std::net::IpAddr;

use super::sockd_conf::{holds, Action, Rule, RuleSet};

impl RuleSet {
    /// Whether some request from `client` as `user` could be permitted: a `permit` line whose
    /// source and user list cover them, not hidden behind an earlier `deny` line that covers
    /// them for every destination and port. `false` means every request this client could make
    /// is denied, whatever its destination.
    ///
    /// It may answer `true` for a client whose every request is denied after all (a `permit`
    /// line hidden by several narrower `deny` lines together); never `false` for a client some
    /// request of which [`RuleSet::decide`] permits.
    pub fn may_permit(&self, client: IpAddr, user: Option<&str>) -> bool {
        for rule in self.rules.iter().filter(|r| covers_client(r, client, user)) {
            match rule.action {
                Action::Permit => return true,
                Action::Deny if rule.dst.is_none() && rule.port.is_none() => return false,
                Action::Deny => {}
            }
        }
        false
    }
}

/// Whether `rule`'s source and user conditions hold for this client.
fn covers_client(rule: &Rule, client: IpAddr, user: Option<&str>) -> bool {
    holds(rule.users.as_ref(), |u| u.matches(user)) && rule.src.matches(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::lookup::StaticLookup;
    use crate::rules::Request;

    fn rules(text: &str) -> RuleSet {
        RuleSet::parse("sockd.conf", text, &StaticLookup::new("", "")).expect("valid rules")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("literal address")
    }

    #[test]
    fn empty_file_permits_no_client() {
        assert!(!rules("").may_permit(ip("192.0.2.1"), None));
        assert!(!rules("# only a comment\n").may_permit(ip("192.0.2.1"), Some("alice")));
    }

    #[test]
    fn source_and_user_decide() {
        let rs = rules(
            "permit *=bob 10.0.0.0/8 0.0.0.0/0 eq 53\n\
             permit 192.0.2.0/24 198.51.100.0/24\n",
        );
        assert!(rs.may_permit(ip("192.0.2.9"), None));
        assert!(rs.may_permit(ip("::ffff:192.0.2.9"), None), "IPv4-mapped is IPv4");
        assert!(rs.may_permit(ip("10.1.2.3"), Some("bob")));
        assert!(!rs.may_permit(ip("10.1.2.3"), Some("alice")));
        assert!(!rs.may_permit(ip("10.1.2.3"), None), "a user list needs a user");
        assert!(!rs.may_permit(ip("203.0.113.1"), Some("bob")));
        assert!(!rs.may_permit(ip("2001:db8::1"), Some("bob")));
    }

    #[test]
    fn a_deny_for_everything_hides_later_permits() {
        let rs = rules(
            "deny 192.0.2.66/32\n\
             deny *=mallory 0.0.0.0/0\n\
             deny 192.0.2.0/24 198.51.100.0/24\n\
             deny 192.0.2.0/24 0.0.0.0/0 eq 25\n\
             permit 192.0.2.0/24\n",
        );
        assert!(!rs.may_permit(ip("192.0.2.66"), None));
        assert!(!rs.may_permit(ip("192.0.2.7"), Some("mallory")));
        // Denials for some destinations or ports leave the rest to the permit line.
        assert!(rs.may_permit(ip("192.0.2.7"), None));
        assert!(rs.may_permit(ip("192.0.2.7"), Some("alice")));
        // A deny line for other clients hides nothing.
        let rs = rules("deny 10.0.0.0/8\npermit 0.0.0.0/0\n");
        assert!(rs.may_permit(ip("192.0.2.7"), None));
        assert!(!rs.may_permit(ip("10.0.0.1"), None));
    }

    #[test]
    fn never_false_for_a_client_decide_permits() {
        let rs = rules(
            "deny 192.0.2.0/25 0.0.0.0/0 lt 1024\n\
             permit *=alice 192.0.2.0/24 198.51.100.0/24 eq 53\n\
             deny *=bob 0.0.0.0/0\n\
             permit 192.0.2.128/25 0.0.0.0/0 gt 1023\n",
        );
        let clients = ["192.0.2.1", "192.0.2.200", "203.0.113.5", "2001:db8::1"];
        let dsts = ["198.51.100.1", "203.0.113.9", "2001:db8::9"];
        for client in clients {
            for user in [None, Some("alice"), Some("bob")] {
                let permitted_somewhere = dsts.iter().any(|dst| {
                    [53, 80, 2000].iter().any(|&port| {
                        let req = Request { src: ip(client), dst: ip(dst), port, user };
                        rs.decide(&req).action == Action::Permit
                    })
                });
                if permitted_somewhere {
                    assert!(rs.may_permit(ip(client), user), "{client} {user:?}");
                }
            }
        }
        assert!(!rs.may_permit(ip("192.0.2.1"), None));
        assert!(rs.may_permit(ip("192.0.2.1"), Some("alice")));
        assert!(!rs.may_permit(ip("192.0.2.200"), Some("bob")));
    }
}
