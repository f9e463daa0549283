//! Target tags (`/rest/v1/targettags`) and their assignment to targets, plus
//! `GET /targets/{controllerId}/tags`.

use std::collections::{BTreeSet, HashMap};

use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::common::{
    Ctx, Ids, Listed, READ_TARGET, Resource, base_fields, check_text, description, find_target,
    get_put_delete, single_line,
};
use super::targets::target_json;
use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Page, put_opt};
use crate::auth::Permission;
use crate::domain::ids::TenantId;
use crate::store::filter::{Entity, Filter};
use crate::store::page::PageRequest;
use crate::store::table::RowLock;
use crate::store::tags::{self, TagRow};
use crate::store::targets::{self, TargetRow};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/targettags", TAGS.list().post(create))
        .route(
            "/rest/v1/targettags/{id}",
            get_put_delete(TAGS.one(), &[Permission::UPDATE_TARGET], update, remove),
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
        "name": t.named.name,
        "_links": {
            "self": base.link(&path),
            "assignedTargets": base.link(&format!("{path}/assigned")),
        },
    });
    put_opt(&mut v, "description", t.named.description.as_deref());
    put_opt(&mut v, "colour", t.colour.as_deref());
    base_fields(&mut v, &t.audit);
    v
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

const TARGETS: Listed = Listed::new(Entity::Target, &targets::SORT);

static TAGS: Resource<TagRow> =
    Resource::new(&tags::TABLE, Entity::TargetTag, READ_TARGET, tag_json);

/// A tag to create: name, description, colour.
type NewTag = (String, Option<String>, Option<String>);

fn new_tag(b: TagBody) -> ApiResult<NewTag> {
    let name = single_line("name", b.name, 1, 128)?
        .ok_or_else(|| ApiError::BadRequest("name is required".into()))?;
    Ok((
        name,
        description(b.description)?,
        single_line("colour", b.colour, 0, 16)?,
    ))
}

async fn create(cx: Ctx, Body(body): Body<Vec<TagBody>>) -> ApiResult<(StatusCode, Json<Value>)> {
    let insert = async |tx: &mut PgConnection, cx: &Ctx, (name, description, colour): &NewTag| {
        let (description, colour) = (description.as_deref(), colour.as_deref());
        let row =
            tags::insert(tx, cx.tenant(), name, description, colour, cx.caller.name()).await?;
        Ok(tag_json(&cx.base, &row))
    };
    cx.create_each(&[Permission::CREATE_TARGET], body, new_tag, insert)
        .await
}

async fn update(cx: Ctx, Ids(id): Ids<i64>, b: TagBody) -> ApiResult<Json<Value>> {
    let name = single_line("name", b.name, 1, 128)?;
    let description = description(b.description)?;
    let colour = single_line("colour", b.colour, 0, 16)?;
    let (name, description, colour) = (name.as_deref(), description.as_deref(), colour.as_deref());
    let change = async |c: &mut PgConnection| {
        tags::update(
            c,
            cx.tenant(),
            id,
            name,
            description,
            colour,
            cx.caller.name(),
        )
        .await
    };
    cx.update_one(change, || TAGS.missing(id), |t| tag_json(&cx.base, &t))
        .await
}

async fn remove(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<StatusCode> {
    cx.delete_by_id(&[Permission::DELETE_TARGET], &TAGS, id)
        .await
}

/// The tag of the tenant, or 404.
async fn find_tag(c: &mut PgConnection, tenant: TenantId, id: i64) -> ApiResult<TagRow> {
    tags::TABLE
        .find(c, tenant, id)
        .await?
        .ok_or_else(|| TAGS.missing(id))
}

async fn assigned(cx: Ctx, Ids(id): Ids<i64>, page: Page) -> ApiResult<Json<Value>> {
    let fetch = async |c: &mut PgConnection, tenant, q: Option<&Filter>, page: &PageRequest| {
        find_tag(c, tenant, id).await?;
        Ok::<_, ApiError>(tags::ASSIGNMENTS.members(c, tenant, id, q, page).await?)
    };
    cx.list(READ_TARGET, &page, TARGETS, fetch, |t| {
        target_json(&t, &cx.base, &cx.caller)
    })
    .await
}

/// Tag the listed targets; answers them as `GET /targets` renders them. Any unknown
/// controllerId → 404 and nothing is tagged.
async fn assign(
    cx: Ctx,
    Ids(id): Ids<i64>,
    Body(body): Body<Vec<TargetRef>>,
) -> ApiResult<Json<Value>> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    let mut seen = BTreeSet::new();
    let mut wanted = Vec::with_capacity(body.len());
    for r in body {
        let (TargetRef::Id(cid) | TargetRef::Object { controller_id: cid }) = r;
        if seen.insert(cid.clone()) {
            wanted.push(cid);
        }
    }
    let tenant = cx.tenant();
    let tagged = cx
        .db()
        .tx(async |tx| {
            find_tag(tx, tenant, id).await?;
            // Ids that cannot exist (control characters, too long) never reach the database.
            let valid: Vec<String> = wanted
                .iter()
                .filter(|cid| check_text("controllerId", cid, 1, 256, false).is_ok())
                .cloned()
                .collect();
            let found = targets::find_many(tx, tenant, &valid, RowLock::None).await?;
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
            tags::ASSIGNMENTS.link(tx, tenant, id, &ids).await?;
            Ok(ordered)
        })
        .await?;
    let ids: Vec<i64> = tagged.iter().map(|t| t.id).collect();
    cx.state.engine.auto_assign_changed(tenant, &ids).await;
    let content = tagged.iter().map(|t| target_json(t, &cx.base, &cx.caller));
    Ok(Json(Value::Array(content.collect())))
}

async fn unassign(cx: Ctx, Ids((id, controller_id)): Ids<(i64, String)>) -> ApiResult<StatusCode> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    let tenant = cx.tenant();
    let remove = async |c: &mut PgConnection, _| {
        let t = find_target(c, tenant, &controller_id, RowLock::None).await?;
        // Removing a tag the target does not carry changes nothing, as in hawkBit.
        tags::ASSIGNMENTS.unlink(c, tenant, id, t.id).await?;
        Ok(())
    };
    cx.relink(
        async |c| find_tag(c, tenant, id).await,
        remove,
        StatusCode::NO_CONTENT,
    )
    .await
}

async fn tags_of_target(cx: Ctx, Ids(controller_id): Ids<String>) -> ApiResult<Json<Value>> {
    cx.require(READ_TARGET)?;
    let tenant = cx.tenant();
    let fetch = async |c: &mut PgConnection| {
        let t = find_target(c, tenant, &controller_id, RowLock::None).await?;
        Ok(tags::ASSIGNMENTS.owners_of(c, tenant, t.id).await?)
    };
    cx.array(fetch, |g| tag_json(&cx.base, g)).await
}
