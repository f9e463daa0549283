//! A distribution set's statistics (hawkBit's `MgmtDistributionSetStatistics`):
//! `GET /distributionsets/{id}/statistics` (actions and rollouts per status, each with a
//! `total`, and `totalAutoAssignments`), and one part each at `…/statistics/actions`,
//! `…/statistics/rollouts` and `…/statistics/autoassignments` (a part without entries is left
//! out there, as hawkBit's non-empty inclusion does).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::common::{Ctx, Ids, existing_set};
use super::{ApiError, ApiResult, ApiState};
use crate::auth::Permission;
use crate::domain::ids::DsId;
use crate::store::{actions, auto_assignments, rollouts};

pub fn router() -> Router<ApiState> {
    let part = |p: Part| get(move |cx: Ctx, Ids(id): Ids<i64>| statistics(cx, id, p));
    Router::new()
        .route("/rest/v1/distributionsets/{id}/statistics", part(Part::All))
        .route(
            "/rest/v1/distributionsets/{id}/statistics/actions",
            part(Part::Actions),
        )
        .route(
            "/rest/v1/distributionsets/{id}/statistics/rollouts",
            part(Part::Rollouts),
        )
        .route(
            "/rest/v1/distributionsets/{id}/statistics/autoassignments",
            part(Part::AutoAssignments),
        )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    All,
    Actions,
    Rollouts,
    AutoAssignments,
}

/// Counts by status and their `total`; `None` when empty and only a part was asked for.
fn per_status(counts: Vec<(String, i64)>, full: bool) -> Option<Value> {
    if counts.is_empty() && !full {
        return None;
    }
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let mut m: Map<String, Value> = counts.into_iter().map(|(s, n)| (s, json!(n))).collect();
    m.insert("total".into(), json!(total));
    Some(Value::Object(m))
}

async fn statistics(cx: Ctx, id: i64, part: Part) -> ApiResult<Json<Value>> {
    cx.require(&[Permission::READ_REPOSITORY])?;
    let tenant = cx.tenant();
    let full = part == Part::All;
    let v = cx
        .db()
        .run(async |c| {
            existing_set(c, tenant, id).await?;
            let mut v = json!({});
            if matches!(part, Part::All | Part::Actions)
                && let Some(a) =
                    per_status(actions::status_counts_of_set(c, tenant, id).await?, full)
            {
                v["actions"] = a;
            }
            if matches!(part, Part::All | Part::Rollouts)
                && let Some(r) = per_status(rollouts::statistics_of_set(c, tenant, id).await?, full)
            {
                v["rollouts"] = r;
            }
            if matches!(part, Part::All | Part::AutoAssignments) {
                let n = auto_assignments::count_of_set(c, tenant, DsId(id)).await?;
                v["totalAutoAssignments"] = json!(n);
            }
            Ok::<_, ApiError>(v)
        })
        .await?;
    Ok(Json(v))
}
