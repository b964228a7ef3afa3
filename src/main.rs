//! The `weft` command line.

fn main() {
    println!("weft: not yet");
}
