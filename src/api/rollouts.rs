//! Rollouts and their deployment groups (rollouts.md §9.2–§9.5), and the rollout statistics of a
//! distribution set (§8).

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::common::{Ctx, confirmation_flow, get_put_delete};
use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Page, paged, put_opt};
use crate::auth::Permission;
use crate::domain::action::ActionType;
use crate::domain::ids::{GroupId, RolloutId};
use crate::domain::names::Named as _;
use crate::domain::rollout::spec::WithExpr;
use crate::domain::rollout::{Group, Operation, Progress, Rollout};
use crate::engine::rollouts::{ActSpec, CondSet, CondSpec, CreateRollout, GroupSpec};
use crate::store::filter::Entity;
use crate::store::rollouts::{self as store, DeletedMode};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/rollouts", get(list).post(create))
        .route(
            "/rest/v1/rollouts/{id}",
            get_put_delete(get(one), &[Permission::UPDATE_ROLLOUT], update, remove),
        )
        .route("/rest/v1/rollouts/{id}/{op}", post(post_operation))
        .route("/rest/v1/rollouts/{id}/deploygroups", get(groups))
        .route("/rest/v1/rollouts/{id}/deploygroups/{group}", get(group))
        .route(
            "/rest/v1/rollouts/{id}/deploygroups/{group}/targets",
            get(group_targets),
        )
}

fn progress_json(p: &Progress) -> Value {
    json!({
        "notstarted": p.notstarted, "scheduled": p.scheduled, "running": p.running,
        "finished": p.finished, "error": p.error, "cancelled": p.cancelled,
    })
}

/// §9.4: compact, or full with progress, group count and operation links.
fn rollout_json(r: &Rollout, groups: Option<&[Group]>, base: &BaseUrl) -> Value {
    let path = format!("/rollouts/{}", r.id);
    let mut v = json!({
        "id": r.id.0, "name": r.name,
        "createdBy": r.audit.created_by, "createdAt": r.audit.created_at,
        "lastModifiedBy": r.audit.last_modified_by, "lastModifiedAt": r.audit.last_modified_at,
        "targetFilterQuery": r.target_filter, "distributionSetId": r.ds.0,
        "status": r.state.status().api_name(), "totalTargets": r.total_targets,
        "forcetime": r.forced_time, "deleted": r.deleted, "type": r.action_type.api_name(),
        "weight": r.weight, "dynamic": r.is_dynamic(),
        "_links": {"self": base.link(&path)},
    });
    put_opt(&mut v, "description", r.description.clone());
    if let Some(groups) = groups {
        v["totalTargetsPerStatus"] = progress_json(&r.progress(groups));
        v["totalGroups"] = json!(r.groups_created);
        put_opt(&mut v, "startAt", r.start_at);
        put_opt(&mut v, "approvalRemark", r.approval_remark.clone());
        put_opt(&mut v, "approveDecidedBy", r.approval_decided_by.clone());
        let links = &mut v["_links"];
        for op in [
            "start",
            "pause",
            "resume",
            "triggerNextGroup",
            "approve",
            "deny",
        ] {
            links[op] = base.link(&format!("{path}/{op}"));
        }
        links["groups"] = base.link(&format!("{path}/deploygroups?offset=0&limit=50"));
        links["distributionset"] = json!({
            "href": format!("{}/distributionsets/{}", base.0, r.ds),
            "name": format!("{}:{}", r.ds_name, r.ds_version),
        });
    }
    v
}

fn pair(key: &str, kind: &str, exp: Option<&str>) -> Value {
    let mut o = json!({ key: kind });
    put_opt(&mut o, "expression", exp);
    o
}

fn action_pair<A>(a: &WithExpr<A>, name: impl Fn(&A) -> &'static str) -> Value {
    pair("action", name(&a.action), a.expression.as_deref())
}

/// The four condition/action pairs of a group, as hawkBit renders them.
fn conditions_json(v: &mut Value, c: &crate::domain::rollout::Conditions) {
    v["successCondition"] = pair(
        "condition",
        crate::domain::rollout::spec::SuccessCondition::KIND,
        Some(c.success.threshold.text()),
    );
    v["successAction"] = action_pair(&c.success_action, |a| a.as_db());
    put_opt(
        v,
        "errorCondition",
        c.error
            .as_ref()
            .map(|e| pair("condition", e.kind.as_db(), Some(e.threshold.text()))),
    );
    put_opt(
        v,
        "errorAction",
        c.error_action
            .as_ref()
            .map(|a| action_pair(a, |a| a.as_db())),
    );
}

