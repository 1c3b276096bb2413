//! `cargo xtask`: project chores (fetching Imagenette, generating synthetic data).

mod synth;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("synth-data") {
        std::process::exit(synth::run(&args[1..]));
    }
    eprintln!("usage: cargo xtask <fetch-data|synth-data> (not implemented yet)");
    std::process::exit(2);
}
