//! The software repository of the Management API (service.md "REST resources that rollouts.md §9
//! leaves implicit", rollouts.md §1.2, §1.3, §9.7): software module types and distribution set
//! types (read-only, seeded per tenant), software modules with their artifacts (references to
//! files on a CDN or object store) and metadata, distribution sets and their modules.
//!
//! Handlers parse and validate the request, call `store::repository` and render hawkBit's JSON.
//! No SQL here. Ids in paths go through [`Ids`], so a malformed id answers with hawkBit's error
//! body, never axum's plain-text rejection.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Postgres;
use sqlx::pool::PoolConnection;

use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Caller, Page, paged, put_opt};
use crate::auth::Permission;
use crate::domain::ids::TenantId;
use crate::store::StoreError;
use crate::store::filter::Entity;
use crate::store::repository::{
    self as repo, ArtifactRow, Deletion, MetadataRow, ModuleRow, ModuleTypeRow, SetRow,
    SetTypeElementRow, SetTypeRow,
};

/// hawkBit's default distribution set type when a create request names none.
const DEFAULT_SET_TYPE: &str = "os_app";

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/softwaremoduletypes", get(list_module_types))
        .route("/rest/v1/softwaremoduletypes/{id}", get(get_module_type))
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
        .route(
            "/rest/v1/softwaremodules",
            get(list_modules).post(create_modules),
        )
        .route(
            "/rest/v1/softwaremodules/{id}",
            get(get_module).put(update_module).delete(delete_module),
        )
        .route(
            "/rest/v1/softwaremodules/{id}/artifacts",
            get(list_artifacts).post(create_artifact),
        )
        .route(
            "/rest/v1/softwaremodules/{id}/artifacts/{artifact_id}",
            get(get_artifact).delete(delete_artifact),
        )
        .route(
            "/rest/v1/softwaremodules/{id}/metadata",
            get(list_metadata).post(create_metadata),
        )
        .route(
            "/rest/v1/softwaremodules/{id}/metadata/{key}",
            get(get_metadata)
                .put(update_metadata)
                .delete(delete_metadata),
        )
        .route(
            "/rest/v1/distributionsets",
            get(list_sets).post(create_sets),
        )
        .route(
            "/rest/v1/distributionsets/{id}",
            get(get_set).put(update_set).delete(delete_set),
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

// ---------------------------------------------------------------------------------------------
// Plumbing

/// Path parameters; anything that does not parse (`/softwaremodules/abc`) is a hawkBit 404.
struct Ids<T>(T);

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

type Conn = PoolConnection<Postgres>;

async fn conn(state: &ApiState) -> ApiResult<Conn> {
    Ok(state
        .engine
        .pool()
        .acquire()
        .await
        .map_err(StoreError::from)?)
}

async fn begin(state: &ApiState) -> ApiResult<sqlx::Transaction<'static, Postgres>> {
    Ok(state
        .engine
        .pool()
        .begin()
        .await
        .map_err(StoreError::from)?)
}

async fn commit(tx: sqlx::Transaction<'static, Postgres>) -> ApiResult<()> {
    Ok(tx.commit().await.map_err(StoreError::from)?)
}

/// 403 unless the caller has at least one of `perms`. Changing a set's modules or a module's
/// metadata is an update in hawkBit (UPDATE_REPOSITORY) but a create/delete by HTTP method; either
/// suffices.
fn require_any(caller: &Caller, perms: &[Permission]) -> ApiResult<()> {
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

fn no_module(id: i64) -> ApiError {
    ApiError::NotFound(format!("software module {id} not found"))
}

fn no_set(id: i64) -> ApiError {
    ApiError::NotFound(format!("distribution set {id} not found"))
}

/// A required text field: trimmed, `min..=max` characters.
fn required(field: &str, value: Option<String>, min: usize, max: usize) -> ApiResult<String> {
    let value = value
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("{field} is required")))?;
    check_len(field, &value, min, max)?;
    Ok(value)
}

/// An optional text field of at most `max` characters (trimmed).
fn optional(field: &str, value: Option<String>, max: usize) -> ApiResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) => {
            let v = v.trim().to_owned();
            check_len(field, &v, 0, max)?;
            Ok(Some(v))
        }
    }
}

