//! bseed: not written yet.
fn main() {
    eprintln!("bseed: error: not implemented yet");
    std::process::exit(2);
}
