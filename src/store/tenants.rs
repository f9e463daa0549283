//! Tenants, their configuration, and the default software module / distribution set types every
//! tenant has from its creation (service.md).

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::PgConnection;

use super::Audit;
use super::{Result, sql};
use crate::domain::ids::{TenantId, TenantName};

/// Create the tenant if missing (with its default types). Returns its id.
pub async fn ensure(conn: &mut PgConnection, name: &TenantName) -> Result<TenantId> {
    let inserted: Option<i64> = sql::scalar_optional(
        &mut *conn,
        "INSERT INTO tenant (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id",
        (name.as_str(),),
    )
    .await?;
    match inserted {
        Some(id) => {
            seed_default_types(conn, TenantId(id)).await?;
            tracing::info!(tenant = %name, "created tenant");
            Ok(TenantId(id))
        }
        None => Ok(TenantId(
            sql::scalar(
                conn,
                "SELECT id FROM tenant WHERE name = $1",
                (name.as_str(),),
            )
            .await?,
        )),
    }
}

/// The id of an existing tenant.
pub async fn find(conn: &mut PgConnection, name: &TenantName) -> Result<Option<TenantId>> {
    Ok(sql::scalar_optional(
        conn,
        "SELECT id FROM tenant WHERE name = $1",
        (name.as_str(),),
    )
    .await?
    .map(TenantId))
}

/// hawkBit's default types: module types `os` (max 1 per set), `runtime` (max 1), `application`
/// (any number); set types `os` (os), `os_app` (os + optional application), `app` (application +
/// optional runtime).
async fn seed_default_types(conn: &mut PgConnection, tenant: TenantId) -> Result<()> {
    sql::execute(&mut *conn, "INSERT INTO software_module_type (tenant_id, key, name, description, max_assignments, created_by, last_modified_by)
         VALUES ($1, 'os', 'OS', 'Core firmware or operating system', 1, 'system', 'system'),
                ($1, 'runtime', 'Runtime', 'Runtime environment, e.g. a JVM', 1, 'system', 'system'),
                ($1, 'application', 'Application', 'Application software', 2147483647, 'system', 'system')", (tenant.0,)).await?;
    sql::execute(&mut *conn, "INSERT INTO distribution_set_type (tenant_id, key, name, description, created_by, last_modified_by)
         VALUES ($1, 'os', 'OS only', 'Operating system only', 'system', 'system'),
                ($1, 'os_app', 'OS with app(s)', 'Operating system with optional applications', 'system', 'system'),
                ($1, 'app', 'App(s) only', 'Applications only', 'system', 'system')", (tenant.0,)).await?;
    sql::execute(conn, "INSERT INTO distribution_set_type_element (ds_type_id, sm_type_id, mandatory)
         SELECT d.id, s.id, e.mandatory
         FROM (VALUES ('os', 'os', true), ('os_app', 'os', true), ('os_app', 'application', false),
                      ('app', 'application', true), ('app', 'runtime', false)) AS e(ds_key, sm_key, mandatory)
         JOIN distribution_set_type d ON d.tenant_id = $1 AND d.key = e.ds_key
         JOIN software_module_type s ON s.tenant_id = $1 AND s.key = e.sm_key", (tenant.0,)).await?;
    Ok(())
}

/// Every configuration value set for the tenant.
pub async fn configs(conn: &mut PgConnection, tenant: TenantId) -> Result<BTreeMap<String, Value>> {
    let rows: Vec<(String, Value)> = sql::fetch_all(
        conn,
        "SELECT key, value FROM tenant_config WHERE tenant_id = $1",
        (tenant.0,),
    )
    .await?;
    Ok(rows.into_iter().collect())
}

/// Boolean configuration values of several tenants at once: tenant name → key → value.
pub async fn flags_by_name(
    conn: &mut PgConnection,
    tenants: &[String],
    keys: &[&str],
) -> Result<BTreeMap<String, BTreeMap<String, bool>>> {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let rows: Vec<(String, String, Value)> = sql::fetch_all(
        conn,
        "SELECT t.name, c.key, c.value FROM tenant_config c JOIN tenant t ON t.id = c.tenant_id
         WHERE t.name = ANY($1) AND c.key = ANY($2)",
        (tenants, &keys),
    )
    .await?;
    let mut out: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for (tenant, key, value) in rows {
        out.entry(tenant)
            .or_default()
            .insert(key, value.as_bool().unwrap_or(false));
    }
    Ok(out)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConfigRow {
    pub key: String,
    pub value: Value,
    #[sqlx(flatten)]
    pub audit: Audit,
}

pub async fn config_rows(conn: &mut PgConnection, tenant: TenantId) -> Result<Vec<ConfigRow>> {
    sql::fetch_all(
        conn,
        "SELECT key, value, created_at, created_by, last_modified_at, last_modified_by
         FROM tenant_config WHERE tenant_id = $1 ORDER BY key",
        (tenant.0,),
    )
    .await
}

/// Set a configuration value (insert or update).
pub async fn put_config(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &str,
    value: &Value,
    user: &str,
) -> Result<ConfigRow> {
    sql::fetch_one(conn, "INSERT INTO tenant_config (tenant_id, key, value, created_by, last_modified_by)
         VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (tenant_id, key) DO UPDATE
            SET value = excluded.value, last_modified_at = epoch_ms(), last_modified_by = excluded.last_modified_by
         RETURNING key, value, created_at, created_by, last_modified_at, last_modified_by", (tenant.0, key, value, user)).await
}

/// Remove a configuration value (back to its default). Returns whether one was set.
pub async fn delete_config(conn: &mut PgConnection, tenant: TenantId, key: &str) -> Result<bool> {
    Ok(sql::execute(
        conn,
        "DELETE FROM tenant_config WHERE tenant_id = $1 AND key = $2",
        (tenant.0, key),
    )
    .await?
        > 0)
}

/// The canonical name of a tenant.
pub async fn name_of(conn: &mut PgConnection, tenant: TenantId) -> Result<String> {
    sql::scalar(conn, "SELECT name FROM tenant WHERE id = $1", (tenant.0,)).await
}
