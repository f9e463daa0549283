//! Bodies of the messages connectors send us (§3). Field names follow the wire, not Rust habits.
//! Each type mirrors one schema in `amqp-schemas/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lenient;
/// `actionStatus`: the domain's report status, whose serde form is the wire spelling (§3.4).
pub use crate::domain::action::ReportStatus;

/// THING_CREATED body (`thing-created.schema.json`). Every member is optional.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThingCreated {
    #[serde(default)]
    pub name: Option<String>,
    /// Name of a target type; `""` removes the type of an existing target.
    #[serde(default, rename = "type")]
    pub target_type: Option<String>,
    #[serde(default)]
    pub attribute_update: Option<AttributeUpdate>,
}

/// UPDATE_ATTRIBUTES body (`update-attributes.schema.json`), also embedded in THING_CREATED.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeUpdate {
    /// Key → value; a `null` value removes the key in MERGE mode.
    #[serde(default)]
    pub attributes: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub mode: Option<AttributeMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AttributeMode {
    Merge,
    Replace,
    Remove,
}

/// UPDATE_ACTION_STATUS body (`update-action-status.schema.json`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionUpdateStatus {
    #[serde(deserialize_with = "lenient::i64_req")]
    pub action_id: i64,
    pub action_status: ReportStatus,
    /// Absent is empty (hawkBit crashes on that, §8.1; we do not).
    #[serde(
        default,
        deserialize_with = "lenient::strings",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub message: Vec<String>,
    #[serde(default, deserialize_with = "lenient::i32_opt")]
    pub code: Option<i32>,
    /// Accepted and ignored, as hawkBit does.
    #[serde(default, deserialize_with = "lenient::i64_opt")]
    pub software_module_id: Option<i64>,
    /// Device time; accepted and ignored (history uses server time).
    #[serde(default, deserialize_with = "lenient::i64_opt")]
    pub timestamp: Option<i64>,
}

/// UPDATE_AUTO_CONFIRM body (`update-auto-confirm.schema.json`). `enabled` is required.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoConfirm {
    pub enabled: bool,
    #[serde(default)]
    pub initiator: Option<String>,
    #[serde(default)]
    pub remark: Option<String>,
}
