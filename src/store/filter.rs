//! Compiles a query (`domain::rsql`) for one entity into a parameterised SQL boolean expression
//! (rollouts.md §1.4): field names are resolved against a per-entity whitelist, values are
//! checked against the field's type, and every value reaches the database as a bind parameter,
//! never as SQL text.
//!
//! The expression refers only to the caller's table alias; fields stored in other tables
//! become correlated `EXISTS (...)` subqueries, so callers add `AND <expr>` to any query over
//! the entity's table without extra joins.
//!
//! Semantics copied from hawkBit: string comparisons ignore case; `==` with `*` is a LIKE;
//! `==''` means "null or empty", `!=''` "set and not empty"; `=is=null` / `=not=null` test
//! for NULL; negative operators (`!=`, `=out=`, `=not=`) also match rows where the value is
//! missing (NULL column, no related row).

use sqlx::{Postgres, QueryBuilder};

use crate::domain::rsql::{self, Node, Op, RsqlError};

/// The entities that can be queried, each with its own field whitelist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    Target,
    Rollout,
    RolloutGroup,
    Action,
    TargetFilter,
    SoftwareModule,
    DistributionSet,
    SoftwareModuleType,
    DistributionSetType,
    /// Metadata entries of a software module.
    SoftwareModuleMetadata,
    TargetType,
    TargetTag,
    DistributionSetTag,
    /// Metadata entries of a target.
    TargetMetadata,
    AutoAssignment,
    /// Metadata entries of a distribution set (key and value, as a target's).
    DistributionSetMetadata,
}

/// A parsed query, validated for one entity, ready to be pushed into SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    entity: Entity,
    expr: Expr,
}

impl Filter {
    /// Parse `q` and validate every field and value for `entity`.
    pub fn parse(entity: Entity, q: &str) -> Result<Filter, RsqlError> {
        let node = rsql::parse(q)?;
        Ok(Filter {
            entity,
            expr: compile(entity, &node)?,
        })
    }

    pub fn entity(&self) -> Entity {
        self.entity
    }

    /// Push one parenthesised boolean expression over the table aliased `alias` (a trusted
    /// identifier chosen by the caller, e.g. `t`). Values are pushed with `push_bind`.
    ///
    /// Combine it with `AND`. The expression may be NULL where it means "no match" (that keeps
    /// plain column tests indexable); to negate it write `(<expr>) IS NOT TRUE`, not `NOT`.
    pub fn push_sql(&self, qb: &mut QueryBuilder<'_, Postgres>, alias: &str) {
        qb.push("(");
        push_expr(qb, &self.expr, alias);
        qb.push(")");
    }
}

/// Push ` AND <filter>` over `alias` when there is a filter.
pub fn push_and(qb: &mut QueryBuilder<'_, Postgres>, filter: Option<&Filter>, alias: &str) {
    if let Some(f) = filter {
        qb.push(" AND ");
        f.push_sql(qb, alias);
    }
}

/// How a value of a field is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Free text, compared case-insensitively.
    Text,
    /// An upper-case enum stored as text; values are matched case-insensitively against the
    /// allowed names.
    Upper(&'static [&'static str]),
    Int,
    Bool,
}

