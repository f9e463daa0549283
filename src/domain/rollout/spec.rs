//! A rollout's and a group's success and error conditions and actions (§4.1–§4.4), parsed once
//! into typed values: from a create request ([`CondSet`], with the defaults and inheritance
//! rules of §3.4, §4.1) and from the stored columns ([`Conditions::from_stored`]).
//!
//! Expressions keep the text they were given (the API echoes it) next to the number they mean;
//! an expression that is not an integer never fires [hB].

use super::Refusal;
use crate::domain::names::{Named, named_enum};

/// An integer expression of a condition, as given and as understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    text: String,
    value: Option<i64>,
}

impl Expr {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let value = text.trim().parse::<i64>().ok();
        Self { text, value }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The integer, `None` when the text is not one (the condition never fires).
    pub fn value(&self) -> Option<i64> {
        self.value
    }
}

/// The success condition (only THRESHOLD exists): finished share ≥ threshold percent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessCondition {
    pub threshold: Expr,
}

impl SuccessCondition {
    pub const KIND: &'static str = "THRESHOLD";

    /// Inclusive; an empty group succeeds (§4.2).
    pub fn met(&self, succeeded: i64, total: i64) -> bool {
        if total == 0 {
            return true;
        }
        match self.threshold.value() {
            Some(t) => succeeded.saturating_mul(100) >= t.saturating_mul(total),
            None => false,
        }
    }
}

named_enum! {
    /// The kind of a group's error condition. `Count` is our extension (service.md): more than N
    /// failed actions.
    #[derive(Default)]
    pub enum ErrorKind {
        /// What a request that names no kind means (§4.1).
        #[default]
        Threshold = "THRESHOLD",
        Count = "COUNT",
    }
}

/// The error condition: THRESHOLD = failed share strictly above the percentage; COUNT = strictly
/// more than N failed actions. Never fires on an empty group or a non-integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCondition {
    pub kind: ErrorKind,
    pub threshold: Expr,
}

impl ErrorCondition {
    pub fn met(&self, errors: i64, total: i64) -> bool {
        if total == 0 {
            return false;
        }
        let Some(t) = self.threshold.value() else {
            return false;
        };
        match self.kind {
            ErrorKind::Threshold => errors.saturating_mul(100) > t.saturating_mul(total),
            ErrorKind::Count => errors > t,
        }
    }
}

named_enum! {
    /// What a group does when its success condition holds (§4.4).
    #[derive(Default)]
    pub enum SuccessAction {
        #[default]
        NextGroup = "NEXTGROUP",
        Pause = "PAUSE",
    }
}

named_enum! {
    /// What a group does when its error condition holds: pause the rollout (the only one).
    #[derive(Default)]
    pub enum ErrorAction {
        #[default]
        Pause = "PAUSE",
    }
}

/// An action with its (informational) expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithExpr<A> {
    pub action: A,
    pub expression: Option<String>,
}

/// The four condition/action pairs of a rollout or group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditions {
    pub success: SuccessCondition,
    pub success_action: WithExpr<SuccessAction>,
    pub error: Option<ErrorCondition>,
    pub error_action: Option<WithExpr<ErrorAction>>,
}

/// The stored columns of [`Conditions`], as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredConditions {
    pub success_condition: String,
    pub success_condition_exp: String,
    pub success_action: String,
    pub success_action_exp: Option<String>,
    pub error_condition: Option<String>,
    pub error_condition_exp: Option<String>,
    pub error_action: Option<String>,
    pub error_action_exp: Option<String>,
}

impl Conditions {
    /// The rollout-level defaults of §4.1.
    pub fn defaults() -> Self {
        Self {
            success: SuccessCondition {
                threshold: Expr::new("50"),
            },
            success_action: WithExpr {
                action: SuccessAction::NextGroup,
                expression: Some(String::new()),
            },
            error: Some(ErrorCondition {
                kind: ErrorKind::Threshold,
                threshold: Expr::new("50"),
            }),
            error_action: Some(WithExpr {
                action: ErrorAction::Pause,
                expression: Some(String::new()),
            }),
        }
    }

    /// Rollout-level pairs of a request, with the defaults of §4.1.
    pub fn of_rollout(c: &CondSet) -> Result<Self, Refusal> {
        let mut out = Self::defaults();
        if let Some(s) = &c.success_condition {
            out.success = success_condition(s)?;
        }
        if let Some(a) = &c.success_action {
            out.success_action = success_action(a)?;
        }
        if let Some(s) = &c.error_condition {
            out.error = Some(error_condition(s)?);
        }
        if let Some(a) = &c.error_action {
            out.error_action = Some(error_action(a)?);
        }
        Ok(out)
    }

    /// Group pairs of a request: a missing pair inherits the rollout's, except the success
    /// action, which is NEXTGROUP when missing [quirk §3.4].
    pub fn of_group(c: &CondSet, inherited: &Conditions) -> Result<Self, Refusal> {
        let mut out = inherited.clone();
        if let Some(s) = &c.success_condition {
            out.success = success_condition(s)?;
        }
        out.success_action = match &c.success_action {
            Some(a) => success_action(a)?,
            None => WithExpr {
                action: SuccessAction::NextGroup,
                expression: None,
            },
        };
        if let Some(s) = &c.error_condition {
            out.error = Some(error_condition(s)?);
        }
        if let Some(a) = &c.error_action {
            out.error_action = Some(error_action(a)?);
        }
        Ok(out)
    }

