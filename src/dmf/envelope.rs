//! The DMF envelope (§2): which headers and properties a message must carry, and how bodies are
//! read and written. [`decode`] turns a transport-neutral [`RawMessage`] into a typed
//! [`Inbound`] or a [`DecodeError`] naming the reason (which becomes the dead-letter header);
//! the `encode_*` functions build [`Outbound`] messages with hawkBit's exact headers and
//! properties.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::inbound::{ActionUpdateStatus, AttributeUpdate, AutoConfirm, ThingCreated};
use super::outbound::{ActionRequest, BatchDownloadRequest, DownloadRequest, MultiActionElement};
use super::{
    CONTENT_ENCODING_UTF8, CONTENT_TYPE_JSON, CONTENT_TYPE_TEXT, header, msg_type, topic, type_id,
};

/// An inbound message as the transport delivered it, headers already converted to text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawMessage {
    pub headers: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub body: Vec<u8>,
}

/// A decoded inbound message. `tenant` is the header as sent (non-empty); the engine
/// canonicalises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    ThingCreated {
        tenant: String,
        thing_id: String,
        reply_to: String,
        body: Option<ThingCreated>,
    },
    ThingRemoved {
        tenant: String,
        thing_id: String,
    },
    UpdateAttributes {
        tenant: String,
        thing_id: String,
        body: AttributeUpdate,
    },
    UpdateActionStatus {
        tenant: String,
        /// Not required on status reports (the reference clients do not send it).
        thing_id: Option<String>,
        correlation_id: Option<String>,
        body: ActionUpdateStatus,
    },
    UpdateAutoConfirm {
        tenant: String,
        thing_id: String,
        body: AutoConfirm,
    },
    Ping {
        tenant: String,
        correlation_id: Option<String>,
        reply_to: Option<String>,
    },
}

impl Inbound {
    pub fn tenant(&self) -> &str {
        match self {
            Self::ThingCreated { tenant, .. }
            | Self::ThingRemoved { tenant, .. }
            | Self::UpdateAttributes { tenant, .. }
            | Self::UpdateActionStatus { tenant, .. }
            | Self::UpdateAutoConfirm { tenant, .. }
            | Self::Ping { tenant, .. } => tenant,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ThingCreated { .. } => "THING_CREATED",
            Self::ThingRemoved { .. } => "THING_REMOVED",
            Self::UpdateAttributes { .. } => "UPDATE_ATTRIBUTES",
            Self::UpdateActionStatus { .. } => "UPDATE_ACTION_STATUS",
            Self::UpdateAutoConfirm { .. } => "UPDATE_AUTO_CONFIRM",
            Self::Ping { .. } => "PING",
        }
    }
}

/// Why an inbound message cannot be processed. Every variant is permanent: the message is
/// dead-lettered with `to_string()` as its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("missing header: {0}")]
    MissingHeader(&'static str),
    #[error("unknown type: {0:?}")]
    UnknownType(String),
    #[error("unknown topic: {0:?}")]
    UnknownTopic(String),
    #[error("topic {0} is not accepted inbound")]
    OutboundTopic(String),
    #[error("wrong content type: {0:?} (must contain \"json\")")]
    ContentType(String),
    #[error("missing property: reply_to")]
    MissingReplyTo,
    #[error("empty body")]
    EmptyBody,
    #[error("body of {0} bytes exceeds the limit of {1} bytes")]
    Oversized(usize, usize),
    #[error("invalid JSON: {0}")]
    Json(String),
}

fn required<'a>(raw: &'a RawMessage, name: &'static str) -> Result<&'a str, DecodeError> {
    match raw.headers.get(name).map(|s| s.trim()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(DecodeError::MissingHeader(name)),
    }
}

/// Parse a required JSON body, after checking the content type says JSON. Serde rejects
/// trailing garbage, unknown enum values and missing required members; the error text (one
/// line) is the dead-letter reason.
fn json_body<T: DeserializeOwned>(raw: &RawMessage) -> Result<T, DecodeError> {
    match raw.content_type.as_deref() {
        Some(ct) if ct.to_ascii_lowercase().contains("json") => {}
        other => {
            return Err(DecodeError::ContentType(
                other.unwrap_or("application/octet-stream").to_owned(),
            ));
        }
    }
    let body = raw.body.as_slice();
    if body.is_empty() {
        return Err(DecodeError::EmptyBody);
    }
    // Every inbound body is an object; serde would also read a struct from an array.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(DecodeError::Json("body is not a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))
}

