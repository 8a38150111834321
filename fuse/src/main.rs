//! The `ferrofs` command.

fn main() {
    std::process::exit(ferrofs::cli::main());
}
