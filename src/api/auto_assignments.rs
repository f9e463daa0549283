//! Auto-assignments (hawkBit master's `/rest/v1/autoassignments`, rollouts.md §1.4): create,
//! list, read, rename, delete, and the operations approve/deny (APPROVE_AUTO_ASSIGNMENT) and
//! start/pause/resume (HANDLE_AUTO_ASSIGNMENT). Reading needs READ_TARGET and READ_REPOSITORY,
//! changing UPDATE_TARGET and READ_REPOSITORY (what hawkBit's permissions imply).

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::common::{
    Ctx, Ids, Listed, Resource, base_fields, confirmation_flow, description, existing_set,
    get_put_delete, required, single_line,
};
use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Page, put_opt};
use crate::auth::Permission;
use crate::domain::action::ActionType;
use crate::domain::auto_assignment::{AutoAssignStatus, Event, MAX_REMARK};
use crate::domain::ids::DsId;
use crate::engine::auto_assignment::CreateAutoAssignment;
use crate::store::Named;
use crate::store::auto_assignments::{self as store, AutoAssignmentRow};
use crate::store::filter::Entity;

const READ: &[Permission] = &[Permission::READ_TARGET, Permission::READ_REPOSITORY];
const WRITE: &[Permission] = &[Permission::UPDATE_TARGET, Permission::READ_REPOSITORY];
const MAX_QUERY: usize = 1024;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/rest/v1/autoassignments",
            AUTO_ASSIGNMENTS.list().post(create),
        )
        .route(
            "/rest/v1/autoassignments/{id}",
            get_put_delete(AUTO_ASSIGNMENTS.one(), WRITE, update, remove),
        )
        .route("/rest/v1/autoassignments/{id}/{op}", post(operate))
        .route(
            "/rest/v1/distributionsets/{id}/autoAssignments",
            get(of_set),
        )
}

static AUTO_ASSIGNMENTS: Resource<AutoAssignmentRow> = Resource::new(
    &store::TABLE,
    Entity::AutoAssignment,
    READ,
    auto_assignment_json,
);

/// hawkBit's `MgmtAutoAssignmentResponseBody`, with the links the status allows.
pub(super) fn auto_assignment_json(base: &BaseUrl, a: &AutoAssignmentRow) -> Value {
    let path = format!("/autoassignments/{}", a.id);
    let mut links = json!({
        "self": base.link(&path),
        "distributionset": {
            "href": base.link(&format!("/distributionsets/{}", a.ds_id))["href"],
            "name": format!("{}:{}", a.ds_name, a.ds_version),
        },
    });
    let ops: &[&str] = match a.status {
        AutoAssignStatus::WaitingForApproval => &["approve", "deny"],
        AutoAssignStatus::Ready => &["start"],
        AutoAssignStatus::Running => &["pause"],
        AutoAssignStatus::Paused => &["resume"],
        AutoAssignStatus::ApprovalDenied => &[],
    };
    for op in ops {
        links[*op] = base.link(&format!("{path}/{op}"));
    }
    let mut v = json!({
        "id": a.id, "name": a.named.name, "targetFilterQuery": a.query,
        "distributionSetId": a.ds_id, "status": a.status.as_db().to_ascii_lowercase(),
        "actionType": a.action_type.api_name(), "weight": a.weight,
        "confirmationRequired": a.confirmation_required,
        "_links": links,
    });
    base_fields(&mut v, &a.audit);
    put_opt(&mut v, "description", a.named.description.as_deref());
    put_opt(&mut v, "startAt", a.start_at);
    put_opt(
        &mut v,
        "approvalDecidedBy",
        a.approval_decided_by.as_deref(),
    );
    put_opt(&mut v, "approvalRemark", a.approval_remark.as_deref());
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    name: Option<String>,
    description: Option<String>,
    target_filter_query: Option<String>,
    distribution_set_id: Option<i64>,
    start_at: Option<i64>,
    action_type: Option<String>,
    weight: Option<i64>,
    confirmation_required: Option<bool>,
}

/// `actionType` of a request: hawkBit's REST names; TIMEFORCED is refused later with the
/// auto-assignment's own error, an unknown name is unreadable.
pub(super) fn parse_action_type(t: Option<&str>) -> ApiResult<Option<ActionType>> {
    t.map(|t| {
        ActionType::from_api(t)
            .ok_or_else(|| ApiError::NotReadable(format!("unknown action type {t:?}")))
    })
    .transpose()
}

