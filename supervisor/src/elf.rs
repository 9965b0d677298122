//! Which way a program needs: the supervisor or the preload library. Reads the ELF headers of
//! the file (never runs it): no `PT_INTERP` program header means statically linked (the
//! dynamic loader never runs, so `LD_PRELOAD` is ignored); a `.note.go.buildid` or
//! `.go.buildinfo` section means Go, which makes its own system calls even when dynamically
//! linked; an interpreter that is not glibc's dynamic loader (musl's `ld-musl-*.so.1`, uClibc's,
//! Android's linker) cannot load libsocks.so, a glibc library (musl's loader refuses it and the
//! program does not even start). Anything else — a program for glibc's loader, a script, a
//! file that is not ELF — takes the library.
//!
//! Not here: running anything; only 64- and 32-bit little-endian ELF is read (x86_64 is the
//! supervisor's architecture; a 32-bit program would be killed by its filter anyway).

use std::fmt;

/// The answer, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ELF without an interpreter.
    Static,
    /// ELF with Go's build id note or build info section.
    Go,
    /// ELF with an interpreter that is not glibc's (musl's, …): it cannot load the library.
    OtherLoader,
    /// ELF with glibc's interpreter, not Go.
    Dynamic,
    /// Not a little-endian ELF file (a script, …).
    NotElf,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Static => "supervise static",
            Kind::Go => "supervise go",
            Kind::OtherLoader => "supervise not-glibc",
            Kind::Dynamic => "preload dynamic",
            Kind::NotElf => "preload not-elf",
        })
    }
}

const PT_INTERP: u32 = 3;
const GO_SECTIONS: [&[u8]; 2] = [b".note.go.buildid", b".go.buildinfo"];

/// Where the bytes come from: the whole file in memory (tests) or the file itself, read only
/// where the headers point (a Go binary can be hundreds of megabytes; socksify asks every time).
pub trait Source {
    /// `len` bytes at `offset`, or `None` past the end or on a read error.
    fn bytes(&self, offset: usize, len: usize) -> Option<Vec<u8>>;
}

impl Source for [u8] {
    fn bytes(&self, offset: usize, len: usize) -> Option<Vec<u8>> {
        self.get(offset..offset.checked_add(len)?).map(<[u8]>::to_vec)
    }
}

impl Source for std::fs::File {
    fn bytes(&self, offset: usize, len: usize) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        // Header tables are small; a larger request means a corrupt header.
        if len > 16 << 20 {
            return None;
        }
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, u64::try_from(offset).ok()?).ok()?;
        Some(buf)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn usize_at(b: &[u8], at: usize, wide: bool) -> Option<usize> {
    if wide {
        usize::try_from(u64_at(b, at)?).ok()
    } else {
        usize::try_from(u32_at(b, at)?).ok()
    }
}

/// Classifies a file from its ELF headers.
pub fn classify(source: &(impl Source + ?Sized)) -> Kind {
    let Some(head) = source.bytes(0, 0x40).or_else(|| source.bytes(0, 0x34)) else {
        return Kind::NotElf;
    };
    if head.get(..4) != Some(b"\x7fELF") || head.get(5) != Some(&1) {
        return Kind::NotElf;
    }
    let wide = match head.get(4) {
        Some(2) => true,
        Some(1) => false,
        _ => return Kind::NotElf,
    };
    match (interpreter(source, &head, wide), is_go(source, &head, wide)) {
        (_, Some(true)) => Kind::Go,
        (Some(None), _) => Kind::Static,
        (Some(Some(path)), _) if !is_glibc_loader(&path) => Kind::OtherLoader,
        (Some(Some(_)), _) => Kind::Dynamic,
        // Headers that do not parse: the loader would refuse it too; let the library path
        // report whatever exec says.
        (None, _) => Kind::NotElf,
    }
}

/// Whether `path` (a `PT_INTERP` string) names glibc's dynamic loader: `ld-linux*.so.N` on
/// x86_64, i386, ARM and others, `ld64.so.N` on PowerPC and s390x, `ld.so.1` on a few.
fn is_glibc_loader(path: &[u8]) -> bool {
    let path = &path[..path.iter().position(|&c| c == 0).unwrap_or(path.len())];
    let base = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
    base.starts_with(b"ld-linux") || base.starts_with(b"ld64.so.") || base == b"ld.so.1"
}

