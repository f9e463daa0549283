//! The one validation and group-sizing implementation for creating a rollout and for a retry
//! rollout (§3.1–§3.4, §3.6, §3.8): what a request may ask for, the groups it becomes, and how
//! many targets each static group takes (bit-compatible with hawkBit's arithmetic).
//!
//! What needs the database (the set, the matching targets, a custom split's simulated sizes)
//! the engine looks up; the checks on those numbers are here too ([`check_auto_split`],
//! [`check_custom_sizes`]).

use super::Refusal;
use super::spec::{CondSet, Conditions, check_len};
use super::state::GroupState;
use crate::domain::action::{ActionType, validate_weight};

/// Quotas (rollouts.md §3.6).
pub mod limits {
    /// `maxRolloutGroupsPerRollout`.
    pub const MAX_GROUPS: i64 = 500;
    /// `maxTargetsPerRolloutGroup`.
    pub const MAX_TARGETS_PER_GROUP: i64 = 20000;
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

/// `POST /rollouts` (§9.3), or the retry of a finished rollout (§3.8).
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

/// A group to create.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedGroup {
    pub name: String,
    pub description: Option<String>,
    pub state: GroupState,
    pub dynamic: bool,
    pub conditions: Conditions,
    /// Empty: every target of the rollout.
    pub target_filter: String,
    pub target_percentage: f32,
    pub confirmation_required: bool,
}

/// A validated request: what to create, before the targets are counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub filter: String,
    pub weight: i32,
    pub conditions: Conditions,
    pub confirmation_required: bool,
    /// The dynamic group template: (suffix, targets per group).
    pub template: Option<(String, i64)>,
    /// Static groups (auto-split or custom).
    pub amount: i64,
    /// Every group, the dynamic template group last.
    pub groups: Vec<PlannedGroup>,
    /// Custom groups: each group's filter and percentage with the percentage earlier groups of
    /// the same filter served, for the size simulation.
    pub custom: Option<Vec<(String, f32, f64)>>,
}

fn constraint(msg: impl Into<String>) -> Refusal {
    Refusal::Constraint(msg.into())
}

fn too_many_groups() -> Refusal {
    Refusal::Quota(format!(
        "the number of groups cannot be greater than {}",
        limits::MAX_GROUPS
    ))
}

fn group_too_large() -> Refusal {
    Refusal::Quota(format!(
        "a rollout group cannot hold more than {} targets",
        limits::MAX_TARGETS_PER_GROUP
    ))
}

/// Validate a request (`filter` is its non-blank target filter) and plan its groups.
/// `confirmation_flow` is the tenant's default for `confirmationRequired`.
pub fn plan(req: &CreateRollout, filter: &str, confirmation_flow: bool) -> Result<Plan, Refusal> {
    // Shape.
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
    // Bean constraints.
    let name = req.name.clone().unwrap_or_default();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(constraint("name must have 1 to 128 characters"));
    }
    check_len("description", &req.description, 512)?;
    if filter.chars().count() > 1024 {
        return Err(constraint(
            "targetFilterQuery must be at most 1024 characters",
        ));
    }
    let weight = validate_weight(req.weight).map_err(|e| Refusal::Constraint(e.0))?;
    let conditions = Conditions::of_rollout(&req.conditions)?;
    let confirmation = req.confirmation_required.unwrap_or(confirmation_flow);
    // Group count.
    let template = match &req.template {
        Some((suffix, count)) => {
            let count =
                count.ok_or_else(|| constraint("dynamicGroupTemplate.targetCount is required"))?;
            Some((suffix.clone().unwrap_or_default(), count.max(1)))
        }
        None => None,
    };
    let amount = match &req.groups {
        Some(groups) if groups.is_empty() => return Err(constraint("groups must not be empty")),
        Some(groups) if groups.len() as i64 > limits::MAX_GROUPS => return Err(too_many_groups()),
        Some(groups) => groups.len() as i64,
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
                return Err(too_many_groups());
            }
            n
        }
    };
    let mut groups = Vec::new();
    let mut custom = None;
    match &req.groups {
        None => {
            let pct = 100f32 / amount.max(1) as f32;
            for i in 1..=amount {
                groups.push(PlannedGroup {
                    name: format!("group-{i}"),
                    description: Some(format!("group-{i}")),
                    state: GroupState::Creating,
                    dynamic: false,
                    conditions: conditions.clone(),
                    target_filter: String::new(),
                    target_percentage: pct,
                    confirmation_required: confirmation,
                });
            }
        }
        Some(specs) => {
            let mut names = std::collections::HashSet::new();
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
                groups.push(PlannedGroup {
                    name: gname,
                    description: g.description.clone(),
                    state: GroupState::Creating,
                    dynamic: false,
                    conditions: Conditions::of_group(&g.conditions, &conditions)?,
                    target_filter: g.target_filter.clone().unwrap_or_default(),
                    target_percentage: pct,
                    confirmation_required: g.confirmation_required.unwrap_or(confirmation),
                });
            }
            custom = Some(
                groups
                    .iter()
                    .enumerate()
                    .map(|(i, g)| {
                        let served = served_before(&groups[..i], &g.target_filter);
                        (g.target_filter.clone(), g.target_percentage, served)
                    })
                    .collect(),
            );
        }
    }
    if let Some((suffix, count)) = &template {
        let name = format!("group-{}{suffix}", amount + 1);
        groups.push(PlannedGroup {
            name: name.clone(),
            description: Some(name),
            state: GroupState::Ready,
            dynamic: true,
            conditions: conditions.clone(),
            target_filter: String::new(),
            target_percentage: *count as f32,
            confirmation_required: confirmation,
        });
    }
    Ok(Plan {
        name,
        filter: filter.to_owned(),
        weight,
        conditions,
        confirmation_required: confirmation,
        template,
        amount,
        groups,
        custom,
    })
}

