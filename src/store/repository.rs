//! The software repository: module and set types, software modules with their artifacts and
//! metadata, distribution sets. Also builds the `softwareModules` payload of deployment messages.

use std::collections::BTreeMap;

use sqlx::types::Json;
use sqlx::{PgConnection, QueryBuilder};

use super::filter::{Filter, push_and};
use super::{Result, StoreError};
use crate::domain::ids::TenantId;

/// One module of a set as devices see it, with artifacts and target-visible metadata.
#[derive(Debug, Clone)]
pub struct ModulePayload {
    pub ds_id: i64,
    pub module_id: i64,
    pub type_key: String,
    pub version: String,
    pub encrypted: bool,
    pub artifacts: Vec<ArtifactPayload>,
    pub metadata: Vec<(String, String)>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct ArtifactPayload {
    pub sm_id: i64,
    pub filename: String,
    pub size: i64,
    pub sha1: String,
    pub md5: String,
    pub last_modified_at: i64,
    pub url_https: Option<String>,
    pub url_http: Option<String>,
}

/// The modules of several distribution sets, keyed by set id (modules in id order), with their
/// artifacts and target-visible metadata aggregated in the same statement (one round trip on
/// the path of every deployment that is rendered).
pub async fn modules_of_sets(
    conn: &mut PgConnection,
    ds_ids: &[i64],
) -> Result<BTreeMap<i64, Vec<ModulePayload>>> {
    type Row = (
        i64,
        i64,
        String,
        String,
        bool,
        Json<Vec<ArtifactPayload>>,
        Json<Vec<(String, String)>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT dm.ds_id, m.id, ty.key, m.version, m.encrypted,
                COALESCE((SELECT json_agg(json_build_object(
                              'sm_id', a.sm_id, 'filename', a.filename, 'size', a.size,
                              'sha1', a.sha1, 'md5', a.md5, 'last_modified_at', a.last_modified_at,
                              'url_https', a.url_https, 'url_http', a.url_http) ORDER BY a.id)
                          FROM artifact a WHERE a.sm_id = m.id), '[]'),
                COALESCE((SELECT json_agg(json_build_array(md.key, md.value) ORDER BY md.key)
                          FROM software_module_metadata md
                          WHERE md.sm_id = m.id AND md.target_visible), '[]')
         FROM distribution_set_module dm
         JOIN software_module m ON m.id = dm.sm_id
         JOIN software_module_type ty ON ty.id = m.type_id
         WHERE dm.ds_id = ANY($1) ORDER BY dm.ds_id, m.id",
    )
    .bind(ds_ids)
    .fetch_all(conn)
    .await?;
    let mut out: BTreeMap<i64, Vec<ModulePayload>> = BTreeMap::new();
    for (ds_id, module_id, type_key, version, encrypted, artifacts, metadata) in rows {
        out.entry(ds_id).or_default().push(ModulePayload {
            ds_id,
            module_id,
            type_key,
            version,
            encrypted,
            artifacts: artifacts.0,
            metadata: metadata.0,
        });
    }
    Ok(out)
}

/// What an assignment needs to know about a set.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SetFacts {
    pub id: i64,
    pub valid: bool,
    pub deleted: bool,
    pub required_migration_step: bool,
    /// All mandatory module types of the set's type are present.
    pub complete: bool,
}

/// The facts of a set that decide whether it may be assigned, share-locked so that an
/// invalidation (which locks the set for update) cannot slip in before this transaction ends.
pub async fn set_facts(
    conn: &mut PgConnection,
    tenant: i64,
    ds_id: i64,
) -> Result<Option<SetFacts>> {
    Ok(sqlx::query_as(
        "SELECT d.id, d.valid, d.deleted, d.required_migration_step,
                NOT EXISTS (SELECT 1 FROM distribution_set_type_element e
                            WHERE e.ds_type_id = d.type_id AND e.mandatory
                              AND NOT EXISTS (SELECT 1 FROM distribution_set_module dm
                                              JOIN software_module m ON m.id = dm.sm_id
                                              WHERE dm.ds_id = d.id AND m.type_id = e.sm_type_id)) AS complete
         FROM distribution_set d WHERE d.tenant_id = $1 AND d.id = $2 FOR SHARE OF d",
    )
    .bind(tenant)
    .bind(ds_id)
    .fetch_optional(conn)
    .await?)
}

/// The type of a distribution set.
pub async fn set_type_id(conn: &mut PgConnection, ds_id: i64) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT type_id FROM distribution_set WHERE id = $1")
            .bind(ds_id)
            .fetch_one(conn)
            .await?,
    )
}

