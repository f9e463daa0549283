//! The DMF wire protocol (`../shared/spec/dmf-protocol.md`): serde types that mirror
//! `amqp-schemas/` one to one, the header/type/topic constants, and the envelope codec that
//! turns an AMQP delivery into a typed [`envelope::Inbound`] message or an outbound message into
//! AMQP headers, properties and bytes.
//!
//! This module holds no logic beyond parsing and encoding: it never touches the database or the
//! broker, and it knows nothing about targets or actions beyond their wire shapes. Where a wire
//! value is a domain value as it is (`actionStatus`), the body carries the domain type.

pub mod envelope;
pub mod inbound;
pub mod lenient;
pub mod outbound;

/// Header names (case-sensitive on the wire).
pub mod header {
    pub const TYPE: &str = "type";
    pub const TENANT: &str = "tenant";
    pub const THING_ID: &str = "thingId";
    pub const TOPIC: &str = "topic";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const TYPE_ID: &str = "__TypeId__";
    /// Added by us to a dead-lettered message: the one-line reason.
    pub const DEAD_LETTER_REASON: &str = "x-dmf-error";
}

/// Values of the `type` header.
pub mod msg_type {
    pub const THING_CREATED: &str = "THING_CREATED";
    pub const THING_REMOVED: &str = "THING_REMOVED";
    pub const EVENT: &str = "EVENT";
    pub const PING: &str = "PING";
    pub const THING_DELETED: &str = "THING_DELETED";
    pub const PING_RESPONSE: &str = "PING_RESPONSE";
}

/// Values of the `topic` header.
pub mod topic {
    pub const UPDATE_ACTION_STATUS: &str = "UPDATE_ACTION_STATUS";
    pub const UPDATE_ATTRIBUTES: &str = "UPDATE_ATTRIBUTES";
    pub const UPDATE_AUTO_CONFIRM: &str = "UPDATE_AUTO_CONFIRM";
    pub const DOWNLOAD_AND_INSTALL: &str = "DOWNLOAD_AND_INSTALL";
    pub const DOWNLOAD: &str = "DOWNLOAD";
    pub const CONFIRM: &str = "CONFIRM";
    pub const CANCEL_DOWNLOAD: &str = "CANCEL_DOWNLOAD";
    pub const BATCH_DOWNLOAD_AND_INSTALL: &str = "BATCH_DOWNLOAD_AND_INSTALL";
    pub const BATCH_DOWNLOAD: &str = "BATCH_DOWNLOAD";
    pub const MULTI_ACTION: &str = "MULTI_ACTION";
    pub const REQUEST_ATTRIBUTES_UPDATE: &str = "REQUEST_ATTRIBUTES_UPDATE";
}

/// `__TypeId__` values hawkBit's JSON converter writes (§2.2); emitted for byte parity.
pub mod type_id {
    pub const DOWNLOAD_AND_UPDATE: &str =
        "org.eclipse.hawkbit.dmf.json.model.DmfDownloadAndUpdateRequest";
    pub const CONFIRM: &str = "org.eclipse.hawkbit.dmf.json.model.DmfConfirmRequest";
    pub const ACTION: &str = "org.eclipse.hawkbit.dmf.json.model.DmfActionRequest";
    pub const BATCH: &str = "org.eclipse.hawkbit.dmf.json.model.DmfBatchDownloadAndUpdateRequest";
    pub const MULTI_ACTION: &str = "org.eclipse.hawkbit.dmf.json.model.DmfMultiActionRequest";
}

pub const CONTENT_TYPE_JSON: &str = "application/json";
pub const CONTENT_TYPE_TEXT: &str = "text/plain";
pub const CONTENT_ENCODING_UTF8: &str = "UTF-8";
