//! Artifacts of software modules: references to files held by a CDN or object store.

use sqlx::PgConnection;

use crate::domain::ids::TenantId;
use crate::store::Audit;
use crate::store::{Result, sql};

/// An artifact: a reference to a file held by a CDN or object store.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ArtifactRow {
    pub id: i64,
    pub sm_id: i64,
    #[sqlx(flatten)]
    pub file: NewArtifact,
    #[sqlx(flatten)]
    pub audit: Audit,
}

const ARTIFACT_COLUMNS: &str = "a.id, a.sm_id, a.filename, a.size, a.sha1, a.md5, a.sha256,
    a.url_https, a.url_http, a.created_at, a.created_by, a.last_modified_at, a.last_modified_by";

/// An artifact to record (hashes already validated and lower-cased): the file an artifact row
/// refers to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NewArtifact {
    pub filename: String,
    pub size: i64,
    #[sqlx(flatten)]
    pub hashes: Hashes,
    #[sqlx(flatten)]
    pub urls: Urls,
}

/// The hashes of an artifact's file (lower-case hex).
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct Hashes {
    pub sha1: String,
    pub md5: String,
    /// Not part of the DMF payload (hawkBit sends SHA-1 and MD5 only).
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Where devices download an artifact's file from (at least one is set).
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct Urls {
    pub url_https: Option<String>,
    pub url_http: Option<String>,
}

/// Add an artifact to a module of the tenant; a duplicate filename in the module is a conflict.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    a: &NewArtifact,
    user: &str,
) -> Result<Option<ArtifactRow>> {
    let sql = format!(
        "INSERT INTO artifact AS a (sm_id, filename, size, sha1, md5, sha256, url_https, url_http,
                                    created_by, last_modified_by)
         SELECT m.id, $3, $4, $5, $6, $7, $8, $9, $10, $10 FROM software_module m
         WHERE m.tenant_id = $1 AND m.id = $2
         RETURNING {ARTIFACT_COLUMNS}"
    );
    let (h, u) = (&a.hashes, &a.urls);
    let binds = (
        tenant.0,
        sm_id,
        &a.filename,
        a.size,
        &h.sha1,
        &h.md5,
        &h.sha256,
        &u.url_https,
        &u.url_http,
        user,
    );
    sql::fetch_optional(conn, &sql, binds).await.map_err(|e| {
        e.conflict_as(|| {
            format!(
                "artifact {} already exists in software module {sm_id}",
                a.filename
            )
        })
    })
}

/// The artifacts of module `$2` of tenant `$1`, then `rest` (more conditions, an order).
fn select(rest: &str) -> String {
    format!(
        "SELECT {ARTIFACT_COLUMNS} FROM artifact a JOIN software_module m ON m.id = a.sm_id
         WHERE m.tenant_id = $1 AND a.sm_id = $2 {rest}"
    )
}

/// The artifacts of a module of the tenant, in id order.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
) -> Result<Vec<ArtifactRow>> {
    sql::fetch_all(conn, &select("ORDER BY a.id"), (tenant.0, sm_id)).await
}

/// One artifact of a module of the tenant.
pub async fn find(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    artifact_id: i64,
) -> Result<Option<ArtifactRow>> {
    let sql = select("AND a.id = $3");
    sql::fetch_optional(conn, &sql, (tenant.0, sm_id, artifact_id)).await
}

/// Remove an artifact of a module of the tenant. False if unknown.
pub async fn delete(
    conn: &mut PgConnection,
    tenant: TenantId,
    sm_id: i64,
    artifact_id: i64,
) -> Result<bool> {
    Ok(sql::execute(
        conn,
        "DELETE FROM artifact a USING software_module m
         WHERE m.id = a.sm_id AND m.tenant_id = $1 AND a.sm_id = $2 AND a.id = $3",
        (tenant.0, sm_id, artifact_id),
    )
    .await?
        > 0)
}
