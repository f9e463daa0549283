//! What the service sends a connector (dmf-protocol.md §4), read the way a device needs it:
//! which device, which action, what to do. Deployment bodies are read for their `actionId` only
//! (the simulated devices download nothing, so the module list is skipped, not built); batch,
//! multi-action and cancel bodies use the `dmf::outbound` wire types.

use serde::Deserialize;

use super::fleet::Job;
use crate::dmf::outbound::{
    ActionRequest, BatchDownloadRequest, MultiActionElement, MultiActionPayload,
};
use crate::dmf::{msg_type, topic};

/// A message for the connector, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<'a> {
    Deployment {
        thing_id: &'a str,
        action: i64,
        job: Job,
    },
    /// BATCH_DOWNLOAD_AND_INSTALL / BATCH_DOWNLOAD: (controllerId, actionId) per target.
    Batch {
        targets: Vec<(String, i64)>,
        job: Job,
    },
    /// MULTI_ACTION: the cancel entries, and the non-cancel action to work on (highest weight,
    /// then lowest id — the service's own order).
    Multi {
        thing_id: &'a str,
        cancels: Vec<i64>,
        work: Option<(i64, Job)>,
    },
    Cancel {
        thing_id: &'a str,
        action: i64,
    },
    RequestAttributes {
        thing_id: &'a str,
    },
    Deleted {
        thing_id: &'a str,
    },
    /// Nothing for a device to do (PING_RESPONSE).
    Ignored,
}

/// Why a message was not understood (the service's own reasons, with the same texts); the
/// simulator counts and drops it, never answers it.
pub use crate::dmf::envelope::DecodeError;

/// Only the member a device echoes; serde skips the rest without building it.
#[derive(Deserialize)]
struct ActionIdOnly {
    #[serde(rename = "actionId")]
    action_id: i64,
}

fn json<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))
}

fn job_of(topic: &str) -> Option<Job> {
    match topic {
        topic::DOWNLOAD_AND_INSTALL => Some(Job::Install),
        topic::DOWNLOAD => Some(Job::DownloadOnly),
        topic::CONFIRM => Some(Job::Confirm),
        _ => None,
    }
}

