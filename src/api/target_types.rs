//! Target types (`/rest/v1/targettypes`, rollouts.md §1.1): which distribution set types a
//! target of the type accepts. Targets refer to a type by id (`targetType` in the target body)
//! or, over DMF, by name.
//!
//! Also the small plumbing the target tag and target metadata resources share with this one:
//! path ids answered with hawkBit's 404 body, connections, text validation.

use std::collections::BTreeSet;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Postgres;
use sqlx::pool::PoolConnection;

use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Caller, Page, paged, put_opt};
use crate::auth::Permission;
use crate::store::StoreError;
use crate::store::filter::Entity;
use crate::store::target_types::{
    self as types, CompatibleDsType, NewTargetType, TargetTypeRow, TargetTypeUpdate,
};
use crate::store::targets::{self, TargetRow};

/// hawkBit's `maxDistributionSetTypesPerTargetType` quota.
const MAX_DS_TYPES_PER_TARGET_TYPE: i64 = 50;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/targettypes", get(list).post(create))
        .route(
            "/rest/v1/targettypes/{id}",
            get(one).put(update).delete(remove),
        )
        .route(
            "/rest/v1/targettypes/{id}/compatibledistributionsettypes",
            get(compatible).post(add_compatible),
        )
        .route(
            "/rest/v1/targettypes/{id}/compatibledistributionsettypes/{ds_type_id}",
            delete(remove_compatible),
        )
}

// ---------------------------------------------------------------------------------------------
// Plumbing shared with `tags` and `target_metadata`

/// Path parameters; anything that does not parse (`/targettypes/abc`) is a hawkBit 404.
pub(super) struct Ids<T>(pub T);

impl<S, T> FromRequestParts<S> for Ids<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Ids(t))
            .map_err(|e| ApiError::NotFound(format!("no such entity: {}", e.body_text())))
    }
}

pub(super) type Conn = PoolConnection<Postgres>;
pub(super) type Tx = sqlx::Transaction<'static, Postgres>;

pub(super) async fn conn(state: &ApiState) -> ApiResult<Conn> {
    Ok(state
        .engine
        .pool()
        .acquire()
        .await
        .map_err(StoreError::from)?)
}

pub(super) async fn begin(state: &ApiState) -> ApiResult<Tx> {
    Ok(state
        .engine
        .pool()
        .begin()
        .await
        .map_err(StoreError::from)?)
}

pub(super) async fn commit(tx: Tx) -> ApiResult<()> {
    Ok(tx.commit().await.map_err(StoreError::from)?)
}

/// `min..=max` characters; control characters are refused (PostgreSQL text cannot hold NUL),
/// except line breaks and tabs in free text.
pub(super) fn check_text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    free_text: bool,
) -> ApiResult<()> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ApiError::BadRequest(format!(
            "{field} must have {min} to {max} characters, has {n}"
        )));
    }
    let allowed = |c: char| free_text && matches!(c, '\n' | '\r' | '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(ApiError::BadRequest(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}

/// An optional single-line field (names, keys, colours), trimmed, `min..=max` characters when
/// present.
pub(super) fn single_line(
    field: &str,
    value: Option<String>,
    min: usize,
    max: usize,
) -> ApiResult<Option<String>> {
    value
        .map(|v| {
            let v = v.trim().to_owned();
            check_text(field, &v, min, max, false).map(|()| v)
        })
        .transpose()
}

/// An optional description: free text of at most 512 characters, trimmed.
pub(super) fn description(value: Option<String>) -> ApiResult<Option<String>> {
    value
        .map(|v| {
            let v = v.trim().to_owned();
            check_text("description", &v, 0, 512, true).map(|()| v)
        })
        .transpose()
}

/// A target of the caller's tenant by controllerId, or 404. An id that cannot exist (control
/// characters, too long) never reaches the database.
pub(super) async fn find_target(
    c: &mut sqlx::PgConnection,
    caller: &Caller,
    controller_id: &str,
) -> ApiResult<TargetRow> {
    let not_found = || ApiError::NotFound(format!("target {controller_id} not found"));
    check_text("controllerId", controller_id, 1, 256, false).map_err(|_| not_found())?;
    targets::find(c, caller.tenant, controller_id)
        .await?
        .ok_or_else(not_found)
}

/// [`find_target`], locking the target for the rest of the transaction.
pub(super) async fn lock_target(
    c: &mut sqlx::PgConnection,
    caller: &Caller,
    controller_id: &str,
) -> ApiResult<TargetRow> {
    let not_found = || ApiError::NotFound(format!("target {controller_id} not found"));
    check_text("controllerId", controller_id, 1, 256, false).map_err(|_| not_found())?;
    targets::lock_by_controller_id(c, caller.tenant, controller_id)
        .await?
        .ok_or_else(not_found)
}

/// createdBy/At, lastModifiedBy/At.
pub(super) fn base_fields(obj: &mut Value, created_by: &str, created_at: i64, by: &str, at: i64) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("createdBy".into(), json!(created_by));
        map.insert("createdAt".into(), json!(created_at));
        map.insert("lastModifiedBy".into(), json!(by));
        map.insert("lastModifiedAt".into(), json!(at));
    }
}

