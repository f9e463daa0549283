//! `GET /health`: the database and the broker reported separately, no authentication.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::ApiState;

pub fn router() -> Router<ApiState> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<ApiState>) -> (StatusCode, Json<serde_json::Value>) {
    // A database that hangs (rather than refuses) must not hang the probe: DOWN after 2 s.
    let database = tokio::time::timeout(Duration::from_secs(2), state.engine.database_up())
        .await
        .unwrap_or(false);
    let amqp = state.health.amqp_up();
    let word = |up: bool| if up { "UP" } else { "DOWN" };
    let code = if database && amqp {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(
            json!({"status": word(database && amqp), "database": word(database), "amqp": word(amqp)}),
        ),
    )
}
