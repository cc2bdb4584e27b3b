//! The `litestream` command line; everything lives in `litestream::cli`.

fn main() {
    std::process::exit(litestream::cli::main(std::env::args().collect()))
}
