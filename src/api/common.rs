//! What the resource files share: path ids answered with hawkBit's 404 body, text validation,
//! the audit fields of every entity, and the shapes of their handlers — a list, a read or a
//! change of one entity, adding or removing members of an owner — so that a resource file only
//! says what is particular to it. The store side owns every connection and transaction
//! ([`crate::store::Db`]).

use axum::Json;
use axum::extract::{FromRequestParts, Path};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{MethodRouter, get, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection};

use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Caller, Page, PageParams, paged};
use crate::auth::Permission;
use crate::domain::ids::TenantId;
use crate::engine::config_keys;
use crate::store::filter::{Entity, Filter};
use crate::store::page::{PageRequest, SortFields};
use crate::store::table::{Deletion, RowLock, Table};
use crate::store::targets::{self, TargetRow};
use crate::store::{Audit, Db, StoreError, repository, tenants};

/// Path parameters; anything that does not parse (`/targettypes/abc`) is a hawkBit 404.
pub(super) struct Ids<T>(pub T);

/// A metadata entry as POSTed to a target's or a set's metadata (`key` and `value` required).
#[derive(Debug, Deserialize)]
pub(super) struct MetadataCreate {
    pub key: Option<String>,
    pub value: Option<String>,
}

/// A metadata entry as PUT to `…/metadata/{key}`.
#[derive(Debug, Deserialize)]
pub(super) struct MetadataUpdate {
    pub value: Option<String>,
}

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

/// What every handler of a resource starts from: the state, the authenticated caller (401
/// before anything else is looked at) and the base of absolute links.
pub(super) struct Ctx {
    pub state: ApiState,
    pub caller: Caller,
    pub base: BaseUrl,
}

impl FromRequestParts<ApiState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let base = BaseUrl::from_request_parts(parts, state).await?;
        Ok(Ctx {
            state: state.clone(),
            caller,
            base,
        })
    }
}

/// Reading targets and what belongs to them (tags, types, filters, metadata).
pub(super) const READ_TARGET: &[Permission] = &[Permission::READ_TARGET];

/// What a list shows: the entity its `q=` filters and the fields its `sort=` names.
#[derive(Clone, Copy)]
pub(super) struct Listed {
    pub entity: Entity,
    pub sort: &'static SortFields,
}

impl Listed {
    pub const fn new(entity: Entity, sort: &'static SortFields) -> Self {
        Listed { entity, sort }
    }
}

/// What an entity is called in hawkBit's messages ("software module type 5 not found").
fn entity_name(entity: Entity) -> &'static str {
    match entity {
        Entity::Target => "target",
        Entity::Rollout => "rollout",
        Entity::RolloutGroup => "rollout group",
        Entity::Action => "action",
        Entity::TargetFilter => "target filter",
        Entity::SoftwareModule => "software module",
        Entity::DistributionSet => "distribution set",
        Entity::SoftwareModuleType => "software module type",
        Entity::DistributionSetType => "distribution set type",
        Entity::SoftwareModuleMetadata => "software module metadata",
        Entity::TargetType => "target type",
        Entity::TargetTag => "target tag",
        Entity::DistributionSetTag => "distribution set tag",
        Entity::TargetMetadata => "target metadata",
        Entity::AutoAssignment => "auto assignment",
        Entity::DistributionSetMetadata => "distribution set metadata",
    }
}

/// hawkBit's 404 for an entity the tenant does not have: "{entity} {id} not found".
pub(super) fn not_found(entity: Entity, id: impl std::fmt::Display) -> ApiError {
    ApiError::NotFound(format!("{} {id} not found", entity_name(entity)))
}

/// An entity resource of the tenant read by id: its table, the entity its `q=` filters (which
/// also names it in a 404), what reading it needs and how one is rendered. Its plain endpoints
/// are served here once: [`Resource::list`] and [`Resource::one`] are the `GET`s of the
/// collection and of one entity.
pub(super) struct Resource<R: 'static> {
    pub table: &'static Table<R>,
    pub entity: Entity,
    pub read: &'static [Permission],
    pub render: fn(&BaseUrl, &R) -> Value,
}

impl<R> Resource<R> {
    pub const fn new(
        table: &'static Table<R>,
        entity: Entity,
        read: &'static [Permission],
        render: fn(&BaseUrl, &R) -> Value,
    ) -> Self {
        Resource {
            table,
            entity,
            read,
            render,
        }
    }

    /// hawkBit's 404 for entity `id` of this resource ([`not_found`]).
    pub fn missing(&self, id: impl std::fmt::Display) -> ApiError {
        not_found(self.entity, id)
    }
}

