//! `POST /rest/v1/distributionsets/{id}/invalidate` (rollouts.md §6.6, §9.7): the set becomes
//! invalid; with `soft` or `force` its rollouts and open actions are cancelled as well.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;

use super::common::Ids;
use super::{ApiError, ApiResult, ApiState, Body, Caller};
use crate::auth::Permission;
use crate::domain::ids::DsId;
use crate::engine::invalidation::CancelationType;

pub fn router() -> Router<ApiState> {
    Router::new().route(
        "/rest/v1/distributionsets/{id}/invalidate",
        post(invalidate),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvalidateBody {
    action_cancelation_type: Option<String>,
}

/// Changing the set and cancelling its targets' actions needs UPDATE_REPOSITORY and
/// UPDATE_TARGET (hawkBit's "set and target rights"); touching rollouts (`soft`, `force`) also
/// UPDATE_ROLLOUT.
async fn invalidate(
    State(s): State<ApiState>,
    caller: Caller,
    Ids(id): Ids<i64>,
    Body(body): Body<InvalidateBody>,
) -> ApiResult<StatusCode> {
    caller.require(&[Permission::UPDATE_REPOSITORY, Permission::UPDATE_TARGET])?;
    let kind = match body.action_cancelation_type.as_deref() {
        None => CancelationType::None,
        Some(t) => CancelationType::parse(t)
            .ok_or_else(|| ApiError::NotReadable(format!("unknown actionCancelationType {t:?}")))?,
    };
    if kind.cancels() {
        caller.require(&[Permission::UPDATE_ROLLOUT])?;
    }
    s.engine
        .invalidate_set(caller.tenant, DsId(id), kind, caller.name())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
