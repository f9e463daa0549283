//! Property tests of the rollout machine over random event sequences, against a model of
//! the effects the engine performs.

use super::tests::{NOW, group, rollout};
use super::*;
use crate::domain::action::ActionType;
use crate::domain::rollout::spec::{ErrorCondition, ErrorKind, Expr, SuccessAction};
use crate::domain::rollout::state::{Counts, Template};
use proptest::prelude::*;

/// The world the commands act on: the rollout, its groups, and each group's planned members.
#[derive(Debug, Clone)]
struct World {
    r: Rollout,
    groups: Vec<Group>,
    size: Vec<i64>,
    /// Targets a dynamic rollout can still enrol.
    pool: i64,
    now: i64,
    gone: bool,
    ever_started: bool,
}

#[derive(Debug, Clone)]
enum Input {
    Op(Operation),
    Tick,
    /// Move `n` open actions of a group to a bucket (0 finished, 1 error, 2 downloaded, 3
    /// canceled), then report the change.
    Report {
        group: usize,
        n: i64,
        bucket: u8,
    },
    Time(i64),
    Approval(bool),
}

fn world(sizes: &[i64], dynamic: bool, download_only: bool, s: i64, e: i64) -> World {
    let mut r = rollout(RolloutState::Creating);
    if dynamic {
        r.dynamic = Some(Template {
            suffix: String::new(),
            count: Some(2),
        });
    }
    if download_only {
        r.action_type = ActionType::DownloadOnly;
    }
    let groups = sizes
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let id = i as i64 + 1;
            let mut g = group(id, (id > 1).then(|| id - 1), GroupState::Creating, 0);
            g.conditions.success.threshold = Expr::new(s.to_string());
            g.conditions.error = Some(ErrorCondition {
                kind: ErrorKind::Threshold,
                threshold: Expr::new(e.to_string()),
            });
            g
        })
        .collect();
    World {
        r,
        groups,
        size: sizes.to_vec(),
        pool: if dynamic { 5 } else { 0 },
        now: NOW,
        gone: false,
        ever_started: false,
    }
}

impl World {
    fn facts(&self, approval: bool) -> Facts<'_> {
        Facts {
            groups: &self.groups,
            approval_enabled: approval,
            enrol_idle_ms: 100,
        }
    }

    fn g(&mut self, id: GroupId) -> &mut Group {
        let i = self.groups.iter().position(|g| g.id == id).unwrap();
        &mut self.groups[i]
    }

    /// Perform a command as the engine's effects would; returns the follow-up event.
    fn perform(&mut self, c: &Command) -> Option<Event> {
        match c {
            Command::Fill { group } => {
                let i = self.groups.iter().position(|g| g.id == *group).unwrap();
                let members = self.size[i];
                Some(Event::Filled {
                    group: *group,
                    members,
                    complete: true,
                })
            }
            Command::MarkFilled { group, members } => {
                let g = self.g(*group);
                g.state = GroupState::Ready;
                g.total_targets = *members;
                None
            }
            Command::Schedule { group } => {
                let g = self.g(*group);
                g.counts.scheduled = g.total_targets;
                Some(Event::Scheduled {
                    group: *group,
                    complete: true,
                })
            }
            Command::Activate { group, lane } => {
                let g = self.g(*group);
                let n = match lane {
                    Lane::Start => g.counts.scheduled.min(2),
                    Lane::Chunk => g.counts.scheduled.min(3),
                    Lane::Members(n) => g.counts.scheduled.min(*n),
                };
                g.counts.scheduled -= n;
                g.counts.running += n;
                if n > 0 {
                    self.ever_started = true;
                }
                None
            }
            Command::Enrol { group, want } => {
                let n = (*want).min(self.pool);
                self.pool -= n;
                let g = self.g(*group);
                g.total_targets += n;
                g.counts.scheduled += n;
                Some(Event::Enrolled {
                    group: *group,
                    count: n,
                })
            }
            Command::AppendDynamicGroup { state } => {
                let id = self.groups.last().map_or(1, |g| g.id.0 + 1);
                let mut g = group(id, self.groups.last().map(|g| g.id.0), *state, 0);
                g.dynamic = true;
                g.target_percentage = 2.0;
                g.counts = Counts::default();
                self.groups.push(g);
                self.size.push(0);
                Some(Event::GroupAppended)
            }
            Command::SetGroup { groups, state } => {
                for id in groups {
                    self.g(*id).state = *state;
                }
                None
            }
            Command::Shrink { group, total } => {
                self.g(*group).total_targets = *total;
                None
            }
            Command::CountTargets => {
                self.r.total_targets = self.groups.iter().map(|g| g.total_targets).sum();
                None
            }
            Command::CancelOpen { force } => {
                if *force && !self.ever_started {
                    return Some(Event::NeverStarted);
                }
                for g in &mut self.groups {
                    g.counts.scheduled = 0;
                    if matches!(g.state, GroupState::Running | GroupState::Scheduled) {
                        g.state = GroupState::Finished;
                    }
                    g.counts.canceled += g.counts.running + g.counts.downloaded;
                    g.counts.running = 0;
                    g.counts.downloaded = 0;
                }
                Some(Event::Cancelled { more: false })
            }
            Command::HardDelete => {
                self.gone = true;
                None
            }
            Command::RecordDecision
            | Command::NotifyApproval
            | Command::WithdrawApproval
            | Command::WakeAt(_) => None,
        }
    }

    /// Step an event and perform its commands and their follow-ups, as the engine does.
    fn apply(
        &mut self,
        e: Event,
        approval: bool,
    ) -> Result<Vec<(Event, World, Transition)>, Refusal> {
        let mut log = Vec::new();
        let mut queue = vec![e];
        while let Some(e) = queue.pop() {
            let before = self.clone();
            let t = step(&self.r, &self.facts(approval), e, self.now)?;
            self.r.state = t.next;
            for c in &t.commands {
                if let Some(f) = self.perform(c) {
                    queue.push(f);
                }
            }
            log.push((e, before, t));
        }
        Ok(log)
    }

    fn report(&mut self, group: usize, n: i64, bucket: u8) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let n = n.min(g.counts.running);
        g.counts.running -= n;
        match bucket {
            0 => g.counts.finished += n,
            1 => g.counts.error += n,
            2 => g.counts.downloaded += n,
            _ => g.counts.canceled += n,
        }
    }
}

