//! Sorting and paging of the Management API's lists (rollouts.md §9.1).
//!
//! The API parses `sort=field:ASC,...` into a [`Sort`]: field *names* checked against the
//! list's [`SortFields`], with a typed [`Direction`]. Only the store turns names into SQL: each
//! store module owns its field table (name → expression) and its default order, and every list
//! runs through [`fetch`], which reads one page of rows and the total under the same condition.

use std::borrow::Cow;

use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder};

use super::{Result, StoreError};

/// The direction of one sort field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

impl Direction {
    /// `ASC` or `DESC`, in any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "ASC" => Some(Self::Asc),
            "DESC" => Some(Self::Desc),
            _ => None,
        }
    }

    /// `ASC` or `DESC`, as the API writes it (and SQL).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "ASC",
            Self::Desc => "DESC",
        }
    }
}

/// The sortable fields of one list: API name (lower case, matched ignoring case) → SQL
/// expression over the list's table aliases — a column or any expression, e.g. a `CASE` that
/// sorts a status by its hawkBit code — and the order of a request that names none. A list of
/// an entity with one of hawkBit's base columns ([`Base`]) names its table alias and adds only
/// its own fields. Outside `store` only the names can be read.
#[derive(Debug)]
pub struct SortFields {
    base: Option<(Base, &'static str)>,
    fields: &'static [(&'static str, &'static str)],
    default: &'static str,
}

/// The sortable columns an entity shares with every other of its kind (hawkBit's base entities):
/// API name → column of the entity's own table.
#[derive(Debug, Clone, Copy)]
pub(super) enum Base {
    /// `id` and the audit columns ([`super::Audit`]): hawkBit's `BaseEntity`.
    Audited,
    /// Those, a name and a description: hawkBit's `NamedEntity`.
    Named,
}

impl Base {
    const AUDITED: &[(&str, &str)] = &[
        ("id", "id"),
        ("createdat", "created_at"),
        ("createdby", "created_by"),
        ("lastmodifiedat", "last_modified_at"),
        ("lastmodifiedby", "last_modified_by"),
    ];
    const NAMED: &[(&str, &str)] = &[("name", "name"), ("description", "description")];

    fn columns(self) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
        let named = match self {
            Self::Audited => &[][..],
            Self::Named => Self::NAMED,
        };
        Self::AUDITED.iter().chain(named)
    }
}

impl SortFields {
    /// `fields` (name → expression) and the default `ORDER BY` text.
    pub(super) const fn new(
        fields: &'static [(&'static str, &'static str)],
        default: &'static str,
    ) -> Self {
        Self {
            base: None,
            fields,
            default,
        }
    }

    /// The columns of `base` over the table aliased `alias`, then `fields` (name → expression);
    /// the default `ORDER BY` text.
    pub(super) const fn of(
        base: Base,
        alias: &'static str,
        fields: &'static [(&'static str, &'static str)],
        default: &'static str,
    ) -> Self {
        Self {
            base: Some((base, alias)),
            fields,
            default,
        }
    }

    /// The first field whose name `matches`, and its SQL expression.
    fn lookup(&self, matches: impl Fn(&str) -> bool) -> Option<(&'static str, Cow<'static, str>)> {
        if let Some((base, alias)) = self.base
            && let Some((name, column)) = base.columns().find(|(n, _)| matches(n))
        {
            return Some((name, Cow::Owned(format!("{alias}.{column}"))));
        }
        self.fields
            .iter()
            .find(|(n, _)| matches(n))
            .map(|(name, expr)| (*name, Cow::Borrowed(*expr)))
    }

    /// The field called `name` (ignoring case), by its own name; `None` if the list cannot
    /// sort by it.
    pub fn field(&self, name: &str) -> Option<&'static str> {
        self.lookup(|n| n.eq_ignore_ascii_case(name))
            .map(|(n, _)| n)
    }

    /// `ORDER BY` text for `sort`; the default order when it names no field.
    fn order_by(&self, sort: &Sort) -> Result<String> {
        if sort.0.is_empty() {
            return Ok(self.default.to_owned());
        }
        let mut parts = Vec::with_capacity(sort.0.len());
        for (name, dir) in &sort.0 {
            let (_, expr) = self
                .lookup(|n| n == *name)
                // A sort parsed against another list's fields: a bug, not a request error.
                .ok_or_else(|| {
                    StoreError::Permanent(sqlx::Error::ColumnNotFound((*name).into()))
                })?;
            parts.push(format!("{expr} {}", dir.as_str()));
        }
        Ok(parts.join(", "))
    }
}

