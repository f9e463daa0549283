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