fn arb_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        prop::sample::select(Operation::ALL.to_vec()).prop_map(Input::Op),
        Just(Input::Tick),
        Just(Input::Tick),
        Just(Input::Tick),
        (0usize..5, 1i64..4, 0u8..4).prop_map(|(group, n, bucket)| Input::Report {
            group,
            n,
            bucket
        }),
        (1i64..200).prop_map(Input::Time),
        any::<bool>().prop_map(Input::Approval),
    ]
}

/// Whether the parent of `g` lets it start automatically: its success condition holds or it is
/// complete, and its error condition does not.
fn parent_allows(w: &World, g: GroupId) -> bool {
    let child = w.groups.iter().find(|x| x.id == g).unwrap();
    let Some(p) = child.parent else {
        return true;
    };
    let p = w.groups.iter().find(|x| x.id == p).unwrap();
    let dl = w.r.download_only();
    let total = p.counts.total().min(p.total_targets.max(p.counts.total()));
    let ok = p.counts.open(dl) == 0
        || p.conditions.success.met(p.counts.succeeded(dl), total)
        || (p.dynamic
            && p.conditions
                .success
                .met(p.counts.succeeded(dl), p.planned().max(1)));
    let failed =
        p.conditions.error.as_ref().is_some_and(|e| {
            e.met(p.counts.error, total) || e.met(p.counts.error, p.planned().max(1))
        });
    p.state.is_terminal() && p.state == GroupState::Finished || ok && !failed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_event_sequences_keep_the_invariants(
        sizes in prop::collection::vec(0i64..5, 1..5),
        dynamic in any::<bool>(),
        download_only in any::<bool>(),
        s in prop::sample::select(vec![0i64, 50, 100]),
        e in prop::sample::select(vec![0i64, 50, 100]),
        inputs in prop::collection::vec(arb_input(), 1..60),
    ) {
        let mut w = world(&sizes, dynamic, download_only, s, e);
        let mut approval = false;
        for input in inputs {
            if w.gone {
                break;
            }
            let event = match input {
                Input::Op(op) => Event::Operator(op),
                Input::Tick => Event::Tick,
                Input::Report { group, n, bucket } => {
                    w.report(group, n, bucket);
                    Event::CountersChanged
                }
                Input::Time(dt) => {
                    w.now += dt;
                    Event::Tick
                }
                Input::Approval(on) => {
                    approval = on;
                    continue;
                }
            };
            let Ok(log) = w.apply(event, approval) else {
                // A refusal changes nothing.
                continue;
            };
            for (e, seen, t) in &log {
                let from = seen.r.state;
                let mut seen = seen.clone();
                // Terminal states absorb every event; final ones all but deletion.
                if from.is_terminal() {
                    prop_assert_eq!(t.next, from);
                    prop_assert!(t.commands.is_empty());
                }
                if from.is_final() && *e != Event::Operator(Operation::Delete) {
                    prop_assert_eq!(t.next, from);
                    prop_assert!(t.commands.is_empty(), "{:?} in {:?}: {:?}", e, from, t.commands);
                }
                let automatic = !matches!(e, Event::Operator(_));
                let nothing_ran = !seen.groups.iter().any(|g| g.state == GroupState::Running);
                for c in &t.commands {
                    // Group state changes in `seen` as they apply, for the next command.
                    let Command::SetGroup { groups, state } = c else {
                        continue;
                    };
                    for id in groups {
                        let g = seen.groups.iter().find(|g| g.id == *id).unwrap().clone();
                        if *state == GroupState::Running {
                            // A paused rollout starts nothing; no group starts before its
                            // parent's condition holds (automatic starts) or before its parent
                            // started (the operator's resume and trigger).
                            prop_assert!(from != RolloutState::Paused || *e == Event::Operator(Operation::Resume));
                            prop_assert_eq!(g.state, GroupState::Scheduled);
                            if automatic && !nothing_ran {
                                prop_assert!(parent_allows(&seen, *id), "group {:?} started early", id);
                            }
                            if let Some(p) = g.parent {
                                let p = seen.groups.iter().find(|x| x.id == p).unwrap();
                                prop_assert!(p.state.has_started());
                            }
                        }
                        seen.groups.iter_mut().find(|x| x.id == *id).unwrap().state = *state;
                    }
                }
            }
            // Counters sum to the group total: the progress buckets of every static group
            // account for exactly its targets.
            for g in w.groups.iter().filter(|g| !g.dynamic) {
                let p = g.progress(download_only);
                prop_assert!(g.counts.total() <= g.total_targets || g.state == GroupState::Running,
                    "{:?}", g);
                if g.counts.total() <= g.total_targets {
                    prop_assert_eq!(p.notstarted + p.scheduled + p.running + p.finished + p.error + p.cancelled,
                        g.total_targets);
                }
            }
            // The same event twice is a no-op (at-least-once delivery, retried steps).
            let idempotent = matches!(event, Event::CountersChanged)
                || matches!(event, Event::Operator(op) if op != Operation::TriggerNextGroup);
            if idempotent
                && !w.gone
                && let Ok(t) = step(&w.r, &w.facts(approval), event, w.now)
            {
                prop_assert!(!t.is_progress(w.r.state), "{:?} twice in {:?}: {:?}", event, w.r.state, t);
            }
            // Whatever is left to do, the executor's work query picks the rollout up.
            if !w.gone {
                let t = step(&w.r, &w.facts(approval), Event::Tick, w.now).unwrap();
                if t.is_progress(w.r.state) {
                    prop_assert!(has_work(&w.r, &w.facts(approval), w.now), "{:?} with work not picked up", w.r.state);
                }
            }
        }
    }

    #[test]
    fn evaluation_never_repeats_itself(gs in arb_chain()) {
        // Applying a decision and evaluating again starts nothing twice and changes no
        // terminal group.
        let d = evaluate(&gs, false, false);
        let mut after = gs.clone();
        for id in &d.start {
            let g = after.iter_mut().find(|g| g.id == *id).unwrap();
            g.state = GroupState::Running;
            g.counts.running += g.counts.scheduled;
            g.counts.scheduled = 0;
        }
        for (id, s) in &d.group_state {
            let g = gs.iter().find(|g| g.id == *id).unwrap();
            prop_assert!(!g.state.is_terminal());
            after.iter_mut().find(|g| g.id == *id).unwrap().state = *s;
        }
        // A paused or finished rollout is not evaluated again.
        prop_assume!(!d.pause && !d.finish);
        let again = evaluate(&after, false, false);
        prop_assert!(again.start.is_empty(), "{:?} then {:?}", d, again);
        prop_assert!(again.group_state.is_empty(), "{:?} then {:?}", d, again);
    }
}

