//! The recurring statement shapes of the store: one SQL text, its parameters as a tuple (bound
//! in order as `$1`, `$2`, …), and one way to run it. Instead of
//!
//! ```text
//! sqlx::query("DELETE FROM target_tag WHERE tenant_id = $1 AND id = $2")
//!     .bind(tenant.0)
//!     .bind(id)
//!     .execute(conn)
//!     .await?
//!     .rows_affected()
//! ```
//!
//! a store function writes `execute(conn, "DELETE …", (tenant.0, id)).await?`. Statements
//! built piece by piece (filters, pages) keep using `QueryBuilder`.
//!
//! Never here: SQL text of a particular table (that stays in the module owning the table).

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Arguments, Encode, FromRow, PgConnection, Postgres, Type};

use super::{Result, StoreError};

/// The parameters of one statement: a tuple (up to 10 values) of anything sqlx can bind, `()`
/// for none. Values are encoded at once, so borrowed ones need only live for the call.
pub trait Binds<'q> {
    /// The encoded parameters, in tuple order.
    fn into_arguments(self) -> Result<PgArguments>;
}

impl Binds<'_> for () {
    fn into_arguments(self) -> Result<PgArguments> {
        Ok(PgArguments::default())
    }
}

/// `Binds` for a tuple of the named type parameters.
macro_rules! impl_binds {
    ($($value:ident),+) => {
        impl<'q, $($value),+> Binds<'q> for ($($value,)+)
        where
            $($value: Encode<'q, Postgres> + Type<Postgres> + Send + 'q),+
        {
            #[allow(non_snake_case)] // the values are named after their type parameters
            fn into_arguments(self) -> Result<PgArguments> {
                let ($($value,)+) = self;
                let mut args = PgArguments::default();
                $(args.add($value).map_err(|e| StoreError::Permanent(sqlx::Error::Encode(e)))?;)+
                Ok(args)
            }
        }
    };
}

impl_binds!(A);
impl_binds!(A, B);
impl_binds!(A, B, C);
impl_binds!(A, B, C, D);
impl_binds!(A, B, C, D, E);
impl_binds!(A, B, C, D, E, F);
impl_binds!(A, B, C, D, E, F, G);
impl_binds!(A, B, C, D, E, F, G, H);
impl_binds!(A, B, C, D, E, F, G, H, I);
impl_binds!(A, B, C, D, E, F, G, H, I, J);
impl_binds!(A, B, C, D, E, F, G, H, I, J, K);
impl_binds!(A, B, C, D, E, F, G, H, I, J, K, L);

/// Run a statement; how many rows it inserted, changed or deleted.
pub async fn execute<'q>(conn: &mut PgConnection, sql: &str, binds: impl Binds<'q>) -> Result<u64> {
    let args = binds.into_arguments()?;
    Ok(sqlx::query_with(sql, args)
        .execute(conn)
        .await?
        .rows_affected())
}

/// The fetching runners: `$name(conn, sql, binds)` builds `sqlx::$build(sql, args)` and
/// awaits its `$run`, decoding rows (or the single value of a row) as `$row`.
macro_rules! runners {
    ($($(#[doc = $doc:literal])* fn $name:ident -> $out:ty = $build:ident.$run:ident as $row:ty;)*) => {$(
        $(#[doc = $doc])*
        pub async fn $name<'q, T>(
            conn: &mut PgConnection,
            sql: &str,
            binds: impl Binds<'q>,
        ) -> Result<$out>
        where
            $row: for<'r> FromRow<'r, PgRow>,
            T: Send + Unpin,
        {
            let args = binds.into_arguments()?;
            Ok(sqlx::$build(sql, args).$run(conn).await?)
        }
    )*};
}

runners! {
    /// The one row a statement returns (an error if none).
    fn fetch_one -> T = query_as_with.fetch_one as T;
    /// The row a statement returns, if any.
    fn fetch_optional -> Option<T> = query_as_with.fetch_optional as T;
    /// Every row a statement returns.
    fn fetch_all -> Vec<T> = query_as_with.fetch_all as T;
    /// The single value of the one row a statement returns (`SELECT count(*)`, `RETURNING id`).
    fn scalar -> T = query_scalar_with.fetch_one as (T,);
    /// The single value of the row a statement returns, if any.
    fn scalar_optional -> Option<T> = query_scalar_with.fetch_optional as (T,);
    /// The single value of every row a statement returns.
    fn scalar_all -> Vec<T> = query_scalar_with.fetch_all as (T,);
}
