//! btrack: not written yet.
fn main() {
    eprintln!("btrack: error: not implemented yet");
    std::process::exit(2);
}