impl<R> Resource<R>
where
    R: for<'r> FromRow<'r, PgRow> + Send + Sync + Unpin,
{
    /// `GET` of the collection: one page of the tenant's entities ([`Ctx::list_table`]).
    pub fn list(&'static self) -> MethodRouter<ApiState> {
        get(move |cx: Ctx, page: Page| async move { cx.list_table(&page, self).await })
    }

    /// `GET` of one entity by id ([`Ctx::get_by_id`]).
    pub fn one(&'static self) -> MethodRouter<ApiState> {
        get(move |cx: Ctx, Ids(id): Ids<i64>| async move { cx.get_by_id(self, id).await })
    }
}

/// The methods of one entity's path: `get` reads it, `PUT` goes through a plain
/// `async fn(Ctx, P, B)` `change` — axum extracts the caller (401), the path `P` and the JSON
/// body `B` (hawkBit's 400 when unreadable) in that order, then the caller must have `perms`
/// (403) before it runs — and `DELETE` is `remove`.
pub(super) fn get_put_delete<P, B, F, Fut, D, T>(
    get: MethodRouter<ApiState>,
    perms: &'static [Permission],
    change: F,
    remove: D,
) -> MethodRouter<ApiState>
where
    P: FromRequestParts<ApiState> + Send + 'static,
    B: DeserializeOwned + Send + 'static,
    F: Fn(Ctx, P, B) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ApiResult<Json<Value>>> + Send,
    D: Handler<T, ApiState>,
    T: 'static,
{
    let put = put(move |cx: Ctx, path: P, Body(body): Body<B>| async move {
        cx.require(perms)?;
        change(cx, path, body).await
    });
    get.merge(put).delete(remove)
}

impl Ctx {
    pub fn tenant(&self) -> TenantId {
        self.caller.tenant
    }

    /// 403 unless the caller has every permission named.
    pub fn require(&self, perms: &[Permission]) -> ApiResult<()> {
        self.caller.require(perms)
    }

    /// 403 unless the caller has at least one of `perms`.
    pub fn require_any(&self, perms: &[Permission]) -> ApiResult<()> {
        if perms.iter().any(|p| self.caller.user.has(*p)) {
            Ok(())
        } else {
            let names: Vec<&str> = perms.iter().map(|p| p.as_str()).collect();
            Err(ApiError::Forbidden(format!(
                "user {} lacks permission {}",
                self.caller.name(),
                names.join(" or ")
            )))
        }
    }

    /// The store, for what does not fit the shapes below.
    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// A list endpoint: permission → `q` → `sort` → one page of the tenant's rows read by
    /// `fetch` on one connection → each row rendered → hawkBit's paged body. `fetch` is a
    /// store list (`tags::list`) or a closure that first checks the list's owner (404) or
    /// renders rows itself when rendering reads more (then `render` passes them on).
    pub async fn list<R, E>(
        &self,
        perms: &[Permission],
        page: &PageParams,
        listed: Listed,
        fetch: impl AsyncFnOnce(
            &mut PgConnection,
            TenantId,
            Option<&Filter>,
            &PageRequest,
        ) -> Result<(Vec<R>, i64), E>,
        render: impl FnMut(R) -> Value,
    ) -> ApiResult<Json<Value>>
    where
        E: From<StoreError>,
        ApiError: From<E>,
    {
        self.require(perms)?;
        let q = page.filter(listed.entity)?;
        let request = page.request(listed.sort)?;
        let tenant = self.tenant();
        let (rows, total) = self
            .db()
            .run(async |c| fetch(c, tenant, q.as_ref(), &request).await)
            .await?;
        Ok(Json(paged(rows.into_iter().map(render).collect(), total)))
    }