    /// Read back from the stored columns; `Err` names a value no version of us writes.
    pub fn from_stored(s: &StoredConditions) -> Result<Self, String> {
        if s.success_condition != SuccessCondition::KIND {
            return Err(format!(
                "unknown success condition {:?}",
                s.success_condition
            ));
        }
        let action = SuccessAction::from_db(&s.success_action)
            .ok_or_else(|| format!("unknown success action {:?}", s.success_action))?;
        let error = match (&s.error_condition, &s.error_condition_exp) {
            (None, None) => None,
            (Some(k), Some(e)) => Some(ErrorCondition {
                kind: ErrorKind::from_db(k)
                    .ok_or_else(|| format!("unknown error condition {k:?}"))?,
                threshold: Expr::new(e.clone()),
            }),
            (k, e) => return Err(format!("error condition {k:?} with expression {e:?}")),
        };
        let error_action = match &s.error_action {
            None => None,
            Some(a) => Some(WithExpr {
                action: ErrorAction::from_db(a)
                    .ok_or_else(|| format!("unknown error action {a:?}"))?,
                expression: s.error_action_exp.clone(),
            }),
        };
        Ok(Self {
            success: SuccessCondition {
                threshold: Expr::new(s.success_condition_exp.clone()),
            },
            success_action: WithExpr {
                action,
                expression: s.success_action_exp.clone(),
            },
            error,
            error_action,
        })
    }

    /// The columns to store.
    pub fn to_stored(&self) -> StoredConditions {
        StoredConditions {
            success_condition: SuccessCondition::KIND.to_owned(),
            success_condition_exp: self.success.threshold.text().to_owned(),
            success_action: self.success_action.action.as_db().to_owned(),
            success_action_exp: self.success_action.expression.clone(),
            error_condition: self.error.as_ref().map(|e| e.kind.as_db().to_owned()),
            error_condition_exp: self.error.as_ref().map(|e| e.threshold.text().to_owned()),
            error_action: self
                .error_action
                .as_ref()
                .map(|a| a.action.as_db().to_owned()),
            error_action_exp: self
                .error_action
                .as_ref()
                .and_then(|a| a.expression.clone()),
        }
    }
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

/// Longest expression a request may give.
const MAX_EXPRESSION: usize = 512;

/// `Err` when `v` is longer than `max` characters.
pub fn check_len(what: &str, v: &Option<String>, max: usize) -> Result<(), Refusal> {
    match v {
        Some(s) if s.chars().count() > max => Err(Refusal::Constraint(format!(
            "{what} must be at most {max} characters"
        ))),
        _ => Ok(()),
    }
}

fn success_condition(s: &CondSpec) -> Result<SuccessCondition, Refusal> {
    let kind = s.condition.as_deref().unwrap_or(SuccessCondition::KIND);
    if kind != SuccessCondition::KIND {
        return Err(Refusal::NotReadable(format!(
            "unknown success condition {kind:?} (THRESHOLD)"
        )));
    }
    Ok(SuccessCondition {
        threshold: threshold("successCondition", s)?,
    })
}

fn error_condition(s: &CondSpec) -> Result<ErrorCondition, Refusal> {
    Ok(ErrorCondition {
        kind: kind_of("error condition", &s.condition)?,
        threshold: threshold("errorCondition", s)?,
    })
}

fn success_action(a: &ActSpec) -> Result<WithExpr<SuccessAction>, Refusal> {
    Ok(WithExpr {
        action: kind_of("success action", &a.action)?,
        expression: expression("successAction", &a.expression)?,
    })
}

fn error_action(a: &ActSpec) -> Result<WithExpr<ErrorAction>, Refusal> {
    Ok(WithExpr {
        action: kind_of("error action", &a.action)?,
        expression: expression("errorAction", &a.expression)?,
    })
}

/// The kind a request's condition or action names, its default when it names none; an unknown
/// name makes the request unreadable, and the message lists the known ones.
fn kind_of<K: Named + Default>(what: &str, given: &Option<String>) -> Result<K, Refusal> {
    let Some(name) = given.as_deref() else {
        return Ok(K::default());
    };
    K::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = K::all().iter().map(|k| k.name()).collect();
        Refusal::NotReadable(format!("unknown {what} {name:?} ({})", known.join(", ")))
    })
}

/// The expression of a request's condition or action (`member` in its JSON), at most
/// [`MAX_EXPRESSION`] characters.
fn expression(member: &str, given: &Option<String>) -> Result<Option<String>, Refusal> {
    check_len(&format!("{member}.expression"), given, MAX_EXPRESSION)?;
    Ok(given.clone())
}

