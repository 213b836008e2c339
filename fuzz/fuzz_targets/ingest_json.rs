//! Fuzz the JSON ingest path: any bytes give `Ok` or `Err`, never a panic, hang or huge
//! allocation (libFuzzer's -rss_limit_mb and -timeout catch those).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = b"[{\"generation_step\":0,\"layer\":0,\"token_masked\":\"a\",\"token_position\":0,\"variant\":\"Full\",\"l2_distance\":1.5}".to_vec();
    bytes.extend_from_slice(data);
    let _ = mask_impact::ingest::read_bytes("fuzz.json", &bytes);
    let _ = mask_impact::ingest::read_bytes("fuzz.json", data);
});
