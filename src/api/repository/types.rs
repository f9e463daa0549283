//! Software module types and distribution set types: created (JSON arrays, 201), changed
//! (description and colour only, as hawkBit), deleted — marked `deleted` while modules or sets
//! still have them, else gone — and which module types a set type takes. A set type that
//! distribution sets already have keeps its module lists (hawkBit: 403 entityReadOnly).

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::super::common::{
    Ctx, Ids, Resource, base_fields, description, get_put_delete, not_found, required, single_line,
};
use super::super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Page, put_opt};
use super::{IdRef, READ, id_list};
use crate::auth::Permission;
use crate::domain::ids::TenantId;
use crate::store::Named;
use crate::store::filter::Entity;
use crate::store::repository::types::{
    self, ModuleTypeLimits, ModuleTypeRow, NewType, SetTypeElementRow, SetTypeRow, TypeUpdate,
};
use crate::store::table::Deletion;

/// hawkBit's default `maxSoftwareModuleTypesPerDistributionSetType`.
const MAX_MODULE_TYPES_PER_SET_TYPE: i64 = 50;

const UPDATE: &[Permission] = &[Permission::UPDATE_REPOSITORY];

pub(super) fn router() -> Router<ApiState> {
    let set_type = "/rest/v1/distributionsettypes/{id}";
    Router::new()
        .route(
            "/rest/v1/softwaremoduletypes",
            MODULE_TYPES.list().post(create_module_types),
        )
        .route(
            "/rest/v1/softwaremoduletypes/{id}",
            get_put_delete(
                MODULE_TYPES.one(),
                UPDATE,
                update_module_type,
                delete_module_type,
            ),
        )
        .route(
            "/rest/v1/distributionsettypes",
            get(list_set_types).post(create_set_types),
        )
        .route(
            set_type,
            get_put_delete(get(get_set_type), UPDATE, update_set_type, delete_set_type),
        )
        .route(
            &format!("{set_type}/mandatorymoduletypes"),
            get(mandatory_module_types).post(add_mandatory),
        )
        .route(
            &format!("{set_type}/mandatorymoduletypes/{{sm_type_id}}"),
            get(mandatory_module_type).delete(remove_element),
        )
        .route(
            &format!("{set_type}/optionalmoduletypes"),
            get(optional_module_types).post(add_optional),
        )
        .route(
            &format!("{set_type}/optionalmoduletypes/{{sm_type_id}}"),
            get(optional_module_type).delete(remove_element),
        )
}

pub(super) fn module_type_json(base: &BaseUrl, t: &ModuleTypeRow) -> Value {
    let mut v = json!({
        "id": t.id,
        "key": t.key,
        "name": t.named.name,
        "maxAssignments": t.max_assignments,
        "minArtifacts": t.min_artifacts,
        "deleted": t.deleted,
        "_links": {"self": base.link(&format!("/softwaremoduletypes/{}", t.id))},
    });
    put_opt(&mut v, "description", t.named.description.as_deref());
    put_opt(&mut v, "colour", t.colour.as_deref());
    base_fields(&mut v, &t.audit);
    v
}

fn set_type_json(base: &BaseUrl, t: &SetTypeRow, elements: &[&SetTypeElementRow]) -> Value {
    let types = |mandatory: bool| -> Vec<Value> {
        elements
            .iter()
            .filter(|e| e.mandatory == mandatory)
            .map(|e| module_type_json(base, &e.module_type))
            .collect()
    };
    let mut v = json!({
        "id": t.id,
        "key": t.key,
        "name": t.named.name,
        "deleted": t.deleted,
        "mandatorymodules": types(true),
        "optionalmodules": types(false),
        "_links": {
            "self": base.link(&format!("/distributionsettypes/{}", t.id)),
            "mandatorymodules": base.link(&format!("/distributionsettypes/{}/mandatorymoduletypes", t.id)),
            "optionalmodules": base.link(&format!("/distributionsettypes/{}/optionalmoduletypes", t.id)),
        },
    });
    put_opt(&mut v, "description", t.named.description.as_deref());
    put_opt(&mut v, "colour", t.colour.as_deref());
    base_fields(&mut v, &t.audit);
    v
}

