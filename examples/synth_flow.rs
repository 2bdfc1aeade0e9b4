//! Print a synthetic flow of N scenes (2N generation nodes) for benchmarks:
//! `cargo run --release --example synth_flow -- 1000 > big.nbflow`
//! (put a `refs/avatar.png` beside it).

fn main() {
    let scenes: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    println!("{}", nbbuild::synth::flow(scenes, "refs/avatar.png"));
}
