//! `GET /ui`: a small built-in page that shows the rollouts and their groups with live progress.
//!
//! The page is one static HTML file (`ui/index.html`: inline CSS and vanilla JS, no build step)
//! compiled into the binary. It needs no authentication itself: it asks the operator for the
//! Management API's credentials and polls `/rest/v1/...` with HTTP Basic, so it sees exactly what
//! that user may see. `GET /` redirects here.
//!
//! The Content-Security-Policy allows the page's one inline `<style>` and one inline `<script>`
//! by their SHA-256 hashes (no `'unsafe-inline'`), API calls to this origin only, and nothing
//! else: no remote scripts, frames, form posts or plugins.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::ApiState;

const PAGE: &str = include_str!("ui/index.html");

/// Computed once: the hashes only change when the binary does.
static CSP: LazyLock<String> = LazyLock::new(|| content_security_policy(PAGE));

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/", get(to_ui))
        .route("/ui", get(page))
        .route("/ui/", get(to_ui))
}

async fn to_ui() -> Redirect {
    Redirect::to("/ui")
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP.as_str()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The page is small and changes with the binary: always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
            // For browsers that predate CSP's frame-ancestors.
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        PAGE,
    )
        .into_response()
}

/// The bodies of every `<tag>…</tag>` block (opening tag without attributes, as the page
/// writes them), exactly as the browser hashes them.
fn inline_blocks<'a>(page: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut blocks = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        blocks.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    blocks
}

/// `'sha256-…' …` for the blocks, or `'none'` when there are none.
fn hash_sources(blocks: &[&str]) -> String {
    if blocks.is_empty() {
        return "'none'".to_owned();
    }
    blocks
        .iter()
        .map(|b| {
            let digest = Sha256::digest(b.as_bytes());
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn content_security_policy(page: &str) -> String {
    let scripts = hash_sources(&inline_blocks(page, "script"));
    let styles = hash_sources(&inline_blocks(page, "style"));
    // img-src data: is for the empty favicon (it keeps the browser from asking for one);
    // form-action 'none' makes sure the login form can never submit the password anywhere.
    format!(
        "default-src 'none'; script-src {scripts}; style-src {styles}; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_pages_inline_blocks() {
        let scripts = inline_blocks(PAGE, "script");
        let styles = inline_blocks(PAGE, "style");
        assert_eq!(scripts.len(), 1, "one inline script");
        assert_eq!(styles.len(), 1, "one inline style block");
        let csp = content_security_policy(PAGE);
        assert!(csp.contains(&format!("script-src {}", hash_sources(&scripts))));
        assert!(csp.contains(&format!("style-src {}", hash_sources(&styles))));
        assert!(!csp.contains("unsafe"), "{csp}");
        // Anything the hashes do not cover would be blocked by the browser: no <script src>,
        // no style attributes, no inline event handlers.
        let lower = PAGE.to_ascii_lowercase();
        for forbidden in [
            "<script ",
            " style=\"",
            " onclick=",
            " onload=",
            " onsubmit=",
            "innerhtml",
        ] {
            assert!(
                !lower.contains(forbidden),
                "the page contains {forbidden:?}"
            );
        }
    }

    #[test]
    fn hashes_are_base64_sha256_of_the_exact_block() {
        let page = "<style>a{}</style><script>x()</script>";
        assert_eq!(inline_blocks(page, "script"), vec!["x()"]);
        // echo -n 'x()' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            hash_sources(&["x()"]),
            "'sha256-D6IGS8VMvCoyaR/l0h9tERrBTATY01CoPS7l6xDv0kI='"
        );
        assert_eq!(hash_sources(&[]), "'none'");
    }
}
