//! Fuzz the CSV ingest path: any bytes give `Ok` or `Err`, never a panic, hang or huge
//! allocation (libFuzzer's -rss_limit_mb and -timeout catch those).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A header the cube accepts, then fuzzed records (and chunk boundaries everywhere).
    let mut bytes = b"generation_step,layer,token_masked,token_position,variant,l2_distance\n".to_vec();
    bytes.extend_from_slice(data);
    let _ = mask_impact::ingest::read_bytes("fuzz.csv", &bytes);
    let _ = mask_impact::ingest::read_bytes("fuzz.csv", data);
});
