//! The `w2c` binary.

fn main() {
    std::process::exit(w2c::cli::main());
}
