//! The simulator's own routes (`/sim/*`), for tests and demos: the counters,
//! and a restart that forgets every task. `drop_rate` spares them (a dead
//! server drops them too).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::http::unauthorized;
use super::state::Shared;

/// The control routes, for the router in `server`.
pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/sim/stats", get(sim_stats))
        .route("/sim/restart", post(sim_restart))
}

async fn sim_stats(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers, false) {
        return unauthorized();
    }
    Json(s.stats()).into_response()
}

async fn sim_restart(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers, false) {
        return unauthorized();
    }
    let n = s.restart();
    Json(json!({ "status": "restarted", "forgotten": n })).into_response()
}
