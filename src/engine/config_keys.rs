//! Tenant configuration keys the service knows, hawkBit's names and defaults
//! (`TenantConfigurationProperties`, `hawkbit-repository-defaults.properties`), with their types.
//!
//! Flags (booleans) are [`DEFAULTS`], which the assignment rules read; the keys with other
//! values are [`TYPED`]. hawkBit's DDI-only keys (polling, authentication) are left out.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::domain::action::ActionStatus;

pub const MULTI_ASSIGNMENTS: &str = "multi.assignments.enabled";
pub const BATCH_ASSIGNMENTS: &str = "batch.assignments.enabled";
pub const CONFIRMATION_FLOW: &str = "user.confirmation.flow.enabled";
pub const AUTOCLOSE: &str = "repository.actions.autoclose.enabled";
pub const ROLLOUT_APPROVAL: &str = "rollout.approval.enabled";
pub const IMPLICIT_LOCK: &str = "implicit.lock.enabled";
pub const AUTO_ASSIGNMENT_APPROVAL: &str = "auto.assignment.approval.enabled";
/// Age (ms since the last change) after which closed actions are cleaned up; negative: never.
pub const CLEANUP_EXPIRY: &str = "action.cleanup.auto.expiry";
/// The statuses the automatic cleanup deletes (comma- or semicolon-separated).
pub const CLEANUP_STATUS: &str = "action.cleanup.auto.status";
/// Share (%) of `maxActionsPerTarget` purged, oldest first, from a target at its quota.
pub const PURGE_ON_QUOTA_HIT: &str = "action.cleanup.onQuotaHit.percent";
/// The statuses of actions a user may delete (hawkBit master).
pub const DELETE_ALLOWED: &str = "action.delete.allowed.statuses";

/// Every flag with its default value.
pub const DEFAULTS: &[(&str, bool)] = &[
    (MULTI_ASSIGNMENTS, false),
    (BATCH_ASSIGNMENTS, false),
    (CONFIRMATION_FLOW, false),
    (AUTOCLOSE, false),
    (ROLLOUT_APPROVAL, false),
    (IMPLICIT_LOCK, true),
    (AUTO_ASSIGNMENT_APPROVAL, false),
];

/// What a key's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// hawkBit's `java.lang.Integer`.
    Integer,
    /// hawkBit's `java.lang.Long`.
    Long,
    /// A string listing action statuses (`CANCELED,ERROR`).
    Statuses,
}

/// The keys that are not flags: type and default.
pub const TYPED: &[(&str, Kind, TypedDefault)] = &[
    (CLEANUP_EXPIRY, Kind::Long, TypedDefault::Number(-1)),
    (
        CLEANUP_STATUS,
        Kind::Statuses,
        TypedDefault::Text("CANCELED,ERROR"),
    ),
    (PURGE_ON_QUOTA_HIT, Kind::Integer, TypedDefault::Number(0)),
    (
        DELETE_ALLOWED,
        Kind::Statuses,
        TypedDefault::Text("CANCELED,ERROR,FINISHED"),
    ),
];

/// A default of [`TYPED`] (a `const` cannot hold a JSON value).
#[derive(Debug, Clone, Copy)]
pub enum TypedDefault {
    Number(i64),
    Text(&'static str),
}

/// Every key the service knows, flags first.
pub fn names() -> impl Iterator<Item = &'static str> {
    DEFAULTS
        .iter()
        .map(|(k, _)| *k)
        .chain(TYPED.iter().map(|(k, _, _)| *k))
}

/// The kind of a key; `None` for a key the service does not know.
pub fn kind_of(key: &str) -> Option<Kind> {
    if DEFAULTS.iter().any(|(k, _)| *k == key) {
        return Some(Kind::Bool);
    }
    TYPED.iter().find(|(k, _, _)| *k == key).map(|(_, t, _)| *t)
}

/// The default of a flag; `None` for a key that is not one.
pub fn default_of(key: &str) -> Option<bool> {
    DEFAULTS.iter().find(|(k, _)| *k == key).map(|(_, d)| *d)
}

