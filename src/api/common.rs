//! What the resource files share: path ids answered with hawkBit's 404 body, text validation,
//! the audit fields of every entity, and the shapes of their handlers — a list, a read or a
//! change of one entity, adding or removing members of an owner — so that a resource file only
//! says what is particular to it. The store side owns every connection and transaction
//! ([`crate::store::Db`]).

use axum::Json;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::{ApiError, ApiResult, ApiState, Caller, PageParams, paged};
use crate::auth::Permission;
use crate::store::filter::{Entity, Filter};
use crate::store::page::{PageRequest, SortFields};
use crate::store::targets::{self, TargetRow};

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

// ---------------------------------------------------------------------------------------------
// Handler shapes

/// What a list shows: the entity its `q=` filters and the fields its `sort=` names.
#[derive(Clone, Copy)]
pub(super) struct Listed {
    pub entity: Entity,
    pub sort: &'static SortFields,
}

/// A list endpoint: permission → `q` → `sort` → one page read by `fetch` (on one connection)
/// → each row rendered → hawkBit's paged body. `fetch` may check the owner of the list first
/// (404) and may render rows itself when rendering reads more (then `render` passes them on).
pub(super) async fn list<R>(
    s: &ApiState,
    caller: &Caller,
    perms: &[Permission],
    page: &PageParams,
    listed: Listed,
    fetch: impl AsyncFnOnce(
        &mut PgConnection,
        Option<&Filter>,
        &PageRequest,
    ) -> ApiResult<(Vec<R>, i64)>,
    render: impl FnMut(R) -> Value,
) -> ApiResult<Json<Value>> {
    caller.require(perms)?;
    let q = page.filter(listed.entity)?;
    let request = page.request(listed.sort)?;
    let (rows, total) =
        s.db.run(async |c| fetch(c, q.as_ref(), &request).await)
            .await?;
    Ok(Json(paged(rows.into_iter().map(render).collect(), total)))
}

/// Reading one entity: `find` on one connection; `missing` (hawkBit's 404) when it finds none,
/// else the entity rendered.
pub(super) async fn get_one<T>(
    s: &ApiState,
    find: impl AsyncFnOnce(&mut PgConnection) -> ApiResult<Option<T>>,
    missing: impl FnOnce() -> ApiError,
    render: impl FnOnce(T) -> Value,
) -> ApiResult<Json<Value>> {
    let found = s.db.run(find).await?;
    Ok(Json(render(found.ok_or_else(missing)?)))
}

/// Changing one entity: `change` in one transaction returns the entity as changed; `missing`
/// (hawkBit's 404, nothing committed) when there is none, else the entity rendered.
pub(super) async fn update_one<T>(
    s: &ApiState,
    change: impl AsyncFnOnce(&mut PgConnection) -> ApiResult<Option<T>>,
    missing: impl FnOnce() -> ApiError,
    render: impl FnOnce(T) -> Value,
) -> ApiResult<Json<Value>> {
    let changed =
        s.db.tx(async |tx| change(tx).await?.ok_or_else(missing))
            .await?;
    Ok(Json(render(changed)))
}

/// Adding or removing members of an owner (a type's set types, a set's modules, a tag's
/// targets): in one transaction `owner` finds (and locks) the owner or answers 404, `change`
/// adds or removes; answers `done` once committed.
pub(super) async fn relink<O>(
    s: &ApiState,
    owner: impl AsyncFnOnce(&mut PgConnection) -> ApiResult<O>,
    change: impl AsyncFnOnce(&mut PgConnection, O) -> ApiResult<()>,
    done: StatusCode,
) -> ApiResult<StatusCode> {
    s.db.tx(async |tx| {
        let o = owner(tx).await?;
        change(tx, o).await
    })
    .await?;
    Ok(done)
}

/// 403 unless the caller has at least one of `perms`.
pub(super) fn require_any(caller: &Caller, perms: &[Permission]) -> ApiResult<()> {
    if perms.iter().any(|p| caller.user.has(*p)) {
        Ok(())
    } else {
        let names: Vec<&str> = perms.iter().map(|p| p.as_str()).collect();
        Err(ApiError::Forbidden(format!(
            "user {} lacks permission {}",
            caller.name(),
            names.join(" or ")
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Targets by controllerId (tags, metadata and targets themselves)

/// A target of the caller's tenant by controllerId, or 404. An id that cannot exist (control
/// characters, too long) never reaches the database.
pub(super) async fn find_target(
    c: &mut PgConnection,
    caller: &Caller,
    controller_id: &str,
) -> ApiResult<TargetRow> {
    let not_found = || no_target(controller_id);
    check_text("controllerId", controller_id, 1, 256, false).map_err(|_| not_found())?;
    targets::find(c, caller.tenant, controller_id)
        .await?
        .ok_or_else(not_found)
}

/// [`find_target`], locking the target for the rest of the transaction.
pub(super) async fn lock_target(
    c: &mut PgConnection,
    caller: &Caller,
    controller_id: &str,
) -> ApiResult<TargetRow> {
    let not_found = || no_target(controller_id);
    check_text("controllerId", controller_id, 1, 256, false).map_err(|_| not_found())?;
    targets::lock_by_controller_id(c, caller.tenant, controller_id)
        .await?
        .ok_or_else(not_found)
}

pub(super) fn no_target(controller_id: &str) -> ApiError {
    ApiError::NotFound(format!("target {controller_id} not found"))
}

// ---------------------------------------------------------------------------------------------
// Text and rendering

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

/// An optional single-line field (names, keys, versions, colours), trimmed, `min..=max`
/// characters when present.
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

/// A required single-line field: trimmed, not empty, `min..=max` characters.
pub(super) fn required(
    field: &str,
    value: Option<String>,
    min: usize,
    max: usize,
) -> ApiResult<String> {
    let value = value
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("{field} is required")))?;
    check_text(field, &value, min, max, false)?;
    Ok(value)
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

/// createdBy/At, lastModifiedBy/At.
pub(super) fn base_fields(obj: &mut Value, created_by: &str, created_at: i64, by: &str, at: i64) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("createdBy".into(), json!(created_by));
        map.insert("createdAt".into(), json!(created_at));
        map.insert("lastModifiedBy".into(), json!(by));
        map.insert("lastModifiedAt".into(), json!(at));
    }
}