    /// A list endpoint over a resource's table ([`Self::list`] reading its table, sorted by its
    /// fields, filtered as its entity), each row rendered as the resource renders it.
    pub async fn list_table<R>(
        &self,
        page: &PageParams,
        res: &Resource<R>,
    ) -> ApiResult<Json<Value>>
    where
        R: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let listed = Listed::new(res.entity, res.table.sort());
        let fetch = async |c: &mut PgConnection, t, q: Option<&Filter>, p: &PageRequest| {
            res.table.list(c, t, q, p).await
        };
        let render = |r: R| (res.render)(&self.base, &r);
        self.list(res.read, page, listed, fetch, render).await
    }

    /// A list endpoint over `table` ([`Self::list`] sorted by its fields, filtered as `entity`)
    /// whose rows render with more that is read for the whole page at once (a set's modules):
    /// `render` turns the page's rows into their JSON on the same connection.
    pub async fn list_rendered<R>(
        &self,
        perms: &[Permission],
        page: &PageParams,
        entity: Entity,
        table: &Table<R>,
        render: impl AsyncFnOnce(&mut PgConnection, TenantId, &[R]) -> ApiResult<Vec<Value>>,
    ) -> ApiResult<Json<Value>>
    where
        R: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let listed = Listed::new(entity, table.sort());
        let fetch = async |c: &mut PgConnection, t, q: Option<&Filter>, p: &PageRequest| {
            let (rows, total) = table.list(c, t, q, p).await?;
            Ok::<_, ApiError>((render(c, t, &rows).await?, total))
        };
        self.list(perms, page, listed, fetch, |v| v).await
    }

    /// Reading one entity of a resource by id: 403 without the permission to read it, the
    /// resource's 404 when there is none, else the entity rendered.
    pub async fn get_by_id<R>(&self, res: &Resource<R>, id: i64) -> ApiResult<Json<Value>>
    where
        R: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        self.require(res.read)?;
        let tenant = self.tenant();
        let find = async |c: &mut PgConnection| res.table.find(c, tenant, id).await;
        self.get_one(find, || res.missing(id), |r| (res.render)(&self.base, &r))
            .await
    }

    /// Deleting one entity of a resource by id: 403 without `perms`, the resource's 404 when
    /// there is none, else 204.
    pub async fn delete_by_id<R>(
        &self,
        perms: &[Permission],
        res: &Resource<R>,
        id: i64,
    ) -> ApiResult<StatusCode> {
        self.require(perms)?;
        let tenant = self.tenant();
        let delete = async |c: &mut PgConnection| Ok(res.table.delete(c, tenant, id).await?);
        self.delete_one(delete, || res.missing(id)).await
    }

    /// Deleting one `entity` of `table` that may still be referenced (a module, a set): marked
    /// deleted when it is, else gone. 403 without `perms`, hawkBit's 404 when there is none,
    /// else 204.
    pub async fn delete_or_mark<R>(
        &self,
        perms: &[Permission],
        table: &Table<R>,
        entity: Entity,
        id: i64,
    ) -> ApiResult<StatusCode> {
        self.require(perms)?;
        let (tenant, user) = (self.tenant(), self.caller.name());
        let delete = async |c: &mut PgConnection| table.delete_or_mark(c, tenant, id, user).await;
        match self.db().run(delete).await? {
            Deletion::NotFound => Err(not_found(entity, id)),
            how => {
                let what = entity_name(entity);
                tracing::info!(soft = (how == Deletion::Soft), "{what} deleted");
                Ok(StatusCode::NO_CONTENT)
            }
        }
    }

    /// Creating the entities of a JSON array, all or none: 403 without `perms`, each element
    /// checked by `parse` (400 before anything is written), then in one transaction `insert`
    /// stores each and renders it; answers 201 with them in request order.
    pub async fn create_each<B, N>(
        &self,
        perms: &[Permission],
        body: Vec<B>,
        parse: impl FnMut(B) -> ApiResult<N>,
        insert: impl AsyncFn(&mut PgConnection, &Ctx, &N) -> ApiResult<Value>,
    ) -> ApiResult<(StatusCode, Json<Value>)> {
        self.require(perms)?;
        let new = body.into_iter().map(parse).collect::<ApiResult<Vec<N>>>()?;
        let out = self
            .db()
            .tx(async |tx| {
                let mut out = Vec::with_capacity(new.len());
                for n in &new {
                    out.push(insert(tx, self, n).await?);
                }
                Ok::<_, ApiError>(out)
            })
            .await?;
        Ok((StatusCode::CREATED, Json(Value::Array(out))))
    }

    /// Reading one entity: `find` on one connection; `missing` (hawkBit's 404) when it finds
    /// none, else the entity rendered.
    pub async fn get_one<T, E>(
        &self,
        find: impl AsyncFnOnce(&mut PgConnection) -> Result<Option<T>, E>,
        missing: impl FnOnce() -> ApiError,
        render: impl FnOnce(T) -> Value,
    ) -> ApiResult<Json<Value>>
    where
        ApiError: From<E>,
    {
        self.one(false, find, missing, render).await
    }

    /// Removing one entity (a metadata entry, an artifact): `delete` on one connection says
    /// whether there was one; 204 when there was, else `missing` (hawkBit's 404).
    pub async fn delete_one(
        &self,
        delete: impl AsyncFnOnce(&mut PgConnection) -> ApiResult<bool>,
        missing: impl FnOnce() -> ApiError,
    ) -> ApiResult<StatusCode> {
        if self.db().run(delete).await? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(missing())
        }
    }

    /// An unpaged list (a target's tags, a module's artifacts): what `fetch` reads on one
    /// connection (after checking the owner: 404), each rendered, as a JSON array.
    pub async fn array<R>(
        &self,
        fetch: impl AsyncFnOnce(&mut PgConnection) -> ApiResult<Vec<R>>,
        render: impl FnMut(&R) -> Value,
    ) -> ApiResult<Json<Value>> {
        let rows = self.db().run(fetch).await?;
        Ok(Json(Value::Array(rows.iter().map(render).collect())))
    }

    /// Changing one entity: `change` in one transaction returns the entity as changed;
    /// `missing` (hawkBit's 404, nothing committed) when there is none, else the entity
    /// rendered.
    pub async fn update_one<T, E>(
        &self,
        change: impl AsyncFnOnce(&mut PgConnection) -> Result<Option<T>, E>,
        missing: impl FnOnce() -> ApiError,
        render: impl FnOnce(T) -> Value,
    ) -> ApiResult<Json<Value>>
    where
        ApiError: From<E>,
    {
        self.one(true, change, missing, render).await
    }

    /// [`Self::get_one`] and [`Self::update_one`]: `f` on one connection, or in one
    /// transaction when it `writes` (so a 404 commits nothing).
    async fn one<T, E>(
        &self,
        writes: bool,
        f: impl AsyncFnOnce(&mut PgConnection) -> Result<Option<T>, E>,
        missing: impl FnOnce() -> ApiError,
        render: impl FnOnce(T) -> Value,
    ) -> ApiResult<Json<Value>>
    where
        ApiError: From<E>,
    {
        let found = async |c: &mut PgConnection| f(c).await?.ok_or_else(missing);
        let found = if writes {
            self.db().tx(found).await?
        } else {
            self.db().run(found).await?
        };
        Ok(Json(render(found)))
    }

    /// Adding or removing members of an owner (a type's set types, a set's modules, a tag's
    /// targets): in one transaction `owner` finds (and locks) the owner or answers 404,
    /// `change` adds or removes; answers `done` once committed.
    pub async fn relink<O>(
        &self,
        owner: impl AsyncFnOnce(&mut PgConnection) -> ApiResult<O>,
        change: impl AsyncFnOnce(&mut PgConnection, O) -> ApiResult<()>,
        done: StatusCode,
    ) -> ApiResult<StatusCode> {
        self.db()
            .tx(async |tx| {
                let o = owner(tx).await?;
                change(tx, o).await
            })
            .await?;
        Ok(done)
    }
}