/// §9.5.
fn group_json(
    r: &Rollout,
    g: &Group,
    full: bool,
    confirmation_flow: bool,
    base: &BaseUrl,
) -> Value {
    let mut v = json!({
        "id": g.id.0, "name": g.name,
        "createdBy": g.audit.created_by, "createdAt": g.audit.created_at,
        "lastModifiedBy": g.audit.last_modified_by, "lastModifiedAt": g.audit.last_modified_at,
        "status": g.state.api_name(), "dynamic": g.dynamic, "totalTargets": g.total_targets,
        "targetFilterQuery": g.target_filter,
        "targetPercentage": g.target_percentage,
        "_links": {"self": base.link(&format!("/rollouts/{}/deploygroups/{}", r.id, g.id))},
    });
    put_opt(&mut v, "description", g.description.clone());
    conditions_json(&mut v, &g.conditions);
    if confirmation_flow {
        v["confirmationRequired"] = json!(g.confirmation_required);
    }
    if full {
        v["totalTargetsPerStatus"] = progress_json(&g.progress(r.download_only()));
    }
    v
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    soft_deleted_mode: Option<String>,
}

async fn list(cx: Ctx, page: Page, Query(extra): Query<ListQuery>) -> ApiResult<Json<Value>> {
    cx.require(&[Permission::READ_ROLLOUT])?;
    let mode = match extra.soft_deleted_mode.as_deref() {
        None | Some("EXCLUDE_SOFT_DELETED") => DeletedMode::Exclude,
        Some("ONLY_SOFT_DELETED") => DeletedMode::Only,
        Some("INCLUDE_SOFT_DELETED") => DeletedMode::Include,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown soft_deleted_mode {other:?}"
            )));
        }
    };
    let q = page.filter(Entity::Rollout)?;
    let request = page.request(&store::SORT)?;
    let full = page.full();
    let (content, total) = cx
        .db()
        .run(async |c| {
            let (rows, total) = store::list(c, cx.tenant(), q.as_ref(), mode, &request).await?;
            let mut content = Vec::with_capacity(rows.len());
            for r in &rows {
                let groups = match full {
                    true => Some(store::groups(c, r.id).await?),
                    false => None,
                };
                content.push(rollout_json(r, groups.as_deref(), &cx.base));
            }
            Ok::<_, ApiError>((content, total))
        })
        .await?;
    Ok(Json(paged(content, total)))
}

async fn load(cx: &Ctx, id: RolloutId) -> ApiResult<(Rollout, Vec<Group>)> {
    cx.db()
        .run(async |c| {
            let r = find(c, cx, id).await?;
            Ok((r, store::groups(c, id).await?))
        })
        .await
}

/// The full representation of a rollout (§9.4).
async fn full(cx: &Ctx, id: RolloutId) -> ApiResult<Json<Value>> {
    let (r, groups) = load(cx, id).await?;
    Ok(Json(rollout_json(&r, Some(&groups), &cx.base)))
}

/// A rollout just created: 201 with its full representation.
async fn created(cx: &Ctx, id: RolloutId) -> ApiResult<(StatusCode, Json<Value>)> {
    Ok((StatusCode::CREATED, full(cx, id).await?))
}

/// Scheduling a rollout (a `startAt`) needs the right to start it.
fn may_schedule(cx: &Ctx) -> ApiResult<()> {
    if cx.caller.user.has(Permission::HANDLE_ROLLOUT) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "You need permission to start rollouts to create a scheduled rollout".into(),
        ))
    }
}

/// Whether the caller's rollouts skip approval.
fn may_approve(cx: &Ctx) -> bool {
    cx.caller.user.has(Permission::APPROVE_ROLLOUT)
}

async fn find(c: &mut sqlx::PgConnection, cx: &Ctx, id: RolloutId) -> ApiResult<Rollout> {
    store::find(c, cx.tenant(), id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("rollout {id} not found")))
}