/// The `PT_INTERP` string (the dynamic loader's path), `Some(None)` without one, `None` when
/// the headers do not parse.
fn interpreter(
    source: &(impl Source + ?Sized),
    head: &[u8],
    wide: bool,
) -> Option<Option<Vec<u8>>> {
    let (phoff, phentsize, phnum) = if wide {
        (usize_at(head, 0x20, true)?, u16_at(head, 0x36)?, u16_at(head, 0x38)?)
    } else {
        (usize_at(head, 0x1c, false)?, u16_at(head, 0x2a)?, u16_at(head, 0x2c)?)
    };
    let (size, count) = (usize::from(phentsize), usize::from(phnum));
    let table = source.bytes(phoff, size.checked_mul(count)?)?;
    // p_offset and p_filesz: after p_type and p_flags (64-bit); after p_type, then p_vaddr and
    // p_paddr before p_filesz (32-bit).
    let (offset_field, size_field) = if wide { (8, 32) } else { (4, 16) };
    for i in 0..count {
        let entry = i.checked_mul(size)?;
        if u32_at(&table, entry)? != PT_INTERP {
            continue;
        }
        let at = usize_at(&table, entry.checked_add(offset_field)?, wide)?;
        // A loader's path is short; a longer one means a corrupt header.
        let len = usize_at(&table, entry.checked_add(size_field)?, wide)?.min(4096);
        return Some(Some(source.bytes(at, len)?));
    }
    Some(None)
}

