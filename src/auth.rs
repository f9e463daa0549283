//! Users, tenants and permissions of the Management API: the bootstrap admin plus the users file
//! (`DMF_USERS_FILE`, service.md). Permission and role names are hawkBit's.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
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
    HANDLE_AUTO_ASSIGNMENT,
    APPROVE_AUTO_ASSIGNMENT,
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
    credential: Credential,
}

/// How an account's password is checked.
enum Credential {
    /// SHA-256 of a plain password: comparing digests keeps the comparison length-independent.
    Plain([u8; 32]),
    /// An argon2 PHC or bcrypt string, validated at load.
    Hashed {
        scheme: HashScheme,
        hash: String,
        /// SHA-256 of the password that last verified: argon2 costs tens of milliseconds, too
        /// much to pay on every request of a busy API client.
        verified: Mutex<Option<[u8; 32]>>,
    },
}

#[derive(Debug, Clone, Copy)]
enum HashScheme {
    Argon2,
    Bcrypt,
}

impl std::fmt::Debug for Credential {
    // Never prints the digest or the hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Plain(_) => f.write_str("Plain(..)"),
            Credential::Hashed { scheme, .. } => write!(f, "Hashed({scheme:?})"),
        }
    }
}

fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    // Constant-time comparison.
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Credential {
    /// Parse a `password_hash` value: argon2 PHC (`$argon2id$...`) or bcrypt (`$2b$`, `$2a$`,
    /// `$2y$`).
    fn from_hash(hash: &str) -> Result<Self, String> {
        let scheme = if hash.starts_with("$argon2") {
            let parsed =
                PasswordHash::new(hash).map_err(|e| format!("invalid argon2 hash: {e}"))?;
            argon2::Algorithm::try_from(parsed.algorithm)
                .map_err(|e| format!("invalid argon2 hash: {e}"))?;
            argon2::Params::try_from(&parsed).map_err(|e| format!("invalid argon2 hash: {e}"))?;
            if let Some(v) = parsed.version {
                argon2::Version::try_from(v).map_err(|e| format!("invalid argon2 hash: {e}"))?;
            }
            if parsed.salt.is_none() || parsed.hash.is_none() {
                return Err("invalid argon2 hash: salt or hash missing".into());
            }
            HashScheme::Argon2
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            let parts: bcrypt::HashParts = hash
                .parse()
                .map_err(|e| format!("invalid bcrypt hash: {e}"))?;
            // bcrypt refuses to verify outside 4..=31; refuse at load instead.
            if !(4..=31).contains(&parts.get_cost()) {
                return Err(format!("invalid bcrypt hash: cost {}", parts.get_cost()));
            }
            HashScheme::Bcrypt
        } else {
            return Err("not an argon2 ($argon2id$...) or bcrypt ($2b$...) hash".into());
        };
        Ok(Credential::Hashed {
            scheme,
            hash: hash.to_owned(),
            verified: Mutex::new(None),
        })
    }

    /// The answer when it is cheap: a plain password, or a hashed one that verified before.
    /// `None` means the slow hash verification is needed.
    fn check_fast(&self, given: &[u8; 32]) -> Option<bool> {
        match self {
            Credential::Plain(d) => Some(digests_equal(given, d)),
            Credential::Hashed { verified, .. } => {
                let cached = *verified.lock().unwrap_or_else(|e| e.into_inner());
                cached.filter(|d| digests_equal(given, d)).map(|_| true)
            }
        }
    }

    /// Full check; a successful hash verification is remembered.
    fn check(&self, password: &str) -> bool {
        let given = digest(password);
        if let Some(ok) = self.check_fast(&given) {
            return ok;
        }
        let Credential::Hashed {
            scheme,
            hash,
            verified,
        } = self
        else {
            return false;
        };
        let ok = match scheme {
            HashScheme::Argon2 => PasswordHash::new(hash).is_ok_and(|h| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            }),
            HashScheme::Bcrypt => bcrypt::verify(password, hash).unwrap_or(false),
        };
        if ok {
            *verified.lock().unwrap_or_else(|e| e.into_inner()) = Some(given);
        }
        ok
    }
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
                credential: Credential::Plain(digest(password.expose_secret())),
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
            let credential = match (entry.password, entry.password_hash) {
                (Some(p), None) => Credential::Plain(digest(&p)),
                (None, Some(h)) => Credential::from_hash(&h).map_err(|e| {
                    format!(
                        "{}user {:?}: password_hash: {e}",
                        line_of(&h),
                        entry.username
                    )
                })?,
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
                    credential,
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

    /// Check a username and password. May run a slow hash verification on this thread; async
    /// callers use [`Users::authenticate_async`].
    pub fn authenticate(&self, username: &str, password: &str) -> Option<&User> {
        let account = self.accounts.get(username)?;
        account.credential.check(password).then_some(&account.user)
    }

    /// [`Users::authenticate`] that runs a slow hash verification on the blocking pool, so a
    /// burst of logins does not stall the request workers.
    pub async fn authenticate_async(
        self: &Arc<Self>,
        username: &str,
        password: &str,
    ) -> Option<User> {
        let account = self.accounts.get(username)?;
        if let Some(ok) = account.credential.check_fast(&digest(password)) {
            return ok.then(|| account.user.clone());
        }
        let users = self.clone();
        let (username, password) = (username.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || users.authenticate(&username, &password).cloned())
            .await
            .ok()
            .flatten()
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

    fn argon2_hash(password: &str) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        // Small parameters keep the test fast; verification reads them from the string.
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        argon
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn users_file(entries: &[(&str, &str)]) -> String {
        entries
            .iter()
            .map(|(name, secret)| {
                format!(
                    "[[users]]\nusername = \"{name}\"\n{secret}\ntenant = \"DEFAULT\"\npermissions = [\"READ_TARGET\"]\n"
                )
            })
            .collect()
    }

    #[test]
    fn password_hashes_verify_and_are_cached() {
        let argon = argon2_hash("s3cret");
        assert!(argon.starts_with("$argon2id$"), "{argon}");
        let bcrypt_hash = bcrypt::hash("an0ther", 4).unwrap();
        let mut users = Users::default();
        users
            .load_str(&users_file(&[
                ("ops", &format!("password_hash = '{argon}'")),
                ("qa", &format!("password_hash = '{bcrypt_hash}'")),
            ]))
            .unwrap();
        assert!(users.authenticate("ops", "wrong").is_none());
        assert!(users.authenticate("ops", "s3cret").is_some());
        assert!(users.authenticate("qa", "an0ther").is_some());
        assert!(users.authenticate("qa", "s3cret").is_none());

        // After one successful verification, the cheap path answers, and only for that password.
        let ops = &users.accounts["ops"].credential;
        assert_eq!(ops.check_fast(&digest("s3cret")), Some(true));
        assert_eq!(ops.check_fast(&digest("wrong")), None);
        assert!(users.authenticate("ops", "wrong").is_none());
        assert!(users.authenticate("ops", "s3cret").is_some());
    }

    #[tokio::test]
    async fn async_authentication_verifies_hashes_off_the_request_thread() {
        let mut users = Users::default();
        users
            .load_str(&users_file(&[(
                "ops",
                &format!("password_hash = '{}'", argon2_hash("pw")),
            )]))
            .unwrap();
        let users = Arc::new(users);
        assert!(users.authenticate_async("ops", "nope").await.is_none());
        assert!(users.authenticate_async("nobody", "pw").await.is_none());
        let u = users.authenticate_async("ops", "pw").await.unwrap();
        assert_eq!(u.username, "ops");
        assert!(users.authenticate_async("ops", "pw").await.is_some());
    }

    #[test]
    fn malformed_or_ambiguous_credentials_name_the_line() {
        let cost_99 = bcrypt::hash("x", 4).unwrap().replacen("$04$", "$99$", 1);
        for bad in [
            "$argon2id$v=19$m=1024,t=1,p=1$notbase64!!$xx",
            "$2b$04$tooshort",
            &cost_99,
            "$1$md5crypt$abc",
            "plaintext",
        ] {
            let err = Users::default()
                .load_str(&users_file(&[("ops", &format!("password_hash = '{bad}'"))]))
                .unwrap_err();
            assert!(
                err.starts_with("line 3: ") && err.contains("password_hash"),
                "{bad}: {err}"
            );
        }
        let both = format!("password = 'x'\npassword_hash = '{}'", argon2_hash("x"));
        let err = Users::default()
            .load_str(&users_file(&[("ops", &both)]))
            .unwrap_err();
        assert!(
            err.starts_with("line 2: ") && err.contains("exactly one"),
            "{err}"
        );
        let err = Users::default()
            .load_str(&users_file(&[("ops", "")]))
            .unwrap_err();
        assert!(
            err.starts_with("line 2: ") && err.contains("exactly one"),
            "{err}"
        );
    }
}
