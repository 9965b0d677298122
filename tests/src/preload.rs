//! The library loaded system-wide, the way an administrator would: `/etc/ld.so.preload` naming
//! it, without ever touching the host's `/etc`. Each run gets a mount namespace of its own
//! (`unshare --mount --propagation private`, inside the namespace `ip netns exec` already gave
//! it) where `/etc` is an overlay: the real `/etc` below, an empty tmpfs above. The files the
//! test adds (`ld.so.preload`, `socks.conf`…) are written into that upper layer only, and
//! vanish with the namespace. A bind mount over a file would need `/etc/ld.so.preload` to exist
//! on the host first; the overlay needs nothing.
//!
//! `ip netns exec` had bound `/etc/netns/<ns>/*` (the inside resolv.conf) over `/etc`; the
//! overlay hides those binds, so the wrapper copies the files into the upper layer again.
//!
//! [`SystemWide`] can also run the program as another user (`setpriv`), and replace a program
//! by a copy carrying file capabilities (`setcap` on a tmpfs copy, bind-mounted over the
//! original inside the namespace only): a non-root user running it gets `AT_SECURE=1`, the
//! secure-execution mode setuid programs run in.
//!
//! The wrapper itself (`sh`, `mount`, `cp`, `setcap`) runs before `ld.so.preload` exists, so
//! only the program (and `setpriv`, when asked) runs with the library. A failure of the wrapper
//! exits with [`SETUP_FAILED`] and a line starting `socks-e2e setup:`.
//!
//! Not here: what the programs do and what is compared (tests/tests/everywhere.rs).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{paths, Client, Lab, Ns, Ran};

/// Exit status of the wrapper when setting up the namespace failed.
pub const SETUP_FAILED: i32 = 125;

/// Exit status of the wrapper when `setcap` failed (file capabilities unsupported here).
pub const SETCAP_FAILED: i32 = 124;

/// The wrapper run by `unshare`: `$1` scratch mount point, `$2` network namespace name, `$3`
/// directory of files to add to /etc (or empty), `$4`/`$5` program to give capabilities and
/// the capabilities (or empty), `$6`/`$7` user and group to run as (or empty), then the
/// command.
const WRAPPER: &str = r#"
fail() { echo "socks-e2e setup: $*" >&2; exit 125; }
scratch=$1 ns=$2 etc=$3 capped=$4 caps=$5 user=$6 group=$7
shift 7
mount -t tmpfs -o mode=0755 socks-e2e "$scratch" || fail "mount tmpfs on $scratch"
mkdir "$scratch/upper" "$scratch/work" || fail "mkdir in $scratch"
mount -t overlay socks-e2e-etc -o "lowerdir=/etc,upperdir=$scratch/upper,workdir=$scratch/work" /etc \
  || fail "mount an overlay on /etc"
if [ -d "/etc/netns/$ns" ]; then cp -R "/etc/netns/$ns/." /etc/ || fail "copy /etc/netns/$ns"; fi
if [ -n "$capped" ]; then
  cp "$capped" "$scratch/capped" || fail "copy $capped"
  if ! setcap "$caps" "$scratch/capped"; then
    echo "socks-e2e setup: setcap $caps failed" >&2
    exit 124
  fi
  mount --bind "$scratch/capped" "$capped" || fail "bind-mount a copy over $capped"
fi
if [ -n "$etc" ]; then cp -R "$etc/." /etc/ || fail "copy the files for /etc"; fi
if [ -n "$user" ]; then exec setpriv --reuid "$user" --regid "$group" --clear-groups -- "$@"; fi
exec "$@"
"#;

/// How one program run sees the system; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct SystemWide {
    library: bool,
    etc: Vec<(String, String)>,
    capability: Option<(PathBuf, String)>,
    user: Option<(String, String)>,
}

impl SystemWide {
    /// The same private `/etc`, without `ld.so.preload`: the reference run.
    pub fn without_library() -> SystemWide {
        SystemWide::default()
    }

