//! The simulator's HTTP server: one listener, one router, and a room per
//! protocol it speaks.
//!
//! Read it top-down; each module imports only those above it, and only this
//! file knows the rooms:
//!
//! * `clock`, `files`: wall-clock stamps; how a produced file's bytes are made.
//! * `tasks`: the task table (tasks, states, produced files, counters, log).
//! * `state`: what every room shares: the options and the table behind one
//!   lock.
//! * `faults`: fault injection and every pseudo-random decision.
//! * `lifecycle`: a task's life: accepted, queued for a slot, run, finished.
//! * `http`: the API-key check, the body limit, base64 payloads, JSON errors.
//! * the rooms: `glabs` (the G-Labs API, `/api/*`), `google` (Google's
//!   Gemini API, `/v1beta/*`), `qa` (the
//!   chat-completions reviewer, `/v1/*`) and `control` (the simulator's own
//!   `/sim/*`).

mod clock;
mod control;
mod faults;
mod files;
mod glabs;
mod google;
mod http;
mod lifecycle;
mod qa;
mod state;
mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{middleware, Router};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

pub(crate) use state::Shared;

/// Serve `listener` until `shutdown` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: oneshot::Receiver<()>,
) {
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let listener = SimListener {
        inner: Some(listener),
        addr,
        die: shared.die_tx.subscribe(),
    };
    let app = router(shared);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = shutdown.await;
        })
        .await;
}

/// Every room's routes behind the fault layer; anything else answers 404.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .merge(glabs::routes())
        .merge(google::routes())
        .merge(qa::routes())
        .merge(control::routes())
        .fallback(http::not_found)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            faults::middleware,
        ))
        .with_state(shared)
}

/// The TCP listener, closed for good once the simulated server "dies".
struct SimListener {
    inner: Option<TcpListener>,
    addr: SocketAddr,
    die: watch::Receiver<bool>,
}

impl axum::serve::Listener for SimListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            if *self.die.borrow() {
                self.inner = None;
            }
            let Some(listener) = &self.inner else {
                return std::future::pending().await;
            };
            tokio::select! {
                r = listener.accept() => match r {
                    Ok(conn) => {
                        if *self.die.borrow() {
                            continue; // dropping the stream closes it
                        }
                        return conn;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                },
                changed = self.die.changed() => {
                    if changed.is_err() {
                        // The sender is gone: no death will come.
                        return std::future::pending().await;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