static MODULE_TYPES: Resource<ModuleTypeRow> = Resource::new(
    &types::MODULE_TYPES,
    Entity::SoftwareModuleType,
    READ,
    module_type_json,
);

// ---------------------------------------------------------------------------------------------
// Reads

/// Set types are rendered with the module types they take, read for the whole page at once.
async fn list_set_types(cx: Ctx, params: Page) -> ApiResult<Json<Value>> {
    let render = async |c: &mut PgConnection, tenant, rows: &[SetTypeRow]| {
        let ids: Vec<i64> = rows.iter().map(|t| t.id).collect();
        let elements = types::set_type_elements(c, tenant, &ids).await?;
        let content = rows
            .iter()
            .map(|t| {
                let own: Vec<&SetTypeElementRow> =
                    elements.iter().filter(|e| e.ds_type_id == t.id).collect();
                set_type_json(&cx.base, t, &own)
            })
            .collect();
        Ok(content)
    };
    cx.list_rendered(
        READ,
        &params,
        Entity::DistributionSetType,
        &types::SET_TYPES,
        render,
    )
    .await
}

/// A set type of the tenant with its elements, or 404.
pub(super) async fn load_set_type(
    c: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> ApiResult<(SetTypeRow, Vec<SetTypeElementRow>)> {
    let t = types::SET_TYPES
        .find(c, tenant, id)
        .await?
        .ok_or_else(|| not_found(Entity::DistributionSetType, id))?;
    let elements = types::set_type_elements(c, tenant, &[id]).await?;
    Ok((t, elements))
}

/// A set type rendered with its elements, read on `c`.
async fn set_type_by_id(c: &mut PgConnection, cx: &Ctx, id: i64) -> ApiResult<Value> {
    let (t, elements) = load_set_type(c, cx.tenant(), id).await?;
    let refs: Vec<&SetTypeElementRow> = elements.iter().collect();
    Ok(set_type_json(&cx.base, &t, &refs))
}

async fn get_set_type(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    let v = cx
        .db()
        .run(async |c| set_type_by_id(c, &cx, id).await)
        .await?;
    Ok(Json(v))
}

/// The mandatory or the optional module types of a set type.
async fn element_types(cx: &Ctx, id: i64, mandatory: bool) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    let (_, elements) = cx
        .db()
        .run(async |c| load_set_type(c, cx.tenant(), id).await)
        .await?;
    Ok(Json(Value::Array(
        elements
            .iter()
            .filter(|e| e.mandatory == mandatory)
            .map(|e| module_type_json(&cx.base, &e.module_type))
            .collect(),
    )))
}

async fn mandatory_module_types(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<Json<Value>> {
    element_types(&cx, id, true).await
}

async fn optional_module_types(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<Json<Value>> {
    element_types(&cx, id, false).await
}

/// One module type a set type takes as mandatory (or optional) one: 404 for an unknown set
/// type or module type, or one the set type does not take so.
async fn element_type(
    cx: &Ctx,
    (id, sm_type_id): (i64, i64),
    mandatory: bool,
) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    let (_, elements) = cx
        .db()
        .run(async |c| {
            any_module_type(c, cx.tenant(), sm_type_id).await?;
            load_set_type(c, cx.tenant(), id).await
        })
        .await?;
    elements
        .iter()
        .find(|e| e.module_type.id == sm_type_id && e.mandatory == mandatory)
        .map(|e| Json(module_type_json(&cx.base, &e.module_type)))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "software module type {sm_type_id} is not part of distribution set type {id}"
            ))
        })
}