/// Where a field's value lives, relative to the outer alias (`{a}` in templates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// An expression over the outer row, e.g. `{a}.name`.
    Expr(&'static str),
    /// A key of a jsonb object column of the outer row: `{a}.<column> ->> key`.
    JsonKey(&'static str),
    /// A value in related rows: `EXISTS (SELECT 1 FROM <from> WHERE <on> AND <test on col>)`.
    /// Inner aliases start with `fq` so they cannot shadow the caller's alias.
    Related {
        from: &'static str,
        on: &'static str,
        col: &'static str,
    },
    /// Like `Related`, with the inner `key_col` equal to the key taken from the field name
    /// (`metadata.<key>`).
    RelatedKey {
        from: &'static str,
        on: &'static str,
        key_col: &'static str,
        col: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
struct FieldDef {
    place: Place,
    kind: Kind,
}

const fn col(expr: &'static str, kind: Kind) -> FieldDef {
    FieldDef {
        place: Place::Expr(expr),
        kind,
    }
}

const fn rel(from: &'static str, on: &'static str, col: &'static str, kind: Kind) -> FieldDef {
    FieldDef {
        place: Place::Related { from, on, col },
        kind,
    }
}

const TEXT: Kind = Kind::Text;
const INT: Kind = Kind::Int;
const BOOL: Kind = Kind::Bool;

const UPDATE_STATUSES: &[&str] = &["UNKNOWN", "IN_SYNC", "PENDING", "ERROR", "REGISTERED"];
const ROLLOUT_STATUSES: &[&str] = &[
    "CREATING",
    "READY",
    "PAUSED",
    "STARTING",
    "STOPPED",
    "RUNNING",
    "FINISHED",
    "DELETING",
    "DELETED",
    "WAITING_FOR_APPROVAL",
    "APPROVAL_DENIED",
    "STOPPING",
];
const ACTION_STATUSES: &[&str] = &[
    "FINISHED",
    "ERROR",
    "WARNING",
    "RUNNING",
    "CANCELED",
    "CANCELING",
    "RETRIEVED",
    "DOWNLOAD",
    "SCHEDULED",
    "CANCEL_REJECTED",
    "DOWNLOADED",
    "WAIT_FOR_CONFIRMATION",
];

const AUTO_ASSIGN_STATUSES: &[&str] = &[
    "WAITING_FOR_APPROVAL",
    "APPROVAL_DENIED",
    "READY",
    "PAUSED",
    "RUNNING",
];
const ACTION_TYPES: &[&str] = &["FORCED", "SOFT", "TIMEFORCED", "DOWNLOAD_ONLY"];

const DS: &str = "distribution_set fq";
const LINKED_SET: &str = "auto_assignment fa JOIN distribution_set fq ON fq.id = fa.ds_id";
const DS_WITH_TYPE: &str =
    "distribution_set fq JOIN distribution_set_type fqt ON fqt.id = fq.type_id";
const TARGET_TAGS: &str = "target_tag_assignment fqa JOIN target_tag fq ON fq.id = fqa.tag_id";

/// Base fields every named entity shares, over the usual column names.
const BASE_FIELDS: [(&str, FieldDef); 4] = [
    ("createdat", col("{a}.created_at", INT)),
    ("createdby", col("{a}.created_by", TEXT)),
    ("lastmodifiedat", col("{a}.last_modified_at", INT)),
    ("lastmodifiedby", col("{a}.last_modified_by", TEXT)),
];

/// Target fields (hawkBit's query keys plus the documented entity-property aliases, [ours]).
fn target_field(name: &str) -> Option<FieldDef> {
    let assigned = |c| rel(DS, "fq.id = {a}.assigned_ds_id", c, TEXT);
    let installed = |c| rel(DS, "fq.id = {a}.installed_ds_id", c, TEXT);
    let tag = rel(TARGET_TAGS, "fqa.target_id = {a}.id", "fq.name", TEXT);
    let ttype = |c| rel("target_type fq", "fq.id = {a}.target_type_id", c, TEXT);
    Some(match name {
        "id" | "controllerid" => col("{a}.controller_id", TEXT),
        "name" => col("{a}.name", TEXT),
        "description" => col("{a}.description", TEXT),
        "updatestatus" => col("{a}.update_status", Kind::Upper(UPDATE_STATUSES)),
        "ipaddress" | "address" => col("{a}.address", TEXT),
        "group" => col("{a}.target_group", TEXT),
        "assignedds.name" | "assigneddistributionset.name" => assigned("fq.name"),
        "assignedds.version" | "assigneddistributionset.version" => assigned("fq.version"),
        "installedds.name" | "installeddistributionset.name" => installed("fq.name"),
        "installedds.version" | "installeddistributionset.version" => installed("fq.version"),
        "tag" | "tag.name" | "tags.name" => tag,
        "lastcontrollerrequestat" | "lasttargetquery" => col("{a}.last_target_query", INT),
        "type.id" | "targettype.id" => col("{a}.target_type_id", INT),
        "type.key" | "targettype.key" => ttype("fq.key"),
        "type.name" | "targettype.name" => ttype("fq.name"),
        "autoconfirm" => col("({a}.auto_confirm_at IS NOT NULL)", BOOL),
        _ => return base(name),
    })
}

fn rollout_field(name: &str) -> Option<FieldDef> {
    Some(match name {
        "id" => col("{a}.id", INT),
        "name" => col("{a}.name", TEXT),
        "description" => col("{a}.description", TEXT),
        "status" => col("{a}.status", Kind::Upper(ROLLOUT_STATUSES)),
        "distributionset.type" => rel(DS_WITH_TYPE, "fq.id = {a}.ds_id", "fqt.key", TEXT),
        _ => return set_field_of(name),
    })
}

/// The fields of the distribution set a row refers to by `{a}.ds_id` (rollouts, actions,
/// auto-assignments), else the base fields.
fn set_field_of(name: &str) -> Option<FieldDef> {
    let ds = |c| rel(DS, "fq.id = {a}.ds_id", c, TEXT);
    Some(match name {
        "distributionset.id" => col("{a}.ds_id", INT),
        "distributionset.name" => ds("fq.name"),
        "distributionset.version" => ds("fq.version"),
        _ => return base(name),
    })
}

fn group_field(name: &str) -> Option<FieldDef> {
    Some(match name {
        "id" => col("{a}.id", INT),
        "name" => col("{a}.name", TEXT),
        "description" => col("{a}.description", TEXT),
        _ => return base(name),
    })
}

fn action_field(name: &str) -> Option<FieldDef> {
    let target = |c| rel("target fq", "fq.id = {a}.target_id", c, TEXT);
    Some(match name {
        "id" => col("{a}.id", INT),
        "active" => col("{a}.active", BOOL),
        "status" => col("{a}.status", Kind::Upper(ACTION_STATUSES)),
        "laststatuscode" => col("{a}.last_status_code", INT),
        "weight" => col("{a}.weight", INT),
        "externalref" => col("{a}.external_ref", TEXT),
        "target.controllerid" | "target.id" => target("fq.controller_id"),
        "target.name" => target("fq.name"),
        "target.updatestatus" => rel(
            "target fq",
            "fq.id = {a}.target_id",
            "fq.update_status",
            Kind::Upper(UPDATE_STATUSES),
        ),
        "target.ipaddress" | "target.address" => target("fq.address"),
        "distributionset.type" => rel(DS_WITH_TYPE, "fq.id = {a}.ds_id", "fqt.key", TEXT),
        "rollout.id" => col("{a}.rollout_id", INT),
        "rollout.name" => rel("rollout fq", "fq.id = {a}.rollout_id", "fq.name", TEXT),
        "rolloutgroup.id" => col("{a}.rollout_group_id", INT),
        "rolloutgroup.name" => rel(
            "rollout_group fq",
            "fq.id = {a}.rollout_group_id",
            "fq.name",
            TEXT,
        ),
        _ => return set_field_of(name),
    })
}

fn target_filter_field(name: &str) -> Option<FieldDef> {
    // The set of the filter's auto-assignment (hawkBit 1.1's `autoAssignDistributionSet`).
    let ds = |c, k| rel(LINKED_SET, "fa.target_filter_id = {a}.id", c, k);
    Some(match name {
        "id" => col("{a}.id", INT),
        "name" => col("{a}.name", TEXT),
        "query" => col("{a}.query", TEXT),
        "autoassigndistributionset.id" => ds("fq.id", INT),
        "autoassigndistributionset.name" => ds("fq.name", TEXT),
        "autoassigndistributionset.version" => ds("fq.version", TEXT),
        _ => return base(name),
    })
}

/// Auto-assignment fields (hawkBit master's `AutoAssignmentFields`).
fn auto_assignment_field(name: &str) -> Option<FieldDef> {
    Some(match name {
        "id" => col("{a}.id", INT),
        "name" => col("{a}.name", TEXT),
        "status" => col("{a}.status", Kind::Upper(AUTO_ASSIGN_STATUSES)),
        "actiontype" => col("{a}.action_type", Kind::Upper(ACTION_TYPES)),
        "approvaldecidedby" => col("{a}.approval_decided_by", TEXT),
        "distributionset" => rel(DS, "fq.id = {a}.ds_id", "fq.name", TEXT),
        _ => return set_field_of(name),
    })
}

fn module_field(name: &str) -> Option<FieldDef> {
    Some(match name {
        "id" => col("{a}.id", INT),
        "name" => col("{a}.name", TEXT),
        "version" => col("{a}.version", TEXT),
        "description" => col("{a}.description", TEXT),
        "vendor" => col("{a}.vendor", TEXT),
        "type" | "type.key" => rel(
            "software_module_type fq",
            "fq.id = {a}.type_id",
            "fq.key",
            TEXT,
        ),
        "type.id" => col("{a}.type_id", INT),
        "encrypted" => col("{a}.encrypted", BOOL),
        "locked" => col("{a}.locked", BOOL),
        _ => return base(name),
    })
}

fn set_field(name: &str) -> Option<FieldDef> {
    Some(match name {
        "id" => col("{a}.id", INT),
        "name" => col("{a}.name", TEXT),
        "version" => col("{a}.version", TEXT),
        "description" => col("{a}.description", TEXT),
        "type" | "type.key" => rel(
            "distribution_set_type fq",
            "fq.id = {a}.type_id",
            "fq.key",
            TEXT,
        ),
        "type.id" => col("{a}.type_id", INT),
        "valid" => col("{a}.valid", BOOL),
        "locked" => col("{a}.locked", BOOL),
        "requiredmigrationstep" => col("{a}.required_migration_step", BOOL),
        _ => return base(name),
    })
}

fn module_type_field(name: &str) -> Option<FieldDef> {
    Some(match name {
        "id" => col("{a}.id", INT),
        "key" => col("{a}.key", TEXT),
        "name" => col("{a}.name", TEXT),
        "description" => col("{a}.description", TEXT),
        "maxassignments" => col("{a}.max_assignments", INT),
        _ => return base(name),
    })
}

fn set_type_field(name: &str) -> Option<FieldDef> {
    Some(match name {
        "id" => col("{a}.id", INT),
        "key" => col("{a}.key", TEXT),
        "name" => col("{a}.name", TEXT),
        "description" => col("{a}.description", TEXT),
        _ => return base(name),
    })
}

/// Target types and target tags share their field set (`colour` included).
fn type_or_tag_field(name: &str, with_key: bool) -> Option<FieldDef> {
    Some(match name {
        "id" => col("{a}.id", INT),
        "key" if with_key => col("{a}.key", TEXT),
        "name" => col("{a}.name", TEXT),
        "description" => col("{a}.description", TEXT),
        "colour" => col("{a}.colour", TEXT),
        _ => return base(name),
    })
}

fn module_metadata_field(name: &str) -> Option<FieldDef> {
    Some(match name {
        "key" => col("{a}.key", TEXT),
        "value" => col("{a}.value", TEXT),
        "targetvisible" => col("{a}.target_visible", BOOL),
        _ => return None,
    })
}

fn target_metadata_field(name: &str) -> Option<FieldDef> {
    Some(match name {
        "key" => col("{a}.key", TEXT),
        "value" => col("{a}.value", TEXT),
        _ => return None,
    })
}

fn base(name: &str) -> Option<FieldDef> {
    BASE_FIELDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
}

/// Fields with a free-form key after a prefix (`attribute.<key>`): where they live and the key.
fn keyed_field(entity: Entity, field: &str) -> Option<(Place, String)> {
    let (prefix, key) = field.split_once('.')?;
    if key.is_empty() {
        return None;
    }
    let place = match (entity, prefix.to_ascii_lowercase().as_str()) {
        (Entity::Target, "attribute" | "controllerattributes") => Place::JsonKey("attributes"),
        (Entity::Target, "metadata") => Place::RelatedKey {
            from: "target_metadata fq",
            on: "fq.target_id = {a}.id",
            key_col: "fq.key",
            col: "fq.value",
        },
        (Entity::DistributionSet, "metadata") => Place::RelatedKey {
            from: "distribution_set_metadata fq",
            on: "fq.ds_id = {a}.id",
            key_col: "fq.key",
            col: "fq.value",
        },
        (Entity::SoftwareModule, "metadata") => Place::RelatedKey {
            from: "software_module_metadata fq",
            on: "fq.sm_id = {a}.id",
            key_col: "fq.key",
            col: "fq.value",
        },
        _ => return None,
    };
    Some((place, key.to_owned()))
}

/// A resolved field: where it lives (with the key of keyed fields) and its type.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    place: Place,
    key: Option<String>,
    kind: Kind,
}

fn resolve(entity: Entity, field: &str) -> Result<Field, RsqlError> {
    let lower = field.to_ascii_lowercase();
    let def = match entity {
        Entity::Target => target_field(&lower),
        Entity::Rollout => rollout_field(&lower),
        Entity::RolloutGroup => group_field(&lower),
        Entity::Action => action_field(&lower),
        Entity::TargetFilter => target_filter_field(&lower),
        Entity::SoftwareModule => module_field(&lower),
        Entity::DistributionSet => set_field(&lower),
        Entity::SoftwareModuleType => module_type_field(&lower),
        Entity::DistributionSetType => set_type_field(&lower),
        Entity::SoftwareModuleMetadata => module_metadata_field(&lower),
        Entity::TargetType => type_or_tag_field(&lower, true),
        Entity::TargetTag | Entity::DistributionSetTag => type_or_tag_field(&lower, false),
        Entity::TargetMetadata | Entity::DistributionSetMetadata => target_metadata_field(&lower),
        Entity::AutoAssignment => auto_assignment_field(&lower),
    };
    if let Some(d) = def {
        return Ok(Field {
            place: d.place,
            key: None,
            kind: d.kind,
        });
    }
    // Keys keep their case: attribute and metadata keys are case-sensitive.
    keyed_field(entity, field)
        .map(|(place, key)| Field {
            place,
            key: Some(key),
            kind: Kind::Text,
        })
        .ok_or_else(|| RsqlError::UnknownField(field.to_owned()))
}

/// A typed value, checked against its field.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// What to test on a field's value. A predicate is "positive": it is false (or NULL) when the
/// value is missing; negative operators wrap one in `NOT`.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    Eq(Val),
    /// A LIKE pattern with `\` as escape character.
    Like(String),
    In(Vec<Val>),
    /// `<`, `<=`, `>`, `>=`.
    Cmp(&'static str, Val),
    /// Set and not the empty string.
    NonEmpty,
    NotNull,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Pred {
        field: Field,
        test: Test,
        negated: bool,
    },
}

fn compile(entity: Entity, node: &Node) -> Result<Expr, RsqlError> {
    match node {
        Node::And(items) => Ok(Expr::And(
            items
                .iter()
                .map(|n| compile(entity, n))
                .collect::<Result<_, _>>()?,
        )),
        Node::Or(items) => Ok(Expr::Or(
            items
                .iter()
                .map(|n| compile(entity, n))
                .collect::<Result<_, _>>()?,
        )),
        Node::Cmp { field, op, values } => {
            let f = resolve(entity, field)?;
            let (test, negated) = predicate(field, f.kind, *op, values)?;
            Ok(Expr::Pred {
                field: f,
                test,
                negated,
            })
        }
    }
}

/// Turn `op values` into a positive test and whether it is negated.
fn predicate(
    field: &str,
    kind: Kind,
    op: Op,
    values: &[String],
) -> Result<(Test, bool), RsqlError> {
    let first = values.first().map(String::as_str).unwrap_or_default();
    let is_null = first.eq_ignore_ascii_case("null");
    Ok(match op {
        Op::Is if is_null => (Test::NotNull, true),
        Op::Not if is_null => (Test::NotNull, false),
        Op::Eq | Op::Is => equality(field, kind, first)?,
        Op::Ne | Op::Not => {
            let (test, negated) = equality(field, kind, first)?;
            (test, !negated)
        }
        Op::In | Op::Out => {
            let vals = values
                .iter()
                .map(|v| typed(field, kind, v))
                .collect::<Result<_, _>>()?;
            (Test::In(vals), op == Op::Out)
        }
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            let sql = match op {
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Gt => ">",
                _ => ">=",
            };
            (Test::Cmp(sql, typed(field, kind, first)?), false)
        }
    })
}

/// The test for `field == value` and whether it is negated: `==''` is "null or empty", i.e.
/// NOT "set and not empty".
fn equality(field: &str, kind: Kind, value: &str) -> Result<(Test, bool), RsqlError> {
    if value.is_empty() {
        let has_value = match kind {
            Kind::Text | Kind::Upper(_) => Test::NonEmpty,
            Kind::Int | Kind::Bool => Test::NotNull,
        };
        return Ok((has_value, true));
    }
    if value.contains('*') && matches!(kind, Kind::Text | Kind::Upper(_)) {
        return Ok((Test::Like(like_pattern(value)), false));
    }
    Ok((Test::Eq(typed(field, kind, value)?), false))
}

/// `*` is the wildcard; LIKE's own metacharacters in the literal parts are escaped.
fn like_pattern(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn typed(field: &str, kind: Kind, value: &str) -> Result<Val, RsqlError> {
    match kind {
        Kind::Text => Ok(Val::Text(value.to_owned())),
        Kind::Upper(allowed) => {
            let upper = value.to_ascii_uppercase();
            if allowed.contains(&upper.as_str()) {
                Ok(Val::Text(upper))
            } else {
                Err(RsqlError::Syntax(format!(
                    "{value:?} is not a valid value of {field}"
                )))
            }
        }
        Kind::Int => value
            .trim()
            .parse()
            .map(Val::Int)
            .map_err(|_| RsqlError::Syntax(format!("{field} needs a number, not {value:?}"))),
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "true" => Ok(Val::Bool(true)),
            "false" => Ok(Val::Bool(false)),
            _ => Err(RsqlError::Syntax(format!(
                "{field} needs true or false, not {value:?}"
            ))),
        },
    }
}

fn push_expr(qb: &mut QueryBuilder<'_, Postgres>, expr: &Expr, alias: &str) {
    match expr {
        Expr::And(items) | Expr::Or(items) => {
            let sep = if matches!(expr, Expr::And(_)) {
                " AND "
            } else {
                " OR "
            };
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    qb.push(sep);
                }
                qb.push("(");
                push_expr(qb, e, alias);
                qb.push(")");
            }
        }
        Expr::Pred {
            field,
            test,
            negated,
        } => push_pred(qb, field, test, *negated, alias),
    }
}

