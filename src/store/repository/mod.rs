//! The software repository: module and set types, software modules with their artifacts and
//! metadata, distribution sets. This module builds the `softwareModules` payload of deployment
//! messages and answers what an assignment needs to know about a set; the Management API's
//! reads and writes live in the submodules, one per thing the repository holds. Every
//! statement is filtered by tenant; child tables (artifacts, metadata, set members) are reached
//! through their owner's tenant.

pub mod artifacts;
pub mod metadata;
pub mod modules;
pub mod set_metadata;
pub mod sets;
pub mod types;

use std::collections::BTreeMap;

use sqlx::PgConnection;
use sqlx::types::Json;

use self::artifacts::{Hashes, Urls};
use super::{Result, sql};

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

/// An artifact of a module as devices see it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ArtifactPayload {
    pub sm_id: i64,
    pub filename: String,
    pub size: i64,
    #[serde(flatten)]
    pub hashes: Hashes,
    pub last_modified_at: i64,
    #[serde(flatten)]
    pub urls: Urls,
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
    let rows: Vec<Row> = sql::fetch_all(
        conn,
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
        (ds_ids,),
    )
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
    let sql = "SELECT d.id, d.valid, d.deleted, d.required_migration_step,
                NOT EXISTS (SELECT 1 FROM distribution_set_type_element e
                            WHERE e.ds_type_id = d.type_id AND e.mandatory
                              AND NOT EXISTS (SELECT 1 FROM distribution_set_module dm
                                              JOIN software_module m ON m.id = dm.sm_id
                                              WHERE dm.ds_id = d.id AND m.type_id = e.sm_type_id)) AS complete
         FROM distribution_set d WHERE d.tenant_id = $1 AND d.id = $2 FOR SHARE OF d";
    sql::fetch_optional(conn, sql, (tenant, ds_id)).await
}

/// The type of a distribution set.
pub async fn set_type_id(conn: &mut PgConnection, ds_id: i64) -> Result<i64> {
    sql::scalar(
        conn,
        "SELECT type_id FROM distribution_set WHERE id = $1",
        (ds_id,),
    )
    .await
}

pub use crate::store::table::Deletion;