/// The percentage earlier groups with the very same filter served (§3.3).
fn served_before(earlier: &[PlannedGroup], filter: &str) -> f64 {
    earlier
        .iter()
        .filter(|g| g.target_filter == filter)
        .map(|g| f64::from(g.target_percentage))
        .sum()
}

/// The matching targets of an auto-split: none is an error unless the rollout has no static
/// group; no group may exceed the group quota.
pub fn check_auto_split(total: i64, amount: i64) -> Result<(), Refusal> {
    if total == 0 && amount > 0 {
        return Err(constraint("Rollout does not match any existing targets"));
    }
    if amount > 0 && total / amount > limits::MAX_TARGETS_PER_GROUP {
        return Err(group_too_large());
    }
    Ok(())
}

/// The simulated sizes of custom groups must cover every matching target, within the quota.
pub fn check_custom_sizes(total: i64, sizes: &[i64]) -> Result<(), Refusal> {
    if total == 0 {
        return Err(constraint("Rollout does not match any existing targets"));
    }
    if sizes.iter().sum::<i64>() != total {
        return Err(constraint(
            "Rollout groups don't match all targets that are targeted by the rollout",
        ));
    }
    if sizes.iter().any(|s| *s > limits::MAX_TARGETS_PER_GROUP) {
        return Err(group_too_large());
    }
    Ok(())
}

/// A retry over the failed targets of its source: at least one.
pub fn check_retry(failed: i64) -> Result<(), Refusal> {
    if failed == 0 {
        return Err(constraint("No failed targets in Rollout"));
    }
    Ok(())
}

/// Round half up as Java's `Math.round(double)` does.
fn round_half_up(x: f64) -> i64 {
    (x + 0.5).floor() as i64
}

/// The size of a static group when it is filled (§3.3): `pct` is the group's percentage of all
/// targets matching its filter, `served` the sum of the percentages of earlier groups with the
/// very same filter, `remaining` the targets still eligible for it. Bit-compatible with
/// hawkBit: percentages are `f32`, the arithmetic `f64`.
pub fn group_size(pct: f32, served: f64, remaining: i64) -> i64 {
    let to_serve = 100.0 - served;
    let pct_rest = if to_serve <= 1.0 {
        100.0
    } else {
        (f64::from(pct) * 100.0 / to_serve).min(100.0)
    };
    round_half_up(pct_rest * remaining as f64 / 100.0)
}

/// Sizes of consecutive groups that share one filter, filled one after the other from
/// `remaining` eligible targets, the first after groups that served `served` percent.
pub fn consecutive_sizes(percentages: &[f32], mut served: f64, remaining: i64) -> Vec<i64> {
    let mut left = remaining;
    percentages
        .iter()
        .map(|pct| {
            let size = group_size(*pct, served, left).min(left).max(0);
            left -= size;
            served += f64::from(*pct);
            size
        })
        .collect()
}