async fn mandatory_module_type(cx: Ctx, Ids(ids): Ids<(i64, i64)>) -> ApiResult<Json<Value>> {
    element_type(&cx, ids, true).await
}

async fn optional_module_type(cx: Ctx, Ids(ids): Ids<(i64, i64)>) -> ApiResult<Json<Value>> {
    element_type(&cx, ids, false).await
}

// ---------------------------------------------------------------------------------------------
// Creation

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeCreate {
    key: Option<String>,
    name: Option<String>,
    description: Option<String>,
    colour: Option<String>,
    /// Module types only.
    max_assignments: Option<i32>,
    /// Module types only (hawkBit master).
    min_artifacts: Option<i32>,
    /// Set types only.
    mandatorymodules: Option<Vec<IdRef>>,
    /// Set types only.
    optionalmodules: Option<Vec<IdRef>>,
}

/// The fields every type has: key (≤ 64) and name (≤ 128) required, hawkBit's 400 otherwise.
fn new_type(b: &mut TypeCreate) -> ApiResult<NewType> {
    Ok(NewType {
        key: required("key", b.key.take(), 1, 64)?,
        named: Named {
            name: required("name", b.name.take(), 1, 128)?,
            description: description(b.description.take())?,
        },
        colour: single_line("colour", b.colour.take(), 0, 16)?,
    })
}

fn new_module_type(mut b: TypeCreate) -> ApiResult<(NewType, ModuleTypeLimits)> {
    let t = new_type(&mut b)?;
    let max_assignments = b.max_assignments.unwrap_or(1);
    if max_assignments < 1 {
        return Err(ApiError::BadRequest(
            "maxAssignments must be at least 1".into(),
        ));
    }
    let min_artifacts = b.min_artifacts.unwrap_or(0);
    if min_artifacts < 0 {
        return Err(ApiError::BadRequest(
            "minArtifacts must not be negative".into(),
        ));
    }
    let limits = ModuleTypeLimits {
        max_assignments,
        min_artifacts,
    };
    Ok((t, limits))
}

async fn create_module_types(
    cx: Ctx,
    Body(body): Body<Vec<TypeCreate>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let insert = async |tx: &mut PgConnection, cx: &Ctx, (t, limits): &(NewType, _)| {
        let (tenant, user) = (cx.tenant(), cx.caller.name());
        let id = types::insert_module_type(tx, tenant, t, *limits, user).await?;
        let row = any_module_type(tx, tenant, id).await?;
        Ok(module_type_json(&cx.base, &row))
    };
    let perms = &[Permission::CREATE_REPOSITORY];
    cx.create_each(perms, body, new_module_type, insert).await
}

/// A set type to create with the module types it takes (mandatory, optional).
struct NewSetType {
    t: NewType,
    mandatory: Vec<i64>,
    optional: Vec<i64>,
}

fn new_set_type(mut b: TypeCreate) -> ApiResult<NewSetType> {
    let t = new_type(&mut b)?;
    let mandatory = id_list("mandatorymodules", b.mandatorymodules.unwrap_or_default())?;
    let optional = id_list("optionalmodules", b.optionalmodules.unwrap_or_default())?;
    Ok(NewSetType {
        t,
        mandatory,
        optional,
    })
}

async fn create_set_types(
    cx: Ctx,
    Body(body): Body<Vec<TypeCreate>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let insert = async |tx: &mut PgConnection, cx: &Ctx, n: &NewSetType| {
        let tenant = cx.tenant();
        let id = types::insert_set_type(tx, tenant, &n.t, cx.caller.name()).await?;
        add_elements(tx, tenant, id, &n.mandatory, true).await?;
        add_elements(tx, tenant, id, &n.optional, false).await?;
        set_type_by_id(tx, cx, id).await
    };
    let perms = &[Permission::CREATE_REPOSITORY];
    cx.create_each(perms, body, new_set_type, insert).await
}

// ---------------------------------------------------------------------------------------------
// Changes

