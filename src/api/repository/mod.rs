//! The software repository of the Management API (service.md "REST resources that rollouts.md §9
//! leaves implicit", rollouts.md §1.2, §1.3, §9.7): software module types and distribution set
//! types (read-only, seeded per tenant), software modules with their artifacts (references to
//! files on a CDN or object store) and metadata, distribution sets and their modules. One file
//! per resource; this module merges their routers and holds what several of them need.
//!
//! Handlers parse and validate the request, call `store::repository` and render hawkBit's JSON.
//! No SQL here. Ids in paths go through [`Ids`](super::common::Ids), so a malformed id answers
//! with hawkBit's error body, never axum's plain-text rejection.

mod artifacts;
mod metadata;
mod modules;
mod set_metadata;
mod sets;
mod types;

pub(super) use sets::{set_json_by_id, sets_json};

use std::collections::BTreeSet;

use axum::Router;
use serde::Deserialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection};

use super::{ApiError, ApiResult, ApiState};
use modules::MODULE;

use crate::auth::Permission;
use crate::domain::ids::TenantId;
use crate::store::repository::modules::{self as store_modules, ModuleRow};
use crate::store::table::Table;

pub fn router() -> Router<ApiState> {
    Router::new()
        .merge(types::router())
        .merge(modules::router())
        .merge(artifacts::router())
        .merge(metadata::router())
        .merge(sets::router())
        .merge(set_metadata::router())
}

/// Reading the repository.
const READ: &[Permission] = &[Permission::READ_REPOSITORY];

/// A module of the tenant that may still change (not deleted), or 404.
async fn live_module(c: &mut PgConnection, tenant: TenantId, id: i64) -> ApiResult<ModuleRow> {
    match store_modules::TABLE.find(c, tenant, id).await? {
        Some(m) if !m.deleted => Ok(m),
        _ => Err(MODULE.missing(id)),
    }
}

/// A module of the tenant, deleted or not, or 404.
async fn any_module(c: &mut PgConnection, tenant: TenantId, id: i64) -> ApiResult<ModuleRow> {
    store_modules::TABLE
        .find(c, tenant, id)
        .await?
        .ok_or_else(|| MODULE.missing(id))
}

/// The tenant's live type in `types` (module or set types) with `key`, or hawkBit's 400 that
/// names it as `what`: a module or set to create names its type by key.
async fn live_type<R>(
    c: &mut PgConnection,
    tenant: TenantId,
    types: &Table<R>,
    what: &str,
    key: &str,
) -> ApiResult<R>
where
    R: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    types
        .find_live_key(c, tenant, key)
        .await?
        .ok_or_else(|| ApiError::BadRequest(format!("{what} {key:?} does not exist")))
}

/// `{"id": n}` in request bodies.
#[derive(Debug, Deserialize)]
struct IdRef {
    id: Option<i64>,
}

/// Distinct ids in request order; every entry needs one.
fn id_list(field: &str, refs: Vec<IdRef>) -> ApiResult<Vec<i64>> {
    let mut seen = BTreeSet::new();
    let mut ids = Vec::with_capacity(refs.len());
    for r in refs {
        let id =
            r.id.ok_or_else(|| ApiError::BadRequest(format!("{field}: every entry needs an id")))?;
        if seen.insert(id) {
            ids.push(id);
        }
    }
    Ok(ids)
}
