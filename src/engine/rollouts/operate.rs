//! The operator operations on a rollout (§4.5, §5, §6): start, pause, resume, stop, delete,
//! approve, deny, trigger the next group, rename. Each is an event stepped through the machine
//! in the transaction that locks the rollout.

use sqlx::PgConnection;

use super::effects::{Outcome, Run};
use super::flags;
use crate::domain::ids::{RolloutId, TenantId};
use crate::domain::rollout::spec::check_len;
use crate::domain::rollout::{Event, Operation, Refusal};
use crate::engine::{Engine, EngineError};
use crate::store::StoreError;
use crate::store::outbox::Pending;
use crate::store::rollouts as store;

impl Engine {
    /// Start, pause, resume, stop, delete, approve, deny or trigger the next group (§4.5, §5,
    /// §6). `remark` is for approve/deny.
    pub async fn rollout_operation(
        &self,
        tenant: TenantId,
        id: RolloutId,
        op: Operation,
        remark: Option<&str>,
        user: &str,
    ) -> Result<(), EngineError> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::new();
        let o = self
            .operation_in(&mut tx, tenant, id, op, remark, user, &mut out)
            .await?;
        self.commit_with_outbox(tx, out).await?;
        self.growth_committed(id);
        o.after_commit(self);
        self.rollout_wake.notify_one();
        Ok(())
    }

    /// An operation inside the caller's transaction (a distribution set's invalidation stops
    /// and deletes its rollouts so); the caller commits and wakes the executor.
    pub(crate) async fn operate_locked(
        &self,
        tx: &mut PgConnection,
        tenant: TenantId,
        id: RolloutId,
        op: Operation,
        user: &str,
    ) -> Result<(), EngineError> {
        let mut out = Vec::new();
        // Stop and delete write no notice and start no group: nothing to wake but the
        // executor, which the caller wakes after its commit.
        self.operation_in(tx, tenant, id, op, None, user, &mut out)
            .await?;
        crate::store::outbox::enqueue(tx, &self.instance, &out).await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn operation_in(
        &self,
        tx: &mut PgConnection,
        tenant: TenantId,
        id: RolloutId,
        op: Operation,
        remark: Option<&str>,
        user: &str,
        out: &mut Vec<Pending>,
    ) -> Result<Outcome, EngineError> {
        let mut r = store::lock(tx, tenant, id)
            .await?
            .filter(|r| !(r.deleted && op != Operation::Delete))
            .ok_or_else(|| EngineError::NotFound(format!("rollout {id} not found")))?;
        let from = r.state.status();
        let mut groups = store::groups(tx, id).await?;
        let run = Run {
            actor: user,
            remark,
            cfg: flags(tx, r.tenant).await?,
        };
        let o = self
            .interpret(tx, &mut r, &mut groups, Event::Operator(op), &run, out)
            .await?;
        tracing::info!(rollout = %id, ?op, %from, to = %r.state.status(), "rollout operation");
        Ok(o)
    }

    /// Rename / redescribe (`PUT /rollouts/{id}`): allowed except while deleting/deleted.
    pub async fn update_rollout(
        &self,
        tenant: TenantId,
        id: RolloutId,
        name: Option<String>,
        description: Option<String>,
        user: &str,
    ) -> Result<(), EngineError> {
        if let Some(n) = &name
            && (n.is_empty() || n.chars().count() > 128)
        {
            return Err(Refusal::Constraint("name must have 1 to 128 characters".into()).into());
        }
        check_len("description", &description, 512)?;
        let mut tx = self.pool.begin().await?;
        let mut r = store::lock(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("rollout {id} not found")))?;
        let mut groups = Vec::new();
        let run = Run {
            actor: user,
            remark: None,
            cfg: flags(&mut tx, r.tenant).await?,
        };
        let mut out = Vec::new();
        self.interpret(
            &mut tx,
            &mut r,
            &mut groups,
            Event::Operator(Operation::Update),
            &run,
            &mut out,
        )
        .await?;
        match store::update_text(&mut tx, id, name.as_deref(), description.as_deref(), user).await {
            Err(StoreError::Conflict(_)) => {
                return Err(EngineError::Conflict(format!(
                    "a rollout named {:?} already exists",
                    name.unwrap_or_default()
                )));
            }
            other => other?,
        }
        tx.commit().await?;
        Ok(())
    }
}