#[derive(Debug, Deserialize)]
struct TypeChange {
    description: Option<String>,
    colour: Option<String>,
}

impl TypeChange {
    fn parse(self) -> ApiResult<TypeUpdate> {
        Ok(TypeUpdate {
            description: description(self.description)?,
            colour: single_line("colour", self.colour, 0, 16)?,
        })
    }
}

/// hawkBit refuses to change a soft-deleted entity: 404 `hawkbit.server.error.deleted`.
fn deleted(what: &str, id: i64) -> ApiError {
    ApiError::Deleted(format!("{what} {id} is soft-deleted"))
}

async fn update_module_type(cx: Ctx, Ids(id): Ids<i64>, b: TypeChange) -> ApiResult<Json<Value>> {
    let u = b.parse()?;
    let (tenant, user) = (cx.tenant(), cx.caller.name());
    let change = async |c: &mut PgConnection| {
        let t = any_module_type(c, tenant, id).await?;
        if t.deleted {
            return Err(deleted("software module type", id));
        }
        types::update_module_type(c, tenant, id, &u, user).await?;
        Ok(types::MODULE_TYPES.find(c, tenant, id).await?)
    };
    let render = |t: ModuleTypeRow| module_type_json(&cx.base, &t);
    cx.update_one(change, || MODULE_TYPES.missing(id), render)
        .await
}

async fn update_set_type(cx: Ctx, Ids(id): Ids<i64>, b: TypeChange) -> ApiResult<Json<Value>> {
    let u = b.parse()?;
    let (tenant, user) = (cx.tenant(), cx.caller.name());
    let change = async |c: &mut PgConnection| {
        live_set_type(c, tenant, id).await?;
        types::update_set_type(c, tenant, id, &u, user).await?;
        Ok::<_, ApiError>(Some(set_type_by_id(c, &cx, id).await?))
    };
    let missing = || not_found(Entity::DistributionSetType, id);
    cx.update_one(change, missing, |v| v).await
}

