//! Bodies of the messages we send to connectors (§4). Member order is declaration order and is
//! part of the contract: the reference clients need `actionId` first (§2.5, §8), so never reorder
//! fields here. Each type mirrors one schema in `amqp-schemas/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// DOWNLOAD_AND_INSTALL, DOWNLOAD and CONFIRM body (`download-request.schema.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadRequest {
    pub action_id: i64,
    pub target_security_token: String,
    pub software_modules: Vec<SoftwareModule>,
}

/// CANCEL_DOWNLOAD body (`cancel-download.schema.json`): exactly `{"actionId":n}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionRequest {
    pub action_id: i64,
}

/// BATCH_DOWNLOAD_AND_INSTALL and BATCH_DOWNLOAD body (`batch-download-request.schema.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchDownloadRequest {
    pub timestamp: i64,
    pub targets: Vec<BatchTarget>,
    pub software_modules: Vec<SoftwareModule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchTarget {
    pub action_id: i64,
    pub controller_id: String,
    pub target_security_token: String,
}

/// One element of the MULTI_ACTION array (`multi-action.schema.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiActionElement {
    /// `DOWNLOAD_AND_INSTALL`, `DOWNLOAD`, `CONFIRM` or `CANCEL_DOWNLOAD`; also tells the shape of
    /// `action`.
    pub topic: String,
    pub action: MultiActionPayload,
    pub weight: i32,
}

/// The `action` member of a MULTI_ACTION element: a cancel (`{"actionId"}`) or a full
/// deployment request. Untagged: the element's `topic` is the discriminator on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MultiActionPayload {
    Deployment(DownloadRequest),
    Cancel(ActionRequest),
}

/// A software module as devices see it (§4.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SoftwareModule {
    pub module_id: i64,
    pub module_type: String,
    pub module_version: String,
    /// Written only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    pub artifacts: Vec<Artifact>,
    /// Target-visible metadata only; omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<Metadata>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    pub filename: String,
    pub hashes: Hashes,
    pub size: i64,
    /// Always present (0 if unknown): clients may reject a body without it.
    pub last_modified: i64,
    /// Protocol (`HTTPS`, `HTTP`) → URL.
    pub urls: BTreeMap<String, String>,
}

/// Both members are written even when null (§4.9); no other members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashes {
    pub sha1: Option<String>,
    pub md5: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub key: String,
    pub value: String,
}
