//! `nbbuild remote keygen|status`: a writer's key pair, and what the team
//! cache is doing for this flow.

use crate::cli::RemoteCommand;
use crate::error::{Error, Result};
use crate::plan::Status;
use crate::remote::pull::Lookup;
use crate::remote::sign::SigningKey;
use crate::remote::Remote;
use crate::settings::Settings;
use futures_util::StreamExt;
use serde_json::json;
use std::sync::Arc;

pub fn run(c: &RemoteCommand) -> Result<i32> {
    match c {
        RemoteCommand::Keygen { json } => keygen(*json),
        RemoteCommand::Status(a) => status(a),
    }
}

/// The one place a secret is printed: on stdout, to the person who asked.
fn keygen(as_json: bool) -> Result<i32> {
    let k = SigningKey::generate().map_err(Error::internal)?;
    if as_json {
        println!(
            "{}",
            json!({"secret": k.to_secret_string(), "public": k.public().to_string()})
        );
    } else {
        println!("secret: {}", k.to_secret_string());
        println!("public: {}", k.public());
        eprintln!("hint: keep the secret in NBBUILD_REMOTE_SIGNING_KEY on the machine that writes (never in a file nbbuild reads); add the public key to the readers' [remote] trusted list or NBBUILD_REMOTE_TRUSTED");
    }
    Ok(0)
}

fn status(a: &crate::cli::BuildArgs) -> Result<i32> {
    let s = Settings::resolve(a)?;
    let Some(cfg) = s.remote()? else {
        return Err(Error::usage("no team cache is configured")
            .hint("pass --remote s3://BUCKET[/PREFIX] (or set NBBUILD_REMOTE, or [remote] url in nbbuild.toml)"));
    };
    let compiled = Arc::new(s.compile()?);
    let plan = super::plan::decider_for(&s, &compiled, s.open_reader()?).plan();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the runtime: {e}")))?;
    let (mode, why) = cfg.mode();
    let signing = cfg.signing.as_ref().map(|k| k.public().to_string());
    let trusted: Vec<String> = cfg.trusted.iter().map(|k| k.to_string()).collect();
    let endpoint = crate::mirror::r2::authority(&cfg.endpoint).to_string();
    let url = cfg.url.to_string();
    let report = runtime.block_on(async {
        let remote = Remote::new(cfg, Arc::new(|_| {}), Arc::new(|_| {}));
        let reach = remote.client.list(&remote.layout.records_prefix(), 1).await;
        let error = reach.as_ref().err().map(|f| f.describe());
        let claims: Vec<String> = if error.is_none() {
            remote
                .client
                .list(&remote.layout.claims_prefix(), 100_000)
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let items: Vec<_> = plan.items.iter().collect();
        let rows: Vec<serde_json::Value> = futures_util::stream::iter(items)
            .map(|i| {
                let remote = &remote;
                let claims = &claims;
                let error = error.clone();
                async move {
                    let (state, why) = match (&i.key, error.is_some()) {
                        (None, _) => ("unknown", Some("its key waits on an input not built here".to_string())),
                        (Some(_), true) => ("unreachable", None),
                        (Some(k), false) => match remote.lookup(k).await {
                            Lookup::Hit(_) => ("record", None),
                            Lookup::Miss => ("missing", None),
                            Lookup::Ignored(r) => ("ignored", Some(r.describe())),
                            Lookup::Failed(f) => ("unreachable", Some(f.describe())),
                        },
                    };
                    let claimed = i
                        .key
                        .as_ref()
                        .is_some_and(|k| claims.iter().any(|c| c.ends_with(&format!("/{k}"))));
                    json!({
                        "name": i.name, "kind": i.kind, "key": i.key,
                        "local": match &i.status { Status::Fresh => "fresh", Status::Stale(_) => "stale", Status::Skipped { .. } => "skipped", Status::Blocked { .. } => "blocked" },
                        "remote": state, "why": why, "claimed": claimed,
                    })
                }
            })
            .buffered(crate::remote::pull::PARALLEL)
            .collect()
            .await;
        (error, rows)
    });
    let (error, rows) = report;
    let count = |st: &str| rows.iter().filter(|r| r["remote"] == st).count();
    let v = json!({
        "url": url,
        "endpoint": endpoint,
        "reachable": error.is_none(),
        "error": error,
        "mode": mode.as_str(),
        "read_only_because": why,
        "signing_key": signing,
        "trusted": trusted,
        "flow": s.project.flow_path.display().to_string(),
        "summary": {
            "tasks": rows.len(),
            "records": count("record"),
            "missing": count("missing"),
            "ignored": count("ignored"),
            "unknown": count("unknown"),
            "claimed": rows.iter().filter(|r| r["claimed"] == true).count(),
        },
        "tasks": rows,
    });
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| Error::internal(e.to_string()))?
        );
    } else {
        println!("team cache: {url} at {endpoint}");
        match &v["error"] {
            serde_json::Value::String(e) => println!("reachable: no ({e})"),
            _ => println!("reachable: yes"),
        }
        match why {
            Some(w) => println!("mode: read-only ({w})"),
            None => println!("mode: read-write"),
        }
        println!(
            "signing key: {}",
            v["signing_key"].as_str().unwrap_or("none")
        );
        println!(
            "trusted writers: {}",
            v["trusted"].as_array().map_or(0, |t| t.len())
        );
        let sm = &v["summary"];
        println!(
            "this flow: {} task(s): {} with a record there, {} missing, {} ignored, {} with a key not known yet; {} claimed now",
            sm["tasks"], sm["records"], sm["missing"], sm["ignored"], sm["unknown"], sm["claimed"]
        );
        for r in &rows {
            if a.verbose > 0 || r["remote"] == "ignored" {
                println!(
                    "  {:<12} {} {}{}",
                    r["remote"].as_str().unwrap_or(""),
                    r["kind"].as_str().unwrap_or(""),
                    r["name"].as_str().unwrap_or(""),
                    r["why"]
                        .as_str()
                        .map(|w| format!(": {w}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(if error.is_none() { 0 } else { 1 })
}