/// A single-line value (names, versions, keys, file names): no control characters at all.
fn check_len(field: &str, value: &str, min: usize, max: usize) -> ApiResult<()> {
    check_text(field, value, min, max, false)
}

/// `min..=max` characters; NUL and other control characters are refused (PostgreSQL text
/// cannot hold NUL), except line breaks and tabs in free text.
fn check_text(field: &str, value: &str, min: usize, max: usize, free_text: bool) -> ApiResult<()> {
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

/// A description: free text of at most `max` characters (trimmed).
fn description(value: Option<String>, max: usize) -> ApiResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) => {
            let v = v.trim().to_owned();
            check_text("description", &v, 0, max, true)?;
            Ok(Some(v))
        }
    }
}

/// `{"id": n}` in request bodies.
#[derive(Debug, Deserialize)]
struct IdRef {
    id: Option<i64>,
}

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

/// createdBy/At, lastModifiedBy/At.
fn base_fields(obj: &mut Value, created_by: &str, created_at: i64, by: &str, at: i64) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("createdBy".into(), json!(created_by));
        map.insert("createdAt".into(), json!(created_at));
        map.insert("lastModifiedBy".into(), json!(by));
        map.insert("lastModifiedAt".into(), json!(at));
    }
}

// ---------------------------------------------------------------------------------------------
// Types

