//! Planner statistics of the tables that grow fastest. A fleet registering or a rollout creating
//! its actions can multiply a table within seconds, long before autovacuum's next ANALYZE; with
//! statistics that still describe an empty table the planner picks sequential scans and hash
//! joins that cost tens of milliseconds per statement (seen in the bench at 100,000 devices).

use sqlx::PgConnection;

use super::Result;
use super::sql;

/// The tables whose statistics are kept current (the outbox churns but is always read in id
/// order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Target,
    Action,
    ActionStatus,
    RolloutTargetGroup,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Target,
        Table::Action,
        Table::ActionStatus,
        Table::RolloutTargetGroup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Target => "target",
            Table::Action => "action",
            Table::ActionStatus => "action_status",
            Table::RolloutTargetGroup => "rollout_target_group",
        }
    }
}

/// ANALYZE a table once changes since its last ANALYZE reach this share of its rows (a table
/// that grew from empty qualifies at once)…
const CHANGED_SHARE: f64 = 0.2;
/// …and at least this many.
pub const CHANGED_MIN: i64 = 1000;

/// Analyze the tables whose statistics fell behind; returns their names. `grown` are rows the
/// engine itself just added (committed): the server's own change counters lag by up to a second,
/// so those are compared with what the planner believes (`reltuples`) directly.
pub async fn refresh(conn: &mut PgConnection, grown: &[(Table, i64)]) -> Result<Vec<String>> {
    let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    let grown_names: Vec<&str> = grown.iter().map(|(t, _)| t.name()).collect();
    let grown_rows: Vec<i64> = grown.iter().map(|(_, n)| *n).collect();
    let stale: Vec<String> = sql::scalar_all(
        &mut *conn,
        "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
         LEFT JOIN (SELECT name, sum(n) AS n FROM unnest($4::text[], $5::bigint[]) AS g(name, n)
                    GROUP BY name) g ON g.name = s.relname
         WHERE s.schemaname = current_schema() AND s.relname = ANY($1)
           AND ((s.n_mod_since_analyze >= $2 AND s.n_mod_since_analyze >= $3 * s.n_live_tup)
                OR (g.n >= $2 AND g.n >= $3 * greatest(c.reltuples, 0)))
         ORDER BY s.relname",
        (
            &names,
            CHANGED_MIN,
            CHANGED_SHARE,
            &grown_names,
            &grown_rows,
        ),
    )
    .await?;
    for table in &stale {
        // Names come from the constant list above, never from input.
        sqlx::query(&format!("ANALYZE {table}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(stale)
}
