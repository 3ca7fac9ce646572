//! porthog: is this machine running out of ephemeral ports, and who is eating them?

mod collect;

fn main() {
    let opts = collect::CollectOptions::default();
    match collect::snapshot(&opts) {
        Ok(s) => println!("{} sockets", s.sockets.len()),
        Err(e) => {
            eprintln!("porthog: {e:#}");
            std::process::exit(3);
        }
    }
}
