//! Target tags (`/rest/v1/targettags`) and their assignment to targets, plus
//! `GET /targets/{controllerId}/tags`.

use std::collections::{BTreeSet, HashMap};

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get, post};
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
use crate::store::tags::{self, TagChange, TagRow, Tags};
use crate::store::targets::{self, TargetRow};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/targettags", tag_collection(&TARGET))
        .route("/rest/v1/targettags/{id}", tag_entity(&TARGET))
        .route(
            "/rest/v1/targettags/{id}/assigned",
            get(assigned).post(assign).delete(unassign_many),
        )
        .route(
            "/rest/v1/targettags/{id}/assigned/{controller_id}",
            post(assign_one).delete(unassign),
        )
        .route("/rest/v1/targets/{id}/tags", get(tags_of_target))
}

/// One kind of tag as the API serves it: its store, resource, path, the link to what carries
/// it, and the permissions that change it.
pub(super) struct TagKind {
    which: Which,
    pub(super) resource: Resource<TagRow>,
    create: &'static [Permission],
    update: &'static [Permission],
    delete: &'static [Permission],
}

/// Which kind of tag (a plain value: the async closures that write tags capture it, not a
/// reference).
#[derive(Debug, Clone, Copy)]
pub(super) enum Which {
    Target,
    Set,
}

impl Which {
    fn tags(self) -> &'static Tags {
        match self {
            Which::Target => &tags::TARGET_TAGS,
            Which::Set => &tags::SET_TAGS,
        }
    }
}

pub(super) static TARGET: TagKind = TagKind {
    which: Which::Target,
    resource: Resource::new(tags::TABLE, Entity::TargetTag, READ_TARGET, target_tag_json),
    create: &[Permission::CREATE_TARGET],
    update: &[Permission::UPDATE_TARGET],
    delete: &[Permission::DELETE_TARGET],
};

/// `GET` (a page) and `POST` (create) of a kind's collection.
pub(super) fn tag_collection(kind: &'static TagKind) -> MethodRouter<ApiState> {
    kind.resource
        .list()
        .post(move |cx: Ctx, Body(body): Body<Vec<TagBody>>| create(cx, body, kind))
}

/// `GET`, `PUT` and `DELETE` of one tag of a kind.
pub(super) fn tag_entity(kind: &'static TagKind) -> MethodRouter<ApiState> {
    get_put_delete(
        kind.resource.one(),
        kind.update,
        move |cx: Ctx, Ids(id): Ids<i64>, b: TagBody| update(cx, id, b, kind),
        move |cx: Ctx, Ids(id): Ids<i64>| async move {
            cx.delete_by_id(kind.delete, &kind.resource, id).await
        },
    )
}

/// hawkBit's `MgmtTag`; `members` names the link to what carries it.
pub(super) fn tag_json(base: &BaseUrl, t: &TagRow, path: &str, members: &str) -> Value {
    let path = format!("{path}/{}", t.id);
    let mut v = json!({
        "id": t.id,
        "name": t.named.name,
        "_links": {
            "self": base.link(&path),
            members: base.link(&format!("{path}/assigned")),
        },
    });
    put_opt(&mut v, "description", t.named.description.as_deref());
    put_opt(&mut v, "colour", t.colour.as_deref());
    base_fields(&mut v, &t.audit);
    v
}

pub(super) static SET: TagKind = TagKind {
    which: Which::Set,
    resource: Resource::new(
        &tags::SET_TAGS.table,
        Entity::DistributionSetTag,
        &[Permission::READ_REPOSITORY],
        set_tag_json,
    ),
    create: &[Permission::CREATE_REPOSITORY],
    update: &[Permission::UPDATE_REPOSITORY],
    delete: &[Permission::DELETE_REPOSITORY],
};

fn set_tag_json(base: &BaseUrl, t: &TagRow) -> Value {
    tag_json(base, t, "/distributionsettags", "assignedDistributionSets")
}

fn target_tag_json(base: &BaseUrl, t: &TagRow) -> Value {
    tag_json(base, t, "/targettags", "assignedTargets")
}

