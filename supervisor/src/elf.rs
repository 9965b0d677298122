//! Which way a program needs: the supervisor or the preload library. Reads the ELF headers of
//! the file (never runs it): no `PT_INTERP` program header means statically linked (the
//! dynamic loader never runs, so `LD_PRELOAD` is ignored); a `.note.go.buildid` or
//! `.go.buildinfo` section means Go, which makes its own system calls even when dynamically
//! linked. Anything else — a dynamically linked C program, a script, a file that is not ELF —
//! takes the library.
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
    /// ELF with an interpreter, not Go.
    Dynamic,
    /// Not a little-endian ELF file (a script, …).
    NotElf,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Static => "supervise static",
            Kind::Go => "supervise go",
            Kind::Dynamic => "preload dynamic",
            Kind::NotElf => "preload not-elf",
        })
    }
}

const PT_INTERP: u32 = 3;
const GO_SECTIONS: [&[u8]; 2] = [b".note.go.buildid", b".go.buildinfo"];

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

/// Classifies the file contents `b` (the whole file).
pub fn classify(b: &[u8]) -> Kind {
    if b.get(..4) != Some(b"\x7fELF") || b.get(5) != Some(&1) {
        return Kind::NotElf;
    }
    let wide = match b.get(4) {
        Some(2) => true,
        Some(1) => false,
        _ => return Kind::NotElf,
    };
    match (has_interp(b, wide), is_go(b, wide)) {
        (_, Some(true)) => Kind::Go,
        (Some(false), _) => Kind::Static,
        (Some(true), _) => Kind::Dynamic,
        // Headers that do not parse: the loader would refuse it too; let the library path
        // report whatever exec says.
        (None, _) => Kind::NotElf,
    }
}

fn has_interp(b: &[u8], wide: bool) -> Option<bool> {
    let (phoff, phentsize, phnum) = if wide {
        (usize_at(b, 0x20, true)?, u16_at(b, 0x36)?, u16_at(b, 0x38)?)
    } else {
        (usize_at(b, 0x1c, false)?, u16_at(b, 0x2a)?, u16_at(b, 0x2c)?)
    };
    let mut found = false;
    for i in 0..usize::from(phnum) {
        let at = phoff.checked_add(i.checked_mul(usize::from(phentsize))?)?;
        found |= u32_at(b, at)? == PT_INTERP;
    }
    Some(found)
}

fn is_go(b: &[u8], wide: bool) -> Option<bool> {
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (usize_at(b, 0x28, true)?, u16_at(b, 0x3a)?, u16_at(b, 0x3c)?, u16_at(b, 0x3e)?)
    } else {
        (usize_at(b, 0x20, false)?, u16_at(b, 0x2e)?, u16_at(b, 0x30)?, u16_at(b, 0x32)?)
    };
    let entry = |i: usize| shoff.checked_add(i.checked_mul(usize::from(shentsize))?);
    // sh_offset of the section-name table: after sh_name, sh_type, sh_flags, sh_addr.
    let offset_field = if wide { 0x18 } else { 0x10 };
    let names = usize_at(b, entry(usize::from(shstrndx))? + offset_field, wide)?;
    for i in 0..usize::from(shnum) {
        let name = usize::try_from(u32_at(b, entry(i)?)?).ok()?;
        let Some(text) = b.get(names.checked_add(name)?..) else { continue };
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

    fn file(path: &str) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }

    #[test]
    fn real_programs() {
        // This test binary itself: dynamically linked Rust.
        let me = std::fs::read(std::env::current_exe().expect("own path")).expect("readable");
        assert_eq!(classify(&me), Kind::Dynamic);
        if let Some(busybox) = file("/bin/busybox") {
            // Debian's busybox-static installs /bin/busybox statically linked.
            assert!(matches!(classify(&busybox), Kind::Static | Kind::Dynamic));
        }
        assert_eq!(classify(b"#!/bin/sh\necho hi\n"), Kind::NotElf);
        assert_eq!(classify(b"\x7fELF\x02\x01"), Kind::NotElf, "truncated headers");
    }

    /// A minimal ELF64 with one program header of type `ptype` and sections named `names`.
    fn synthetic(ptype: u32, names: &[&str]) -> Vec<u8> {
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
        assert_eq!(classify(&synthetic(PT_INTERP, &[".text"])), Kind::Dynamic);
        assert_eq!(classify(&synthetic(1, &[".text"])), Kind::Static);
        assert_eq!(classify(&synthetic(PT_INTERP, &[".text", ".note.go.buildid"])), Kind::Go);
        assert_eq!(classify(&synthetic(1, &[".go.buildinfo"])), Kind::Go);
        let whole = synthetic(1, &[".go.buildinfo"]);
        for cut in 0..whole.len() {
            let _ = classify(&whole[..cut]); // never panics on a truncated file
        }
    }
}
