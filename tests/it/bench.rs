//! `dmf-broker bench --quick` end to end: the real binary starts the service as a child on its
//! own database and vhost, runs every phase at tiny sizes, and writes a report holding every
//! figure. Timing thresholds are not asserted (the goals are for the full-size run).

use std::time::{Duration, Instant};

use serde_json::Value;

#[tokio::test]
async fn quick_bench_completes_and_reports_every_figure() {
    let dir = std::env::temp_dir().join(format!("dmf-bench-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("report.json");
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dmf-broker"))
        .args(["bench", "--quick", "--json"])
        .arg(&json)
        .env_remove("DMF_BENCH_DEVICES")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the bench");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let read = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut s = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut r, &mut s).await;
            s
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("bench --quick finishes within 120 s")
        .expect("bench status");
    let (out, err) = (out.await.unwrap_or_default(), err.await.unwrap_or_default());
    assert!(status.success(), "bench failed ({status}):\n{out}\n{err}");
    println!("bench --quick took {:?}\n{out}", t0.elapsed());

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report written"))
            .expect("report is JSON");
    let _ = std::fs::remove_dir_all(&dir);
    let figures = &report["figures"];
    for key in [
        "raw_amqp_consume_ack",
        "raw_amqp_publish_confirm",
        "raw_pg_batched_update",
        "status_ingestion",
        "dispatch",
        "cascade_p50",
        "cascade_p99",
        "rollout_creation",
        "auto_assign_targets_per_s",
        "auto_assign_p50",
        "auto_assign_p99",
        "service_peak_rss",
    ] {
        let v = figures[key]["value"].as_f64();
        assert!(
            v.is_some_and(|v| v > 0.0 && v.is_finite()),
            "{key} missing or not positive: {}",
            figures[key]
        );
        assert!(
            out.contains(figures[key]["label"].as_str().unwrap_or("?")),
            "{key} not in the table"
        );
    }
    // Figures of the service stand next to their ceiling, as a ratio.
    for key in [
        "status_ingestion",
        "dispatch",
        "cascade_p50",
        "rollout_creation",
        "service_peak_rss",
    ] {
        assert!(
            figures[key]["ratio"].as_f64().is_some_and(|r| r > 0.0),
            "{key} has no ratio: {}",
            figures[key]
        );
        assert!(figures[key]["goal"].is_string(), "{key} has no goal");
    }
    for key in ["auto_assign_targets_per_s", "auto_assign_p50"] {
        assert!(
            figures[key]["ratio"].as_f64().is_some_and(|r| r > 0.0),
            "{key} has no ratio: {}",
            figures[key]
        );
    }
    assert_eq!(report["sizes"]["quick"], true);
    assert!(report["machine"]["cores"].as_u64().is_some_and(|c| c > 0));
    assert!(
        report["command"]
            .as_str()
            .is_some_and(|c| c.contains("bench --quick"))
    );
    // The run cleaned up after itself: its vhost is gone.
    let vhosts = std::process::Command::new("rabbitmqctl")
        .args(["list_vhosts", "-q"])
        .output()
        .expect("rabbitmqctl");
    assert!(
        !String::from_utf8_lossy(&vhosts.stdout).contains(
            err.split("vhost ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or("dmf-bench-never")
        ),
        "the bench vhost was left behind"
    );
}
