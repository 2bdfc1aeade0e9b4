//! Command-line definitions (clap). Parsed once in `main`, then handed to
//! the command modules as plain structs.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  nbbuild --sim                         build the flow in this folder against the built-in simulator
  nbbuild plan                          what would run, why, and what it would cost (no calls)
  nbbuild --only scene07                re-roll scene 07 only
  nbbuild validate ad.nbflow --json     check a flow before spending anything
  nbbuild explain scene07               why scene 07 is fresh or stale, field by field
  nbbuild graph --format mermaid        the task graph
  nbbuild cache ls                      what the store holds
  nbbuild spend --since 2026-11-01      what the builds spent, per run, day and flow
  nbbuild status --watch                what a running build is doing, until it ends
  nbbuild review                        review every take in the browser: pick, flag, re-roll
  nbbuild picks --csv                   every approve gate's pick, keyed by tab and node id";

#[derive(Parser, Debug)]
#[command(
    name = "nbbuild",
    version,
    about = "Build PatchWork .nbflow workflows like a Makefile: generate only what is new, edited or flagged",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build every stale task (the default command)
    Build(BuildArgs),
    /// Show what a build would run and why, and what it would cost; calls nothing
    Plan(BuildArgs),
    /// Explain why tasks are fresh or stale, field by field
    Explain(ExplainArgs),
    /// Check a flow: every problem with tab, node and JSON path
    Validate(ValidateArgs),
    /// Print the task graph
    Graph(GraphArgs),
    /// Inspect and maintain the store
    #[command(subcommand)]
    Cache(CacheCommand),
    /// The spend ledger: every run's calls, credits, flow and outcome, with totals
    Spend(SpendArgs),
    /// What the running build is doing (tasks, calls, credits, time left); else the last run
    Status(StatusArgs),
    /// Serve the G-Labs and Gemini API protocols on loopback (offline runs, demos, tests)
    Sim(SimArgs),
    /// Review every take in the browser: pick, flag, re-roll at a quoted cost
    Review(ReviewArgs),
    /// Print every approve gate's pick, keyed by tab and node id
    Picks(PicksArgs),
    /// The team cache: make a signing key, or see what the remote holds
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// image nodes only; video nodes are left for a later run
    Images,
    All,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    /// the G-Labs app (credits)
    Glabs,
    /// Google's Gemini API with your own key (US dollars)
    Google,
}

