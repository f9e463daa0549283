//! Actions and what a device report does to one (dmf-protocol.md §5.5, rollouts.md §2.5).
//!
//! [`apply_report`] is the whole decision: given the action's state and one report it returns the
//! next state, the history entry to append, the effect on the target and whether the device
//! should be sent its current action again — or the reason the report is refused (which the DMF
//! adapter turns into a dead letter). It is pure; the engine persists what it returns.

use super::Invalid;
use super::names::named_enum;

/// Server-generated history messages carry this prefix [hB].
pub const SERVER_PREFIX: &str = "Update Server: ";
/// History entries an action may collect from intermediate reports (§7).
pub const MAX_INTERMEDIATE_REPORTS: i32 = 1000;
/// Messages per history entry, after splitting (§7).
pub const MAX_MESSAGES_PER_ENTRY: usize = 50;
/// A history message longer than this is split into chunks of this size.
pub const MAX_MESSAGE_LEN: usize = 512;

named_enum! {
    /// Action status, as stored and as the REST API shows it (lower-case there).
    pub enum ActionStatus {
        Finished = "FINISHED",
        Error = "ERROR",
        Warning = "WARNING",
        Running = "RUNNING",
        Canceled = "CANCELED",
        Canceling = "CANCELING",
        Retrieved = "RETRIEVED",
        Download = "DOWNLOAD",
        Scheduled = "SCHEDULED",
        CancelRejected = "CANCEL_REJECTED",
        Downloaded = "DOWNLOADED",
        WaitForConfirmation = "WAIT_FOR_CONFIRMATION",
    }
}

impl ActionStatus {
    pub fn is_cancel(self) -> bool {
        matches!(self, Self::Canceling | Self::Canceled)
    }

    /// The group counter an action in this status counts in (the buckets of the counter trigger,
    /// rollouts.md §8). Rollout decisions read only these counters, so a report that keeps its
    /// action in the same one (RUNNING → DOWNLOAD, say) cannot change any of them.
    pub fn counter(self) -> Counter {
        match self {
            Self::Scheduled => Counter::Scheduled,
            Self::Downloaded => Counter::Downloaded,
            Self::Finished => Counter::Finished,
            Self::Error => Counter::Error,
            Self::Canceled => Counter::Canceled,
            _ => Counter::Running,
        }
    }
}

/// The per-group action counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    Scheduled,
    Running,
    Downloaded,
    Finished,
    Error,
    Canceled,
}

named_enum! {
    /// How forcefully the device should install (rollouts.md §4.9).
    #[derive(Default)]
    pub enum ActionType {
        #[default]
        Forced = "FORCED",
        Soft = "SOFT",
        TimeForced = "TIMEFORCED",
        DownloadOnly = "DOWNLOAD_ONLY",
    }
    /// REST name: `forced`, `soft`, `timeforced`, `downloadonly`.
    api_name / from_api {
        Forced => "forced",
        Soft => "soft",
        TimeForced => "timeforced",
        DownloadOnly => "downloadonly",
    }
}

/// The status a device reports for its action (dmf-protocol.md §3.4): the eleven values of DMF's
/// `actionStatus`. Its serde form is that member's spelling (case-sensitive), so the wire body
/// `dmf::inbound::ActionUpdateStatus` carries this type as it is, with no conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReportStatus {
    Download,
    Retrieved,
    Running,
    Warning,
    Downloaded,
    Finished,
    Error,
    Canceled,
    CancelRejected,
    Confirmed,
    Denied,
}

impl ReportStatus {
    pub const ALL: [ReportStatus; 11] = [
        Self::Download,
        Self::Retrieved,
        Self::Running,
        Self::Warning,
        Self::Downloaded,
        Self::Finished,
        Self::Error,
        Self::Canceled,
        Self::CancelRejected,
        Self::Confirmed,
        Self::Denied,
    ];
}

/// The part of an action a report depends on and changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionState {
    pub status: ActionStatus,
    pub active: bool,
    pub action_type: ActionType,
    pub intermediate_reports: i32,
}

/// A device report, parsed and validated at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub status: ReportStatus,
    pub messages: Vec<String>,
    pub code: Option<i32>,
    pub correlation_id: Option<String>,
}