/// A condition's threshold; one that names no expression means 100.
fn threshold(member: &str, s: &CondSpec) -> Result<Expr, Refusal> {
    let text = expression(member, &s.expression)?.unwrap_or_else(|| "100".into());
    Ok(Expr::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn success(t: &str) -> SuccessCondition {
        SuccessCondition {
            threshold: Expr::new(t),
        }
    }

    fn error(kind: ErrorKind, t: &str) -> ErrorCondition {
        ErrorCondition {
            kind,
            threshold: Expr::new(t),
        }
    }

    #[test]
    fn thresholds_as_hawkbit_tests_assert() {
        use ErrorKind::*;
        // K09: error threshold, strict.
        assert!(error(Threshold, "10").met(2, 5));
        assert!(!error(Threshold, "50").met(1, 5));
        assert!(!error(Threshold, "50").met(0, 5));
        assert!(!error(Threshold, "20").met(1, 5));
        assert!(!error(Threshold, "20").met(0, 0));
        assert!(!error(Threshold, "notANumber").met(5, 5));
        // COUNT: more than N.
        assert!(!error(Count, "2").met(2, 100));
        assert!(error(Count, "2").met(3, 100));
        // K10: success threshold, inclusive.
        assert!(success("80").met(4, 5));
        assert!(!success("80").met(3, 5));
        assert!(success("20").met(1, 5));
        assert!(success("80").met(0, 0));
        assert!(!success("10").met(0, 5));
        assert!(!success("notANumber").met(5, 5));
        assert!(!success("50.5").met(5, 5));
    }

    #[test]
    fn request_defaults_and_group_inheritance() {
        let r = Conditions::of_rollout(&CondSet {
            error_condition: Some(CondSpec {
                condition: Some("COUNT".into()),
                expression: Some("3".into()),
            }),
            success_action: Some(ActSpec {
                action: Some("PAUSE".into()),
                expression: None,
            }),
            ..CondSet::default()
        })
        .unwrap();
        assert_eq!(r.success.threshold.text(), "50");
        assert_eq!(r.error.as_ref().unwrap().kind, ErrorKind::Count);
        assert_eq!(r.success_action.action, SuccessAction::Pause);
        // A group inherits everything but the success action.
        let g = Conditions::of_group(&CondSet::default(), &r).unwrap();
        assert_eq!(g.error, r.error);
        assert_eq!(g.success_action.action, SuccessAction::NextGroup);
        assert_eq!(g.success_action.expression, None);
        // A request that names a condition without an expression means 100.
        let c = Conditions::of_rollout(&CondSet {
            success_condition: Some(CondSpec::default()),
            ..CondSet::default()
        })
        .unwrap();
        assert_eq!(c.success.threshold.value(), Some(100));
    }

    #[test]
    fn unknown_kinds_are_unreadable_and_long_expressions_violate_constraints() {
        let success_condition = |condition: Option<&str>, expression: Option<String>| CondSet {
            success_condition: Some(CondSpec {
                condition: condition.map(Into::into),
                expression,
            }),
            ..CondSet::default()
        };
        let error_action = CondSet {
            error_action: Some(ActSpec {
                action: Some("NEXTGROUP".into()),
                ..ActSpec::default()
            }),
            ..CondSet::default()
        };
        let unreadable: fn(&Refusal) -> bool = |r| matches!(r, Refusal::NotReadable(_));
        let constraint: fn(&Refusal) -> bool = |r| matches!(r, Refusal::Constraint(_));
        for (request, expected) in [
            (success_condition(Some("COUNT"), None), unreadable),
            (error_action, unreadable),
            (success_condition(None, Some("9".repeat(513))), constraint),
        ] {
            let refusal = Conditions::of_rollout(&request).unwrap_err();
            assert!(expected(&refusal), "{request:?}: {refusal:?}");
        }
    }

    #[test]
    fn stored_values_nobody_writes_are_errors() {
        let mut s = Conditions::defaults().to_stored();
        s.success_action = "JUMP".into();
        assert!(Conditions::from_stored(&s).is_err());
        let mut s = Conditions::defaults().to_stored();
        s.error_condition_exp = None;
        assert!(Conditions::from_stored(&s).is_err());
    }

    proptest! {
        #[test]
        fn stored_conditions_read_back_as_written(
            s in "[0-9a-z.]{0,4}", e in "[0-9]{0,3}", count in any::<bool>(),
            pause in any::<bool>(), sx in proptest::option::of("[a-z]{0,3}"),
            with_error in any::<bool>(),
        ) {
            let c = Conditions {
                success: SuccessCondition { threshold: Expr::new(s) },
                success_action: WithExpr {
                    action: if pause { SuccessAction::Pause } else { SuccessAction::NextGroup },
                    expression: sx,
                },
                error: with_error.then(|| ErrorCondition {
                    kind: if count { ErrorKind::Count } else { ErrorKind::Threshold },
                    threshold: Expr::new(e),
                }),
                error_action: with_error.then_some(WithExpr { action: ErrorAction::Pause, expression: None }),
            };
            prop_assert_eq!(Conditions::from_stored(&c.to_stored()).unwrap(), c);
        }
    }
}
