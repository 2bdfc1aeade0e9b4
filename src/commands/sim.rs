//! `nbbuild sim`: the simulator on loopback (G-Labs and the Gemini API on
//! one port), and the one `--sim` builds start in-process. Both need the
//! default `sim` cargo feature; without it they say so.

use crate::cli::SimArgs;
use crate::error::{Error, Result};

/// The simulator a `--sim` build runs against, in this process.
pub struct BuiltIn {
    #[cfg(feature = "sim")]
    handle: nbbuild_sim::SimHandle,
}

impl BuiltIn {
    /// Start it on a free loopback port.
    pub async fn start() -> Result<BuiltIn> {
        #[cfg(feature = "sim")]
        {
            let handle = nbbuild_sim::start(nbbuild_sim::SimConfig::default(), 0)
                .await
                .map_err(|e| {
                    Error::env("cannot start the built-in simulator").cause(e.to_string())
                })?;
            Ok(BuiltIn { handle })
        }
        #[cfg(not(feature = "sim"))]
        Err(without_sim())
    }
    pub fn url(&self) -> String {
        #[cfg(feature = "sim")]
        return self.handle.url();
        #[cfg(not(feature = "sim"))]
        String::new()
    }
    pub async fn shutdown(self) {
        #[cfg(feature = "sim")]
        self.handle.shutdown().await;
    }
}

#[cfg(not(feature = "sim"))]
fn without_sim() -> Error {
    Error::usage("this nbbuild was built without the simulator (cargo feature `sim`)")
        .hint("pass --server URL for a real service, or build with the default features")
}

#[cfg(feature = "sim")]
pub fn config(a: &SimArgs) -> nbbuild_sim::SimConfig {
    nbbuild_sim::SimConfig {
        api_key: a.api_key.clone(),
        image_latency_ms: a.latency_ms,
        video_latency_ms: a
            .video_latency_ms
            .unwrap_or(a.latency_ms.saturating_mul(10)),
        flaw_rate: a.flaw_rate,
        rate_limit_every: a.rate_limit_every,
        error_rate: a.error_rate,
        policy_word: a.policy_word.clone(),
        timeout_word: a.timeout_word.clone(),
        lose_every: a.lose_every,
        drop_rate: a.drop_rate,
        die_after_submits: a.die_after,
        seed: a.seed,
        clip_padding: a.clip_mb * 1_000_000,
        bad_file_rate: a.bad_file_rate,
        lose_answer_rate: a.lose_answer_rate,
        capacity: a.capacity.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        daily_quota: a.daily_quota,
        ..nbbuild_sim::SimConfig::default()
    }
}

#[cfg(not(feature = "sim"))]
pub fn run(_: &SimArgs) -> Result<i32> {
    Err(without_sim())
}

#[cfg(feature = "sim")]
pub fn run(a: &SimArgs) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(e.to_string()))?;
    rt.block_on(nbbuild_sim::serve_forever(config(a), a.port))
        .map_err(|e| {
            Error::env(format!("cannot serve on 127.0.0.1:{}", a.port))
                .cause(e.to_string())
                .hint("is the port in use? pass --port N (0 picks a free one)")
        })?;
    Ok(0)
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::config;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> nbbuild_sim::SimConfig {
        let cli = Cli::try_parse_from(args).expect("the flags parse");
        match cli.command {
            Some(Command::Sim(a)) => config(&a),
            other => panic!("not the sim command: {other:?}"),
        }
    }

    #[test]
    fn lost_answers_and_capacity_reach_the_simulator() {
        let c = parse(&[
            "nbbuild",
            "sim",
            "--lose-answer-rate",
            "0.1",
            "--capacity",
            "3",
        ]);
        assert_eq!(c.lose_answer_rate, 0.1);
        assert_eq!(c.capacity, Some(3));
        let c = parse(&["nbbuild", "sim"]);
        assert_eq!(c.lose_answer_rate, 0.0);
        assert_eq!(c.capacity, None);
        assert_eq!(c.daily_quota, None);
        let c = parse(&["nbbuild", "sim", "--daily-quota", "4"]);
        assert_eq!(c.daily_quota, Some(4));
        let err = Cli::try_parse_from(["nbbuild", "sim", "--capacity", "0"]).unwrap_err();
        assert!(err.to_string().contains("--capacity"), "{err}");
    }
}