/// Decode from the `type`, `topic` and `thingId` headers and the body.
pub fn decode<'a>(
    msg_type: Option<&'a str>,
    topic: Option<&'a str>,
    thing_id: Option<&'a str>,
    body: &[u8],
) -> Result<Incoming<'a>, DecodeError> {
    let thing = || thing_id.ok_or(DecodeError::MissingHeader("thingId"));
    match msg_type {
        Some(msg_type::EVENT) => {}
        Some(msg_type::THING_DELETED) => {
            return Ok(Incoming::Deleted { thing_id: thing()? });
        }
        Some(msg_type::PING_RESPONSE) => return Ok(Incoming::Ignored),
        Some(other) => return Err(DecodeError::UnknownType(other.to_owned())),
        None => return Err(DecodeError::MissingHeader("type")),
    }
    let topic = topic.ok_or(DecodeError::MissingHeader("topic"))?;
    if let Some(job) = job_of(topic) {
        let ActionIdOnly { action_id } = json(body)?;
        return Ok(Incoming::Deployment {
            thing_id: thing()?,
            action: action_id,
            job,
        });
    }
    Ok(match topic {
        topic::CANCEL_DOWNLOAD => {
            let ActionRequest { action_id } = json(body)?;
            Incoming::Cancel {
                thing_id: thing()?,
                action: action_id,
            }
        }
        topic::BATCH_DOWNLOAD_AND_INSTALL | topic::BATCH_DOWNLOAD => {
            let batch: BatchDownloadRequest = json(body)?;
            Incoming::Batch {
                targets: batch
                    .targets
                    .into_iter()
                    .map(|t| (t.controller_id, t.action_id))
                    .collect(),
                job: if topic == topic::BATCH_DOWNLOAD {
                    Job::DownloadOnly
                } else {
                    Job::Install
                },
            }
        }
        topic::MULTI_ACTION => {
            let elements: Vec<MultiActionElement> = json(body)?;
            let mut cancels = Vec::new();
            let mut work: Option<(i32, i64, Job)> = None;
            for e in elements {
                let action = match &e.action {
                    MultiActionPayload::Deployment(r) => r.action_id,
                    MultiActionPayload::Cancel(c) => c.action_id,
                };
                if e.topic == topic::CANCEL_DOWNLOAD {
                    cancels.push(action);
                } else if let Some(job) = job_of(&e.topic) {
                    let better = match work {
                        None => true,
                        Some((w, a, _)) => e.weight > w || (e.weight == w && action < a),
                    };
                    if better {
                        work = Some((e.weight, action, job));
                    }
                }
            }
            Incoming::Multi {
                thing_id: thing()?,
                cancels,
                work: work.map(|(_, a, j)| (a, j)),
            }
        }
        topic::REQUEST_ATTRIBUTES_UPDATE => Incoming::RequestAttributes { thing_id: thing()? },
        other => return Err(DecodeError::UnknownTopic(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dmf::envelope::{self, DeploymentTopic};
    use crate::dmf::outbound::{BatchTarget, DownloadRequest};

    fn request(action_id: i64) -> DownloadRequest {
        DownloadRequest {
            action_id,
            target_security_token: "t".into(),
            software_modules: vec![],
        }
    }

    /// Decode an outbound message exactly as the service encodes it.
    fn round_trip(m: &envelope::Outbound) -> Incoming<'_> {
        decode(
            m.header("type"),
            m.header("topic"),
            m.header("thingId"),
            &m.body,
        )
        .unwrap()
    }

    #[test]
    fn deployments_and_cancels_as_the_service_encodes_them() {
        let m = envelope::encode_deployment(
            "x",
            "DEFAULT",
            "sim-000001",
            DeploymentTopic::Download,
            &request(7),
        );
        assert_eq!(
            round_trip(&m),
            Incoming::Deployment {
                thing_id: "sim-000001",
                action: 7,
                job: Job::DownloadOnly
            }
        );
        let m = envelope::encode_cancel("x", "DEFAULT", "sim-000001", 8);
        assert_eq!(
            round_trip(&m),
            Incoming::Cancel {
                thing_id: "sim-000001",
                action: 8
            }
        );
        let m = envelope::encode_request_attributes("x", "DEFAULT", "sim-000001");
        assert_eq!(
            round_trip(&m),
            Incoming::RequestAttributes {
                thing_id: "sim-000001"
            }
        );
        let m = envelope::encode_thing_deleted("x", "DEFAULT", "sim-000001");
        assert_eq!(
            round_trip(&m),
            Incoming::Deleted {
                thing_id: "sim-000001"
            }
        );
    }

    #[test]
    fn batches_list_every_target() {
        let m = envelope::encode_batch(
            "x",
            "DEFAULT",
            true,
            &BatchDownloadRequest {
                timestamp: 1,
                targets: vec![
                    BatchTarget {
                        action_id: 1,
                        controller_id: "a".into(),
                        target_security_token: "t".into(),
                    },
                    BatchTarget {
                        action_id: 2,
                        controller_id: "b".into(),
                        target_security_token: "t".into(),
                    },
                ],
                software_modules: vec![],
            },
        );
        assert_eq!(
            round_trip(&m),
            Incoming::Batch {
                targets: vec![("a".into(), 1), ("b".into(), 2)],
                job: Job::DownloadOnly
            }
        );
    }

    #[test]
    fn multi_action_works_on_the_heaviest_and_cancels_the_rest() {
        let el = |topic: &str, payload, weight| MultiActionElement {
            topic: topic.into(),
            action: payload,
            weight,
        };
        let m = envelope::encode_multi_action(
            "x",
            "DEFAULT",
            "d",
            &[
                el(
                    "CANCEL_DOWNLOAD",
                    MultiActionPayload::Cancel(ActionRequest { action_id: 3 }),
                    1000,
                ),
                el("DOWNLOAD", MultiActionPayload::Deployment(request(5)), 600),
                el(
                    "DOWNLOAD_AND_INSTALL",
                    MultiActionPayload::Deployment(request(4)),
                    600,
                ),
                el(
                    "DOWNLOAD_AND_INSTALL",
                    MultiActionPayload::Deployment(request(2)),
                    500,
                ),
            ],
        );
        assert_eq!(
            round_trip(&m),
            Incoming::Multi {
                thing_id: "d",
                cancels: vec![3],
                work: Some((4, Job::Install))
            }
        );
    }

    #[test]
    fn unusable_messages_are_named() {
        assert_eq!(
            decode(None, None, None, b""),
            Err(DecodeError::MissingHeader("type"))
        );
        assert_eq!(
            decode(Some("EVENT"), Some("NOPE"), Some("d"), b"{}"),
            Err(DecodeError::UnknownTopic("NOPE".into()))
        );
        assert!(matches!(
            decode(Some("EVENT"), Some("DOWNLOAD"), Some("d"), b"{}"),
            Err(DecodeError::Json(_))
        ));
        assert_eq!(
            decode(Some("EVENT"), Some("DOWNLOAD"), None, br#"{"actionId":1}"#),
            Err(DecodeError::MissingHeader("thingId"))
        );
        assert_eq!(
            decode(Some("PING_RESPONSE"), None, None, b"123"),
            Ok(Incoming::Ignored)
        );
    }
}