/// Facts about the tenant that change what a report means.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportContext {
    pub confirmation_flow_enabled: bool,
}

/// A history entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub status: ActionStatus,
    pub messages: Vec<String>,
    pub code: Option<i32>,
}

/// What the report does to the action's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetEffect {
    None,
    /// Installed set := the action's set (download-only: assigned too); IN_SYNC when they match;
    /// attributes requested.
    Installed {
        download_only: bool,
    },
    /// Update status ERROR, assigned set cleared.
    Failed,
    /// Download-only action closed: IN_SYNC, attributes requested, installed set unchanged.
    Downloaded,
    /// Assigned set := that of the oldest remaining open action, else the installed one (IN_SYNC).
    CancelCompleted,
}

/// The outcome of an accepted report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOutcome {
    pub next: ActionState,
    /// `None`: the report is acknowledged without trace (FINISHED/ERROR on a closed action).
    pub history: Option<HistoryEntry>,
    pub target: TargetEffect,
    /// Send REQUEST_ATTRIBUTES_UPDATE and set the target's flag.
    pub request_attributes: bool,
    /// Send the target's current action afterwards (§5.3; the engine adds "window open now").
    pub follow_up: bool,
}

/// Why a report is refused (a permanent error: the message is dead-lettered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportRejected {
    #[error("{0:?} for action that is not being cancelled")]
    NotCanceling(ReportStatus),
    #[error("{0:?} for action in status {1:?}")]
    WrongState(ReportStatus, ActionStatus),
    #[error("history quota exceeded: action has {MAX_INTERMEDIATE_REPORTS} status entries")]
    HistoryQuota,
    #[error("history quota exceeded: more than {MAX_MESSAGES_PER_ENTRY} messages in one entry")]
    MessageQuota,
    #[error("status message contains markup")]
    Markup,
}

/// Progress reports (DOWNLOAD, RETRIEVED, RUNNING, WARNING): on an active action they only
/// append history and count as intermediate reports — status, target and what is sent stay as
/// they are, whatever the tenant's settings (the report path then leaves the target alone).
pub fn is_progress(status: ReportStatus) -> bool {
    use ReportStatus as R;
    matches!(status, R::Download | R::Retrieved | R::Running | R::Warning)
}