fn push_pred(
    qb: &mut QueryBuilder<'_, Postgres>,
    field: &Field,
    test: &Test,
    negated: bool,
    alias: &str,
) {
    let outer = |t: &str| t.replace("{a}", alias);
    // A positive test on a NULL value is NULL, which WHERE treats as false; a negated one must
    // see false instead, so that "not equal" matches rows without a value.
    let (open, close) = if negated {
        ("NOT COALESCE(", ", false)")
    } else {
        ("", "")
    };
    match field.place {
        Place::Expr(e) => {
            qb.push(open);
            push_test(qb, field.kind, test, |qb| {
                qb.push(outer(e));
            });
            qb.push(close);
        }
        Place::JsonKey(column) => {
            qb.push(open);
            push_test(qb, field.kind, test, |qb| {
                qb.push(format!("({alias}.{column} ->> "));
                qb.push_bind(field.key.clone().unwrap_or_default());
                qb.push(")");
            });
            qb.push(close);
        }
        Place::Related { from, on, col } => {
            qb.push(if negated { "NOT EXISTS (" } else { "EXISTS (" });
            qb.push(format!("SELECT 1 FROM {from} WHERE {} AND ", outer(on)));
            push_test(qb, field.kind, test, |qb| {
                qb.push(col);
            });
            qb.push(")");
        }
        Place::RelatedKey {
            from,
            on,
            key_col,
            col,
        } => {
            qb.push(if negated { "NOT EXISTS (" } else { "EXISTS (" });
            qb.push(format!(
                "SELECT 1 FROM {from} WHERE {} AND {key_col} = ",
                outer(on)
            ));
            qb.push_bind(field.key.clone().unwrap_or_default());
            qb.push(" AND ");
            push_test(qb, field.kind, test, |qb| {
                qb.push(col);
            });
            qb.push(")");
        }
    }
}