/// A requested order: fields of one list by name, the first one deciding first. Empty means
/// the list's default order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sort(Vec<(&'static str, Direction)>);

impl Sort {
    /// Then by `field` (a name from [`SortFields::field`]).
    pub fn then(mut self, field: &'static str, dir: Direction) -> Self {
        self.0.push((field, dir));
        self
    }
}

/// Which page of a list to read, in which order.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub sort: Sort,
    pub offset: i64,
    pub limit: i64,
}

/// What a list reads: `SELECT {columns} FROM {from}` for its rows, `SELECT count(*) FROM
/// {count_from}` for its total (the same rows, without joins that only add columns), sorted by
/// `sort`.
pub(super) struct Listing<'a> {
    pub columns: &'a str,
    pub from: &'a str,
    pub count_from: &'a str,
    pub sort: &'a SortFields,
}

/// One page of a list and its total: `SELECT … WHERE <condition> ORDER BY … OFFSET … LIMIT …`,
/// then `SELECT count(*) … WHERE <condition>`. `condition` pushes the same boolean expression
/// (binds included) into both statements.
pub(super) async fn fetch<T>(
    conn: &mut PgConnection,
    list: &Listing<'_>,
    page: &PageRequest,
    condition: impl Fn(&mut QueryBuilder<'_, Postgres>),
) -> Result<(Vec<T>, i64)>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    let order_by = list.sort.order_by(&page.sort)?;
    let mut qb = QueryBuilder::new(format!("SELECT {} FROM {} WHERE ", list.columns, list.from));
    condition(&mut qb);
    qb.push(format!(" ORDER BY {order_by} OFFSET "))
        .push_bind(page.offset)
        .push(" LIMIT ")
        .push_bind(page.limit);
    let rows = qb.build_query_as().fetch_all(&mut *conn).await?;
    let mut qb = QueryBuilder::new(format!("SELECT count(*) FROM {} WHERE ", list.count_from));
    condition(&mut qb);
    let total = qb.build_query_scalar().fetch_one(conn).await?;
    Ok((rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: SortFields = SortFields::new(
        &[
            ("name", "x.name"),
            ("status", "CASE x.status WHEN 'A' THEN 0 ELSE 1 END"),
        ],
        "x.id ASC",
    );

    #[test]
    fn no_fields_is_the_default_order() {
        assert_eq!(FIELDS.order_by(&Sort::default()).unwrap(), "x.id ASC");
    }

    #[test]
    fn fields_resolve_to_their_expressions_in_order() {
        let sort = Sort::default()
            .then(FIELDS.field("STATUS").unwrap(), Direction::Desc)
            .then(FIELDS.field("name").unwrap(), Direction::Asc);
        assert_eq!(
            FIELDS.order_by(&sort).unwrap(),
            "CASE x.status WHEN 'A' THEN 0 ELSE 1 END DESC, x.name ASC"
        );
    }

    #[test]
    fn base_fields_are_columns_of_the_alias() {
        const NAMED: SortFields = SortFields::of(Base::Named, "g", &[("colour", "g.colour")], "");
        let sort = Sort::default()
            .then(NAMED.field("CreatedBy").unwrap(), Direction::Asc)
            .then(NAMED.field("colour").unwrap(), Direction::Desc)
            .then(NAMED.field("description").unwrap(), Direction::Asc);
        assert_eq!(
            NAMED.order_by(&sort).unwrap(),
            "g.created_by ASC, g.colour DESC, g.description ASC"
        );
        const AUDITED: SortFields = SortFields::of(Base::Audited, "f", &[], "");
        assert_eq!(AUDITED.field("lastmodifiedat"), Some("lastmodifiedat"));
        assert_eq!(AUDITED.field("description"), None);
    }

    #[test]
    fn names_are_matched_ignoring_case_and_unknown_ones_are_refused() {
        assert_eq!(FIELDS.field("Name"), Some("name"));
        assert_eq!(FIELDS.field("x.name"), None);
        let foreign = Sort::default().then("colour", Direction::Asc);
        assert!(FIELDS.order_by(&foreign).is_err());
        assert_eq!(Direction::parse("desc"), Some(Direction::Desc));
        assert_eq!(Direction::parse("SIDEWAYS"), None);
    }
}