fn is_go(source: &(impl Source + ?Sized), head: &[u8], wide: bool) -> Option<bool> {
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (usize_at(head, 0x28, true)?, u16_at(head, 0x3a)?, u16_at(head, 0x3c)?, u16_at(head, 0x3e)?)
    } else {
        (
            usize_at(head, 0x20, false)?,
            u16_at(head, 0x2e)?,
            u16_at(head, 0x30)?,
            u16_at(head, 0x32)?,
        )
    };
    let (size, count) = (usize::from(shentsize), usize::from(shnum));
    let table = source.bytes(shoff, size.checked_mul(count)?)?;
    // sh_offset and sh_size of the section-name table: after sh_name, sh_type, sh_flags, sh_addr.
    let (offset_field, size_field) = if wide { (0x18, 0x20) } else { (0x10, 0x14) };
    let strtab = usize::from(shstrndx).checked_mul(size)?;
    let names_at = usize_at(&table, strtab.checked_add(offset_field)?, wide)?;
    let names_len = usize_at(&table, strtab.checked_add(size_field)?, wide)?;
    let names = source.bytes(names_at, names_len)?;
    for i in 0..count {
        let name = usize::try_from(u32_at(&table, i * size)?).ok()?;
        let Some(text) = names.get(name..) else { continue };
        let text = &text[..text.iter().position(|&c| c == 0).unwrap_or(text.len())];
        if GO_SECTIONS.contains(&text) {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_bytes(path: &str) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }

    #[test]
    fn real_programs() {
        // This test binary itself: dynamically linked Rust.
        let exe = std::env::current_exe().expect("own path");
        let me = std::fs::read(&exe).expect("readable");
        assert_eq!(classify(&me[..]), Kind::Dynamic);
        let file = std::fs::File::open(&exe).expect("readable");
        assert_eq!(classify(&file), Kind::Dynamic, "read where the headers point");
        if let Some(busybox) = file_bytes("/bin/busybox") {
            // Debian's busybox-static installs /bin/busybox statically linked.
            let kind = classify(&busybox[..]);
            assert!(matches!(kind, Kind::Static | Kind::Dynamic));
            let file = std::fs::File::open("/bin/busybox").expect("readable");
            assert_eq!(classify(&file), kind);
        }
        assert_eq!(classify(&b"#!/bin/sh\necho hi\n"[..]), Kind::NotElf);
        assert_eq!(classify(&b"\x7fELF\x02\x01"[..]), Kind::NotElf, "truncated headers");
    }

    /// A minimal ELF64 with one program header of type `ptype` and sections named `names`.
    fn synthetic(ptype: u32, names: &[&str]) -> Vec<u8> {
        synthetic_with_loader(ptype, names, "/lib64/ld-linux-x86-64.so.2")
    }

    /// [`synthetic`] whose program header, when it is `PT_INTERP`, names `loader`.
    fn synthetic_with_loader(ptype: u32, names: &[&str], loader: &str) -> Vec<u8> {
        let mut b = vec![0u8; 0x40];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        // one program header at 0x40
        b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&ptype.to_le_bytes());
        b.extend_from_slice(&ph);
        // the loader's path, where the program header points
        let loader_at = b.len();
        b.extend_from_slice(loader.as_bytes());
        b.push(0);
        b[0x40 + 8..0x40 + 16].copy_from_slice(&(loader_at as u64).to_le_bytes());
        b[0x40 + 32..0x40 + 40].copy_from_slice(&((loader.len() + 1) as u64).to_le_bytes());
        // the name table
        let strtab_at = b.len();
        let mut offsets = Vec::new();
        b.push(0);
        for n in names {
            offsets.push(b.len() - strtab_at);
            b.extend_from_slice(n.as_bytes());
            b.push(0);
        }
        // section headers: [0] the name table itself, then one per name
        let shoff = b.len();
        let mut sh = vec![0u8; 64];
        sh[0x18..0x20].copy_from_slice(&(strtab_at as u64).to_le_bytes());
        sh[0x20..0x28].copy_from_slice(&((shoff - strtab_at) as u64).to_le_bytes());
        b.extend_from_slice(&sh);
        for off in offsets {
            let mut sh = vec![0u8; 64];
            sh[..4].copy_from_slice(&(off as u32).to_le_bytes());
            b.extend_from_slice(&sh);
        }
        b[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        b[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        b[0x3c..0x3e].copy_from_slice(&(names.len() as u16 + 1).to_le_bytes());
        b
    }

    #[test]
    fn synthetic_headers() {
        assert_eq!(classify(&synthetic(PT_INTERP, &[".text"])[..]), Kind::Dynamic);
        assert_eq!(classify(&synthetic(1, &[".text"])[..]), Kind::Static);
        let go = synthetic(PT_INTERP, &[".text", ".note.go.buildid"]);
        assert_eq!(classify(&go[..]), Kind::Go);
        assert_eq!(classify(&synthetic(1, &[".go.buildinfo"])[..]), Kind::Go);
        assert_eq!(classify(&synthetic(1, &[".go.buildinfox"])[..]), Kind::Static);
        let whole = synthetic(1, &[".go.buildinfo"]);
        for cut in 0..whole.len() {
            let _ = classify(&whole[..cut]); // never panics on a truncated file
        }
    }

    #[test]
    fn a_loader_other_than_glibcs_is_supervised() {
        let with = |loader| classify(&synthetic_with_loader(PT_INTERP, &[".text"], loader)[..]);
        assert_eq!(with("/lib/ld-musl-x86_64.so.1"), Kind::OtherLoader);
        assert_eq!(with("/lib/ld-uClibc.so.0"), Kind::OtherLoader);
        assert_eq!(with("/system/bin/linker64"), Kind::OtherLoader);
        assert_eq!(with(""), Kind::OtherLoader, "an empty path is no glibc loader");
        assert_eq!(with("/lib64/ld-linux-x86-64.so.2"), Kind::Dynamic);
        assert_eq!(with("/lib/ld-linux.so.2"), Kind::Dynamic);
        assert_eq!(with("/nix/store/x-glibc-2.40/lib/ld-linux-x86-64.so.2"), Kind::Dynamic);
        assert_eq!(with("/lib64/ld64.so.2"), Kind::Dynamic);
        assert_eq!(Kind::OtherLoader.to_string(), "supervise not-glibc");
        let musl = synthetic_with_loader(PT_INTERP, &[".text"], "/lib/ld-musl-x86_64.so.1");
        for cut in 0..musl.len() {
            let _ = classify(&musl[..cut]); // never panics on a truncated file
        }
        // A real musl program, when musl-gcc is here (Debian's musl-tools).
        let dir = std::env::temp_dir().join(format!("socks-elf-musl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let source = dir.join("m.c");
        std::fs::write(&source, "int main(void) { return 0; }\n").expect("write");
        let built = std::process::Command::new("musl-gcc")
            .arg("-o")
            .arg(dir.join("m"))
            .arg(&source)
            .status();
        if built.is_ok_and(|s| s.success()) {
            let file = std::fs::File::open(dir.join("m")).expect("built");
            assert_eq!(classify(&file), Kind::OtherLoader, "a dynamically linked musl program");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