/// Push `test` over the value pushed by `value`. Text compares case-insensitively.
fn push_test(
    qb: &mut QueryBuilder<'_, Postgres>,
    kind: Kind,
    test: &Test,
    value: impl Fn(&mut QueryBuilder<'_, Postgres>),
) {
    let text = kind == Kind::Text;
    let lhs = |qb: &mut QueryBuilder<'_, Postgres>| {
        if text {
            qb.push("lower(");
            value(qb);
            qb.push(")");
        } else {
            value(qb);
        }
    };
    match test {
        Test::Eq(v) => {
            lhs(qb);
            qb.push(" = ");
            push_val(qb, text, v);
        }
        Test::Like(p) => {
            lhs(qb);
            qb.push(" LIKE ");
            // Enum values are stored upper-case; the pattern is folded the same way.
            let pattern = if text {
                Val::Text(p.clone())
            } else {
                Val::Text(p.to_ascii_uppercase())
            };
            push_val(qb, text, &pattern);
            qb.push(" ESCAPE '\\'");
        }
        Test::In(vals) => {
            lhs(qb);
            qb.push(" IN (");
            for (i, v) in vals.iter().enumerate() {
                if i > 0 {
                    qb.push(", ");
                }
                push_val(qb, text, v);
            }
            qb.push(")");
        }
        Test::Cmp(op, v) => {
            lhs(qb);
            qb.push(format!(" {op} "));
            push_val(qb, text, v);
        }
        Test::NonEmpty => {
            value(qb);
            qb.push(" <> ''");
        }
        Test::NotNull => {
            value(qb);
            qb.push(" IS NOT NULL");
        }
    }
}

