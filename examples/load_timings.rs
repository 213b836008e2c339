//! Where the time of opening a file goes, natively: `cargo run --release --example load_timings -- FILE`.
//! Prints decode-only (parquet → Arrow), the full ingest into a cube, and the IPC hand-over.
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: load_timings FILE")?;
    let bytes = bytes::Bytes::from(std::fs::read(&path)?);
    for _ in 0..3 {
        if bytes.starts_with(b"PAR1") {
            let t = Instant::now();
            let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?
                .with_batch_size(65536);
            let mask = parquet::arrow::ProjectionMask::columns(
                builder.parquet_schema(),
                ["generation_step", "layer", "token_position", "variant", "l2_distance", "cosine_distance", "token_masked"],
            );
            let mut rows = 0;
            for b in builder.with_projection(mask).build()? {
                rows += b?.num_rows();
            }
            println!("parquet decode only: {rows} rows {:?}", t.elapsed());
        }
        let t = Instant::now();
        let mut ingest = mask_impact::ingest::Ingest::new(&path, bytes.len() as u64).with_first_step(Some(0));
        let mut early = None;
        mask_impact::ingest::drive_with(
            &mut ingest,
            |r| Ok(bytes.slice(r.start as usize..r.end as usize)),
            |i| {
                if early.is_none() && i.builder().step_passed(0) {
                    early = Some((t.elapsed(), i.builder().rows_read()));
                }
                true
            },
        )?;
        println!("step 0 read whole:   {early:?} (elapsed, rows)");
        let t = Instant::now();
        let cube = mask_impact::ingest::read_bytes(&path, &bytes)?;
        println!("ingest to cube:      {:?}", t.elapsed());
        let t = Instant::now();
        let ipc = cube.to_ipc_bytes()?;
        println!("to ipc:              {:?} ({} bytes)", t.elapsed(), ipc.len());
        let t = Instant::now();
        let back = mask_impact::cube::Cube::from_ipc_bytes(&ipc)?;
        println!("from ipc:            {:?} ({} rows)", t.elapsed(), back.rows_read);
    }
    Ok(())
}
