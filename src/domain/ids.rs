//! Identifier newtypes. Validated strings are only constructed through `parse`.

use std::fmt;

use super::Invalid;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Database id of a tenant.
    TenantId
);
id_type!(
    /// Database id of a target (not its controllerId).
    TargetId
);
id_type!(
    /// Action id, unique across tenants; devices echo it in status reports.
    ActionId
);
id_type!(
    /// Distribution set id.
    DsId
);
id_type!(
    /// Rollout id, unique across tenants.
    RolloutId
);
id_type!(
    /// Deployment group id, unique across rollouts.
    GroupId
);

/// A tenant name in its canonical upper-case form (names compare case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantName(String);

impl TenantName {
    pub const DEFAULT: &'static str = "DEFAULT";

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid::new("tenant is empty"));
        }
        if name.chars().count() > 40 {
            return Err(Invalid::new("tenant is longer than 40 characters"));
        }
        if name.chars().any(|c| c.is_control()) {
            return Err(Invalid::new("tenant contains control characters"));
        }
        Ok(Self(name.to_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A target's business key (`thingId` on the wire): 1..256 characters, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ControllerId(String);

impl ControllerId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid::new("controllerId is empty"));
        }
        if raw.chars().count() > 256 {
            return Err(Invalid::new("controllerId is longer than 256 characters"));
        }
        if raw.chars().any(char::is_whitespace) {
            return Err(Invalid::new(format!(
                "controllerId {raw:?} contains whitespace"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ControllerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_canonical_upper_case() {
        assert_eq!(TenantName::parse("default").unwrap().as_str(), "DEFAULT");
        assert_eq!(TenantName::parse(" Fleet-a ").unwrap().as_str(), "FLEET-A");
        assert!(TenantName::parse("").is_err());
        assert!(TenantName::parse("   ").is_err());
        assert!(TenantName::parse(&"x".repeat(41)).is_err());
    }

    #[test]
    fn controller_ids_reject_empty_whitespace_and_overlong() {
        assert!(ControllerId::parse("device-0042").is_ok());
        assert!(ControllerId::parse("").is_err());
        assert!(ControllerId::parse("Invalid Invalid").is_err());
        assert!(ControllerId::parse("tab\there").is_err());
        assert!(ControllerId::parse(&"a".repeat(256)).is_ok());
        assert!(ControllerId::parse(&"a".repeat(257)).is_err());
    }
}
