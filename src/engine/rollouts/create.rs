//! Creating a rollout (§3.1) and a retry rollout over the failed targets of a finished one
//! (§3.8): the request is planned by `domain::rollout::plan`, the numbers that need the
//! database are looked up here, and the rollout is stored in CREATING for the executor to fill.

use super::flags;
use crate::domain::ids::{DsId, RolloutId, TenantId};
use crate::domain::rollout::plan::{self, Plan};
use crate::domain::rollout::{Event, Facts, Operation, machine};
use crate::engine::assignment::check_usable_set;
use crate::engine::{Engine, EngineError};
use crate::store::filter::{Entity, Filter};
use crate::store::rollouts::{self as store, NewRollout};
use crate::store::{StoreError, repository};

pub use crate::domain::rollout::plan::CreateRollout;

impl Engine {
    /// Create a rollout (§3.1). `may_approve` = the creator holds APPROVE_ROLLOUT.
    pub async fn create_rollout(
        &self,
        tenant: TenantId,
        req: CreateRollout,
        may_approve: bool,
        user: &str,
    ) -> Result<RolloutId, EngineError> {
        self.create(tenant, req, None, may_approve, user).await
    }

    /// Retry a finished rollout over its failed targets (§3.8).
    pub async fn retry_rollout(
        &self,
        tenant: TenantId,
        id: RolloutId,
        may_approve: bool,
        user: &str,
    ) -> Result<RolloutId, EngineError> {
        let mut conn = self.pool.acquire().await?;
        let src = store::find(&mut conn, tenant, id)
            .await?
            .filter(|r| !r.deleted)
            .ok_or_else(|| EngineError::NotFound(format!("rollout {id} not found")))?;
        drop(conn);
        let facts = Facts {
            groups: &[],
            approval_enabled: false,
            enrol_idle_ms: self.settings.enrol_idle_ms,
        };
        machine::step(&src, &facts, Event::Operator(Operation::Retry), 0)?;
        let req = CreateRollout {
            name: Some(format!("{}_retry", src.name)),
            description: src.description.clone(),
            target_filter: Some(format!("failedrollout=={id}")),
            ds_id: src.ds.0,
            amount_groups: Some(1),
            action_type: src.action_type,
            forced_time: Some(src.forced_time),
            start_at: src.start_at,
            confirmation_required: Some(false),
            ..CreateRollout::default()
        };
        self.create(tenant, req, Some(id), may_approve, user).await
    }

    async fn create(
        &self,
        tenant: TenantId,
        req: CreateRollout,
        retry_of: Option<RolloutId>,
        may_approve: bool,
        user: &str,
    ) -> Result<RolloutId, EngineError> {
        // 1. The filter.
        let filter_text = req
            .target_filter
            .clone()
            .filter(|f| !f.trim().is_empty())
            .ok_or_else(|| {
                EngineError::Query(crate::domain::rsql::RsqlError::Syntax(
                    "targetFilterQuery is required".into(),
                ))
            })?;
        let base = match retry_of {
            None => Some(Filter::parse(Entity::Target, &filter_text).map_err(EngineError::Query)?),
            Some(_) => None,
        };
        let ds = DsId(req.ds_id);
        let mut tx = self.pool.begin().await?;
        // 2. The distribution set.
        store::lock_set_row(&mut tx, tenant, req.ds_id).await?;
        check_usable_set(&mut tx, tenant, ds, "is incomplete").await?;
        // 3.–7. Shape, constraints, groups.
        let cfg = flags(&mut tx, tenant).await?;
        let plan = plan::plan(&req, &filter_text, cfg.confirmation_flow)?;
        for g in &plan.groups {
            if !g.target_filter.trim().is_empty() {
                Filter::parse(Entity::Target, &g.target_filter).map_err(EngineError::Query)?;
            }
        }
        // 8., 11., 12. Matching targets, group sizes and quotas.
        let total = self
            .count_targets(&mut tx, tenant, &plan, base.as_ref(), retry_of, ds)
            .await?;
        // 9. Implicit lock of the set.
        if cfg.implicit_lock {
            store::lock_set_implicitly(&mut tx, req.ds_id).await?;
        }
        // 13. Persist.
        let new = NewRollout {
            name: plan.name.clone(),
            description: req.description.clone(),
            target_filter: match retry_of {
                Some(source) => format!("failedrollout=={source}"),
                None => filter_text,
            },
            retry_of,
            ds,
            action_type: req.action_type,
            forced_time: req.forced_time.unwrap_or(0),
            start_at: req.start_at.filter(|t| *t != i64::MAX),
            weight: plan.weight,
            total_targets: total,
            dynamic: req.dynamic,
            conditions: plan.conditions.clone(),
            confirmation_required: plan.confirmation_required,
            template: plan.template.clone(),
            creator_may_approve: may_approve,
        };
        let id = match store::insert(&mut tx, tenant, &new, user).await {
            Err(StoreError::Conflict(_)) => {
                return Err(EngineError::Conflict(format!(
                    "a rollout named {:?} already exists",
                    plan.name
                )));
            }
            other => other?,
        };
        store::insert_groups(&mut tx, id, &plan.groups, user).await?;
        tx.commit().await?;
        tracing::info!(
            rollout = %id,
            total,
            groups = plan.groups.len(),
            "rollout created"
        );
        self.rollout_wake.notify_one();
        Ok(id)
    }

    /// The targets a planned rollout covers, checked against the plan's groups and quotas.
    async fn count_targets(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: TenantId,
        plan: &Plan,
        base: Option<&Filter>,
        retry_of: Option<RolloutId>,
        ds: DsId,
    ) -> Result<i64, EngineError> {
        let total = match (base, retry_of) {
            (_, Some(source)) => {
                let n = store::count_failed(tx, source).await?;
                plan::check_retry(n)?;
                n
            }
            (Some(f), None) => {
                let ds_type = repository::set_type_id(tx, ds.0).await?;
                store::count_matching(tx, tenant, f, ds_type).await?
            }
            (None, None) => 0,
        };
        match (&plan.custom, base) {
            (Some(custom), Some(b)) => {
                let filters = custom
                    .iter()
                    .map(|(f, _, _)| match f.trim() {
                        "" => Ok(None),
                        f => Filter::parse(Entity::Target, f)
                            .map(Some)
                            .map_err(EngineError::Query),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let sim: Vec<_> = custom
                    .iter()
                    .zip(&filters)
                    .map(|((_, pct, served), f)| (f.as_ref(), *pct, *served))
                    .collect();
                let ds_type = repository::set_type_id(tx, ds.0).await?;
                let sizes = store::simulate_custom(tx, tenant, b, ds_type, &sim).await?;
                plan::check_custom_sizes(total, &sizes)?;
            }
            _ => plan::check_auto_split(total, plan.amount)?,
        }
        Ok(total)
    }
}
