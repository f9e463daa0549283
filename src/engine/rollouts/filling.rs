//! The chunked units of work behind the machine's commands that move targets and actions:
//! filling a static group (§3.5), creating its SCHEDULED actions (§4.6 A), dynamic enrolment
//! and appending dynamic groups (§3.7), and stopping or deleting a rollout's actions (§6.3,
//! §6.4). Each does one bounded chunk per transaction and reports how far it got.

use sqlx::PgConnection;

use super::activation::set_by_server;
use super::{Flags, limits};
use crate::domain::action::ActionStatus;
use crate::domain::ids::{ActionId, GroupId};
use crate::domain::rollout::plan::{self, PlannedGroup};
use crate::domain::rollout::{Event, Group, GroupState, Rollout};
use crate::engine::action_ops::purge_keep;
use crate::engine::{Engine, EngineError};
use crate::store::action_deletes;
use crate::store::filter::{Entity, Filter};
use crate::store::outbox::Pending;
use crate::store::rollouts::{self as store, Eligible};
use crate::store::statistics::Table;

/// The rollout's base filter (none for retry rollouts, whose members come from their source).
pub(super) fn base_filter(r: &Rollout) -> Result<Option<Filter>, EngineError> {
    if r.retry_of.is_some() {
        return Ok(None);
    }
    Ok(Some(
        Filter::parse(Entity::Target, &r.target_filter).map_err(EngineError::Query)?,
    ))
}

/// The two filters a group's eligible targets match: the rollout's and the group's own.
fn filters(r: &Rollout, g: &Group) -> Result<[Option<Filter>; 2], EngineError> {
    Ok([base_filter(r)?, group_filter(g)?])
}

fn group_filter(g: &Group) -> Result<Option<Filter>, EngineError> {
    if !g.has_filter() {
        return Ok(None);
    }
    Ok(Some(
        Filter::parse(Entity::Target, &g.target_filter).map_err(EngineError::Query)?,
    ))
}