/// Apply one report to one action (§5.5 step 3–4).
pub fn apply_report(
    state: ActionState,
    report: &Report,
    ctx: ReportContext,
) -> Result<ReportOutcome, ReportRejected> {
    use ReportStatus as R;

    if report.messages.iter().any(|m| contains_markup(m)) {
        return Err(ReportRejected::Markup);
    }
    let confirmation = matches!(report.status, R::Confirmed | R::Denied);
    let mut messages = report.messages.clone();
    if let Some(id) = &report.correlation_id {
        messages.push(format!("{SERVER_PREFIX}DMF message correlation-id {id}"));
    }
    if let (Some(code), false) = (report.code, confirmation) {
        messages.push(format!("Device reported status code: {code}"));
    }

    let unchanged = |history: Option<HistoryEntry>, follow_up: bool| ReportOutcome {
        next: state,
        history,
        target: TargetEffect::None,
        request_attributes: false,
        follow_up,
    };
    let entry = |status, messages| HistoryEntry {
        status,
        messages,
        code: report.code,
    };
    let download_only = state.action_type == ActionType::DownloadOnly;

    let outcome = match report.status {
        R::Confirmed => {
            if !(state.active && state.status == ActionStatus::WaitForConfirmation) {
                return Err(ReportRejected::WrongState(report.status, state.status));
            }
            messages.push(format!(
                "{SERVER_PREFIX}Target confirmed action. Therefore, it will be set to the running state to proceed with the deployment."
            ));
            if let Some(code) = report.code {
                messages.push(format!("Confirmation status code: {code}"));
            }
            ReportOutcome {
                next: ActionState {
                    status: ActionStatus::Running,
                    ..state
                },
                history: Some(entry(ActionStatus::Running, messages)),
                target: TargetEffect::None,
                request_attributes: false,
                follow_up: true,
            }
        }
        R::Denied => {
            if !state.active {
                return Err(ReportRejected::WrongState(report.status, state.status));
            }
            match state.status {
                ActionStatus::WaitForConfirmation => {
                    messages.push(format!(
                        "{SERVER_PREFIX}Target rejected action. Action will stay in confirmation pending state."
                    ));
                    unchanged(
                        Some(entry(ActionStatus::WaitForConfirmation, messages)),
                        false,
                    )
                }
                ActionStatus::Running if ctx.confirmation_flow_enabled => {
                    messages.push(format!(
                        "{SERVER_PREFIX}Target revoked previously granted confirmation. Action returned to confirmation-pending state."
                    ));
                    ReportOutcome {
                        next: ActionState {
                            status: ActionStatus::WaitForConfirmation,
                            ..state
                        },
                        history: Some(entry(ActionStatus::WaitForConfirmation, messages)),
                        target: TargetEffect::None,
                        request_attributes: false,
                        follow_up: false,
                    }
                }
                other => return Err(ReportRejected::WrongState(report.status, other)),
            }
        }
        R::Canceled | R::CancelRejected => {
            if !state.status.is_cancel() {
                return Err(ReportRejected::NotCanceling(report.status));
            }
            if state.status == ActionStatus::Canceled {
                // A repeated answer to a completed cancellation: accepted, nothing changes.
                unchanged(None, true)
            } else if report.status == R::Canceled {
                messages.push(format!(
                    "{SERVER_PREFIX}Cancellation completion is finished successfully."
                ));
                ReportOutcome {
                    next: ActionState {
                        status: ActionStatus::Canceled,
                        active: false,
                        ..state
                    },
                    history: Some(entry(ActionStatus::Canceled, messages)),
                    target: TargetEffect::CancelCompleted,
                    request_attributes: false,
                    follow_up: true,
                }
            } else {
                ReportOutcome {
                    next: ActionState {
                        status: ActionStatus::Running,
                        ..state
                    },
                    history: Some(entry(ActionStatus::CancelRejected, messages)),
                    target: TargetEffect::None,
                    request_attributes: false,
                    follow_up: false,
                }
            }
        }
        R::Finished | R::Error if !state.active => {
            // A download-only action closed by DOWNLOADED accepts one later FINISHED/ERROR.
            if download_only && state.status == ActionStatus::Downloaded {
                close(state, report.status, entry, messages)
            } else {
                unchanged(None, true)
            }
        }
        R::Finished | R::Error => close(state, report.status, entry, messages),
        R::Downloaded if state.active && download_only => ReportOutcome {
            next: ActionState {
                status: ActionStatus::Downloaded,
                active: false,
                ..state
            },
            history: Some(entry(ActionStatus::Downloaded, messages)),
            target: TargetEffect::Downloaded,
            request_attributes: true,
            follow_up: true,
        },
        R::Download | R::Retrieved | R::Running | R::Warning | R::Downloaded => {
            if state.intermediate_reports >= MAX_INTERMEDIATE_REPORTS {
                return Err(ReportRejected::HistoryQuota);
            }
            let status = match report.status {
                R::Download => ActionStatus::Download,
                R::Retrieved => ActionStatus::Retrieved,
                R::Running => ActionStatus::Running,
                R::Warning => ActionStatus::Warning,
                _ => ActionStatus::Downloaded,
            };
            ReportOutcome {
                next: ActionState {
                    intermediate_reports: state.intermediate_reports + 1,
                    ..state
                },
                history: Some(entry(status, messages)),
                target: TargetEffect::None,
                request_attributes: false,
                follow_up: !state.active,
            }
        }
    };
    let mut outcome = outcome;
    if let Some(h) = outcome.history.as_mut() {
        h.messages = split_messages(std::mem::take(&mut h.messages));
        if h.messages.len() > MAX_MESSAGES_PER_ENTRY {
            return Err(ReportRejected::MessageQuota);
        }
    }
    Ok(outcome)
}

