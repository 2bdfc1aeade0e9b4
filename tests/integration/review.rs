//! `nbbuild review` and `nbbuild picks` (issue 13): the real binary serving
//! the real store over loopback, driven by raw HTTP (the security rules,
//! the JSON API) and by headless Chromium (tests/browser/review.mjs).
//! Spending is checked against the simulator's own counts.

use crate::harness::{fast_sim, node_mut, props, Sim, Test};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const C: &str = "2"; // candidates per task in these tests

/// The demo flow, built against `sim` with 2 candidates.
fn built() -> (Sim, Test) {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    let r = t.build(&sim, &["--candidates", C]);
    r.assert_code(0);
    assert_eq!(r.json()["tasks"]["built"], 7);
    (sim, t)
}

/// A running `nbbuild review`; killed on drop.
struct Server {
    child: Child,
    url: String,
    port: u16,
    cookie: String,
    csrf: String,
    stderr: std::path::PathBuf,
}

impl Server {
    fn start(t: &Test, sim: &Sim, extra: &[&str]) -> Server {
        let stderr = t
            .path()
            .join(format!("review-{}.stderr", fastrand::u32(..)));
        let mut args = vec!["review", "--candidates", C, "--server", sim.url.as_str()];
        args.extend_from_slice(extra);
        let mut cmd: Command = t.command(&args);
        cmd.env("NBBUILD_BACKOFF_MS", "20")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()));
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_string();
        assert!(
            url.starts_with("http://") && url.contains("/?token="),
            "the first stdout line is the URL, got {url:?}; stderr:\n{}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        let port: u16 = url
            .split(':')
            .nth(2)
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        let mut s = Server {
            child,
            url,
            port,
            cookie: String::new(),
            csrf: String::new(),
            stderr,
        };
        let path = s.url.split_once(&format!(":{port}")).unwrap().1.to_string();
        let r = s.raw("GET", &path, &[], "");
        assert_eq!(r.status, 303, "the token buys a cookie");
        let set = r.header("set-cookie").expect("a Set-Cookie").to_string();
        s.cookie = set.split(';').next().unwrap().to_string();
        let page = s.get("/");
        assert_eq!(page.status, 200);
        let html = page.text();
        let i = html.find("nbbuild-csrf\" content=\"").unwrap() + 23;
        s.csrf = html[i..i + 64].to_string();
        s
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// One raw HTTP/1.1 request with exactly these headers (plus Host unless given).
    fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req += &format!("Host: {}\r\n", self.host());
        }
        for (k, v) in headers {
            req += &format!("{k}: {v}\r\n");
        }
        req += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        Resp::parse(&buf)
    }

    fn get(&self, path: &str) -> Resp {
        self.raw("GET", path, &[("Cookie", &self.cookie)], "")
    }

    fn post(&self, path: &str, body: &Value) -> Resp {
        self.raw(
            "POST",
            path,
            &[
                ("Cookie", &self.cookie),
                ("X-CSRF-Token", &self.csrf),
                ("Content-Type", "application/json"),
                ("Origin", &format!("http://{}", self.host())),
            ],
            &body.to_string(),
        )
    }

    fn state(&self) -> Value {
        let r = self.get("/api/state");
        assert_eq!(r.status, 200);
        r.json()
    }

    fn task(&self, name: &str, kind: &str) -> Value {
        self.state()["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name && t["kind"] == kind)
            .unwrap_or_else(|| panic!("no task {kind} {name}"))
            .clone()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Run the browser script with these steps; its JSON result.
    fn browser(&self, steps: &[&str]) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/review.mjs");
        let out = Command::new("node")
            .arg(&script)
            .arg(&self.url)
            .args(steps)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run node ({e}): install Node.js, then run scripts/test (it installs chromium and playwright-core)")
            });
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the browser test failed (exit {:?}); a missing browser or playwright-core is a failure, \
             `scripts/test` installs both\nstdout:\n{stdout}\nstderr:\n{}\nserver stderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            self.stderr()
        );
        serde_json::from_str(stdout.trim()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn parse(buf: &[u8]) -> Resp {
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response");
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = buf[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
        {
            let mut out = Vec::new();
            let mut rest = &body[..];
            while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
                let n = usize::from_str_radix(String::from_utf8_lossy(&rest[..p]).trim(), 16)
                    .unwrap_or(0);
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&rest[p + 2..p + 2 + n]);
                rest = &rest[p + 2 + n + 2..];
            }
            body = out;
        }
        Resp {
            status,
            headers,
            body,
        }
    }
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `nbbuild plan --json`: the stale tasks as `kind:name`.
fn stale(t: &Test) -> BTreeSet<String> {
    let r = t.run(&["plan", "--candidates", C, "--json"]);
    r.assert_code(0);
    r.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["status"] == "stale")
        .map(|x| {
            format!(
                "{}:{}",
                x["kind"].as_str().unwrap(),
                x["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Wait (bounded) until the page's re-roll is over.
fn wait_idle(s: &Server) {
    crate::harness::wait_until("the re-roll to finish", || s.state()["busy"].is_null());
    assert!(s.state()["busy"].is_null(), "the re-roll did not end");
}

// ----------------------------------------------------------------------
// security

#[test]
fn review_binds_loopback_and_swaps_the_token_for_a_strict_cookie() {
    let (sim, t) = built();
    let s = Server::start(&t, &sim, &[]);
    assert!(s.url.starts_with("http://127.0.0.1:"), "{}", s.url);
    // The listening socket is 127.0.0.1 only (/proc/net/tcp: 0100007F).
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let listen: Vec<&str> = tcp
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[3] == "0A" && f[1].ends_with(&format!(":{:04X}", s.port))
        })
        .collect();
    assert_eq!(listen.len(), 1, "{tcp}");
    assert!(listen[0]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .starts_with("0100007F:"));

    // No cookie, a wrong token: refused.
    assert_eq!(s.raw("GET", "/", &[], "").status, 403);
    assert_eq!(s.raw("GET", "/api/state", &[], "").status, 403);
    assert_eq!(s.raw("GET", "/?token=0123", &[], "").status, 403);
    // The token's answer: a cookie (HttpOnly, SameSite=Strict) and a redirect dropping the token.
    let token = s.url.split("token=").nth(1).unwrap();
    let r = s.raw("GET", &format!("/?token={token}"), &[], "");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/"));
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    // A cookie for another server's port does not open this one.
    let other = s.cookie.replacen(&format!("_{}=", s.port), "_1=", 1);
    assert_eq!(
        s.raw("GET", "/api/state", &[("Cookie", &other)], "").status,
        403
    );

    let page = s.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(page.text().contains("data-action=\"confirm-reroll\""));
}

#[test]
fn review_refuses_rebound_hosts_cross_origin_posts_and_sends_no_cors() {
    let (sim, t) = built();
    let s = Server::start(&t, &sim, &[]);
    let c = ("Cookie", s.cookie.as_str());
    // DNS rebinding: the right cookie under another name is refused.
    for (host, ok) in [
        (format!("127.0.0.1:{}", s.port), true),
        (format!("localhost:{}", s.port), true),
        (format!("evil.example:{}", s.port), false),
        (format!("127.0.0.1.nip.io:{}", s.port), false),
        (format!("127.0.0.1:{}", s.port + 1), false),
    ] {
        let r = s.raw("GET", "/api/state", &[c, ("Host", &host)], "");
        assert_eq!(r.status == 200, ok, "Host {host}: {}", r.status);
    }
    // No CORS, whatever the Origin says, and no preflight answer.
    let r = s.raw(
        "GET",
        "/api/state",
        &[c, ("Origin", "http://evil.example")],
        "",
    );
    assert!(
        r.headers
            .iter()
            .all(|(k, _)| !k.starts_with("access-control-")),
        "{:?}",
        r.headers
    );
    let r = s.raw(
        "OPTIONS",
        "/api/flag",
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    );
    assert_eq!(r.status, 405);
    assert!(r
        .headers
        .iter()
        .all(|(k, _)| !k.starts_with("access-control-")));

    // State changes: POST only, with the CSRF token, JSON, from this origin.
    let body = json!({"task": "1-4-r1", "candidate": 1, "flagged": true}).to_string();
    let csrf = ("X-CSRF-Token", s.csrf.as_str());
    let ct = ("Content-Type", "application/json");
    let own = format!("http://{}", s.host());
    let refused: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![c, ct], 403),                           // no CSRF token
        (vec![c, ct, ("X-CSRF-Token", "00")], 403),   // a wrong one
        (vec![c, csrf, ct, ("Origin", "null")], 403), // sandboxed frame
        (vec![c, csrf, ct, ("Origin", "http://evil.example")], 403),
        (vec![c, csrf, ct, ("Sec-Fetch-Site", "cross-site")], 403),
        (vec![c, csrf, ("Content-Type", "text/plain")], 415), // a simple form post
        (vec![csrf, ct], 403),                                // no session
    ];
    for (h, code) in &refused {
        let r = s.raw("POST", "/api/flag", h, &body);
        assert_eq!(r.status, *code, "{h:?}: {}", r.text());
    }
    assert_eq!(
        s.raw("GET", "/api/flag", &[c], "").status,
        405,
        "no state change by GET"
    );
    assert_eq!(stale(&t), set(&[]), "no refused request changed anything");
    let r = s.raw("POST", "/api/flag", &[c, csrf, ct, ("Origin", &own)], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stale(&t), set(&["image:b-roll-product-row1"]));
}