// ---------------------------------------------------------------------------------------------
// Targets by controllerId (tags, metadata and targets themselves)

/// A target of the caller's tenant by controllerId (locked for the rest of the transaction
/// with [`RowLock::ForUpdate`]), or 404. An id that cannot exist (control characters, too
/// long) never reaches the database.
pub(super) async fn find_target(
    c: &mut PgConnection,
    tenant: TenantId,
    controller_id: &str,
    lock: RowLock,
) -> ApiResult<TargetRow> {
    let not_found = || no_target(controller_id);
    check_text("controllerId", controller_id, 1, 256, false).map_err(|_| not_found())?;
    let found = match lock {
        RowLock::None => targets::find(c, tenant, controller_id).await?,
        RowLock::ForUpdate => targets::lock_by_controller_id(c, tenant, controller_id).await?,
    };
    found.ok_or_else(not_found)
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

/// createdBy/At, lastModifiedBy/At of an entity.
pub(super) fn base_fields(obj: &mut Value, audit: &Audit) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("createdBy".into(), json!(audit.created_by));
        map.insert("createdAt".into(), json!(audit.created_at));
        map.insert("lastModifiedBy".into(), json!(audit.last_modified_by));
        map.insert("lastModifiedAt".into(), json!(audit.last_modified_at));
    }
}

/// Whether the tenant's confirmation flow is on: what `confirmationRequired` of a new
/// assignment, rollout or auto-assignment defaults to (hawkBit).
pub(super) async fn confirmation_flow(cx: &Ctx) -> ApiResult<bool> {
    let tenant = cx.tenant();
    let cfg = cx
        .db()
        .run(async |c| tenants::configs(c, tenant).await)
        .await?;
    Ok(config_keys::flag(&cfg, config_keys::CONFIRMATION_FLOW))
}

/// 404 unless the tenant has distribution set `ds` (deleted ones included).
pub(super) async fn existing_set(c: &mut PgConnection, tenant: TenantId, ds: i64) -> ApiResult<()> {
    repository::set_facts(c, tenant.0, ds)
        .await?
        .map(drop)
        .ok_or_else(|| not_found(Entity::DistributionSet, ds))
}
