//! Target tags (`/rest/v1/targettags`) and their assignment to targets, plus
//! `GET /targets/{controllerId}/tags`.

use std::collections::{BTreeSet, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::common::{
    self, Ids, Listed, base_fields, check_text, description, find_target, single_line,
};
use super::targets::target_json;
use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Caller, Page, put_opt};
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

const TAGS: Listed = Listed {
    entity: Entity::TargetTag,
    sort: &tags::SORT,
};

const TARGETS: Listed = Listed {
    entity: Entity::Target,
    sort: &targets::SORT,
};

async fn list(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    page: Page,
) -> ApiResult<Json<Value>> {
    common::list(
        &s,
        &caller,
        &[Permission::READ_TARGET],
        &page,
        TAGS,
        async |c, q, page| Ok(tags::list(c, caller.tenant, q, page).await?),
        |t| tag_json(&base, &t),
    )
    .await
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
    let out =
        s.db.tx(async |tx| {
            let mut out = Vec::with_capacity(new.len());
            for (name, description, colour) in &new {
                let row = tags::insert(
                    tx,
                    caller.tenant,
                    name,
                    description.as_deref(),
                    colour.as_deref(),
                    caller.name(),
                )
                .await?;
                out.push(tag_json(&base, &row));
            }
            Ok::<_, ApiError>(out)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(Value::Array(out))))
}

async fn one(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_TARGET])?;
    common::get_one(
        &s,
        async |c| Ok(tags::find(c, caller.tenant, id).await?),
        || no_tag(id),
        |t| tag_json(&base, &t),
    )
    .await
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
    common::update_one(
        &s,
        async |c| {
            Ok(tags::update(
                c,
                caller.tenant,
                id,
                name.as_deref(),
                description.as_deref(),
                colour.as_deref(),
                caller.name(),
            )
            .await?)
        },
        || no_tag(id),
        |t| tag_json(&base, &t),
    )
    .await
}

async fn remove(
    State(s): State<ApiState>,
    caller: Caller,
    Ids(id): Ids<i64>,
) -> ApiResult<StatusCode> {
    caller.require(&[Permission::DELETE_TARGET])?;
    if s.db
        .run(async |c| tags::delete(c, caller.tenant, id).await)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_tag(id))
    }
}

/// The tag of the tenant, or 404.
async fn find_tag(c: &mut PgConnection, caller: &Caller, id: i64) -> ApiResult<TagRow> {
    tags::find(c, caller.tenant, id)
        .await?
        .ok_or_else(|| no_tag(id))
}

async fn assigned(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
    page: Page,
) -> ApiResult<Json<Value>> {
    common::list(
        &s,
        &caller,
        &[Permission::READ_TARGET],
        &page,
        TARGETS,
        async |c, q, page| {
            find_tag(c, &caller, id).await?;
            Ok(tags::assigned_targets(c, caller.tenant, id, q, page).await?)
        },
        |t| target_json(&t, &base, &caller),
    )
    .await
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
    let ordered =
        s.db.tx(async |tx| {
            find_tag(tx, &caller, id).await?;
            // Ids that cannot exist (control characters, too long) never reach the database.
            let valid: Vec<String> = wanted
                .iter()
                .filter(|cid| check_text("controllerId", cid, 1, 256, false).is_ok())
                .cloned()
                .collect();
            let found = tags::targets_by_controller_ids(tx, caller.tenant, &valid).await?;
            let mut by_id: HashMap<String, TargetRow> = found
                .into_iter()
                .map(|t| (t.controller_id.clone(), t))
                .collect();
            let mut ordered = Vec::with_capacity(wanted.len());
            let mut missing = Vec::new();
            for cid in &wanted {
                match by_id.remove(cid.as_str()) {
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
            tags::assign(tx, caller.tenant, id, &ids).await?;
            Ok(ordered)
        })
        .await?;
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
    common::relink(
        &s,
        async |c| find_tag(c, &caller, id).await,
        async |c, _| {
            let t = find_target(c, &caller, &controller_id).await?;
            // Removing a tag the target does not carry changes nothing, as in hawkBit.
            tags::unassign(c, caller.tenant, id, t.id).await?;
            Ok(())
        },
        StatusCode::NO_CONTENT,
    )
    .await
}

async fn tags_of_target(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(controller_id): Ids<String>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_TARGET])?;
    let rows =
        s.db.run(async |c| {
            let t = find_target(c, &caller, &controller_id).await?;
            Ok::<_, ApiError>(tags::tags_of_target(c, caller.tenant, t.id).await?)
        })
        .await?;
    Ok(Json(Value::Array(
        rows.iter().map(|g| tag_json(&base, g)).collect(),
    )))
}
