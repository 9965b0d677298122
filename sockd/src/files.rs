//! Opening the files sockd writes while it may still be root: the log file (`--log-file`) and
//! the pid file (`--pid-file`). Their directory may be writable by the user sockd later runs as
//! (`--user`), so whatever is found at the path may have been planted there: a symbolic link is
//! never followed (O_NOFOLLOW), a FIFO never blocks the open (O_NONBLOCK), and anything but a
//! regular file with a single link is refused after the open (fstat), with an error naming the
//! path. Only the last component is checked: the directories leading to it are the
//! administrator's (on Debian `/var/run` itself is a symbolic link to `/run`).
//!
//! Not here: what is written to them (`logging`, `lib`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Mode of a new log file: its lines name clients and users, so not for everyone to read.
const LOG_MODE: u32 = 0o640;
/// Mode of a new pid file.
const PID_MODE: u32 = 0o644;

/// Opens (creating it if needed) `path` for appending log lines.
pub fn open_log(path: &Path) -> Result<File, String> {
    open_regular(path, LOG_MODE, OpenOptions::new().append(true))
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))
}

/// Writes the process id to `path`, replacing what a regular file there held.
pub fn write_pid(path: &Path, pid: u32) -> Result<(), String> {
    let fail = |e: io::Error| format!("cannot write pid file {}: {e}", path.display());
    // Not truncated at open: only once it is known to be a regular file of its own.
    let mut file = open_regular(path, PID_MODE, OpenOptions::new().write(true)).map_err(fail)?;
    file.set_len(0).map_err(fail)?;
    file.write_all(format!("{pid}\n").as_bytes()).map_err(fail)
}

/// Opens `path` with `options` plus create, no-follow and non-blocking, then makes sure it is a
/// regular file with one link.
fn open_regular(path: &Path, mode: u32, options: &mut OpenOptions) -> io::Result<File> {
    let file = options
        .create(true)
        .mode(mode)
        // O_NONBLOCK: opening a FIFO with no reader fails at once instead of hanging; it has
        // no effect on the regular files that pass the check below.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other(
                "it is a symbolic link; refusing to follow it (remove it, and sockd creates the file)",
            ),
            Some(libc::ENXIO) => io::Error::other("not a regular file (a FIFO or a socket)"),
            Some(libc::EISDIR) => io::Error::other("not a regular file (a directory)"),
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::other(format!("not a regular file ({})", kind(&meta))));
    }
    if meta.nlink() != 1 {
        return Err(io::Error::other(format!(
            "it has {} hard links, so it may be another file too; refusing it (remove it, and sockd \
             creates the file)",
            meta.nlink()
        )));
    }
    Ok(file)
}

/// What kind of file `meta` describes, for the error.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a plain file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sockd-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn refuses_links_and_non_files_and_writes_regular_ones() {
        let dir = temp_dir("unit");
        let target = dir.join("target");
        std::fs::write(&target, "keep\n").expect("target");
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = write_pid(&link, 42).expect_err("a symlink is refused");
        assert!(
            err.contains(&link.display().to_string()) && err.contains("symbolic link"),
            "{err}"
        );
        let err = open_log(&link).expect_err("a symlink is refused");
        assert!(err.starts_with("cannot open log file") && err.contains("symbolic link"), "{err}");
        let err = open_log(&dir).expect_err("a directory is refused");
        assert!(err.contains("not a regular file (a directory)"), "{err}");
        let hard = dir.join("hard");
        std::fs::hard_link(&target, &hard).expect("hard link");
        let err = write_pid(&hard, 42).expect_err("a second link is refused");
        assert!(err.contains("2 hard links"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).expect("target"), "keep\n");

        let pid = dir.join("pid");
        std::fs::write(&pid, "1234567890\n").expect("old pid file");
        write_pid(&pid, 42).expect("regular file");
        assert_eq!(std::fs::read_to_string(&pid).expect("pid"), "42\n");
        let _ = std::fs::remove_dir_all(dir);
    }
}