fn module_type_json(base: &BaseUrl, t: &ModuleTypeRow) -> Value {
    let mut v = json!({
        "id": t.id,
        "key": t.key,
        "name": t.name,
        "maxAssignments": t.max_assignments,
        "deleted": t.deleted,
        "_links": {"self": base.link(&format!("/softwaremoduletypes/{}", t.id))},
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
        "name": t.name,
        "deleted": t.deleted,
        "mandatorymodules": types(true),
        "optionalmodules": types(false),
        "_links": {
            "self": base.link(&format!("/distributionsettypes/{}", t.id)),
            "mandatorymodules": base.link(&format!("/distributionsettypes/{}/mandatorymoduletypes", t.id)),
            "optionalmodules": base.link(&format!("/distributionsettypes/{}/optionalmoduletypes", t.id)),
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

async fn list_module_types(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    params: Page,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let q = params.filter(Entity::SoftwareModuleType)?;
    let order = params.order_by(repo::MODULE_TYPE_SORT_FIELDS, "ty.id ASC")?;
    let mut c = conn(&state).await?;
    let (rows, total) = repo::list_module_types(
        &mut c,
        caller.tenant,
        q.as_ref(),
        &order,
        params.offset(),
        params.limit(),
    )
    .await?;
    let content = rows.iter().map(|t| module_type_json(&base, t)).collect();
    Ok(Json(paged(content, total)))
}

async fn get_module_type(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let mut c = conn(&state).await?;
    let t = repo::find_module_type(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("software module type {id} not found")))?;
    Ok(Json(module_type_json(&base, &t)))
}

async fn list_set_types(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    params: Page,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let q = params.filter(Entity::DistributionSetType)?;
    let order = params.order_by(repo::SET_TYPE_SORT_FIELDS, "dt.id ASC")?;
    let mut c = conn(&state).await?;
    let (rows, total) = repo::list_set_types(
        &mut c,
        caller.tenant,
        q.as_ref(),
        &order,
        params.offset(),
        params.limit(),
    )
    .await?;
    let ids: Vec<i64> = rows.iter().map(|t| t.id).collect();
    let elements = repo::set_type_elements(&mut c, caller.tenant, &ids).await?;
    let content = rows
        .iter()
        .map(|t| {
            let own: Vec<&SetTypeElementRow> =
                elements.iter().filter(|e| e.ds_type_id == t.id).collect();
            set_type_json(&base, t, &own)
        })
        .collect();
    Ok(Json(paged(content, total)))
}

/// A set type of the tenant with its elements, or 404.
async fn load_set_type(
    c: &mut Conn,
    tenant: TenantId,
    id: i64,
) -> ApiResult<(SetTypeRow, Vec<SetTypeElementRow>)> {
    let t = repo::find_set_type(c, tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("distribution set type {id} not found")))?;
    let elements = repo::set_type_elements(c, tenant, &[id]).await?;
    Ok((t, elements))
}

async fn get_set_type(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let mut c = conn(&state).await?;
    let (t, elements) = load_set_type(&mut c, caller.tenant, id).await?;
    let refs: Vec<&SetTypeElementRow> = elements.iter().collect();
    Ok(Json(set_type_json(&base, &t, &refs)))
}

async fn element_types(
    state: &ApiState,
    caller: &Caller,
    base: &BaseUrl,
    id: i64,
    mandatory: bool,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let mut c = conn(state).await?;
    let (_, elements) = load_set_type(&mut c, caller.tenant, id).await?;
    Ok(Json(Value::Array(
        elements
            .iter()
            .filter(|e| e.mandatory == mandatory)
            .map(|e| module_type_json(base, &e.module_type))
            .collect(),
    )))
}

async fn mandatory_module_types(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Value>> {
    element_types(&state, &caller, &base, id, true).await
}

async fn optional_module_types(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Value>> {
    element_types(&state, &caller, &base, id, false).await
}

// ---------------------------------------------------------------------------------------------
// Software modules

fn module_json(base: &BaseUrl, m: &ModuleRow) -> Value {
    let mut v = json!({
        "id": m.id,
        "name": m.name,
        "version": m.version,
        "type": m.type_key,
        "typeName": m.type_name,
        "encrypted": m.encrypted,
        "locked": m.locked,
        "deleted": m.deleted,
        "_links": {
            "self": base.link(&format!("/softwaremodules/{}", m.id)),
            "type": base.link(&format!("/softwaremoduletypes/{}", m.type_id)),
            "artifacts": base.link(&format!("/softwaremodules/{}/artifacts", m.id)),
            "metadata": base.link(&format!("/softwaremodules/{}/metadata?offset=0&limit=50", m.id)),
        },
    });
    put_opt(&mut v, "vendor", m.vendor.as_deref());
    put_opt(&mut v, "description", m.description.as_deref());
    base_fields(
        &mut v,
        &m.created_by,
        m.created_at,
        &m.last_modified_by,
        m.last_modified_at,
    );
    v
}

async fn list_modules(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    params: Page,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let q = params.filter(Entity::SoftwareModule)?;
    let order = params.order_by(repo::MODULE_SORT_FIELDS, "m.id ASC")?;
    let mut c = conn(&state).await?;
    let (rows, total) = repo::list_modules(
        &mut c,
        caller.tenant,
        q.as_ref(),
        &order,
        params.offset(),
        params.limit(),
    )
    .await?;
    let content = rows.iter().map(|m| module_json(&base, m)).collect();
    Ok(Json(paged(content, total)))
}

async fn get_module(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let mut c = conn(&state).await?;
    let m = repo::find_module(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| no_module(id))?;
    Ok(Json(module_json(&base, &m)))
}

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

#[tracing::instrument(skip_all, fields(tenant = %caller.tenant))]
async fn create_modules(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Body(body): Body<Vec<ModuleCreate>>,
) -> ApiResult<Response> {
    caller.require(&[Permission::CREATE_REPOSITORY])?;
    let mut tx = begin(&state).await?;
    let mut types: HashMap<String, ModuleTypeRow> = HashMap::new();
    let mut ids = Vec::with_capacity(body.len());
    for item in body {
        let name = required("name", item.name, 1, 128)?;
        let version = required("version", item.version, 1, 64)?;
        let vendor = optional("vendor", item.vendor, 256)?;
        let description = description(item.description, 512)?;
        let key = required("type", item.type_key, 1, 64)?;
        let ty = match types.get(&key) {
            Some(t) => t.clone(),
            None => {
                let t = repo::find_module_type_by_key(&mut tx, caller.tenant, &key)
                    .await?
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("software module type {key:?} does not exist"))
                    })?;
                types.insert(key.clone(), t.clone());
                t
            }
        };
        let new = repo::NewModule {
            type_id: ty.id,
            type_key: ty.key,
            name,
            version,
            vendor,
            description,
            encrypted: item.encrypted.unwrap_or(false),
        };
        ids.push(repo::insert_module(&mut tx, caller.tenant, &new, caller.name()).await?);
    }
    let rows = repo::find_modules(&mut tx, caller.tenant, &ids).await?;
    commit(tx).await?;
    tracing::info!(count = rows.len(), "software modules created");
    let content: Vec<Value> = rows.iter().map(|m| module_json(&base, m)).collect();
    Ok((StatusCode::CREATED, Json(Value::Array(content))).into_response())
}

#[derive(Debug, Deserialize)]
struct ModuleUpdate {
    description: Option<String>,
    vendor: Option<String>,
}

async fn update_module(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
    Body(body): Body<ModuleUpdate>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::UPDATE_REPOSITORY])?;
    let description = description(body.description, 512)?;
    let vendor = optional("vendor", body.vendor, 256)?;
    let mut c = conn(&state).await?;
    match repo::find_module(&mut c, caller.tenant, id).await? {
        Some(m) if !m.deleted => {}
        _ => return Err(no_module(id)),
    }
    repo::update_module(
        &mut c,
        caller.tenant,
        id,
        description.as_deref(),
        vendor.as_deref(),
        caller.name(),
    )
    .await?;
    let m = repo::find_module(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| no_module(id))?;
    Ok(Json(module_json(&base, &m)))
}

