//! Software modules (`/rest/v1/softwaremodules`): typed, versioned pieces of software.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::common::{
    Ctx, Ids, Listed, Resource, base_fields, description, get_put_delete, required, single_line,
};
use super::super::{ApiError, ApiResult, ApiState, BaseUrl, Body, put_opt};
use super::{READ, any_module, live_type};
use crate::auth::Permission;
use crate::store::Named;
use crate::store::filter::Entity;
use crate::store::repository::modules::{self, ModuleRow};
use crate::store::repository::types::{MODULE_TYPES, ModuleTypeRow};

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/rest/v1/softwaremodules",
            MODULE.list().post(create_modules),
        )
        .route(
            "/rest/v1/softwaremodules/{id}",
            get_put_delete(
                MODULE.one(),
                &[Permission::UPDATE_REPOSITORY],
                update_module,
                delete_module,
            ),
        )
}

pub(super) fn module_json(base: &BaseUrl, m: &ModuleRow) -> Value {
    let mut v = json!({
        "id": m.id,
        "name": m.named.name,
        "version": m.version,
        "type": m.type_key,
        "typeName": m.type_name,
        "encrypted": m.encrypted,
        "locked": m.locked,
        "deleted": m.deleted,
        "complete": m.complete,
        "_links": {
            "self": base.link(&format!("/softwaremodules/{}", m.id)),
            "type": base.link(&format!("/softwaremoduletypes/{}", m.type_id)),
            "artifacts": base.link(&format!("/softwaremodules/{}/artifacts", m.id)),
            "metadata": base.link(&format!("/softwaremodules/{}/metadata?offset=0&limit=50", m.id)),
        },
    });
    put_opt(&mut v, "vendor", m.vendor.as_deref());
    put_opt(&mut v, "description", m.named.description.as_deref());
    base_fields(&mut v, &m.audit);
    v
}

/// The tenant's software modules.
pub(super) const MODULES: Listed = Listed::new(Entity::SoftwareModule, &modules::SORT);

pub(super) static MODULE: Resource<ModuleRow> =
    Resource::new(&modules::TABLE, Entity::SoftwareModule, READ, module_json);

#[derive(Debug, Deserialize)]
struct ModuleCreate {
    name: Option<String>,
    version: Option<String>,
    #[serde(rename = "type")]
    type_key: Option<String>,
    vendor: Option<String>,
    description: Option<String>,
    encrypted: Option<bool>,
}

#[tracing::instrument(skip_all, fields(tenant = %cx.caller.tenant))]
async fn create_modules(cx: Ctx, Body(body): Body<Vec<ModuleCreate>>) -> ApiResult<Response> {
    cx.require(&[Permission::CREATE_REPOSITORY])?;
    let rows = cx
        .db()
        .tx(async |tx| {
            let mut types: HashMap<String, ModuleTypeRow> = HashMap::new();
            let mut ids = Vec::with_capacity(body.len());
            for item in body {
                let name = required("name", item.name, 1, 128)?;
                let version = required("version", item.version, 1, 64)?;
                let vendor = single_line("vendor", item.vendor, 0, 256)?;
                let description = description(item.description)?;
                let key = required("type", item.type_key, 1, 64)?;
                let ty = match types.get(&key) {
                    Some(t) => t.clone(),
                    None => {
                        let what = "software module type";
                        let t = live_type(tx, cx.tenant(), &MODULE_TYPES, what, &key).await?;
                        types.insert(key.clone(), t.clone());
                        t
                    }
                };
                let new = modules::NewModule {
                    type_id: ty.id,
                    type_key: ty.key,
                    named: Named { name, description },
                    version,
                    vendor,
                    encrypted: item.encrypted.unwrap_or(false),
                };
                ids.push(modules::insert(tx, cx.tenant(), &new, cx.caller.name()).await?);
            }
            Ok::<_, ApiError>(modules::TABLE.find_many(tx, cx.tenant(), &ids).await?)
        })
        .await?;
    tracing::info!(count = rows.len(), "software modules created");
    let content: Vec<Value> = rows.iter().map(|m| module_json(&cx.base, m)).collect();
    Ok((StatusCode::CREATED, Json(Value::Array(content))).into_response())
}

#[derive(Debug, Deserialize)]
struct ModuleChange {
    description: Option<String>,
    vendor: Option<String>,
    /// hawkBit lets a PUT lock a module and also unlock it again.
    locked: Option<bool>,
}

/// A soft-deleted module cannot change: 404 `hawkbit.server.error.deleted` (hawkBit master).
async fn update_module(cx: Ctx, Ids(id): Ids<i64>, body: ModuleChange) -> ApiResult<Json<Value>> {
    let u = modules::ModuleUpdate {
        description: description(body.description)?,
        vendor: single_line("vendor", body.vendor, 0, 256)?,
        locked: body.locked,
    };
    let (tenant, user) = (cx.tenant(), cx.caller.name());
    cx.update_one(
        async |c| {
            if any_module(c, tenant, id).await?.deleted {
                return Err(ApiError::Deleted(format!(
                    "software module {id} is soft-deleted"
                )));
            }
            modules::update(c, tenant, id, &u, user).await?;
            Ok::<_, ApiError>(modules::TABLE.find(c, tenant, id).await?)
        },
        || MODULE.missing(id),
        |m| module_json(&cx.base, &m),
    )
    .await
}

#[tracing::instrument(skip_all, fields(tenant = %cx.caller.tenant, module_id = id))]
async fn delete_module(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<StatusCode> {
    let perms = &[Permission::DELETE_REPOSITORY];
    cx.delete_or_mark(perms, &modules::TABLE, Entity::SoftwareModule, id)
        .await
}
