//! The hawkBit-compatible Management API (rollouts.md §9) and `/health`. Each resource file
//! exposes `router()`; this module merges them and owns what they share: [`ApiError`] with
//! hawkBit's error body, the [`Caller`] extractor (HTTP Basic → user, tenant, permissions) and
//! paging/sorting.
//!
//! Handlers parse the request, call `engine` or `store`, and map the result. No SQL here.

pub mod actions;
pub mod auto_assignments;
mod common;
pub mod health;
pub mod invalidation;
mod outbox;
pub mod repository;
pub mod rollouts;
pub mod set_statistics;
pub mod set_tags;
pub mod system;
pub mod tags;
pub mod target_filters;
pub mod target_groups;
pub mod target_metadata;
pub mod target_settings;
pub mod target_types;
pub mod targets;
pub mod ui;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Permission, User};
use crate::domain::Invalid;
use crate::domain::ids::TenantId;
use crate::domain::rollout::Refusal;
use crate::domain::rsql::RsqlError;
use crate::engine::{Engine, EngineError};
use crate::store::filter::{Entity, Filter};
use crate::store::page::{Direction, PageRequest, Sort, SortFields};
use crate::store::{Db, StoreError};

/// Shared state of every handler.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Arc<Engine>,
    /// What handlers read and change the store through (never the engine's pool).
    pub db: Db,
    pub users: Arc<crate::auth::Users>,
    pub health: Arc<crate::health::Health>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .merge(actions::router())
        .merge(auto_assignments::router())
        .merge(health::router())
        .merge(invalidation::router())
        .merge(outbox::router())
        .merge(repository::router())
        .merge(rollouts::router())
        .merge(set_statistics::router())
        .merge(set_tags::router())
        .merge(system::router())
        .merge(targets::router())
        .merge(target_types::router())
        .merge(tags::router())
        .merge(target_filters::router())
        .merge(target_groups::router())
        .merge(target_metadata::router())
        .merge(target_settings::router())
        .merge(ui::router())
        .fallback(|| async { ApiError::NotFound("no such resource".into()) })
        .layer(axum::middleware::from_fn(hal_json))
        .with_state(state)
}

/// hawkBit serves `application/hal+json` and `application/json` alike: a client asking for HAL
/// (`Accept: application/hal+json`) gets the same JSON body labelled as HAL.
async fn hal_json(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header::{ACCEPT, CONTENT_TYPE};
    let wants_hal = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/hal+json"));
    let mut res = next.run(req).await;
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if wants_hal && is_json {
        res.headers_mut().insert(
            CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/hal+json"),
        );
    }
    res
}

