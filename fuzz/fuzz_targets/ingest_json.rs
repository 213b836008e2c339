//! Fuzz the JSON ingest path: any bytes give `Ok` or `Err`, never a panic, hang or huge
//! allocation (libFuzzer's -rss_limit_mb and -timeout catch those). Also the whole-file path
//! the CLI takes (`TextDecoder::decode_whole`, a pandas `columns` file read in place).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mask_impact::ingest::{BatchSink, Format, IngestError, TextDecoder};

/// Takes the batches and drops them.
struct Drop;

impl BatchSink for Drop {
    fn begin(&mut self, _: &arrow_schema::SchemaRef) -> Result<(), IngestError> {
        Ok(())
    }
    fn batch(&mut self, _: arrow_array::RecordBatch) -> Result<(), IngestError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = b"[{\"generation_step\":0,\"layer\":0,\"token_masked\":\"a\",\"token_position\":0,\"variant\":\"Full\",\"l2_distance\":1.5}".to_vec();
    bytes.extend_from_slice(data);
    let _ = mask_impact::ingest::read_bytes("fuzz.json", &bytes);
    let _ = mask_impact::ingest::read_bytes("fuzz.json", data);
    // A columns file: a column header, then the fuzzed text.
    let mut columns = b"{\"generation_step\":{\"0\":0".to_vec();
    columns.extend_from_slice(data);
    for text in [&columns[..], data] {
        let mut decoder = TextDecoder::new("fuzz.json", text.len() as u64, Format::Json);
        let _ = decoder.decode_whole(text, &mut Drop, &mut |_| {});
    }
});
