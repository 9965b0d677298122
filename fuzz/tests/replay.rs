//! Corpus replay without libFuzzer: `cargo test --manifest-path fuzz/Cargo.toml` runs every
//! target's checks over the committed seeds (`seeds/TARGET/`), over whatever a fuzzing run left
//! in `corpus/TARGET/` and `artifacts/TARGET/` (crashes found earlier stay regression tests
//! while they are there), and over inputs made by a deterministic PRNG from the seeds (byte
//! flips, truncations, splices). This is how the targets run where cargo-fuzz cannot.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("v4_decode_request", socks_proto_fuzz::v4_decode_request),
    ("v5_decode_request", socks_proto_fuzz::v5_decode_request),
    ("v5_decode_greeting", socks_proto_fuzz::v5_decode_greeting),
    ("v5_decode_reply", socks_proto_fuzz::v5_decode_reply),
    ("auth_decode_request", socks_proto_fuzz::auth_decode_request),
    ("udp_decode_datagram", socks_proto_fuzz::udp_decode_datagram),
    ("server_handshake", socks_proto_fuzz::server_handshake),
    ("client_handshake", socks_proto_fuzz::client_handshake),
    ("ruleset_parse", socks_proto_fuzz::ruleset_parse),
    ("client_rules_parse", socks_proto_fuzz::client_rules_parse),
    ("proxy_header_parse", socks_proto_fuzz::proxy_header_parse),
    ("http_connect_response", socks_proto_fuzz::http_connect_response),
];

/// Mutated inputs per seed.
const MUTATIONS: usize = 300;

/// The files of `dir`, sorted (missing directory: none).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .filter_map(|e| Some((e.path().display().to_string(), std::fs::read(e.path()).ok()?)))
        .collect();
    out.sort();
    out
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A mutation of `seed` (flip, overwrite, truncate, insert, splice with `other`).
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 => {
                let i = rng.below(v.len() + 1);
                let n = rng.below(16);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, junk);
            }
            4 if !other.is_empty() => {
                let i = rng.below(v.len() + 1);
                let j = rng.below(other.len());
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
            _ => {
                let i = rng.below(v.len() + 1);
                v.insert(
                    i,
                    *[0u8, 1, 3, 4, 5, 0xff, b' ', b'\n', b'/', b'#']
                        .get(rng.below(10))
                        .unwrap_or(&0),
                );
            }
        }
    }
    v
}

#[test]
fn replay_seeds_corpus_artifacts_and_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut rng = Rng(0x00F0_22ED_5EED);
    for (name, target) in TARGETS {
        let seeds = files(&root.join("seeds").join(name));
        assert!(!seeds.is_empty(), "no seeds for {name} in fuzz/seeds/{name}/");
        let mut replayed = 0;
        for dir in ["seeds", "corpus", "artifacts"] {
            for (path, data) in files(&root.join(dir).join(name)) {
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(
                    outcome.is_ok(),
                    "{name}: {path} fails ({} bytes: {data:02x?})",
                    data.len()
                );
                replayed += 1;
            }
        }
        for (i, (_, seed)) in seeds.iter().enumerate() {
            let other = &seeds[(i + 1) % seeds.len()].1;
            for _ in 0..MUTATIONS {
                let input = mutate(&mut rng, seed, other);
                let outcome = std::panic::catch_unwind(|| target(&input));
                assert!(outcome.is_ok(), "{name}: mutated input fails: {input:02x?}");
            }
        }
        eprintln!("{name}: {replayed} files, {} mutations", seeds.len() * MUTATIONS);
    }
}
