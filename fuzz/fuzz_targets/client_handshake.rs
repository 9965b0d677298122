//! Fuzz target `client_handshake`: hands libFuzzer's input to [`socks_proto_fuzz::client_handshake`], which holds the
//! checks (shared with the corpus replay in `tests/replay.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socks_proto_fuzz::client_handshake(data));
