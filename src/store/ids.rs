//! The domain's id newtypes as PostgreSQL `bigint`s: rows and binds carry `ActionId`,
//! `RolloutId`, … directly, while `domain` itself stays free of sqlx (the impls live here;
//! the ids are this crate's types, so the orphan rule allows it).

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

use crate::domain::ids::{ActionId, DsId, GroupId, RolloutId, TargetId, TenantId};

macro_rules! bigint_id {
    ($($id:ty),*) => {$(
        impl Type<Postgres> for $id {
            fn type_info() -> PgTypeInfo {
                <i64 as Type<Postgres>>::type_info()
            }
        }
        impl PgHasArrayType for $id {
            fn array_type_info() -> PgTypeInfo {
                <i64 as PgHasArrayType>::array_type_info()
            }
        }
        impl Encode<'_, Postgres> for $id {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <i64 as Encode<Postgres>>::encode_by_ref(&self.0, buf)
            }
        }
        impl<'r> Decode<'r, Postgres> for $id {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                <i64 as Decode<Postgres>>::decode(value).map(Self)
            }
        }
    )*};
}

bigint_id!(TenantId, TargetId, ActionId, DsId, RolloutId, GroupId);

/// A [`Named`](crate::domain::names::Named) enum as PostgreSQL `text`: written by its stored
/// name, and a name no variant has is a decode error (never a default).
macro_rules! text_name {
    ($($ty:ty),*) => {$(
        impl Type<Postgres> for $ty {
            fn type_info() -> PgTypeInfo {
                <&str as Type<Postgres>>::type_info()
            }
            fn compatible(ty: &PgTypeInfo) -> bool {
                <&str as Type<Postgres>>::compatible(ty)
            }
        }
        impl Encode<'_, Postgres> for $ty {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as Encode<Postgres>>::encode_by_ref(&self.as_db(), buf)
            }
        }
        impl<'r> Decode<'r, Postgres> for $ty {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let s = <&str as Decode<Postgres>>::decode(value)?;
                <$ty>::from_db(s).ok_or_else(|| {
                    format!("unknown {} {s:?} in the database", stringify!($ty)).into()
                })
            }
        }
    )*};
}

text_name!(
    crate::domain::auto_assignment::AutoAssignStatus,
    crate::domain::action::ActionType
);