#[test]
fn media_is_served_by_content_hash_with_ranges_and_no_path_reaches_the_disk() {
    let (sim, t) = built();
    let s = Server::start(&t, &sim, &[]);
    let clip = s.task("scene02", "video");
    let object = clip["candidates"][0]["object"]
        .as_str()
        .unwrap()
        .to_string();
    let src = clip["candidates"][0]["src"].as_str().unwrap().to_string();
    assert_eq!(src, format!("/media/{object}"));
    let file = t
        .path()
        .join(".nbbuild/objects")
        .join(&object[..2])
        .join(&object[2..]);
    let bytes = std::fs::read(&file).unwrap();
    let full = s.get(&src);
    assert_eq!(full.status, 200);
    assert_eq!(full.header("content-type"), Some("video/mp4"));
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    assert_eq!(full.body, bytes);
    let c = ("Cookie", s.cookie.as_str());
    let r = s.raw("GET", &src, &[c, ("Range", "bytes=10-109")], "");
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 10-109/{}", bytes.len()).as_str())
    );
    assert_eq!(r.body, bytes[10..110]);
    let r = s.raw("GET", &src, &[c, ("Range", "bytes=-16")], "");
    assert_eq!(r.body, bytes[bytes.len() - 16..]);
    let r = s.raw(
        "GET",
        &src,
        &[c, ("Range", &format!("bytes={}-", bytes.len()))],
        "",
    );
    assert_eq!(r.status, 416);
    // Only hashes the page was shown; never a path.
    let unknown = "0".repeat(64);
    for p in [
        format!("/media/{unknown}"),
        "/media/..%2f..%2fad.nbflow".to_string(),
        "/media/../ad.nbflow".to_string(),
        "/ad.nbflow".to_string(),
        "/.nbbuild/LOCK".to_string(),
        format!("/media/{}", &object[..63]),
    ] {
        let r = s.get(&p);
        assert_eq!(r.status, 404, "{p}");
        assert!(!r.text().contains("ducted-project"), "{p}");
    }
}

