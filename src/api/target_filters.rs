//! Target filter queries (rollouts.md §9.7): named, stored target queries. The query is
//! validated as a target filter before it is stored, so rollouts and auto-assignments built from
//! it never meet a query they cannot run. The legacy `/autoAssignDS` endpoints are not offered.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Caller, Page, paged, put_opt};
use crate::auth::Permission;
use crate::domain::action::ActionType;
use crate::store::StoreError;
use crate::store::filter::{Entity, Filter};
use crate::store::target_filters::{self, TargetFilterRow};

/// Column limits of `target_filter_query` (§1.4).
const MAX_NAME: usize = 128;
const MAX_QUERY: usize = 1024;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/rest/v1/targetfilters", get(list).post(create))
        .route(
            "/rest/v1/targetfilters/{id}",
            get(one).put(update).delete(remove),
        )
}

async fn conn(s: &ApiState) -> ApiResult<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    Ok(s.engine.pool().acquire().await.map_err(StoreError::from)?)
}

fn filter_json(f: &TargetFilterRow, base: &BaseUrl) -> Value {
    let path = format!("/targetfilters/{}", f.id);
    let mut v = json!({
        "id": f.id, "name": f.name, "query": f.query,
        "createdBy": f.created_by, "createdAt": f.created_at,
        "lastModifiedBy": f.last_modified_by, "lastModifiedAt": f.last_modified_at,
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
    s.parse()
        .map_err(|_| ApiError::NotFound(format!("target filter {s} not found")))
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("target filter {id} not found"))
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

async fn list(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    page: Page,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_TARGET])?;
    let q = page.filter(Entity::TargetFilter)?;
    let order = page.order_by(target_filters::SORT_FIELDS, "f.id ASC")?;
    let mut c = conn(&s).await?;
    let (rows, total) = target_filters::list(
        &mut c,
        caller.tenant,
        q.as_ref(),
        &order,
        page.offset(),
        page.limit(),
    )
    .await?;
    Ok(Json(paged(
        rows.iter().map(|f| filter_json(f, &base)).collect(),
        total,
    )))
}

async fn one(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::READ_TARGET])?;
    let id = parse_id(&id)?;
    let mut c = conn(&s).await?;
    let f = target_filters::find(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(filter_json(&f, &base)))
}

#[derive(Deserialize)]
struct FilterBody {
    name: Option<String>,
    query: Option<String>,
}

async fn create(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Body(b): Body<FilterBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(&[Permission::CREATE_TARGET])?;
    let name = b.name.unwrap_or_default();
    check_name(&name)?;
    let query = b.query.unwrap_or_default();
    check_query(&query)?;
    let mut c = conn(&s).await?;
    let id = target_filters::insert(&mut c, caller.tenant, &name, &query, caller.name()).await?;
    let f = target_filters::find(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok((StatusCode::CREATED, Json(filter_json(&f, &base))))
}

async fn update(
    State(s): State<ApiState>,
    caller: Caller,
    base: BaseUrl,
    Path(id): Path<String>,
    Body(b): Body<FilterBody>,
) -> ApiResult<Json<Value>> {
    caller.require(&[Permission::UPDATE_TARGET])?;
    let id = parse_id(&id)?;
    if let Some(n) = &b.name {
        check_name(n)?;
    }
    if let Some(q) = &b.query {
        check_query(q)?;
    }
    let mut c = conn(&s).await?;
    let found = target_filters::update(
        &mut c,
        caller.tenant,
        id,
        b.name.as_deref(),
        b.query.as_deref(),
        caller.name(),
    )
    .await?;
    if !found {
        return Err(not_found(id));
    }
    let f = target_filters::find(&mut c, caller.tenant, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(Json(filter_json(&f, &base)))
}

async fn remove(
    State(s): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(&[Permission::DELETE_TARGET])?;
    let id = parse_id(&id)?;
    let mut c = conn(&s).await?;
    if target_filters::delete(&mut c, caller.tenant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(id))
    }
}
