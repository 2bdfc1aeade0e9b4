//! Serve the simulator until Ctrl-C: `cargo run -p nbbuild-sim --example serve -- [PORT]`
//! (default 8765).

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8765);
    nbbuild_sim::serve_forever(nbbuild_sim::SimConfig::default(), port).await
}
