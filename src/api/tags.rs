//! Target tags (`/rest/v1/targettags`) and their assignment to targets, plus
//! `GET /targets/{controllerId}/tags`.

use std::collections::{BTreeSet, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::target_types::{
    Ids, base_fields, begin, check_text, commit, conn, description, find_target, single_line,
};
use super::targets::target_json;
use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Caller, Page, paged, put_opt};
use crate::auth::Permission;
use crate::store::filter::Entity;
use crate::store::tags::{self, TagRow};
use crate::store::targets::{self, TargetRow};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/targettags", get(list).post(create))
        .route(
            "/rest/v1/targettags/{id}",
            get(one).put(update).delete(remove),
        )
        .route(
            "/rest/v1/targettags/{id}/assigned",
            get(assigned).post(assign),
        )
        .route(
            "/rest/v1/targettags/{id}/assigned/{controller_id}",
            delete(unassign),
        )
        .route("/rest/v1/targets/{id}/tags", get(tags_of_target))
}

fn tag_json(base: &BaseUrl, t: &TagRow) -> Value {
    let path = format!("/targettags/{}", t.id);
    let mut v = json!({
        "id": t.id,
        "name": t.name,
        "_links": {
            "self": base.link(&path),
            "assignedTargets": base.link(&format!("{path}/assigned")),
        },
    });
    put_opt(&mut v, "description", t.description.as_deref());
    put_opt(&mut v, "colour", t.colour.as_deref());
    base_fields(
        &mut v,
        &t.created_by,
        t.created_at,
        &t.last_modified_by,
        t.last_modified_at,
    );
    v
}

fn no_tag(id: i64) -> ApiError {
    ApiError::NotFound(format!("target tag {id} not found"))
}

#[derive(Debug, Deserialize)]
struct TagBody {
    name: Option<String>,
    description: Option<String>,
    colour: Option<String>,
}

/// A target in an assignment body: hawkBit's current API takes bare controllerIds, older
/// clients send `{"controllerId": ...}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TargetRef {
    Id(String),
    Object {
        #[serde(rename = "controllerId")]
        controller_id: String,
    },
}

async fn list(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    page: Page,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_TARGET])?;
    let q = page.filter(Entity::TargetTag)?;
    let order = page.order_by(tags::SORT_FIELDS, "g.id ASC")?;
    let mut c = conn(&s).await?;
    let (rows, total) = tags::list(
        &mut c,
        caller.tenant,
        q.as_ref(),
        &order,
        page.offset(),
        page.limit(),
    )
    .await?;
    Ok(Json(paged(
        rows.iter().map(|t| tag_json(&base, t)).collect(),
        total,
    )))
}

async fn create(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Body(body): Body<Vec<TagBody>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(&[Permission::CREATE_TARGET])?;
    let mut new = Vec::with_capacity(body.len());
    for b in body {
        let name = single_line("name", b.name, 1, 128)?
            .ok_or_else(|| ApiError::BadRequest("name is required".into()))?;
        new.push((
            name,
            description(b.description)?,
            single_line("colour", b.colour, 0, 16)?,
        ));
    }
    let mut tx = begin(&s).await?;
    let mut out = Vec::with_capacity(new.len());
    for (name, description, colour) in &new {
        let row = tags::insert(
            &mut tx,
            caller.tenant,
            name,
            description.as_deref(),
            colour.as_deref(),
            caller.name(),
        )
        .await?;
        out.push(tag_json(&base, &row));
    }
    commit(tx).await?;
    Ok((StatusCode::CREATED, Json(Value::Array(out))))
}

async fn one(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_TARGET])?;
    let mut c = conn(&s).await?;
    let t = tags::find(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| no_tag(id))?;
    Ok(Json(tag_json(&base, &t)))
}

async fn update(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
    Body(b): Body<TagBody>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::UPDATE_TARGET])?;
    let name = single_line("name", b.name, 1, 128)?;
    let description = description(b.description)?;
    let colour = single_line("colour", b.colour, 0, 16)?;
    let mut c = conn(&s).await?;
    let t = tags::update(
        &mut c,
        caller.tenant,
        id,
        name.as_deref(),
        description.as_deref(),
        colour.as_deref(),
        caller.name(),
    )
    .await?
    .ok_or_else(|| no_tag(id))?;
    Ok(Json(tag_json(&base, &t)))
}