/// An empty body or the JSON empty string `""` means "no body" (§3.1).
fn is_no_body(body: &[u8]) -> bool {
    let trimmed = body.trim_ascii();
    trimmed.is_empty() || trimmed == b"\"\""
}

/// Decode an inbound message per §2–§3 and §6. `max_body` bounds the body size in bytes.
pub fn decode(raw: &RawMessage, max_body: usize) -> Result<Inbound, DecodeError> {
    let kind = required(raw, header::TYPE)?;
    // Order matters for the reason reported: type, then tenant (§5.4 step 1).
    let kind = match kind {
        msg_type::THING_CREATED | msg_type::THING_REMOVED | msg_type::EVENT | msg_type::PING => {
            kind
        }
        other => return Err(DecodeError::UnknownType(other.to_owned())),
    };
    let tenant = required(raw, header::TENANT)?.to_owned();
    if raw.body.len() > max_body {
        return Err(DecodeError::Oversized(raw.body.len(), max_body));
    }
    let thing_id = || required(raw, header::THING_ID).map(str::to_owned);
    Ok(match kind {
        msg_type::THING_CREATED => {
            let thing_id = raw
                .headers
                .get(header::THING_ID)
                .cloned()
                .ok_or(DecodeError::MissingHeader(header::THING_ID))?;
            let reply_to = match raw.reply_to.as_deref() {
                Some(r) if !r.is_empty() => r.to_owned(),
                _ => return Err(DecodeError::MissingReplyTo),
            };
            let body = if is_no_body(&raw.body) {
                None
            } else {
                Some(json_body(raw)?)
            };
            Inbound::ThingCreated {
                tenant,
                thing_id,
                reply_to,
                body,
            }
        }
        msg_type::THING_REMOVED => Inbound::ThingRemoved {
            tenant,
            thing_id: thing_id()?,
        },
        msg_type::PING => Inbound::Ping {
            tenant,
            correlation_id: raw.correlation_id.clone().filter(|c| !c.is_empty()),
            reply_to: raw.reply_to.clone().filter(|r| !r.is_empty()),
        },
        _ => {
            let topic = required(raw, header::TOPIC)?;
            match topic {
                topic::UPDATE_ACTION_STATUS => Inbound::UpdateActionStatus {
                    tenant,
                    thing_id: raw
                        .headers
                        .get(header::THING_ID)
                        .filter(|t| !t.is_empty())
                        .cloned(),
                    correlation_id: raw.correlation_id.clone().filter(|c| !c.is_empty()),
                    body: json_body(raw)?,
                },
                topic::UPDATE_ATTRIBUTES => Inbound::UpdateAttributes {
                    tenant,
                    // Fields evaluate in order: a missing thingId is reported before the body.
                    thing_id: thing_id()?,
                    body: json_body(raw)?,
                },
                topic::UPDATE_AUTO_CONFIRM => Inbound::UpdateAutoConfirm {
                    tenant,
                    thing_id: thing_id()?,
                    body: json_body(raw)?,
                },
                topic::DOWNLOAD_AND_INSTALL
                | topic::DOWNLOAD
                | topic::CONFIRM
                | topic::CANCEL_DOWNLOAD
                | topic::BATCH_DOWNLOAD_AND_INSTALL
                | topic::BATCH_DOWNLOAD
                | topic::MULTI_ACTION
                | topic::REQUEST_ATTRIBUTES_UPDATE => {
                    return Err(DecodeError::OutboundTopic(topic.to_owned()));
                }
                other => return Err(DecodeError::UnknownTopic(other.to_owned())),
            }
        }
    })
}

/// A message ready for the broker: exchange, headers in order, properties and body bytes.
/// Publishing adds `delivery_mode=2` and `priority=0` to every message (§2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Outbound {
    pub exchange: String,
    pub headers: Vec<(String, String)>,
    pub content_type: String,
    pub content_encoding: Option<String>,
    pub correlation_id: String,
    pub body: Vec<u8>,
}

impl Outbound {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn new_correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising our own plain structs cannot fail (no maps with non-string keys).
    serde_json::to_vec(value).unwrap_or_default()
}

fn event(
    exchange: &str,
    tenant: &str,
    thing_id: Option<&str>,
    topic: &str,
    type_id: Option<&str>,
    body: Vec<u8>,
) -> Outbound {
    let mut headers = vec![
        (header::TYPE.to_owned(), msg_type::EVENT.to_owned()),
        (header::TENANT.to_owned(), tenant.to_owned()),
    ];
    if let Some(thing) = thing_id {
        headers.push((header::THING_ID.to_owned(), thing.to_owned()));
    }
    headers.push((header::TOPIC.to_owned(), topic.to_owned()));
    headers.push((
        header::CONTENT_TYPE.to_owned(),
        CONTENT_TYPE_JSON.to_owned(),
    ));
    let content_encoding = type_id.map(|t| {
        headers.push((header::TYPE_ID.to_owned(), t.to_owned()));
        CONTENT_ENCODING_UTF8.to_owned()
    });
    Outbound {
        exchange: exchange.to_owned(),
        headers,
        content_type: CONTENT_TYPE_JSON.to_owned(),
        content_encoding,
        correlation_id: new_correlation_id(),
        body,
    }
}

