//! Visual-QA reviewers (`nbbuild::qa`): the vision client against the
//! simulator's reviewer and against a stub chat-completions server that
//! records what it is sent, and the command reviewer against small scripts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use nbbuild::qa::{self, Outcome, Review, VisionConfig, PROMPT_VERSION, TELLS};
use nbbuild_sim::media::still;
use serde_json::{json, Value};

const UNUSED: &str = "unused.png";

fn cfg(base_url: String, model: &str) -> VisionConfig {
    VisionConfig {
        base_url,
        model: model.to_string(),
        api_key: None,
        timeout: Duration::from_secs(5),
        attempts: 3,
    }
}

fn flawed() -> Vec<u8> {
    still("a woman waving at the camera", 0, 64, 48, true)
}

fn clean() -> Vec<u8> {
    still("a woman waving at the camera", 1, 64, 48, false)
}

// ---------------------------------------------------------------------------
// A stub chat-completions server

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    auth: Option<String>,
    body: Value,
}

type Answer = Box<dyn Fn(&Value, usize) -> (u16, Value) + Send + Sync>;

struct Stub {
    seen: Mutex<Vec<Seen>>,
    answer: Answer,
}

struct StubServer {
    url: String,
    stub: Arc<Stub>,
}

impl StubServer {
    /// A server on 127.0.0.1:0 answering every request with `answer(body, n)`
    /// (`n` counts requests from 0).
    async fn start(answer: impl Fn(&Value, usize) -> (u16, Value) + Send + Sync + 'static) -> Self {
        let stub = Arc::new(Stub {
            seen: Mutex::new(Vec::new()),
            answer: Box::new(answer),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(stub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StubServer { url, stub }
    }
    /// The OpenAI-style base URL.
    fn base(&self) -> String {
        format!("{}/v1", self.url)
    }
    fn seen(&self) -> Vec<Seen> {
        self.stub.seen.lock().unwrap().clone()
    }
}

async fn handle(
    State(stub): State<Arc<Stub>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut seen = stub.seen.lock().unwrap();
        seen.push(Seen {
            path: uri.path().to_string(),
            auth: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: body.clone(),
        });
        seen.len() - 1
    };
    let (status, answer) = (stub.answer)(&body, n);
    (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
}

/// A chat-completions answer whose assistant message is `message`.
fn completion(message: Value) -> Value {
    json!({
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": "stub",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    })
}

fn says(content: &str) -> (u16, Value) {
    (
        200,
        completion(json!({"role": "assistant", "content": content})),
    )
}

fn clean_answer() -> (u16, Value) {
    says(r#"{"verdict": "clean", "tells": [], "confidence": 0.9}"#)
}

fn api_error(status: u16, message: &str) -> (u16, Value) {
    (
        status,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

// ---------------------------------------------------------------------------
// (a) against the simulator's reviewer

#[tokio::test]
async fn vision_against_the_simulator_flags_exactly_the_planted_flaws() {
    let sim = nbbuild_sim::start(nbbuild_sim::SimConfig::default(), 0)
        .await
        .unwrap();
    let reviewer = qa::vision(cfg(format!("{}/v1", sim.url()), "sim-reviewer"));

    let r = reviewer.review(&flawed(), Path::new(UNUSED)).await;
    assert_eq!(r.outcome, Outcome::Flagged, "{r:?}");
    assert!(!r.tells.is_empty(), "{r:?}");
    assert!(
        r.confidence.is_some_and(|c| (0.0..=1.0).contains(&c)),
        "{r:?}"
    );

    let r = reviewer.review(&clean(), Path::new(UNUSED)).await;
    assert_eq!(r.outcome, Outcome::Clean, "{r:?}");
    assert!(r.tells.is_empty());

    assert_eq!(sim.stats().await.qa_reviews, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn vision_sends_the_key_as_a_bearer_token_and_never_shows_it() {
    let sim = nbbuild_sim::start(
        nbbuild_sim::SimConfig {
            api_key: Some("sk-sim-right".into()),
            ..Default::default()
        },
        0,
    )
    .await
    .unwrap();
    let mut c = cfg(format!("{}/v1", sim.url()), "sim-reviewer");
    c.api_key = Some("sk-sim-right".into());
    let r = qa::vision(c.clone())
        .review(&flawed(), Path::new(UNUSED))
        .await;
    assert_eq!(r.outcome, Outcome::Flagged, "{r:?}");

    c.api_key = Some("sk-sim-wrong".into());
    let wrong = qa::vision(c.clone());
    let r = wrong.review(&flawed(), Path::new(UNUSED)).await;
    assert_eq!(r.outcome, Outcome::Unreviewed, "{r:?}");
    assert!(r.detail.contains("401"), "{}", r.detail);
    assert!(!r.detail.contains("sk-sim-wrong"), "{}", r.detail);
    assert!(!format!("{c:?}").contains("sk-sim-wrong"));
    assert!(!wrong.id().contains("sk-sim"));
    assert_eq!(sim.stats().await.qa_reviews, 1);
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------
// (b) the request's shape

#[tokio::test]
async fn vision_request_shape() {
    let stub = StubServer::start(|_, _| clean_answer()).await;
    let mut c = cfg(stub.base(), "llava:13b");
    c.api_key = Some("sk-test-123".into());
    let png = clean();
    let r = qa::vision(c).review(&png, Path::new(UNUSED)).await;
    assert_eq!(r.outcome, Outcome::Clean, "{r:?}");

    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.auth.as_deref(), Some("Bearer sk-test-123"));
    let b = &req.body;
    assert_eq!(b["model"], "llava:13b");
    assert_eq!(b["temperature"], 0);

    let rf = &b["response_format"];
    assert_eq!(rf["type"], "json_schema");
    assert_eq!(rf["json_schema"]["name"], "qa_verdict");
    assert_eq!(rf["json_schema"]["strict"], true);
    let schema = &rf["json_schema"]["schema"];
    assert_eq!(
        schema["properties"]["verdict"]["enum"],
        json!(["clean", "flagged"])
    );
    assert_eq!(schema["properties"]["tells"]["type"], "array");
    assert_eq!(schema["properties"]["tells"]["items"]["type"], "string");
    assert_eq!(schema["properties"]["confidence"]["type"], "number");

    let messages = b["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().unwrap();
    for tell in TELLS {
        assert!(
            system.contains(tell),
            "system prompt lacks {tell:?}:\n{system}"
        );
    }
    assert!(system.contains("prompt adherence"), "{system}");
    assert!(system.contains("text, lettering"), "{system}");
    assert!(system.contains("JSON"), "{system}");

    assert_eq!(messages[1]["role"], "user");
    let parts = messages[1]["content"].as_array().unwrap();
    assert_eq!(parts[0]["type"], "text");
    assert_eq!(parts[1]["type"], "image_url");
    let url = parts[1]["image_url"]["url"].as_str().unwrap();
    let data = url.strip_prefix("data:image/png;base64,").unwrap();
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        png
    );
}

#[tokio::test]
async fn no_key_no_authorization_header_and_a_trailing_slash_is_fine() {
    let stub = StubServer::start(|_, _| clean_answer()).await;
    let r = qa::vision(cfg(format!("{}/", stub.base()), "m"))
        .review(&clean(), Path::new(UNUSED))
        .await;
    assert_eq!(r.outcome, Outcome::Clean, "{r:?}");
    let seen = stub.seen();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].auth, None);
}

// ---------------------------------------------------------------------------
// (c) answers that are not a verdict: retried, then unreviewed, never clean

async fn unreviewed_after_retries(answer: (u16, Value), detail_has: &str) {
    let stub = StubServer::start(move |_, _| answer.clone()).await;
    let r = qa::vision(cfg(stub.base(), "m"))
        .review(&clean(), Path::new(UNUSED))
        .await;
    assert_eq!(r.outcome, Outcome::Unreviewed, "{r:?}");
    assert!(
        r.detail.contains(detail_has),
        "detail {:?} lacks {detail_has:?}",
        r.detail
    );
    assert_eq!(stub.seen().len(), 3, "three attempts");
}

#[tokio::test]
async fn a_refusal_is_retried_then_unreviewed() {
    let refusal = completion(json!({
        "role": "assistant", "content": null, "refusal": "I can't help with that."
    }));
    unreviewed_after_retries((200, refusal), "refused").await;
}

#[tokio::test]
async fn prose_without_json_is_retried_then_unreviewed() {
    unreviewed_after_retries(
        says("The image looks fine to me, nothing wrong with the hands."),
        "no JSON object",
    )
    .await;
}

#[tokio::test]
async fn http_500_is_retried_then_unreviewed() {
    unreviewed_after_retries(api_error(500, "model crashed"), "500").await;
}

#[tokio::test]
async fn a_verdict_of_maybe_is_retried_then_unreviewed() {
    unreviewed_after_retries(
        says(r#"{"verdict": "maybe", "tells": [], "confidence": 0.5}"#),
        "maybe",
    )
    .await;
}

#[tokio::test]
async fn a_malformed_answer_then_a_good_one_is_used() {
    let stub = StubServer::start(|_, n| {
        if n == 0 {
            says("hmm")
        } else {
            says(r#"{"verdict": "flagged", "tells": ["extra or missing fingers"], "confidence": 0.8}"#)
        }
    })
    .await;
    let r = qa::vision(cfg(stub.base(), "m"))
        .review(&flawed(), Path::new(UNUSED))
        .await;
    assert_eq!(r.outcome, Outcome::Flagged, "{r:?}");
    assert_eq!(r.tells, vec!["extra or missing fingers".to_string()]);
    assert_eq!(r.confidence, Some(0.8));
    assert_eq!(stub.seen().len(), 2);
}

#[tokio::test]
async fn fenced_json_in_prose_is_read_and_flagged_without_tells_stays_flagged() {
    let stub = StubServer::start(|_, n| {
        if n == 0 {
            says("Sure! Here is my verdict:\n```json\n{\"verdict\": \"Flagged\", \"tells\": [\"two left or two right hands\"], \"confidence\": 0.7, \"note\": \"both hands {left}\"}\n```\nHope this helps.")
        } else {
            says(r#"{"verdict": "flagged", "tells": [], "confidence": 0.6}"#)
        }
    })
    .await;
    let reviewer = qa::vision(cfg(stub.base(), "m"));
    let r = reviewer.review(&flawed(), Path::new(UNUSED)).await;
    assert_eq!(r.outcome, Outcome::Flagged, "{r:?}");
    assert_eq!(r.tells, vec!["two left or two right hands".to_string()]);
    assert_eq!(r.detail, "both hands {left}");
    let r = reviewer.review(&flawed(), Path::new(UNUSED)).await;
    assert_eq!(r.outcome, Outcome::Flagged, "{r:?}");
    assert!(r.tells.is_empty());
    assert_eq!(stub.seen().len(), 2);
}

#[tokio::test]
async fn a_rejected_key_is_not_retried_and_not_echoed() {
    let stub =
        StubServer::start(|_, _| api_error(401, "Incorrect API key provided: sk-very-secret-key"))
            .await;
    let mut c = cfg(stub.base(), "m");
    c.api_key = Some("sk-very-secret-key".into());
    let r = qa::vision(c).review(&clean(), Path::new(UNUSED)).await;
    assert_eq!(r.outcome, Outcome::Unreviewed, "{r:?}");
    assert!(r.detail.contains("401"), "{}", r.detail);
    assert!(!r.detail.contains("sk-very-secret-key"), "{}", r.detail);
    assert_eq!(stub.seen().len(), 1);
}

#[tokio::test]
async fn an_unreachable_server_is_unreviewed() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut c = cfg(format!("http://127.0.0.1:{port}/v1"), "m");
    c.attempts = 2;
    let r = qa::vision(c).review(&clean(), Path::new(UNUSED)).await;
    assert_eq!(r.outcome, Outcome::Unreviewed, "{r:?}");
    assert!(r.detail.contains("2 attempt"), "{}", r.detail);
}

// ---------------------------------------------------------------------------
// (d) servers that do not take json_schema (or temperature 0)

#[tokio::test]
async fn json_schema_rejected_falls_back_to_json_object_and_remembers() {
    let stub = StubServer::start(|body, _| {
        if body["response_format"]["type"] == "json_schema" {
            api_error(400, "response_format type json_schema is not supported")
        } else {
            says(r#"{"verdict": "clean", "tells": [], "confidence": 0.95}"#)
        }
    })
    .await;
    let reviewer = qa::vision(cfg(stub.base(), "m"));
    let r = reviewer.review(&clean(), Path::new(UNUSED)).await;
    assert_eq!(r.outcome, Outcome::Clean, "{r:?}");
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body["response_format"]["type"], "json_schema");
    assert_eq!(seen[1].body["response_format"]["type"], "json_object");

    let r = reviewer.review(&clean(), Path::new(UNUSED)).await;
    assert_eq!(r.outcome, Outcome::Clean, "{r:?}");
    let seen = stub.seen();
    assert_eq!(seen.len(), 3, "the fallback is remembered");
    assert_eq!(seen[2].body["response_format"]["type"], "json_object");
}

#[tokio::test]
async fn a_400_that_survives_the_fallback_is_unreviewed_at_once() {
    let stub = StubServer::start(|_, _| api_error(400, "this model does not support images")).await;
    let r = qa::vision(cfg(stub.base(), "m"))
        .review(&clean(), Path::new(UNUSED))
        .await;
    assert_eq!(r.outcome, Outcome::Unreviewed, "{r:?}");
    assert!(r.detail.contains("does not support images"), "{}", r.detail);
    assert_eq!(stub.seen().len(), 2, "json_schema, then json_object");
}

#[tokio::test]
async fn temperature_rejected_is_dropped() {
    let stub = StubServer::start(|body, _| {
        if body.get("temperature").is_some() {
            api_error(
                400,
                "Unsupported value: 'temperature' does not support 0 with this model.",
            )
        } else {
            clean_answer()
        }
    })
    .await;
    let r = qa::vision(cfg(stub.base(), "m"))
        .review(&clean(), Path::new(UNUSED))
        .await;
    assert_eq!(r.outcome, Outcome::Clean, "{r:?}");
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body["response_format"]["type"], "json_schema");
}

// ---------------------------------------------------------------------------
// (e) the command reviewer

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Flags images whose file name contains `bad`; echoes its arguments as the note.
const JUDGE: &str = r#"for a; do img=$a; done
test -f "$img" || { echo "no such image: $img" >&2; exit 2; }
case "$img" in
  *bad*) printf '{"verdict": "flagged", "tells": ["extra or missing fingers"], "confidence": 0.8, "note": "args: %s"}\n' "$*" ;;
  *) printf 'checking...\n{"verdict": "clean", "tells": [], "confidence": 0.9, "note": "args: %s"}\n' "$*" ;;
esac"#;

#[tokio::test]
async fn command_reviewer_reads_the_verdict_from_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let judge = script(dir.path(), "judge.sh", JUDGE);
    let bad = dir.path().join("scene-bad 'c0'.png");
    let good = dir.path().join("scene-good.png");
    std::fs::write(&bad, flawed()).unwrap();
    std::fs::write(&good, clean()).unwrap();
    let reviewer = qa::command(
        format!("{} --strict", judge.display()),
        Duration::from_secs(5),
    );

    let r = reviewer.review(&flawed(), &bad).await;
    assert_eq!(r.outcome, Outcome::Flagged, "{r:?}");
    assert_eq!(r.tells, vec!["extra or missing fingers".to_string()]);
    assert!(
        r.detail.contains("--strict") && r.detail.contains("'c0'.png"),
        "{}",
        r.detail
    );

    let r = reviewer.review(&clean(), &good).await;
    assert_eq!(r.outcome, Outcome::Clean, "{r:?}");
    assert_eq!(r.confidence, Some(0.9));

    let r = reviewer
        .review(&clean(), &dir.path().join("missing.png"))
        .await;
    assert_eq!(r.outcome, Outcome::Unreviewed, "{r:?}");
    assert!(r.detail.contains("no such image"), "{}", r.detail);
}

#[tokio::test]
async fn command_reviewer_past_its_timeout_is_killed_and_unreviewed() {
    let dir = tempfile::tempdir().unwrap();
    // The reviewer and a process it started write their pids, then wait.
    let slow = script(
        dir.path(),
        "slow.sh",
        &format!(
            r#"echo $$ > '{d}/reviewer.pid'
sleep 120 &
echo $! > '{d}/helper.pid'
wait
echo '{{"verdict": "clean", "tells": []}}'"#,
            d = dir.path().display()
        ),
    );
    let img = dir.path().join("a.png");
    std::fs::write(&img, clean()).unwrap();
    let reviewer = qa::command(slow.display().to_string(), Duration::from_millis(300));
    let started = Instant::now();
    let r = reviewer.review(&clean(), &img).await;
    assert_eq!(r.outcome, Outcome::Unreviewed, "{r:?}");
    assert!(r.detail.contains("timed out"), "{}", r.detail);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Both are gone (a zombie waiting for its parent to reap it counts as
    // gone: it runs nothing), not merely left behind.
    for name in ["reviewer.pid", "helper.pid"] {
        let pid: u32 = std::fs::read_to_string(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .trim()
            .parse()
            .unwrap();
        crate::harness::wait_until(&format!("{name} ({pid}) to die"), || !running(pid));
    }
}

/// The process exists and is not a zombie.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn command_reviewer_printing_garbage_is_unreviewed() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.png");
    std::fs::write(&img, clean()).unwrap();
    let garbage = script(dir.path(), "garbage.sh", "echo 'looks great!'");
    let r = qa::command(garbage.display().to_string(), Duration::from_secs(5))
        .review(&clean(), &img)
        .await;
    assert_eq!(r.outcome, Outcome::Unreviewed, "{r:?}");

    let maybe = script(dir.path(), "maybe.sh", r#"echo '{"verdict": "maybe"}'"#);
    let r = qa::command(maybe.display().to_string(), Duration::from_secs(5))
        .review(&clean(), &img)
        .await;
    assert_eq!(r.outcome, Outcome::Unreviewed, "{r:?}");

    let failing = script(
        dir.path(),
        "failing.sh",
        r#"echo '{"verdict": "clean", "tells": []}'; echo 'model not loaded' >&2; exit 3"#,
    );
    let r = qa::command(failing.display().to_string(), Duration::from_secs(5))
        .review(&clean(), &img)
        .await;
    assert_eq!(r.outcome, Outcome::Unreviewed, "{r:?}");
    assert!(r.detail.contains("model not loaded"), "{}", r.detail);

    let r = qa::command(
        dir.path().join("nonexistent.sh").display().to_string(),
        Duration::from_secs(5),
    )
    .review(&clean(), &img)
    .await;
    assert_eq!(r.outcome, Outcome::Unreviewed, "{r:?}");
}

// ---------------------------------------------------------------------------
// (f) reviewer identity

#[test]
fn reviewer_ids_name_kind_model_host_and_prompt_version_but_no_key() {
    let mut a = cfg("https://api.openai.com/v1".into(), "gpt-4o-mini");
    a.api_key = Some("sk-secret-abc".into());
    let id_a = qa::vision(a.clone()).id();
    assert_eq!(
        id_a,
        format!("vision:gpt-4o-mini@api.openai.com#{PROMPT_VERSION}")
    );
    assert!(!id_a.contains("sk-secret"));

    let mut b = a.clone();
    b.model = "gpt-4o".into();
    assert_ne!(qa::vision(b).id(), id_a, "model is part of the id");

    let mut local = a.clone();
    local.base_url = "http://127.0.0.1:11434/v1".into();
    local.api_key = None;
    assert_eq!(
        qa::vision(local).id(),
        format!("vision:gpt-4o-mini@127.0.0.1:11434#{PROMPT_VERSION}")
    );

    // The key changes nothing; user info in the URL never shows.
    let mut c = a.clone();
    c.api_key = Some("another".into());
    c.base_url = "https://user:pw@api.openai.com/v1".into();
    assert_eq!(qa::vision(c).id(), id_a);

    assert_ne!(
        qa::vision_id("https://api.openai.com/v1", "gpt-4o-mini", "p2"),
        id_a,
        "prompt version is part of the id"
    );
    assert_eq!(
        qa::vision_id("https://api.openai.com/v1", "gpt-4o-mini", PROMPT_VERSION),
        id_a
    );

    let cmd = qa::command("./judge.sh --strict".into(), Duration::from_secs(1));
    assert_eq!(
        cmd.id(),
        format!("command:./judge.sh --strict#{PROMPT_VERSION}")
    );
    assert_ne!(
        qa::command("./other.sh".into(), Duration::from_secs(1)).id(),
        cmd.id()
    );
}

#[test]
fn reviews_round_trip_through_the_store_record() {
    let r = Review {
        outcome: Outcome::Flagged,
        tells: vec!["melted or garbled faces".into()],
        confidence: Some(0.7),
        detail: String::new(),
    };
    let v = r.to_verdict("vision:m@h#p1", 42);
    assert_eq!(v.verdict, Outcome::Flagged);
    assert_eq!(serde_json::to_value(&v).unwrap()["verdict"], "flagged");
    assert_eq!(Review::from_verdict(&v), r);
    assert!(r.is_cacheable());
    assert!(!Review::unreviewed("down").is_cacheable());
    assert_eq!(
        serde_json::to_value(Review::unreviewed("down")).unwrap()["outcome"],
        "unreviewed"
    );
    // A verdict string this version does not know reads as unreviewed.
    let odd: nbbuild_cache::Verdict =
        serde_json::from_value(serde_json::json!({"verdict": "weird"})).unwrap();
    assert_eq!(Review::from_verdict(&odd).outcome, Outcome::Unreviewed);
}

#[test]
fn parse_verdict_edge_cases() {
    let r = qa::parse_verdict(r#"{"verdict":"clean","tells":[],"confidence":"0.5"}"#).unwrap();
    assert_eq!((r.outcome, r.confidence), (Outcome::Clean, Some(0.5)));
    // A brace in prose before the object does not confuse it.
    let r = qa::parse_verdict(
        r#"note {not json} then {"verdict":"flagged","tells":["x"],"confidence":3}"#,
    )
    .unwrap();
    assert_eq!((r.outcome, r.confidence), (Outcome::Flagged, Some(1.0)));
    let r = qa::parse_verdict(
        "<think>maybe {\"verdict\": \"clean\"}? no, a sixth finger</think>\n{\"verdict\": \"flagged\", \"tells\": [\"extra or missing fingers\"]}",
    )
    .unwrap();
    assert_eq!((r.outcome, r.confidence), (Outcome::Flagged, None));
    assert!(qa::parse_verdict("").is_err());
    assert!(qa::parse_verdict(r#"{"tells": []}"#).is_err());
    assert!(qa::parse_verdict(r#"["clean"]"#).is_err());
}

#[test]
fn vision_from_env_needs_the_url() {
    // Only checks the shape: the environment is shared with other tests, so
    // this test does not set variables.
    if std::env::var_os("NBBUILD_QA_URL").is_none() {
        assert!(qa::vision_from_env().is_none());
    }
    let c = VisionConfig::new("http://127.0.0.1:11434/v1", "llava");
    assert_eq!((c.attempts, c.api_key.is_none()), (3, true));
}