/// The default of any key as JSON; `None` for a key the service does not know.
pub fn default_value(key: &str) -> Option<Value> {
    if let Some(d) = default_of(key) {
        return Some(Value::Bool(d));
    }
    TYPED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, d)| match d {
            TypedDefault::Number(n) => Value::from(*n),
            TypedDefault::Text(s) => Value::from(*s),
        })
}

/// A value checked against its key's kind, as stored (status lists upper-case, `,`-joined).
/// `Err` says why it does not fit (hawkBit's `configValueInvalid`).
pub fn validate(key: &str, kind: Kind, value: &Value) -> Result<Value, String> {
    let wrong = |what: &str| format!("value of {key} must be {what}");
    match kind {
        Kind::Bool => value
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| wrong("a boolean")),
        Kind::Integer => value
            .as_i64()
            .filter(|n| i32::try_from(*n).is_ok())
            .map(Value::from)
            .ok_or_else(|| wrong("an integer")),
        Kind::Long => value
            .as_i64()
            .map(Value::from)
            .ok_or_else(|| wrong("an integer")),
        Kind::Statuses => {
            let text = value.as_str().ok_or_else(|| wrong("a string"))?;
            let statuses = parse_statuses(text)
                .map_err(|s| format!("value of {key}: {s:?} is not an action status"))?;
            let names: Vec<&str> = statuses.iter().map(|s| s.as_db()).collect();
            Ok(Value::from(names.join(",")))
        }
    }
}

/// The statuses of a list such as `CANCELED, error;FINISHED` (empty items skipped); `Err` names
/// the first item that is no status.
pub fn parse_statuses(text: &str) -> Result<Vec<ActionStatus>, String> {
    let mut out: Vec<ActionStatus> = Vec::new();
    for item in text
        .split([',', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let s = ActionStatus::from_db(&item.to_ascii_uppercase()).ok_or_else(|| item.to_owned())?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// A flag as a tenant's configuration sets it, else its default (`false` for an unknown key).
pub fn flag(cfg: &BTreeMap<String, Value>, key: &str) -> bool {
    cfg.get(key)
        .and_then(Value::as_bool)
        .unwrap_or_else(|| default_of(key).unwrap_or(false))
}

/// A number as a tenant's configuration sets it, else its default (0 for an unknown key).
pub fn number(cfg: &BTreeMap<String, Value>, key: &str) -> i64 {
    cfg.get(key)
        .and_then(Value::as_i64)
        .or_else(|| default_value(key).and_then(|v| v.as_i64()))
        .unwrap_or(0)
}

/// A status list as a tenant's configuration sets it, else its default (stored values were
/// validated; an unreadable one counts as empty).
pub fn statuses(cfg: &BTreeMap<String, Value>, key: &str) -> Vec<ActionStatus> {
    let text = cfg
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| default_value(key).and_then(|v| v.as_str().map(str::to_owned)))
        .unwrap_or_default();
    parse_statuses(&text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_lists_are_normalised_and_checked() {
        let v = validate(DELETE_ALLOWED, Kind::Statuses, &json!("canceled; ERROR,,")).unwrap();
        assert_eq!(v, json!("CANCELED,ERROR"));
        assert!(validate(DELETE_ALLOWED, Kind::Statuses, &json!("DONE")).is_err());
        assert!(validate(DELETE_ALLOWED, Kind::Statuses, &json!(3)).is_err());
    }

    #[test]
    fn numbers_have_their_range() {
        assert!(validate(PURGE_ON_QUOTA_HIT, Kind::Integer, &json!(5_000_000_000i64)).is_err());
        assert_eq!(
            validate(CLEANUP_EXPIRY, Kind::Long, &json!(5_000_000_000i64)).unwrap(),
            json!(5_000_000_000i64)
        );
        assert!(validate(CLEANUP_EXPIRY, Kind::Long, &json!("1")).is_err());
        assert!(validate(CLEANUP_EXPIRY, Kind::Long, &json!(1.5)).is_err());
    }

    #[test]
    fn defaults_apply_without_a_value() {
        let cfg = BTreeMap::new();
        assert_eq!(number(&cfg, CLEANUP_EXPIRY), -1);
        assert_eq!(
            statuses(&cfg, DELETE_ALLOWED),
            vec![
                ActionStatus::Canceled,
                ActionStatus::Error,
                ActionStatus::Finished
            ]
        );
    }
}
