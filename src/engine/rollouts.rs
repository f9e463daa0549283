//! Rollout use cases (rollouts.md §3–§6): creation with validation, the operator operations,
//! the executor steps that fill, schedule, start, stop and delete in bounded chunks, and the
//! event-driven cascade: [`Engine::advance_rollouts`] runs inside the transaction that records
//! status reports and starts the next group the moment a threshold is crossed.
//!
//! Concurrency: every writer of a rollout — API operation, executor step, status-report batch —
//! first locks the rollout row (`FOR UPDATE`, in rollout id order), so one rollout is advanced
//! by exactly one transaction at a time across instances, and the group counters it reads are
//! a consistent snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError, config_keys};
use crate::domain::action::{ActionStatus, ActionType, SERVER_PREFIX, validate_weight};
use crate::domain::ids::TenantId;
use crate::domain::rollout::{
    self, Decision, ErrorKind, GroupStatus, Operation, Refusal, RolloutStatus, SuccessAction,
};
use crate::store::filter::{Entity, Filter};
use crate::store::outbox::Pending;
use crate::store::rollouts::{self as store, Conditions, Eligible, GroupRow, NewGroup, RolloutRow};
use crate::store::statistics::Table;
use crate::store::{StoreError, actions, repository, tenants};

/// Quotas and chunk sizes (rollouts.md §3.6, §10.3).
pub mod limits {
    /// `maxRolloutGroupsPerRollout`.
    pub const MAX_GROUPS: i64 = 500;
    /// `maxTargetsPerRolloutGroup`.
    pub const MAX_TARGETS_PER_GROUP: i64 = 20000;
    /// Members added to a group per transaction.
    pub const FILL_CHUNK: i64 = 50000;
    /// SCHEDULED actions created per transaction.
    pub const SCHEDULE_CHUNK: i64 = 20000;
    /// Actions activated per transaction by the executor.
    pub const ACTIVATE_CHUNK: i64 = 1000;
    /// Actions activated inline by the transaction that starts a group (the rest follows from
    /// the executor right after commit): keeps status ingestion fast and the first message early.
    pub const ACTIVATE_INLINE: i64 = 200;
    /// Actions deleted or cancelled per transaction on stop/delete.
    pub const STOP_CHUNK: i64 = 5000;
    /// Targets enrolled per dynamic step.
    pub const ENROL_CHUNK: i64 = 5000;
    /// Throttle after an empty dynamic enrolment (`dynamicRolloutsMinInvolvePeriodMS`).
    pub const ENROL_IDLE_MS: i64 = 60000;
}

/// A condition object of a create request (`{"condition", "expression"}`).
#[derive(Debug, Clone, Default)]
pub struct CondSpec {
    pub condition: Option<String>,
    pub expression: Option<String>,
}

/// An action object of a create request (`{"action", "expression"}`).
#[derive(Debug, Clone, Default)]
pub struct ActSpec {
    pub action: Option<String>,
    pub expression: Option<String>,
}

/// The four condition/action pairs as a request gives them.
#[derive(Debug, Clone, Default)]
pub struct CondSet {
    pub success_condition: Option<CondSpec>,
    pub success_action: Option<ActSpec>,
    pub error_condition: Option<CondSpec>,
    pub error_action: Option<ActSpec>,
}

/// A custom group of a create request (§3.4).
#[derive(Debug, Clone, Default)]
pub struct GroupSpec {
    pub name: Option<String>,
    pub description: Option<String>,
    pub target_filter: Option<String>,
    pub target_percentage: Option<f32>,
    pub confirmation_required: Option<bool>,
    pub conditions: CondSet,
}

/// `POST /rollouts` (§9.3).
#[derive(Debug, Clone, Default)]
pub struct CreateRollout {
    pub name: Option<String>,
    pub description: Option<String>,
    pub target_filter: Option<String>,
    pub ds_id: i64,
    pub amount_groups: Option<i64>,
    pub groups: Option<Vec<GroupSpec>>,
    pub action_type: ActionType,
    pub forced_time: Option<i64>,
    pub start_at: Option<i64>,
    pub weight: Option<i64>,
    pub dynamic: bool,
    /// `dynamicGroupTemplate`: (nameSuffix, targetCount).
    pub template: Option<(Option<String>, Option<i64>)>,
    pub confirmation_required: Option<bool>,
    pub conditions: CondSet,
}

fn constraint(msg: impl Into<String>) -> EngineError {
    EngineError::Constraint(msg.into())
}

/// Rollout-level pairs with the defaults of §4.1.
fn rollout_conditions(c: &CondSet) -> Result<Conditions, EngineError> {
    let (sc, se) = match &c.success_condition {
        None => ("THRESHOLD".to_owned(), "50".to_owned()),
        Some(s) => success_condition(s)?,
    };
    let (sa, sae) = match &c.success_action {
        None => ("NEXTGROUP".to_owned(), Some(String::new())),
        Some(a) => success_action(a)?,
    };
    let (ec, ee) = match &c.error_condition {
        None => ("THRESHOLD".to_owned(), "50".to_owned()),
        Some(s) => error_condition(s)?,
    };
    let (ea, eae) = match &c.error_action {
        None => ("PAUSE".to_owned(), Some(String::new())),
        Some(a) => error_action(a)?,
    };
    Ok(Conditions {
        success_condition: sc,
        success_condition_exp: se,
        success_action: sa,
        success_action_exp: sae,
        error_condition: Some(ec),
        error_condition_exp: Some(ee),
        error_action: Some(ea),
        error_action_exp: eae,
    })
}

/// Group pairs: a missing pair inherits the rollout's, except the success action, which is
/// NEXTGROUP when missing [quirk §3.4].
fn group_conditions(c: &CondSet, inherited: &Conditions) -> Result<Conditions, EngineError> {
    let mut out = inherited.clone();
    if let Some(s) = &c.success_condition {
        (out.success_condition, out.success_condition_exp) = success_condition(s)?;
    }
    match &c.success_action {
        Some(a) => (out.success_action, out.success_action_exp) = success_action(a)?,
        None => {
            out.success_action = "NEXTGROUP".to_owned();
            out.success_action_exp = None;
        }
    }
    if let Some(s) = &c.error_condition {
        let (k, e) = error_condition(s)?;
        out.error_condition = Some(k);
        out.error_condition_exp = Some(e);
    }
    if let Some(a) = &c.error_action {
        let (k, e) = error_action(a)?;
        out.error_action = Some(k);
        out.error_action_exp = e;
    }
    Ok(out)
}

fn check_len(what: &str, v: &Option<String>, max: usize) -> Result<(), EngineError> {
    match v {
        Some(s) if s.chars().count() > max => Err(constraint(format!(
            "{what} must be at most {max} characters"
        ))),
        _ => Ok(()),
    }
}