fn push_val(qb: &mut QueryBuilder<'_, Postgres>, text: bool, v: &Val) {
    match v {
        Val::Text(s) if text => {
            qb.push("lower(");
            qb.push_bind(s.clone());
            qb.push(")");
        }
        Val::Text(s) => {
            qb.push_bind(s.clone());
        }
        Val::Int(i) => {
            qb.push_bind(*i);
        }
        Val::Bool(b) => {
            qb.push_bind(*b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL text for `q` over alias `t`, and how many values were bound.
    fn sql(entity: Entity, q: &str) -> (String, usize) {
        let f = Filter::parse(entity, q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let mut qb = QueryBuilder::<Postgres>::new("");
        f.push_sql(&mut qb, "t");
        let text = qb.sql().to_owned();
        let binds = text.matches('$').count();
        (text, binds)
    }

    fn target(q: &str) -> String {
        sql(Entity::Target, q).0
    }

    #[test]
    fn equality_is_case_insensitive_and_bound() {
        let (s, n) = sql(Entity::Target, "name==Device-1");
        assert_eq!(s, "(lower(t.name) = lower($1))");
        assert_eq!(n, 1);
        assert!(!s.contains("Device"));
    }

    #[test]
    fn wildcards_become_escaped_like_patterns() {
        assert_eq!(
            target("name==dev*"),
            "(lower(t.name) LIKE lower($1) ESCAPE '\\')"
        );
        assert_eq!(like_pattern("a%b_c\\d*"), "a\\%b\\_c\\\\d%");
        assert_eq!(like_pattern("*x*"), "%x%");
    }

    #[test]
    fn negative_operators_also_match_null() {
        assert_eq!(
            target("description!=x"),
            "(NOT COALESCE(lower(t.description) = lower($1), false))"
        );
        assert_eq!(
            target("name=out=(a,b)"),
            "(NOT COALESCE(lower(t.name) IN (lower($1), lower($2)), false))"
        );
        assert_eq!(
            target("tag!=blue"),
            "(NOT EXISTS (SELECT 1 FROM target_tag_assignment fqa JOIN target_tag fq ON fq.id = fqa.tag_id WHERE fqa.target_id = t.id AND lower(fq.name) = lower($1)))"
        );
    }

    #[test]
    fn empty_string_means_null_or_empty() {
        assert_eq!(
            target("description==''"),
            "(NOT COALESCE(t.description <> '', false))"
        );
        assert_eq!(target("description!=''"), "(t.description <> '')");
        assert_eq!(
            target("lastcontrollerrequestat==''"),
            "(NOT COALESCE(t.last_target_query IS NOT NULL, false))"
        );
    }

    #[test]
    fn is_null_and_not_null() {
        assert_eq!(
            target("description=is=null"),
            "(NOT COALESCE(t.description IS NOT NULL, false))"
        );
        assert_eq!(
            target("description=not=NULL"),
            "(t.description IS NOT NULL)"
        );
        // Without =is= the word null is just text.
        assert_eq!(
            target("description==null"),
            "(lower(t.description) = lower($1))"
        );
        assert_eq!(
            target("description=is=x"),
            "(lower(t.description) = lower($1))"
        );
    }

    #[test]
    fn enums_are_validated_and_upper_cased() {
        let f = Filter::parse(Entity::Target, "updatestatus==in_sync").unwrap();
        let Expr::Pred { test, .. } = &f.expr else {
            panic!("{f:?}")
        };
        assert_eq!(*test, Test::Eq(Val::Text("IN_SYNC".into())));
        assert_eq!(target("updatestatus==in_sync"), "(t.update_status = $1)");
        for (entity, q) in [
            (Entity::Target, "updatestatus==sleepy"),
            (Entity::Action, "status=in=(running,bogus)"),
        ] {
            let refused = Filter::parse(entity, q);
            assert!(
                matches!(refused, Err(RsqlError::Syntax(_))),
                "{entity:?} {q}"
            );
        }
    }

    #[test]
    fn numbers_and_booleans_are_typed() {
        let (s, n) = sql(Entity::Action, "weight=ge=500;active==true");
        assert_eq!(s, "((t.weight >= $1) AND (t.active = $2))");
        assert_eq!(n, 2);
        for bad in ["weight==heavy", "active==yes", "id==1*", "rollout.id=lt=x"] {
            assert!(
                matches!(
                    Filter::parse(Entity::Action, bad),
                    Err(RsqlError::Syntax(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn field_names_are_case_insensitive_keys_are_not() {
        assert_eq!(target("ControllerId==a"), target("controllerid==a"));
        assert_eq!(
            target("attribute.HwRev==2"),
            "(lower((t.attributes ->> $1)) = lower($2))"
        );
        let f = Filter::parse(Entity::Target, "ATTRIBUTE.HwRev==2").unwrap();
        let Expr::Pred { field, .. } = &f.expr else {
            panic!()
        };
        assert_eq!(field.key.as_deref(), Some("HwRev"));
    }

    #[test]
    fn related_fields_use_correlated_subqueries() {
        assert_eq!(
            target("metadata.owner==ops"),
            "(EXISTS (SELECT 1 FROM target_metadata fq WHERE fq.target_id = t.id AND fq.key = $1 AND lower(fq.value) = lower($2)))"
        );
        assert_eq!(
            target("assignedds.name==os"),
            "(EXISTS (SELECT 1 FROM distribution_set fq WHERE fq.id = t.assigned_ds_id AND lower(fq.name) = lower($1)))"
        );
        let (s, _) = sql(Entity::Action, "distributionset.type==os");
        assert!(s.contains("JOIN distribution_set_type fqt"), "{s}");
        let (s, _) = sql(Entity::Action, "rolloutgroup.name==g1");
        assert!(s.contains("fq.id = t.rollout_group_id"), "{s}");
    }

    #[test]
    fn every_documented_field_resolves() {
        let fields: &[(Entity, &[&str])] = &[
            (
                Entity::Target,
                &[
                    "id",
                    "controllerid",
                    "name",
                    "description",
                    "createdat",
                    "createdby",
                    "lastmodifiedat",
                    "lastmodifiedby",
                    "updatestatus",
                    "ipaddress",
                    "attribute.x",
                    "metadata.x",
                    "group",
                    "assignedds.name",
                    "assignedds.version",
                    "installedds.name",
                    "installedds.version",
                    "tag",
                    "tag.name",
                    "lastcontrollerrequestat",
                    "type.id",
                    "type.key",
                    "type.name",
                    "targettype.id",
                    "targettype.key",
                    "targettype.name",
                    "autoconfirm",
                    "tags.name",
                    "assignedDistributionSet.name",
                    "assignedDistributionSet.version",
                    "installedDistributionSet.name",
                    "installedDistributionSet.version",
                    "targetType.key",
                    "controllerAttributes.x",
                    "lastTargetQuery",
                ],
            ),
            (
                Entity::Rollout,
                &[
                    "id",
                    "name",
                    "description",
                    "status",
                    "createdat",
                    "createdby",
                    "lastmodifiedat",
                    "lastmodifiedby",
                    "distributionset.id",
                    "distributionset.name",
                    "distributionset.version",
                    "distributionset.type",
                ],
            ),
            (
                Entity::RolloutGroup,
                &[
                    "id",
                    "name",
                    "description",
                    "createdat",
                    "createdby",
                    "lastmodifiedat",
                    "lastmodifiedby",
                ],
            ),
            (
                Entity::Action,
                &[
                    "id",
                    "active",
                    "status",
                    "laststatuscode",
                    "createdat",
                    "createdby",
                    "lastmodifiedat",
                    "lastmodifiedby",
                    "weight",
                    "externalref",
                    "target.controllerId",
                    "target.name",
                    "target.updateStatus",
                    "target.ipaddress",
                    "distributionset.id",
                    "distributionset.name",
                    "distributionset.version",
                    "distributionset.type",
                    "rollout.id",
                    "rollout.name",
                    "rolloutgroup.id",
                    "rolloutgroup.name",
                ],
            ),
            (
                Entity::TargetFilter,
                &[
                    "id",
                    "name",
                    "query",
                    "createdat",
                    "createdby",
                    "lastmodifiedat",
                    "lastmodifiedby",
                ],
            ),
            (
                Entity::SoftwareModule,
                &[
                    "id",
                    "name",
                    "version",
                    "description",
                    "vendor",
                    "type",
                    "createdat",
                    "metadata.x",
                ],
            ),
            (
                Entity::DistributionSet,
                &[
                    "id",
                    "name",
                    "version",
                    "description",
                    "type",
                    "valid",
                    "locked",
                    "createdat",
                ],
            ),
            (
                Entity::TargetType,
                &["id", "key", "name", "description", "colour", "createdat"],
            ),
            (
                Entity::TargetTag,
                &["id", "name", "description", "colour", "lastmodifiedby"],
            ),
            (Entity::TargetMetadata, &["key", "value"]),
        ];
        for (entity, names) in fields {
            for name in *names {
                assert!(resolve(*entity, name).is_ok(), "{entity:?} {name}");
            }
        }
    }

    #[test]
    fn unknown_fields_are_named_in_the_error() {
        assert_eq!(
            Filter::parse(Entity::Target, "colour==red"),
            Err(RsqlError::UnknownField("colour".into()))
        );
        assert_eq!(
            Filter::parse(Entity::RolloutGroup, "status==ready"),
            Err(RsqlError::UnknownField("status".into()))
        );
        for (entity, q) in [
            // Keyed fields exist only where the entity has such data.
            (Entity::Rollout, "attribute.x==1"),
            (Entity::Target, "attribute.==1"),
            // Tags have no key; metadata entries have only key and value.
            (Entity::TargetTag, "key==x"),
            (Entity::TargetMetadata, "createdat==1"),
            (Entity::TargetMetadata, "metadata.x==1"),
        ] {
            assert!(
                matches!(Filter::parse(entity, q), Err(RsqlError::UnknownField(_))),
                "{entity:?} {q}"
            );
        }
    }

    #[test]
    fn composition_keeps_precedence_with_parentheses() {
        assert_eq!(
            target("name==a,name==b;group==g"),
            "((lower(t.name) = lower($1)) OR ((lower(t.name) = lower($2)) AND (lower(t.target_group) = lower($3))))"
        );
    }

    #[test]
    fn injection_attempts_stay_values() {
        let (s, n) = sql(
            Entity::Target,
            r#"name=="x' OR 1=1; DROP TABLE target; --""#,
        );
        assert_eq!(n, 1);
        assert!(!s.contains("DROP"), "{s}");
        let (s, n) = sql(Entity::Target, "attribute.x--DROP==1");
        assert_eq!(n, 2);
        assert!(!s.contains("DROP"), "{s}");
    }
}