/// An API failure with hawkBit's status code and error body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotReadable(String),
    /// A malformed `q=` or stored filter query (§1.4).
    #[error("{0}")]
    RsqlSyntax(String),
    /// A `q=` or stored filter query naming a field the entity does not have.
    #[error("{0}")]
    RsqlInvalidField(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    IllegalState(String),
    /// An auto-assignment operation its status does not allow (409).
    #[error("{0}")]
    AutoAssignmentIllegalState(String),
    /// Automatic confirmation is already on (409).
    #[error("{0}")]
    AutoConfirmationAlreadyActive(String),
    /// TIMEFORCED for an auto-assignment (400).
    #[error("{0}")]
    InvalidAutoAssignActionType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    MultiAssignmentNotEnabled(String),
    #[error("{0}")]
    DistributionSetInvalid(String),
    #[error("{0}")]
    DistributionSetIncomplete(String),
    #[error("{0}")]
    ValueChangeNotAllowed(String),
    /// A quota would be exceeded (429).
    #[error("{0}")]
    TooManyEntries(String),
    /// The entity is read-only (403), e.g. a deleted rollout.
    #[error("{0}")]
    ReadOnly(String),
    /// Deleting a target type that targets still have (409).
    #[error("{0}")]
    TargetTypeInUse(String),
    /// A target type needs a key or a name (400).
    #[error("{0}")]
    TargetTypeKeyOrNameRequired(String),
    /// A configuration value of the wrong type or form (400).
    #[error("{0}")]
    ConfigValueInvalid(String),
    /// Actions in a status the tenant does not allow to delete (405).
    #[error("{0}")]
    ActionNotDeletable(String),
    /// Changing an entity that is soft-deleted (404, hawkBit's DeletedException).
    #[error("{0}")]
    Deleted(String),
    /// A manual assignment to targets whose type does not accept the set's type (400).
    #[error("{0}")]
    TargetTypeIncompatible(String),
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "org.springframework.security.authentication.BadCredentialsException",
                "hawkbit.server.error.unauthorized",
            ),
            Forbidden(_) => (
                StatusCode::FORBIDDEN,
                "org.eclipse.hawkbit.repository.exception.InsufficientPermissionException",
                "hawkbit.server.error.insufficientPermission",
            ),
            NotFound(_) => (
                StatusCode::NOT_FOUND,
                "org.eclipse.hawkbit.repository.exception.EntityNotFoundException",
                "hawkbit.server.error.repo.entityNotFound",
            ),
            BadRequest(_) => (
                StatusCode::BAD_REQUEST,
                "org.eclipse.hawkbit.repository.exception.ConstraintViolationException",
                "hawkbit.server.error.repo.constraintViolation",
            ),
            NotReadable(_) => (
                StatusCode::BAD_REQUEST,
                "org.eclipse.hawkbit.rest.exception.MessageNotReadableException",
                "hawkbit.server.error.rest.body.notReadable",
            ),
            RsqlSyntax(_) => (
                StatusCode::BAD_REQUEST,
                "org.eclipse.hawkbit.repository.exception.RSQLParameterSyntaxException",
                "hawkbit.server.error.rest.param.rsqlParamSyntax",
            ),
            RsqlInvalidField(_) => (
                StatusCode::BAD_REQUEST,
                "org.eclipse.hawkbit.repository.exception.RSQLParameterUnsupportedFieldException",
                "hawkbit.server.error.rest.param.rsqlInvalidField",
            ),
            Conflict(_) => (
                StatusCode::CONFLICT,
                "org.eclipse.hawkbit.repository.exception.EntityAlreadyExistsException",
                "hawkbit.server.error.repo.entityAlreadyExists",
            ),
            IllegalState(_) => (
                StatusCode::BAD_REQUEST,
                "org.eclipse.hawkbit.repository.exception.EntityNotFoundException",
                "hawkbit.server.error.rollout.illegalState",
            ),
            AutoAssignmentIllegalState(_) => (
                StatusCode::CONFLICT,
                "org.eclipse.hawkbit.repository.exception.AutoAssignmentIllegalStateException",
                "hawkbit.server.error.auto.assignment.illegalState",
            ),
            AutoConfirmationAlreadyActive(_) => (
                StatusCode::CONFLICT,
                "org.eclipse.hawkbit.repository.exception.AutoConfirmationAlreadyActiveException",
                "hawkbit.server.error.repo.autoConfAlreadyActive",
            ),
            InvalidAutoAssignActionType(_) => (
                StatusCode::BAD_REQUEST,
                "org.eclipse.hawkbit.repository.exception.InvalidAutoAssignActionTypeException",
                "hawkbit.server.error.repo.invalidAutoAssignActionType",
            ),
            MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "org.eclipse.hawkbit.repository.exception.CancelActionNotAllowedException",
                "hawkbit.server.error.action.cancelNotAllowed",
            ),
            MultiAssignmentNotEnabled(_) => (
                StatusCode::BAD_REQUEST,
                "org.eclipse.hawkbit.repository.exception.MultiAssignmentIsNotEnabledException",
                "hawkbit.server.error.multiAssignmentNotEnabled",
            ),
            DistributionSetInvalid(_) => (
                StatusCode::BAD_REQUEST,
                "org.eclipse.hawkbit.repository.exception.InvalidDistributionSetException",
                "hawkbit.server.error.distributionset.invalid",
            ),
            DistributionSetIncomplete(_) => (
                StatusCode::BAD_REQUEST,
                "org.eclipse.hawkbit.repository.exception.IncompleteDistributionSetException",
                "hawkbit.server.error.distributionset.incomplete",
            ),
            ValueChangeNotAllowed(_) => (
                StatusCode::FORBIDDEN,
                "org.eclipse.hawkbit.tenancy.configuration.TenantConfigurationValueChangeNotAllowedException",
                "hawkbit.server.error.configValueChangeNotAllowed",
            ),
            TooManyEntries(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "org.eclipse.hawkbit.repository.exception.AssignmentQuotaExceededException",
                "hawkbit.server.error.quota.tooManyEntries",
            ),
            ReadOnly(_) => (
                StatusCode::FORBIDDEN,
                "org.eclipse.hawkbit.repository.exception.EntityReadOnlyException",
                "hawkbit.server.error.entityReadOnly",
            ),
            TargetTypeInUse(_) => (
                StatusCode::CONFLICT,
                "org.eclipse.hawkbit.repository.exception.TargetTypeInUseException",
                "hawkbit.server.error.target.type.used",
            ),
            Deleted(_) => (
                StatusCode::NOT_FOUND,
                "org.eclipse.hawkbit.repository.exception.DeletedException",
                "hawkbit.server.error.deleted",
            ),
            TargetTypeKeyOrNameRequired(_) => (
                StatusCode::BAD_REQUEST,
                "org.eclipse.hawkbit.repository.exception.TargetTypeKeyOrNameRequiredException",
                "hawkbit.server.error.target.type.keyOrNameRequired",
            ),
            ConfigValueInvalid(_) => (
                StatusCode::BAD_REQUEST,
                "org.eclipse.hawkbit.repository.exception.TenantConfigurationValidatorException",
                "hawkbit.server.error.configValueInvalid",
            ),
            ActionNotDeletable(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "org.eclipse.hawkbit.repository.exception.DeleteActionNotAllowedException",
                "hawkbit.server.error.action.notDeletable",
            ),
            TargetTypeIncompatible(_) => (
                StatusCode::BAD_REQUEST,
                "org.eclipse.hawkbit.repository.exception.IncompatibleTargetTypeException",
                "hawkbit.server.error.target.type.incompatible",
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "org.springframework.transaction.CannotCreateTransactionException",
                "hawkbit.server.error.unavailable",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "java.lang.RuntimeException",
                "hawkbit.server.error.internal",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, class, code) = self.parts();
        if let ApiError::Internal(e) | ApiError::Unavailable(e) = &self {
            // Logged once here, where it becomes a response; the body never leaks internals.
            tracing::error!(error.message = %e, error.cause_chain = ?e, "request failed");
        }
        let body = json!({"exceptionClass": class, "errorCode": code, "message": self.to_string()});
        let mut resp = (status, Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"dmf-broker\""),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(msg) => ApiError::Conflict(msg),
            StoreError::Transient(e) => ApiError::Unavailable(e.into()),
            StoreError::Permanent(e) => ApiError::Internal(e.into()),
            StoreError::Corrupt(m) => ApiError::Internal(anyhow::anyhow!(m)),
        }
    }
}