// ---------------------------------------------------------------------------------------------
// Target types

fn type_json(base: &BaseUrl, t: &TargetTypeRow) -> Value {
    let path = format!("/targettypes/{}", t.id);
    let mut v = json!({
        "id": t.id,
        "name": t.name,
        "key": t.key,
        "_links": {
            "self": base.link(&path),
            "compatibledistributionsettypes":
                base.link(&format!("{path}/compatibledistributionsettypes")),
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

fn ds_type_json(base: &BaseUrl, t: &CompatibleDsType) -> Value {
    let mut v = json!({
        "id": t.id,
        "key": t.key,
        "name": t.name,
        "deleted": t.deleted,
        "_links": {"self": base.link(&format!("/distributionsettypes/{}", t.id))},
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

fn no_type(id: i64) -> ApiError {
    ApiError::NotFound(format!("target type {id} not found"))
}

#[derive(Debug, Deserialize)]
struct IdRef {
    id: i64,
}

#[derive(Debug, Deserialize)]
struct TypeCreate {
    name: Option<String>,
    key: Option<String>,
    description: Option<String>,
    colour: Option<String>,
    compatibledistributionsettypes: Option<Vec<IdRef>>,
}

#[derive(Debug, Deserialize)]
struct TypeUpdate {
    name: Option<String>,
    description: Option<String>,
    colour: Option<String>,
}

/// Distinct ids in request order.
fn distinct(refs: Vec<IdRef>) -> Vec<i64> {
    let mut seen = BTreeSet::new();
    refs.into_iter()
        .map(|r| r.id)
        .filter(|id| seen.insert(*id))
        .collect()
}

/// Accept `ds_type_ids` for target type `id` (locked by the caller): unknown ones → 404, more
/// than the quota → 429.
async fn add_ds_types(tx: &mut Tx, caller: &Caller, id: i64, ds_type_ids: &[i64]) -> ApiResult<()> {
    if ds_type_ids.is_empty() {
        return Ok(());
    }
    let missing = types::missing_ds_types(tx, caller.tenant, ds_type_ids).await?;
    if !missing.is_empty() {
        return Err(ApiError::NotFound(format!(
            "distribution set type(s) {missing:?} not found"
        )));
    }
    types::add_ds_types(tx, caller.tenant, id, ds_type_ids, caller.name()).await?;
    let count = types::count_ds_types(tx, caller.tenant, id).await?;
    if count > MAX_DS_TYPES_PER_TARGET_TYPE {
        // The transaction is dropped, not committed: nothing was added.
        return Err(ApiError::TooManyEntries(format!(
            "a target type accepts at most {MAX_DS_TYPES_PER_TARGET_TYPE} distribution set types"
        )));
    }
    Ok(())
}

async fn list(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    page: Page,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_TARGET])?;
    let q = page.filter(Entity::TargetType)?;
    let order = page.order_by(types::SORT_FIELDS, "tt.id ASC")?;
    let mut c = conn(&s).await?;
    let (rows, total) = types::list(
        &mut c,
        caller.tenant,
        q.as_ref(),
        &order,
        page.offset(),
        page.limit(),
    )
    .await?;
    Ok(Json(paged(
        rows.iter().map(|t| type_json(&base, t)).collect(),
        total,
    )))
}

async fn create(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Body(body): Body<Vec<TypeCreate>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(&[Permission::CREATE_TARGET])?;
    let mut new = Vec::with_capacity(body.len());
    for b in body {
        let name = single_line("name", b.name, 1, 128)?;
        let key = single_line("key", b.key, 1, 64)?;
        // Like hawkBit, either one defaults to the other.
        let (key, name) = match (key, name) {
            (Some(k), Some(n)) => (k, n),
            (Some(k), None) => (k.clone(), k),
            (None, Some(n)) => (n.clone(), n),
            (None, None) => {
                return Err(ApiError::TargetTypeKeyOrNameRequired(
                    "key or name of the target type must be given".into(),
                ));
            }
        };
        check_text("key", &key, 1, 64, false)?;
        let t = NewTargetType {
            key,
            name,
            description: description(b.description)?,
            colour: single_line("colour", b.colour, 0, 16)?,
        };
        new.push((
            t,
            distinct(b.compatibledistributionsettypes.unwrap_or_default()),
        ));
    }
    let mut tx = begin(&s).await?;
    let mut out = Vec::with_capacity(new.len());
    for (t, ds_types) in &new {
        let row = types::insert(&mut tx, caller.tenant, t, caller.name()).await?;
        add_ds_types(&mut tx, &caller, row.id, ds_types).await?;
        out.push(type_json(&base, &row));
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
    let t = types::find(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| no_type(id))?;
    Ok(Json(type_json(&base, &t)))
}

async fn update(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
    Body(b): Body<TypeUpdate>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::UPDATE_TARGET])?;
    let u = TargetTypeUpdate {
        name: single_line("name", b.name, 1, 128)?,
        description: description(b.description)?,
        colour: single_line("colour", b.colour, 0, 16)?,
    };
    let mut c = conn(&s).await?;
    let t = types::update(&mut c, caller.tenant, id, &u, caller.name())
        .await?
        .ok_or_else(|| no_type(id))?;
    Ok(Json(type_json(&base, &t)))
}

/// A type that targets still have is not deleted: hawkBit answers 409
/// `hawkbit.server.error.target.type.used` (TargetTypeInUseException) rather than clearing the
/// targets' type.
async fn remove(
    State(s): State<ApiState>,
    caller: Caller,
    Ids(id): Ids<i64>,
) -> ApiResult<StatusCode> {
    caller.require(&[Permission::DELETE_TARGET])?;
    let mut tx = begin(&s).await?;
    if !types::lock(&mut tx, caller.tenant, id).await? {
        return Err(no_type(id));
    }
    if types::in_use(&mut tx, caller.tenant, id).await? {
        return Err(ApiError::TargetTypeInUse(format!(
            "target type {id} is still in use by a target"
        )));
    }
    types::delete(&mut tx, caller.tenant, id).await?;
    commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn compatible(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_TARGET])?;
    let mut c = conn(&s).await?;
    types::find(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| no_type(id))?;
    let rows = types::compatible_ds_types(&mut c, caller.tenant, id).await?;
    Ok(Json(Value::Array(
        rows.iter().map(|t| ds_type_json(&base, t)).collect(),
    )))
}

/// hawkBit answers 200 with an empty body.
async fn add_compatible(
    State(s): State<ApiState>,
    caller: Caller,
    Ids(id): Ids<i64>,
    Body(body): Body<Vec<IdRef>>,
) -> ApiResult<StatusCode> {
    caller.require(&[Permission::UPDATE_TARGET])?;
    let mut tx = begin(&s).await?;
    if !types::lock(&mut tx, caller.tenant, id).await? {
        return Err(no_type(id));
    }
    add_ds_types(&mut tx, &caller, id, &distinct(body)).await?;
    commit(tx).await?;
    Ok(StatusCode::OK)
}

async fn remove_compatible(
    State(s): State<ApiState>,
    caller: Caller,
    Ids((id, ds_type_id)): Ids<(i64, i64)>,
) -> ApiResult<StatusCode> {
    caller.require(&[Permission::UPDATE_TARGET])?;
    let mut tx = begin(&s).await?;
    if !types::lock(&mut tx, caller.tenant, id).await? {
        return Err(no_type(id));
    }
    if !types::remove_ds_type(&mut tx, caller.tenant, id, ds_type_id, caller.name()).await?
        && !types::missing_ds_types(&mut tx, caller.tenant, &[ds_type_id])
            .await?
            .is_empty()
    {
        return Err(ApiError::NotFound(format!(
            "distribution set type {ds_type_id} not found"
        )));
    }
    commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