impl Engine {
    /// Add the next chunk of members to a CREATING group. Returns its members so far and
    /// whether it has all it will get.
    pub(super) async fn fill(
        &self,
        conn: &mut PgConnection,
        r: &Rollout,
        groups: &[Group],
        group: GroupId,
    ) -> Result<(i64, bool), EngineError> {
        let Some(pos) = groups.iter().position(|g| g.id == group) else {
            return Ok((0, false));
        };
        let g = &groups[pos];
        let [base, own] = filters(r, g)?;
        let e = Eligible::new(r, base.as_ref(), own.as_ref(), true);
        // Groups that share the empty filter with every earlier group take the eligible targets
        // in id order one after the other: their sizes follow from one count, and each group
        // continues after the highest member so far (no re-scan of earlier members).
        let plain = |x: &Group| !x.has_filter() && !x.dynamic;
        let plain_prefix = r.retry_of.is_none() && groups[..=pos].iter().all(plain);
        let planned = match g.planned_size {
            Some(p) => p,
            None if plain_prefix => {
                let statics: Vec<&Group> = groups.iter().take_while(|x| plain(x)).collect();
                let remaining = store::count_eligible(conn, &e, g.id).await?;
                // Sizes of this group and the following plain groups, computed once.
                let served: f64 = groups[..pos]
                    .iter()
                    .map(|x| f64::from(x.target_percentage))
                    .sum();
                let pcts: Vec<f32> = statics[pos..].iter().map(|x| x.target_percentage).collect();
                let ids: Vec<GroupId> = statics[pos..].iter().map(|x| x.id).collect();
                let sizes = plan::consecutive_sizes(&pcts, served, remaining);
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
                let size = plan::group_size(g.target_percentage, served, remaining).min(remaining);
                store::set_planned_sizes(conn, &[g.id], &[size]).await?;
                size
            }
        };
        let (have, own_max) = store::members(conn, g.id).await?;
        let to_add = planned - have;
        if to_add <= 0 {
            return Ok((have, true));
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
        self.note_growth(r.id, Table::RolloutTargetGroup, added);
        Ok((have + added, exhausted || added == to_add))
    }

    /// Create the next chunk of SCHEDULED actions of a READY group. True when every member has
    /// its action (or was left out at its action quota).
    pub(super) async fn schedule(
        &self,
        conn: &mut PgConnection,
        r: &Rollout,
        group: GroupId,
        cfg: Flags,
    ) -> Result<bool, EngineError> {
        let mut after = store::max_scheduled_target(conn, group).await?;
        let quota = self.settings.max_actions_per_target;
        let purge = purge_keep(quota, cfg.purge_percent, 1).is_some();
        loop {
            if purge {
                // The tenant wants room made rather than targets left out: the chunk's members
                // at their quota lose their oldest closed actions first.
                let full = action_deletes::group_members_at_quota(
                    conn,
                    group.0,
                    after,
                    limits::SCHEDULE_CHUNK,
                    quota,
                )
                .await?;
                self.purge_at_quota(conn, r.tenant, &full, 1, cfg.purge_percent)
                    .await?;
            }
            let s = store::schedule_chunk(
                conn,
                r,
                group,
                after,
                limits::SCHEDULE_CHUNK,
                !cfg.multi,
                quota,
            )
            .await?;
            self.note_growth(r.id, Table::Action, s.created);
            let left_out = s.members - s.created;
            if left_out > 0 {
                tracing::warn!(
                    rollout = %r.id,
                    group = %group,
                    left_out,
                    members = s.members,
                    quota,
                    "targets at their action quota left out of the rollout"
                );
            }
            if s.members < limits::SCHEDULE_CHUNK {
                return Ok(true);
            }
            if s.created > 0 {
                return Ok(false);
            }
            // A whole chunk of targets at their action quota: move on within this step.
            after = s.last_member;
        }
    }

    /// Enrol up to `want` new targets into a dynamic group (§3.7). Returns how many.
    pub(super) async fn enrol(
        &self,
        conn: &mut PgConnection,
        r: &Rollout,
        g: &Group,
        want: i64,
        cfg: Flags,
    ) -> Result<i64, EngineError> {
        let [base, own] = filters(r, g)?;
        let e = Eligible::new(r, base.as_ref(), own.as_ref(), false);
        let ids = store::enrol_dynamic(conn, &e, g.id, want, !cfg.multi).await?;
        if !ids.is_empty() {
            tracing::info!(
                rollout = %r.id,
                group = %g.id,
                enrolled = ids.len(),
                "dynamic enrolment"
            );
        }
        Ok(ids.len() as i64)
    }

    /// Append a dynamic group after the last one (§3.7): size of the template or of the last
    /// static group, filter and conditions copied.
    pub(super) async fn append_dynamic_group(
        &self,
        conn: &mut PgConnection,
        r: &Rollout,
        groups: &[Group],
        state: GroupState,
    ) -> Result<(), EngineError> {
        let count = groups.len() as i64;
        if count >= limits::MAX_GROUPS {
            tracing::warn!(rollout = %r.id, "dynamic rollout reached the group quota");
            return Ok(());
        }
        let template_count = r.dynamic.as_ref().and_then(|t| t.count);
        let suffix = r
            .dynamic
            .as_ref()
            .map(|t| t.suffix.clone())
            .unwrap_or_default();
        let (size, filter, conditions, confirm) = match groups.last() {
            Some(l) if l.dynamic || template_count.is_none() => (
                if l.dynamic {
                    l.target_percentage
                } else {
                    l.total_targets.max(1) as f32
                },
                l.target_filter.clone(),
                l.conditions.clone(),
                l.confirmation_required,
            ),
            _ => (
                template_count.unwrap_or(1) as f32,
                String::new(),
                r.conditions.clone(),
                r.confirmation_required,
            ),
        };
        let name = format!("group-{}{suffix}", count + 1);
        store::insert_groups(
            conn,
            r.id,
            &[PlannedGroup {
                name: name.clone(),
                description: Some(name),
                state,
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

    /// One chunk of stopping (§6.3) or, `force`, deleting (§6.4) a rollout: delete SCHEDULED
    /// actions, finish open groups, then cancel active actions — with a cancel message each
    /// (stop) or closed silently, their targets' assignment reset (delete). A rollout that never
    /// reached a device is deleted outright.
    pub(super) async fn cancel_open(
        &self,
        conn: &mut PgConnection,
        r: &Rollout,
        force: bool,
        out: &mut Vec<Pending>,
    ) -> Result<Event, EngineError> {
        let more = Event::Cancelled { more: true };
        let deleted = store::delete_scheduled(conn, r.id, limits::STOP_CHUNK).await?;
        if deleted as i64 == limits::STOP_CHUNK {
            return Ok(more);
        }
        if force {
            let (any, started) = store::action_presence(conn, r.id).await?;
            if !any {
                return Ok(Event::NeverStarted);
            }
            if !started {
                return Ok(more);
            }
        }
        store::finish_open_groups(conn, r.id).await?;
        let open = store::lock_active(conn, r.id, limits::STOP_CHUNK, force).await?;
        if !open.is_empty() {
            let ids: Vec<ActionId> = open.iter().map(|(id, _)| *id).collect();
            if force {
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
                // Devices are not told (§6.4), but a device whose action was closed may now
                // work on its next one.
                out.extend(targets.iter().map(|t| Pending::Target(*t)));
            } else {
                set_by_server(
                    conn,
                    &ids,
                    ActionStatus::Canceling,
                    "A cancellation has been performed by server.",
                )
                .await?;
                out.extend(ids.iter().map(|id| Pending::Action(*id)));
            }
            if open.len() as i64 == limits::STOP_CHUNK {
                return Ok(more);
            }
        }
        Ok(Event::Cancelled { more: false })
    }
}
