//! The approval webhook (service.md `DMF_APPROVAL_WEBHOOK`): the notice is written to its own
//! outbox table in the transaction that makes a rollout wait for approval, and delivered by
//! [`run_approval_notices`], a task the application tracks, with capped exponential backoff
//! until it is delivered or the rollout no longer waits. Nothing is lost across a crash: a
//! leased notice whose deliverer died is due again when its lease runs out.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

use super::{now_ms, run_woken};
use crate::domain::rollout::Rollout;
use crate::engine::{Engine, EngineError};
use crate::store::{StoreError, approvals, tenants};

/// Notices posted per round.
const ROUND: i64 = 10;
/// How long a leased notice stays with its deliverer (longer than the HTTP timeout).
const LEASE_MS: i64 = 60_000;
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF_MS`].
const FIRST_BACKOFF_MS: i64 = 500;
const MAX_BACKOFF_MS: i64 = 300_000;
/// Look for due notices at least this often (other instances' writes, expired leases).
const POLL: Duration = Duration::from_secs(5);

/// The delay before attempt `attempts + 1`.
fn backoff_ms(attempts: i32) -> i64 {
    let shift = attempts.clamp(1, 20) - 1;
    (FIRST_BACKOFF_MS << shift).min(MAX_BACKOFF_MS)
}

/// The webhook URL as it may be logged: no user, password or query (which may carry tokens).
pub fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}{}",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            u.path()
        ),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

impl Engine {
    /// The body of the notice that `r` waits for approval, `None` without a webhook.
    pub(super) async fn approval_notice(
        &self,
        conn: &mut PgConnection,
        r: &Rollout,
    ) -> Result<Option<Value>, EngineError> {
        if self.settings.approval_webhook.is_none() {
            return Ok(None);
        }
        let tenant = tenants::name_of(conn, r.tenant).await?;
        let base = self.settings.public_url.trim_end_matches('/').to_owned();
        Ok(Some(json!({
            "event": "rollout.approval_required",
            "rolloutId": r.id.0,
            "name": r.name,
            "tenant": tenant,
            "createdBy": r.audit.created_by,
            "distributionSetId": r.ds.0,
            "totalTargets": r.total_targets,
            "_links": {
                "self": {"href": format!("{base}/rest/v1/rollouts/{}", r.id)},
                "approve": {"href": format!("{base}/rest/v1/rollouts/{}/approve", r.id)},
                "deny": {"href": format!("{base}/rest/v1/rollouts/{}/deny", r.id)},
            }
        })))
    }

    /// Post every due notice once. Returns when the next one is due (ms), if any.
    pub async fn deliver_approval_notices(&self, url: &str) -> Result<Option<i64>, StoreError> {
        let leased = {
            let mut conn = self.pool.acquire().await?;
            approvals::lease_due(&mut conn, ROUND, LEASE_MS).await?
        };
        let endpoint = redacted(url);
        for n in &leased {
            let result = match self.http.post(url).json(&n.body).send().await {
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => Err(format!("answered {}", resp.status())),
                Err(e) => Err(format!("failed: {}", e.without_url())),
            };
            let mut conn = self.pool.acquire().await?;
            match result {
                Ok(()) => {
                    tracing::info!(rollout = %n.rollout, %endpoint, "approval webhook delivered");
                    approvals::withdraw(&mut conn, n.rollout).await?;
                }
                Err(why) => {
                    let retry = backoff_ms(n.attempts);
                    tracing::warn!(
                        rollout = %n.rollout, %endpoint, attempt = n.attempts, retry_ms = retry,
                        error.message = %why, "approval webhook not delivered"
                    );
                    approvals::failed(&mut conn, n.rollout, retry, &why).await?;
                }
            }
        }
        let mut conn = self.pool.acquire().await?;
        approvals::next_due(&mut conn).await
    }
}

/// Deliver approval notices until `token` is cancelled: woken when one is written, at its due
/// time, and every few seconds.
pub async fn run_approval_notices(engine: Arc<Engine>, token: CancellationToken) {
    let Some(url) = engine.settings.approval_webhook.clone() else {
        return;
    };
    let wake = engine.approval_wake.clone();
    run_woken(token, wake, async move || {
        match engine.deliver_approval_notices(&url).await {
            Ok(Some(due)) => {
                Duration::from_millis((due - now_ms()).clamp(0, POLL.as_millis() as i64) as u64)
            }
            Ok(None) => POLL,
            Err(e) => {
                tracing::warn!(error.message = %e, "approval notices: delivery round failed");
                POLL
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff_ms(1), 500);
        assert_eq!(backoff_ms(2), 1000);
        assert_eq!(backoff_ms(4), 4000);
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
    }

    #[test]
    fn credentials_and_queries_never_reach_the_log() {
        assert_eq!(
            redacted("https://bot:s3cret@hooks.example:8443/approve?token=abc"),
            "https://hooks.example:8443/approve"
        );
        assert_eq!(redacted("http://127.0.0.1/hook"), "http://127.0.0.1/hook");
        assert!(!redacted("not a url with a secret").contains("secret"));
    }
}
