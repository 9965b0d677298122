//! Fuzz target `http_connect_response`: hands libFuzzer's input to [`socks_proto_fuzz::http_connect_response`], which holds the
//! checks (shared with the corpus replay in `tests/replay.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socks_proto_fuzz::http_connect_response(data));