/// The deployment topics of §5.2 for a single action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentTopic {
    DownloadAndInstall,
    Download,
    Confirm,
}

impl DeploymentTopic {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DownloadAndInstall => topic::DOWNLOAD_AND_INSTALL,
            Self::Download => topic::DOWNLOAD,
            Self::Confirm => topic::CONFIRM,
        }
    }
}

/// EVENT DOWNLOAD_AND_INSTALL / DOWNLOAD / CONFIRM (§4.1, §4.2).
pub fn encode_deployment(
    exchange: &str,
    tenant: &str,
    thing_id: &str,
    topic: DeploymentTopic,
    request: &DownloadRequest,
) -> Outbound {
    let type_id = match topic {
        DeploymentTopic::Confirm => type_id::CONFIRM,
        _ => type_id::DOWNLOAD_AND_UPDATE,
    };
    event(
        exchange,
        tenant,
        Some(thing_id),
        topic.as_str(),
        Some(type_id),
        json(request),
    )
}

/// EVENT CANCEL_DOWNLOAD (§4.3): body exactly `{"actionId":n}`.
pub fn encode_cancel(exchange: &str, tenant: &str, thing_id: &str, action_id: i64) -> Outbound {
    event(
        exchange,
        tenant,
        Some(thing_id),
        topic::CANCEL_DOWNLOAD,
        Some(type_id::ACTION),
        json(&ActionRequest { action_id }),
    )
}

/// EVENT BATCH_DOWNLOAD_AND_INSTALL / BATCH_DOWNLOAD (§4.4): no thingId header.
pub fn encode_batch(
    exchange: &str,
    tenant: &str,
    download_only: bool,
    request: &BatchDownloadRequest,
) -> Outbound {
    let topic = if download_only {
        topic::BATCH_DOWNLOAD
    } else {
        topic::BATCH_DOWNLOAD_AND_INSTALL
    };
    event(
        exchange,
        tenant,
        None,
        topic,
        Some(type_id::BATCH),
        json(request),
    )
}

/// EVENT MULTI_ACTION (§4.5): the device's open actions by weight.
pub fn encode_multi_action(
    exchange: &str,
    tenant: &str,
    thing_id: &str,
    actions: &[MultiActionElement],
) -> Outbound {
    event(
        exchange,
        tenant,
        Some(thing_id),
        topic::MULTI_ACTION,
        Some(type_id::MULTI_ACTION),
        json(actions),
    )
}

/// EVENT REQUEST_ATTRIBUTES_UPDATE (§4.6): empty body, no content encoding, no `__TypeId__`.
pub fn encode_request_attributes(exchange: &str, tenant: &str, thing_id: &str) -> Outbound {
    event(
        exchange,
        tenant,
        Some(thing_id),
        topic::REQUEST_ATTRIBUTES_UPDATE,
        None,
        Vec::new(),
    )
}

/// THING_DELETED (§4.7): no topic, empty body.
pub fn encode_thing_deleted(exchange: &str, tenant: &str, thing_id: &str) -> Outbound {
    Outbound {
        exchange: exchange.to_owned(),
        headers: vec![
            (header::TYPE.to_owned(), msg_type::THING_DELETED.to_owned()),
            (header::TENANT.to_owned(), tenant.to_owned()),
            (header::THING_ID.to_owned(), thing_id.to_owned()),
            (
                header::CONTENT_TYPE.to_owned(),
                CONTENT_TYPE_JSON.to_owned(),
            ),
        ],
        content_type: CONTENT_TYPE_JSON.to_owned(),
        content_encoding: None,
        correlation_id: new_correlation_id(),
        body: Vec::new(),
    }
}

