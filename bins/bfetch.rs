//! bfetch: not written yet.
fn main() {
    eprintln!("bfetch: error: not implemented yet");
    std::process::exit(2);
}
