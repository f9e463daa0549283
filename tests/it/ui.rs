//! The built-in page (`/ui`) in a real browser, without WebDriver: Debian's headless Chromium
//! opens `/ui#user=..&password=..`, runs the page under a virtual time budget (timers fast-forward;
//! virtual time stands still while a request is in flight, so the polls really happen), and dumps
//! the resulting DOM, which is checked against the API's own numbers.
//!
//! Chromium is required: a missing browser fails the test unless `DMF_SKIP_BROWSER_TESTS=1`.
//! `scripts/test` installs it (`apt-get install chromium`) when it can. Set `DMF_UI_SCREENSHOT` to a
//! path to keep the screenshot the scenario takes (and the dumped DOM next to it, `<path>.html`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// Fast-forwarded time the page gets: about eight one-second polls.
const VIRTUAL_TIME_MS: u32 = 8000;
/// Wall-clock limit for one browser run; normally it takes 1–3 s.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// The Chromium binary, or `None` when browser tests are explicitly skipped.
fn browser() -> Option<PathBuf> {
    let candidates = std::env::var_os("DMF_CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
                .into_iter()
                .map(PathBuf::from),
        );
    for c in candidates {
        if c.is_file() {
            return Some(c);
        }
    }
    if std::env::var("DMF_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
        eprintln!("DMF_SKIP_BROWSER_TESTS=1 and no Chromium: skipping the browser test");
        return None;
    }
    panic!(
        "the UI tests need Chromium (/usr/bin/chromium): install it with \
         `apt-get install -y chromium` (scripts/test does this as root), point DMF_CHROMIUM at a \
         binary, or set DMF_SKIP_BROWSER_TESTS=1 to skip them"
    );
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("dmf-ui-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Load `url` in headless Chromium and return the DOM after the virtual time budget, taking a
/// screenshot to `screenshot` when given.
async fn dump_dom(browser: &Path, url: &str, screenshot: Option<&Path>) -> String {
    let dir = TempDir::new();
    let mut cmd = tokio::process::Command::new(browser);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        // /dev/shm is tiny in containers.
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-sync",
        "--hide-scrollbars",
        "--mute-audio",
        "--window-size=1100,1000",
        "--force-device-scale-factor=1",
    ])
    // Its own profile, so parallel tests do not fight over the profile lock.
    .arg(format!(
        "--user-data-dir={}",
        dir.0.join("profile").display()
    ))
    .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
    .arg("--dump-dom");
    if let Some(p) = screenshot {
        cmd.arg(format!("--screenshot={}", p.display()));
    }
    cmd.arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a hung browser can be killed with all its helpers.
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().expect("start chromium");
    let pid = child.id();
    let started = Instant::now();
    let out = match tokio::time::timeout(BROWSER_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.expect("chromium output"),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &format!("-{pid}")])
                    .status();
            }
            panic!("chromium did not finish within {BROWSER_TIMEOUT:?} on {url}");
        }
    };
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}) on {url}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("browser run took {:?}", started.elapsed());
    dom
}

/// The element (opening tag to its matching end tag) whose opening tag contains `marker`.
fn element<'a>(html: &'a str, marker: &str) -> Option<&'a str> {
    let at = html.find(marker)?;
    let start = if marker.starts_with('<') {
        at
    } else {
        html[..at].rfind('<')?
    };
    let name: String = html[start + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let (open, close) = (format!("<{name}"), format!("</{name}>"));
    let mut depth = 0usize;
    let mut i = start;
    loop {
        let next_open = html[i..].find(&open).map(|p| p + i);
        let next_close = html[i..].find(&close).map(|p| p + i)?;
        match next_open {
            // Only a real `<name ` or `<name>` opens (not `<named…`).
            Some(o) if o < next_close && html[o + open.len()..].starts_with([' ', '>']) => {
                depth += 1;
                i = o + open.len();
            }
            Some(o) if o < next_close => i = o + open.len(),
            _ => {
                depth -= 1;
                i = next_close + close.len();
                if depth == 0 {
                    return Some(&html[start..i]);
                }
            }
        }
    }
}

/// The opening tag of an element (as returned by [`element`]).
fn open_tag(el: &str) -> &str {
    &el[..el.find('>').map_or(el.len(), |p| p + 1)]
}

/// The value of attribute `name` in the first tag of `el`.
fn attr<'a>(el: &'a str, name: &str) -> Option<&'a str> {
    let tag = open_tag(el);
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    Some(&tag[from..from + tag[from..].find('"')?])
}

