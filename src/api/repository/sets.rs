//! Distribution sets (`/rest/v1/distributionsets`): the modules deployed together, checked
//! against their set type, and their (soft) deletion.

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::super::common::{
    Ctx, Ids, base_fields, description, get_put_delete, not_found, required,
};
use super::super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Page, put_opt};
use super::modules::{MODULE, MODULES, module_json};
use super::{IdRef, READ, id_list, live_type};
use crate::auth::Permission;
use crate::domain::ids::TenantId;
use crate::store::filter::Entity;
use crate::store::repository::modules::{self, ModuleRow};
use crate::store::repository::sets::{self, SetRow};
use crate::store::repository::types::{
    SET_TYPES, SetTypeElementRow, SetTypeRow, set_type_elements,
};
use crate::store::{Named, NamedUpdate};

/// hawkBit's default distribution set type when a create request names none.
const DEFAULT_SET_TYPE: &str = "os_app";

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/rest/v1/distributionsets",
            get(list_sets).post(create_sets),
        )
        .route(
            "/rest/v1/distributionsets/{id}",
            get_put_delete(
                get(get_set),
                &[Permission::UPDATE_REPOSITORY],
                update_set,
                delete_set,
            ),
        )
        .route(
            "/rest/v1/distributionsets/{id}/assignedSM",
            get(list_set_modules).post(add_set_modules),
        )
        .route(
            "/rest/v1/distributionsets/{id}/assignedSM/{sm_id}",
            delete(remove_set_module),
        )
}

fn no_set(id: i64) -> ApiError {
    not_found(Entity::DistributionSet, id)
}

fn set_json(base: &BaseUrl, s: &SetRow, modules: &[&ModuleRow]) -> Value {
    let mut v = json!({
        "id": s.id,
        "name": s.named.name,
        "version": s.version,
        "type": s.type_key,
        "typeName": s.type_name,
        "locked": s.locked,
        "deleted": s.deleted,
        "valid": s.valid,
        "complete": s.complete,
        "requiredMigrationStep": s.required_migration_step,
        "modules": modules.iter().map(|m| module_json(base, m)).collect::<Vec<_>>(),
        "_links": {
            "self": base.link(&format!("/distributionsets/{}", s.id)),
            "modules": base.link(&format!("/distributionsets/{}/assignedSM?offset=0&limit=50", s.id)),
            "type": base.link(&format!("/distributionsettypes/{}", s.type_id)),
        },
    });
    put_opt(&mut v, "description", s.named.description.as_deref());
    base_fields(&mut v, &s.audit);
    v
}

/// Render sets with their modules (one query for all modules).
pub(in crate::api) async fn sets_json(
    c: &mut PgConnection,
    tenant: TenantId,
    base: &BaseUrl,
    sets: &[SetRow],
) -> ApiResult<Vec<Value>> {
    let ids: Vec<i64> = sets.iter().map(|s| s.id).collect();
    let members = sets::modules_of(c, tenant, &ids).await?;
    let mut by_set: BTreeMap<i64, Vec<&ModuleRow>> = BTreeMap::new();
    for m in &members {
        by_set.entry(m.ds_id).or_default().push(&m.module);
    }
    Ok(sets
        .iter()
        .map(|s| set_json(base, s, by_set.get(&s.id).map_or(&[][..], Vec::as_slice)))
        .collect())
}

/// Check that `modules` may form a set of the type with these elements: every module type is
/// allowed (mandatory or optional) and none appears more often than its `maxAssignments`.
fn check_modules(
    type_key: &str,
    elements: &[SetTypeElementRow],
    modules: &[&ModuleRow],
) -> ApiResult<()> {
    let mut per_type: BTreeMap<i64, i64> = BTreeMap::new();
    for m in modules {
        if !elements.iter().any(|e| e.module_type.id == m.type_id) {
            return Err(ApiError::BadRequest(format!(
                "software module {} has type {:?}, which distribution set type {type_key:?} does not take",
                m.id, m.type_key
            )));
        }
        let n = per_type.entry(m.type_id).or_default();
        *n += 1;
        if *n > i64::from(m.max_assignments) {
            return Err(ApiError::BadRequest(format!(
                "a distribution set takes at most {} software module(s) of type {:?}",
                m.max_assignments, m.type_key
            )));
        }
    }
    Ok(())
}

/// Sets are rendered with their modules, read for the whole page at once.
async fn list_sets(cx: Ctx, params: Page) -> ApiResult<Json<Value>> {
    let render = async |c: &mut PgConnection, tenant, rows: &[SetRow]| {
        sets_json(c, tenant, &cx.base, rows).await
    };
    cx.list_rendered(READ, &params, Entity::DistributionSet, &sets::TABLE, render)
        .await
}