fn success_condition(s: &CondSpec) -> Result<(String, String), EngineError> {
    let kind = s.condition.clone().unwrap_or_else(|| "THRESHOLD".into());
    if kind != "THRESHOLD" {
        return Err(EngineError::NotReadable(format!(
            "unknown success condition {kind:?} (THRESHOLD)"
        )));
    }
    check_len("successCondition.expression", &s.expression, 512)?;
    Ok((kind, s.expression.clone().unwrap_or_else(|| "100".into())))
}

fn error_condition(s: &CondSpec) -> Result<(String, String), EngineError> {
    let kind = s.condition.clone().unwrap_or_else(|| "THRESHOLD".into());
    if ErrorKind::from_db(&kind).is_none() {
        return Err(EngineError::NotReadable(format!(
            "unknown error condition {kind:?} (THRESHOLD, COUNT)"
        )));
    }
    check_len("errorCondition.expression", &s.expression, 512)?;
    Ok((kind, s.expression.clone().unwrap_or_else(|| "100".into())))
}

fn success_action(a: &ActSpec) -> Result<(String, Option<String>), EngineError> {
    let kind = a.action.clone().unwrap_or_else(|| "NEXTGROUP".into());
    if SuccessAction::from_db(&kind).is_none() {
        return Err(EngineError::NotReadable(format!(
            "unknown success action {kind:?} (NEXTGROUP, PAUSE)"
        )));
    }
    check_len("successAction.expression", &a.expression, 512)?;
    Ok((kind, a.expression.clone()))
}

fn error_action(a: &ActSpec) -> Result<(String, Option<String>), EngineError> {
    let kind = a.action.clone().unwrap_or_else(|| "PAUSE".into());
    if kind != "PAUSE" {
        return Err(EngineError::NotReadable(format!(
            "unknown error action {kind:?} (PAUSE)"
        )));
    }
    check_len("errorAction.expression", &a.expression, 512)?;
    Ok((kind, a.expression.clone()))
}

fn refusal(r: Refusal) -> EngineError {
    match r {
        Refusal::IllegalState(m) => EngineError::RolloutState(m),
        Refusal::ReadOnly(m) => EngineError::ReadOnly(m),
    }
}

fn status_of(r: &RolloutRow) -> RolloutStatus {
    RolloutStatus::from_db(&r.status).unwrap_or(RolloutStatus::Finished)
}

fn flag(cfg: &BTreeMap<String, Value>, key: &str) -> bool {
    cfg.get(key).and_then(Value::as_bool).unwrap_or_else(|| {
        config_keys::DEFAULTS
            .iter()
            .find(|(k, _)| *k == key)
            .is_some_and(|(_, d)| *d)
    })
}

/// The tenant flags a rollout step needs.
#[derive(Debug, Clone, Copy)]
struct Flags {
    multi: bool,
    batch: bool,
    autoclose: bool,
    confirmation_flow: bool,
    approval: bool,
}

async fn flags(conn: &mut PgConnection, tenant: i64) -> Result<Flags, StoreError> {
    let cfg = tenants::configs(conn, TenantId(tenant)).await?;
    Ok(Flags {
        multi: flag(&cfg, config_keys::MULTI_ASSIGNMENTS),
        batch: flag(&cfg, config_keys::BATCH_ASSIGNMENTS),
        autoclose: flag(&cfg, config_keys::AUTOCLOSE),
        confirmation_flow: flag(&cfg, config_keys::CONFIRMATION_FLOW),
        approval: flag(&cfg, config_keys::ROLLOUT_APPROVAL),
    })
}

/// The rollout's base filter (none for retry rollouts, whose members come from their source).
fn base_filter(r: &RolloutRow) -> Result<Option<Filter>, EngineError> {
    if r.retry_of.is_some() {
        return Ok(None);
    }
    Ok(Some(
        Filter::parse(Entity::Target, &r.target_filter).map_err(EngineError::Query)?,
    ))
}

fn group_filter(g: &GroupRow) -> Result<Option<Filter>, EngineError> {
    if g.target_filter.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(
        Filter::parse(Entity::Target, &g.target_filter).map_err(EngineError::Query)?,
    ))
}

/// What happened in one executor step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Did some work; there may be more right away.
    More,
    /// Nothing to do now.
    Idle,
    /// Another transaction holds the rollout (a report batch, another instance): try again soon.
    Busy,
    /// Filling ended and the rollout now waits for approval: call the webhook after commit.
    AwaitsApproval,
}

/// Which activation of a group's SCHEDULED actions runs, and so how many it takes and where
/// their messages are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    /// The first chunk of a group that is starting (often inside the report batch whose report
    /// completed its parent: the cascade). Rendered in the transaction, so the messages take
    /// the publisher's fast lane right after the commit.
    Start,
    /// The executor's next chunk of a running group. Rendered by the publisher's regular
    /// rounds on their own connection: this transaction bounds a large group's dispatch rate
    /// (measured: about 15 % more deployments per second than rendering in the chunk).
    Chunk,
    /// New members of a running dynamic group, rendered in the transaction.
    Members(i64),
}

impl Activation {
    fn limit(self) -> i64 {
        match self {
            Activation::Start => limits::ACTIVATE_INLINE,
            Activation::Chunk => limits::ACTIVATE_CHUNK,
            Activation::Members(n) => n,
        }
    }
}

impl Engine {
    /// Create a rollout (§3.1). `may_approve` = the creator holds APPROVE_ROLLOUT.
    pub async fn create_rollout(
        &self,
        tenant: TenantId,
        req: CreateRollout,
        may_approve: bool,
        user: &str,
    ) -> Result<i64, EngineError> {
        self.create_rollout_inner(tenant, req, None, may_approve, user)
            .await
    }