/// PING_RESPONSE (§4.8): echoes tenant and correlation id; body = server time in epoch ms.
pub fn encode_ping_response(
    exchange: &str,
    tenant: &str,
    correlation_id: &str,
    now_ms: i64,
) -> Outbound {
    Outbound {
        exchange: exchange.to_owned(),
        headers: vec![
            (header::TYPE.to_owned(), msg_type::PING_RESPONSE.to_owned()),
            (header::TENANT.to_owned(), tenant.to_owned()),
        ],
        content_type: CONTENT_TYPE_TEXT.to_owned(),
        content_encoding: None,
        correlation_id: correlation_id.to_owned(),
        body: now_ms.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dmf::inbound::ReportStatus;
    use proptest::prelude::*;

    fn msg(headers: &[(&str, &str)], ct: Option<&str>, body: &str) -> RawMessage {
        RawMessage {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_type: ct.map(str::to_string),
            correlation_id: None,
            reply_to: Some("sdk.replyTo".into()),
            body: body.as_bytes().to_vec(),
        }
    }

    const MAX: usize = 1 << 20;

    #[test]
    fn thing_created_with_empty_or_empty_string_body_has_no_body() {
        for body in ["", "\"\""] {
            let m = msg(
                &[
                    ("type", "THING_CREATED"),
                    ("tenant", "DEFAULT"),
                    ("thingId", "d1"),
                ],
                None,
                body,
            );
            let Inbound::ThingCreated { body, reply_to, .. } = decode(&m, MAX).unwrap() else {
                panic!("wrong variant")
            };
            assert_eq!(body, None);
            assert_eq!(reply_to, "sdk.replyTo");
        }
    }

    #[test]
    fn thing_created_with_a_body_needs_a_json_content_type() {
        let h = [
            ("type", "THING_CREATED"),
            ("tenant", "DEFAULT"),
            ("thingId", "d1"),
        ];
        let ok = msg(&h, Some("application/json"), r#"{"name":"n"}"#);
        assert!(decode(&ok, MAX).is_ok());
        let bad = msg(&h, Some("text/plain"), r#"{"name":"n"}"#);
        assert!(matches!(
            decode(&bad, MAX),
            Err(DecodeError::ContentType(_))
        ));
        let garbage = msg(&h, Some("application/json"), "Not allowed Body");
        assert!(matches!(decode(&garbage, MAX), Err(DecodeError::Json(_))));
    }

    #[test]
    fn missing_or_empty_headers_are_named() {
        let cases = [
            (vec![("tenant", "DEFAULT")], "missing header: type"),
            (
                vec![("type", ""), ("tenant", "DEFAULT")],
                "missing header: type",
            ),
            (
                vec![("type", "NotExist"), ("tenant", "DEFAULT")],
                "unknown type: \"NotExist\"",
            ),
            (vec![("type", "THING_CREATED")], "missing header: tenant"),
            (
                vec![("type", "THING_CREATED"), ("tenant", " ")],
                "missing header: tenant",
            ),
            (
                vec![("type", "THING_CREATED"), ("tenant", "DEFAULT")],
                "missing header: thingId",
            ),
            (
                vec![("type", "EVENT"), ("tenant", "DEFAULT")],
                "missing header: topic",
            ),
            (
                vec![
                    ("type", "EVENT"),
                    ("tenant", "DEFAULT"),
                    ("topic", "NotExist"),
                ],
                "unknown topic: \"NotExist\"",
            ),
            (
                vec![
                    ("type", "EVENT"),
                    ("tenant", "DEFAULT"),
                    ("topic", "CANCEL_DOWNLOAD"),
                ],
                "topic CANCEL_DOWNLOAD is not accepted inbound",
            ),
            (
                vec![("type", "THING_DELETED"), ("tenant", "DEFAULT")],
                "unknown type: \"THING_DELETED\"",
            ),
            (
                vec![("type", "PING_RESPONSE"), ("tenant", "DEFAULT")],
                "unknown type: \"PING_RESPONSE\"",
            ),
        ];
        for (headers, reason) in cases {
            let m = msg(&headers, Some("application/json"), "{}");
            assert_eq!(decode(&m, MAX).unwrap_err().to_string(), reason);
        }
    }

    #[test]
    fn status_updates_need_json_body_and_accept_lenient_numbers() {
        let h = [
            ("type", "EVENT"),
            ("tenant", "DEFAULT"),
            ("topic", "UPDATE_ACTION_STATUS"),
        ];
        for bad in [
            "",
            "\"\"",
            "\"Invalid Content\"",
            r#"{"actionId":1}"#,
            r#"{"actionId":null,"actionStatus":"RUNNING"}"#,
            r#"{"actionId":1,"actionStatus":"FINISH"}"#,
            r#"{"actionId":1,"actionStatus":"RUNNING"} x"#,
        ] {
            assert!(
                decode(&msg(&h, Some("application/json"), bad), MAX).is_err(),
                "{bad}"
            );
        }
        assert!(matches!(
            decode(
                &msg(&h, None, r#"{"actionId":1,"actionStatus":"RUNNING"}"#),
                MAX
            ),
            Err(DecodeError::ContentType(_))
        ));
        let m = msg(
            &h,
            Some("application/json"),
            r#"{"actionId":"137","actionStatus":"RUNNING","message":"one","code":"5"}"#,
        );
        let Inbound::UpdateActionStatus { body, thing_id, .. } = decode(&m, MAX).unwrap() else {
            panic!("wrong variant")
        };
        assert_eq!(body.action_id, 137);
        assert_eq!(body.action_status, ReportStatus::Running);
        assert_eq!(body.message, vec!["one".to_string()]);
        assert_eq!(body.code, Some(5));
        assert_eq!(thing_id, None);
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let h = [
            ("type", "EVENT"),
            ("tenant", "DEFAULT"),
            ("topic", "UPDATE_ACTION_STATUS"),
        ];
        let m = msg(&h, Some("application/json"), &"x".repeat(100));
        assert_eq!(decode(&m, 10), Err(DecodeError::Oversized(100, 10)));
    }

    #[test]
    fn cancel_download_is_compact_with_action_id_first() {
        let o = encode_cancel("sdk.replyTo", "DEFAULT", "d1", 137);
        assert_eq!(o.body, br#"{"actionId":137}"#);
        assert_eq!(o.content_type, "application/json");
        assert_eq!(o.content_encoding.as_deref(), Some("UTF-8"));
        assert_eq!(o.header("type"), Some("EVENT"));
        assert_eq!(o.header("topic"), Some("CANCEL_DOWNLOAD"));
        assert_eq!(o.header("thingId"), Some("d1"));
        assert_eq!(o.header("content-type"), Some("application/json"));
        assert_eq!(o.header("__TypeId__"), Some(type_id::ACTION));
        assert_eq!(o.correlation_id.len(), 36);
    }

    #[test]
    fn request_attributes_and_thing_deleted_have_empty_bodies_and_no_encoding() {
        let r = encode_request_attributes("x", "DEFAULT", "d1");
        assert!(r.body.is_empty());
        assert_eq!(r.content_encoding, None);
        assert_eq!(r.header("__TypeId__"), None);
        let d = encode_thing_deleted("x", "DEFAULT", "d1");
        assert_eq!(d.header("type"), Some("THING_DELETED"));
        assert_eq!(d.header("topic"), None);
        assert!(d.body.is_empty());
    }

    #[test]
    fn ping_response_echoes_and_is_plain_text() {
        let p = encode_ping_response("r", "default", "corr-1", 1704070800123);
        assert_eq!(p.header("tenant"), Some("default"));
        assert_eq!(p.header("content-type"), None);
        assert_eq!(p.content_type, "text/plain");
        assert_eq!(p.correlation_id, "corr-1");
        assert_eq!(p.body, b"1704070800123");
    }

    proptest! {
        /// No byte sequence and no header combination makes the decoder panic.
        #[test]
        fn decode_never_panics(
            kind in prop::sample::select(vec!["THING_CREATED", "THING_REMOVED", "EVENT", "PING", "", "X"]),
            topic in prop::sample::select(vec!["UPDATE_ACTION_STATUS", "UPDATE_ATTRIBUTES", "UPDATE_AUTO_CONFIRM", "DOWNLOAD", ""]),
            body in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let m = RawMessage {
                headers: [("type", kind), ("tenant", "T"), ("topic", topic), ("thingId", "d")]
                    .iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                content_type: Some("application/json".into()),
                correlation_id: None,
                reply_to: Some("r".into()),
                body,
            };
            let _ = decode(&m, MAX);
        }

        /// Every status report we can encode decodes back to the same value.
        #[test]
        fn status_reports_round_trip(
            id in any::<i64>(),
            st in prop::sample::select(ReportStatus::ALL.to_vec()),
            msgs in prop::collection::vec("[a-z ]{0,20}", 0..3),
            code in proptest::option::of(any::<i32>()),
        ) {
            let body = ActionUpdateStatus { action_id: id, action_status: st, message: msgs, code, software_module_id: None, timestamp: None };
            let m = RawMessage {
                headers: [("type", "EVENT"), ("tenant", "T"), ("topic", "UPDATE_ACTION_STATUS")]
                    .iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                content_type: Some("application/json".into()),
                body: serde_json::to_vec(&body).unwrap(),
                ..RawMessage::default()
            };
            let Inbound::UpdateActionStatus { body: back, .. } = decode(&m, MAX).unwrap() else { panic!() };
            prop_assert_eq!(back, body);
        }
    }
}