async fn remove(
    State(s): State<ApiState>,
    caller: Caller,
    Ids(id): Ids<i64>,
) -> ApiResult<StatusCode> {
    caller.require(&[Permission::DELETE_TARGET])?;
    let mut c = conn(&s).await?;
    if tags::delete(&mut c, caller.tenant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_tag(id))
    }
}

async fn assigned(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
    page: Page,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_TARGET])?;
    let q = page.filter(Entity::Target)?;
    let order = page.order_by(targets::SORT_FIELDS, "t.controller_id ASC")?;
    let mut c = conn(&s).await?;
    tags::find(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| no_tag(id))?;
    let (rows, total) = tags::assigned_targets(
        &mut c,
        caller.tenant,
        id,
        q.as_ref(),
        &order,
        page.offset(),
        page.limit(),
    )
    .await?;
    Ok(Json(paged(
        rows.iter()
            .map(|t| target_json(t, &base, &caller))
            .collect(),
        total,
    )))
}

/// Tag the listed targets; answers them as `GET /targets` renders them. Any unknown
/// controllerId → 404 and nothing is tagged.
async fn assign(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
    Body(body): Body<Vec<TargetRef>>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::UPDATE_TARGET])?;
    let mut seen = BTreeSet::new();
    let mut wanted = Vec::with_capacity(body.len());
    for r in body {
        let (TargetRef::Id(cid) | TargetRef::Object { controller_id: cid }) = r;
        if seen.insert(cid.clone()) {
            wanted.push(cid);
        }
    }
    let mut tx = begin(&s).await?;
    tags::find(&mut tx, caller.tenant, id)
        .await?
        .ok_or_else(|| no_tag(id))?;
    let found = {
        // Ids that cannot exist (control characters, too long) never reach the database.
        let valid: Vec<String> = wanted
            .iter()
            .filter(|cid| check_text("controllerId", cid, 1, 256, false).is_ok())
            .cloned()
            .collect();
        tags::targets_by_controller_ids(&mut tx, caller.tenant, &valid).await?
    };
    let by_id: HashMap<&str, &TargetRow> = found
        .iter()
        .map(|t| (t.controller_id.as_str(), t))
        .collect();
    let mut ordered = Vec::with_capacity(wanted.len());
    let mut missing = Vec::new();
    for cid in &wanted {
        match by_id.get(cid.as_str()).copied() {
            Some(t) => ordered.push(t),
            None => missing.push(cid.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::NotFound(format!(
            "target(s) {} not found",
            missing.join(", ")
        )));
    }
    let ids: Vec<i64> = ordered.iter().map(|t| t.id).collect();
    tags::assign(&mut tx, caller.tenant, id, &ids).await?;
    commit(tx).await?;
    Ok(Json(Value::Array(
        ordered
            .iter()
            .map(|t| target_json(t, &base, &caller))
            .collect(),
    )))
}

async fn unassign(
    State(s): State<ApiState>,
    caller: Caller,
    Ids((id, controller_id)): Ids<(i64, String)>,
) -> ApiResult<StatusCode> {
    caller.require(&[Permission::UPDATE_TARGET])?;
    let mut c = conn(&s).await?;
    tags::find(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| no_tag(id))?;
    let t = find_target(&mut c, &caller, &controller_id).await?;
    // Removing a tag the target does not carry changes nothing, as in hawkBit.
    tags::unassign(&mut c, caller.tenant, id, t.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tags_of_target(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(controller_id): Ids<String>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_TARGET])?;
    let mut c = conn(&s).await?;
    let t = find_target(&mut c, &caller, &controller_id).await?;
    let rows = tags::tags_of_target(&mut c, caller.tenant, t.id).await?;
    Ok(Json(Value::Array(
        rows.iter().map(|g| tag_json(&base, g)).collect(),
    )))
}