#[derive(Debug, Deserialize)]
pub(super) struct TagBody {
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

async fn create(
    cx: Ctx,
    body: Vec<TagBody>,
    kind: &'static TagKind,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (which, render) = (kind.which, kind.resource.render);
    let insert =
        async move |tx: &mut PgConnection, cx: &Ctx, (name, description, colour): &NewTag| {
            let (description, colour) = (description.as_deref(), colour.as_deref());
            let (tenant, user) = (cx.tenant(), cx.caller.name());
            let row = which
                .tags()
                .insert(tx, tenant, name, description, colour, user)
                .await?;
            Ok(render(&cx.base, &row))
        };
    cx.create_each(kind.create, body, new_tag, insert).await
}

async fn update(cx: Ctx, id: i64, b: TagBody, kind: &'static TagKind) -> ApiResult<Json<Value>> {
    let name = single_line("name", b.name, 1, 128)?;
    let description = description(b.description)?;
    let colour = single_line("colour", b.colour, 0, 16)?;
    let (tenant, user) = (cx.tenant(), cx.caller.name());
    let which = kind.which;
    let change = async move |c: &mut PgConnection| {
        let change = TagChange {
            name: name.as_deref(),
            description: description.as_deref(),
            colour: colour.as_deref(),
        };
        which.tags().update(c, tenant, id, &change, user).await
    };
    cx.update_one(
        change,
        || kind.resource.missing(id),
        |t| (kind.resource.render)(&cx.base, &t),
    )
    .await
}

/// The target tag of the tenant, or 404.
async fn find_tag(c: &mut PgConnection, tenant: TenantId, id: i64) -> ApiResult<TagRow> {
    find_tag_of(&TARGET, c, tenant, id).await
}

/// The tag of a kind of the tenant, or 404.
pub(super) async fn find_tag_of(
    kind: &TagKind,
    c: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> ApiResult<TagRow> {
    kind.resource
        .table
        .find(c, tenant, id)
        .await?
        .ok_or_else(|| kind.resource.missing(id))
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

/// What a bulk tag change does with controllerIds it does not find (hawkBit master's
/// `onNotFoundPolicy`): `FAIL` (the default) changes nothing and answers 404;
/// `ON_WHAT_FOUND_AND_FAIL` changes the targets found and still answers 404;
/// `ON_WHAT_FOUND_AND_SUCCESS` changes the targets found and succeeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum OnNotFound {
    #[default]
    Fail,
    OnWhatFoundAndFail,
    OnWhatFoundAndSuccess,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyQuery {
    #[serde(default)]
    on_not_found_policy: OnNotFound,
}

/// The controllerIds of a request body, each once, in the order given.
fn wanted_ids(body: Vec<TargetRef>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    body.into_iter()
        .map(|(TargetRef::Id(cid) | TargetRef::Object { controller_id: cid })| cid)
        .filter(|cid| seen.insert(cid.clone()))
        .collect()
}

/// Tag (`link`) or untag the targets `wanted` under `policy`, in one transaction; returns the
/// targets found, in request order, and the 404 to answer after the commit (if any).
async fn retag(
    cx: &Ctx,
    id: i64,
    wanted: &[String],
    policy: OnNotFound,
    link: bool,
) -> ApiResult<(Vec<TargetRow>, Option<ApiError>)> {
    let tenant = cx.tenant();
    cx.db()
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
            for cid in wanted {
                match by_id.remove(cid.as_str()) {
                    Some(t) => ordered.push(t),
                    None => missing.push(cid.as_str()),
                }
            }
            let not_found = (!missing.is_empty())
                .then(|| ApiError::NotFound(format!("target(s) {} not found", missing.join(", "))));
            if let (Some(e), OnNotFound::Fail) = (&not_found, policy) {
                return Err(ApiError::NotFound(e.to_string()));
            }
            let ids: Vec<i64> = ordered.iter().map(|t| t.id).collect();
            if link {
                tags::ASSIGNMENTS.link(tx, tenant, id, &ids).await?;
            } else {
                tags::ASSIGNMENTS.unlink_many(tx, tenant, id, &ids).await?;
            }
            let answer = not_found.filter(|_| policy == OnNotFound::OnWhatFoundAndFail);
            Ok((ordered, answer))
        })
        .await
}

/// Tag the listed targets; answers them as `GET /targets` renders them (hawkBit 1.1).
async fn assign(
    cx: Ctx,
    Ids(id): Ids<i64>,
    Query(q): Query<PolicyQuery>,
    Body(body): Body<Vec<TargetRef>>,
) -> ApiResult<Json<Value>> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    let wanted = wanted_ids(body);
    let (tagged, not_found) = retag(&cx, id, &wanted, q.on_not_found_policy, true).await?;
    let ids: Vec<i64> = tagged.iter().map(|t| t.id).collect();
    cx.state.engine.auto_assign_changed(cx.tenant(), &ids).await;
    if let Some(e) = not_found {
        return Err(e);
    }
    let content = tagged.iter().map(|t| target_json(t, &cx.base, &cx.caller));
    Ok(Json(Value::Array(content.collect())))
}

/// `POST /targettags/{id}/assigned/{controllerId}`: tag one target (204).
async fn assign_one(
    cx: Ctx,
    Ids((id, controller_id)): Ids<(i64, String)>,
) -> ApiResult<StatusCode> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    let (tagged, _) = retag(&cx, id, &[controller_id], OnNotFound::Fail, true).await?;
    let ids: Vec<i64> = tagged.iter().map(|t| t.id).collect();
    cx.state.engine.auto_assign_changed(cx.tenant(), &ids).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /targettags/{id}/assigned` with a list of controllerIds: untag them (204).
async fn unassign_many(
    cx: Ctx,
    Ids(id): Ids<i64>,
    Query(q): Query<PolicyQuery>,
    Body(body): Body<Vec<TargetRef>>,
) -> ApiResult<StatusCode> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    let wanted = wanted_ids(body);
    match retag(&cx, id, &wanted, q.on_not_found_policy, false).await? {
        (_, Some(e)) => Err(e),
        (_, None) => Ok(StatusCode::NO_CONTENT),
    }
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
    cx.array(fetch, |g| target_tag_json(&cx.base, g)).await
}