fn close(
    state: ActionState,
    status: ReportStatus,
    entry: impl Fn(ActionStatus, Vec<String>) -> HistoryEntry,
    messages: Vec<String>,
) -> ReportOutcome {
    let finished = status == ReportStatus::Finished;
    let status = if finished {
        ActionStatus::Finished
    } else {
        ActionStatus::Error
    };
    ReportOutcome {
        next: ActionState {
            status,
            active: false,
            ..state
        },
        history: Some(entry(status, messages)),
        target: if finished {
            TargetEffect::Installed {
                download_only: state.action_type == ActionType::DownloadOnly,
            }
        } else {
            TargetEffect::Failed
        },
        request_attributes: finished,
        follow_up: true,
    }
}

/// Split messages longer than [`MAX_MESSAGE_LEN`] characters into chunks of that size.
pub fn split_messages(messages: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        if m.chars().count() <= MAX_MESSAGE_LEN {
            out.push(m);
            continue;
        }
        let chars: Vec<char> = m.chars().collect();
        out.extend(chars.chunks(MAX_MESSAGE_LEN).map(|c| c.iter().collect()));
    }
    out
}

/// Whether a message holds something an HTML sanitiser would strip: a tag (`<b>`, `</x>`,
/// `<!-- -->`). A lone `<` or `a < b` is text. Linear in the length: the earliest tag opening
/// has the most text after it, so only it needs a `>` behind it (a 256 KiB message of `<a`s
/// must not cost a scan per `<`).
pub fn contains_markup(s: &str) -> bool {
    let b = s.as_bytes();
    let opens = |i: usize| {
        b[i] == b'<'
            && b.get(i + 1)
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == b'/' || *n == b'!')
    };
    (0..b.len())
        .find(|&i| opens(i))
        .is_some_and(|i| b[i + 1..].contains(&b'>'))
}

