//! Engine-core benchmark: parse, validate, compile and key synthetic flows of
//! growing size. Run with `cargo bench --bench flow`; figures go to
//! docs/performance.md. Not a test: it asserts nothing about speed.

use nbbuild::compile::{compile, CompileOptions, InputSource};
use nbbuild::flow::validate::{validate, ValidateOptions};
use nbbuild::flow::Flow;
use nbbuild::key::{ImageId, ImageInput, Preimage};
use std::time::{Duration, Instant};

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        last = Some(v);
    }
    (best, last.unwrap())
}

fn main() {
    // cargo passes `--bench`; any other argument is a size filter.
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 5_000, 20_000]
    } else {
        sizes
    };
    println!(
        "| generation nodes | file size | parse | validate | compile | keys | total | per node |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for nodes in sizes {
        let text = nbbuild::synth::flow(nodes / 2, "https://example.test/avatar.png").to_string();
        let runs = if nodes > 10_000 { 3 } else { 5 };
        let (parse, flow) = best_of(runs, || Flow::parse(&text).unwrap());
        let (val, findings) = best_of(runs, || validate(&flow, &ValidateOptions { candidates: 4 }));
        assert!(findings.is_empty());
        let exists = |_: &str| true;
        let opts = CompileOptions {
            candidates: 4,
            ref_image: None,
            file_exists: &exists,
        };
        let (comp, compiled) = best_of(runs, || compile(&flow, &opts).unwrap());
        let (keys, n) = best_of(runs, || {
            let mut n = 0;
            for t in &compiled.tasks {
                let images = t
                    .inputs
                    .iter()
                    .map(|i| ImageInput {
                        slot: i.slot,
                        id: match &i.source {
                            InputSource::Url(u) => ImageId::Url { url: u.clone() },
                            _ => ImageId::Bytes {
                                blake3: "0".repeat(64),
                            },
                        },
                    })
                    .collect();
                n += Preimage::new(t, images).key().len();
            }
            n
        });
        assert!(n > 0);
        let total = parse + val + comp + keys;
        println!(
            "| {} | {:.1} MB | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} µs |",
            compiled.tasks.len(),
            text.len() as f64 / 1e6,
            parse.as_secs_f64() * 1e3,
            val.as_secs_f64() * 1e3,
            comp.as_secs_f64() * 1e3,
            keys.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e6 / compiled.tasks.len() as f64
        );
    }
}