fn has_hidden(el: &str) -> bool {
    let tag = open_tag(el);
    tag.contains(" hidden=\"\"") || tag.contains(" hidden>") || tag.contains(" hidden ")
}

/// Poll `path` until `f` holds (15 s).
async fn wait_for(app: &TestApp, path: &str, f: impl Fn(&Value) -> bool) -> Value {
    app.wait_json(path, Duration::from_secs(15), f).await
}

/// Collect `n` DOWNLOAD_AND_INSTALL messages: their action ids.
async fn deployments(app: &mut TestApp, n: usize) -> Vec<i64> {
    let ds = app.collect(&["DOWNLOAD_AND_INSTALL"], n).await;
    ds.into_iter().map(|(_, action)| action).collect()
}

fn group_statuses(groups: &Value) -> Vec<&str> {
    groups["content"]
        .as_array()
        .map(|gs| gs.iter().filter_map(|g| g["status"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn page_shows_rollouts_with_live_progress_and_escapes_api_text() {
    let Some(browser) = browser() else { return };
    let mut app = spawn_app_with(&["--rollout-tick-ms", "50"]).await;
    app.fleet("ui", 4).await;
    let ds = app.create_set("ui-fw").await;

    // Two groups of two; finishing group 1 starts group 2 (threshold 100 %).
    let r = app
        .create_rollout(
            json!({"name": "wave-ui", "description": "two waves", "distributionSetId": ds,
                   "targetFilterQuery": "controllerId==ui-*", "amountGroups": 2,
                   "successCondition": {"condition": "THRESHOLD", "expression": "100"},
                   "errorCondition": {"condition": "THRESHOLD", "expression": "50"}}),
        )
        .await;
    let id = r["id"].as_i64().expect("rollout id");
    app.wait_rollout(id, |r| r["status"] == "ready").await;
    app.start_rollout(id).await;
    for action in deployments(&mut app, 2).await {
        app.send(status(action, "FINISHED")).await;
    }
    let groups_path = format!("/rollouts/{id}/deploygroups?representation=full&limit=500");
    let groups = wait_for(&app, &groups_path, |g| {
        group_statuses(g) == ["finished", "running"]
    })
    .await;
    let rollout = app
        .wait_rollout(id, |r| {
            r["status"] == "running" && r["totalTargetsPerStatus"]["finished"] == 2
        })
        .await;

    // A rollout whose text is markup: it must show up as text, never as elements.
    let x = app
        .create_rollout(
            json!({"name": "xss <b>bold</b>", "description": "<img src=x onerror=alert(1)>",
                   "distributionSetId": ds, "targetFilterQuery": "controllerId==ui-*"}),
        )
        .await;
    let xid = x["id"].as_i64().expect("rollout id");
    app.wait_rollout(xid, |r| r["status"] == "ready").await;

    let shots = TempDir::new();
    let shot = shots.0.join("ui.png");
    let dom = dump_dom(
        &browser,
        &format!("{}/ui#user=admin&password=admin", app.base),
        Some(&shot),
    )
    .await;

    // Signed in from the fragment: the list is shown, the login form is not.
    let login = element(&dom, "id=\"login-view\"").expect("login view");
    assert!(has_hidden(login), "login form shown: {dom}");
    let list = element(&dom, "id=\"rollouts-view\"").expect("rollouts view");
    assert!(!has_hidden(list), "rollout list hidden: {dom}");

    // The running rollout: name, status, counts equal to the API's.
    let card = element(&dom, &format!("data-rollout-id=\"{id}\"")).expect("rollout row");
    assert_eq!(attr(card, "data-status"), Some("running"), "{card}");
    assert!(card.contains(">wave-ui</h2>"), "{card}");
    let bar = element(card, "role=\"progressbar\"").expect("overall progress bar");
    let per = &rollout["totalTargetsPerStatus"];
    assert_eq!(attr(bar, "aria-valuenow"), Some("2"), "{bar}");
    assert_eq!(
        attr(bar, "aria-valuenow").map(str::to_owned),
        Some(per["finished"].to_string())
    );
    assert_eq!(
        attr(bar, "aria-valuemax").map(str::to_owned),
        Some(rollout["totalTargets"].to_string())
    );
    for bucket in [
        "finished",
        "running",
        "error",
        "cancelled",
        "scheduled",
        "notstarted",
    ] {
        let seg = element(bar, &format!("data-bucket=\"{bucket}\"")).expect("segment");
        assert_eq!(
            attr(seg, "data-count").map(str::to_owned),
            Some(per[bucket].to_string()),
            "bucket {bucket}: {bar}"
        );
        // The same number as text, for readers who cannot tell the colours apart.
        let legend = element(card, &format!("<li data-bucket=\"{bucket}\"")).expect("count");
        assert!(
            legend.contains(&format!("<b>{}</b>", per[bucket])),
            "{bucket}: {legend}"
        );
    }
    assert!(card.contains("50 %</strong> finished"), "{card}");

    // Its groups, in order, with the API's statuses and their own bars.
    let api_groups = groups["content"].as_array().expect("groups");
    let mut last = 0;
    for g in api_groups {
        let marker = format!("data-group-id=\"{}\"", g["id"]);
        let at = card.find(&marker).expect("group row");
        assert!(at > last, "groups out of order");
        last = at;
        let row = element(card, &marker).expect("group row");
        assert_eq!(attr(row, "data-status"), g["status"].as_str(), "{row}");
        let gbar = element(row, "role=\"progressbar\"").expect("group bar");
        assert_eq!(
            attr(gbar, "aria-valuenow").map(str::to_owned),
            Some(g["totalTargetsPerStatus"]["finished"].to_string()),
            "{row}"
        );
        assert!(
            row.contains("Success: ≥ 100 % finished → start next group"),
            "{row}"
        );
    }
    // Actions valid while running, and only those.
    for op in ["pause", "stop"] {
        assert!(
            card.contains(&format!("data-action=\"{op}\"")),
            "{op}: {card}"
        );
    }
    for op in ["start", "resume", "approve", "deny"] {
        assert!(
            !card.contains(&format!("data-action=\"{op}\"")),
            "{op}: {card}"
        );
    }

    // The markup rollout: shown, ready to start, its text escaped, no element injected.
    let xcard = element(&dom, &format!("data-rollout-id=\"{xid}\"")).expect("second rollout");
    assert_eq!(attr(xcard, "data-status"), Some("ready"));
    assert!(xcard.contains("data-action=\"start\""), "{xcard}");
    assert!(
        xcard.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{xcard}"
    );
    assert!(xcard.contains("xss &lt;b&gt;bold&lt;/b&gt;"), "{xcard}");
    let lower = dom.to_ascii_lowercase();
    assert!(
        !lower.contains("<img"),
        "an <img> element was injected: {dom}"
    );
    assert!(
        !lower.contains("<b>bold"),
        "a <b> element was injected: {dom}"
    );

    // The screenshot is a real PNG (look at it with DMF_UI_SCREENSHOT=/some/file.png).
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a screenshot"
    );
    if let Ok(keep) = std::env::var("DMF_UI_SCREENSHOT") {
        std::fs::copy(&shot, &keep).expect("copy screenshot");
        std::fs::write(format!("{keep}.html"), &dom).expect("write DOM");
        println!("screenshot: {keep}, DOM: {keep}.html");
    }
}

#[tokio::test]
async fn wrong_credentials_show_the_login_form_with_an_error() {
    let Some(browser) = browser() else { return };
    let app = spawn_app().await;
    let dom = dump_dom(
        &browser,
        &format!("{}/ui#user=admin&password=wrong", app.base),
        None,
    )
    .await;
    let login = element(&dom, "id=\"login-view\"").expect("login view");
    assert!(!has_hidden(login), "login form hidden: {dom}");
    let error = element(login, "id=\"login-error\"").expect("login error");
    assert!(!has_hidden(error), "{error}");
    assert!(error.contains("not accepted"), "{error}");
    let list = element(&dom, "id=\"rollouts-view\"").expect("rollouts view");
    assert!(has_hidden(list), "rollout list shown: {dom}");
    assert!(!dom.contains("data-rollout-id=\""), "{dom}");
}

#[tokio::test]
async fn page_is_public_static_and_locked_down() {
    let app = spawn_app().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = no_redirects
        .get(format!("{}/", app.base))
        .send()
        .await
        .expect("GET /");
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/ui");

    // No credentials needed for the page itself.
    let r = app
        .http
        .get(format!("{}/ui", app.base))
        .send()
        .await
        .expect("GET /ui");
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-cache");
    let csp = h["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.contains("style-src 'sha256-"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let body = r.text().await.expect("body");
    assert!(body.starts_with("<!doctype html>"), "{body}");
    assert!(!body.contains("admin"), "credentials in the page");

    // The data itself still needs them.
    let r = app
        .http
        .get(format!("{}/rest/v1/rollouts", app.base))
        .send()
        .await
        .expect("GET rollouts");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
