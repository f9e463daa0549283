//! Targets, their actions and direct assignments (rollouts.md §9.6, §9.7).

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::common::{Ctx, Ids, Listed, existing_set, find_target, get_put_delete, no_target};
use super::repository::set_json_by_id;
use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Caller, Page, put_opt};
use crate::auth::Permission;
use crate::domain::action::ActionType;
use crate::domain::ids::{ControllerId, DsId, TargetId};
use crate::domain::target::{UpdateStatus, validate_name};
use crate::engine::assignment::{AssignOutcome, AssignTarget, WindowSpec};
use crate::store::filter::Entity;
use crate::store::table::RowLock;
use crate::store::targets::{self, NewTarget, TargetRow, TargetUpdate};
use crate::store::{Named, NamedUpdate};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/targets", get(list).post(create))
        .route(
            "/rest/v1/targets/{id}",
            get_put_delete(get(one), &[Permission::UPDATE_TARGET], update, remove),
        )
        .route("/rest/v1/targets/{id}/attributes", get(attributes))
        .route(
            "/rest/v1/targets/{id}/assignedDS",
            get(assigned_ds).post(assign_to_target),
        )
        .route("/rest/v1/targets/{id}/installedDS", get(installed_ds))
        .route(
            "/rest/v1/distributionsets/{id}/assignedTargets",
            get(assigned_targets).post(assign_to_set),
        )
        .route(
            "/rest/v1/distributionsets/{id}/installedTargets",
            get(installed_targets),
        )
}

pub(crate) fn target_json(t: &TargetRow, base: &BaseUrl, caller: &Caller) -> Value {
    let path = format!("/targets/{}", t.controller_id);
    let mut v = json!({
        "controllerId": t.controller_id, "name": t.named.name,
        "updateStatus": UpdateStatus::from_db(&t.update_status).map(|s| s.as_db().to_ascii_lowercase()).unwrap_or_default(),
        "requestAttributes": t.request_attributes,
        "createdBy": t.audit.created_by, "createdAt": t.audit.created_at,
        "lastModifiedBy": t.audit.last_modified_by, "lastModifiedAt": t.audit.last_modified_at,
        "_links": {
            "self": base.link(&path), "assignedDS": base.link(&format!("{path}/assignedDS")),
            "installedDS": base.link(&format!("{path}/installedDS")),
            "attributes": base.link(&format!("{path}/attributes")),
            "actions": base.link(&format!("{path}/actions?offset=0&limit=50&sort=id%3ADESC")),
        }
    });
    put_opt(&mut v, "description", t.named.description.clone());
    put_opt(&mut v, "address", t.address.clone());
    put_opt(
        &mut v,
        "ipAddress",
        t.address
            .as_deref()
            .filter(|a| a.starts_with("http"))
            .map(str::to_owned),
    );
    put_opt(&mut v, "lastControllerRequestAt", t.last_target_query);
    put_opt(&mut v, "installedAt", t.installation_date);
    put_opt(&mut v, "group", t.target_group.clone());
    put_opt(&mut v, "targetType", t.target_type_id);
    put_opt(&mut v, "targetTypeName", t.target_type_name.clone());
    if caller.user.has(Permission::READ_TARGET_SECURITY_TOKEN) {
        put_opt(&mut v, "securityToken", Some(t.security_token.clone()));
    }
    if let Some(q) = t.last_target_query {
        v["pollStatus"] = json!({"lastRequestAt": q});
    }
    v
}

/// The targets of the tenant.
const TARGETS: Listed = Listed::new(Entity::Target, &targets::SORT);

const READ: &[Permission] = &[Permission::READ_TARGET];

async fn list(cx: Ctx, page: Page) -> ApiResult<Json<Value>> {
    cx.list(
        READ,
        &page,
        TARGETS,
        async |c, t, q, p| targets::TABLE.list(c, t, q, p).await,
        |t| target_json(&t, &cx.base, &cx.caller),
    )
    .await
}

/// The targets a set is assigned to or installed on: 404 for a set the tenant does not have.
async fn targets_with_set(cx: Ctx, ds: i64, installed: bool, page: Page) -> ApiResult<Json<Value>> {
    let perms = &[Permission::READ_TARGET, Permission::READ_REPOSITORY];
    cx.list(
        perms,
        &page,
        TARGETS,
        async |c, t, q, p| {
            existing_set(c, t, ds).await?;
            Ok::<_, ApiError>(targets::with_set(c, t, ds, installed, q, p).await?)
        },
        |t| target_json(&t, &cx.base, &cx.caller),
    )
    .await
}