impl From<ProviderArg> for crate::models::Provider {
    fn from(p: ProviderArg) -> Self {
        match p {
            ProviderArg::Glabs => crate::models::Provider::Glabs,
            ProviderArg::Google => crate::models::Provider::Google,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum QaMode {
    Off,
    Vision,
    Command,
}

#[derive(Args, Debug, Clone, Default)]
pub struct BuildArgs {
    /// The .nbflow file (default: the single one in the current folder)
    pub flow: Option<PathBuf>,
    /// Base URL of the provider: G-Labs' (env GLABS_SERVER; changes whenever
    /// the tunnel restarts), or Google's [default: https://generativelanguage.googleapis.com]
    #[arg(long)]
    pub server: Option<String>,
    /// API key (env GLABS_API_KEY for glabs, GEMINI_API_KEY for google;
    /// never echoed, logged or stored)
    #[arg(long)]
    pub api_key: Option<String>,
    /// Who generates: the G-Labs app, or Google's Gemini API directly [default: glabs]
    #[arg(long, value_enum, env = "NBBUILD_PROVIDER")]
    pub provider: Option<ProviderArg>,
    /// Start the built-in simulator (both protocols) on a loopback port and use it
    #[arg(long)]
    pub sim: bool,
    /// Image used for reference nodes that hold no image
    #[arg(long, value_name = "PATH")]
    pub ref_image: Option<String>,
    /// Generation tasks in flight at once (1..=5) [default: 3]
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// `images`: image nodes only [default: all]
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Re-roll only these tasks: name, glob (scene0*), TAB/ID or #ID; repeatable
    #[arg(long, value_name = "SEL")]
    pub only: Vec<String>,
    /// Candidates per task [default: 4]
    #[arg(long, value_name = "N")]
    pub candidates: Option<u32>,
    /// Visual QA reviewer
    #[arg(long, value_enum)]
    pub qa: Option<QaMode>,
    /// Re-rolls allowed per flagged candidate (up to 10) [default: 3]
    #[arg(long, value_name = "N")]
    pub qa_attempts: Option<u32>,
    /// Reviewer command for --qa command (gets the image path, prints a JSON verdict)
    #[arg(long, value_name = "CMD")]
    pub qa_command: Option<String>,
    /// Where outputs are published: r2, dir:PATH or none
    #[arg(long, value_name = "MIRROR")]
    pub mirror: Option<String>,
    /// Root of Generations/ and Assets/ [default: the flow's folder]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The store [default: .nbbuild/ beside the flow]
    #[arg(long, value_name = "DIR", env = "NBBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Refuse to start, or stop launching, past this estimated spend (credits
    /// on glabs, US dollars on google)
    #[arg(long, value_name = "AMOUNT")]
    pub budget: Option<f64>,
    /// Same as `plan`
    #[arg(long)]
    pub dry_run: bool,
    /// Plan without fetching reference URLs nbbuild has never seen (their
    /// tasks are shown as blocked: content unknown)
    #[arg(long)]
    pub offline: bool,
    /// Stop before any call when a reference cannot be had (default: build
    /// every task it does not block)
    #[arg(long)]
    pub fail_fast: bool,
    /// Give up on backpressure (429s) after this many seconds without any
    /// progress [default: 600]
    #[arg(long, value_name = "SECS")]
    pub max_wait: Option<u64>,
    /// Print one JSON summary object on stdout at the end
    #[arg(long)]
    pub json: bool,
    /// More detail
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors and the final summary
    #[arg(short, long)]
    pub quiet: bool,
    /// No progress bars, even on a terminal
    #[arg(long)]
    pub no_progress: bool,
    /// The team cache: s3://BUCKET[/PREFIX] on R2 or any S3 API with
    /// conditional writes (docs/remote.md); `none` turns it off
    #[arg(long, value_name = "URL", env = "NBBUILD_REMOTE")]
    pub remote: Option<String>,
    /// read-write (the default with a signing key and credentials) or read-only
    #[arg(long, value_name = "MODE", env = "NBBUILD_REMOTE_MODE")]
    pub remote_mode: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ValidateArgs {
    /// The .nbflow file (default: the single one in the current folder)
    pub flow: Option<PathBuf>,
    /// Print the findings as JSON
    #[arg(long)]
    pub json: bool,
    /// Candidate count the runner enforces [default: 4]
    #[arg(long, value_name = "N")]
    pub candidates: Option<u32>,
    /// Image used for reference nodes that hold no image
    #[arg(long, value_name = "PATH")]
    pub ref_image: Option<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct GraphArgs {
    /// The .nbflow file (default: the single one in the current folder)
    pub flow: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
    /// Image used for reference nodes that hold no image
    #[arg(long, value_name = "PATH")]
    pub ref_image: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ExplainArgs {
    /// FLOW then SEL, or only SEL (the flow in the current folder)
    #[arg(required = true, num_args = 1..=2, value_name = "[FLOW] SEL")]
    pub args: Vec<String>,
    #[arg(long, value_name = "DIR", env = "NBBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[arg(long, value_name = "PATH")]
    pub ref_image: Option<String>,
    /// Candidates per task, as the build uses [default: 4]
    #[arg(long, value_name = "N")]
    pub candidates: Option<u32>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum RemoteCommand {
    /// Make a writer's Ed25519 key pair: keep `secret` in
    /// NBBUILD_REMOTE_SIGNING_KEY, give `public` to the team's trust list
    Keygen {
        /// Print {"secret": ..., "public": ...}
        #[arg(long)]
        json: bool,
    },
    /// Whether the team cache is reachable, this machine's mode, and what
    /// it holds for this flow's tasks
    Status(Box<BuildArgs>),
}

#[derive(Subcommand, Debug, Clone)]
pub enum CacheCommand {
    /// Tasks in the store: name, status, candidates, age
    Ls(CacheArgs),
    /// One task: preimage, candidates, verdicts, URLs, history
    Show {
        /// A key (or a prefix of one) or a task name
        what: String,
        #[command(flatten)]
        args: CacheArgs,
    },
    /// Counts and sizes
    Stats(CacheArgs),
    /// Re-hash every object and check every record; exits 1 on a problem
    Verify {
        /// Put a good copy back for every corrupt or missing object (the asset
        /// under Assets/, a mirror, the URL it was downloaded from); with none,
        /// quarantine it and leave its candidate to be regenerated
        #[arg(long)]
        repair: bool,
        /// Root of the flow's Assets/ when the build used --out [default: the
        /// flow's folder, or nbbuild.toml's `out`]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[command(flatten)]
        args: CacheArgs,
    },
    /// Drop unreferenced objects and old history
    Gc {
        /// History sets kept per task
        #[arg(long, default_value_t = 5)]
        keep_history: usize,
        /// Show what would be freed, change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        args: CacheArgs,
    },
    /// Print the store's folder
    Path(CacheArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CacheArgs {
    /// The store [default: .nbbuild/ beside the flow in the current folder]
    #[arg(long, value_name = "DIR", env = "NBBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The flow whose store to use
    #[arg(long, value_name = "FLOW")]
    pub flow: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SpendArgs {
    /// Only runs on or after this day (YYYY-MM-DD, local time)
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    #[command(flatten)]
    pub store: CacheArgs,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub store: CacheArgs,
    /// Follow the running build until it ends (waits for one to start)
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub interval: f64,
}

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    #[arg(long, default_value_t = 8765)]
    pub port: u16,
    /// Require this X-API-Key
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Latency of a still in ms (clips take ten times as long unless --video-latency-ms)
    #[arg(long, default_value_t = 300)]
    pub latency_ms: u64,
    #[arg(long)]
    pub video_latency_ms: Option<u64>,
    /// Share of stills with a planted anatomical flaw (0..1)
    #[arg(long, default_value_t = 0.0)]
    pub flaw_rate: f64,
    /// Every Nth submit answers 429
    #[arg(long, value_name = "N")]
    pub rate_limit_every: Option<u64>,
    /// Share of requests answering 500 (0..1)
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Prompts containing this word are rejected by the content policy
    #[arg(long, value_name = "WORD")]
    pub policy_word: Option<String>,
    /// Prompts containing this word time out
    #[arg(long, value_name = "WORD")]
    pub timeout_word: Option<String>,
    /// Every Nth task is lost (404 on poll, like after an app restart)
    #[arg(long, value_name = "N")]
    pub lose_every: Option<u64>,
    /// Share of requests whose connection is dropped (0..1)
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Stop accepting connections after N submits
    #[arg(long, value_name = "N")]
    pub die_after: Option<u64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pad every clip to about this many MB (large-clip tests and benchmarks)
    #[arg(long, value_name = "MB", default_value_t = 0)]
    pub clip_mb: u64,
    /// Share of downloads answered with an HTML error page (0..1)
    #[arg(long, default_value_t = 0.0)]
    pub bad_file_rate: f64,
    /// Share of accepted submits whose answer is lost: the task is created and runs, the 202 never arrives (0..1)
    #[arg(long, default_value_t = 0.0)]
    pub lose_answer_rate: f64,
    /// At most N tasks pending or running; a submit beyond answers 429 with Retry-After: 1
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub capacity: Option<u64>,
    /// Google's per-day quota: Gemini API submits after the first N answer 429 with a per-day QuotaFailure
    #[arg(long, value_name = "N")]
    pub daily_quota: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct ReviewArgs {
    /// The .nbflow file (default: the single one in the current folder)
    pub flow: Option<PathBuf>,
    /// Port to listen on (0: any free port)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to listen on; anything but loopback is reachable from other machines
    #[arg(long, default_value = "127.0.0.1", value_name = "HOST")]
    pub host: String,
    /// Open the page in the default browser
    #[arg(long)]
    pub open: bool,
    /// Serve the page with every action disabled
    #[arg(long)]
    pub read_only: bool,
    /// Write the page as static files (with the media) into DIR, then exit
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Base URL of the provider, for re-rolls (env GLABS_SERVER for glabs)
    #[arg(long)]
    pub server: Option<String>,
    /// API key (env GLABS_API_KEY / GEMINI_API_KEY; never echoed, logged or stored)
    #[arg(long)]
    pub api_key: Option<String>,
    /// Who generates re-rolls: glabs or google [default: glabs]
    #[arg(long, value_enum, env = "NBBUILD_PROVIDER")]
    pub provider: Option<ProviderArg>,
    /// Re-roll against the built-in simulator
    #[arg(long)]
    pub sim: bool,
    /// Image used for reference nodes that hold no image
    #[arg(long, value_name = "PATH")]
    pub ref_image: Option<String>,
    /// Generation tasks in flight at once during a re-roll (1..=5) [default: 3]
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// Candidates per task, as the build uses [default: 4]
    #[arg(long, value_name = "N")]
    pub candidates: Option<u32>,
    /// Visual QA reviewer for re-rolled stills
    #[arg(long, value_enum)]
    pub qa: Option<QaMode>,
    /// Re-rolls allowed per flagged candidate (up to 10) [default: 3]
    #[arg(long, value_name = "N")]
    pub qa_attempts: Option<u32>,
    /// Reviewer command for --qa command
    #[arg(long, value_name = "CMD")]
    pub qa_command: Option<String>,
    /// Where re-rolled outputs are published: r2, dir:PATH or none
    #[arg(long, value_name = "MIRROR")]
    pub mirror: Option<String>,
    /// Root of Generations/ and Assets/ [default: the flow's folder]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The store [default: .nbbuild/ beside the flow]
    #[arg(long, value_name = "DIR", env = "NBBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Refuse a re-roll past this estimated spend
    #[arg(long, value_name = "CREDITS")]
    pub budget: Option<f64>,
}

impl ReviewArgs {
    /// The build options a re-roll from the page runs with.
    pub fn build_args(&self) -> BuildArgs {
        BuildArgs {
            flow: self.flow.clone(),
            server: self.server.clone(),
            api_key: self.api_key.clone(),
            provider: self.provider,
            sim: self.sim,
            ref_image: self.ref_image.clone(),
            concurrency: self.concurrency,
            candidates: self.candidates,
            qa: self.qa,
            qa_attempts: self.qa_attempts,
            qa_command: self.qa_command.clone(),
            mirror: self.mirror.clone(),
            out: self.out.clone(),
            cache_dir: self.cache_dir.clone(),
            budget: self.budget,
            no_progress: true,
            ..BuildArgs::default()
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct PicksArgs {
    /// The .nbflow file (default: the single one in the current folder)
    pub flow: Option<PathBuf>,
    /// One JSON object: every gate with its pick
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV with a header row (for a sheet sync)
    #[arg(long)]
    pub csv: bool,
    /// The store, to name which candidate each pick is [default: .nbbuild/ beside the flow]
    #[arg(long, value_name = "DIR", env = "NBBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Candidates per task, as the build uses [default: 4]
    #[arg(long, value_name = "N")]
    pub candidates: Option<u32>,
    /// Image used for reference nodes that hold no image
    #[arg(long, value_name = "PATH")]
    pub ref_image: Option<String>,
}
