//! Artifacts of software modules (`/rest/v1/softwaremodules/{id}/artifacts`): references to
//! files on a CDN or object store, with their hashes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::super::common::{Ctx, Ids, base_fields, required};
use super::super::{ApiError, ApiResult, ApiState, BaseUrl, Body, put_opt};
use super::modules::MODULE;
use super::{READ, any_module, live_module};
use crate::auth::Permission;
use crate::domain::ids::TenantId;
use crate::store::repository::artifacts::{self, ArtifactRow};

pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/rest/v1/softwaremodules/{id}/artifacts",
            get(list_artifacts).post(create_artifact),
        )
        .route(
            "/rest/v1/softwaremodules/{id}/artifacts/{artifact_id}",
            get(get_artifact).delete(delete_artifact),
        )
}

fn artifact_json(base: &BaseUrl, a: &ArtifactRow) -> Value {
    let (f, h) = (&a.file, &a.file.hashes);
    let mut hashes = json!({"sha1": h.sha1, "md5": h.md5});
    put_opt(&mut hashes, "sha256", h.sha256.as_deref());
    let mut urls = json!({});
    put_opt(&mut urls, "HTTPS", f.urls.url_https.as_deref());
    put_opt(&mut urls, "HTTP", f.urls.url_http.as_deref());
    let mut v = json!({
        "id": a.id,
        "filename": f.filename,
        "providedFilename": f.filename,
        "size": f.size,
        "hashes": hashes,
        "urls": urls,
        "_links": {
            "self": base.link(&format!("/softwaremodules/{}/artifacts/{}", a.sm_id, a.id)),
        },
    });
    base_fields(&mut v, &a.audit);
    v
}

#[derive(Debug, Deserialize)]
struct ArtifactCreate {
    filename: Option<String>,
    size: Option<i64>,
    hashes: Option<Hashes>,
    urls: Option<Urls>,
}

#[derive(Debug, Deserialize)]
struct Hashes {
    sha1: Option<String>,
    md5: Option<String>,
    sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Urls {
    #[serde(rename = "HTTPS", alias = "https")]
    https: Option<String>,
    #[serde(rename = "HTTP", alias = "http")]
    http: Option<String>,
}

/// A hex digest of exactly `len` digits, lower-cased.
fn hex_digest(field: &str, value: Option<String>, len: usize) -> ApiResult<String> {
    let v = value.ok_or_else(|| ApiError::BadRequest(format!("hashes.{field} is required")))?;
    let v = v.trim().to_ascii_lowercase();
    if v.len() != len || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(format!(
            "hashes.{field} must be {len} hexadecimal digits"
        )));
    }
    Ok(v)
}

/// An artifact URL: `http://` or `https://` followed by something, no whitespace.
fn artifact_url(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    let Some(url) = value.map(|u| u.trim().to_owned()) else {
        return Ok(None);
    };
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !url.chars().any(|c| c.is_whitespace() || c.is_control())
                && url.len() <= 4096 =>
        {
            Ok(Some(url))
        }
        _ => Err(ApiError::BadRequest(format!(
            "urls.{field} must be an http:// or https:// URL"
        ))),
    }
}

impl ArtifactCreate {
    fn validate(self) -> ApiResult<artifacts::NewArtifact> {
        let filename = required("filename", self.filename, 1, 256)?;
        let size = self
            .size
            .ok_or_else(|| ApiError::BadRequest("size is required".into()))?;
        if size < 0 {
            return Err(ApiError::BadRequest("size must not be negative".into()));
        }
        let hashes = self
            .hashes
            .ok_or_else(|| ApiError::BadRequest("hashes are required".into()))?;
        let sha1 = hex_digest("sha1", hashes.sha1, 40)?;
        let md5 = hex_digest("md5", hashes.md5, 32)?;
        let sha256 = match hashes.sha256 {
            Some(h) => Some(hex_digest("sha256", Some(h), 64)?),
            None => None,
        };
        let urls = self
            .urls
            .ok_or_else(|| ApiError::BadRequest("urls are required".into()))?;
        let url_https = artifact_url("HTTPS", urls.https)?;
        let url_http = artifact_url("HTTP", urls.http)?;
        if url_https.is_none() && url_http.is_none() {
            return Err(ApiError::BadRequest(
                "urls must contain an HTTPS or an HTTP URL".into(),
            ));
        }
        Ok(artifacts::NewArtifact {
            filename,
            size,
            hashes: artifacts::Hashes { sha1, md5, sha256 },
            urls: artifacts::Urls {
                url_https,
                url_http,
            },
        })
    }
}

fn no_artifact(id: i64, artifact_id: i64) -> ApiError {
    ApiError::NotFound(format!(
        "artifact {artifact_id} of software module {id} not found"
    ))
}

/// A live module whose artifacts may change, or 404/400.
async fn changeable_module(c: &mut PgConnection, tenant: TenantId, id: i64) -> ApiResult<()> {
    let module = live_module(c, tenant, id).await?;
    if module.locked {
        return Err(ApiError::BadRequest(format!(
            "software module {id} is locked: its artifacts cannot change"
        )));
    }
    Ok(())
}

#[tracing::instrument(skip_all, fields(tenant = %cx.caller.tenant, module_id = id))]
async fn create_artifact(
    cx: Ctx,
    Ids(id): Ids<i64>,
    Body(body): Body<ArtifactCreate>,
) -> ApiResult<Response> {
    cx.require(&[Permission::CREATE_REPOSITORY])?;
    let a = cx
        .db()
        .run(async |c| {
            let module = live_module(c, cx.tenant(), id).await?;
            let new = body.validate()?;
            if module.locked {
                return Err(ApiError::BadRequest(format!(
                    "software module {id} is locked: its artifacts cannot change"
                )));
            }
            artifacts::insert(c, cx.tenant(), id, &new, cx.caller.name())
                .await?
                .ok_or_else(|| MODULE.missing(id))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(artifact_json(&cx.base, &a))).into_response())
}

async fn list_artifacts(cx: Ctx, Ids(id): Ids<i64>) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    let fetch = async |c: &mut PgConnection| {
        any_module(c, cx.tenant(), id).await?;
        Ok(artifacts::list(c, cx.tenant(), id).await?)
    };
    cx.array(fetch, |a| artifact_json(&cx.base, a)).await
}

async fn get_artifact(cx: Ctx, Ids((id, artifact_id)): Ids<(i64, i64)>) -> ApiResult<Json<Value>> {
    cx.require(READ)?;
    cx.get_one(
        async |c| artifacts::find(c, cx.tenant(), id, artifact_id).await,
        || no_artifact(id, artifact_id),
        |a| artifact_json(&cx.base, &a),
    )
    .await
}

#[tracing::instrument(skip_all, fields(tenant = %cx.caller.tenant, module_id = id, artifact_id))]
async fn delete_artifact(
    cx: Ctx,
    Ids((id, artifact_id)): Ids<(i64, i64)>,
) -> ApiResult<StatusCode> {
    cx.require(&[Permission::DELETE_REPOSITORY])?;
    let delete = async |c: &mut PgConnection| {
        changeable_module(c, cx.tenant(), id).await?;
        Ok(artifacts::delete(c, cx.tenant(), id, artifact_id).await?)
    };
    cx.delete_one(delete, || no_artifact(id, artifact_id)).await
}