#[tracing::instrument(skip_all, fields(tenant = %cx.caller.tenant, sm_type_id = id))]
async fn delete_module_type(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<StatusCode> {
    let perms = &[Permission::DELETE_REPOSITORY];
    cx.delete_or_mark(perms, &types::MODULE_TYPES, Entity::SoftwareModuleType, id)
        .await
}

/// Gone when no set has the type, else marked deleted; either way no target type lists it any
/// more (hawkBit).
#[tracing::instrument(skip_all, fields(tenant = %cx.caller.tenant, ds_type_id = id))]
async fn delete_set_type(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<StatusCode> {
    cx.require(&[Permission::DELETE_REPOSITORY])?;
    let (tenant, user) = (cx.tenant(), cx.caller.name());
    let how = cx
        .db()
        .tx(async |tx| {
            types::drop_from_target_types(tx, tenant, id).await?;
            Ok::<_, ApiError>(
                types::SET_TYPES
                    .delete_or_mark(tx, tenant, id, user)
                    .await?,
            )
        })
        .await?;
    if how == Deletion::NotFound {
        return Err(not_found(Entity::DistributionSetType, id));
    }
    tracing::info!(
        soft = (how == Deletion::Soft),
        "distribution set type deleted"
    );
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Module lists of a set type

/// A module type of the tenant, deleted or not, or 404.
async fn any_module_type(
    c: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> ApiResult<ModuleTypeRow> {
    types::MODULE_TYPES
        .find(c, tenant, id)
        .await?
        .ok_or_else(|| MODULE_TYPES.missing(id))
}

/// A set type of the tenant that is not deleted, locked for this transaction: 404 when there
/// is none, hawkBit's `deleted` 404 when it is marked deleted.
async fn live_set_type(c: &mut PgConnection, tenant: TenantId, id: i64) -> ApiResult<SetTypeRow> {
    match types::SET_TYPES.lock(c, tenant, id).await? {
        Some(t) if t.deleted => Err(deleted("distribution set type", id)),
        Some(t) => Ok(t),
        None => Err(not_found(Entity::DistributionSetType, id)),
    }
}

/// Let set type `id` take the live module types `sm_type_ids`: unknown ones → 404, more than
/// the quota → 429 (the caller's transaction is then dropped).
async fn add_elements(
    tx: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    sm_type_ids: &[i64],
    mandatory: bool,
) -> ApiResult<()> {
    if sm_type_ids.is_empty() {
        return Ok(());
    }
    let found = types::MODULE_TYPES
        .find_many(tx, tenant, sm_type_ids)
        .await?;
    let missing: Vec<i64> = sm_type_ids
        .iter()
        .copied()
        .filter(|i| !found.iter().any(|t| t.id == *i && !t.deleted))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::NotFound(format!(
            "software module type(s) {missing:?} not found"
        )));
    }
    types::add_elements(tx, tenant, id, sm_type_ids, mandatory).await?;
    if types::count_elements(tx, tenant, id).await? > MAX_MODULE_TYPES_PER_SET_TYPE {
        return Err(ApiError::TooManyEntries(format!(
            "a distribution set type takes at most {MAX_MODULE_TYPES_PER_SET_TYPE} software \
             module types"
        )));
    }
    Ok(())
}

/// A change of set type `id`'s module lists, in one transaction: 404 for no such type, 403
/// `entityReadOnly` once distribution sets have the type (hawkBit freezes its lists then).
async fn change_elements(
    cx: &Ctx,
    id: i64,
    change: impl AsyncFnOnce(&mut PgConnection) -> ApiResult<()>,
) -> ApiResult<StatusCode> {
    cx.require(UPDATE)?;
    let tenant = cx.tenant();
    let owner = async |c: &mut PgConnection| {
        live_set_type(c, tenant, id).await?;
        if types::set_type_in_use(c, tenant, id).await? {
            return Err(ApiError::ReadOnly(format!(
                "distribution set type {id} is already assigned to distribution sets and \
                 cannot be changed"
            )));
        }
        Ok(())
    };
    cx.relink(
        owner,
        async |tx, ()| change(tx).await,
        StatusCode::NO_CONTENT,
    )
    .await
}

/// hawkBit takes one `{"id"}`; a list of them is accepted too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdRefs {
    One(IdRef),
    Many(Vec<IdRef>),
}

async fn add_element_types(
    cx: &Ctx,
    id: i64,
    body: IdRefs,
    mandatory: bool,
) -> ApiResult<StatusCode> {
    let refs = match body {
        IdRefs::One(r) => vec![r],
        IdRefs::Many(rs) => rs,
    };
    let ids = id_list("id", refs)?;
    let tenant = cx.tenant();
    let add = async |tx: &mut PgConnection| add_elements(tx, tenant, id, &ids, mandatory).await;
    change_elements(cx, id, add).await
}

async fn add_mandatory(
    cx: Ctx,
    Ids(id): Ids<i64>,
    Body(body): Body<IdRefs>,
) -> ApiResult<StatusCode> {
    add_element_types(&cx, id, body, true).await
}

async fn add_optional(
    cx: Ctx,
    Ids(id): Ids<i64>,
    Body(body): Body<IdRefs>,
) -> ApiResult<StatusCode> {
    add_element_types(&cx, id, body, false).await
}

/// Mandatory or optional alike (hawkBit): 404 for an unknown module type, 204 otherwise (also
/// when the set type did not take it).
async fn remove_element(cx: Ctx, Ids((id, sm_type_id)): Ids<(i64, i64)>) -> ApiResult<StatusCode> {
    let tenant = cx.tenant();
    let remove = async |tx: &mut PgConnection| {
        any_module_type(tx, tenant, sm_type_id).await?;
        types::remove_element(tx, tenant, id, sm_type_id).await?;
        Ok(())
    };
    change_elements(&cx, id, remove).await
}