async fn assigned_targets(cx: Ctx, Ids(ds): Ids<i64>, page: Page) -> ApiResult<Json<Value>> {
    targets_with_set(cx, ds, false, page).await
}

async fn installed_targets(cx: Ctx, Ids(ds): Ids<i64>, page: Page) -> ApiResult<Json<Value>> {
    targets_with_set(cx, ds, true, page).await
}

/// A target of the tenant, or 404.
async fn target(cx: &Ctx, controller_id: &str) -> ApiResult<TargetRow> {
    cx.db()
        .run(async |c| find_target(c, cx.tenant(), controller_id, RowLock::None).await)
        .await
}

async fn one(cx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    let t = target(&cx, &id).await?;
    Ok(Json(target_json(&t, &cx.base, &cx.caller)))
}

async fn attributes(cx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    let t = target(&cx, &id).await?;
    Ok(Json(targets::attributes_json(&t)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetBody {
    controller_id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    address: Option<String>,
    security_token: Option<String>,
    request_attributes: Option<bool>,
    target_type: Option<i64>,
    group: Option<String>,
}

async fn create(
    cx: Ctx,
    Body(body): Body<Vec<TargetBody>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    cx.require(&[Permission::CREATE_TARGET])?;
    let mut new = Vec::new();
    for b in body {
        let cid = ControllerId::parse(b.controller_id.as_deref().unwrap_or(""))?;
        let name = b.name.clone().unwrap_or_else(|| cid.as_str().to_owned());
        validate_name(&name)?;
        new.push(NewTarget {
            controller_id: cid.into_string(),
            named: Named {
                name,
                description: b.description,
            },
            address: b.address,
            security_token: b
                .security_token
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
            request_attributes: b.request_attributes.unwrap_or(true),
            target_type_id: b.target_type,
            group: b.group,
        });
    }
    let (tenant, user) = (cx.tenant(), cx.caller.name());
    let out = cx
        .db()
        .tx(async |tx| {
            for t in &new {
                if let Some(tt) = t.target_type_id
                    && !targets::target_type_exists(tx, tenant, tt).await?
                {
                    return Err(ApiError::NotFound(format!("target type {tt} not found")));
                }
            }
            targets::insert(tx, tenant, &new, user).await?;
            let mut rows = Vec::new();
            for t in &new {
                if let Some(row) = targets::find(tx, tenant, &t.controller_id).await? {
                    rows.push(row);
                }
            }
            Ok(rows)
        })
        .await?;
    let ids: Vec<i64> = out.iter().map(|t| t.id).collect();
    cx.state.engine.auto_assign_changed(tenant, &ids).await;
    let out = out.iter().map(|t| target_json(t, &cx.base, &cx.caller));
    Ok((StatusCode::CREATED, Json(Value::Array(out.collect()))))
}

async fn update(cx: Ctx, Path(id): Path<String>, b: TargetBody) -> ApiResult<Json<Value>> {
    let u = TargetUpdate {
        named: NamedUpdate {
            name: b.name,
            description: b.description,
        },
        address: b.address,
        security_token: b.security_token,
        request_attributes: b.request_attributes,
        group: b.group,
        target_type_id: b.target_type.map(Some),
    };
    let change = async |c: &mut PgConnection| {
        let t = find_target(c, cx.tenant(), &id, RowLock::None).await?;
        if let Some(n) = &u.named.name {
            validate_name(n)?;
        }
        targets::update(c, TargetId(t.id), &u, cx.caller.name()).await?;
        Ok::<_, ApiError>(targets::find(c, cx.tenant(), &id).await?)
    };
    let mut changed = None;
    let answer = cx
        .update_one(
            change,
            || no_target(&id),
            |t| {
                changed = Some(t.id);
                target_json(&t, &cx.base, &cx.caller)
            },
        )
        .await?;
    let changed: Vec<i64> = changed.into_iter().collect();
    cx.state
        .engine
        .auto_assign_changed(cx.tenant(), &changed)
        .await;
    Ok(answer)
}

async fn remove(cx: Ctx, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cx.require(&[Permission::DELETE_TARGET])?;
    cx.state.engine.delete_target(cx.tenant(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_id(s: &str) -> ApiResult<i64> {
    s.parse()
        .map_err(|_| ApiError::NotFound(format!("{s} is not an id")))
}

/// The set a target has assigned or installed, rendered as `GET /distributionsets/{id}` renders
/// it; 204 when there is none (hawkBit).
async fn target_set(cx: Ctx, controller_id: &str, installed: bool) -> ApiResult<Response> {
    cx.require(&[Permission::READ_TARGET, Permission::READ_REPOSITORY])?;
    let tenant = cx.tenant();
    let set = async |c: &mut PgConnection| {
        let t = find_target(c, tenant, controller_id, RowLock::None).await?;
        match if installed {
            t.installed_ds_id
        } else {
            t.assigned_ds_id
        } {
            Some(ds) => set_json_by_id(c, tenant, &cx.base, ds).await,
            None => Ok(None),
        }
    };
    Ok(match cx.db().run(set).await? {
        Some(v) => Json(v).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

async fn assigned_ds(cx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    target_set(cx, &id, false).await
}

async fn installed_ds(cx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    target_set(cx, &id, true).await
}

#[derive(Deserialize)]
struct Window {
    schedule: String,
    duration: String,
    timezone: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignBody {
    id: Value,
    #[serde(rename = "type")]
    action_type: Option<String>,
    forcetime: Option<i64>,
    weight: Option<i64>,
    confirmation_required: Option<bool>,
    maintenance_window: Option<Window>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<AssignBody>),
    One(AssignBody),
}

#[derive(Deserialize, Default)]
struct AssignParams {
    offline: Option<bool>,
}

fn to_request(b: AssignBody, controller_id: String) -> ApiResult<AssignTarget> {
    let action_type = match b.action_type.as_deref() {
        None => ActionType::Forced,
        Some(t) => ActionType::from_api(t)
            .ok_or_else(|| ApiError::NotReadable(format!("unknown action type {t:?}")))?,
    };
    Ok(AssignTarget {
        controller_id,
        action_type,
        forced_time: b.forcetime.unwrap_or(0),
        weight: b.weight,
        confirmation_required: b.confirmation_required,
        window: b.maintenance_window.map(|w| WindowSpec {
            schedule: w.schedule,
            duration: w.duration,
            timezone: w.timezone,
        }),
    })
}

fn outcome_json(o: &AssignOutcome, base: &BaseUrl) -> Value {
    json!({
        "assigned": o.assigned, "alreadyAssigned": o.already_assigned,
        "total": o.assigned + o.already_assigned,
        "assignedActions": o.action_ids.iter().map(|id| json!({"id": id, "_links": {"self": base.link(&format!("/actions/{id}"))}})).collect::<Vec<_>>(),
    })
}

/// Assign each set to its targets through the engine, all or nothing.
async fn assign(
    cx: &Ctx,
    sets: Vec<(DsId, Vec<AssignTarget>)>,
    p: &AssignParams,
) -> ApiResult<Json<Value>> {
    let offline = p.offline.unwrap_or(false);
    let engine = &cx.state.engine;
    let out = engine
        .assign(cx.tenant(), sets, offline, cx.caller.name())
        .await?;
    Ok(Json(outcome_json(&out, &cx.base)))
}

const ASSIGN: &[Permission] = &[Permission::READ_REPOSITORY, Permission::UPDATE_TARGET];

async fn assign_to_set(
    cx: Ctx,
    Path(ds): Path<String>,
    Query(p): Query<AssignParams>,
    Body(body): Body<Vec<AssignBody>>,
) -> ApiResult<Json<Value>> {
    cx.require(ASSIGN)?;
    let ds = parse_id(&ds)?;
    let mut reqs = Vec::new();
    for b in body {
        let cid =
            b.id.as_str()
                .map(str::to_owned)
                .ok_or_else(|| ApiError::NotReadable("id must be a controllerId string".into()))?;
        reqs.push(to_request(b, cid)?);
    }
    assign(&cx, vec![(DsId(ds), reqs)], &p).await
}

async fn assign_to_target(
    cx: Ctx,
    Path(id): Path<String>,
    Query(p): Query<AssignParams>,
    Body(body): Body<OneOrMany>,
) -> ApiResult<Json<Value>> {
    cx.require(ASSIGN)?;
    let list = match body {
        OneOrMany::Many(v) => v,
        OneOrMany::One(b) => vec![b],
    };
    let mut sets = Vec::with_capacity(list.len());
    for b in list {
        let ds =
            b.id.as_i64()
                .ok_or_else(|| ApiError::NotReadable("id must be a distribution set id".into()))?;
        sets.push((DsId(ds), vec![to_request(b, id.clone())?]));
    }
    assign(&cx, sets, &p).await
}