    async fn create_rollout_inner(
        &self,
        tenant: TenantId,
        req: CreateRollout,
        retry_of: Option<i64>,
        may_approve: bool,
        user: &str,
    ) -> Result<i64, EngineError> {
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
        let base = if retry_of.is_none() {
            Some(Filter::parse(Entity::Target, &filter_text).map_err(EngineError::Query)?)
        } else {
            None
        };
        let mut tx = self.pool.begin().await?;
        // 2. The distribution set.
        store::lock_set_row(&mut tx, tenant, req.ds_id).await?;
        let set = repository::set_facts(&mut tx, tenant.0, req.ds_id)
            .await?
            .filter(|s| !s.deleted)
            .ok_or_else(|| {
                EngineError::NotFound(format!("distribution set {} not found", req.ds_id))
            })?;
        if !set.valid {
            return Err(EngineError::SetInvalid(format!(
                "distribution set {} is invalidated",
                req.ds_id
            )));
        }
        if !set.complete {
            return Err(EngineError::SetIncomplete(format!(
                "distribution set {} is incomplete",
                req.ds_id
            )));
        }
        // 3. Shape.
        if req.groups.is_some() && req.dynamic {
            return Err(constraint(
                "custom groups cannot be combined with a dynamic rollout",
            ));
        }
        if req.groups.is_some() && req.amount_groups.is_some() {
            return Err(constraint(
                "either amountGroups or groups may be given, not both",
            ));
        }
        if req.template.is_some() && !req.dynamic {
            return Err(constraint("dynamicGroupTemplate requires dynamic=true"));
        }
        // 4. Bean constraints.
        let name = req.name.clone().unwrap_or_default();
        if name.is_empty() || name.chars().count() > 128 {
            return Err(constraint("name must have 1 to 128 characters"));
        }
        check_len("description", &req.description, 512)?;
        if filter_text.chars().count() > 1024 {
            return Err(constraint(
                "targetFilterQuery must be at most 1024 characters",
            ));
        }
        let weight = validate_weight(req.weight)?;
        let conditions = rollout_conditions(&req.conditions)?;
        let cfg = flags(&mut tx, tenant.0).await?;
        let confirmation_default = req.confirmation_required.unwrap_or(cfg.confirmation_flow);
        // 5./6. Group count.
        let template = match &req.template {
            Some((suffix, count)) => {
                let count = count
                    .ok_or_else(|| constraint("dynamicGroupTemplate.targetCount is required"))?;
                Some((suffix.clone().unwrap_or_default(), count.max(1)))
            }
            None => None,
        };
        let amount = match &req.groups {
            Some(groups) => {
                if groups.is_empty() {
                    return Err(constraint("groups must not be empty"));
                }
                if groups.len() as i64 > limits::MAX_GROUPS {
                    return Err(EngineError::Quota(format!(
                        "the number of groups cannot be greater than {}",
                        limits::MAX_GROUPS
                    )));
                }
                groups.len() as i64
            }
            None => {
                let n = req.amount_groups.unwrap_or(1);
                if n < 0 {
                    return Err(constraint("amountGroups must not be negative"));
                }
                if n == 0 && !(req.dynamic && template.is_some()) {
                    return Err(constraint(
                        "amountGroups 0 requires a dynamic rollout with a dynamicGroupTemplate",
                    ));
                }
                if n > limits::MAX_GROUPS {
                    return Err(EngineError::Quota(format!(
                        "the number of groups cannot be greater than {}",
                        limits::MAX_GROUPS
                    )));
                }
                n
            }
        };
        // 8. Matching targets.
        let total = match (&base, retry_of) {
            (_, Some(source)) => {
                let n = store::count_failed(&mut tx, source).await?;
                if n == 0 {
                    return Err(constraint("No failed targets in Rollout"));
                }
                n
            }
            (Some(f), None) => {
                let ds_type = set_type(&mut tx, req.ds_id).await?;
                let n = store::count_matching(&mut tx, tenant, f, ds_type).await?;
                if n == 0 && amount > 0 {
                    return Err(constraint("Rollout does not match any existing targets"));
                }
                n
            }
            (None, None) => 0,
        };
        // 11./12. Group sizes and quotas.
        let mut groups = Vec::new();
        match &req.groups {
            None => {
                if amount > 0 && total / amount > limits::MAX_TARGETS_PER_GROUP {
                    return Err(EngineError::Quota(format!(
                        "a rollout group cannot hold more than {} targets",
                        limits::MAX_TARGETS_PER_GROUP
                    )));
                }
                let pct = 100f32 / amount.max(1) as f32;
                for i in 1..=amount {
                    groups.push(NewGroup {
                        name: format!("group-{i}"),
                        description: Some(format!("group-{i}")),
                        status: GroupStatus::Creating,
                        dynamic: false,
                        conditions: conditions.clone(),
                        target_filter: String::new(),
                        target_percentage: pct,
                        confirmation_required: confirmation_default,
                    });
                }
            }
            Some(specs) => {
                let mut names = std::collections::HashSet::new();
                let mut sim = Vec::new();
                let mut parsed = Vec::new();
                for g in specs {
                    let gname = g.name.clone().unwrap_or_default();
                    if gname.is_empty() || gname.chars().count() > 128 {
                        return Err(constraint(
                            "every group needs a name of 1 to 128 characters",
                        ));
                    }
                    if !names.insert(gname.clone()) {
                        return Err(constraint(format!("group name {gname:?} is used twice")));
                    }
                    check_len("group description", &g.description, 512)?;
                    let pct = g.target_percentage.unwrap_or(100.0);
                    if !(1.0..=100.0).contains(&pct) {
                        return Err(constraint("Target percentage has to be between 1 and 100"));
                    }
                    let gf = g.target_filter.clone().unwrap_or_default();
                    let parsed_filter = if gf.trim().is_empty() {
                        None
                    } else {
                        Some(Filter::parse(Entity::Target, &gf).map_err(EngineError::Query)?)
                    };
                    parsed.push((gf, parsed_filter, pct));
                }
                for (i, (gf, _, pct)) in parsed.iter().enumerate() {
                    let served: f64 = parsed[..i]
                        .iter()
                        .filter(|(f, _, _)| f == gf)
                        .map(|(_, _, p)| f64::from(*p))
                        .sum();
                    sim.push((parsed[i].1.as_ref(), *pct, served));
                }
                if let Some(b) = &base {
                    let ds_type = set_type(&mut tx, req.ds_id).await?;
                    let sizes = store::simulate_custom(&mut tx, tenant, b, ds_type, &sim).await?;
                    if sizes.iter().sum::<i64>() != total {
                        return Err(constraint(
                            "Rollout groups don't match all targets that are targeted by the rollout",
                        ));
                    }
                    if sizes.iter().any(|s| *s > limits::MAX_TARGETS_PER_GROUP) {
                        return Err(EngineError::Quota(format!(
                            "a rollout group cannot hold more than {} targets",
                            limits::MAX_TARGETS_PER_GROUP
                        )));
                    }
                }
                for (g, (gf, _, pct)) in specs.iter().zip(parsed) {
                    groups.push(NewGroup {
                        name: g.name.clone().unwrap_or_default(),
                        description: g.description.clone(),
                        status: GroupStatus::Creating,
                        dynamic: false,
                        conditions: group_conditions(&g.conditions, &conditions)?,
                        target_filter: gf,
                        target_percentage: pct,
                        confirmation_required: g
                            .confirmation_required
                            .unwrap_or(confirmation_default),
                    });
                }
            }
        }
        if let Some((suffix, count)) = &template {
            groups.push(NewGroup {
                name: format!("group-{}{suffix}", amount + 1),
                description: Some(format!("group-{}{suffix}", amount + 1)),
                status: GroupStatus::Ready,
                dynamic: true,
                conditions: conditions.clone(),
                target_filter: String::new(),
                target_percentage: *count as f32,
                confirmation_required: confirmation_default,
            });
        }
        // 9. Implicit lock of the set.
        let cfg_all = tenants::configs(&mut tx, tenant).await?;
        if flag(&cfg_all, config_keys::IMPLICIT_LOCK) {
            store::lock_set_implicitly(&mut tx, req.ds_id).await?;
        }
        // 13. Persist.
        let new = store::NewRollout {
            name: name.clone(),
            description: req.description.clone(),
            target_filter: match retry_of {
                Some(source) => format!("failedrollout=={source}"),
                None => filter_text,
            },
            retry_of,
            ds_id: req.ds_id,
            action_type: req.action_type.as_db().to_owned(),
            forced_time: req.forced_time.unwrap_or(0),
            start_at: req.start_at.filter(|t| *t != i64::MAX),
            weight,
            total_targets: total,
            dynamic: req.dynamic,
            conditions,
            confirmation_required: confirmation_default,
            template_suffix: template.as_ref().map(|(s, _)| s.clone()),
            template_count: template.as_ref().map(|(_, c)| *c),
            creator_may_approve: may_approve,
        };
        let id = match store::insert(&mut tx, tenant, &new, user).await {
            Err(StoreError::Conflict(_)) => {
                return Err(EngineError::Conflict(format!(
                    "a rollout named {name:?} already exists"
                )));
            }
            other => other?,
        };
        store::insert_groups(&mut tx, id, &groups, user).await?;
        tx.commit().await?;
        tracing::info!(
            rollout = id,
            total,
            groups = groups.len(),
            "rollout created"
        );
        self.rollout_wake.notify_one();
        Ok(id)
    }

