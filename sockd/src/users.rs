//! The RFC 1929 users file given with `--users`: `user:HASH` per line, `#` comments, blank
//! lines ignored, where HASH is a SHA-crypt hash (`$6$…` or `$5$…`, as `sockd --add-user`,
//! `mkpasswd -m sha-512` or /etc/shadow write them). A password in clear is still accepted,
//! with a warning. Passwords are never logged; clear ones are compared in constant time.
//!
//! A failed check costs the same whether the user exists or not, so user names cannot be told
//! apart by timing: an unknown user's password, and a clear-text entry's, are also run through
//! a dummy hash of the algorithm and cost most entries of the file use (SHA-512, 5000 rounds
//! when none is hashed), and every comparison is constant-time over the longest possible
//! password (RFC 1929: 255 bytes), so not even the length of a clear password shows.
//!
//! Not here: the sub-negotiation itself (socks-proto `auth`, driven by the session).

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ctutils::CtEq;
use sha_crypt::{CustomizedPasswordHasher, Params, PasswordHasher, PasswordVerifier, ShaCrypt};

/// How a password is kept.
#[derive(Clone)]
enum Secret {
    /// A SHA-crypt hash in the modular crypt format.
    Hashed(String),
    /// The password itself (discouraged).
    Clear(Vec<u8>),
}

/// Username to password.
#[derive(Clone, Default)]
pub struct Users {
    entries: HashMap<String, Secret>,
    /// Lines whose password is stored in clear, for the warning.
    clear_lines: Vec<usize>,
    /// A hash of the file's usual algorithm and cost, checked when there is no hash to check.
    dummy: String,
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
        let mut clear_lines = Vec::new();
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
            let secret = if password.starts_with("$5$") || password.starts_with("$6$") {
                Secret::Hashed(password.to_string())
            } else if password.starts_with('$') {
                return Err(format!(
                    "{file}:{lineno}: unsupported hash for `{user}` (use $6$ or $5$ SHA-crypt)"
                ));
            } else if password.len() > 255 {
                return Err(format!(
                    "{file}:{lineno}: password longer than 255 bytes for `{user}`"
                ));
            } else {
                clear_lines.push(lineno);
                Secret::Clear(password.as_bytes().to_vec())
            };
            if entries.insert(user.to_string(), secret).is_some() {
                return Err(format!("{file}:{lineno}: user `{user}` listed twice"));
            }
        }
        if entries.is_empty() {
            return Err(format!("{file}: no users: every SOCKS5 client would be refused"));
        }
        let dummy = dummy_hash(entries.values().filter_map(|secret| match secret {
            Secret::Hashed(hash) => Some(hash.as_str()),
            Secret::Clear(_) => None,
        }))
        .map_err(|e| format!("{file}: {e}"))?;
        Ok(Users { entries, clear_lines, dummy })
    }

    /// Lines whose password is stored in clear (to warn about).
    pub fn clear_text_lines(&self) -> &[usize] {
        &self.clear_lines
    }

    /// Whether `password` is right for `user`. Hashed entries cost a few milliseconds of CPU:
    /// call it off the async workers.
    /// The same work is done for an unknown user and for a clear-text entry as for a hashed one.
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        let verify = |hash: &str| ShaCrypt::SHA512.verify_password(password, hash).is_ok();
        match self.entries.get(user) {
            Some(Secret::Hashed(hash)) => verify(hash),
            Some(Secret::Clear(expected)) => {
                let _ = verify(&self.dummy);
                same_bytes(expected, password)
            }
            None => {
                let _ = verify(&self.dummy);
                let _ = same_bytes(b"", password);
                false
            }
        }
    }
}

/// The algorithm (`5` or `6`) and rounds of a SHA-crypt hash; `None` if it cannot be read.
fn hash_params(hash: &str) -> Option<(&str, u32)> {
    let mut fields = hash.strip_prefix('$')?.split('$');
    let id = fields.next().filter(|id| *id == "5" || *id == "6")?;
    let rounds = match fields.next()?.strip_prefix("rounds=") {
        Some(n) => n.parse::<u32>().ok()?.clamp(Params::ROUNDS_MIN, Params::ROUNDS_MAX),
        None => Params::RECOMMENDED_ROUNDS,
    };
    Some((id, rounds))
}

/// A hash of a password nobody knows with the algorithm and rounds most of `hashes` use
/// (SHA-512 with the default rounds when there are none), to spend on checks that have no hash.
fn dummy_hash<'a>(hashes: impl Iterator<Item = &'a str>) -> Result<String, String> {
    let mut seen: HashMap<(&str, u32), usize> = HashMap::new();
    for params in hashes.filter_map(hash_params) {
        *seen.entry(params).or_insert(0) += 1;
    }
    let (id, rounds) = seen
        .into_iter()
        .max_by_key(|&((id, rounds), count)| (count, id, rounds))
        .map_or(("6", Params::RECOMMENDED_ROUNDS), |(params, _)| params);
    let params = Params::new(rounds).map_err(|e| format!("dummy hash: {e}"))?;
    // Neither the password nor the salt needs to be secret: this hash never lets anyone in.
    let hash = ShaCrypt::SHA512
        .hash_password_customized(
            b"no user has this password",
            b"sockd-dummy",
            Some(id),
            None,
            params,
        )
        .map_err(|e| format!("dummy hash: {e}"))?;
    Ok(hash.to_string())
}