impl From<RsqlError> for ApiError {
    fn from(e: RsqlError) -> Self {
        match e {
            RsqlError::Syntax(_) => ApiError::RsqlSyntax(e.to_string()),
            RsqlError::UnknownField(_) => ApiError::RsqlInvalidField(e.to_string()),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::BadRequest(e.0)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(s) => s.into(),
            EngineError::Invalid(i) => i.into(),
            EngineError::NotFound(m) => ApiError::NotFound(m),
            EngineError::Conflict(m) => ApiError::Conflict(m),
            EngineError::State(m) => ApiError::MethodNotAllowed(m),
            EngineError::MultiAssignment(m) => ApiError::MultiAssignmentNotEnabled(m),
            EngineError::SetInvalid(m) => ApiError::DistributionSetInvalid(m),
            EngineError::SetIncomplete(m) => ApiError::DistributionSetIncomplete(m),
            EngineError::ConfigLocked(m) => ApiError::ValueChangeNotAllowed(m),
            EngineError::Refused(r) => match r {
                Refusal::Constraint(m) => ApiError::BadRequest(m),
                Refusal::NotReadable(m) => ApiError::NotReadable(m),
                Refusal::Quota(m) => ApiError::TooManyEntries(m),
                Refusal::ReadOnly(m) => ApiError::ReadOnly(m),
                Refusal::IllegalState(m) => ApiError::IllegalState(m),
            },
            EngineError::Query(q) => q.into(),
            EngineError::AutoAssignState(m) => ApiError::AutoAssignmentIllegalState(m.to_string()),
            EngineError::AutoAssignActionType(m) => ApiError::InvalidAutoAssignActionType(m),
            EngineError::AutoConfirmActive(m) => ApiError::AutoConfirmationAlreadyActive(m),
            EngineError::ConfigInvalid(m) => ApiError::ConfigValueInvalid(m),
            EngineError::NotDeletable(m) => ApiError::ActionNotDeletable(m),
            EngineError::TargetTypeIncompatible(m) => ApiError::TargetTypeIncompatible(m),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The authenticated caller of a request, with its tenant resolved.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub tenant: TenantId,
}

impl Caller {
    /// 403 unless the caller has every permission named.
    pub fn require(&self, perms: &[Permission]) -> ApiResult<()> {
        match perms.iter().find(|p| !self.user.has(**p)) {
            None => Ok(()),
            Some(p) => Err(ApiError::Forbidden(format!(
                "user {} lacks permission {}",
                self.user.username,
                p.as_str()
            ))),
        }
    }

    pub fn name(&self) -> &str {
        &self.user.username
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let (name, password) = basic_credentials(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let user = state
            .users
            .authenticate_async(&name, &password)
            .await
            .ok_or(ApiError::Unauthorized)?;
        let tenant = state.engine.tenant_for_api(&user.tenant).await?;
        Ok(Caller { user, tenant })
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// JSON body extractor that answers malformed bodies with hawkBit's 400 `notReadable`.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::NotReadable(e.to_string()))?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::NotReadable(format!("request body is not readable: {e}")))
    }
}

/// `offset`, `limit`, `sort`, `q`, `representation` of list endpoints (§9.1).
#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    pub offset: Option<String>,
    pub limit: Option<String>,
    pub sort: Option<String>,
    pub q: Option<String>,
    pub representation: Option<String>,
}

impl PageParams {
    pub fn offset(&self) -> i64 {
        self.offset
            .as_deref()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
            .max(0)
    }

    pub fn limit(&self) -> i64 {
        match self.limit.as_deref().and_then(|s| s.parse::<i64>().ok()) {
            Some(l) if l < 1 => 50,
            Some(l) => l.min(500),
            None => 50,
        }
    }

    pub fn full(&self) -> bool {
        self.representation.as_deref() == Some("full")
    }

    /// The `sort=field:ASC,...` of the request, by field names of `fields` (ignoring case; a
    /// field without a direction sorts ascending). Unknown fields or directions → 400 like
    /// hawkBit.
    pub fn sort(&self, fields: &SortFields) -> ApiResult<Sort> {
        Ok(self
            .sort_items(|name| fields.field(name))?
            .into_iter()
            .fold(Sort::default(), |sort, (field, dir)| sort.then(field, dir)))
    }

    /// The page the request asks for: [`Self::sort`], [`Self::offset`], [`Self::limit`].
    pub fn request(&self, fields: &SortFields) -> ApiResult<PageRequest> {
        Ok(PageRequest {
            sort: self.sort(fields)?,
            offset: self.offset(),
            limit: self.limit(),
        })
    }

    /// The items of `sort=`, each field resolved by `lookup`; empty when there is no `sort`.
    fn sort_items<'f>(
        &self,
        lookup: impl Fn(&str) -> Option<&'f str>,
    ) -> ApiResult<Vec<(&'f str, Direction)>> {
        let Some(sort) = self.sort.as_deref().filter(|s| !s.trim().is_empty()) else {
            return Ok(Vec::new());
        };
        let mut items = Vec::new();
        for item in sort.split(',') {
            let (field, dir) = item.split_once(':').unwrap_or((item, "ASC"));
            let found = lookup(field.trim())
                .ok_or_else(|| ApiError::BadRequest(format!("unknown sort field {field:?}")))?;
            let dir = dir.trim();
            let dir = Direction::parse(dir).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown sort direction {:?}",
                    dir.to_ascii_uppercase()
                ))
            })?;
            items.push((found, dir));
        }
        Ok(items)
    }

    /// The `q=` filter for `entity`, parsed and validated; `None` when absent or blank.
    pub fn filter(&self, entity: Entity) -> ApiResult<Option<Filter>> {
        match self.q.as_deref().filter(|q| !q.trim().is_empty()) {
            Some(q) => Ok(Some(Filter::parse(entity, q)?)),
            None => Ok(None),
        }
    }
}

pub type Page = Query<PageParams>;

/// A paged list body: `{"content", "total", "size"}`.
pub fn paged(content: Vec<Value>, total: i64) -> Value {
    let size = content.len();
    json!({"content": content, "total": total, "size": size})
}

/// Absolute links are built from the request's Host header.
#[derive(Debug, Clone)]
pub struct BaseUrl(pub String);

impl<S: Send + Sync> FromRequestParts<S> for BaseUrl {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let scheme = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("http");
        Ok(BaseUrl(format!("{scheme}://{host}/rest/v1")))
    }
}

impl BaseUrl {
    pub fn link(&self, path: &str) -> Value {
        json!({"href": format!("{}{path}", self.0)})
    }
}

/// Insert a member only when it has a value (hawkBit omits nulls).
pub fn put_opt<T: serde::Serialize>(obj: &mut Value, key: &str, value: Option<T>) {
    if let (Some(v), Some(map)) = (value, obj.as_object_mut()) {
        map.insert(key.to_owned(), json!(v));
    }
}
