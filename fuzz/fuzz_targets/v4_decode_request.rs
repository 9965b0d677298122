//! Fuzz target `v4_decode_request`: hands libFuzzer's input to [`socks_proto_fuzz::v4_decode_request`], which holds the
//! checks (shared with the corpus replay in `tests/replay.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socks_proto_fuzz::v4_decode_request(data));
