//! Target types (`/rest/v1/targettypes`, rollouts.md §1.1): which distribution set types a
//! target of the type accepts. Targets refer to a type by id (`targetType` in the target body)
//! or, over DMF, by name.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::common::{
    Ctx, Ids, READ_TARGET, Resource, base_fields, check_text, description, get_put_delete,
    single_line,
};
use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, put_opt};
use crate::auth::Permission;
use crate::store::filter::Entity;
use crate::store::repository::types::SetTypeRow;
use crate::store::target_types::{self as types, NewTargetType, TargetTypeRow, TargetTypeUpdate};
use crate::store::{Named, NamedUpdate};

/// hawkBit's `maxDistributionSetTypesPerTargetType` quota.
const MAX_DS_TYPES_PER_TARGET_TYPE: i64 = 50;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/targettypes", TYPES.list().post(create))
        .route(
            "/rest/v1/targettypes/{id}",
            get_put_delete(TYPES.one(), &[Permission::UPDATE_TARGET], update, remove),
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

fn type_json(base: &BaseUrl, t: &TargetTypeRow) -> Value {
    let path = format!("/targettypes/{}", t.id);
    let mut v = json!({
        "id": t.id,
        "name": t.named.name,
        "key": t.key,
        "_links": {
            "self": base.link(&path),
            "compatibledistributionsettypes":
                base.link(&format!("{path}/compatibledistributionsettypes")),
        },
    });
    put_opt(&mut v, "description", t.named.description.as_deref());
    put_opt(&mut v, "colour", t.colour.as_deref());
    base_fields(&mut v, &t.audit);
    v
}

fn ds_type_json(base: &BaseUrl, t: &SetTypeRow) -> Value {
    let mut v = json!({
        "id": t.id,
        "key": t.key,
        "name": t.named.name,
        "deleted": t.deleted,
        "_links": {"self": base.link(&format!("/distributionsettypes/{}", t.id))},
    });
    put_opt(&mut v, "description", t.named.description.as_deref());
    put_opt(&mut v, "colour", t.colour.as_deref());
    base_fields(&mut v, &t.audit);
    v
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
async fn add_ds_types(
    tx: &mut PgConnection,
    cx: &Ctx,
    id: i64,
    ds_type_ids: &[i64],
) -> ApiResult<()> {
    if ds_type_ids.is_empty() {
        return Ok(());
    }
    let missing = types::missing_ds_types(tx, cx.tenant(), ds_type_ids).await?;
    if !missing.is_empty() {
        return Err(ApiError::NotFound(format!(
            "distribution set type(s) {missing:?} not found"
        )));
    }
    types::DS_TYPES
        .add(tx, cx.tenant(), id, ds_type_ids, cx.caller.name())
        .await?;
    let count = types::DS_TYPES.count(tx, cx.tenant(), id).await?;
    if count > MAX_DS_TYPES_PER_TARGET_TYPE {
        // The transaction is dropped, not committed: nothing was added.
        return Err(ApiError::TooManyEntries(format!(
            "a target type accepts at most {MAX_DS_TYPES_PER_TARGET_TYPE} distribution set types"
        )));
    }
    Ok(())
}

static TYPES: Resource<TargetTypeRow> =
    Resource::new(&types::TABLE, Entity::TargetType, READ_TARGET, type_json);

/// A target type to create, with the distribution set types it accepts.
fn new_type(b: TypeCreate) -> ApiResult<(NewTargetType, Vec<i64>)> {
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
        named: Named {
            name,
            description: description(b.description)?,
        },
        colour: single_line("colour", b.colour, 0, 16)?,
    };
    let ds_types = distinct(b.compatibledistributionsettypes.unwrap_or_default());
    Ok((t, ds_types))
}

async fn create(
    cx: Ctx,
    Body(body): Body<Vec<TypeCreate>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let insert =
        async |tx: &mut PgConnection, cx: &Ctx, (t, ds_types): &(NewTargetType, Vec<i64>)| {
            let row = types::insert(tx, cx.tenant(), t, cx.caller.name()).await?;
            add_ds_types(tx, cx, row.id, ds_types).await?;
            Ok(type_json(&cx.base, &row))
        };
    cx.create_each(&[Permission::CREATE_TARGET], body, new_type, insert)
        .await
}

async fn update(cx: Ctx, Ids(id): Ids<i64>, b: TypeUpdate) -> ApiResult<Json<Value>> {
    let u = TargetTypeUpdate {
        named: NamedUpdate {
            name: single_line("name", b.name, 1, 128)?,
            description: description(b.description)?,
        },
        colour: single_line("colour", b.colour, 0, 16)?,
    };
    let change =
        async |c: &mut PgConnection| types::update(c, cx.tenant(), id, &u, cx.caller.name()).await;
    cx.update_one(change, || TYPES.missing(id), |t| type_json(&cx.base, &t))
        .await
}

/// A change of target type `id`: in one transaction the type is locked (404 when the tenant
/// has none), then changed by `change`; answers `done` once committed.
async fn change_type(
    cx: &Ctx,
    id: i64,
    change: impl AsyncFnOnce(&mut PgConnection) -> ApiResult<()>,
    done: StatusCode,
) -> ApiResult<StatusCode> {
    let tenant = cx.tenant();
    let lock = async |c: &mut PgConnection| match types::TABLE.lock(c, tenant, id).await? {
        Some(_) => Ok(()),
        None => Err(TYPES.missing(id)),
    };
    cx.relink(lock, async |tx, ()| change(tx).await, done).await
}

/// A type that targets still have is not deleted: hawkBit answers 409
/// `hawkbit.server.error.target.type.used` (TargetTypeInUseException) rather than clearing the
/// targets' type.
async fn remove(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<StatusCode> {
    cx.require(&[Permission::DELETE_TARGET])?;
    let tenant = cx.tenant();
    let delete = async |tx: &mut PgConnection| {
        if types::in_use(tx, tenant, id).await? {
            return Err(ApiError::TargetTypeInUse(format!(
                "target type {id} is still in use by a target"
            )));
        }
        types::TABLE.delete(tx, tenant, id).await?;
        Ok(())
    };
    change_type(&cx, id, delete, StatusCode::NO_CONTENT).await
}

async fn compatible(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<Json<Value>> {
    cx.require(READ_TARGET)?;
    let tenant = cx.tenant();
    let fetch = async |c: &mut PgConnection| {
        types::TABLE
            .find(c, tenant, id)
            .await?
            .ok_or_else(|| TYPES.missing(id))?;
        Ok(types::DS_TYPES.all_members(c, tenant, id).await?)
    };
    cx.array(fetch, |t| ds_type_json(&cx.base, t)).await
}

/// hawkBit answers 200 with an empty body.
async fn add_compatible(
    cx: Ctx,
    Ids(id): Ids<i64>,
    Body(body): Body<Vec<IdRef>>,
) -> ApiResult<StatusCode> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    let ds_type_ids = distinct(body);
    let add = async |tx: &mut PgConnection| add_ds_types(tx, &cx, id, &ds_type_ids).await;
    change_type(&cx, id, add, StatusCode::OK).await
}

async fn remove_compatible(
    cx: Ctx,
    Ids((id, ds_type_id)): Ids<(i64, i64)>,
) -> ApiResult<StatusCode> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    let tenant = cx.tenant();
    let remove = async |tx: &mut PgConnection| {
        if !types::DS_TYPES
            .remove(tx, tenant, id, ds_type_id, cx.caller.name())
            .await?
            && !types::missing_ds_types(tx, tenant, &[ds_type_id])
                .await?
                .is_empty()
        {
            return Err(ApiError::NotFound(format!(
                "distribution set type {ds_type_id} not found"
            )));
        }
        Ok(())
    };
    change_type(&cx, id, remove, StatusCode::NO_CONTENT).await
}