#[test]
fn a_non_loopback_host_is_served_with_a_warning() {
    let (sim, t) = built();
    let s = Server::start(&t, &sim, &["--host", "0.0.0.0"]);
    assert!(
        s.stderr()
            .contains("warning: serving on 0.0.0.0, not loopback"),
        "{}",
        s.stderr()
    );
    let c = ("Cookie", s.cookie.as_str());
    let evil = format!("evil.example:{}", s.port);
    assert_eq!(
        s.raw("GET", "/api/state", &[c, ("Host", &evil)], "").status,
        403
    );
    assert_eq!(s.get("/api/state").status, 200);
}

// ----------------------------------------------------------------------
// the API: picks, flags, quotes, the store

#[test]
fn a_pick_writes_patchworks_fields_keeps_a_backup_and_never_overwrites_a_changed_file() {
    let (sim, t) = built();
    let s = Server::start(&t, &sim, &[]);
    let before = t.read("ad.nbflow");
    let rev = s.state()["flow"]["rev"].as_str().unwrap().to_string();
    let r = s.post(
        "/api/pick",
        &json!({"task": "0-3", "candidate": 2, "rev": rev}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let value = r.json()["value"].as_str().unwrap().to_string();
    let flow: Value = serde_json::from_str(&t.read("ad.nbflow")).unwrap();
    let gate = props(&flow, 0, 4);
    assert_eq!(gate["_lastApprovedData"], json!(value));
    assert_eq!(gate["lastData"], json!(value));
    assert_eq!(gate["_savedApprovalImages"], json!([value]));
    assert_eq!(gate["galleryImages"][1], json!(value));
    assert_eq!(gate["galleryIndex"], 1);
    // By content: the written file holds candidate 2's bytes.
    let c2 = s.task("scene01", "image")["candidates"][1]["object"]
        .as_str()
        .unwrap()
        .to_string();
    let (h, _) = nbbuild_cache::hash_file(&t.path().join(&value)).unwrap();
    assert_eq!(h, c2);
    assert_eq!(s.task("scene01", "image")["pick"]["candidate"], 2);
    // Everything else is the same JSON, in the same order.
    let mut expect: Value = serde_json::from_str(&before).unwrap();
    for k in [
        "_lastApprovedData",
        "lastData",
        "_savedApprovalImages",
        "galleryImages",
        "_savedGalleryImages",
        "galleryIndex",
        "_savedGalleryIndex",
    ] {
        node_mut(&mut expect, 0, 4)["properties"][k] = gate[k].clone();
    }
    assert_eq!(
        serde_json::to_string(&expect).unwrap(),
        serde_json::to_string(&flow).unwrap()
    );
    // The previous version is kept.
    let backups: Vec<_> = std::fs::read_dir(t.path().join(".nbbuild/backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), before);

    // The file changes on disk (PatchWork saved it): a pick from the
    // page's older read is refused and the file is left as it is.
    let rev2 = r.json()["rev"].as_str().unwrap().to_string();
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 0, 1)["properties"]["text"] = json!("edited in PatchWork")
    });
    let theirs = t.read("ad.nbflow");
    let r = s.post(
        "/api/pick",
        &json!({"task": "0-3", "candidate": 1, "rev": rev2}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["reload"], true);
    assert_eq!(t.read("ad.nbflow"), theirs);
}

#[test]
fn a_stale_quote_is_refused_and_nothing_is_spent() {
    let (sim, t) = built();
    let s = Server::start(&t, &sim, &[]);
    let q = s.post("/api/quote", &json!({"task": "0-3"}));
    assert_eq!(q.status, 200, "{}", q.text());
    let q = q.json();
    assert_eq!(q["spend"]["calls"]["image"], 2);
    assert_eq!(q["spend"]["credits"], 2.0);
    let inv: BTreeSet<String> = q["invalidates"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            format!(
                "{}:{}",
                x["kind"].as_str().unwrap(),
                x["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(inv, set(&["image:scene02", "video:scene02"]));
    // Prices change after the quote: what it said is no longer what would be spent.
    std::fs::write(
        t.path().join("nbbuild.toml"),
        "[prices]\nnano_banana_2 = 3.0\n",
    )
    .unwrap();
    let before = sim.stats();
    let r = s.post(
        "/api/reroll",
        &json!({"task": "0-3", "quote": q["id"], "rev": q["rev"]}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let r = r.json();
    assert_eq!(r["stale_quote"], true);
    assert_eq!(r["quote"]["spend"]["credits"], 6.0);
    assert_ne!(r["quote"]["id"], q["id"]);
    wait_idle(&s);
    assert_eq!(
        sim.stats().image_submits,
        before.image_submits,
        "nothing was spent"
    );
    assert!(s.state()["busy"].is_null());
}

#[test]
fn read_only_serves_the_page_and_refuses_every_action() {
    let (sim, t) = built();
    let s = Server::start(&t, &sim, &["--read-only"]);
    let st = s.state();
    assert_eq!(st["read_only"], true);
    let before = t.read("ad.nbflow");
    let rev = st["flow"]["rev"].clone();
    for (path, body) in [
        (
            "/api/pick",
            json!({"task": "0-3", "candidate": 2, "rev": rev}),
        ),
        (
            "/api/flag",
            json!({"task": "0-3", "candidate": 2, "flagged": true}),
        ),
        (
            "/api/reroll",
            json!({"task": "0-3", "quote": "q-x", "rev": rev}),
        ),
    ] {
        assert_eq!(s.post(path, &body).status, 403, "{path}");
    }
    assert_eq!(t.read("ad.nbflow"), before);
    assert_eq!(stale(&t), set(&[]));
}

#[test]
fn the_review_server_never_blocks_a_build_from_another_terminal() {
    let (sim, t) = built();
    let s = Server::start(&t, &sim, &[]);
    let old = s.task("scene01", "image")["key"].clone();
    // Another terminal edits and builds while the page is open.
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 0, 1)["properties"]["text"] = json!("a new kitchen prompt")
    });
    let r = t.build(&sim, &["--candidates", C]);
    r.assert_code(0);
    assert_eq!(r.json()["calls"]["image"], 4, "scene01 and scene02");
    let now = s.task("scene01", "image");
    assert_ne!(now["key"], old, "the page shows the new build");
    assert_eq!(now["state"], "fresh");
    // While another process holds the store, the page says so and shows
    // what it read before instead of failing.
    let held = nbbuild_cache::Store::open(&t.path().join(".nbbuild")).unwrap();
    let st = s.state();
    assert!(
        st["store"]["note"]
            .as_str()
            .unwrap_or("")
            .contains("a build is running"),
        "{}",
        st["store"]
    );
    assert_eq!(st["tasks"].as_array().unwrap().len(), 7);
    let rev = st["flow"]["rev"].clone();
    let r = s.post(
        "/api/pick",
        &json!({"task": "0-3", "candidate": 2, "rev": rev}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    drop(held);
    assert!(s.state()["store"]["note"].is_null());
}

#[test]
fn picks_lists_every_gate_keyed_by_tab_and_node_id() {
    let (sim, t) = built();
    {
        let s = Server::start(&t, &sim, &[]);
        let rev = s.state()["flow"]["rev"].clone();
        let r = s.post(
            "/api/pick",
            &json!({"task": "0-3", "candidate": 2, "rev": rev}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = t.run(&["picks", "--json", "--candidates", C]);
    r.assert_code(0);
    let rows = r.json()["picks"].as_array().unwrap().clone();
    let key: Vec<(String, i64, String, Value)> = rows
        .iter()
        .map(|x| {
            (
                x["tab"].as_str().unwrap().to_string(),
                x["node_id"].as_i64().unwrap(),
                x["status"].as_str().unwrap().to_string(),
                x["candidate"].clone(),
            )
        })
        .collect();
    assert_eq!(
        key,
        vec![
            ("Mainbody".into(), 4, "picked".into(), json!(2)),
            ("Mainbody".into(), 7, "pending".into(), Value::Null),
            ("Mainbody".into(), 10, "pending".into(), Value::Null),
            ("BRoll".into(), 5, "pending".into(), Value::Null),
            ("BRoll".into(), 8, "picked".into(), Value::Null),
            ("BRoll".into(), 11, "pending".into(), Value::Null),
        ]
    );
    assert_eq!(rows[4]["pick"], "refs/scene09-take2.png");
    assert_eq!(rows[0]["upstream"], "scene01");
    let csv = t.run(&["picks", "--csv", "--candidates", C]);
    csv.assert_code(0);
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "tab,node_id,title,upstream,kind,status,candidate,pick"
    );
    assert_eq!(lines.len(), 7);
    assert_eq!(
        lines[1],
        format!(
            "Mainbody,4,Approve scene 1,scene01,image,picked,2,{}",
            rows[0]["pick"].as_str().unwrap()
        )
    );
}

#[test]
fn export_writes_a_static_page_with_its_media() {
    let (_sim, t) = built();
    let r = t.run(&["review", "--candidates", C, "--export", "shared"]);
    r.assert_code(0);
    let dir = t.path().join("shared");
    for f in ["index.html", "app.js", "app.css", "state.js"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let js = std::fs::read_to_string(dir.join("state.js")).unwrap();
    let state: Value = serde_json::from_str(
        js.trim()
            .strip_prefix("window.NBBUILD_STATE = ")
            .unwrap()
            .strip_suffix(';')
            .unwrap(),
    )
    .unwrap();
    assert_eq!(state["read_only"], true);
    let mut srcs = BTreeSet::new();
    for task in state["tasks"].as_array().unwrap() {
        for c in task["candidates"].as_array().unwrap() {
            srcs.insert(c["src"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(srcs.len(), 14, "7 tasks, 2 candidates each");
    for src in &srcs {
        let p = dir.join(src);
        let (h, _) = nbbuild_cache::hash_file(&p).unwrap();
        assert!(src.contains(&h), "{src} holds its own bytes");
    }
}

// ----------------------------------------------------------------------
// in a real browser

#[test]
fn in_a_browser_every_image_loads_and_a_keyboard_pick_stales_exactly_its_consumers() {
    let (sim, t) = built();
    let s = Server::start(&t, &sim, &[]);
    let out = s.browser(&["images", "videos:scene02", "pick:scene01:image:2"]);
    let steps = out["steps"].as_array().unwrap();
    assert_eq!(steps[0]["tasks"], 5);
    assert_eq!(steps[0]["images"], 10);
    assert_eq!(
        steps[0]["loaded"], 10,
        "every candidate image loaded: {out}"
    );
    assert_eq!(steps[1]["videos"], 2);
    assert_eq!(steps[2]["action"], "pick:0-3:2", "{out}");
    assert_eq!(steps[2]["picked"], json!([2]));
    assert_eq!(out["console_errors"], json!([]), "{out}");
    let flow: Value = serde_json::from_str(&t.read("ad.nbflow")).unwrap();
    let pick = props(&flow, 0, 4)["_lastApprovedData"]
        .as_str()
        .unwrap()
        .to_string();
    let c2 = s.task("scene01", "image")["candidates"][1]["object"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        nbbuild_cache::hash_file(&t.path().join(&pick)).unwrap().0,
        c2
    );
    // Exactly what consumes scene01's pick: scene02's still, and the clip
    // whose end frame it is (and whose start frame follows scene02).
    assert_eq!(stale(&t), set(&["image:scene02", "video:scene02"]));
}

#[test]
fn in_a_browser_picking_the_auto_pick_leaves_everything_fresh() {
    let (sim, t) = built();
    let s = Server::start(&t, &sim, &[]);
    let k = s.task("scene01", "image")["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["auto_pick"] == true)
        .unwrap()["k"]
        .as_u64()
        .unwrap();
    let out = s.browser(&[&format!("pick:scene01:image:{k}")]);
    assert_eq!(out["steps"][0]["picked"], json!([k]), "{out}");
    assert!(
        props(&serde_json::from_str(&t.read("ad.nbflow")).unwrap(), 0, 4)["_lastApprovedData"]
            .is_string()
    );
    assert_eq!(stale(&t), set(&[]));
    let r = t.build(&sim, &["--candidates", C]);
    r.assert_code(0);
    assert_eq!(r.json()["calls"]["image"], 0);
}

#[test]
fn in_a_browser_a_flag_makes_the_task_stale_and_the_next_build_rerolls_only_it() {
    let (sim, t) = built();
    let s = Server::start(&t, &sim, &[]);
    let out = s.browser(&["flag:b-roll-product-row1:image:2"]);
    assert_eq!(out["steps"][0]["action"], "flag:1-4-r1:2", "{out}");
    assert_eq!(out["steps"][0]["flagged"], json!([2]));
    assert_eq!(stale(&t), set(&["image:b-roll-product-row1"]));
    let v = &s.task("b-roll-product-row1", "image")["candidates"][1]["qa"];
    assert_eq!(v["reviewer"], "human");
    let before = sim.stats().image_submits;
    let r = t.build(&sim, &["--candidates", C]);
    r.assert_code(0);
    assert_eq!(
        sim.stats().image_submits - before,
        1,
        "only the flagged candidate"
    );
    assert_eq!(stale(&t), set(&[]));
}

/// A flag given on the page after a build with nothing to do left its
/// up-to-date stamp (src/uptodate.rs): the flag is a store write, so the
/// next build plans and re-rolls the flagged candidate instead of saying
/// "nothing to do" again.
#[test]
fn a_flag_after_an_up_to_date_stamp_is_built() {
    let sim = Sim::start(fast_sim());
    let t = Test::new()
        .fixture("demo-offline.nbflow", "ad.nbflow")
        .env("NBBUILD_TIMINGS", "1");
    for _ in 0..3 {
        t.build(&sim, &["--candidates", C]).assert_code(0);
    }
    let told = t.build(&sim, &["--candidates", C]);
    told.assert_code(0);
    assert!(
        told.stderr
            .contains("up to date: the last build's stamp holds"),
        "{}",
        told.stderr
    );
    let s = Server::start(&t, &sim, &[]);
    let r = s.post(
        "/api/flag",
        &json!({"task": "1-4-r1", "candidate": 1, "flagged": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    drop(s);
    let before = sim.stats().image_submits;
    let r = t.build(&sim, &["--candidates", C]);
    r.assert_code(0);
    assert!(!r.stderr.contains("up to date"), "{}", r.stderr);
    assert_eq!(
        sim.stats().image_submits - before,
        1,
        "the flagged candidate is re-rolled"
    );
}

#[test]
fn in_a_browser_a_confirmed_reroll_makes_exactly_the_quoted_submissions() {
    let (sim, t) = built();
    let s = Server::start(&t, &sim, &[]);
    let old: Vec<Value> = s.task("scene01", "image")["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["object"].clone())
        .collect();
    let before = sim.stats();
    let out = s.browser(&["reroll:scene01:image"]);
    let step = &out["steps"][0];
    assert_eq!(step["done"], "reroll-done", "{out}\n{}", s.stderr());
    let quoted = step["quote"]["calls"].as_u64().unwrap();
    assert_eq!(quoted, 2);
    let after = sim.stats();
    assert_eq!(after.image_submits - before.image_submits, quoted);
    assert_eq!(after.video_submits, before.video_submits);
    let now = s.task("scene01", "image");
    assert_eq!(now["state"], "fresh");
    assert!(now["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| !old.contains(&c["object"])));
    assert_eq!(now["history"][0]["candidates"].as_array().unwrap().len(), 2);
    // What the quote said it invalidates is what a plain build now builds.
    assert_eq!(stale(&t), set(&["image:scene02", "video:scene02"]));
}

#[test]
fn a_human_flag_wins_over_automatic_qa_and_rerolls_only_that_candidate() {
    let sim = Sim::start(fast_sim());
    let t = Test::new()
        .fixture("demo-offline.nbflow", "ad.nbflow")
        .env("NBBUILD_QA_URL", &format!("{}/v1", sim.url))
        .env("NBBUILD_QA_MODEL", "sim-reviewer");
    let r = t.build(&sim, &["--candidates", C]);
    r.assert_code(0);
    assert_eq!(sim.stats().qa_reviews, 10, "every still reviewed once");
    let s = Server::start(&t, &sim, &[]);
    let c2 = &s.task("scene01", "image")["candidates"][1];
    assert_eq!(c2["qa"]["verdict"], "clean");
    let r = s.post(
        "/api/flag",
        &json!({"task": "0-3", "candidate": 2, "flagged": true, "reasons": ["label misspelt"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    drop(s);
    // Only scene01 is stale: its clean c1 stays the pick, so the plan knows
    // its consumers keep their keys; the build then sends only the flagged slot.
    assert_eq!(stale(&t), set(&["image:scene01"]));
    let before = sim.stats();
    let r = t.build(&sim, &["--candidates", C]);
    r.assert_code(0);
    let after = sim.stats();
    assert_eq!(after.image_submits - before.image_submits, 1);
    assert_eq!(
        after.qa_reviews - before.qa_reviews,
        1,
        "only the new candidate is reviewed"
    );
    assert_eq!(stale(&t), set(&[]));
}

/// With a mirror the pick is the candidate's mirrored URL. Fails until a
/// URL nbbuild published enters keys by its content (issue 12, the
/// "never pay twice" round-trip rule): until then the key sees the URL.
#[test]
fn in_a_browser_picking_the_mirrored_auto_pick_leaves_everything_fresh() {
    let sim = Sim::start(fast_sim());
    let t = Test::new().fixture("demo-offline.nbflow", "ad.nbflow");
    t.build(&sim, &["--candidates", C, "--mirror", "dir:mirror"])
        .assert_code(0);
    let s = Server::start(&t, &sim, &["--mirror", "dir:mirror"]);
    let c = s.task("scene01", "image")["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["auto_pick"] == true)
        .unwrap()
        .clone();
    let url = c["url"].as_str().expect("a mirrored URL").to_string();
    let out = s.browser(&[&format!("pick:scene01:image:{}", c["k"])]);
    assert_eq!(out["steps"][0]["picked"], json!([c["k"]]), "{out}");
    let flow: Value = serde_json::from_str(&t.read("ad.nbflow")).unwrap();
    assert_eq!(props(&flow, 0, 4)["_lastApprovedData"], json!(url));
    assert_eq!(stale(&t), set(&[]));
}

/// Issue 19.3: while a build runs in another terminal, the page reads
/// through that build's holder: it shows every task, says a build is
/// running, and follows candidates as they land; actions wait.
#[test]
fn the_page_follows_a_build_from_another_terminal_live() {
    let (sim0, t) = built();
    let s = Server::start(&t, &sim0, &[]);
    // Stills come at once; a clip takes ten minutes, so the build is still
    // running (holding the store) whatever the load, until it is killed.
    let sim = Sim::start(nbbuild_sim::SimConfig {
        video_latency_ms: 600_000,
        ..fast_sim()
    });
    t.edit_json("ad.nbflow", |v| {
        node_mut(v, 0, 1)["properties"]["text"] = json!("a kitchen at dawn, seen live")
    });
    let mut build = t
        .command(&["build", "--server", &sim.url, "--candidates", C, "-q"])
        .spawn()
        .unwrap();
    let scene01 = |st: &Value| -> Option<Value> {
        st["tasks"]
            .as_array()?
            .iter()
            .find(|x| x["name"] == "scene01" && x["kind"] == "image")
            .cloned()
    };
    // The page reads through the build: every task listed, the build named,
    // and the new prompt's candidates shown once they are stored.
    let mut seen = Value::Null;
    crate::harness::wait_until(
        "the page shows the candidates the running build stored",
        || {
            assert!(build.try_wait().unwrap().is_none(), "the build ended early");
            seen = s.state();
            seen["store"]["build_running"] == json!(true)
                && scene01(&seen).is_some_and(|x| {
                    x["prompt"]
                        .as_str()
                        .is_some_and(|p| p.contains("seen live"))
                        && x["candidates"].as_array().is_some_and(|c| !c.is_empty())
                })
        },
    );
    assert_eq!(seen["tasks"].as_array().unwrap().len(), 7);
    assert!(
        seen["store"]["note"]
            .as_str()
            .unwrap_or("")
            .contains("a build is running"),
        "{}",
        seen["store"]
    );
    // Actions wait for the build.
    let r = s.post(
        "/api/pick",
        &json!({"task": "0-3", "candidate": 2, "rev": seen["flow"]["rev"]}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    build.kill().unwrap();
    build.wait().unwrap();
    crate::harness::wait_until("the page reads the store itself again", || {
        s.state()["store"]["build_running"].is_null()
    });
}
