//! Object storage end to end: `roost storage` through the API, then real S3
//! clients (boto3, awscli, plain HTTP for presigned URLs) against the S3
//! endpoint of a real `roost up` (script: `tests/s3/client.py`).

mod common;

use common::Daemon;
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread")]
async fn real_s3_clients_work_against_app_buckets() {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let daemon = Daemon::start_with_args(&["--s3-listen", &listen]).await;
    let client = daemon.client();
    client.create_app("other").await.expect("create app");
    let mine: Value = client
        .post(
            &format!("/v1/apps/{}/storage", common::APP),
            &serde_json::json!({"name": "robot-data"}),
        )
        .await
        .expect("create storage");
    let theirs: Value = client
        .post("/v1/apps/other/storage", &serde_json::json!({}))
        .await
        .expect("create storage");
    assert_eq!(theirs["name"], "other-bucket");
    let bad: Result<Value, _> = client
        .post(
            &format!("/v1/apps/{}/storage", common::APP),
            &serde_json::json!({"name": "Bad_Name"}),
        )
        .await;
    assert!(bad
        .expect_err("invalid name")
        .to_string()
        .contains("invalid"));
    let listed: Vec<Value> = client.get("/v1/storage").await.expect("list");
    assert_eq!(listed.len(), 2);

    let s = |v: &Value, k: &str| v[k].as_str().expect(k).to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3/client.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://{listen}"))
        .args([
            s(&mine, "access_key_id"),
            s(&mine, "secret_access_key"),
            s(&mine, "name"),
            s(&theirs, "access_key_id"),
            s(&theirs, "secret_access_key"),
        ])
        .output()
        .await
        .expect("run python3");
    assert!(
        output.status.success(),
        "client.py failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let _: Value = client
        .delete("/v1/apps/other/storage/other-bucket")
        .await
        .expect("destroy");
    let left: Vec<Value> = client.get("/v1/apps/other/storage").await.expect("list");
    assert!(left.is_empty());
}
