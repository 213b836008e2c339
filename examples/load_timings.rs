//! Where the time of opening a file goes, natively: `cargo run --release --example load_timings -- FILE`.
//! Prints decode-only (parquet → Arrow), the full ingest into a cube (wall and this thread's CPU
//! time, steadier on a shared machine), and the IPC hand-over. `MASK_IMPACT_TEXT_GENERAL=1`
//! reads CSV/JSON with arrow-csv / arrow-json only (no fast decoder), for comparison.
use std::time::{Duration, Instant};

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: load_timings FILE")?;
    let fast = std::env::var_os("MASK_IMPACT_TEXT_GENERAL").is_none();
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
        let cpu = thread_cpu();
        let mut ingest = mask_impact::ingest::Ingest::new(&path, bytes.len() as u64)
            .with_first_step(Some(0))
            .with_text_fast_path(fast);
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
        let (wall, cpu) = (t.elapsed(), thread_cpu() - cpu);
        println!("step 0 read whole:   {early:?} (elapsed, rows)");
        println!("ingest to cube:      {wall:?} wall, {cpu:?} cpu ({} rows)", ingest.builder().rows_read());
        let cube = ingest.finish()?;
        let t = Instant::now();
        let ipc = cube.to_ipc_bytes()?;
        println!("to ipc:              {:?} ({} bytes)", t.elapsed(), ipc.len());
        let t = Instant::now();
        let back = mask_impact::cube::Cube::from_ipc_bytes(&ipc)?;
        println!("from ipc:            {:?} ({} rows)", t.elapsed(), back.rows_read);
    }
    Ok(())
}