    /// Retry a finished rollout over its failed targets (§3.8).
    pub async fn retry_rollout(
        &self,
        tenant: TenantId,
        id: i64,
        may_approve: bool,
        user: &str,
    ) -> Result<i64, EngineError> {
        let mut conn = self.pool.acquire().await?;
        let src = store::find(&mut conn, tenant, id)
            .await?
            .filter(|r| !r.deleted)
            .ok_or_else(|| EngineError::NotFound(format!("rollout {id} not found")))?;
        drop(conn);
        if status_of(&src) != RolloutStatus::Finished {
            return Err(EngineError::RolloutState(
                "Rollout can only be retried in state finished".into(),
            ));
        }
        let req = CreateRollout {
            name: Some(format!("{}_retry", src.name)),
            description: src.description.clone(),
            target_filter: Some(format!("failedrollout=={id}")),
            ds_id: src.ds_id,
            amount_groups: Some(1),
            action_type: ActionType::from_db(&src.action_type).unwrap_or_default(),
            forced_time: Some(src.forced_time),
            start_at: src.start_at,
            confirmation_required: Some(false),
            ..CreateRollout::default()
        };
        self.create_rollout_inner(tenant, req, Some(id), may_approve, user)
            .await
    }

    /// Start, pause, resume, stop, delete, approve, deny or trigger the next group (§4.5, §5,
    /// §6). `remark` is for approve/deny.
    pub async fn rollout_operation(
        &self,
        tenant: TenantId,
        id: i64,
        op: Operation,
        remark: Option<&str>,
        user: &str,
    ) -> Result<(), EngineError> {
        let mut tx = self.pool.begin().await?;
        let r = store::lock(&mut tx, tenant, id)
            .await?
            .filter(|r| !(r.deleted && op != Operation::Delete))
            .ok_or_else(|| EngineError::NotFound(format!("rollout {id} not found")))?;
        let status = status_of(&r);
        let next = rollout::apply_operation(status, op).map_err(refusal)?;
        let mut out = Vec::new();
        match op {
            Operation::Approve | Operation::Deny => {
                store::decide(&mut tx, id, next.as_db(), user, remark).await?;
            }
            Operation::TriggerNextGroup => {
                let groups = store::groups(&mut tx, id).await?;
                let facts: Vec<_> = groups.iter().map(GroupRow::facts).collect();
                let start = rollout::trigger_next(&facts).ok_or_else(|| {
                    EngineError::RolloutState(format!(
                        "Rollout {id} does not have any groups left to be triggered"
                    ))
                })?;
                let cfg = flags(&mut tx, r.tenant_id).await?;
                self.start_groups(&mut tx, &r, &groups, &start, cfg, &mut out)
                    .await?;
            }
            Operation::Resume => {
                let groups = store::groups(&mut tx, id).await?;
                let facts: Vec<_> = groups.iter().map(GroupRow::facts).collect();
                let start = rollout::resume_starts(&facts, r.action_type == "DOWNLOAD_ONLY");
                let cfg = flags(&mut tx, r.tenant_id).await?;
                self.start_groups(&mut tx, &r, &groups, &start, cfg, &mut out)
                    .await?;
                store::set_status(&mut tx, id, next.as_db(), user).await?;
            }
            Operation::Delete if status == RolloutStatus::Deleting => {}
            Operation::Update => {}
            _ => store::set_status(&mut tx, id, next.as_db(), user).await?,
        }
        self.commit_with_outbox(tx, out).await?;
        tracing::info!(rollout = id, ?op, from = %status, to = %next, "rollout operation");
        self.rollout_wake.notify_one();
        Ok(())
    }

    /// Rename / redescribe (`PUT /rollouts/{id}`): allowed except while deleting/deleted.
    pub async fn update_rollout(
        &self,
        tenant: TenantId,
        id: i64,
        name: Option<String>,
        description: Option<String>,
        user: &str,
    ) -> Result<(), EngineError> {
        if let Some(n) = &name
            && (n.is_empty() || n.chars().count() > 128)
        {
            return Err(constraint("name must have 1 to 128 characters"));
        }
        check_len("description", &description, 512)?;
        let mut tx = self.pool.begin().await?;
        let r = store::lock(&mut tx, tenant, id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("rollout {id} not found")))?;
        rollout::apply_operation(status_of(&r), Operation::Update).map_err(refusal)?;
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

