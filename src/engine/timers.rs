//! Timers push (service.md "Timers push", dmf-protocol.md §5.3 defect 6): when an action's
//! maintenance window opens, the device is sent its current action at that moment instead of
//! learning it on its next THING_CREATED or status report as with hawkBit.
//!
//! [`Engine::push_opened_windows`] is a sweep that the application runs every second. It
//! compares "open now" with "open when the device last heard about the action" (the previous
//! sweep, or the action's creation if that is newer) and enqueues the target's current action
//! for every window that opened in between. The only state is the time of the previous sweep;
//! after a restart the first sweep falls back to the creation time, so a window that opened while
//! the service was down is pushed, and one pushed just before the restart is pushed once more —
//! harmless, re-sending the current action is what THING_CREATED does anyway.
//!
//! Never here: SQL text, lapin.

use std::collections::HashMap;

use tokio::sync::Mutex;

use super::Engine;
use super::inbound::now_ms;
use crate::domain::maintenance::MaintenanceWindow;
use crate::store::outbox::Pending;
use crate::store::{StoreError, actions};

/// Where the maintenance-window sweep stands.
#[derive(Debug, Default)]
pub struct WindowSweep {
    /// Wall-clock time (epoch ms) of the last successful sweep; `None` before the first one.
    /// The mutex also keeps two sweeps of one process from overlapping.
    last: Mutex<Option<i64>>,
}

impl Engine {
    /// Enqueue the current action of every target whose action's maintenance window opened since
    /// the previous sweep. Returns how many targets were pushed. On error nothing is enqueued and
    /// the next sweep covers the same interval again.
    #[tracing::instrument(skip_all, fields(pushed))]
    pub async fn push_opened_windows(&self) -> Result<usize, StoreError> {
        let mut last = self.window_sweep.last.lock().await;
        let now = now_ms();
        let mut conn = self.pool.acquire().await?;
        let candidates = actions::active_with_window(&mut conn).await?;

        // Many actions of one assignment share a window: parse each distinct one once.
        let mut windows: HashMap<(&str, &str, &str), Option<MaintenanceWindow>> = HashMap::new();
        let mut targets: Vec<i64> = Vec::new();
        for a in &candidates {
            let key = (
                a.mw_schedule.as_str(),
                a.mw_duration.as_str(),
                a.mw_timezone.as_str(),
            );
            let Some(window) = windows
                .entry(key)
                .or_insert_with(|| MaintenanceWindow::parse(key.0, key.1, key.2).ok())
            else {
                continue;
            };
            // The device was last told about this action at `since`: by the previous sweep, or
            // by the assignment itself (rendered after the action was created).
            let since = last.map_or(a.created_at, |l| l.max(a.created_at));
            if window.is_open(now) && !window.is_open(since) {
                targets.push(a.target_id);
            }
        }
        targets.sort_unstable();
        targets.dedup();
        if !targets.is_empty() {
            let pending: Vec<Pending> = targets.iter().map(|t| Pending::Target(*t)).collect();
            let tx = sqlx::Connection::begin(&mut *conn).await?;
            self.commit_with_outbox(tx, pending).await?;
            tracing::debug!(
                count = targets.len(),
                "maintenance windows opened; current actions pushed"
            );
        }
        tracing::Span::current().record("pushed", targets.len());
        *last = Some(now);
        Ok(targets.len())
    }
}
