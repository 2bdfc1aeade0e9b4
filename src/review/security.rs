//! What stands between the review server and any web page the user visits.
//!
//! Binding to loopback is not a trust boundary: a page can make the browser
//! talk to 127.0.0.1, and DNS rebinding can make it do so under the page's
//! own origin. So, on every request:
//!
//! 1. the `Host` header must name this server (`127.0.0.1`, `localhost`,
//!    `[::1]`, or the `--host` given, with the port): a rebound name is
//!    refused before anything else;
//! 2. the caller must hold the session cookie (`HttpOnly`,
//!    `SameSite=Strict`), which only the URL's token buys: `/?token=...`
//!    answers with the cookie and a redirect that drops the token;
//! 3. anything that changes state is a `POST` carrying the page's CSRF
//!    token in `X-CSRF-Token` and a JSON body, from this origin: an
//!    `Origin` other than this server's (`null` included) or a cross-site
//!    `Sec-Fetch-Site` is refused; other methods are refused outright;
//! 4. every answer says `X-Frame-Options: DENY` with a strict
//!    Content-Security-Policy, and none carries a CORS header.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::io::Read;
use std::sync::Arc;

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The secrets of one server run, and the names it answers to.
pub struct Guard {
    /// In the printed URL; exchanged for the cookie.
    pub token: String,
    /// The cookie's value.
    session: String,
    /// In the page; sent back by the page's POSTs.
    pub csrf: String,
    /// Per port: browsers share cookies between ports of one host.
    pub cookie_name: String,
    /// `host:port` values the Host header may carry (lowercase).
    allowed_hosts: Vec<String>,
    /// Bound to every address (`--host 0.0.0.0`): any IP literal with this
    /// port is this server too (a DNS-rebound name never is).
    any_ip: Option<u16>,
}

/// 32 random bytes from the kernel, as hex.
pub fn random_hex() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Compare secrets without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Guard {
    pub fn new(port: u16, extra_host: Option<&str>) -> std::io::Result<Guard> {
        let mut any_ip = None;
        let mut allowed_hosts: Vec<String> = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .map(|h| format!("{h}:{port}"))
            .collect();
        if let Some(h) = extra_host {
            let h = h.trim().to_ascii_lowercase();
            let h = if h.contains(':') && !h.starts_with('[') {
                format!("[{h}]")
            } else {
                h
            };
            if h == "0.0.0.0" || h == "[::]" {
                any_ip = Some(port);
            } else {
                allowed_hosts.push(format!("{h}:{port}"));
            }
        }
        Ok(Guard {
            token: random_hex()?,
            session: random_hex()?,
            csrf: random_hex()?,
            cookie_name: format!("nbbuild_review_{port}"),
            allowed_hosts,
            any_ip,
        })
    }

    /// Whether `Host` names this server.
    pub fn host_ok(&self, headers: &HeaderMap) -> Option<String> {
        let host = headers
            .get(header::HOST)?
            .to_str()
            .ok()?
            .to_ascii_lowercase();
        if self.allowed_hosts.contains(&host) {
            return Some(host);
        }
        let port = self.any_ip?;
        let addr: std::net::SocketAddr = host.parse().ok()?;
        (addr.port() == port).then_some(host)
    }

    fn has_session(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .any(|(k, v)| k == self.cookie_name && same(v, &self.session))
    }

    fn session_cookie(&self) -> String {
        format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie_name, self.session
        )
    }

    /// Why a state-changing request is refused, if it is.
    fn refuse_post(&self, headers: &HeaderMap, host: &str) -> Option<(StatusCode, &'static str)> {
        if let Some(o) = headers.get(header::ORIGIN) {
            let o = o.to_str().unwrap_or("").to_ascii_lowercase();
            if o != format!("http://{host}") {
                return Some((StatusCode::FORBIDDEN, "cross-origin request refused"));
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            if site.to_str().unwrap_or("") != "same-origin" {
                return Some((StatusCode::FORBIDDEN, "cross-site request refused"));
            }
        }
        let csrf = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same(csrf, &self.csrf) {
            return Some((StatusCode::FORBIDDEN, "missing or wrong CSRF token"));
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !json {
            return Some((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        None
    }
}

fn refused(status: StatusCode, why: &str, html: bool) -> Response {
    if html {
        let body = format!(
            "<!doctype html><meta charset=utf-8><title>nbbuild review</title>\
             <body style=\"background:#121212;color:#ddd;font:15px system-ui;padding:3em\">\
             <h1 style=\"font-weight:500\">nbbuild review</h1><p>{why}.</p>\
             <p>Open the URL that <code>nbbuild review</code> printed (it carries an access token).</p>"
        );
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response()
    } else {
        (status, axum::Json(serde_json::json!({"error": why}))).into_response()
    }
}

/// Every request goes through here (see the module comment).
pub async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let mut res = check(&g, req, next).await;
    let h = res.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    // Nothing here is for other origins.
    let cors: Vec<_> = h
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for k in cors {
        h.remove(k);
    }
    res
}

async fn check(g: &Guard, req: Request, next: Next) -> Response {
    let html = !req.uri().path().starts_with("/api/") && !req.uri().path().starts_with("/media/");
    let Some(host) = g.host_ok(req.headers()) else {
        return refused(
            StatusCode::FORBIDDEN,
            "this server answers only to its own address (Host header refused)",
            html,
        );
    };
    let method = req.method().clone();
    if method != Method::GET && method != Method::HEAD && method != Method::POST {
        return refused(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", html);
    }
    // The token of the printed URL buys the session cookie.
    if method == Method::GET && req.uri().path() == "/" {
        if let Some(t) = req
            .uri()
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("token="))
        {
            if same(t, &g.token) {
                return Response::builder()
                    .status(StatusCode::SEE_OTHER)
                    .header(header::LOCATION, "/")
                    .header(header::SET_COOKIE, g.session_cookie())
                    .body(Body::empty())
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
            }
            return refused(StatusCode::FORBIDDEN, "wrong access token", html);
        }
    }
    if !g.has_session(req.headers()) {
        return refused(StatusCode::FORBIDDEN, "not signed in", html);
    }
    if method == Method::POST {
        if let Some((status, why)) = g.refuse_post(req.headers(), &host) {
            return refused(status, why, false);
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_own_names_are_hosts() {
        let g = Guard::new(4321, None).unwrap();
        let mut h = HeaderMap::new();
        for (host, ok) in [
            ("127.0.0.1:4321", true),
            ("localhost:4321", true),
            ("LOCALHOST:4321", true),
            ("[::1]:4321", true),
            ("127.0.0.1:4322", false),
            ("evil.example:4321", false),
            ("127.0.0.1", false),
        ] {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            assert_eq!(g.host_ok(&h).is_some(), ok, "{host}");
        }
    }

    #[test]
    fn secrets_are_random_and_long() {
        let (a, b) = (random_hex().unwrap(), random_hex().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