async fn one(cx: Ctx, Path(id): Path<RolloutId>) -> ApiResult<Json<Value>> {
    cx.require(&[Permission::READ_ROLLOUT])?;
    full(&cx, id).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CondBody {
    condition: Option<String>,
    expression: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActBody {
    action: Option<String>,
    expression: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conditions {
    success_condition: Option<CondBody>,
    success_action: Option<ActBody>,
    error_condition: Option<CondBody>,
    error_action: Option<ActBody>,
}

impl Conditions {
    fn spec(self) -> CondSet {
        let c = |b: CondBody| CondSpec {
            condition: b.condition,
            expression: b.expression,
        };
        let a = |b: ActBody| ActSpec {
            action: b.action,
            expression: b.expression,
        };
        CondSet {
            success_condition: self.success_condition.map(c),
            success_action: self.success_action.map(a),
            error_condition: self.error_condition.map(c),
            error_action: self.error_action.map(a),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupBody {
    name: Option<String>,
    description: Option<String>,
    target_filter_query: Option<String>,
    target_percentage: Option<f32>,
    confirmation_required: Option<bool>,
    #[serde(flatten)]
    conditions: Conditions,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TemplateBody {
    name_suffix: Option<String>,
    target_count: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    name: Option<String>,
    description: Option<String>,
    target_filter_query: Option<String>,
    distribution_set_id: Option<i64>,
    amount_groups: Option<i64>,
    groups: Option<Vec<GroupBody>>,
    #[serde(rename = "type")]
    action_type: Option<String>,
    forcetime: Option<i64>,
    start_at: Option<i64>,
    weight: Option<i64>,
    dynamic: Option<bool>,
    dynamic_group_template: Option<TemplateBody>,
    confirmation_required: Option<bool>,
    #[serde(flatten)]
    conditions: Conditions,
}

async fn create(cx: Ctx, Body(body): Body<CreateBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    cx.require(&[Permission::CREATE_ROLLOUT])?;
    if body.start_at.is_some_and(|t| t != i64::MAX) {
        may_schedule(&cx)?;
    }
    let ds_id = body
        .distribution_set_id
        .ok_or_else(|| ApiError::BadRequest("distributionSetId is required".into()))?;
    let action_type = match body.action_type.as_deref() {
        None => ActionType::Forced,
        Some(t) => ActionType::from_api(t)
            .ok_or_else(|| ApiError::NotReadable(format!("unknown action type {t:?}")))?,
    };
    let req = CreateRollout {
        name: body.name,
        description: body.description,
        target_filter: body.target_filter_query,
        ds_id,
        amount_groups: body.amount_groups,
        groups: body.groups.map(|gs| {
            gs.into_iter()
                .map(|g| GroupSpec {
                    name: g.name,
                    description: g.description,
                    target_filter: g.target_filter_query,
                    target_percentage: g.target_percentage,
                    confirmation_required: g.confirmation_required,
                    conditions: g.conditions.spec(),
                })
                .collect()
        }),
        action_type,
        forced_time: body.forcetime,
        start_at: body.start_at,
        weight: body.weight,
        dynamic: body.dynamic.unwrap_or(false),
        template: body
            .dynamic_group_template
            .map(|t| (t.name_suffix, t.target_count)),
        confirmation_required: body.confirmation_required,
        conditions: body.conditions.spec(),
    };
    let engine = &cx.state.engine;
    let id = engine
        .create_rollout(cx.tenant(), req, may_approve(&cx), cx.caller.name())
        .await?;
    created(&cx, id).await
}

#[derive(Debug, Deserialize)]
struct UpdateBody {
    name: Option<String>,
    description: Option<String>,
}

async fn update(cx: Ctx, Path(id): Path<RolloutId>, body: UpdateBody) -> ApiResult<Json<Value>> {
    cx.state
        .engine
        .update_rollout(
            cx.tenant(),
            id,
            body.name,
            body.description,
            cx.caller.name(),
        )
        .await?;
    full(&cx, id).await
}

/// The operation a `POST /rollouts/{id}/{op}` names, with the permission it needs (§9.2;
/// stopping needs UPDATE_ROLLOUT as in hawkBit's code, §12 #6).
fn operation(op: &str) -> Option<(Operation, Permission)> {
    Some(match op {
        "start" => (Operation::Start, Permission::HANDLE_ROLLOUT),
        "pause" => (Operation::Pause, Permission::HANDLE_ROLLOUT),
        "resume" => (Operation::Resume, Permission::HANDLE_ROLLOUT),
        "stop" => (Operation::Stop, Permission::UPDATE_ROLLOUT),
        "triggerNextGroup" => (Operation::TriggerNextGroup, Permission::UPDATE_ROLLOUT),
        "approve" => (Operation::Approve, Permission::APPROVE_ROLLOUT),
        "deny" => (Operation::Deny, Permission::APPROVE_ROLLOUT),
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
struct RemarkQuery {
    remark: Option<String>,
}

async fn operate(
    cx: &Ctx,
    id: RolloutId,
    op: Operation,
    perm: Permission,
    remark: Option<&str>,
) -> ApiResult<StatusCode> {
    cx.require(&[perm])?;
    cx.state
        .engine
        .rollout_operation(cx.tenant(), id, op, remark, cx.caller.name())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(cx: Ctx, Path(id): Path<RolloutId>) -> ApiResult<StatusCode> {
    let (op, perm) = (Operation::Delete, Permission::DELETE_ROLLOUT);
    operate(&cx, id, op, perm, None).await
}

/// `POST /rollouts/{id}/{op}`: start, pause, resume, stop, triggerNextGroup, approve and deny
/// (the last two with an optional `remark` of at most 255 characters), and retry.
async fn post_operation(
    cx: Ctx,
    Path((id, op)): Path<(RolloutId, String)>,
    Query(q): Query<RemarkQuery>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    if op == "retry" {
        return Ok(retry(cx, id).await?.into_response());
    }
    let (op, perm) =
        operation(&op).ok_or_else(|| ApiError::NotFound(format!("no such operation {op:?}")))?;
    if q.remark.as_ref().is_some_and(|m| m.chars().count() > 255) {
        return Err(ApiError::BadRequest(
            "remark must be at most 255 characters".into(),
        ));
    }
    let remark = match op {
        Operation::Approve | Operation::Deny => q.remark.as_deref(),
        _ => None,
    };
    Ok(operate(&cx, id, op, perm, remark).await?.into_response())
}

async fn retry(cx: Ctx, id: RolloutId) -> ApiResult<(StatusCode, Json<Value>)> {
    cx.require(&[Permission::CREATE_ROLLOUT])?;
    // The retry copies `startAt`, so scheduling rights apply as on creation (§3.8).
    let (source, _) = load(&cx, id).await?;
    if source.start_at.is_some() {
        may_schedule(&cx)?;
    }
    let engine = &cx.state.engine;
    let new = engine
        .retry_rollout(cx.tenant(), id, may_approve(&cx), cx.caller.name())
        .await?;
    created(&cx, new).await
}

async fn groups(cx: Ctx, Path(id): Path<RolloutId>, page: Page) -> ApiResult<Json<Value>> {
    cx.require(&[Permission::READ_ROLLOUT])?;
    let q = page.filter(Entity::RolloutGroup)?;
    let request = page.request(&store::GROUP_SORT)?;
    let flow = confirmation_flow(&cx).await?;
    let (r, (rows, total)) = cx
        .db()
        .run(async |c| {
            let r = find(c, &cx, id).await?;
            Ok::<_, ApiError>((r, store::list_groups(c, id, q.as_ref(), &request).await?))
        })
        .await?;
    let content = rows
        .iter()
        .map(|g| group_json(&r, g, page.full(), flow, &cx.base))
        .collect();
    Ok(Json(paged(content, total)))
}

async fn find_group(cx: &Ctx, id: RolloutId, group: GroupId) -> ApiResult<(Rollout, Group)> {
    let (r, groups) = load(cx, id).await?;
    let g = groups
        .into_iter()
        .find(|g| g.id == group)
        .ok_or_else(|| ApiError::NotFound(format!("group {group} of rollout {id} not found")))?;
    Ok((r, g))
}

async fn group(cx: Ctx, Path((id, group)): Path<(RolloutId, GroupId)>) -> ApiResult<Json<Value>> {
    cx.require(&[Permission::READ_ROLLOUT])?;
    let (r, g) = find_group(&cx, id, group).await?;
    let flow = confirmation_flow(&cx).await?;
    Ok(Json(group_json(&r, &g, true, flow, &cx.base)))
}

async fn group_targets(
    cx: Ctx,
    Path((id, group)): Path<(RolloutId, GroupId)>,
    page: Page,
) -> ApiResult<Json<Value>> {
    cx.require(&[Permission::READ_ROLLOUT, Permission::READ_TARGET])?;
    find_group(&cx, id, group).await?;
    let q = page.filter(Entity::Target)?;
    let request = page.request(&crate::store::targets::SORT)?;
    let (rows, total) = cx
        .db()
        .run(async |c| store::group_targets(c, cx.tenant(), group, q.as_ref(), &request).await)
        .await?;
    let content = rows
        .iter()
        .map(|t| super::targets::target_json(t, &cx.base, &cx.caller))
        .collect();
    Ok(Json(paged(content, total)))
}