async fn create(cx: Ctx, Body(b): Body<CreateBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    cx.require(WRITE)?;
    let name = required("name", b.name, 1, 128)?;
    let description = description(b.description)?;
    let query = required("targetFilterQuery", b.target_filter_query, 1, MAX_QUERY)?;
    let ds = b
        .distribution_set_id
        .ok_or_else(|| ApiError::BadRequest("distributionSetId is required".into()))?;
    let action_type = parse_action_type(b.action_type.as_deref())?;
    // Absent: as the tenant's confirmation flow says (hawkBit).
    let confirmation_required = match b.confirmation_required {
        Some(c) => c,
        None => confirmation_flow(&cx).await?,
    };
    let req = CreateAutoAssignment {
        named: Named { name, description },
        query,
        ds: DsId(ds),
        action_type,
        weight: b.weight,
        confirmation_required,
        start_at: b.start_at,
        target_filter: None,
    };
    let row = cx
        .state
        .engine
        .create_auto_assignment(cx.tenant(), req, cx.caller.name())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(auto_assignment_json(&cx.base, &row)),
    ))
}

#[derive(Deserialize)]
struct UpdateBody {
    name: Option<String>,
    description: Option<String>,
}

async fn update(cx: Ctx, Ids(id): Ids<i64>, b: UpdateBody) -> ApiResult<Json<Value>> {
    let name = single_line("name", b.name, 1, 128)?;
    let description = description(b.description)?;
    let (tenant, user) = (cx.tenant(), cx.caller.name());
    let change = async |c: &mut PgConnection| {
        let (n, d) = (name.as_deref(), description.as_deref());
        if !store::update(c, tenant, id, n, d, user).await? {
            return Ok(None);
        }
        store::TABLE.find(c, tenant, id).await
    };
    cx.update_one(
        change,
        || AUTO_ASSIGNMENTS.missing(id),
        |a| auto_assignment_json(&cx.base, &a),
    )
    .await
}

async fn remove(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<StatusCode> {
    cx.delete_by_id(WRITE, &AUTO_ASSIGNMENTS, id).await
}

#[derive(Deserialize)]
struct RemarkQuery {
    remark: Option<String>,
}

async fn operate(
    cx: Ctx,
    Path((id, op)): Path<(String, String)>,
    Query(q): Query<RemarkQuery>,
) -> ApiResult<StatusCode> {
    let (event, perm) = match op.as_str() {
        "approve" => (Event::Approve, Permission::APPROVE_AUTO_ASSIGNMENT),
        "deny" => (Event::Deny, Permission::APPROVE_AUTO_ASSIGNMENT),
        "start" => (Event::Start, Permission::HANDLE_AUTO_ASSIGNMENT),
        "pause" => (Event::Pause, Permission::HANDLE_AUTO_ASSIGNMENT),
        "resume" => (Event::Resume, Permission::HANDLE_AUTO_ASSIGNMENT),
        _ => return Err(ApiError::NotFound(format!("no such operation {op:?}"))),
    };
    cx.require(&[perm])?;
    let id: i64 = id.parse().map_err(|_| AUTO_ASSIGNMENTS.missing(&id))?;
    if q.remark
        .as_ref()
        .is_some_and(|m| m.chars().count() > MAX_REMARK)
    {
        return Err(ApiError::BadRequest(format!(
            "remark must be at most {MAX_REMARK} characters"
        )));
    }
    let remark = matches!(event, Event::Approve | Event::Deny)
        .then_some(q.remark.as_deref())
        .flatten();
    cx.state
        .engine
        .operate_auto_assignment(cx.tenant(), id, event, remark, cx.caller.name())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

const OF_SET: Listed = Listed::new(Entity::AutoAssignment, &store::SORT);

/// `GET /distributionsets/{id}/autoAssignments`: a page of the set's auto-assignments.
async fn of_set(cx: Ctx, Ids(ds): Ids<i64>, params: Page) -> ApiResult<Json<Value>> {
    let perms = &[Permission::READ_REPOSITORY, Permission::READ_TARGET];
    cx.list(
        perms,
        &params,
        OF_SET,
        async |c, tenant, q, page| {
            existing_set(c, cx.tenant(), ds).await?;
            Ok::<_, ApiError>(store::of_set(c, tenant, DsId(ds), q, page).await?)
        },
        |a| auto_assignment_json(&cx.base, &a),
    )
    .await
}