/// `sockd --add-user NAME --users FILE`: reads a password (the first line of `input`), appends
/// `NAME:$6$…` to the file (created with mode 0600 if missing); refuses a name already there.
pub fn add_user(path: &Path, name: &str, input: &mut dyn Read) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 || name.contains([':', '\n', '#', ' ', '\t']) {
        return Err(format!("`{name}`: a user name is 1 to 255 bytes without `:`, `#` or blanks"));
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if existing.lines().any(|l| !l.trim().is_empty() && !l.trim().starts_with('#')) {
        let users = Users::parse(&path.display().to_string(), &existing)?;
        if users.entries.contains_key(name) {
            return Err(format!("{}: user `{name}` is already there", path.display()));
        }
    }
    let mut text = String::new();
    input.read_to_string(&mut text).map_err(|e| format!("reading the password: {e}"))?;
    let password = text.lines().next().unwrap_or("");
    if password.is_empty() || password.len() > 255 {
        return Err("the password (first line of standard input) must be 1 to 255 bytes".into());
    }
    let hash = hash_password(password.as_bytes())?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let separator = if existing.is_empty() || existing.ends_with('\n') { "" } else { "\n" };
    writeln!(file, "{separator}{name}:{hash}").map_err(|e| format!("{}: {e}", path.display()))
}

/// A SHA-512 crypt hash of `password` with a fresh random salt.
fn hash_password(password: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let hash = ShaCrypt::SHA512
        .hash_password_with_salt(password, &salt)
        .map_err(|e| format!("hashing the password: {e}"))?;
    Ok(hash.to_string())
}

/// The longest password RFC 1929 can carry (PLEN is one byte).
const MAX_PASSWORD: usize = 255;

/// Compares two passwords in constant time, whatever their lengths: each is laid into a
/// fixed-size buffer after its length, and the buffers are compared whole.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn framed(bytes: &[u8]) -> Option<[u8; MAX_PASSWORD + 1]> {
        let mut buffer = [0u8; MAX_PASSWORD + 1];
        buffer[0] = u8::try_from(bytes.len()).ok()?;
        buffer[1..=bytes.len()].copy_from_slice(bytes);
        Some(buffer)
    }
    match (framed(a), framed(b)) {
        (Some(a), Some(b)) => a.ct_eq(&b).to_bool(),
        // Longer than any password can be: never equal (and never stored, see `parse`).
        _ => false,
    }
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
    fn hashed_entries_and_add_user() {
        let dir = std::env::temp_dir().join(format!("sockd-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("users");
        let _ = std::fs::remove_file(&path);
        add_user(&path, "alice", &mut &b"s3cret\n"[..]).expect("added");
        add_user(&path, "bob", &mut &b"other"[..]).expect("added");
        assert!(add_user(&path, "alice", &mut &b"again"[..]).is_err(), "no duplicates");
        assert!(add_user(&path, "bad:name", &mut &b"x"[..]).is_err());
        let text = std::fs::read_to_string(&path).expect("written");
        assert!(!text.contains("s3cret"), "stored hashed: {text}");
        assert!(text.lines().all(|l| l.contains(":$6$")), "{text}");
        let users = Users::load(&path).expect("valid");
        assert!(users.clear_text_lines().is_empty());
        assert!(users.check("alice", b"s3cret"));
        assert!(!users.check("alice", b"s3cret2"));
        assert!(users.check("bob", b"other"));
        // A hash made by glibc's crypt (mkpasswd -m sha-512 -S saltsalt secret).
        let glibc = "carol:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n";
        let users = Users::parse("g", glibc).expect("valid");
        assert!(users.check("carol", b"secret"));
        let mode = std::fs::metadata(&path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
        assert_eq!(mode.expect("metadata") & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unknown_users_and_clear_entries_cost_a_hash_like_the_others() {
        let hashed = "carol:$6$rounds=6000$saltsalt$x\ndave:$6$rounds=6000$salt2$y\neve:$5$s$z\n";
        let users = Users::parse("u", hashed).expect("valid");
        assert!(users.dummy.starts_with("$6$rounds=6000$"), "{}", users.dummy);
        let users = Users::parse("u", "alice:secret\n").expect("valid");
        assert!(users.dummy.starts_with("$6$rounds=5000$"), "{}", users.dummy);
        assert!(!users.check("mallory", b"no user has this password"), "the dummy lets no one in");
        assert_eq!(hash_params("$5$rounds=10$s$h"), Some(("5", 1000)));
        assert_eq!(hash_params("$6$s$h"), Some(("6", 5000)));
        assert_eq!(hash_params("plain"), None);
        // Constant-time comparison: lengths differ, prefixes, the empty password.
        assert!(same_bytes(b"secret", b"secret"));
        assert!(!same_bytes(b"secret", b"secre"));
        assert!(!same_bytes(b"", b"\0"));
        assert!(same_bytes(b"", b""));
        assert!(!same_bytes(&[b'a'; 256], &[b'a'; 256]));
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
