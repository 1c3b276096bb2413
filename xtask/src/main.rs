//! `cargo xtask`: project chores (fetching Imagenette, generating synthetic data).

fn main() {
    eprintln!("usage: cargo xtask <fetch-data|synth-data> (not implemented yet)");
    std::process::exit(2);
}