// ---------------------------------------------------------------------------------------------
// Management API: types, software modules, artifacts, module metadata, distribution sets.
// Every statement is filtered by tenant; child tables (artifacts, metadata, set members) are
// reached through their owner's tenant.

/// A software module type.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModuleTypeRow {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub colour: Option<String>,
    pub max_assignments: i32,
    pub deleted: bool,
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

const MODULE_TYPE_COLUMNS: &str = "ty.id, ty.key, ty.name, ty.description, ty.colour,
    ty.max_assignments, ty.deleted, ty.created_at, ty.created_by, ty.last_modified_at,
    ty.last_modified_by";

/// Sortable module type fields: API name → column.
pub const MODULE_TYPE_SORT_FIELDS: &[(&str, &str)] = &[
    ("id", "ty.id"),
    ("key", "ty.key"),
    ("name", "ty.name"),
    ("description", "ty.description"),
    ("maxassignments", "ty.max_assignments"),
    ("colour", "ty.colour"),
    ("createdat", "ty.created_at"),
    ("createdby", "ty.created_by"),
    ("lastmodifiedat", "ty.last_modified_at"),
    ("lastmodifiedby", "ty.last_modified_by"),
];

/// A page of the tenant's (not deleted) module types matching `q`, and their total;
/// `order_by` comes from [`MODULE_TYPE_SORT_FIELDS`] only.
pub async fn list_module_types(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<ModuleTypeRow>, i64)> {
    let from = "FROM software_module_type ty WHERE NOT ty.deleted AND ty.tenant_id = ";
    let mut page = QueryBuilder::new(format!("SELECT {MODULE_TYPE_COLUMNS} {from}"));
    page.push_bind(tenant.0);
    push_and(&mut page, q, "ty");
    push_page(&mut page, order_by, offset, limit);
    let rows = page.build_query_as().fetch_all(&mut *conn).await?;
    let mut count = QueryBuilder::new(format!("SELECT count(*) {from}"));
    count.push_bind(tenant.0);
    push_and(&mut count, q, "ty");
    let total = count.build_query_scalar().fetch_one(conn).await?;
    Ok((rows, total))
}

/// ` ORDER BY <order_by> OFFSET $n LIMIT $m`; `order_by` comes from a sort-field whitelist.
fn push_page(qb: &mut QueryBuilder<'_, sqlx::Postgres>, order_by: &str, offset: i64, limit: i64) {
    qb.push(format!(" ORDER BY {order_by} OFFSET "));
    qb.push_bind(offset);
    qb.push(" LIMIT ");
    qb.push_bind(limit);
}

