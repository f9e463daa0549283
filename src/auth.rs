//! Users, tenants and permissions of the Management API: the bootstrap admin plus the users file
//! (`DMF_USERS_FILE`, service.md). Permission and role names are hawkBit's.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::ids::TenantName;

macro_rules! permissions {
    ($($name:ident),* $(,)?) => {
        /// A hawkBit permission.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        pub enum Permission { $($name),* }
        impl Permission {
            pub const ALL: &'static [Permission] = &[$(Permission::$name),*];
            pub fn as_str(self) -> &'static str {
                match self { $(Permission::$name => stringify!($name)),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $(stringify!($name) => Some(Permission::$name),)* _ => None }
            }
        }
    };
}

permissions!(
    READ_TARGET,
    CREATE_TARGET,
    UPDATE_TARGET,
    DELETE_TARGET,
    READ_TARGET_SECURITY_TOKEN,
    READ_REPOSITORY,
    CREATE_REPOSITORY,
    UPDATE_REPOSITORY,
    DELETE_REPOSITORY,
    TENANT_CONFIGURATION,
    READ_ROLLOUT,
    CREATE_ROLLOUT,
    UPDATE_ROLLOUT,
    DELETE_ROLLOUT,
    HANDLE_ROLLOUT,
    APPROVE_ROLLOUT,
);

const ROLLOUT_PERMISSIONS: [Permission; 6] = [
    Permission::READ_ROLLOUT,
    Permission::CREATE_ROLLOUT,
    Permission::UPDATE_ROLLOUT,
    Permission::DELETE_ROLLOUT,
    Permission::HANDLE_ROLLOUT,
    Permission::APPROVE_ROLLOUT,
];

/// Expand a hawkBit role name into its permissions.
fn role(name: &str) -> Option<Vec<Permission>> {
    match name {
        "ROLE_TENANT_ADMIN" => Some(Permission::ALL.to_vec()),
        "ROLE_ROLLOUT_ADMIN" => Some(ROLLOUT_PERMISSIONS.to_vec()),
        _ => None,
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub tenant: TenantName,
    pub permissions: BTreeSet<Permission>,
}

impl User {
    pub fn has(&self, p: Permission) -> bool {
        self.permissions.contains(&p)
    }
}

#[derive(Debug)]
struct Account {
    user: User,
    /// SHA-256 of the password: comparing digests keeps the comparison length-independent.
    password_digest: [u8; 32],
}

/// Every user the API accepts.
#[derive(Debug, Default)]
pub struct Users {
    accounts: HashMap<String, Account>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<UserEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    username: String,
    password: Option<String>,
    password_hash: Option<String>,
    tenant: String,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
}

fn digest(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

impl Users {
    /// The bootstrap admin of tenant DEFAULT with every permission.
    pub fn with_admin(username: &str, password: &SecretString) -> Self {
        let mut users = Self::default();
        users.accounts.insert(
            username.to_owned(),
            Account {
                user: User {
                    username: username.to_owned(),
                    tenant: TenantName::parse(TenantName::DEFAULT)
                        .unwrap_or_else(|_| unreachable!()),
                    permissions: Permission::ALL.iter().copied().collect(),
                },
                password_digest: digest(password.expose_secret()),
            },
        );
        users
    }

    /// Add the users of a TOML users file. The error names the file and, where known, the line.
    pub fn load_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("DMF_USERS_FILE {}: {e}", path.display()))?;
        self.load_str(&text)
            .map_err(|e| format!("DMF_USERS_FILE {}: {e}", path.display()))
    }

    pub fn load_str(&mut self, text: &str) -> Result<(), String> {
        let line_of = |needle: &str| {
            text.lines()
                .position(|l| l.contains(needle))
                .map(|i| format!("line {}: ", i + 1))
                .unwrap_or_default()
        };
        let file: UsersFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            format!("{line}{}", e.message())
        })?;
        for entry in file.users {
            let tenant = TenantName::parse(&entry.tenant)
                .map_err(|e| format!("{}{e}", line_of(&entry.tenant)))?;
            let mut permissions = BTreeSet::new();
            for p in &entry.permissions {
                let perm = Permission::parse(p)
                    .ok_or_else(|| format!("{}unknown permission {p:?}", line_of(p)))?;
                permissions.insert(perm);
            }
            for r in &entry.roles {
                let perms = role(r).ok_or_else(|| format!("{}unknown role {r:?}", line_of(r)))?;
                permissions.extend(perms);
            }
            let password = match (entry.password, entry.password_hash) {
                (Some(p), None) => p,
                (None, Some(_)) => {
                    return Err(format!(
                        "{}user {:?}: password_hash is not supported yet; give a password",
                        line_of(&entry.username),
                        entry.username
                    ));
                }
                _ => {
                    return Err(format!(
                        "{}user {:?} needs exactly one of password or password_hash",
                        line_of(&entry.username),
                        entry.username
                    ));
                }
            };
            if self.accounts.contains_key(&entry.username) {
                return Err(format!(
                    "{}duplicate user {:?}",
                    line_of(&entry.username),
                    entry.username
                ));
            }
            self.accounts.insert(
                entry.username.clone(),
                Account {
                    user: User {
                        username: entry.username,
                        tenant,
                        permissions,
                    },
                    password_digest: digest(&password),
                },
            );
        }
        Ok(())
    }

    /// The tenants users belong to.
    pub fn tenants(&self) -> BTreeSet<TenantName> {
        self.accounts
            .values()
            .map(|a| a.user.tenant.clone())
            .collect()
    }

    /// Check a username and password.
    pub fn authenticate(&self, username: &str, password: &str) -> Option<&User> {
        let account = self.accounts.get(username)?;
        let given = digest(password);
        // Constant-time comparison of the digests.
        let diff = given
            .iter()
            .zip(account.password_digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then_some(&account.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_expands_roles_and_rejects_unknown_names() {
        let mut users = Users::default();
        users
            .load_str(
                r#"
[[users]]
username = "ops"
password = "s3cret"
tenant = "default"
permissions = ["READ_TARGET"]

[[users]]
username = "qa-lead"
password = "an0ther"
tenant = "DEFAULT"
roles = ["ROLE_ROLLOUT_ADMIN"]
"#,
            )
            .unwrap();
        let ops = users.authenticate("ops", "s3cret").unwrap();
        assert_eq!(ops.tenant.as_str(), "DEFAULT");
        assert!(ops.has(Permission::READ_TARGET));
        assert!(!ops.has(Permission::DELETE_TARGET));
        assert!(users.authenticate("ops", "wrong").is_none());
        let qa = users.authenticate("qa-lead", "an0ther").unwrap();
        assert!(qa.has(Permission::APPROVE_ROLLOUT));
        assert!(!qa.has(Permission::READ_TARGET));

        let err = Users::default()
            .load_str("[[users]]\nusername = \"x\"\npassword = \"p\"\ntenant = \"T\"\npermissions = [\"FLY\"]\n")
            .unwrap_err();
        assert!(err.contains("line 5") && err.contains("FLY"), "{err}");
        let err = Users::default()
            .load_str("[[users]]\nusername = 3\n")
            .unwrap_err();
        assert!(err.starts_with("line 2"), "{err}");
    }
}
