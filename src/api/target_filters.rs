//! Target filter queries (rollouts.md §9.7): named, stored target queries. The query is
//! validated as a target filter before it is stored, so rollouts and auto-assignments built from
//! it never meet a query they cannot run. hawkBit 1.1's filter-embedded auto-assignment
//! (`/targetfilters/{id}/autoAssignDS`, `/distributionsets/{id}/autoAssignTargetFilters`) is an
//! auto-assignment linked to the filter: it takes the filter's name and query and follows them.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::auto_assignments::parse_action_type;
use super::common::{
    Ctx, Ids, Listed, READ_TARGET, Resource, confirmation_flow, existing_set, get_put_delete,
};
use super::repository::set_json_by_id;
use super::{ApiError, ApiResult, ApiState, BaseUrl, Body, Page, put_opt};
use crate::auth::Permission;
use crate::domain::action::ActionType;
use crate::domain::ids::DsId;
use crate::engine::auto_assignment::CreateAutoAssignment;
use crate::store::filter::{Entity, Filter};
use crate::store::target_filters::{self, TargetFilterRow};
use crate::store::{Named, auto_assignments};

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
        .route(
            "/rest/v1/targetfilters/{id}/autoAssignDS",
            get(auto_assigned_set)
                .post(set_auto_assignment)
                .delete(remove_auto_assignment),
        )
        .route(
            "/rest/v1/distributionsets/{id}/autoAssignTargetFilters",
            get(filters_of_set),
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
        f.auto_assign_action_type.map(ActionType::api_name),
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
        auto_assignments::follow_filter(c, tenant, id).await?;
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

/// `GET /targetfilters/{id}/autoAssignDS`: the set the filter auto-assigns, or 204.
async fn auto_assigned_set(cx: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    cx.require(&[Permission::READ_TARGET, Permission::READ_REPOSITORY])?;
    let id = parse_id(&id)?;
    let tenant = cx.tenant();
    let set = cx
        .db()
        .run(async |c| {
            let f = target_filters::TABLE
                .find(c, tenant, id)
                .await?
                .ok_or_else(|| FILTERS.missing(id))?;
            match f.auto_assign_ds_id {
                Some(ds) => set_json_by_id(c, tenant, &cx.base, ds).await,
                None => Ok(None),
            }
        })
        .await?;
    Ok(match set {
        Some(v) => Json(v).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// hawkBit's `MgmtDistributionSetAutoAssignment`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AutoAssignBody {
    id: Option<i64>,
    #[serde(rename = "type")]
    action_type: Option<String>,
    weight: Option<i64>,
    confirmation_required: Option<bool>,
}

/// `POST /targetfilters/{id}/autoAssignDS`: the filter auto-assigns the set (replacing what it
/// auto-assigned); answers the filter.
async fn set_auto_assignment(
    cx: Ctx,
    Path(id): Path<String>,
    Body(b): Body<AutoAssignBody>,
) -> ApiResult<Json<Value>> {
    cx.require(&[Permission::UPDATE_TARGET, Permission::READ_REPOSITORY])?;
    let id = parse_id(&id)?;
    let ds = b
        .id
        .ok_or_else(|| ApiError::BadRequest("id (of the distribution set) is required".into()))?;
    let tenant = cx.tenant();
    let confirmation_required = match b.confirmation_required {
        Some(c) => c,
        None => confirmation_flow(&cx).await?,
    };
    let req = CreateAutoAssignment {
        named: Named::default(),
        query: String::new(),
        ds: DsId(ds),
        action_type: parse_action_type(b.action_type.as_deref())?,
        weight: b.weight,
        confirmation_required,
        start_at: None,
        target_filter: Some(id),
    };
    cx.state
        .engine
        .link_filter_auto_assignment(tenant, id, req, cx.caller.name())
        .await?;
    cx.get_by_id(&FILTERS, id).await
}

/// `DELETE /targetfilters/{id}/autoAssignDS`: 204, with or without one.
async fn remove_auto_assignment(cx: Ctx, Path(id): Path<String>) -> ApiResult<StatusCode> {
    cx.require(&[Permission::UPDATE_TARGET])?;
    let id = parse_id(&id)?;
    let tenant = cx.tenant();
    cx.db()
        .run(async |c| {
            target_filters::TABLE
                .find(c, tenant, id)
                .await?
                .ok_or_else(|| FILTERS.missing(id))?;
            Ok::<_, ApiError>(auto_assignments::unlink_filter(c, tenant, id).await?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

const OF_SET: Listed = Listed::new(Entity::TargetFilter, &target_filters::SORT);

/// `GET /distributionsets/{id}/autoAssignTargetFilters`: a page of the filters that
/// auto-assign the set.
async fn filters_of_set(cx: Ctx, Ids(ds): Ids<i64>, params: Page) -> ApiResult<Json<Value>> {
    let perms = &[Permission::READ_TARGET, Permission::READ_REPOSITORY];
    cx.list(
        perms,
        &params,
        OF_SET,
        async |c, tenant, q, page| {
            existing_set(c, tenant, ds).await?;
            Ok::<_, ApiError>(auto_assignments::filters_of_set(c, tenant, DsId(ds), q, page).await?)
        },
        |f| filter_json(&cx.base, &f),
    )
    .await
}