/// Validate an action weight (0..=1000); `None` means the default 1000.
pub fn validate_weight(weight: Option<i64>) -> Result<i32, Invalid> {
    match weight {
        None => Ok(1000),
        Some(w @ 0..=1000) => Ok(w as i32),
        Some(w) => Err(Invalid::new(format!(
            "weight {w} is out of range: must be between 0 and 1000"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReportStatus as R;
    use proptest::prelude::*;

    fn state(status: ActionStatus, active: bool) -> ActionState {
        ActionState {
            status,
            active,
            action_type: ActionType::Forced,
            intermediate_reports: 0,
        }
    }

    fn report(status: ReportStatus) -> Report {
        Report {
            status,
            messages: vec![],
            code: None,
            correlation_id: None,
        }
    }

    fn ctx() -> ReportContext {
        ReportContext::default()
    }

    /// A bare report (no message, no code) on an active action, the confirmation flow off.
    fn on_active(status: ActionStatus, r: ReportStatus) -> Result<ReportOutcome, ReportRejected> {
        apply_report(state(status, true), &report(r), ctx())
    }

    #[test]
    fn finished_closes_an_active_action_and_installs() {
        let out = on_active(ActionStatus::Running, R::Finished).unwrap();
        assert_eq!(out.next.status, ActionStatus::Finished);
        assert!(!out.next.active);
        assert_eq!(
            out.target,
            TargetEffect::Installed {
                download_only: false
            }
        );
        assert!(out.request_attributes);
        assert!(out.follow_up);
    }

    #[test]
    fn finished_wins_the_race_against_a_cancel() {
        let out = on_active(ActionStatus::Canceling, R::Finished).unwrap();
        assert_eq!(out.next.status, ActionStatus::Finished);
        assert!(!out.next.active);
    }

    #[test]
    fn error_closes_and_fails_the_target_without_requesting_attributes() {
        let out = on_active(ActionStatus::Running, R::Error).unwrap();
        assert_eq!(out.next.status, ActionStatus::Error);
        assert_eq!(out.target, TargetEffect::Failed);
        assert!(!out.request_attributes);
    }

    #[test]
    fn finished_or_error_on_a_closed_action_is_ignored() {
        for s in [R::Finished, R::Error] {
            let st = state(ActionStatus::Finished, false);
            let out = apply_report(st, &report(s), ctx()).unwrap();
            assert_eq!(out.next, st);
            assert_eq!(out.history, None);
        }
    }

    #[test]
    fn intermediate_reports_append_history_only() {
        for (s, hist) in [
            (R::Download, ActionStatus::Download),
            (R::Retrieved, ActionStatus::Retrieved),
            (R::Running, ActionStatus::Running),
            (R::Warning, ActionStatus::Warning),
            (R::Downloaded, ActionStatus::Downloaded),
        ] {
            let out = on_active(ActionStatus::Running, s).unwrap();
            assert_eq!(out.next.status, ActionStatus::Running);
            assert!(out.next.active);
            assert_eq!(out.next.intermediate_reports, 1);
            assert_eq!(out.history.unwrap().status, hist);
            assert!(!out.follow_up);
        }
    }

    #[test]
    fn an_intermediate_report_does_not_answer_a_cancel() {
        let out = on_active(ActionStatus::Canceling, R::Running).unwrap();
        assert_eq!(out.next.status, ActionStatus::Canceling);
    }

    #[test]
    fn downloaded_closes_a_download_only_action_and_a_later_finished_is_accepted_once() {
        let mut st = state(ActionStatus::Running, true);
        st.action_type = ActionType::DownloadOnly;
        let out = apply_report(st, &report(R::Downloaded), ctx()).unwrap();
        assert_eq!(out.next.status, ActionStatus::Downloaded);
        assert!(!out.next.active);
        assert_eq!(out.target, TargetEffect::Downloaded);
        assert!(out.request_attributes);
        let out2 = apply_report(out.next, &report(R::Finished), ctx()).unwrap();
        assert_eq!(out2.next.status, ActionStatus::Finished);
        assert_eq!(
            out2.target,
            TargetEffect::Installed {
                download_only: true
            }
        );
        let out3 = apply_report(out2.next, &report(R::Finished), ctx()).unwrap();
        assert_eq!(out3.history, None);
    }

    #[test]
    fn cancel_answers_require_a_cancelling_action() {
        for s in [R::Canceled, R::CancelRejected] {
            assert_eq!(
                on_active(ActionStatus::Running, s),
                Err(ReportRejected::NotCanceling(s))
            );
        }
    }

    #[test]
    fn canceled_closes_a_cancelling_action() {
        let out = on_active(ActionStatus::Canceling, R::Canceled).unwrap();
        assert_eq!(out.next.status, ActionStatus::Canceled);
        assert!(!out.next.active);
        assert_eq!(out.target, TargetEffect::CancelCompleted);
        assert!(out.follow_up);
        let h = out.history.unwrap();
        assert_eq!(
            h.messages.last().unwrap(),
            "Update Server: Cancellation completion is finished successfully."
        );
        // A second CANCELED is accepted and changes nothing.
        let again = apply_report(out.next, &report(R::Canceled), ctx()).unwrap();
        assert_eq!(again.next, out.next);
        assert_eq!(again.history, None);
    }

    #[test]
    fn cancel_rejected_returns_the_action_to_running() {
        let out = on_active(ActionStatus::Canceling, R::CancelRejected).unwrap();
        assert_eq!(out.next.status, ActionStatus::Running);
        assert!(out.next.active);
        assert_eq!(out.history.unwrap().status, ActionStatus::CancelRejected);
    }

    #[test]
    fn confirmed_runs_a_waiting_action_and_follows_up() {
        let out = apply_report(
            state(ActionStatus::WaitForConfirmation, true),
            &Report {
                code: Some(7),
                ..report(R::Confirmed)
            },
            ctx(),
        )
        .unwrap();
        assert_eq!(out.next.status, ActionStatus::Running);
        assert!(out.follow_up);
        let h = out.history.unwrap();
        assert_eq!(h.status, ActionStatus::Running);
        assert_eq!(h.messages.last().unwrap(), "Confirmation status code: 7");
        assert!(!h.messages.iter().any(|m| m.starts_with("Device reported")));
    }

    #[test]
    fn confirmed_in_the_wrong_state_is_refused() {
        assert!(on_active(ActionStatus::Running, R::Confirmed).is_err());
        assert!(
            apply_report(
                state(ActionStatus::WaitForConfirmation, false),
                &report(R::Confirmed),
                ctx()
            )
            .is_err()
        );
    }

    #[test]
    fn denied_keeps_waiting_or_revokes_when_the_flow_is_on() {
        let out = on_active(ActionStatus::WaitForConfirmation, R::Denied).unwrap();
        assert_eq!(out.next.status, ActionStatus::WaitForConfirmation);
        assert_eq!(
            out.history.unwrap().status,
            ActionStatus::WaitForConfirmation
        );
        assert!(!out.follow_up);
        let on = ReportContext {
            confirmation_flow_enabled: true,
        };
        let out = apply_report(state(ActionStatus::Running, true), &report(R::Denied), on).unwrap();
        assert_eq!(out.next.status, ActionStatus::WaitForConfirmation);
        assert!(on_active(ActionStatus::Running, R::Denied).is_err());
        assert!(
            apply_report(state(ActionStatus::Canceling, true), &report(R::Denied), on).is_err()
        );
    }

    #[test]
    fn server_messages_record_correlation_id_and_code() {
        let out = apply_report(
            state(ActionStatus::Running, true),
            &Report {
                status: R::Running,
                messages: vec!["hello".into()],
                code: Some(17),
                correlation_id: Some("abc".into()),
            },
            ctx(),
        )
        .unwrap();
        let h = out.history.unwrap();
        assert_eq!(
            h.messages,
            vec![
                "hello".to_string(),
                "Update Server: DMF message correlation-id abc".to_string(),
                "Device reported status code: 17".to_string()
            ]
        );
        assert_eq!(h.code, Some(17));
    }

    #[test]
    fn quotas_and_markup_are_enforced() {
        let mut st = state(ActionStatus::Running, true);
        st.intermediate_reports = MAX_INTERMEDIATE_REPORTS;
        assert_eq!(
            apply_report(st, &report(R::Running), ctx()),
            Err(ReportRejected::HistoryQuota)
        );
        // FINISHED is not an intermediate report: still accepted at the quota.
        assert!(apply_report(st, &report(R::Finished), ctx()).is_ok());
        let many = Report {
            messages: vec!["m".into(); 51],
            ..report(R::Running)
        };
        assert_eq!(
            apply_report(state(ActionStatus::Running, true), &many, ctx()),
            Err(ReportRejected::MessageQuota)
        );
        let long = Report {
            messages: vec!["x".repeat(1030)],
            ..report(R::Running)
        };
        let h = apply_report(state(ActionStatus::Running, true), &long, ctx())
            .unwrap()
            .history
            .unwrap();
        assert_eq!(
            h.messages.iter().map(|m| m.len()).collect::<Vec<_>>(),
            vec![512, 512, 6]
        );
        let markup = Report {
            messages: vec!["<b>bold</b>".into()],
            ..report(R::Running)
        };
        assert_eq!(
            apply_report(state(ActionStatus::Running, true), &markup, ctx()),
            Err(ReportRejected::Markup)
        );
        assert!(!contains_markup("a < b and c > d"));
        assert!(contains_markup("<script>x</script>"));
        // The largest message of openings without a closing `>` (quadratic before: ~10^10 steps).
        assert!(!contains_markup(&"<a".repeat(128 * 1024)));
        assert!(contains_markup(&format!("{}>", "<a".repeat(128 * 1024))));
    }

    proptest! {
        /// The linear scan agrees with the definition: some tag opening has a `>` after it.
        #[test]
        fn markup_scan_matches_its_definition(s in "[<>/!a ]{0,40}") {
            let b = s.as_bytes();
            let naive = (0..b.len()).any(|i| {
                b[i] == b'<'
                    && b.get(i + 1).is_some_and(|n| n.is_ascii_alphabetic() || *n == b'/' || *n == b'!')
                    && b[i + 1..].contains(&b'>')
            });
            prop_assert_eq!(contains_markup(&s), naive);
        }
    }

    #[test]
    fn weights_default_to_1000_and_are_bounded() {
        assert_eq!(validate_weight(None), Ok(1000));
        assert_eq!(validate_weight(Some(0)), Ok(0));
        assert!(validate_weight(Some(1001)).is_err());
        assert!(validate_weight(Some(-1)).is_err());
    }

    fn any_status() -> impl Strategy<Value = ActionStatus> {
        prop::sample::select(ActionStatus::ALL.to_vec())
    }
    fn any_report() -> impl Strategy<Value = ReportStatus> {
        prop::sample::select(ReportStatus::ALL.to_vec())
    }
    fn any_type() -> impl Strategy<Value = ActionType> {
        prop::sample::select(ActionType::ALL.to_vec())
    }

    proptest! {
        /// Closed actions never reopen, whatever the device reports afterwards.
        #[test]
        fn closed_actions_stay_closed(
            start in prop::sample::select(vec![ActionStatus::Finished, ActionStatus::Error, ActionStatus::Canceled]),
            ty in any_type(),
            reports in prop::collection::vec(any_report(), 0..30),
        ) {
            let mut st = ActionState { status: start, active: false, action_type: ty, intermediate_reports: 0 };
            for r in reports {
                if let Ok(out) = apply_report(st, &report(r), ReportContext { confirmation_flow_enabled: true }) {
                    prop_assert!(!out.next.active);
                    prop_assert_eq!(out.next.status, st.status);
                    st = out.next;
                }
            }
        }

        /// Inactive means terminal or scheduled; an accepted report never leaves an active action
        /// in a terminal status, nor an inactive one in a running status.
        #[test]
        fn activity_matches_status(
            status in any_status(),
            ty in any_type(),
            reports in prop::collection::vec(any_report(), 0..30),
            flow in any::<bool>(),
        ) {
            let terminal = |s| matches!(s, ActionStatus::Finished | ActionStatus::Error | ActionStatus::Canceled | ActionStatus::Downloaded);
            let active = !terminal(status) && status != ActionStatus::Scheduled;
            let status = if status == ActionStatus::Downloaded && ty != ActionType::DownloadOnly { ActionStatus::Running } else { status };
            let mut st = ActionState { status, active: active || status == ActionStatus::Running, action_type: ty, intermediate_reports: 0 };
            for r in reports {
                if let Ok(out) = apply_report(st, &report(r), ReportContext { confirmation_flow_enabled: flow }) {
                    if out.next.active {
                        prop_assert!(!terminal(out.next.status));
                    } else {
                        prop_assert!(terminal(out.next.status) || out.next.status == ActionStatus::Scheduled || out.next.status == st.status);
                    }
                    // Follow-ups come with closed actions and confirmations, never otherwise.
                    if out.follow_up {
                        prop_assert!(!out.next.active || r == R::Confirmed);
                    }
                    st = out.next;
                }
            }
        }

        /// What `is_progress` promises the report path: on an active action a progress report
        /// changes nothing but the history and the intermediate-report count.
        #[test]
        fn progress_reports_touch_only_the_history(
            status in any_status(),
            ty in any_type(),
            r in any_report(),
            flow in any::<bool>(),
            reports in 0..MAX_INTERMEDIATE_REPORTS,
        ) {
            prop_assume!(is_progress(r));
            let st = ActionState { status, active: true, action_type: ty, intermediate_reports: reports };
            let out = apply_report(st, &report(r), ReportContext { confirmation_flow_enabled: flow }).unwrap();
            prop_assert_eq!(out.next, ActionState { intermediate_reports: reports + 1, ..st });
            prop_assert_eq!(out.target, TargetEffect::None);
            prop_assert!(!out.request_attributes);
            prop_assert!(!out.follow_up);
            prop_assert!(out.history.is_some());
        }

        /// A terminal report delivered twice (AMQP redelivery) changes nothing the second time.
        #[test]
        fn terminal_reports_are_idempotent(r in prop::sample::select(vec![R::Finished, R::Error, R::Canceled]), ty in any_type()) {
            let start = if r == R::Canceled { ActionStatus::Canceling } else { ActionStatus::Running };
            let st = ActionState { status: start, active: true, action_type: ty, intermediate_reports: 0 };
            let once = apply_report(st, &report(r), ctx()).unwrap();
            let twice = apply_report(once.next, &report(r), ctx()).unwrap();
            prop_assert_eq!(twice.next, once.next);
            prop_assert_eq!(twice.history, None);
            prop_assert_eq!(twice.target, TargetEffect::None);
        }
    }
}
