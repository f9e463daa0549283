//! From the wire to the domain: what a DMF value means to the rules in `domain`. The only place
//! where `dmf` and `domain` meet (the domain imports nothing of the wire).

use crate::domain::action::ReportStatus;

use super::inbound::ReportedStatus;

/// DMF's `actionStatus` as the status the action rules decide on (one to one).
impl From<ReportedStatus> for ReportStatus {
    fn from(status: ReportedStatus) -> Self {
        match status {
            ReportedStatus::Download => Self::Download,
            ReportedStatus::Retrieved => Self::Retrieved,
            ReportedStatus::Running => Self::Running,
            ReportedStatus::Warning => Self::Warning,
            ReportedStatus::Downloaded => Self::Downloaded,
            ReportedStatus::Finished => Self::Finished,
            ReportedStatus::Error => Self::Error,
            ReportedStatus::Canceled => Self::Canceled,
            ReportedStatus::CancelRejected => Self::CancelRejected,
            ReportedStatus::Confirmed => Self::Confirmed,
            ReportedStatus::Denied => Self::Denied,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Every wire status has its own domain status of the same name, and every domain status is
    /// reached: a status added on one side only fails here.
    #[test]
    fn reported_statuses_map_one_to_one_by_name() {
        let mapped: Vec<ReportStatus> = ReportedStatus::ALL.into_iter().map(Into::into).collect();
        for (wire, domain) in ReportedStatus::ALL.iter().zip(&mapped) {
            assert_eq!(format!("{wire:?}"), format!("{domain:?}"));
        }
        let distinct: HashSet<ReportStatus> = mapped.into_iter().collect();
        let all: HashSet<ReportStatus> = ReportStatus::ALL.into_iter().collect();
        assert_eq!(distinct, all);
    }
}
