//! `nbbuild review`: serve the review page until Ctrl-C (or write it as
//! static files with `--export DIR`). See docs/review.md.

use crate::cli::ReviewArgs;
use crate::error::{Error, Result};
use crate::review::access::StoreAccess;
use crate::review::security::Guard;
use crate::review::server::{router, watch_outside, App};
use crate::settings::Settings;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

pub fn run(a: &ReviewArgs) -> Result<i32> {
    let mut build = a.build_args();
    // One flow for the server's whole life, whatever the current folder.
    let flow = crate::project::flow_path(build.flow.as_deref())?;
    let flow = std::path::absolute(&flow).unwrap_or(flow);
    build.flow = Some(flow.clone());
    // Bad settings or an unreadable flow are errors now, not on the page.
    let s = Settings::resolve(&build)?;
    if let Some(dir) = &a.export {
        return crate::review::export::run(&build, dir);
    }
    let (ip, shown) = parse_host(&a.host)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(a, build, s, ip, shown))
}

/// The address to bind and the name to print in the URL.
fn parse_host(h: &str) -> Result<(IpAddr, String)> {
    let h = h.trim();
    if h.eq_ignore_ascii_case("localhost") {
        return Ok((IpAddr::V4(Ipv4Addr::LOCALHOST), "localhost".into()));
    }
    let bare = h.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = bare.parse().map_err(|_| {
        Error::usage(format!("--host {h:?} is not an IP address"))
            .hint("use 127.0.0.1 (the default), localhost, ::1, or an address of this machine")
    })?;
    let shown = match ip {
        IpAddr::V6(_) => format!("[{ip}]"),
        IpAddr::V4(_) => ip.to_string(),
    };
    Ok((ip, shown))
}

async fn serve(
    a: &ReviewArgs,
    build: crate::cli::BuildArgs,
    s: Settings,
    ip: IpAddr,
    shown: String,
) -> Result<i32> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, a.port))
        .await
        .map_err(|e| {
            Error::io(format!("cannot listen on {shown}:{}", a.port), &e)
                .hint("choose another port with --port N (0: any free port)")
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the listening address", &e))?
        .port();
    if !ip.is_loopback() {
        eprintln!(
            "warning: serving on {shown}, not loopback: other machines can reach this page; \
             anyone who has the URL below can pick, flag and spend credits"
        );
    }
    let guard = Guard::new(port, (!ip.is_loopback()).then_some(shown.as_str()))
        .map_err(|e| Error::io("cannot read random bytes for the access token", &e))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (events, _) = tokio::sync::broadcast::channel(256);
    let app = Arc::new(App {
        flow_path: s.project.flow_path.clone(),
        access: Arc::new(StoreAccess::new(&s.cache_dir)),
        read_only: a.read_only,
        guard: Arc::new(guard),
        media: RwLock::new(Default::default()),
        last: Mutex::new(None),
        busy: Arc::new(Mutex::new(None)),
        events,
        reroll: Mutex::new(None),
        shutdown: stop_rx,
        build,
    });
    let url_host = if ip.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        shown.clone()
    };
    let url = format!("http://{url_host}:{port}/?token={}", app.guard.token);
    eprintln!(
        "review: {} (store {}){}; Ctrl-C stops",
        s.project.flow_path.display(),
        s.cache_dir.display(),
        if a.read_only { ", read-only" } else { "" }
    );
    // The URL, with its token, alone on its line.
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{url}");
        let _ = out.flush();
    }
    if a.open {
        open_browser(&url);
    }
    tokio::spawn(watch_outside(app.clone()));
    let shutdown = async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_tx.send(true);
    };
    axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::io("the review server failed", &e))?;
    // A re-roll from the page stops launching on Ctrl-C too; let it write
    // what arrived.
    let reroll = app.reroll.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(h) = reroll {
        eprintln!("review: waiting for the re-roll to write what arrived");
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }
    eprintln!("review: stopped");
    Ok(0)
}

fn open_browser(url: &str) {
    let cmd = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let r = std::process::Command::new(cmd)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if r.is_err() {
        eprintln!("note: could not start {cmd}: open the URL above yourself");
    }
}