/// One set of the tenant rendered with its modules; `None` if there is none.
pub(in crate::api) async fn set_json_by_id(
    c: &mut PgConnection,
    tenant: TenantId,
    base: &BaseUrl,
    id: i64,
) -> ApiResult<Option<Value>> {
    let Some(s) = sets::TABLE.find(c, tenant, id).await? else {
        return Ok(None);
    };
    Ok(sets_json(c, tenant, base, std::slice::from_ref(&s))
        .await?
        .pop())
}

async fn get_set(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    cx.get_one(
        async |c| set_json_by_id(c, cx.tenant(), &cx.base, id).await,
        || no_set(id),
        |v| v,
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetCreate {
    name: Option<String>,
    version: Option<String>,
    description: Option<String>,
    #[serde(rename = "type")]
    type_key: Option<String>,
    modules: Option<Vec<IdRef>>,
    required_migration_step: Option<bool>,
}

#[tracing::instrument(skip_all, fields(tenant = %cx.caller.tenant))]
async fn create_sets(cx: Ctx, Body(body): Body<Vec<SetCreate>>) -> ApiResult<Response> {
    cx.require(&[Permission::CREATE_REPOSITORY])?;
    let content = cx
        .db()
        .tx(async |tx| {
            let mut types: HashMap<String, (SetTypeRow, Vec<SetTypeElementRow>)> = HashMap::new();
            let mut ids = Vec::with_capacity(body.len());
            for item in body {
                let name = required("name", item.name, 1, 128)?;
                let version = required("version", item.version, 1, 64)?;
                let description = description(item.description)?;
                let key = match item.type_key {
                    Some(k) => required("type", Some(k), 1, 64)?,
                    None => DEFAULT_SET_TYPE.to_owned(),
                };
                if !types.contains_key(&key) {
                    let what = "distribution set type";
                    let t = live_type(tx, cx.tenant(), &SET_TYPES, what, &key).await?;
                    let elements = set_type_elements(tx, cx.tenant(), &[t.id]).await?;
                    types.insert(key.clone(), (t, elements));
                }
                let (ty, elements) = &types[&key];
                let module_ids = id_list("modules", item.modules.unwrap_or_default())?;
                let modules = modules::TABLE
                    .find_many(tx, cx.tenant(), &module_ids)
                    .await?;
                let live: Vec<&ModuleRow> = modules.iter().filter(|m| !m.deleted).collect();
                if let Some(missing) = module_ids
                    .iter()
                    .find(|id| !live.iter().any(|m| m.id == **id))
                {
                    return Err(ApiError::BadRequest(format!(
                        "software module {missing} does not exist"
                    )));
                }
                check_modules(&ty.key, elements, &live)?;
                let new = sets::NewSet {
                    type_id: ty.id,
                    named: Named { name, description },
                    version,
                    required_migration_step: item.required_migration_step.unwrap_or(false),
                };
                let id = sets::insert(tx, cx.tenant(), &new, cx.caller.name()).await?;
                if !module_ids.is_empty() {
                    sets::MODULES
                        .add(tx, cx.tenant(), id, &module_ids, cx.caller.name())
                        .await?;
                }
                ids.push(id);
            }
            let mut rows = Vec::with_capacity(ids.len());
            for id in &ids {
                rows.push(
                    sets::TABLE
                        .find(tx, cx.tenant(), *id)
                        .await?
                        .ok_or_else(|| no_set(*id))?,
                );
            }
            sets_json(tx, cx.tenant(), &cx.base, &rows).await
        })
        .await?;
    tracing::info!(count = content.len(), "distribution sets created");
    Ok((StatusCode::CREATED, Json(Value::Array(content))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetUpdate {
    name: Option<String>,
    version: Option<String>,
    description: Option<String>,
    required_migration_step: Option<bool>,
    locked: Option<bool>,
}

#[tracing::instrument(skip_all, fields(tenant = %cx.caller.tenant, ds_id = id))]
async fn update_set(cx: Ctx, Ids(id): Ids<i64>, body: SetUpdate) -> ApiResult<Json<Value>> {
    let name = body
        .name
        .map(|n| required("name", Some(n), 1, 128))
        .transpose()?;
    let version = body
        .version
        .map(|v| required("version", Some(v), 1, 64))
        .transpose()?;
    let update = sets::SetUpdate {
        named: NamedUpdate {
            name,
            description: description(body.description)?,
        },
        version,
        required_migration_step: body.required_migration_step,
        locked: body.locked,
    };
    cx.update_one(
        async |tx| {
            let set = live_set(tx, cx.tenant(), id).await?;
            if set.locked && update.locked == Some(false) {
                return Err(ApiError::BadRequest(format!(
                    "distribution set {id} is locked and cannot be unlocked"
                )));
            }
            sets::update(tx, cx.tenant(), id, &update, cx.caller.name()).await?;
            set_json_by_id(tx, cx.tenant(), &cx.base, id).await
        },
        || no_set(id),
        |v| v,
    )
    .await
}

#[tracing::instrument(skip_all, fields(tenant = %cx.caller.tenant, ds_id = id))]
async fn delete_set(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<StatusCode> {
    let perms = &[Permission::DELETE_REPOSITORY];
    cx.delete_or_mark(perms, &sets::TABLE, Entity::DistributionSet, id)
        .await
}

async fn list_set_modules(cx: Ctx, Ids(id): Ids<i64>, params: Page) -> ApiResult<Json<Value>> {
    cx.list(
        READ,
        &params,
        MODULES,
        async |c, tenant, q, page| {
            sets::TABLE
                .find(c, tenant, id)
                .await?
                .ok_or_else(|| no_set(id))?;
            Ok::<_, ApiError>(sets::MODULES.members(c, tenant, id, q, page).await?)
        },
        |m| module_json(&cx.base, &m),
    )
    .await
}

/// A set of the tenant that is not deleted, locked for this transaction, or 404.
pub(super) async fn live_set(c: &mut PgConnection, tenant: TenantId, id: i64) -> ApiResult<SetRow> {
    match sets::TABLE.lock(c, tenant, id).await? {
        Some(s) if !s.deleted => Ok(s),
        _ => Err(no_set(id)),
    }
}

/// A set of the tenant whose modules may change (locked for this transaction), or 404/400.
async fn changeable_set(c: &mut PgConnection, tenant: TenantId, id: i64) -> ApiResult<SetRow> {
    let set = live_set(c, tenant, id).await?;
    if set.locked {
        return Err(ApiError::BadRequest(format!(
            "distribution set {id} is locked: its modules cannot change"
        )));
    }
    Ok(set)
}

#[tracing::instrument(skip_all, fields(tenant = %cx.caller.tenant, ds_id = id))]
async fn add_set_modules(
    cx: Ctx,
    Ids(id): Ids<i64>,
    Body(body): Body<Vec<IdRef>>,
) -> ApiResult<StatusCode> {
    cx.require_any(&[Permission::CREATE_REPOSITORY, Permission::UPDATE_REPOSITORY])?;
    let added = id_list("body", body)?;
    cx.relink(
        async |tx| changeable_set(tx, cx.tenant(), id).await,
        async |tx, set| {
            let found = modules::TABLE.find_many(tx, cx.tenant(), &added).await?;
            if let Some(missing) = added
                .iter()
                .find(|a| !found.iter().any(|m| m.id == **a && !m.deleted))
            {
                return Err(MODULE.missing(*missing));
            }
            let current = sets::modules_of(tx, cx.tenant(), &[id]).await?;
            let mut all: Vec<&ModuleRow> = current.iter().map(|m| &m.module).collect();
            for m in &found {
                if !all.iter().any(|c| c.id == m.id) {
                    all.push(m);
                }
            }
            let elements = set_type_elements(tx, cx.tenant(), &[set.type_id]).await?;
            check_modules(&set.type_key, &elements, &all)?;
            sets::MODULES
                .add(tx, cx.tenant(), id, &added, cx.caller.name())
                .await?;
            Ok(())
        },
        StatusCode::OK,
    )
    .await
}

#[tracing::instrument(skip_all, fields(tenant = %cx.caller.tenant, ds_id = id, module_id = sm_id))]
async fn remove_set_module(cx: Ctx, Ids((id, sm_id)): Ids<(i64, i64)>) -> ApiResult<StatusCode> {
    cx.require_any(&[Permission::DELETE_REPOSITORY, Permission::UPDATE_REPOSITORY])?;
    cx.relink(
        async |tx| changeable_set(tx, cx.tenant(), id).await,
        async |tx, _| {
            if !sets::MODULES
                .remove(tx, cx.tenant(), id, sm_id, cx.caller.name())
                .await?
            {
                return Err(ApiError::NotFound(format!(
                    "software module {sm_id} is not part of distribution set {id}"
                )));
            }
            Ok(())
        },
        StatusCode::NO_CONTENT,
    )
    .await
}