/// Sizes of `groups` auto-split groups over `total` targets (§3.3): every group has the
/// percentage `100/groups` and the same (empty) filter.
pub fn auto_split_sizes(total: i64, groups: usize) -> Vec<i64> {
    consecutive_sizes(&vec![100f32 / groups as f32; groups], 0.0, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(f: impl FnOnce(&mut CreateRollout)) -> CreateRollout {
        let mut r = CreateRollout {
            name: Some("r".into()),
            ds_id: 1,
            ..CreateRollout::default()
        };
        f(&mut r);
        r
    }

    fn refused(r: CreateRollout) -> Refusal {
        plan(&r, "name==*", false).unwrap_err()
    }

    #[test]
    fn auto_split_matches_hawkbit_examples() {
        assert_eq!(auto_split_sizes(10, 5), vec![2, 2, 2, 2, 2]);
        assert_eq!(auto_split_sizes(9, 4), vec![2, 2, 3, 2]);
        assert_eq!(auto_split_sizes(3, 5), vec![1, 1, 0, 1, 0]);
        assert_eq!(auto_split_sizes(50, 5), vec![10; 5]);
        assert_eq!(auto_split_sizes(20, 4), vec![5; 4]);
    }

    #[test]
    fn custom_percentages_follow_percent_from_the_rest() {
        // 20 base targets, 10 of them in group 1 by filter; [100 % gr1, 20 %, 80 %] → 10, 4, 16
        // where groups 2 and 3 share the empty filter.
        assert_eq!(group_size(100.0, 0.0, 10), 10);
        assert_eq!(consecutive_sizes(&[20.0, 80.0], 0.0, 20), vec![4, 16]);
        // 52 targets, [33.3 %] × 3 → 17, 17, 18.
        assert_eq!(consecutive_sizes(&[33.3; 3], 0.0, 52), vec![17, 17, 18]);
    }

    #[test]
    fn a_plain_request_is_one_group_with_the_default_conditions() {
        let p = plan(&request(|_| {}), "name==*", true).unwrap();
        assert_eq!(p.amount, 1);
        assert_eq!(p.groups.len(), 1);
        assert_eq!(p.groups[0].name, "group-1");
        assert!(p.groups[0].confirmation_required, "tenant default");
        assert_eq!(p.conditions, Conditions::defaults());
        assert_eq!(p.weight, 1000);
        assert!(p.custom.is_none());
    }

    #[test]
    fn shape_and_quota_refusals() {
        assert!(matches!(
            refused(request(|r| {
                r.dynamic = true;
                r.groups = Some(vec![GroupSpec::default()]);
            })),
            Refusal::Constraint(_)
        ));
        assert!(matches!(
            refused(request(|r| r.amount_groups = Some(501))),
            Refusal::Quota(_)
        ));
        assert!(matches!(
            refused(request(|r| r.amount_groups = Some(0))),
            Refusal::Constraint(_)
        ));
        assert!(matches!(
            refused(request(|r| r.weight = Some(1001))),
            Refusal::Constraint(_)
        ));
        assert!(matches!(
            refused(request(|r| r.name = Some(String::new()))),
            Refusal::Constraint(_)
        ));
        let named = |n: &str| GroupSpec {
            name: Some(n.into()),
            ..GroupSpec::default()
        };
        assert!(matches!(
            refused(request(|r| r.groups = Some(vec![named("a"), named("a")]))),
            Refusal::Constraint(m) if m.contains("used twice")
        ));
        assert!(matches!(
            refused(request(|r| r.groups = Some(vec![GroupSpec {
                target_percentage: Some(0.5),
                ..named("a")
            }]))),
            Refusal::Constraint(_)
        ));
        assert!(check_auto_split(0, 1).is_err());
        assert!(check_auto_split(0, 0).is_ok());
        assert!(matches!(
            check_auto_split(40_002, 2),
            Err(Refusal::Quota(_))
        ));
        assert!(check_custom_sizes(10, &[4, 5]).is_err());
        assert!(check_custom_sizes(10, &[4, 6]).is_ok());
        assert!(check_retry(0).is_err());
    }

    #[test]
    fn a_dynamic_template_adds_a_ready_dynamic_group_last() {
        let p = plan(
            &request(|r| {
                r.dynamic = true;
                r.amount_groups = Some(0);
                r.template = Some((Some("-dyn".into()), Some(0)));
            }),
            "name==*",
            false,
        )
        .unwrap();
        assert_eq!(p.template, Some(("-dyn".into(), 1)), "count at least 1");
        let g = p.groups.last().unwrap();
        assert!(g.dynamic && g.state == GroupState::Ready && g.name == "group-1-dyn");
    }

    #[test]
    fn custom_groups_know_what_earlier_groups_of_their_filter_served() {
        let g = |f: &str, p: f32| GroupSpec {
            name: Some(format!("{f}{p}")),
            target_filter: Some(f.into()),
            target_percentage: Some(p),
            ..GroupSpec::default()
        };
        let p = plan(
            &request(|r| r.groups = Some(vec![g("a", 20.0), g("", 50.0), g("a", 30.0)])),
            "name==*",
            false,
        )
        .unwrap();
        let served: Vec<f64> = p.custom.unwrap().iter().map(|c| c.2).collect();
        assert_eq!(served, vec![0.0, 0.0, 20.0]);
    }

    proptest! {
        #[test]
        fn auto_split_covers_every_target(total in 0i64..100_000, groups in 1usize..500) {
            let sizes = auto_split_sizes(total, groups);
            prop_assert_eq!(sizes.len(), groups);
            prop_assert_eq!(sizes.iter().sum::<i64>(), total);
            prop_assert!(sizes.iter().all(|s| *s >= 0));
        }
    }
}