    /// `/etc/ld.so.preload` names the library.
    pub fn with_library() -> SystemWide {
        SystemWide { library: true, ..SystemWide::default() }
    }

    /// Adds `/etc/NAME` with `contents` (e.g. `socks.conf`).
    pub fn etc_file(mut self, name: &str, contents: &str) -> SystemWide {
        self.etc.push((name.to_owned(), contents.to_owned()));
        self
    }

    /// Replaces `program` (a real file, not a symlink) by a copy with file capabilities `caps`
    /// (`setcap` syntax, e.g. `cap_net_bind_service+ep`).
    pub fn file_capability(mut self, program: &Path, caps: &str) -> SystemWide {
        self.capability = Some((program.to_path_buf(), caps.to_owned()));
        self
    }

    /// Runs the program as `user`:`group` with no supplementary groups.
    pub fn as_user(mut self, user: &str, group: &str) -> SystemWide {
        self.user = Some((user.to_owned(), group.to_owned()));
        self
    }

    /// `program ARGS` in `inside`, in its own mount namespace set up as described.
    pub fn client<S: Into<std::ffi::OsString>>(
        &self,
        lab: &Lab,
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = S>,
    ) -> Client {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let scratch = lab.dir.path().join(format!("system-wide-{n}"));
        std::fs::create_dir_all(&scratch)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", scratch.display()));
        let mut files = self.etc.clone();
        if self.library {
            files.push(("ld.so.preload".to_owned(), format!("{}\n", library(lab).display())));
        }
        let etc = if files.is_empty() {
            String::new()
        } else {
            let dir = lab.dir.path().join(format!("system-wide-etc-{n}"));
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            for (name, contents) in files {
                let path = dir.join(name);
                std::fs::write(&path, contents)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644));
            }
            dir.display().to_string()
        };
        let (capped, caps) = match &self.capability {
            Some((program, caps)) => {
                paths::require("setcap", "libcap2-bin");
                (program.display().to_string(), caps.clone())
            }
            None => (String::new(), String::new()),
        };
        let (user, group) = match &self.user {
            Some((user, group)) => {
                paths::require("setpriv", "util-linux");
                (user.clone(), group.clone())
            }
            None => (String::new(), String::new()),
        };
        let unshare = paths::require("unshare", "util-linux");
        paths::require("mount", "mount");
        let program: PathBuf = program.into();
        lab.client(unshare)
            .args(["--mount", "--propagation", "private", "/bin/sh", "-c", WRAPPER, "sh"])
            .args([
                scratch.display().to_string(),
                lab.ns(Ns::Inside).to_owned(),
                etc,
                capped,
                caps,
                user,
                group,
                program.display().to_string(),
            ])
            .args(args)
    }
}

/// The wrapper's own complaint, when the run failed before the program started.
pub fn setup_failure(ran: &Ran) -> Option<String> {
    let code = ran.status.and_then(|s| s.code())?;
    if code != SETUP_FAILED && code != SETCAP_FAILED {
        return None;
    }
    let line = ran.stderr.lines().find(|l| l.starts_with("socks-e2e setup:"))?;
    Some(line.to_owned())
}

/// The path `/etc/ld.so.preload` names: the built library when every user may read it (a
/// program run as `nobody` must be able to load it), else a world-readable copy in the lab's
/// directory.
pub fn library(lab: &Lab) -> PathBuf {
    let built = paths::libsocks();
    if readable_by_all(&built) {
        return built;
    }
    let copy = lab.dir.path().join("libsocks.so");
    if !copy.is_file() {
        std::fs::copy(&built, &copy).unwrap_or_else(|e| {
            panic!("cannot copy {} to {}: {e}", built.display(), copy.display())
        });
        let _ = std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755));
    }
    copy
}

fn readable_by_all(path: &Path) -> bool {
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode()).unwrap_or(0);
    mode(path) & 0o004 != 0 && path.ancestors().skip(1).all(|dir| mode(dir) & 0o001 != 0)
}
