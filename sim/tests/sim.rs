//! The simulator over real HTTP on loopback.

use std::time::{Duration, Instant};

use base64::Engine as _;
use nbbuild_sim::{media, start, SimConfig, SimHandle, SimStats};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn fast() -> SimConfig {
    SimConfig {
        image_latency_ms: 20,
        video_latency_ms: 40,
        ..SimConfig::default()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn sim(config: SimConfig) -> SimHandle {
    start(config, 0).await.expect("the simulator starts")
}

async fn post(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = c.post(url).json(&body).send().await.expect("a response");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.get(url).send().await.expect("a response");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn submit_image(c: &reqwest::Client, s: &SimHandle, prompt: &str) -> String {
    let (code, body) = post(
        c,
        format!("{}/api/image/generate", s.url()),
        json!({"prompt": prompt}),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    body["task_id"].as_str().unwrap().to_string()
}

/// Poll until the task is completed or failed (or 404: returns that body
/// with status "lost").
async fn wait(c: &reqwest::Client, s: &SimHandle, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = get(c, format!("{}/api/status/{id}", s.url())).await;
        if code == 404 {
            return json!({"status": "lost", "body": body});
        }
        assert_eq!(code, 200, "{body}");
        let status = body["status"].as_str().unwrap();
        if status == "completed" || status == "failed" {
            return body;
        }
        assert!(Instant::now() < deadline, "task {id} never finished");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn download(c: &reqwest::Client, url: &str) -> Vec<u8> {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn image_submit_poll_download() {
    let s = sim(fast()).await;
    let c = client();
    let (code, body) = post(
        &c,
        format!("{}/api/image/generate", s.url()),
        json!({"prompt": "a lighthouse in a storm", "model": "nano_banana_2", "aspect_ratio": "9:16"}),
    )
    .await;
    assert_eq!(code, 202);
    let id = body["task_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 8);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(body["status"], "pending");
    assert_eq!(body["poll_url"], format!("/api/status/{id}"));

    // Right after the submit it is pending or running, with the base fields.
    let (code, first) = get(&c, format!("{}/api/status/{id}", s.url())).await;
    assert_eq!(code, 200);
    assert!(["pending", "running"].contains(&first["status"].as_str().unwrap()));
    assert_eq!(first["type"], "image");
    assert_eq!(first["prompt"], "a lighthouse in a storm");
    assert!(first["created_at"].is_string());
    assert!(first.get("results").is_none());

    let done = wait(&c, &s, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["completed_at"].is_string());
    let results = done["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    let url = results[0].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/api/files/", s.url())), "{url}");
    let png = download(&c, url).await;
    assert!(media::is_png(&png));
    let reader = png::Decoder::new(png.as_slice()).read_info().unwrap();
    assert!(
        reader.info().height > reader.info().width,
        "9:16 is portrait"
    );

    let (code, result) = get(&c, format!("{}/api/result/{id}", s.url())).await;
    assert_eq!(code, 200);
    assert_eq!(result["results"], done["results"]);

    let (code, list) = get(&c, format!("{}/api/tasks", s.url())).await;
    assert_eq!(code, 200);
    assert_eq!(list["tasks"][0]["task_id"], id.as_str());

    assert_eq!(
        s.stats().await,
        SimStats {
            image_submits: 1,
            video_submits: 0,
            qa_reviews: 0,
            peak_in_flight: 1,
            ..SimStats::default()
        }
    );
    s.shutdown().await;
}

#[tokio::test]
async fn video_submit_poll_download() {
    let s = sim(fast()).await;
    let c = client();
    let (code, body) = post(
        &c,
        format!("{}/api/video/generate", s.url()),
        json!({
            "prompt": "waves rolling onto a beach",
            "model": "veo_31_fast",
            "mode": "text_to_video",
            "aspect_ratio": "9:16",
            "video_length": 4,
            "resolution": ["720p", "1080p"],
        }),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let id = body["task_id"].as_str().unwrap().to_string();
    let done = wait(&c, &s, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["type"], "video");
    let results = done["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one file per resolution");
    for url in results {
        let mp4 = download(&c, url.as_str().unwrap()).await;
        assert!(media::is_mp4(&mp4));
        assert!(!media::is_png(&mp4));
    }
    assert_eq!(s.stats().await.video_submits, 1);
    s.shutdown().await;
}

#[tokio::test]
async fn candidates_of_one_prompt_differ_and_runs_repeat() {
    async fn two_candidates() -> (Vec<u8>, Vec<u8>) {
        let s = sim(fast()).await;
        let c = client();
        let a = submit_image(&c, &s, "a cat on a windowsill").await;
        let b = submit_image(&c, &s, "a cat on a windowsill").await;
        let (a, b) = (wait(&c, &s, &a).await, wait(&c, &s, &b).await);
        let a = download(&c, a["results"][0].as_str().unwrap()).await;
        let b = download(&c, b["results"][0].as_str().unwrap()).await;
        s.shutdown().await;
        (a, b)
    }
    let (a, b) = two_candidates().await;
    assert!(media::is_png(&a) && media::is_png(&b));
    assert_ne!(a, b, "two candidates of one prompt differ");
    let (a2, b2) = two_candidates().await;
    assert_eq!((a, b), (a2, b2), "the same run order gives the same bytes");
}

#[tokio::test]
async fn api_key_is_required_except_for_health_and_files() {
    let s = sim(SimConfig {
        api_key: Some("sekrit".into()),
        ..fast()
    })
    .await;
    let c = client();
    let url = format!("{}/api/image/generate", s.url());
    let r = c
        .post(&url)
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = c
        .post(&url)
        .header("X-API-Key", "wrong")
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(&url)
        .header("X-API-Key", "sekrit")
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();

    let status = format!("{}/api/status/{id}", s.url());
    assert_eq!(c.get(&status).send().await.unwrap().status(), 401);
    assert_eq!(
        c.get(format!("{}/api/tasks", s.url()))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        c.get(format!("{}/sim/stats", s.url()))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        c.get(format!("{}/api/health", s.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Poll with the key, then download without it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let done = loop {
        let body: Value = c
            .get(&status)
            .header("X-API-Key", "sekrit")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["status"] == "completed" {
            break body;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let png = download(&c, done["results"][0].as_str().unwrap()).await;
    assert!(media::is_png(&png));
    s.shutdown().await;
}

#[tokio::test]
async fn requests_are_validated_like_the_app() {
    let s = sim(fast()).await;
    let c = client();
    let image = format!("{}/api/image/generate", s.url());
    let video = format!("{}/api/video/generate", s.url());

    let (code, body) = post(&c, image.clone(), json!({"aspect_ratio": "1:1"})).await;
    assert_eq!(
        (code, body),
        (400, json!({"error": "Missing required field: prompt"}))
    );
    let (code, body) = post(&c, video.clone(), json!({"prompt": "p"})).await;
    assert_eq!((code, body), (400, json!({"error": "MISSING_MODEL"})));
    let (code, _) = post(
        &c,
        video.clone(),
        json!({"prompt": "p", "model": "veo_31_fast", "mode": "start_image"}),
    )
    .await;
    assert_eq!(code, 400, "start_image needs one reference");
    let png = media::still("ref", 1, 64, 64, false);
    let data_uri = format!("data:image/png;base64,{}", B64.encode(&png));
    let (code, _) = post(
        &c,
        video.clone(),
        json!({"prompt": "p", "model": "veo_31_fast", "mode": "text_to_video", "reference_images": [data_uri]}),
    )
    .await;
    assert_eq!(code, 400, "text_to_video takes no reference");
    let (code, body) = post(
        &c,
        video.clone(),
        json!({
            "prompt": "p", "model": "veo_31_lite_relaxed", "mode": "start_end_image",
            "reference_images": [data_uri, {"data": B64.encode(&png), "name": "end.png"}],
        }),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let (code, body) = post(
        &c,
        image.clone(),
        json!({"prompt": "p", "reference_images": [B64.encode(&png), data_uri, {"data": B64.encode(&png)}]}),
    )
    .await;
    assert_eq!(code, 202, "raw base64, data URI and objects: {body}");
    let (code, body) = post(
        &c,
        image.clone(),
        json!({"prompt": "p", "reference_images": ["not base64 at all!"]}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].is_string());
    let (code, _) = post(
        &c,
        image.clone(),
        json!({"prompt": "p", "aspect_ratio": "2:1"}),
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = post(
        &c,
        video.clone(),
        json!({"prompt": "p", "model": "veo_31_fast", "video_length": 5}),
    )
    .await;
    assert_eq!(code, 400);

    let r = c.post(&image).body("").send().await.unwrap();
    assert_eq!(r.status(), 400, "empty body");
    let r = c.post(&image).body("{nope").send().await.unwrap();
    assert_eq!(r.status(), 400, "not JSON");

    let big = format!(
        "{{\"prompt\": \"p\", \"reference_images\": [\"{}\"]}}",
        "A".repeat((50 << 20) + 16)
    );
    let r = c.post(&image).body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());

    let (code, body) = get(&c, format!("{}/api/status/deadbeef", s.url())).await;
    assert_eq!(
        (code, body),
        (404, json!({"error": "Task deadbeef not found"}))
    );
    assert_eq!(
        s.stats().await.image_submits + s.stats().await.video_submits,
        2,
        "only accepted submits count"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn rate_limit_every_nth_submit() {
    let s = sim(SimConfig {
        rate_limit_every: Some(2),
        ..fast()
    })
    .await;
    let c = client();
    let url = format!("{}/api/image/generate", s.url());
    let mut codes = Vec::new();
    for _ in 0..4 {
        let r = c
            .post(&url)
            .json(&json!({"prompt": "p"}))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
            assert_eq!(
                r.json::<Value>().await.unwrap(),
                json!({"error": "rate limited"})
            );
        }
    }
    assert_eq!(codes, [202, 429, 202, 429]);
    let stats = s.stats().await;
    assert_eq!(stats.image_submits, 2);
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.capacity_refused, 0);
    s.shutdown().await;
}

#[tokio::test]
async fn error_rate_answers_500() {
    let s = sim(SimConfig {
        error_rate: 1.0,
        ..fast()
    })
    .await;
    let c = client();
    let (code, body) = post(
        &c,
        format!("{}/api/image/generate", s.url()),
        json!({"prompt": "p"}),
    )
    .await;
    assert_eq!(code, 500);
    assert!(body["error"].is_string());
    let (code, _) = get(&c, format!("{}/api/status/deadbeef", s.url())).await;
    assert_eq!(code, 500);
    assert_eq!(s.stats().await.image_submits, 0);
    assert_eq!(s.stats().await.errors, 2, "both injected 500s are counted");
    s.shutdown().await;

    // A share in between: deterministic for a seed, and roughly that share.
    let s = sim(SimConfig {
        error_rate: 0.5,
        seed: 7,
        ..fast()
    })
    .await;
    let mut fails = 0;
    for _ in 0..40 {
        let (code, _) = get(&c, format!("{}/api/status/deadbeef", s.url())).await;
        assert!(code == 500 || code == 404);
        fails += (code == 500) as u32;
    }
    assert!((8..=32).contains(&fails), "{fails} of 40");
    assert_eq!(s.stats().await.errors, fails as u64);
    s.shutdown().await;
}

#[tokio::test]
async fn policy_word_fails_with_400() {
    let s = sim(SimConfig {
        policy_word: Some("forbidden".into()),
        ..fast()
    })
    .await;
    let c = client();
    let id = submit_image(&c, &s, "A FORBIDDEN scene").await;
    let done = wait(&c, &s, &id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error_code"], 400);
    assert_eq!(done["error"], "Prompt blocked by safety filter");
    assert!(done["error_detail"].is_string());
    let ok = submit_image(&c, &s, "a permitted scene").await;
    assert_eq!(wait(&c, &s, &ok).await["status"], "completed");
    s.shutdown().await;
}

#[tokio::test]
async fn timeout_word_fails_with_code_0_after_the_latency() {
    let s = sim(SimConfig {
        timeout_word: Some("slowpoke".into()),
        video_latency_ms: 60,
        ..fast()
    })
    .await;
    let c = client();
    let started = Instant::now();
    let (code, body) = post(
        &c,
        format!("{}/api/video/generate", s.url()),
        json!({"prompt": "a Slowpoke crossing", "model": "veo_31_fast"}),
    )
    .await;
    assert_eq!(code, 202);
    let done = wait(&c, &s, body["task_id"].as_str().unwrap()).await;
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error_code"], 0);
    assert_eq!(done["error"], "Timeout: no result generated");
    s.shutdown().await;
}

#[tokio::test]
async fn lose_every_nth_task_then_404() {
    let s = sim(SimConfig {
        lose_every: Some(2),
        ..fast()
    })
    .await;
    let c = client();
    let kept = submit_image(&c, &s, "one").await;
    let lost = submit_image(&c, &s, "two").await;
    assert_eq!(wait(&c, &s, &kept).await["status"], "completed");
    let gone = wait(&c, &s, &lost).await;
    assert_eq!(gone["status"], "lost");
    assert_eq!(
        gone["body"],
        json!({"error": format!("Task {lost} not found")})
    );
    assert_eq!(s.stats().await.image_submits, 2, "a lost task was accepted");
    assert_eq!(s.stats().await.lost, 1);
    let log = s.created().await;
    let forgotten: Vec<(&str, bool)> = log
        .iter()
        .map(|t| (t.task_id.as_str(), t.forgotten))
        .collect();
    assert_eq!(forgotten, [(kept.as_str(), false), (lost.as_str(), true)]);
    s.shutdown().await;
}

#[tokio::test]
async fn restart_forgets_every_task() {
    let s = sim(fast()).await;
    let c = client();
    let id = submit_image(&c, &s, "before the restart").await;
    let done = wait(&c, &s, &id).await;
    assert_eq!(s.stats().await.lost, 0);
    s.restart().await;
    let (code, _) = get(&c, format!("{}/api/status/{id}", s.url())).await;
    assert_eq!(code, 404);
    assert_eq!(s.stats().await.lost, 1, "every task held is forgotten");
    assert!(s.created().await[0].forgotten);
    // Files produced before the restart stay downloadable.
    let png = download(&c, done["results"][0].as_str().unwrap()).await;
    assert!(media::is_png(&png));

    // The HTTP form, on a pending task.
    let slow = sim(SimConfig {
        image_latency_ms: 5_000,
        ..fast()
    })
    .await;
    let id = submit_image(&c, &slow, "pending at restart").await;
    let (code, body) = post(&c, format!("{}/sim/restart", slow.url()), json!({})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["forgotten"], 1);
    assert_eq!(slow.stats().await.lost, 1);
    let (code, _) = get(&c, format!("{}/api/status/{id}", slow.url())).await;
    assert_eq!(code, 404);
    let (_, health) = get(&c, format!("{}/api/health", slow.url())).await;
    assert_eq!(
        (
            health["tasks_pending"].clone(),
            health["tasks_running"].clone()
        ),
        (json!(0), json!(0))
    );
    let again = submit_image(&c, &slow, "pending at restart").await;
    assert_ne!(again, id, "ids are never reused");
    s.shutdown().await;
    slow.shutdown().await;
}

#[tokio::test]
async fn stop_fails_the_task_with_499() {
    let s = sim(SimConfig {
        image_latency_ms: 5_000,
        slots: 1,
        ..fast()
    })
    .await;
    let c = client();
    let running = submit_image(&c, &s, "running").await;
    let pending = submit_image(&c, &s, "pending").await;
    for id in [&running, &pending] {
        let (code, _) = post(&c, format!("{}/api/stop/{id}", s.url()), json!({})).await;
        assert_eq!(code, 200);
        let (_, body) = get(&c, format!("{}/api/status/{id}", s.url())).await;
        assert_eq!(body["status"], "failed");
        assert_eq!(body["error_code"], 499);
    }
    let (_, health) = get(&c, format!("{}/api/health", s.url())).await;
    assert_eq!(health["tasks_running"], 0);
    assert_eq!(health["tasks_pending"], 0);
    s.shutdown().await;
}

#[tokio::test]
async fn drop_rate_one_drops_every_connection() {
    let s = sim(SimConfig {
        drop_rate: 1.0,
        ..fast()
    })
    .await;
    let c = client();
    let err = c
        .get(format!("{}/api/health", s.url()))
        .send()
        .await
        .expect_err("no response");
    assert!(err.status().is_none(), "{err}");
    let err = c
        .post(format!("{}/api/image/generate", s.url()))
        .json(&json!({"prompt": "p"}))
        .send()
        .await
        .expect_err("no response");
    assert!(err.status().is_none(), "{err}");
    // The harness's own endpoints are spared.
    let (code, _) = get(&c, format!("{}/sim/stats", s.url())).await;
    assert_eq!(code, 200);
    let stats = s.stats().await;
    assert_eq!(stats.dropped, 2);
    assert_eq!(
        stats.image_submits, 0,
        "a dropped submit reaches no handler"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn die_after_submits_refuses_connections() {
    let s = sim(SimConfig {
        die_after_submits: Some(2),
        ..fast()
    })
    .await;
    let c = client();
    submit_image(&c, &s, "one").await;
    submit_image(&c, &s, "two").await;
    // A kept-alive connection gets no answer any more.
    let err = c
        .get(format!("{}/api/health", s.url()))
        .send()
        .await
        .expect_err("the server is down");
    assert!(err.status().is_none(), "{err}");
    // And a new connection is refused.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let fresh = client();
    let err = fresh
        .get(format!("{}/api/health", s.url()))
        .send()
        .await
        .expect_err("the server is down");
    assert!(err.is_connect(), "{err:?}");
    assert!(tokio::net::TcpStream::connect(s.addr).await.is_err());
    assert_eq!(s.stats().await.image_submits, 2);
    assert_eq!(
        s.stats().await.dropped,
        1,
        "the request on the kept-alive connection"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn slots_queue_the_rest_as_pending() {
    let s = sim(SimConfig {
        slots: 2,
        image_latency_ms: 150,
        ..fast()
    })
    .await;
    let c = client();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(submit_image(&c, &s, &format!("prompt {i}")).await);
    }
    let (code, health) = get(&c, format!("{}/api/health", s.url())).await;
    assert_eq!(code, 200);
    assert_eq!(health["tasks_running"], 2, "{health}");
    assert_eq!(health["tasks_pending"], 3, "{health}");
    let (_, last) = get(&c, format!("{}/api/status/{}", s.url(), ids[4])).await;
    assert_eq!(last["status"], "pending");
    for id in &ids {
        assert_eq!(wait(&c, &s, id).await["status"], "completed");
    }
    let (_, health) = get(&c, format!("{}/api/health", s.url())).await;
    assert_eq!(
        (
            health["tasks_pending"].clone(),
            health["tasks_running"].clone()
        ),
        (json!(0), json!(0))
    );
    let stats = s.stats().await;
    assert_eq!(stats.peak_in_flight, 5);
    assert_eq!(stats.image_submits, 5);
    s.shutdown().await;
}

fn review_request(png: &[u8]) -> Value {
    json!({
        "model": "any-vision-model",
        "messages": [
            {"role": "system", "content": "You review images for anatomical tells. Answer JSON."},
            {"role": "user", "content": [
                {"type": "text", "text": "Review this image."},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", B64.encode(png))}},
            ]},
        ],
        "response_format": {"type": "json_object"},
    })
}

#[tokio::test]
async fn reviewer_flags_flawed_stills_and_clears_clean_ones() {
    let s = sim(SimConfig {
        flaw_rate: 1.0,
        ..fast()
    })
    .await;
    let c = client();
    let qa = format!("{}/v1/chat/completions", s.url());

    // A still the simulator generated with flaw_rate 1.0 carries the flaw.
    let id = submit_image(&c, &s, "a hand holding a cup").await;
    let done = wait(&c, &s, &id).await;
    let flawed = download(&c, done["results"][0].as_str().unwrap()).await;
    assert!(media::has_flaw(&flawed));
    let (code, body) = post(&c, qa.clone(), review_request(&flawed)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "any-vision-model");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(body["usage"]["total_tokens"].is_u64());
    let verdict: Value =
        serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        verdict,
        json!({"verdict": "flagged", "tells": ["extra finger on left hand"], "confidence": 0.93})
    );

    let clean = media::still("a hand holding a cup", 9, 384, 384, false);
    let (code, body) = post(&c, qa.clone(), review_request(&clean)).await;
    assert_eq!(code, 200);
    let verdict: Value =
        serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        verdict,
        json!({"verdict": "clean", "tells": [], "confidence": 0.97})
    );

    // No image, or one that does not decode: an OpenAI-style 400.
    let (code, body) = post(
        &c,
        qa.clone(),
        json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    assert_eq!(code, 400);
    assert!(body["error"]["message"].is_string(), "{body}");
    let (code, body) = post(&c, qa.clone(), review_request(b"not a png")).await;
    assert_eq!(code, 400);
    assert!(body["error"]["message"].is_string(), "{body}");

    assert_eq!(s.stats().await.qa_reviews, 2);
    s.shutdown().await;
}

#[tokio::test]
async fn reviewer_takes_a_bearer_key() {
    let s = sim(SimConfig {
        api_key: Some("k".into()),
        ..fast()
    })
    .await;
    let c = client();
    let qa = format!("{}/v1/chat/completions", s.url());
    let body = review_request(&media::still("p", 1, 64, 64, false));
    let r = c.post(&qa).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(&qa)
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(&qa)
        .header("X-API-Key", "k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.shutdown().await;
}

#[tokio::test]
async fn sim_stats_and_health_have_exact_shapes() {
    let s = sim(fast()).await;
    let c = client();
    let (code, stats) = get(&c, format!("{}/sim/stats", s.url())).await;
    assert_eq!(code, 200);
    assert_eq!(
        stats,
        json!({
            "image_submits": 0,
            "video_submits": 0,
            "qa_reviews": 0,
            "peak_in_flight": 0,
            "dropped": 0,
            "rate_limited": 0,
            "errors": 0,
            "lost": 0,
            "bad_files": 0,
            "answers_lost": 0,
            "capacity_refused": 0,
            "daily_quota_refused": 0,
        })
    );
    let text = c
        .get(format!("{}/sim/stats", s.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The keys in their documented order (this crate's serde_json sorts
    // maps, so read the order off the text).
    let keys = serde_json::from_str::<serde_json::Map<String, Value>>(&text)
        .unwrap()
        .len();
    assert_eq!(keys, 12, "{text}");
    let mut positions: Vec<usize> = [
        "image_submits",
        "video_submits",
        "qa_reviews",
        "peak_in_flight",
        "dropped",
        "rate_limited",
        "errors",
        "lost",
        "bad_files",
        "answers_lost",
        "capacity_refused",
        "daily_quota_refused",
    ]
    .iter()
    .map(|k| text.find(&format!("\"{k}\":")).expect(k))
    .collect();
    let shown = positions.clone();
    positions.sort();
    assert_eq!(positions, shown, "{text}");

    let (code, health) = get(&c, format!("{}/api/health", s.url())).await;
    assert_eq!(code, 200);
    let obj = health.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "server",
            "status",
            "tasks_pending",
            "tasks_running",
            "uptime"
        ]
    );
    assert_eq!(health["status"], "ok");
    assert_eq!(health["server"], "G-Labs Webhook");
    assert!(health["uptime"].is_u64());

    // The stats endpoint follows the handle's counters.
    let id = submit_image(&c, &s, "count me").await;
    wait(&c, &s, &id).await;
    let (_, stats) = get(&c, format!("{}/sim/stats", s.url())).await;
    let parsed: SimStats = serde_json::from_value(stats).unwrap();
    assert_eq!(parsed, s.stats().await);
    assert_eq!(parsed.image_submits, 1);
    s.shutdown().await;
}

#[tokio::test]
async fn bad_file_rate_serves_error_pages_and_counts_them() {
    let s = sim(SimConfig {
        bad_file_rate: 1.0,
        ..fast()
    })
    .await;
    let c = client();
    let id = submit_image(&c, &s, "a page instead of a png").await;
    let done = wait(&c, &s, &id).await;
    let url = done["results"][0].as_str().unwrap().to_string();
    for _ in 0..3 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "a tunnel's error page comes with 200");
        assert!(!media::is_png(&r.bytes().await.unwrap()));
    }
    assert_eq!(s.stats().await.bad_files, 3);
    s.shutdown().await;
}

/// Submit `prompt` and return the task id, or `None` when the connection
/// was dropped without an answer.
async fn try_submit(c: &reqwest::Client, s: &SimHandle, prompt: &str) -> Option<String> {
    match c
        .post(format!("{}/api/image/generate", s.url()))
        .json(&json!({ "prompt": prompt }))
        .send()
        .await
    {
        Ok(r) => {
            assert_eq!(r.status(), 202);
            let body: Value = r.json().await.unwrap();
            Some(body["task_id"].as_str().unwrap().to_string())
        }
        Err(e) => {
            assert!(e.status().is_none(), "{e}");
            None
        }
    }
}

#[tokio::test]
async fn a_lost_answer_still_creates_and_runs_the_task() {
    let s = sim(SimConfig {
        lose_answer_rate: 1.0,
        ..fast()
    })
    .await;
    let c = client();
    assert_eq!(try_submit(&c, &s, "paid but unanswered").await, None);
    let stats = s.stats().await;
    assert_eq!(stats.image_submits, 1, "the task was created (and billed)");
    assert_eq!(stats.answers_lost, 1);
    assert_eq!(stats.dropped, 0, "not a drop before the handler");
    // The task is there to be found in the list, with its prompt, and it
    // completes like any other.
    let (_, list) = get(&c, format!("{}/api/tasks", s.url())).await;
    assert_eq!(list["total"], 1, "{list}");
    let task = &list["tasks"][0];
    assert_eq!(task["prompt"], "paid but unanswered");
    assert_eq!(task["type"], "image");
    let id = task["task_id"].as_str().unwrap().to_string();
    let log = s.created().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].task_id, id);
    assert_eq!(log[0].kind, "image");
    assert_eq!(log[0].prompt, "paid but unanswered");
    assert_eq!(log[0].variant, 1);
    assert!(log[0].answer_lost && !log[0].forgotten);
    let done = wait(&c, &s, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let png = download(&c, done["results"][0].as_str().unwrap()).await;
    assert!(media::is_png(&png));
    s.shutdown().await;
}

#[tokio::test]
async fn lost_answers_are_a_share_deterministic_from_the_seed() {
    let config = SimConfig {
        lose_answer_rate: 0.3,
        seed: 11,
        ..fast()
    };
    let mut patterns = Vec::new();
    for _ in 0..2 {
        let s = sim(config.clone()).await;
        let c = client();
        let mut answered = Vec::new();
        // One at a time, so the rolls happen in a known order.
        for i in 0..30 {
            answered.push(try_submit(&c, &s, &format!("prompt {i}")).await.is_some());
        }
        let lost = answered.iter().filter(|a| !**a).count() as u64;
        let stats = s.stats().await;
        assert_eq!(stats.image_submits, 30, "every submit created its task");
        assert_eq!(stats.answers_lost, lost);
        let flags: Vec<bool> = s.created().await.iter().map(|t| !t.answer_lost).collect();
        assert_eq!(flags, answered, "the log says which answers were lost");
        assert!((2..=20).contains(&lost), "{lost} of 30 lost");
        patterns.push(answered);
        s.shutdown().await;
    }
    assert_eq!(
        patterns[0], patterns[1],
        "the same seed loses the same answers"
    );
}

#[tokio::test]
async fn capacity_refuses_submits_beyond_the_tasks_held() {
    let s = sim(SimConfig {
        capacity: Some(2),
        // Nothing ends by itself during the test: no timing to race.
        image_latency_ms: 60_000,
        ..fast()
    })
    .await;
    let c = client();
    let first = submit_image(&c, &s, "one").await;
    let second = submit_image(&c, &s, "two").await;
    let r = c
        .post(format!("{}/api/image/generate", s.url()))
        .json(&json!({"prompt": "three"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("capacity"));
    let stats = s.stats().await;
    assert_eq!(stats.image_submits, 2, "a refused submit creates nothing");
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.capacity_refused, 1);
    let (_, list) = get(&c, format!("{}/api/tasks", s.url())).await;
    assert_eq!(list["total"], 2);
    // Once a task ends (here: stopped), there is room again, for one.
    let (code, _) = post(&c, format!("{}/api/stop/{first}", s.url()), json!({})).await;
    assert_eq!(code, 200);
    submit_image(&c, &s, "three").await;
    let (code, _) = post(
        &c,
        format!("{}/api/image/generate", s.url()),
        json!({"prompt": "four"}),
    )
    .await;
    assert_eq!(code, 429);
    let stats = s.stats().await;
    assert_eq!(stats.image_submits, 3);
    assert_eq!(stats.capacity_refused, 2);
    let _ = second;
    s.shutdown().await;
}

#[tokio::test]
async fn capacity_holds_under_concurrent_submits() {
    // Pending tasks count too: 1 slot, capacity 3, 12 submits at once.
    let s = sim(SimConfig {
        capacity: Some(3),
        slots: 1,
        image_latency_ms: 60_000,
        ..fast()
    })
    .await;
    let c = client();
    let url = format!("{}/api/image/generate", s.url());
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..12 {
        let c = c.clone();
        let url = url.clone();
        sends.spawn(async move {
            c.post(url)
                .json(&json!({ "prompt": format!("burst {i}") }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let mut codes = sends.join_all().await;
    codes.sort();
    assert_eq!(
        codes,
        [202, 202, 202, 429, 429, 429, 429, 429, 429, 429, 429, 429]
    );
    let stats = s.stats().await;
    assert_eq!(stats.image_submits, 3);
    assert_eq!(stats.capacity_refused, 9);
    assert_eq!(stats.rate_limited, 9);
    assert_eq!(stats.peak_in_flight, 3);
    s.shutdown().await;
}

/// The Google room: Google's shapes for the key check, an inline still
/// after a thought image, the per-day quota, and clips through an
/// operation and a redirect that wants the key.
#[tokio::test]
async fn the_google_room_answers_in_geminis_shapes() {
    let s = sim(SimConfig {
        api_key: Some("k".into()),
        daily_quota: Some(1),
        ..fast()
    })
    .await;
    // No redirects followed: the test reads the 302 itself.
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (code, body) = get(&c, format!("{}/v1beta/models", s.url())).await;
    assert_eq!(code, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(body["error"]["details"][0]["reason"], "API_KEY_INVALID");

    let still = json!({"contents": [{"parts": [{"text": "a cat"}]}],
        "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "9:16", "imageSize": "1K"}}});
    let send = |body: Value| {
        c.post(format!(
            "{}/v1beta/models/gemini-3.1-flash-image:generateContent",
            s.url()
        ))
        .header("x-goog-api-key", "k")
        .json(&body)
        .send()
    };
    let r = send(still.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let parts = b["candidates"][0]["content"]["parts"].as_array().unwrap();
    assert_eq!(parts.iter().filter(|p| p["thought"] == true).count(), 2);
    let last = parts.last().unwrap();
    assert_eq!(last["inlineData"]["mimeType"], "image/png");
    // Past the per-day quota: 429 with a PerDay QuotaFailure, nothing created.
    let r = send(still).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(
        r.headers().get("retry-after").is_none(),
        "Google sends no Retry-After"
    );
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(b["error"]["details"][0]["violations"][0]["quotaId"]
        .as_str()
        .unwrap()
        .contains("PerDay"));
    let st = s.stats().await;
    assert_eq!((st.image_submits, st.daily_quota_refused), (1, 1));
    s.shutdown().await;

    let s = sim(SimConfig {
        api_key: Some("k".into()),
        ..fast()
    })
    .await;
    let r = c
        .post(format!("{}/v1beta/models/veo-3.1-fast-generate-preview:predictLongRunning", s.url()))
        .header("x-goog-api-key", "k")
        .json(&json!({"instances": [{"prompt": "a walk"}], "parameters": {"aspectRatio": "9:16", "durationSeconds": 4}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let name = r.json::<Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("models/veo-3.1-fast-generate-preview/operations/"));
    let uri = loop {
        let r = c
            .get(format!("{}/v1beta/{name}", s.url()))
            .header("x-goog-api-key", "k")
            .send()
            .await
            .unwrap();
        let b: Value = r.json().await.unwrap();
        if b["done"] == true {
            break b["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]
                .as_str()
                .unwrap()
                .to_string();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        c.get(&uri).send().await.unwrap().status(),
        403,
        "the download wants the key"
    );
    let r = c
        .get(&uri)
        .header("x-goog-api-key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let clip = c
        .get(format!("{}{to}", s.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(nbbuild_sim::media::is_mp4(&clip));
    // An unknown model is Google's 404.
    let r = c
        .post(format!(
            "{}/v1beta/models/veo-2.0-generate-001:predictLongRunning",
            s.url()
        ))
        .header("x-goog-api-key", "k")
        .json(&json!({"instances": [{"prompt": "a walk"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(s.stats().await.video_submits, 1);
    s.shutdown().await;
}
