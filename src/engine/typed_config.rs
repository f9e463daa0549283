//! Tenant configuration values of every kind ([`config_keys::Kind`]): each value is checked
//! against its key's type first (hawkBit's `configValueInvalid`), flags then go through the
//! assignment rules of [`Engine::put_config`], other values are stored as they are.

use serde_json::Value;

use super::config_keys::{self, Kind};
use super::{Engine, EngineError};
use crate::domain::ids::TenantId;
use crate::store::tenants;

/// `key`'s value as stored, or why it cannot be: unknown key (404), wrong type (400).
fn checked(key: &str, value: &Value) -> Result<(Kind, Value), EngineError> {
    let kind = config_keys::kind_of(key)
        .ok_or_else(|| EngineError::NotFound(format!("configuration key {key} does not exist")))?;
    let value = config_keys::validate(key, kind, value).map_err(EngineError::ConfigInvalid)?;
    Ok((kind, value))
}

impl Engine {
    /// Set one configuration value of any kind.
    pub async fn put_config_value(
        &self,
        tenant: TenantId,
        key: &str,
        value: Value,
        user: &str,
    ) -> Result<(), EngineError> {
        self.put_config_values(tenant, vec![(key.to_owned(), value)], user)
            .await
    }

    /// Set several values: all are checked before anything is written, the flags are set in
    /// one transaction under their rules, then the other values in another. A flag refused by
    /// its rules writes nothing.
    pub async fn put_config_values(
        &self,
        tenant: TenantId,
        values: Vec<(String, Value)>,
        user: &str,
    ) -> Result<(), EngineError> {
        let mut flags = Vec::new();
        let mut others = Vec::new();
        for (key, value) in values {
            match checked(&key, &value)? {
                (Kind::Bool, v) => flags.push((key, v)),
                (_, v) => others.push((key, v)),
            }
        }
        if !flags.is_empty() {
            self.put_configs(tenant, flags, user).await?;
        }
        if !others.is_empty() {
            let mut tx = self.pool.begin().await?;
            for (key, value) in &others {
                tenants::put_config(&mut tx, tenant, key, value, user).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Remove a value (back to its default); flags under their rules ([`Self::delete_config`]).
    pub async fn delete_config_value(
        &self,
        tenant: TenantId,
        key: &str,
        user: &str,
    ) -> Result<(), EngineError> {
        match config_keys::kind_of(key) {
            None => Err(EngineError::NotFound(format!(
                "configuration key {key} does not exist"
            ))),
            Some(Kind::Bool) => self.delete_config(tenant, key, user).await,
            Some(_) => {
                let mut conn = self.pool.acquire().await?;
                tenants::delete_config(&mut conn, tenant, key).await?;
                Ok(())
            }
        }
    }
}
