//! The rollout machine against what the service does with it: the executor's work query picks
//! up exactly the rollouts `has_work` says have work, and the approval webhook's notice outbox
//! retries a failed delivery, is withdrawn when the rollout no longer waits, and is leased to one
//! deliverer at a time.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::*;
use dmf_broker::domain::ids::RolloutId;
use dmf_broker::domain::rollout::machine::{Facts, has_work};
use dmf_broker::domain::rollout::{GroupState, RolloutStatus};
use dmf_broker::store::rollouts as store;

async fn rollout_ready(app: &TestApp, name: &str, n: usize) -> i64 {
    for i in 0..n {
        app.send(thing_created(&format!("{name}-{i}"))).await;
    }
    app.wait_target(&format!("{name}-{}", n - 1), |_| true)
        .await;
    let ds = app.create_set(&format!("{name}-fw")).await;
    let (s, r) = app
        .api_post(
            "/rollouts",
            json!({"name": name, "distributionSetId": ds, "targetFilterQuery": format!("name=={name}-*")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = r["id"].as_i64().unwrap();
    wait_status(app, id, "ready").await;
    id
}

/// Wait until the rollout has the status `want` (API spelling).
async fn wait_status(app: &TestApp, id: i64, want: &str) {
    poll(Duration::from_secs(15), async || {
        let (_, v) = app.api_get(&format!("/rollouts/{id}")).await;
        match v["status"] == want {
            true => Ok(()),
            false => Err(format!("rollout {id} never got {want}: {v}")),
        }
    })
    .await
}

#[tokio::test]
async fn the_work_query_picks_up_exactly_what_the_machine_calls_work() {
    // The executor sleeps for an hour unless woken: only this test changes the rollout.
    let app = spawn_app_with(&["--rollout-tick-ms", "3600000"]).await;
    let id = rollout_ready(&app, "wq", 2).await;
    let url = app.db.url();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut checked = 0;
    for status in RolloutStatus::ALL {
        for start_at in ["NULL", "epoch_ms() - 1000", "epoch_ms() + 3600000"] {
            for (group, scheduled) in [
                (GroupState::Running, 1),
                (GroupState::Running, 0),
                (GroupState::Scheduled, 1),
            ] {
                sql(
                    &app,
                    &format!(
                        "UPDATE rollout SET status = '{}', start_at = {start_at} WHERE id = {id};
                         UPDATE rollout_group SET status = '{}', n_scheduled = {scheduled}
                         WHERE rollout_id = {id}",
                        status.as_db(),
                        group.as_db()
                    ),
                );
                let picked = store::with_work(&mut conn)
                    .await
                    .unwrap()
                    .contains(&RolloutId(id));
                let now = dmf_broker::store::now_ms(&mut conn).await.unwrap();
                let r = store::find(
                    &mut conn,
                    dmf_broker::domain::ids::TenantId(1),
                    RolloutId(id),
                )
                .await
                .unwrap()
                .expect("rollout");
                let groups = store::groups(&mut conn, r.id).await.unwrap();
                let facts = Facts {
                    groups: &groups,
                    approval_enabled: false,
                    enrol_idle_ms: 0,
                };
                assert_eq!(
                    picked,
                    has_work(&r, &facts, now),
                    "{status} start_at {start_at}, group {group:?} with {scheduled} scheduled"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 12 * 9);
    // An unknown status in the database is an error, never some default.
    sql(
        &app,
        &format!(
            "ALTER TABLE rollout DROP CONSTRAINT rollout_status_check;
             UPDATE rollout SET status = 'HALTED' WHERE id = {id}"
        ),
    );
    let e = store::find(
        &mut conn,
        dmf_broker::domain::ids::TenantId(1),
        RolloutId(id),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("HALTED"), "{e}");
    let (s, body) = app.api_get(&format!("/rollouts/{id}")).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
}

async fn waiting_for_approval(app: &TestApp, name: &str) -> i64 {
    let (s, _) = app
        .api_put(
            "/system/configs/rollout.approval.enabled",
            json!({"value": true}),
        )
        .await;
    assert!(s.is_success());
    let id = {
        app.send(thing_created(&format!("{name}-0"))).await;
        app.wait_target(&format!("{name}-0"), |_| true).await;
        let ds = app.create_set(&format!("{name}-fw")).await;
        // The default test user may approve: another user creates it.
        let (s, r) = app
            .api_as(
                "creator",
                "creator-pw",
                reqwest::Method::POST,
                "/rollouts",
                Some(
                    json!({"name": name, "distributionSetId": ds, "targetFilterQuery": "name==*"}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
        r["id"].as_i64().unwrap()
    };
    wait_status(app, id, "waiting_for_approval").await;
    id
}

const USERS: &str = r#"
[[users]]
username = "creator"
password = "creator-pw"
tenant = "DEFAULT"
permissions = ["READ_TARGET", "READ_REPOSITORY", "READ_ROLLOUT", "CREATE_ROLLOUT", "HANDLE_ROLLOUT"]
"#;

#[tokio::test]
async fn a_refused_approval_notice_is_delivered_again_with_backoff() {
    let (hook, mut calls) = webhook_sink(2).await;
    let app = spawn_app_with_users(
        USERS,
        &["--rollout-tick-ms", "50", "--approval-webhook", &hook],
    )
    .await;
    let id = waiting_for_approval(&app, "hooked").await;
    let mut at = Vec::new();
    for _ in 0..3 {
        let call = tokio::time::timeout(Duration::from_secs(10), calls.recv())
            .await
            .expect("webhook called again")
            .unwrap();
        assert_eq!(call["rolloutId"], id);
        at.push(Instant::now());
    }
    // 500 ms, then 1 s between the attempts (a little less for timer slack).
    assert!(at[1] - at[0] >= Duration::from_millis(400), "{at:?}");
    assert!(at[2] - at[1] >= Duration::from_millis(900), "{at:?}");
    // Delivered: the notice is gone and nothing is sent again.
    poll(Duration::from_secs(5), async || {
        match sql(&app, "SELECT count(*) FROM approval_notice").as_str() {
            "0" => Ok(()),
            n => Err(format!("{n} notices left")),
        }
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), calls.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn approving_withdraws_an_undelivered_notice() {
    let (hook, mut calls) = webhook_sink(usize::MAX).await;
    let app = spawn_app_with_users(
        USERS,
        &["--rollout-tick-ms", "50", "--approval-webhook", &hook],
    )
    .await;
    let id = waiting_for_approval(&app, "refused").await;
    tokio::time::timeout(Duration::from_secs(10), calls.recv())
        .await
        .expect("webhook called")
        .unwrap();
    // The failure is recorded with the notice until it is delivered or withdrawn.
    poll(Duration::from_secs(5), async || {
        let v = sql(
            &app,
            &format!("SELECT last_error FROM approval_notice WHERE rollout_id = {id}"),
        );
        match v.contains("503") {
            true => Ok(()),
            false => Err(format!("last error {v:?}")),
        }
    })
    .await;
    let (s, e) = app
        .api_post(&format!("/rollouts/{id}/approve"), Value::Null)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    assert_eq!(sql(&app, "SELECT count(*) FROM approval_notice"), "0");
}

/// Two deliverers never hold the same notice, and a notice whose deliverer died between lease
/// and post is due again, once, when the lease runs out. The service here has no webhook, so
/// it runs no deliverer: the two connections below are the only ones.
#[tokio::test]
async fn leased_notices_go_to_one_deliverer_and_come_back_when_it_dies() {
    use dmf_broker::store::approvals;
    let app = spawn_app_with(&["--rollout-tick-ms", "3600000"]).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(rollout_ready(&app, &format!("lease{i}"), 1).await);
    }
    let url = app.db.url();
    let (mut a, mut b) = (
        sqlx::PgConnection::connect(&url).await.unwrap(),
        sqlx::PgConnection::connect(&url).await.unwrap(),
    );
    for id in &ids {
        approvals::enqueue(&mut a, RolloutId(*id), &json!({"rolloutId": id}))
            .await
            .unwrap();
    }
    // Both lease at once, with room for three each: four notices, each leased exactly once.
    let (x, y) = tokio::join!(
        approvals::lease_due(&mut a, 3, 800),
        approvals::lease_due(&mut b, 3, 800)
    );
    let mut leased: Vec<i64> = x
        .unwrap()
        .iter()
        .chain(&y.unwrap())
        .map(|n| n.rollout.0)
        .collect();
    leased.sort();
    assert_eq!(leased, ids);
    // Within the lease nobody gets them again.
    assert!(
        approvals::lease_due(&mut a, 10, 800)
            .await
            .unwrap()
            .is_empty()
    );
    // Both deliverers "die": after the lease each notice is due once more, one attempt later.
    // The two leases began a moment apart, so their notices may come back in two rounds.
    let mut back: Vec<(i64, i32)> = Vec::new();
    poll(Duration::from_secs(5), async || {
        let n = approvals::lease_due(&mut b, 10, 60_000).await.unwrap();
        back.extend(n.iter().map(|n| (n.rollout.0, n.attempts)));
        match back.len() >= ids.len() {
            true => Ok(()),
            false => Err(format!("only {back:?} came back after the lease")),
        }
    })
    .await;
    back.sort();
    assert_eq!(back, ids.iter().map(|id| (*id, 2)).collect::<Vec<_>>());
    assert!(approvals::next_due(&mut a).await.unwrap().is_some());
    // Delivered: withdrawn, nothing left to lease.
    for id in &ids {
        approvals::withdraw(&mut a, RolloutId(*id)).await.unwrap();
    }
    assert_eq!(approvals::next_due(&mut a).await.unwrap(), None);
}