#[tracing::instrument(skip_all, fields(tenant = %caller.tenant, module_id = id))]
async fn delete_module(
    State(state): State<ApiState>,
    caller: Caller,
    Ids(id): Ids<i64>,
) -> ApiResult<StatusCode> {
    caller.require(&[Permission::DELETE_REPOSITORY])?;
    let mut c = conn(&state).await?;
    match repo::delete_module(&mut c, caller.tenant, id, caller.name()).await? {
        Deletion::NotFound => Err(no_module(id)),
        how => {
            tracing::info!(soft = (how == Deletion::Soft), "software module deleted");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// A module of the tenant that may still change (not deleted), or 404.
async fn live_module(
    c: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: i64,
) -> ApiResult<ModuleRow> {
    match repo::find_module(c, tenant, id).await? {
        Some(m) if !m.deleted => Ok(m),
        _ => Err(no_module(id)),
    }
}

// ---------------------------------------------------------------------------------------------
// Artifacts

fn artifact_json(base: &BaseUrl, a: &ArtifactRow) -> Value {
    let mut hashes = json!({"sha1": a.sha1, "md5": a.md5});
    put_opt(&mut hashes, "sha256", a.sha256.as_deref());
    let mut urls = json!({});
    put_opt(&mut urls, "HTTPS", a.url_https.as_deref());
    put_opt(&mut urls, "HTTP", a.url_http.as_deref());
    let mut v = json!({
        "id": a.id,
        "filename": a.filename,
        "providedFilename": a.filename,
        "size": a.size,
        "hashes": hashes,
        "urls": urls,
        "_links": {
            "self": base.link(&format!("/softwaremodules/{}/artifacts/{}", a.sm_id, a.id)),
        },
    });
    base_fields(
        &mut v,
        &a.created_by,
        a.created_at,
        &a.last_modified_by,
        a.last_modified_at,
    );
    v
}

#[derive(Debug, Deserialize)]
struct ArtifactCreate {
    filename: Option<String>,
    size: Option<i64>,
    hashes: Option<Hashes>,
    urls: Option<Urls>,
}

#[derive(Debug, Deserialize)]
struct Hashes {
    sha1: Option<String>,
    md5: Option<String>,
    sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Urls {
    #[serde(rename = "HTTPS", alias = "https")]
    https: Option<String>,
    #[serde(rename = "HTTP", alias = "http")]
    http: Option<String>,
}

/// A hex digest of exactly `len` digits, lower-cased.
fn hex_digest(field: &str, value: Option<String>, len: usize) -> ApiResult<String> {
    let v = value.ok_or_else(|| ApiError::BadRequest(format!("hashes.{field} is required")))?;
    let v = v.trim().to_ascii_lowercase();
    if v.len() != len || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(format!(
            "hashes.{field} must be {len} hexadecimal digits"
        )));
    }
    Ok(v)
}

/// An artifact URL: `http://` or `https://` followed by something, no whitespace.
fn artifact_url(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    let Some(url) = value.map(|u| u.trim().to_owned()) else {
        return Ok(None);
    };
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !url.chars().any(|c| c.is_whitespace() || c.is_control())
                && url.len() <= 4096 =>
        {
            Ok(Some(url))
        }
        _ => Err(ApiError::BadRequest(format!(
            "urls.{field} must be an http:// or https:// URL"
        ))),
    }
}

impl ArtifactCreate {
    fn validate(self) -> ApiResult<repo::NewArtifact> {
        let filename = required("filename", self.filename, 1, 256)?;
        let size = self
            .size
            .ok_or_else(|| ApiError::BadRequest("size is required".into()))?;
        if size < 0 {
            return Err(ApiError::BadRequest("size must not be negative".into()));
        }
        let hashes = self
            .hashes
            .ok_or_else(|| ApiError::BadRequest("hashes are required".into()))?;
        let sha1 = hex_digest("sha1", hashes.sha1, 40)?;
        let md5 = hex_digest("md5", hashes.md5, 32)?;
        let sha256 = match hashes.sha256 {
            Some(h) => Some(hex_digest("sha256", Some(h), 64)?),
            None => None,
        };
        let urls = self
            .urls
            .ok_or_else(|| ApiError::BadRequest("urls are required".into()))?;
        let url_https = artifact_url("HTTPS", urls.https)?;
        let url_http = artifact_url("HTTP", urls.http)?;
        if url_https.is_none() && url_http.is_none() {
            return Err(ApiError::BadRequest(
                "urls must contain an HTTPS or an HTTP URL".into(),
            ));
        }
        Ok(repo::NewArtifact {
            filename,
            size,
            sha1,
            md5,
            sha256,
            url_https,
            url_http,
        })
    }
}

#[tracing::instrument(skip_all, fields(tenant = %caller.tenant, module_id = id))]
async fn create_artifact(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
    Body(body): Body<ArtifactCreate>,
) -> ApiResult<Response> {
    caller.require(&[Permission::CREATE_REPOSITORY])?;
    let mut c = conn(&state).await?;
    let module = live_module(&mut c, caller.tenant, id).await?;
    let new = body.validate()?;
    if module.locked {
        return Err(ApiError::BadRequest(format!(
            "software module {id} is locked: its artifacts cannot change"
        )));
    }
    let a = repo::insert_artifact(&mut c, caller.tenant, id, &new, caller.name())
        .await?
        .ok_or_else(|| no_module(id))?;
    Ok((StatusCode::CREATED, Json(artifact_json(&base, &a))).into_response())
}

async fn list_artifacts(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let mut c = conn(&state).await?;
    repo::find_module(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| no_module(id))?;
    let rows = repo::list_artifacts(&mut c, caller.tenant, id).await?;
    Ok(Json(Value::Array(
        rows.iter().map(|a| artifact_json(&base, a)).collect(),
    )))
}

async fn get_artifact(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids((id, artifact_id)): Ids<(i64, i64)>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let mut c = conn(&state).await?;
    let a = repo::find_artifact(&mut c, caller.tenant, id, artifact_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "artifact {artifact_id} of software module {id} not found"
            ))
        })?;
    Ok(Json(artifact_json(&base, &a)))
}

