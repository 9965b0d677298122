//! Fuzz target `proxy_header_parse`: hands libFuzzer's input to [`socks_proto_fuzz::proxy_header_parse`], which holds the
//! checks (shared with the corpus replay in `tests/replay.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socks_proto_fuzz::proxy_header_parse(data));
