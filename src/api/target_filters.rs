//! Target filter queries (rollouts.md §9.7): named, stored target queries. The query is
//! validated as a target filter before it is stored, so rollouts and auto-assignments built from
//! it never meet a query they cannot run. The legacy `/autoAssignDS` endpoints are not offered.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::common::{Ctx, READ_TARGET, Resource, get_put_delete};
use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, put_opt};
use crate::auth::Permission;
use crate::domain::action::ActionType;
use crate::store::filter::{Entity, Filter};
use crate::store::target_filters::{self, TargetFilterRow};

/// Column limits of `target_filter_query` (§1.4).
const MAX_NAME: usize = 128;
const MAX_QUERY: usize = 1024;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/targetfilters", FILTERS.list().post(create))
        .route(
            "/rest/v1/targetfilters/{id}",
            get_put_delete(get(one), &[Permission::UPDATE_TARGET], update, remove),
        )
}

fn filter_json(base: &BaseUrl, f: &TargetFilterRow) -> Value {
    let path = format!("/targetfilters/{}", f.id);
    let mut v = json!({
        "id": f.id, "name": f.name, "query": f.query,
        "createdBy": f.audit.created_by, "createdAt": f.audit.created_at,
        "lastModifiedBy": f.audit.last_modified_by, "lastModifiedAt": f.audit.last_modified_at,
        "_links": {
            "self": base.link(&path),
            "autoAssignDS": base.link(&format!("{path}/autoAssignDS")),
        }
    });
    put_opt(&mut v, "autoAssignDistributionSet", f.auto_assign_ds_id);
    put_opt(
        &mut v,
        "autoAssignActionType",
        f.auto_assign_action_type
            .as_deref()
            .and_then(ActionType::from_db)
            .map(ActionType::api_name),
    );
    put_opt(&mut v, "autoAssignWeight", f.auto_assign_weight);
    put_opt(&mut v, "confirmationRequired", f.confirmation_required);
    v
}

/// Path ids that are not numbers name no filter.
fn parse_id(s: &str) -> ApiResult<i64> {
    s.parse().map_err(|_| FILTERS.missing(s))
}

fn check_name(name: &str) -> ApiResult<()> {
    let n = name.chars().count();
    if name.trim().is_empty() || n > MAX_NAME {
        return Err(ApiError::BadRequest(format!(
            "name must have 1 to {MAX_NAME} characters"
        )));
    }
    Ok(())
}

/// Length first (a constraint violation), then the query language (400 rsql errors).
fn check_query(query: &str) -> ApiResult<()> {
    if query.trim().is_empty() || query.chars().count() > MAX_QUERY {
        return Err(ApiError::BadRequest(format!(
            "query must have 1 to {MAX_QUERY} characters"
        )));
    }
    Filter::parse(Entity::Target, query)?;
    Ok(())
}

static FILTERS: Resource<TargetFilterRow> = Resource::new(
    &target_filters::TABLE,
    Entity::TargetFilter,
    READ_TARGET,
    filter_json,
);

async fn one(cx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    cx.get_by_id(&FILTERS, parse_id(&id)?).await
}

#[derive(Deserialize)]
struct FilterBody {
    name: Option<String>,
    query: Option<String>,
}

async fn create(cx: Ctx, Body(b): Body<FilterBody>) -> ApiResult<(StatusCode, Json<Value>)> {
    cx.require(&[Permission::CREATE_TARGET])?;
    let name = b.name.unwrap_or_default();
    check_name(&name)?;
    let query = b.query.unwrap_or_default();
    check_query(&query)?;
    let (tenant, user) = (cx.tenant(), cx.caller.name());
    let f = cx
        .db()
        .run(async |c| {
            let id = target_filters::insert(c, tenant, &name, &query, user).await?;
            target_filters::TABLE
                .find(c, tenant, id)
                .await?
                .ok_or_else(|| FILTERS.missing(id))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(filter_json(&cx.base, &f))))
}

async fn update(cx: Ctx, Path(id): Path<String>, b: FilterBody) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    if let Some(n) = &b.name {
        check_name(n)?;
    }
    if let Some(q) = &b.query {
        check_query(q)?;
    }
    let (tenant, user) = (cx.tenant(), cx.caller.name());
    let (name, query) = (b.name.as_deref(), b.query.as_deref());
    let change = async |c: &mut PgConnection| {
        if !target_filters::update(c, tenant, id, name, query, user).await? {
            return Ok(None);
        }
        target_filters::TABLE.find(c, tenant, id).await
    };
    cx.update_one(
        change,
        || FILTERS.missing(id),
        |f| filter_json(&cx.base, &f),
    )
    .await
}

async fn remove(cx: Ctx, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = parse_id(&id)?;
    cx.delete_by_id(&[Permission::DELETE_TARGET], &FILTERS, id)
        .await
}