#[tracing::instrument(skip_all, fields(tenant = %caller.tenant, module_id = id, artifact_id))]
async fn delete_artifact(
    State(state): State<ApiState>,
    caller: Caller,
    Ids((id, artifact_id)): Ids<(i64, i64)>,
) -> ApiResult<StatusCode> {
    caller.require(&[Permission::DELETE_REPOSITORY])?;
    let mut c = conn(&state).await?;
    let module = live_module(&mut c, caller.tenant, id).await?;
    if module.locked {
        return Err(ApiError::BadRequest(format!(
            "software module {id} is locked: its artifacts cannot change"
        )));
    }
    if repo::delete_artifact(&mut c, caller.tenant, id, artifact_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "artifact {artifact_id} of software module {id} not found"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Module metadata

fn metadata_json(m: &MetadataRow) -> Value {
    json!({"key": m.key, "value": m.value, "targetVisible": m.target_visible})
}

/// A metadata key from a path that cannot exist (control characters, too long) is simply not
/// found; it never reaches the database.
fn path_key(id: i64, key: &str) -> ApiResult<()> {
    match check_len("key", key, 1, 128) {
        Ok(()) => Ok(()),
        Err(_) => Err(no_metadata(id, key)),
    }
}

fn no_metadata(id: i64, key: &str) -> ApiError {
    ApiError::NotFound(format!(
        "metadata {key:?} of software module {id} not found"
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataCreate {
    key: Option<String>,
    value: Option<String>,
    target_visible: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataUpdate {
    value: Option<String>,
    target_visible: Option<bool>,
}

fn metadata_value(value: Option<String>) -> ApiResult<Option<String>> {
    if let Some(v) = &value {
        check_text("value", v, 0, 4000, true)?;
    }
    Ok(value)
}

async fn list_metadata(
    State(state): State<ApiState>,
    caller: Caller,
    Ids(id): Ids<i64>,
    params: Page,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let q = params.filter(Entity::SoftwareModuleMetadata)?;
    let order = params.order_by(repo::METADATA_SORT_FIELDS, "md.key ASC")?;
    let mut c = conn(&state).await?;
    repo::find_module(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| no_module(id))?;
    let (rows, total) = repo::list_metadata(
        &mut c,
        caller.tenant,
        id,
        q.as_ref(),
        &order,
        params.offset(),
        params.limit(),
    )
    .await?;
    Ok(Json(paged(rows.iter().map(metadata_json).collect(), total)))
}

async fn get_metadata(
    State(state): State<ApiState>,
    caller: Caller,
    Ids((id, key)): Ids<(i64, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    path_key(id, &key)?;
    let mut c = conn(&state).await?;
    let m = repo::find_metadata(&mut c, caller.tenant, id, &key)
        .await?
        .ok_or_else(|| no_metadata(id, &key))?;
    Ok(Json(metadata_json(&m)))
}

async fn create_metadata(
    State(state): State<ApiState>,
    caller: Caller,
    Ids(id): Ids<i64>,
    Body(body): Body<Vec<MetadataCreate>>,
) -> ApiResult<Response> {
    require_any(
        &caller,
        &[Permission::CREATE_REPOSITORY, Permission::UPDATE_REPOSITORY],
    )?;
    let mut tx = begin(&state).await?;
    live_module(&mut tx, caller.tenant, id).await?;
    let mut created = Vec::with_capacity(body.len());
    for item in body {
        let key = item
            .key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::BadRequest("key is required".into()))?;
        check_len("key", &key, 1, 128)?;
        let entry = MetadataRow {
            key,
            value: metadata_value(item.value)?.unwrap_or_default(),
            target_visible: item.target_visible.unwrap_or(false),
        };
        if !repo::insert_metadata(&mut tx, caller.tenant, id, &entry).await? {
            return Err(no_module(id));
        }
        created.push(metadata_json(&entry));
    }
    commit(tx).await?;
    Ok((StatusCode::CREATED, Json(Value::Array(created))).into_response())
}

async fn update_metadata(
    State(state): State<ApiState>,
    caller: Caller,
    Ids((id, key)): Ids<(i64, String)>,
    Body(body): Body<MetadataUpdate>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::UPDATE_REPOSITORY])?;
    path_key(id, &key)?;
    let value = metadata_value(body.value)?;
    let mut c = conn(&state).await?;
    live_module(&mut c, caller.tenant, id).await?;
    let m = repo::update_metadata(
        &mut c,
        caller.tenant,
        id,
        &key,
        value.as_deref(),
        body.target_visible,
    )
    .await?
    .ok_or_else(|| no_metadata(id, &key))?;
    Ok(Json(metadata_json(&m)))
}

async fn delete_metadata(
    State(state): State<ApiState>,
    caller: Caller,
    Ids((id, key)): Ids<(i64, String)>,
) -> ApiResult<StatusCode> {
    require_any(
        &caller,
        &[Permission::DELETE_REPOSITORY, Permission::UPDATE_REPOSITORY],
    )?;
    path_key(id, &key)?;
    let mut c = conn(&state).await?;
    live_module(&mut c, caller.tenant, id).await?;
    if repo::delete_metadata(&mut c, caller.tenant, id, &key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_metadata(id, &key))
    }
}

// ---------------------------------------------------------------------------------------------
// Distribution sets

fn set_json(base: &BaseUrl, s: &SetRow, modules: &[&ModuleRow]) -> Value {
    let mut v = json!({
        "id": s.id,
        "name": s.name,
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
    put_opt(&mut v, "description", s.description.as_deref());
    base_fields(
        &mut v,
        &s.created_by,
        s.created_at,
        &s.last_modified_by,
        s.last_modified_at,
    );
    v
}

/// Render sets with their modules (one query for all modules).
async fn sets_json(
    c: &mut sqlx::PgConnection,
    tenant: TenantId,
    base: &BaseUrl,
    sets: &[SetRow],
) -> ApiResult<Vec<Value>> {
    let ids: Vec<i64> = sets.iter().map(|s| s.id).collect();
    let members = repo::modules_of_sets_full(c, tenant, &ids).await?;
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

async fn list_sets(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    params: Page,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let q = params.filter(Entity::DistributionSet)?;
    let order = params.order_by(repo::SET_SORT_FIELDS, "d.id ASC")?;
    let mut c = conn(&state).await?;
    let (rows, total) = repo::list_sets(
        &mut c,
        caller.tenant,
        q.as_ref(),
        &order,
        params.offset(),
        params.limit(),
    )
    .await?;
    let content = sets_json(&mut c, caller.tenant, &base, &rows).await?;
    Ok(Json(paged(content, total)))
}

async fn get_set(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let mut c = conn(&state).await?;
    let s = repo::find_set(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| no_set(id))?;
    let mut out = sets_json(&mut c, caller.tenant, &base, std::slice::from_ref(&s)).await?;
    Ok(Json(out.pop().unwrap_or_default()))
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

#[tracing::instrument(skip_all, fields(tenant = %caller.tenant))]
async fn create_sets(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Body(body): Body<Vec<SetCreate>>,
) -> ApiResult<Response> {
    caller.require(&[Permission::CREATE_REPOSITORY])?;
    let mut tx = begin(&state).await?;
    let mut types: HashMap<String, (SetTypeRow, Vec<SetTypeElementRow>)> = HashMap::new();
    let mut ids = Vec::with_capacity(body.len());
    for item in body {
        let name = required("name", item.name, 1, 128)?;
        let version = required("version", item.version, 1, 64)?;
        let description = description(item.description, 512)?;
        let key = match item.type_key {
            Some(k) => required("type", Some(k), 1, 64)?,
            None => DEFAULT_SET_TYPE.to_owned(),
        };
        if !types.contains_key(&key) {
            let t = repo::find_set_type_by_key(&mut tx, caller.tenant, &key)
                .await?
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("distribution set type {key:?} does not exist"))
                })?;
            let elements = repo::set_type_elements(&mut tx, caller.tenant, &[t.id]).await?;
            types.insert(key.clone(), (t, elements));
        }
        let (ty, elements) = &types[&key];
        let module_ids = id_list("modules", item.modules.unwrap_or_default())?;
        let modules = repo::find_modules(&mut tx, caller.tenant, &module_ids).await?;
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
        let new = repo::NewSet {
            type_id: ty.id,
            name,
            version,
            description,
            required_migration_step: item.required_migration_step.unwrap_or(false),
        };
        let id = repo::insert_set(&mut tx, caller.tenant, &new, caller.name()).await?;
        if !module_ids.is_empty() {
            repo::add_set_modules(&mut tx, caller.tenant, id, &module_ids, caller.name()).await?;
        }
        ids.push(id);
    }
    let mut sets = Vec::with_capacity(ids.len());
    for id in &ids {
        sets.push(
            repo::find_set(&mut tx, caller.tenant, *id)
                .await?
                .ok_or_else(|| no_set(*id))?,
        );
    }
    let content = sets_json(&mut tx, caller.tenant, &base, &sets).await?;
    commit(tx).await?;
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

#[tracing::instrument(skip_all, fields(tenant = %caller.tenant, ds_id = id))]
async fn update_set(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
    Body(body): Body<SetUpdate>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::UPDATE_REPOSITORY])?;
    let update = repo::SetUpdate {
        name: body
            .name
            .map(|n| required("name", Some(n), 1, 128))
            .transpose()?,
        version: body
            .version
            .map(|v| required("version", Some(v), 1, 64))
            .transpose()?,
        description: description(body.description, 512)?,
        required_migration_step: body.required_migration_step,
        locked: body.locked,
    };
    let mut tx = begin(&state).await?;
    let set = match repo::lock_set(&mut tx, caller.tenant, id).await? {
        Some(s) if !s.deleted => s,
        _ => return Err(no_set(id)),
    };
    if set.locked && update.locked == Some(false) {
        return Err(ApiError::BadRequest(format!(
            "distribution set {id} is locked and cannot be unlocked"
        )));
    }
    repo::update_set(&mut tx, caller.tenant, id, &update, caller.name()).await?;
    let set = repo::find_set(&mut tx, caller.tenant, id)
        .await?
        .ok_or_else(|| no_set(id))?;
    let mut out = sets_json(&mut tx, caller.tenant, &base, std::slice::from_ref(&set)).await?;
    commit(tx).await?;
    Ok(Json(out.pop().unwrap_or_default()))
}

#[tracing::instrument(skip_all, fields(tenant = %caller.tenant, ds_id = id))]
async fn delete_set(
    State(state): State<ApiState>,
    caller: Caller,
    Ids(id): Ids<i64>,
) -> ApiResult<StatusCode> {
    caller.require(&[Permission::DELETE_REPOSITORY])?;
    let mut c = conn(&state).await?;
    match repo::delete_set(&mut c, caller.tenant, id, caller.name()).await? {
        Deletion::NotFound => Err(no_set(id)),
        how => {
            tracing::info!(soft = (how == Deletion::Soft), "distribution set deleted");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

async fn list_set_modules(
    State(state): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Ids(id): Ids<i64>,
    params: Page,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_REPOSITORY])?;
    let q = params.filter(Entity::SoftwareModule)?;
    let order = params.order_by(repo::MODULE_SORT_FIELDS, "m.id ASC")?;
    let mut c = conn(&state).await?;
    repo::find_set(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| no_set(id))?;
    let (rows, total) = repo::list_set_modules(
        &mut c,
        caller.tenant,
        id,
        q.as_ref(),
        &order,
        params.offset(),
        params.limit(),
    )
    .await?;
    Ok(Json(paged(
        rows.iter().map(|m| module_json(&base, m)).collect(),
        total,
    )))
}

/// A set of the tenant whose modules may change (locked for this transaction), or 404/400.
async fn changeable_set(
    c: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: i64,
) -> ApiResult<SetRow> {
    let set = match repo::lock_set(c, tenant, id).await? {
        Some(s) if !s.deleted => s,
        _ => return Err(no_set(id)),
    };
    if set.locked {
        return Err(ApiError::BadRequest(format!(
            "distribution set {id} is locked: its modules cannot change"
        )));
    }
    Ok(set)
}

#[tracing::instrument(skip_all, fields(tenant = %caller.tenant, ds_id = id))]
async fn add_set_modules(
    State(state): State<ApiState>,
    caller: Caller,
    Ids(id): Ids<i64>,
    Body(body): Body<Vec<IdRef>>,
) -> ApiResult<StatusCode> {
    require_any(
        &caller,
        &[Permission::CREATE_REPOSITORY, Permission::UPDATE_REPOSITORY],
    )?;
    let added = id_list("body", body)?;
    let mut tx = begin(&state).await?;
    let set = changeable_set(&mut tx, caller.tenant, id).await?;
    let found = repo::find_modules(&mut tx, caller.tenant, &added).await?;
    if let Some(missing) = added
        .iter()
        .find(|a| !found.iter().any(|m| m.id == **a && !m.deleted))
    {
        return Err(no_module(*missing));
    }
    let current = repo::modules_of_sets_full(&mut tx, caller.tenant, &[id]).await?;
    let mut all: Vec<&ModuleRow> = current.iter().map(|m| &m.module).collect();
    for m in &found {
        if !all.iter().any(|c| c.id == m.id) {
            all.push(m);
        }
    }
    let elements = repo::set_type_elements(&mut tx, caller.tenant, &[set.type_id]).await?;
    check_modules(&set.type_key, &elements, &all)?;
    repo::add_set_modules(&mut tx, caller.tenant, id, &added, caller.name()).await?;
    commit(tx).await?;
    Ok(StatusCode::OK)
}

#[tracing::instrument(skip_all, fields(tenant = %caller.tenant, ds_id = id, module_id = sm_id))]
async fn remove_set_module(
    State(state): State<ApiState>,
    caller: Caller,
    Ids((id, sm_id)): Ids<(i64, i64)>,
) -> ApiResult<StatusCode> {
    require_any(
        &caller,
        &[Permission::DELETE_REPOSITORY, Permission::UPDATE_REPOSITORY],
    )?;
    let mut tx = begin(&state).await?;
    changeable_set(&mut tx, caller.tenant, id).await?;
    if !repo::remove_set_module(&mut tx, caller.tenant, id, sm_id, caller.name()).await? {
        return Err(ApiError::NotFound(format!(
            "software module {sm_id} is not part of distribution set {id}"
        )));
    }
    commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
