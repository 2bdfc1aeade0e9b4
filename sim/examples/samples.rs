//! Write sample media to a folder (default `/tmp/sim-samples`) to look at:
//! `cargo run -p nbbuild-sim --example samples -- DIR`.

use nbbuild_sim::media;

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/sim-samples".into());
    std::fs::create_dir_all(&dir)?;
    let write = |name: &str, bytes: Vec<u8>| -> std::io::Result<()> {
        let path = format!("{dir}/{name}");
        println!("{path} ({} bytes)", bytes.len());
        std::fs::write(path, bytes)
    };
    let fox = "A red fox sitting in a snowy forest at dawn, cinematic";
    let city = "Neon city street at night with rain and reflections";
    let (w, h) = media::still_size("1:1");
    write("fox-v1.png", media::still(fox, 1, w, h, false))?;
    write("fox-v2.png", media::still(fox, 2, w, h, false))?;
    let (w, h) = media::still_size("9:16");
    write("city-v1-9x16.png", media::still(city, 1, w, h, false))?;
    let (w, h) = media::still_size("16:9");
    write("city-v3-16x9.png", media::still(city, 3, w, h, false))?;
    write("fox-v1-flawed.png", media::still(fox, 1, 384, 384, true))?;
    write("fox-v1.mp4", media::clip(fox, 1, 8))?;
    let (w, h) = media::clip_size("9:16");
    write("city-v2-9x16.mp4", media::clip_sized(city, 2, 4, w, h))?;
    Ok(())
}