/// One module type by id.
pub async fn find_module_type(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> Result<Option<ModuleTypeRow>> {
    Ok(sqlx::query_as::<_, ModuleTypeRow>(&format!(
        "SELECT {MODULE_TYPE_COLUMNS} FROM software_module_type ty
         WHERE ty.tenant_id = $1 AND ty.id = $2"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// One (not deleted) module type by key.
pub async fn find_module_type_by_key(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &str,
) -> Result<Option<ModuleTypeRow>> {
    Ok(sqlx::query_as::<_, ModuleTypeRow>(&format!(
        "SELECT {MODULE_TYPE_COLUMNS} FROM software_module_type ty
         WHERE ty.tenant_id = $1 AND ty.key = $2 AND NOT ty.deleted"
    ))
    .bind(tenant.0)
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// A distribution set type.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SetTypeRow {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub colour: Option<String>,
    pub deleted: bool,
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

const SET_TYPE_COLUMNS: &str = "dt.id, dt.key, dt.name, dt.description, dt.colour, dt.deleted,
    dt.created_at, dt.created_by, dt.last_modified_at, dt.last_modified_by";

/// Sortable distribution set type fields: API name → column.
pub const SET_TYPE_SORT_FIELDS: &[(&str, &str)] = &[
    ("id", "dt.id"),
    ("key", "dt.key"),
    ("name", "dt.name"),
    ("description", "dt.description"),
    ("colour", "dt.colour"),
    ("createdat", "dt.created_at"),
    ("createdby", "dt.created_by"),
    ("lastmodifiedat", "dt.last_modified_at"),
    ("lastmodifiedby", "dt.last_modified_by"),
];

/// A page of the tenant's (not deleted) set types matching `q`, and their total; `order_by`
/// comes from [`SET_TYPE_SORT_FIELDS`] only.
pub async fn list_set_types(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<SetTypeRow>, i64)> {
    let from = "FROM distribution_set_type dt WHERE NOT dt.deleted AND dt.tenant_id = ";
    let mut page = QueryBuilder::new(format!("SELECT {SET_TYPE_COLUMNS} {from}"));
    page.push_bind(tenant.0);
    push_and(&mut page, q, "dt");
    push_page(&mut page, order_by, offset, limit);
    let rows = page.build_query_as().fetch_all(&mut *conn).await?;
    let mut count = QueryBuilder::new(format!("SELECT count(*) {from}"));
    count.push_bind(tenant.0);
    push_and(&mut count, q, "dt");
    let total = count.build_query_scalar().fetch_one(conn).await?;
    Ok((rows, total))
}

/// One set type by id.
pub async fn find_set_type(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> Result<Option<SetTypeRow>> {
    Ok(sqlx::query_as::<_, SetTypeRow>(&format!(
        "SELECT {SET_TYPE_COLUMNS} FROM distribution_set_type dt
         WHERE dt.tenant_id = $1 AND dt.id = $2"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// One (not deleted) set type by key.
pub async fn find_set_type_by_key(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &str,
) -> Result<Option<SetTypeRow>> {
    Ok(sqlx::query_as::<_, SetTypeRow>(&format!(
        "SELECT {SET_TYPE_COLUMNS} FROM distribution_set_type dt
         WHERE dt.tenant_id = $1 AND dt.key = $2 AND NOT dt.deleted"
    ))
    .bind(tenant.0)
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// A module type a set type takes, and whether it is mandatory.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SetTypeElementRow {
    pub ds_type_id: i64,
    pub mandatory: bool,
    #[sqlx(flatten)]
    pub module_type: ModuleTypeRow,
}

/// The module types several set types take (ordered by set type, then module type id).
pub async fn set_type_elements(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_type_ids: &[i64],
) -> Result<Vec<SetTypeElementRow>> {
    Ok(sqlx::query_as::<_, SetTypeElementRow>(&format!(
        "SELECT e.ds_type_id, e.mandatory, {MODULE_TYPE_COLUMNS}
         FROM distribution_set_type_element e
         JOIN distribution_set_type dt ON dt.id = e.ds_type_id
         JOIN software_module_type ty ON ty.id = e.sm_type_id
         WHERE dt.tenant_id = $1 AND e.ds_type_id = ANY($2)
         ORDER BY e.ds_type_id, ty.id"
    ))
    .bind(tenant.0)
    .bind(ds_type_ids)
    .fetch_all(conn)
    .await?)
}

/// A software module with its type's key and name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModuleRow {
    pub id: i64,
    pub type_id: i64,
    pub type_key: String,
    pub type_name: String,
    pub max_assignments: i32,
    pub name: String,
    pub version: String,
    pub vendor: Option<String>,
    pub description: Option<String>,
    pub encrypted: bool,
    pub locked: bool,
    pub deleted: bool,
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

const MODULE_COLUMNS: &str = "m.id, m.type_id, ty.key AS type_key, ty.name AS type_name,
    ty.max_assignments, m.name, m.version, m.vendor, m.description, m.encrypted, m.locked,
    m.deleted, m.created_at, m.created_by, m.last_modified_at, m.last_modified_by";

/// Sortable software module fields: API name → column.
pub const MODULE_SORT_FIELDS: &[(&str, &str)] = &[
    ("id", "m.id"),
    ("name", "m.name"),
    ("version", "m.version"),
    ("type", "ty.key"),
    ("vendor", "m.vendor"),
    ("description", "m.description"),
    ("encrypted", "m.encrypted"),
    ("locked", "m.locked"),
    ("createdat", "m.created_at"),
    ("createdby", "m.created_by"),
    ("lastmodifiedat", "m.last_modified_at"),
    ("lastmodifiedby", "m.last_modified_by"),
];

/// A page of the tenant's (not deleted) software modules matching `q`, and their total;
/// `order_by` comes from [`MODULE_SORT_FIELDS`] only.
pub async fn list_modules(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<ModuleRow>, i64)> {
    let mut page = QueryBuilder::new(format!(
        "SELECT {MODULE_COLUMNS} FROM software_module m
         JOIN software_module_type ty ON ty.id = m.type_id
         WHERE NOT m.deleted AND m.tenant_id = "
    ));
    page.push_bind(tenant.0);
    push_and(&mut page, q, "m");
    push_page(&mut page, order_by, offset, limit);
    let rows = page.build_query_as().fetch_all(&mut *conn).await?;
    let mut count = QueryBuilder::new(
        "SELECT count(*) FROM software_module m WHERE NOT m.deleted AND m.tenant_id = ",
    );
    count.push_bind(tenant.0);
    push_and(&mut count, q, "m");
    let total = count.build_query_scalar().fetch_one(conn).await?;
    Ok((rows, total))
}

/// One software module by id (soft-deleted ones included).
pub async fn find_module(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> Result<Option<ModuleRow>> {
    Ok(sqlx::query_as::<_, ModuleRow>(&format!(
        "SELECT {MODULE_COLUMNS} FROM software_module m
         JOIN software_module_type ty ON ty.id = m.type_id
         WHERE m.tenant_id = $1 AND m.id = $2"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Software modules by ids (soft-deleted ones included; unknown ids are missing from the result).
pub async fn find_modules(
    conn: &mut PgConnection,
    tenant: TenantId,
    ids: &[i64],
) -> Result<Vec<ModuleRow>> {
    Ok(sqlx::query_as::<_, ModuleRow>(&format!(
        "SELECT {MODULE_COLUMNS} FROM software_module m
         JOIN software_module_type ty ON ty.id = m.type_id
         WHERE m.tenant_id = $1 AND m.id = ANY($2) ORDER BY m.id"
    ))
    .bind(tenant.0)
    .bind(ids)
    .fetch_all(conn)
    .await?)
}

/// A software module to create.
#[derive(Debug, Clone)]
pub struct NewModule {
    pub type_id: i64,
    pub type_key: String,
    pub name: String,
    pub version: String,
    pub vendor: Option<String>,
    pub description: Option<String>,
    pub encrypted: bool,
}

/// Insert a software module; a duplicate (type, name, version) is a conflict.
pub async fn insert_module(
    conn: &mut PgConnection,
    tenant: TenantId,
    m: &NewModule,
    user: &str,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO software_module (tenant_id, type_id, name, version, vendor, description,
                                      encrypted, created_by, last_modified_by)
         SELECT $1, ty.id, $3, $4, $5, $6, $7, $8, $8 FROM software_module_type ty
         WHERE ty.tenant_id = $1 AND ty.id = $2
         RETURNING id",
    )
    .bind(tenant.0)
    .bind(m.type_id)
    .bind(&m.name)
    .bind(&m.version)
    .bind(&m.vendor)
    .bind(&m.description)
    .bind(m.encrypted)
    .bind(user)
    .fetch_one(conn)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!(
            "software module {}:{} of type {} already exists",
            m.name, m.version, m.type_key
        )),
        other => other,
    })
}

/// Change a module's description and/or vendor (`None` = unchanged). False if unknown.
pub async fn update_module(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    description: Option<&str>,
    vendor: Option<&str>,
    user: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE software_module SET description = COALESCE($3, description),
                vendor = COALESCE($4, vendor), last_modified_at = epoch_ms(),
                last_modified_by = $5, opt_lock_revision = opt_lock_revision + 1
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(description)
    .bind(vendor)
    .bind(user)
    .execute(conn)
    .await?
    .rows_affected()
        > 0)
}

/// How an entity went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The row is gone.
    Hard,
    /// Still referenced (by a set, an action, a target): kept with `deleted = true`.
    Soft,
    /// No such entity in the tenant.
    NotFound,
}

/// Delete a row in a savepoint; when a foreign key still points at it, mark it deleted instead.
async fn delete_or_mark(
    conn: &mut PgConnection,
    delete_sql: &str,
    mark_sql: &str,
    tenant: TenantId,
    id: i64,
    user: &str,
) -> Result<Deletion> {
    use sqlx::Connection as _;
    // A savepoint (or a transaction when the caller has none): the failed DELETE must not abort
    // the caller's transaction.
    let mut sp = conn.begin().await?;
    let deleted = sqlx::query(delete_sql)
        .bind(tenant.0)
        .bind(id)
        .execute(&mut *sp)
        .await;
    match deleted {
        Ok(done) => {
            sp.commit().await?;
            Ok(if done.rows_affected() > 0 {
                Deletion::Hard
            } else {
                Deletion::NotFound
            })
        }
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23503") => {
            sp.rollback().await?;
            let marked = sqlx::query(mark_sql)
                .bind(tenant.0)
                .bind(id)
                .bind(user)
                .execute(conn)
                .await?;
            Ok(if marked.rows_affected() > 0 {
                Deletion::Soft
            } else {
                Deletion::NotFound
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Delete a module with its artifacts and metadata, or soft-delete it while a set references it.
pub async fn delete_module(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    user: &str,
) -> Result<Deletion> {
    delete_or_mark(
        conn,
        "DELETE FROM software_module WHERE tenant_id = $1 AND id = $2",
        "UPDATE software_module SET deleted = true, last_modified_at = epoch_ms(),
                last_modified_by = $3, opt_lock_revision = opt_lock_revision + 1
         WHERE tenant_id = $1 AND id = $2",
        tenant,
        id,
        user,
    )
    .await
}

/// An artifact: a reference to a file held by a CDN or object store.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ArtifactRow {
    pub id: i64,
    pub sm_id: i64,
    pub filename: String,
    pub size: i64,
    pub sha1: String,
    pub md5: String,
    pub sha256: Option<String>,
    pub url_https: Option<String>,
    pub url_http: Option<String>,
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

const ARTIFACT_COLUMNS: &str = "a.id, a.sm_id, a.filename, a.size, a.sha1, a.md5, a.sha256,
    a.url_https, a.url_http, a.created_at, a.created_by, a.last_modified_at, a.last_modified_by";

/// An artifact to record (hashes already validated and lower-cased).
#[derive(Debug, Clone)]
pub struct NewArtifact {
    pub filename: String,
    pub size: i64,
    pub sha1: String,
    pub md5: String,
    pub sha256: Option<String>,
    pub url_https: Option<String>,
    pub url_http: Option<String>,
}

/// Add an artifact to a module of the tenant; a duplicate filename in the module is a conflict.
pub async fn insert_artifact(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    a: &NewArtifact,
    user: &str,
) -> Result<Option<ArtifactRow>> {
    sqlx::query_as::<_, ArtifactRow>(
        "INSERT INTO artifact AS a (sm_id, filename, size, sha1, md5, sha256, url_https, url_http,
                                    created_by, last_modified_by)
         SELECT m.id, $3, $4, $5, $6, $7, $8, $9, $10, $10 FROM software_module m
         WHERE m.tenant_id = $1 AND m.id = $2
         RETURNING a.id, a.sm_id, a.filename, a.size, a.sha1, a.md5, a.sha256, a.url_https,
                   a.url_http, a.created_at, a.created_by, a.last_modified_at, a.last_modified_by",
    )
    .bind(tenant.0)
    .bind(sm_id)
    .bind(&a.filename)
    .bind(a.size)
    .bind(&a.sha1)
    .bind(&a.md5)
    .bind(&a.sha256)
    .bind(&a.url_https)
    .bind(&a.url_http)
    .bind(user)
    .fetch_optional(conn)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!(
            "artifact {} already exists in software module {sm_id}",
            a.filename
        )),
        other => other,
    })
}

/// The artifacts of a module of the tenant, in id order.
pub async fn list_artifacts(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
) -> Result<Vec<ArtifactRow>> {
    Ok(sqlx::query_as::<_, ArtifactRow>(&format!(
        "SELECT {ARTIFACT_COLUMNS} FROM artifact a JOIN software_module m ON m.id = a.sm_id
         WHERE m.tenant_id = $1 AND a.sm_id = $2 ORDER BY a.id"
    ))
    .bind(tenant.0)
    .bind(sm_id)
    .fetch_all(conn)
    .await?)
}

/// One artifact of a module of the tenant.
pub async fn find_artifact(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    artifact_id: i64,
) -> Result<Option<ArtifactRow>> {
    Ok(sqlx::query_as::<_, ArtifactRow>(&format!(
        "SELECT {ARTIFACT_COLUMNS} FROM artifact a JOIN software_module m ON m.id = a.sm_id
         WHERE m.tenant_id = $1 AND a.sm_id = $2 AND a.id = $3"
    ))
    .bind(tenant.0)
    .bind(sm_id)
    .bind(artifact_id)
    .fetch_optional(conn)
    .await?)
}

/// Remove an artifact of a module of the tenant. False if unknown.
pub async fn delete_artifact(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    artifact_id: i64,
) -> Result<bool> {
    Ok(sqlx::query(
        "DELETE FROM artifact a USING software_module m
         WHERE m.id = a.sm_id AND m.tenant_id = $1 AND a.sm_id = $2 AND a.id = $3",
    )
    .bind(tenant.0)
    .bind(sm_id)
    .bind(artifact_id)
    .execute(conn)
    .await?
    .rows_affected()
        > 0)
}

/// One metadata entry of a software module.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MetadataRow {
    pub key: String,
    pub value: String,
    pub target_visible: bool,
}

/// Sortable module metadata fields: API name → column.
pub const METADATA_SORT_FIELDS: &[(&str, &str)] = &[
    ("key", "md.key"),
    ("value", "md.value"),
    ("targetvisible", "md.target_visible"),
];

/// A page of a module's metadata matching `q`, and their total; `order_by` comes from
/// [`METADATA_SORT_FIELDS`] only.
pub async fn list_metadata(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    q: Option<&Filter>,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<MetadataRow>, i64)> {
    let from = "FROM software_module_metadata md JOIN software_module m ON m.id = md.sm_id
         WHERE m.tenant_id = ";
    let scope = |qb: &mut QueryBuilder<'_, sqlx::Postgres>| {
        qb.push_bind(tenant.0);
        qb.push(" AND md.sm_id = ");
        qb.push_bind(sm_id);
        push_and(qb, q, "md");
    };
    let mut page = QueryBuilder::new(format!("SELECT md.key, md.value, md.target_visible {from}"));
    scope(&mut page);
    push_page(&mut page, order_by, offset, limit);
    let rows = page.build_query_as().fetch_all(&mut *conn).await?;
    let mut count = QueryBuilder::new(format!("SELECT count(*) {from}"));
    scope(&mut count);
    let total = count.build_query_scalar().fetch_one(conn).await?;
    Ok((rows, total))
}

/// One metadata entry of a module by key.
pub async fn find_metadata(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    key: &str,
) -> Result<Option<MetadataRow>> {
    Ok(sqlx::query_as::<_, MetadataRow>(
        "SELECT md.key, md.value, md.target_visible FROM software_module_metadata md
         JOIN software_module m ON m.id = md.sm_id
         WHERE m.tenant_id = $1 AND md.sm_id = $2 AND md.key = $3",
    )
    .bind(tenant.0)
    .bind(sm_id)
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// Add a metadata entry to a module of the tenant; an existing key is a conflict.
pub async fn insert_metadata(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    entry: &MetadataRow,
) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO software_module_metadata (sm_id, key, value, target_visible)
         SELECT m.id, $3, $4, $5 FROM software_module m WHERE m.tenant_id = $1 AND m.id = $2",
    )
    .bind(tenant.0)
    .bind(sm_id)
    .bind(&entry.key)
    .bind(&entry.value)
    .bind(entry.target_visible)
    .execute(conn)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!(
            "metadata key {} already exists in software module {sm_id}",
            entry.key
        )),
        other => other,
    })?
    .rows_affected()
        > 0)
}

/// Change the value and/or visibility of a metadata entry (`None` = unchanged). False if unknown.
pub async fn update_metadata(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    key: &str,
    value: Option<&str>,
    target_visible: Option<bool>,
) -> Result<Option<MetadataRow>> {
    Ok(sqlx::query_as::<_, MetadataRow>(
        "UPDATE software_module_metadata md SET value = COALESCE($4, md.value),
                target_visible = COALESCE($5, md.target_visible)
         FROM software_module m
         WHERE m.id = md.sm_id AND m.tenant_id = $1 AND md.sm_id = $2 AND md.key = $3
         RETURNING md.key, md.value, md.target_visible",
    )
    .bind(tenant.0)
    .bind(sm_id)
    .bind(key)
    .bind(value)
    .bind(target_visible)
    .fetch_optional(conn)
    .await?)
}

/// Remove a metadata entry of a module of the tenant. False if unknown.
pub async fn delete_metadata(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    key: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "DELETE FROM software_module_metadata md USING software_module m
         WHERE m.id = md.sm_id AND m.tenant_id = $1 AND md.sm_id = $2 AND md.key = $3",
    )
    .bind(tenant.0)
    .bind(sm_id)
    .bind(key)
    .execute(conn)
    .await?
    .rows_affected()
        > 0)
}

/// A distribution set with its type and computed completeness.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SetRow {
    pub id: i64,
    pub type_id: i64,
    pub type_key: String,
    pub type_name: String,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub required_migration_step: bool,
    pub locked: bool,
    pub valid: bool,
    pub deleted: bool,
    /// All mandatory module types of the set's type are present.
    pub complete: bool,
    pub created_at: i64,
    pub created_by: String,
    pub last_modified_at: i64,
    pub last_modified_by: String,
}

const SET_COLUMNS: &str = "d.id, d.type_id, dt.key AS type_key, dt.name AS type_name, d.name,
    d.version, d.description, d.required_migration_step, d.locked, d.valid, d.deleted,
    NOT EXISTS (SELECT 1 FROM distribution_set_type_element e
                WHERE e.ds_type_id = d.type_id AND e.mandatory
                  AND NOT EXISTS (SELECT 1 FROM distribution_set_module dm
                                  JOIN software_module sm ON sm.id = dm.sm_id
                                  WHERE dm.ds_id = d.id AND sm.type_id = e.sm_type_id)) AS complete,
    d.created_at, d.created_by, d.last_modified_at, d.last_modified_by";

/// Sortable distribution set fields: API name → column.
pub const SET_SORT_FIELDS: &[(&str, &str)] = &[
    ("id", "d.id"),
    ("name", "d.name"),
    ("version", "d.version"),
    ("description", "d.description"),
    ("type", "dt.key"),
    ("requiredmigrationstep", "d.required_migration_step"),
    ("locked", "d.locked"),
    ("valid", "d.valid"),
    ("createdat", "d.created_at"),
    ("createdby", "d.created_by"),
    ("lastmodifiedat", "d.last_modified_at"),
    ("lastmodifiedby", "d.last_modified_by"),
];

/// A page of the tenant's (not deleted) distribution sets matching `q`, and their total;
/// `order_by` comes from [`SET_SORT_FIELDS`] only.
pub async fn list_sets(
    conn: &mut PgConnection,
    tenant: TenantId,
    q: Option<&Filter>,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<SetRow>, i64)> {
    let mut page = QueryBuilder::new(format!(
        "SELECT {SET_COLUMNS} FROM distribution_set d
         JOIN distribution_set_type dt ON dt.id = d.type_id
         WHERE NOT d.deleted AND d.tenant_id = "
    ));
    page.push_bind(tenant.0);
    push_and(&mut page, q, "d");
    push_page(&mut page, order_by, offset, limit);
    let rows = page.build_query_as().fetch_all(&mut *conn).await?;
    let mut count = QueryBuilder::new(
        "SELECT count(*) FROM distribution_set d WHERE NOT d.deleted AND d.tenant_id = ",
    );
    count.push_bind(tenant.0);
    push_and(&mut count, q, "d");
    let total = count.build_query_scalar().fetch_one(conn).await?;
    Ok((rows, total))
}

/// One distribution set by id (soft-deleted ones included).
pub async fn find_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> Result<Option<SetRow>> {
    Ok(sqlx::query_as::<_, SetRow>(&format!(
        "SELECT {SET_COLUMNS} FROM distribution_set d
         JOIN distribution_set_type dt ON dt.id = d.type_id
         WHERE d.tenant_id = $1 AND d.id = $2"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Lock a distribution set row for a change of its modules in this transaction.
pub async fn lock_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
) -> Result<Option<SetRow>> {
    Ok(sqlx::query_as::<_, SetRow>(&format!(
        "SELECT {SET_COLUMNS} FROM distribution_set d
         JOIN distribution_set_type dt ON dt.id = d.type_id
         WHERE d.tenant_id = $1 AND d.id = $2 FOR UPDATE OF d"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// A module as a member of a set.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SetModuleRow {
    pub ds_id: i64,
    #[sqlx(flatten)]
    pub module: ModuleRow,
}

/// The modules of several sets of the tenant (ordered by set, then module id).
pub async fn modules_of_sets_full(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_ids: &[i64],
) -> Result<Vec<SetModuleRow>> {
    Ok(sqlx::query_as::<_, SetModuleRow>(&format!(
        "SELECT dm.ds_id, {MODULE_COLUMNS} FROM distribution_set_module dm
         JOIN distribution_set d ON d.id = dm.ds_id
         JOIN software_module m ON m.id = dm.sm_id
         JOIN software_module_type ty ON ty.id = m.type_id
         WHERE d.tenant_id = $1 AND dm.ds_id = ANY($2) ORDER BY dm.ds_id, m.id"
    ))
    .bind(tenant.0)
    .bind(ds_ids)
    .fetch_all(conn)
    .await?)
}

/// A page of the modules of one set matching `q`, and their total; `order_by` comes from
/// [`MODULE_SORT_FIELDS`] only.
pub async fn list_set_modules(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_id: i64,
    q: Option<&Filter>,
    order_by: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<ModuleRow>, i64)> {
    let scope = |qb: &mut QueryBuilder<'_, sqlx::Postgres>| {
        qb.push_bind(tenant.0);
        qb.push(" AND dm.ds_id = ");
        qb.push_bind(ds_id);
        push_and(qb, q, "m");
    };
    let mut page = QueryBuilder::new(format!(
        "SELECT {MODULE_COLUMNS} FROM distribution_set_module dm
         JOIN distribution_set d ON d.id = dm.ds_id
         JOIN software_module m ON m.id = dm.sm_id
         JOIN software_module_type ty ON ty.id = m.type_id
         WHERE d.tenant_id = "
    ));
    scope(&mut page);
    push_page(&mut page, order_by, offset, limit);
    let rows = page.build_query_as().fetch_all(&mut *conn).await?;
    let mut count = QueryBuilder::new(
        "SELECT count(*) FROM distribution_set_module dm
         JOIN distribution_set d ON d.id = dm.ds_id
         JOIN software_module m ON m.id = dm.sm_id
         WHERE d.tenant_id = ",
    );
    scope(&mut count);
    let total = count.build_query_scalar().fetch_one(conn).await?;
    Ok((rows, total))
}

/// A distribution set to create.
#[derive(Debug, Clone)]
pub struct NewSet {
    pub type_id: i64,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub required_migration_step: bool,
}

/// Insert a distribution set; a duplicate (name, version) is a conflict.
pub async fn insert_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    s: &NewSet,
    user: &str,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO distribution_set (tenant_id, type_id, name, version, description,
                                       required_migration_step, created_by, last_modified_by)
         SELECT $1, dt.id, $3, $4, $5, $6, $7, $7 FROM distribution_set_type dt
         WHERE dt.tenant_id = $1 AND dt.id = $2
         RETURNING id",
    )
    .bind(tenant.0)
    .bind(s.type_id)
    .bind(&s.name)
    .bind(&s.version)
    .bind(&s.description)
    .bind(s.required_migration_step)
    .bind(user)
    .fetch_one(conn)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!(
            "distribution set {}:{} already exists",
            s.name, s.version
        )),
        other => other,
    })
}

/// Add modules to a set of the tenant (members already present are kept once).
pub async fn add_set_modules(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_id: i64,
    sm_ids: &[i64],
    user: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO distribution_set_module (ds_id, sm_id)
         SELECT d.id, m.id FROM distribution_set d
         JOIN software_module m ON m.tenant_id = d.tenant_id AND m.id = ANY($3)
         WHERE d.tenant_id = $1 AND d.id = $2
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant.0)
    .bind(ds_id)
    .bind(sm_ids)
    .execute(&mut *conn)
    .await?;
    touch_set(conn, tenant, ds_id, user).await
}

/// Remove a module from a set of the tenant. False if it was not a member.
pub async fn remove_set_module(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_id: i64,
    sm_id: i64,
    user: &str,
) -> Result<bool> {
    let removed = sqlx::query(
        "DELETE FROM distribution_set_module dm USING distribution_set d
         WHERE d.id = dm.ds_id AND d.tenant_id = $1 AND dm.ds_id = $2 AND dm.sm_id = $3",
    )
    .bind(tenant.0)
    .bind(ds_id)
    .bind(sm_id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if removed {
        touch_set(conn, tenant, ds_id, user).await?;
    }
    Ok(removed)
}

/// Record a change of a set's content.
async fn touch_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_id: i64,
    user: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE distribution_set SET last_modified_at = epoch_ms(), last_modified_by = $3,
                opt_lock_revision = opt_lock_revision + 1
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.0)
    .bind(ds_id)
    .bind(user)
    .execute(conn)
    .await?;
    Ok(())
}

/// Fields a Management API update of a set may change (`None` = unchanged).
#[derive(Debug, Clone, Default)]
pub struct SetUpdate {
    pub name: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    pub required_migration_step: Option<bool>,
    pub locked: Option<bool>,
}

/// Update a set of the tenant; locking it also locks its modules. False if unknown; a
/// (name, version) taken by another set is a conflict.
pub async fn update_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    u: &SetUpdate,
    user: &str,
) -> Result<bool> {
    let updated = sqlx::query(
        "UPDATE distribution_set SET name = COALESCE($3, name), version = COALESCE($4, version),
                description = COALESCE($5, description),
                required_migration_step = COALESCE($6, required_migration_step),
                locked = COALESCE($7, locked),
                last_modified_at = epoch_ms(), last_modified_by = $8,
                opt_lock_revision = opt_lock_revision + 1
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(&u.name)
    .bind(&u.version)
    .bind(&u.description)
    .bind(u.required_migration_step)
    .bind(u.locked)
    .bind(user)
    .execute(&mut *conn)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(format!(
            "a distribution set named {}:{} already exists",
            u.name.as_deref().unwrap_or("(unchanged)"),
            u.version.as_deref().unwrap_or("(unchanged)")
        )),
        other => other,
    })?
    .rows_affected()
        > 0;
    if updated && u.locked == Some(true) {
        lock_modules_of_set(conn, tenant, id, user).await?;
    }
    Ok(updated)
}

/// Lock every module of a set of the tenant (a locked set freezes its modules too).
pub async fn lock_modules_of_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    ds_id: i64,
    user: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE software_module m SET locked = true, last_modified_at = epoch_ms(),
                last_modified_by = $3, opt_lock_revision = m.opt_lock_revision + 1
         FROM distribution_set_module dm
         WHERE dm.sm_id = m.id AND dm.ds_id = $2 AND m.tenant_id = $1 AND NOT m.locked",
    )
    .bind(tenant.0)
    .bind(ds_id)
    .bind(user)
    .execute(conn)
    .await?;
    Ok(())
}

/// Delete a set, or soft-delete it while an action or a target references it.
pub async fn delete_set(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: i64,
    user: &str,
) -> Result<Deletion> {
    delete_or_mark(
        conn,
        "DELETE FROM distribution_set WHERE tenant_id = $1 AND id = $2",
        "UPDATE distribution_set SET deleted = true, last_modified_at = epoch_ms(),
                last_modified_by = $3, opt_lock_revision = opt_lock_revision + 1
         WHERE tenant_id = $1 AND id = $2",
        tenant,
        id,
        user,
    )
    .await
}