    /// Inside a status-report transaction, after the reports were applied: evaluate the running
    /// rollouts among `rollouts` from their group counters and act at once — start the next
    /// group, finish groups, pause on errors, finish the rollout (§4.2 [ours: event-driven]).
    ///
    /// The rollout rows are taken last and only if free (`SKIP LOCKED`): a report batch never
    /// waits for a rollout, so it neither stalls behind an executor step nor starves it (the
    /// executor, which locks a rollout before its actions, can then never deadlock with it).
    /// A rollout held elsewhere is evaluated by the executor, woken after this commit.
    pub(super) async fn advance_rollouts(
        &self,
        conn: &mut PgConnection,
        rollouts: &[i64],
        out: &mut Vec<Pending>,
    ) -> Result<(), EngineError> {
        let locked = store::try_lock_many(conn, rollouts).await?;
        if locked.len() < rollouts.len() {
            self.rollout_kick
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        for r in &locked {
            if status_of(r) != RolloutStatus::Running {
                continue;
            }
            let groups = store::groups(conn, r.id).await?;
            let cfg = flags(conn, r.tenant_id).await?;
            if self.evaluate_and_apply(conn, r, &groups, cfg, out).await? {
                self.rollout_kick
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Evaluate a RUNNING rollout and apply the decision. True when something changed.
    async fn evaluate_and_apply(
        &self,
        conn: &mut PgConnection,
        r: &RolloutRow,
        groups: &[GroupRow],
        cfg: Flags,
        out: &mut Vec<Pending>,
    ) -> Result<bool, EngineError> {
        let facts: Vec<_> = groups.iter().map(GroupRow::facts).collect();
        let d: Decision = rollout::evaluate(&facts, r.dynamic, r.action_type == "DOWNLOAD_ONLY");
        if d.is_empty() {
            return Ok(false);
        }
        for (g, total) in &d.shrink {
            store::shrink_group(conn, *g, *total).await?;
        }
        for status in [GroupStatus::Error, GroupStatus::Finished] {
            let ids: Vec<i64> = d
                .group_status
                .iter()
                .filter(|(_, s)| *s == status)
                .map(|(g, _)| *g)
                .collect();
            store::set_group_status(conn, &ids, status.as_db()).await?;
        }
        self.start_groups(conn, r, groups, &d.start, cfg, out)
            .await?;
        if d.pause {
            store::set_status(conn, r.id, RolloutStatus::Paused.as_db(), "system").await?;
            tracing::warn!(rollout = r.id, "rollout paused by a group condition");
        } else if d.finish {
            store::set_status(conn, r.id, RolloutStatus::Finished.as_db(), "system").await?;
            tracing::info!(rollout = r.id, "rollout finished");
        }
        if !d.start.is_empty() {
            tracing::info!(rollout = r.id, groups = ?d.start, "groups started");
        }
        Ok(true)
    }

    /// Start groups: RUNNING, and the first chunk of their actions activated right here.
    async fn start_groups(
        &self,
        conn: &mut PgConnection,
        r: &RolloutRow,
        groups: &[GroupRow],
        start: &[i64],
        cfg: Flags,
        out: &mut Vec<Pending>,
    ) -> Result<(), EngineError> {
        if start.is_empty() {
            return Ok(());
        }
        store::set_group_status(conn, start, GroupStatus::Running.as_db()).await?;
        for g in groups.iter().filter(|g| start.contains(&g.id)) {
            let n = self
                .activate(conn, r, g, Activation::Start, cfg, out)
                .await?;
            if n as i64 == Activation::Start.limit() {
                // More to activate: the executor goes on right after this commit.
                self.rollout_kick
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Activate SCHEDULED actions of a running group (§4.6 B). Returns how many.
    async fn activate(
        &self,
        conn: &mut PgConnection,
        r: &RolloutRow,
        g: &GroupRow,
        which: Activation,
        cfg: Flags,
        out: &mut Vec<Pending>,
    ) -> Result<usize, EngineError> {
        let hint = self.activation_hint(g.id);
        let mut batch = store::lock_scheduled(conn, g.id, hint, which.limit()).await?;
        if batch.is_empty() && hint > 0 && g.n_scheduled > 0 {
            // The hint ran ahead (a chunk rolled back): start over.
            batch = store::lock_scheduled(conn, g.id, 0, which.limit()).await?;
        }
        let Some(last) = batch.last() else {
            return Ok(0);
        };
        self.set_activation_hint(g.id, last.id);
        let single = !cfg.multi;
        let mut updates = actions::ActionUpdates::default();
        let mut history = actions::NewHistory::default();
        let mut started = Vec::new();
        let mut started_targets = Vec::new();
        let initiated = format!(
            "{SERVER_PREFIX}Initiated by Rollout Group '{}' [Rollout {}:{}]",
            g.name, r.name, r.id
        );
        for a in &batch {
            if single && a.assigned_ds_id == Some(r.ds_id) {
                updates.id.push(a.id);
                updates
                    .status
                    .push(ActionStatus::Finished.as_db().to_owned());
                updates.active.push(false);
                history.push(
                    a.id,
                    ActionStatus::Running.as_db(),
                    None,
                    &[format!(
                        "{SERVER_PREFIX}Distribution Set is already assigned. Skipping this action."
                    )],
                );
                continue;
            }
            let waits = cfg.confirmation_flow && g.confirmation_required && !a.auto_confirm;
            let status = if waits {
                ActionStatus::WaitForConfirmation
            } else {
                ActionStatus::Running
            };
            updates.id.push(a.id);
            updates.status.push(status.as_db().to_owned());
            updates.active.push(true);
            let mut messages = vec![initiated.clone()];
            if cfg.confirmation_flow && !waits {
                messages.push(format!(
                    "{SERVER_PREFIX}Assignment confirmed {}",
                    if a.auto_confirm {
                        "by auto-confirmation"
                    } else {
                        "as no confirmation is required"
                    }
                ));
            }
            history.push(a.id, status.as_db(), None, &messages);
            started.push(a.id);
            started_targets.push(a.target_id);
        }
        // Cancellations of superseded actions first: the devices hear of them before (or, while
        // they are pending, instead of) the new deployment.
        let mut mine = Vec::new();
        if single && !started_targets.is_empty() {
            self.supersede(conn, &started_targets, &started, cfg.autoclose, &mut mine)
                .await?;
        }
        actions::update_states_keep_reports(conn, &updates).await?;
        actions::insert_history(conn, &history).await?;
        actions::assign_targets(conn, &started_targets, r.ds_id, false).await?;
        if !started.is_empty() {
            if cfg.batch {
                mine.push(Pending::Batch(started.clone()));
            } else {
                mine.extend(started.iter().map(|id| Pending::Action(*id)));
            }
        }
        match which {
            Activation::Chunk => out.extend(mine),
            Activation::Start | Activation::Members(_) => {
                out.extend(self.prerender(conn, &mine).await?)
            }
        }
        Ok(batch.len())
    }

    /// One executor step for a rollout: lock it (skipping it when another worker holds it), do
    /// one bounded unit of work, commit.
    async fn step(&self, id: i64) -> Result<Step, EngineError> {
        let started = std::time::Instant::now();
        let mut tx = self.pool.begin().await?;
        let Some(r) = store::try_lock(&mut tx, id).await? else {
            tracing::debug!(rollout = id, "rollout step: busy");
            return Ok(Step::Busy);
        };
        let mut out = Vec::new();
        let cfg = flags(&mut tx, r.tenant_id).await?;
        let step = match status_of(&r) {
            RolloutStatus::Creating => self.step_creating(&mut tx, &r, cfg).await?,
            RolloutStatus::Ready => {
                let now = crate::store::now_ms(&mut tx).await?;
                if r.start_at.is_some_and(|t| t <= now) {
                    store::set_status(&mut tx, r.id, RolloutStatus::Starting.as_db(), "system")
                        .await?;
                    Step::More
                } else {
                    Step::Idle
                }
            }
            RolloutStatus::Starting => self.step_starting(&mut tx, &r, cfg).await?,
            RolloutStatus::Running => self.step_running(&mut tx, &r, cfg, &mut out).await?,
            // A group that started before the pause still gets all its actions activated.
            RolloutStatus::Paused => self.step_activate(&mut tx, &r, cfg, &mut out).await?,
            RolloutStatus::Stopping => self.step_stopping(&mut tx, &r, &mut out).await?,
            RolloutStatus::Deleting => self.step_deleting(&mut tx, &r, &mut out).await?,
            _ => Step::Idle,
        };
        let messages = out.len();
        self.commit_with_outbox(tx, out).await?;
        tracing::debug!(
            rollout = id,
            ?step,
            messages,
            elapsed_us = started.elapsed().as_micros() as u64,
            "rollout step"
        );
        if step == Step::AwaitsApproval {
            self.notify_approval_needed(&r).await;
        }
        Ok(step)
    }

    /// CREATING: fill the first group that is not READY by one chunk; when all are READY,
    /// decide approval (§3.5, §5).
    async fn step_creating(
        &self,
        conn: &mut PgConnection,
        r: &RolloutRow,
        cfg: Flags,
    ) -> Result<Step, EngineError> {
        let groups = store::groups(conn, r.id).await?;
        let base = base_filter(r)?;
        let Some(pos) = groups
            .iter()
            .position(|g| g.status() == GroupStatus::Creating)
        else {
            // Every group is READY.
            store::total_from_groups(conn, r.id).await?;
            if r.dynamic && !groups.iter().any(|g| g.dynamic) {
                self.append_dynamic_group(conn, r, &groups, GroupStatus::Ready)
                    .await?;
            }
            let next = if cfg.approval && !r.creator_may_approve {
                RolloutStatus::WaitingForApproval
            } else {
                RolloutStatus::Ready
            };
            store::set_status(conn, r.id, next.as_db(), "system").await?;
            tracing::info!(rollout = r.id, status = %next, "rollout filled");
            return Ok(if next == RolloutStatus::WaitingForApproval {
                Step::AwaitsApproval
            } else {
                Step::More
            });
        };
        let g = &groups[pos];
        let gf = group_filter(g)?;
        let e = Eligible {
            tenant: r.tenant_id,
            rollout: r,
            base: base.as_ref(),
            group: gf.as_ref(),
            cutoff: true,
        };
        // Groups that share the empty filter with every earlier group take the eligible targets
        // in id order one after the other: their sizes follow from one count, and each group
        // continues after the highest member so far (no re-scan of earlier members).
        let plain_prefix = r.retry_of.is_none()
            && groups[..=pos]
                .iter()
                .all(|x| x.target_filter.trim().is_empty() && !x.dynamic);
        let planned = match g.planned_size {
            Some(p) => p,
            None if plain_prefix => {
                let statics: Vec<&GroupRow> = groups
                    .iter()
                    .take_while(|x| x.target_filter.trim().is_empty() && !x.dynamic)
                    .collect();
                let remaining = store::count_eligible(conn, &e, g.id).await?;
                // Sizes of this group and the following plain groups, computed once.
                let mut served: f64 = groups[..pos]
                    .iter()
                    .map(|x| f64::from(x.target_percentage))
                    .sum();
                let mut left = remaining;
                let mut ids = Vec::new();
                let mut sizes = Vec::new();
                for x in &statics[pos..] {
                    let size = rollout::group_size(x.target_percentage, served, left).min(left);
                    ids.push(x.id);
                    sizes.push(size);
                    left -= size;
                    served += f64::from(x.target_percentage);
                }
                store::set_planned_sizes(conn, &ids, &sizes).await?;
                sizes[0]
            }
            None => {
                let remaining = store::count_eligible(conn, &e, g.id).await?;
                let served: f64 = groups[..pos]
                    .iter()
                    .filter(|x| x.target_filter == g.target_filter)
                    .map(|x| f64::from(x.target_percentage))
                    .sum();
                let size =
                    rollout::group_size(g.target_percentage, served, remaining).min(remaining);
                store::set_planned_sizes(conn, &[g.id], &[size]).await?;
                size
            }
        };
        let (have, own_max) = store::members(conn, g.id).await?;
        let to_add = planned - have;
        if to_add <= 0 {
            store::group_ready(conn, g.id, have).await?;
            return Ok(Step::More);
        }
        let (mut after, exclusive) = if plain_prefix {
            (store::max_member(conn, r.id).await?, false)
        } else {
            (own_max, true)
        };
        // One step adds up to FILL_CHUNK members, scanning windows of target ids until it has
        // them or the tenant's targets are exhausted.
        let want = to_add.min(limits::FILL_CHUNK);
        let mut added = 0;
        let mut window = (want * 2).clamp(1000, 200000);
        let exhausted = loop {
            let f =
                store::fill_chunk(conn, &e, g.id, after, want - added, window, exclusive).await?;
            added += f.added;
            if added >= want {
                break false;
            }
            if f.scanned < window {
                break true;
            }
            after = f.scanned_to;
            window = (window * 2).min(1000000);
        };
        self.note_growth(Table::RolloutTargetGroup, added);
        if exhausted || added == to_add {
            store::group_ready(conn, g.id, have + added).await?;
        }
        Ok(Step::More)
    }

    /// Append a dynamic group after the last one (§3.7): size of the template or of the last
    /// static group, filter and conditions copied.
    async fn append_dynamic_group(
        &self,
        conn: &mut PgConnection,
        r: &RolloutRow,
        groups: &[GroupRow],
        status: GroupStatus,
    ) -> Result<(), EngineError> {
        let count = groups.len() as i64;
        if count >= limits::MAX_GROUPS {
            tracing::warn!(rollout = r.id, "dynamic rollout reached the group quota");
            return Ok(());
        }
        let last = groups.last();
        let suffix = r.template_suffix.clone().unwrap_or_default();
        let (size, filter, conditions, confirm) = match last {
            Some(l) if l.dynamic || r.template_count.is_none() => (
                if l.dynamic {
                    l.target_percentage
                } else {
                    l.total_targets.max(1) as f32
                },
                l.target_filter.clone(),
                Conditions {
                    success_condition: l.success_condition.clone(),
                    success_condition_exp: l.success_condition_exp.clone(),
                    success_action: l.success_action.clone(),
                    success_action_exp: l.success_action_exp.clone(),
                    error_condition: l.error_condition.clone(),
                    error_condition_exp: l.error_condition_exp.clone(),
                    error_action: l.error_action.clone(),
                    error_action_exp: l.error_action_exp.clone(),
                },
                l.confirmation_required,
            ),
            _ => (
                r.template_count.unwrap_or(1) as f32,
                String::new(),
                Conditions {
                    success_condition: r.success_condition.clone(),
                    success_condition_exp: r.success_condition_exp.clone(),
                    success_action: r.success_action.clone(),
                    success_action_exp: r.success_action_exp.clone(),
                    error_condition: r.error_condition.clone(),
                    error_condition_exp: r.error_condition_exp.clone(),
                    error_action: r.error_action.clone(),
                    error_action_exp: r.error_action_exp.clone(),
                },
                r.confirmation_required,
            ),
        };
        let name = format!("group-{}{suffix}", count + 1);
        store::insert_groups(
            conn,
            r.id,
            &[NewGroup {
                name: name.clone(),
                description: Some(name),
                status,
                dynamic: true,
                conditions,
                target_filter: filter,
                target_percentage: size,
                confirmation_required: confirm,
            }],
            "system",
        )
        .await?;
        Ok(())
    }

    /// STARTING: create the SCHEDULED actions of the first READY group by one chunk; when no
    /// READY group is left, start the first group (§4.6).
    async fn step_starting(
        &self,
        conn: &mut PgConnection,
        r: &RolloutRow,
        cfg: Flags,
    ) -> Result<Step, EngineError> {
        let groups = store::groups(conn, r.id).await?;
        if let Some(g) = groups
            .iter()
            .find(|g| g.status() == GroupStatus::Ready && !g.dynamic)
        {
            let mut after = store::max_scheduled_target(conn, g.id).await?;
            loop {
                let s = store::schedule_chunk(
                    conn,
                    r,
                    g.id,
                    after,
                    limits::SCHEDULE_CHUNK,
                    !cfg.multi,
                    self.settings.max_actions_per_target,
                )
                .await?;
                self.note_growth(Table::Action, s.created);
                if s.members < limits::SCHEDULE_CHUNK {
                    store::set_group_status(conn, &[g.id], GroupStatus::Scheduled.as_db()).await?;
                    break;
                }
                if s.created > 0 {
                    break;
                }
                // A whole chunk of targets at their action quota: move on within this step.
                after = s.last_member;
            }
            return Ok(Step::More);
        }
        // Dynamic groups created READY wait SCHEDULED for their turn.
        let ready_dynamic: Vec<i64> = groups
            .iter()
            .filter(|g| g.status() == GroupStatus::Ready && g.dynamic)
            .map(|g| g.id)
            .collect();
        store::set_group_status(conn, &ready_dynamic, GroupStatus::Scheduled.as_db()).await?;
        if let Some(first) = groups.first() {
            store::set_group_status(conn, &[first.id], GroupStatus::Running.as_db()).await?;
        }
        store::set_status(conn, r.id, RolloutStatus::Running.as_db(), "system").await?;
        tracing::info!(rollout = r.id, "rollout running");
        Ok(Step::More)
    }

    /// RUNNING: activate SCHEDULED actions of running groups, enrol new targets of a dynamic
    /// rollout, and evaluate (the safety net behind the event-driven cascade).
    async fn step_running(
        &self,
        conn: &mut PgConnection,
        r: &RolloutRow,
        cfg: Flags,
        out: &mut Vec<Pending>,
    ) -> Result<Step, EngineError> {
        if self.step_activate(conn, r, cfg, out).await? == Step::More {
            return Ok(Step::More);
        }
        let groups = store::groups(conn, r.id).await?;
        let mut changed = false;
        if r.dynamic {
            changed |= self.enrol(conn, r, &groups, cfg, out).await?;
        }
        let groups = if changed {
            store::groups(conn, r.id).await?
        } else {
            groups
        };
        changed |= self.evaluate_and_apply(conn, r, &groups, cfg, out).await?;
        Ok(if changed { Step::More } else { Step::Idle })
    }

    /// Activate the next chunk of SCHEDULED actions of a running group, if any.
    async fn step_activate(
        &self,
        conn: &mut PgConnection,
        r: &RolloutRow,
        cfg: Flags,
        out: &mut Vec<Pending>,
    ) -> Result<Step, EngineError> {
        let groups = store::groups(conn, r.id).await?;
        match groups
            .iter()
            .find(|g| g.status() == GroupStatus::Running && g.n_scheduled > 0)
        {
            Some(g) => {
                self.activate(conn, r, g, Activation::Chunk, cfg, out)
                    .await?;
                Ok(Step::More)
            }
            None => Ok(Step::Idle),
        }
    }

    /// Dynamic enrolment (§3.7, with §12 #13: evaluation still runs in the same step).
    async fn enrol(
        &self,
        conn: &mut PgConnection,
        r: &RolloutRow,
        groups: &[GroupRow],
        cfg: Flags,
        out: &mut Vec<Pending>,
    ) -> Result<bool, EngineError> {
        let now = crate::store::now_ms(&mut *conn).await?;
        if r.last_empty_enrolment
            .is_some_and(|t| now - t < self.settings.enrol_idle_ms)
        {
            return Ok(false);
        }
        let Some(last) = groups.last() else {
            return Ok(false);
        };
        let planned = (last.target_percentage as i64).max(1);
        if last.total_targets >= planned || last.status() == GroupStatus::Finished {
            if groups.len() as i64 >= limits::MAX_GROUPS {
                return Ok(false);
            }
            self.append_dynamic_group(conn, r, groups, GroupStatus::Scheduled)
                .await?;
            return Ok(true);
        }
        let base = base_filter(r)?;
        let gf = group_filter(last)?;
        let e = Eligible {
            tenant: r.tenant_id,
            rollout: r,
            base: base.as_ref(),
            group: gf.as_ref(),
            cutoff: false,
        };
        let want = (planned - last.total_targets).min(limits::ENROL_CHUNK);
        let ids = store::enrol_dynamic(conn, &e, last.id, want, !cfg.multi).await?;
        if ids.is_empty() {
            store::set_last_empty_enrolment(conn, r.id, Some(now)).await?;
            return Ok(false);
        }
        if r.last_empty_enrolment.is_some() {
            store::set_last_empty_enrolment(conn, r.id, None).await?;
        }
        tracing::info!(
            rollout = r.id,
            group = last.id,
            enrolled = ids.len(),
            "dynamic enrolment"
        );
        if last.status() == GroupStatus::Running {
            let fresh = store::groups(conn, r.id).await?;
            if let Some(g) = fresh.iter().find(|g| g.id == last.id) {
                self.activate(conn, r, g, Activation::Members(ids.len() as i64), cfg, out)
                    .await?;
            }
        }
        Ok(true)
    }

    /// STOPPING (§6.3): delete SCHEDULED actions, finish groups, cancel active actions (with a
    /// cancel message each), then STOPPED.
    async fn step_stopping(
        &self,
        conn: &mut PgConnection,
        r: &RolloutRow,
        out: &mut Vec<Pending>,
    ) -> Result<Step, EngineError> {
        let deleted = store::delete_scheduled(conn, r.id, limits::STOP_CHUNK).await?;
        if deleted as i64 == limits::STOP_CHUNK {
            return Ok(Step::More);
        }
        store::finish_open_groups(conn, r.id).await?;
        let open = store::lock_active(conn, r.id, limits::STOP_CHUNK, false).await?;
        if !open.is_empty() {
            let ids: Vec<i64> = open.iter().map(|(id, _)| *id).collect();
            set_by_server(
                conn,
                &ids,
                ActionStatus::Canceling,
                "A cancellation has been performed by server.",
            )
            .await?;
            out.extend(ids.iter().map(|id| Pending::Action(*id)));
            if open.len() as i64 == limits::STOP_CHUNK {
                return Ok(Step::More);
            }
        }
        store::set_status(conn, r.id, RolloutStatus::Stopped.as_db(), "system").await?;
        tracing::info!(rollout = r.id, "rollout stopped");
        Ok(Step::More)
    }

    /// DELETING (§6.4): hard delete when the rollout never reached a device, else remove
    /// SCHEDULED actions, force-close active ones silently, then DELETED (soft).
    async fn step_deleting(
        &self,
        conn: &mut PgConnection,
        r: &RolloutRow,
        out: &mut Vec<Pending>,
    ) -> Result<Step, EngineError> {
        let deleted = store::delete_scheduled(conn, r.id, limits::STOP_CHUNK).await?;
        if deleted as i64 == limits::STOP_CHUNK {
            return Ok(Step::More);
        }
        let (any, started) = store::action_presence(conn, r.id).await?;
        if !any || !started {
            if any {
                return Ok(Step::More);
            }
            store::hard_delete(conn, r.id).await?;
            tracing::info!(rollout = r.id, "rollout deleted");
            return Ok(Step::Idle);
        }
        store::finish_open_groups(conn, r.id).await?;
        let open = store::lock_active(conn, r.id, limits::STOP_CHUNK, true).await?;
        if !open.is_empty() {
            let ids: Vec<i64> = open.iter().map(|(id, _)| *id).collect();
            let mut targets: Vec<i64> = open.iter().map(|(_, t)| *t).collect();
            set_by_server(
                conn,
                &ids,
                ActionStatus::Canceled,
                "A force quit has been performed by server.",
            )
            .await?;
            targets.sort_unstable();
            targets.dedup();
            store::reset_assigned(conn, &targets).await?;
            // Devices are not told (§6.4), but a device whose action was closed may now work
            // on its next one.
            out.extend(targets.iter().map(|t| Pending::Target(*t)));
            if open.len() as i64 == limits::STOP_CHUNK {
                return Ok(Step::More);
            }
        }
        store::set_status(conn, r.id, RolloutStatus::Deleted.as_db(), "system").await?;
        tracing::info!(rollout = r.id, "rollout soft-deleted");
        Ok(Step::Idle)
    }

    /// Tell the approval webhook (service.md `DMF_APPROVAL_WEBHOOK`) that a rollout waits.
    async fn notify_approval_needed(&self, r: &RolloutRow) {
        let Some(url) = self.settings.approval_webhook.clone() else {
            return;
        };
        let tenant = {
            let mut conn = match self.pool.acquire().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error.message = %e, "approval webhook: no database");
                    return;
                }
            };
            tenants::name_of(&mut conn, TenantId(r.tenant_id))
                .await
                .unwrap_or_default()
        };
        let base = self.settings.public_url.trim_end_matches('/').to_owned();
        let body = json!({
            "event": "rollout.approval_required",
            "rolloutId": r.id,
            "name": r.name,
            "tenant": tenant,
            "createdBy": r.created_by,
            "distributionSetId": r.ds_id,
            "totalTargets": r.total_targets,
            "_links": {
                "self": {"href": format!("{base}/rest/v1/rollouts/{}", r.id)},
                "approve": {"href": format!("{base}/rest/v1/rollouts/{}/approve", r.id)},
                "deny": {"href": format!("{base}/rest/v1/rollouts/{}/deny", r.id)},
            }
        });
        let client = self.http.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            for attempt in 1..=5 {
                match client.post(&url).json(&body).send().await {
                    Ok(resp) if resp.status().is_success() => {
                        tracing::info!(url = %url, "approval webhook delivered");
                        return;
                    }
                    Ok(resp) => {
                        tracing::warn!(url = %url, status = %resp.status(), attempt, "approval webhook refused");
                    }
                    Err(e) => {
                        tracing::warn!(url = %url, error.message = %e, attempt, "approval webhook failed");
                    }
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        });
    }

    /// Run every rollout with work until it has none. Returns the steps taken and whether some
    /// rollout was busy elsewhere (worth another pass soon).
    pub async fn run_rollout_steps(&self) -> Result<(usize, bool), EngineError> {
        let ids = {
            let mut conn = self.pool.acquire().await?;
            store::with_work(&mut conn).await?
        };
        let mut steps = 0;
        let mut busy = false;
        for id in ids {
            loop {
                match self.step(id).await {
                    Ok(Step::More | Step::AwaitsApproval) => steps += 1,
                    Ok(Step::Idle) => break,
                    Ok(Step::Busy) => {
                        busy = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(rollout = id, error.message = %e, "rollout step failed");
                        break;
                    }
                }
            }
        }
        Ok((steps, busy))
    }
}

/// The rollout executor: runs steps whenever woken (API operations, reports that started a
/// group) and on a timer for `startAt` and missed wake-ups; soon again when a rollout was held
/// by another transaction.
pub async fn run_executor(engine: Arc<Engine>, tick: Duration, token: CancellationToken) {
    let wake = engine.rollout_wake.clone();
    loop {
        let pause = match engine.run_rollout_steps().await {
            Ok((_, true)) => Duration::from_millis(20).min(tick),
            Ok(_) => tick,
            Err(e) => {
                tracing::warn!(error.message = %e, "rollout executor pass failed");
                tick
            }
        };
        tokio::select! {
            _ = token.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Set actions to a status decided by the server, with the history entry saying so.
async fn set_by_server(
    conn: &mut PgConnection,
    ids: &[i64],
    status: ActionStatus,
    message: &str,
) -> Result<(), StoreError> {
    let mut updates = actions::ActionUpdates::default();
    let mut history = actions::NewHistory::default();
    let message = [format!("{SERVER_PREFIX}{message}")];
    for id in ids {
        updates.id.push(*id);
        updates.status.push(status.as_db().to_owned());
        updates.active.push(status != ActionStatus::Canceled);
        history.push(*id, status.as_db(), None, &message);
    }
    actions::update_states_keep_reports(conn, &updates).await?;
    actions::insert_history(conn, &history).await
}

async fn set_type(conn: &mut PgConnection, ds: i64) -> Result<i64, StoreError> {
    repository::set_type_id(conn, ds).await
}

/// Progress (§8) of a rollout from its groups' counters.
pub fn rollout_progress(r: &RolloutRow, groups: &[GroupRow]) -> rollout::Progress {
    let mut c = rollout::Counts::default();
    for g in groups {
        c.add(&g.counts());
    }
    c.buckets(r.total_targets, r.action_type == "DOWNLOAD_ONLY")
}

/// Progress of one group.
pub fn group_progress(r: &RolloutRow, g: &GroupRow) -> rollout::Progress {
    g.counts()
        .buckets(g.total_targets, r.action_type == "DOWNLOAD_ONLY")
}
