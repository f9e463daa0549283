//! Software module types and distribution set types: read-only, seeded per tenant.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::super::common::{Ctx, Ids, Resource, base_fields, not_found};
use super::super::{ApiResult, ApiState, BaseUrl, Page, put_opt};
use super::READ;
use crate::domain::ids::TenantId;
use crate::store::filter::Entity;
use crate::store::repository::types::{self, ModuleTypeRow, SetTypeElementRow, SetTypeRow};

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/softwaremoduletypes", MODULE_TYPES.list())
        .route("/rest/v1/softwaremoduletypes/{id}", MODULE_TYPES.one())
        .route("/rest/v1/distributionsettypes", get(list_set_types))
        .route("/rest/v1/distributionsettypes/{id}", get(get_set_type))
        .route(
            "/rest/v1/distributionsettypes/{id}/mandatorymoduletypes",
            get(mandatory_module_types),
        )
        .route(
            "/rest/v1/distributionsettypes/{id}/optionalmoduletypes",
            get(optional_module_types),
        )
}

pub(super) fn module_type_json(base: &BaseUrl, t: &ModuleTypeRow) -> Value {
    let mut v = json!({
        "id": t.id,
        "key": t.key,
        "name": t.named.name,
        "maxAssignments": t.max_assignments,
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

async fn get_set_type(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    let (t, elements) = cx
        .db()
        .run(async |c| load_set_type(c, cx.tenant(), id).await)
        .await?;
    let refs: Vec<&SetTypeElementRow> = elements.iter().collect();
    Ok(Json(set_type_json(&cx.base, &t, &refs)))
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