/// A random group chain in a plausible state.
fn arb_chain() -> impl Strategy<Value = Vec<Group>> {
    (
        1usize..6,
        0i64..6,
        prop::collection::vec((0i64..4, 0i64..4, 0i64..4, 0i64..3, 0i64..3), 6),
        0i64..101,
        0i64..101,
        any::<bool>(),
    )
        .prop_map(|(n, started, counts, s, e, pause)| {
            let started = started.min(n as i64);
            (0..n)
                .map(|i| {
                    let (sch, run, fin, err, can) = counts[i];
                    let idx = i as i64;
                    let state = if idx < started {
                        GroupState::Running
                    } else {
                        GroupState::Scheduled
                    };
                    let mut g = group(idx + 1, (i > 0).then_some(idx), state, 0);
                    g.counts = if state == GroupState::Scheduled {
                        Counts {
                            scheduled: sch + run + fin + err + can,
                            ..Counts::default()
                        }
                    } else {
                        Counts {
                            running: run,
                            finished: fin,
                            error: err,
                            canceled: can,
                            ..Counts::default()
                        }
                    };
                    g.total_targets = g.counts.total();
                    g.conditions.success.threshold = Expr::new(s.to_string());
                    g.conditions.success_action.action = if pause {
                        SuccessAction::Pause
                    } else {
                        SuccessAction::NextGroup
                    };
                    g.conditions.error = Some(ErrorCondition {
                        kind: ErrorKind::Threshold,
                        threshold: Expr::new(e.to_string()),
                    });
                    g
                })
                .collect()
        })
}
