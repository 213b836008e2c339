//! Fuzz the PARQUET ingest path: any bytes give `Ok` or `Err`, never a panic, hang or huge
//! allocation (libFuzzer's -rss_limit_mb and -timeout catch those).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Keep the Parquet magic so the decoder, not the sniffer, sees the bytes.
    let mut bytes = b"PAR1".to_vec();
    bytes.extend_from_slice(data);
    if data.len() >= 4 {
        bytes.extend_from_slice(b"PAR1");
    }
    let _ = mask_impact::ingest::read_bytes("fuzz.parquet", &bytes);
});
