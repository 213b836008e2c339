//! The `mask-impact` command-line tool.
fn main() {
    println!("mask-impact");
}
