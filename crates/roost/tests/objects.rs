//! Object storage end to end: `roost storage` through the API, then real S3
//! clients (boto3, awscli, plain HTTP for presigned URLs) against the S3
//! endpoint of a real `roost up` (scripts: `tests/s3/client.py` for the
//! core operations, `tests/s3/conformance.py` for versioning, tagging,
//! attributes, conditional writes, CORS, form uploads and ACLs); the
//! storage variables in machines' environments; an app's storage going
//! with the app.

mod common;

use common::{free_port, python, Daemon, APP, IMAGE};
use roost_types::{CreateMachineRequest, ExecRequest, MachineConfig, MachineInit, StopRequest};
use serde_json::Value;
use std::collections::BTreeMap;

/// Runs a Python snippet with boto3 against `endpoint`; `ARGS` in the
/// snippet is the list of `args`. Returns its stdout.
async fn boto3(endpoint: &str, snippet: &str, args: &[&str]) -> String {
    let script = format!(
        "import sys, boto3\n\
         from botocore.config import Config\n\
         from botocore.exceptions import ClientError\n\
         ARGS = sys.argv[1:]\n\
         def s3(ak, sk):\n    \
             return boto3.client('s3', endpoint_url='{endpoint}', aws_access_key_id=ak,\n        \
             aws_secret_access_key=sk, region_name='auto', config=Config(retries={{'max_attempts': 1}}))\n\
         def code(fn):\n    \
             try:\n        fn()\n    except ClientError as e:\n        return e.response['Error']['Code']\n\
         {snippet}\n"
    );
    python(&script, args).await
}

/// `POST /v1/apps/{app}/storage`, named `name` or by default.
async fn create_storage(daemon: &Daemon, app: &str, name: Option<&str>) -> Value {
    let body = match name {
        Some(name) => serde_json::json!({ "name": name }),
        None => serde_json::json!({}),
    };
    daemon
        .client()
        .post(&format!("/v1/apps/{app}/storage"), &body)
        .await
        .expect("create storage")
}

/// Names of the body files in the object store (`DATA/objects/data/*/*`).
fn object_files(daemon: &Daemon) -> Vec<String> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(daemon.data_dir().join("objects/data")).expect("data dir") {
        for file in std::fs::read_dir(dir.expect("entry").path()).expect("subdir") {
            out.push(
                file.expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn real_s3_clients_work_against_app_buckets() {
    let listen = format!("127.0.0.1:{}", free_port());
    let daemon = Daemon::start_with_args(&["--s3-listen", &listen]).await;
    let client = daemon.client();
    client.create_app("other").await.expect("create app");
    let mine = create_storage(&daemon, APP, Some("robot-data")).await;
    let theirs = create_storage(&daemon, "other", None).await;
    assert_eq!(theirs["name"], "other-bucket");
    let bad: Result<Value, _> = client
        .post(
            &format!("/v1/apps/{APP}/storage"),
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

/// Versioning, tagging, object attributes, checksum types, conditional
/// writes, listing edge cases, CORS, presigned POST and canned ACLs, with
/// boto3, awscli and browser-like plain HTTP (`tests/s3/conformance.py`).
#[tokio::test(flavor = "multi_thread")]
async fn s3_conformance_with_real_clients() {
    let listen = format!("127.0.0.1:{}", free_port());
    let daemon = Daemon::start_with_args(&["--s3-listen", &listen]).await;
    daemon
        .client()
        .create_app("other")
        .await
        .expect("create app");
    let mine = create_storage(&daemon, APP, None).await;
    let theirs = create_storage(&daemon, "other", None).await;
    let s = |v: &Value, k: &str| v[k].as_str().expect(k).to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3/conformance.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://{listen}"))
        .args([
            s(&mine, "access_key_id"),
            s(&mine, "secret_access_key"),
            s(&theirs, "access_key_id"),
            s(&theirs, "secret_access_key"),
        ])
        .output()
        .await
        .expect("run python3");
    assert!(
        output.status.success(),
        "conformance.py failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_app_deletes_its_buckets_objects_and_key_pair() {
    let listen = format!("127.0.0.1:{}", free_port());
    let endpoint = format!("http://{listen}");
    let daemon = Daemon::start_with_args(&["--s3-listen", &listen]).await;
    let client = daemon.client();
    client.create_app("doomed").await.expect("create app");
    let keeper = create_storage(&daemon, APP, None).await;
    let doomed = create_storage(&daemon, "doomed", Some("doomed-one")).await;
    create_storage(&daemon, "doomed", Some("doomed-two")).await;
    let s = |v: &Value, k: &str| v[k].as_str().expect(k).to_string();
    let (ak, sk) = (s(&doomed, "access_key_id"), s(&doomed, "secret_access_key"));
    // Objects in both buckets (one big enough to be a file), and an
    // unfinished multipart upload with a part; one object of the keeper.
    boto3(
        &endpoint,
        "c = s3(ARGS[0], ARGS[1])\n\
         for b in ('doomed-one', 'doomed-two'):\n    \
             c.put_object(Bucket=b, Key='small', Body=b'x')\n    \
             c.put_object(Bucket=b, Key='big', Body=b'y' * 200000)\n\
         u = c.create_multipart_upload(Bucket='doomed-one', Key='mp')['UploadId']\n\
         c.upload_part(Bucket='doomed-one', Key='mp', UploadId=u, PartNumber=1, Body=b'z' * 100000)\n\
         k = s3(ARGS[2], ARGS[3])\n\
         k.put_object(Bucket=ARGS[4], Key='kept', Body=b'k' * 200000)",
        &[&ak, &sk, &s(&keeper, "access_key_id"), &s(&keeper, "secret_access_key"), &s(&keeper, "name")],
    )
    .await;
    assert_eq!(
        object_files(&daemon).len(),
        4,
        "two big objects, a part, the keeper's"
    );

    let resp = daemon
        .http(reqwest::Method::DELETE, "/v1/apps/doomed")
        .send()
        .await
        .expect("delete app");
    assert!(resp.status().is_success(), "{:?}", resp.text().await);

    // Nothing of the app's storage is left: buckets, bodies, key pair.
    let left: Vec<Value> = client.get("/v1/storage").await.expect("list");
    let names: Vec<&str> = left.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, [s(&keeper, "name").as_str()]);
    assert_eq!(
        object_files(&daemon).len(),
        1,
        "only the keeper's body is left"
    );
    let admin: Value = serde_json::from_slice(
        &std::fs::read(daemon.data_dir().join("objects/admin-key.json")).expect("admin key"),
    )
    .expect("admin key json");
    let out = boto3(
        &endpoint,
        "print(code(lambda: s3(ARGS[0], ARGS[1]).list_buckets()))\n\
         a = s3(ARGS[2], ARGS[3])\n\
         print(code(lambda: a.head_bucket(Bucket='doomed-one')), code(lambda: a.head_bucket(Bucket='doomed-two')))\n\
         print(a.get_object(Bucket=ARGS[4], Key='kept')['ContentLength'])",
        &[&ak, &sk, &s(&admin, "access_key_id"), &s(&admin, "secret_access_key"), &s(&keeper, "name")],
    )
    .await;
    assert_eq!(out, "InvalidAccessKeyId\n404 404\n200000\n");

    // An app made later under the same name starts with nothing.
    client.create_app("doomed").await.expect("create app again");
    let none: Vec<Value> = client.get("/v1/apps/doomed/storage").await.expect("list");
    assert!(none.is_empty(), "{none:?}");
    let again = create_storage(&daemon, "doomed", Some("doomed-one")).await;
    assert_ne!(s(&again, "access_key_id"), ak);
}

/// A machine whose main process records its environment at start.
fn env_recorder(env: &[(&str, &str)]) -> CreateMachineRequest {
    CreateMachineRequest {
        config: MachineConfig {
            image: IMAGE.into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            init: Some(MachineInit {
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "env > /env.at-start; exec sleep 1000".into(),
                ],
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The storage variables a machine sees: in an exec'd `env`, and in its
/// main process's environment as recorded at start. Both must agree.
async fn storage_env(daemon: &Daemon, id: &str) -> BTreeMap<String, String> {
    let mut seen = Vec::new();
    for command in [vec!["env"], vec!["cat", "/env.at-start"]] {
        let out = daemon
            .client()
            .exec(
                APP,
                id,
                &ExecRequest {
                    command: command.iter().map(|c| c.to_string()).collect(),
                    ..Default::default()
                },
            )
            .await
            .expect("exec");
        assert_eq!(out.exit_code, 0, "{command:?}: {}", out.stderr);
        let vars: BTreeMap<String, String> = out
            .stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.starts_with("AWS_") || *k == "BUCKET_NAME")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        seen.push(vars);
    }
    assert_eq!(seen[0], seen[1], "exec and the main process disagree");
    seen.remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn machines_get_the_storage_variables_at_their_next_start() {
    let public = "http://10.11.12.13:9000";
    let daemon = Daemon::start_with_args(&["--s3-public-url", public]).await;
    let client = daemon.client();
    let early = client
        .create_machine(APP, &env_recorder(&[]))
        .await
        .expect("create")
        .id;
    assert!(storage_env(&daemon, &early).await.is_empty());

    let storage = create_storage(&daemon, APP, Some("env-bucket")).await;
    let s = |k: &str| storage[k].as_str().expect(k).to_string();
    let want: BTreeMap<String, String> = [
        ("AWS_ACCESS_KEY_ID", s("access_key_id")),
        ("AWS_SECRET_ACCESS_KEY", s("secret_access_key")),
        ("AWS_ENDPOINT_URL_S3", public.to_string()),
        ("AWS_REGION", "auto".to_string()),
        ("BUCKET_NAME", "env-bucket".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    // A running machine keeps the environment it started with...
    assert!(storage_env(&daemon, &early).await.is_empty());
    // ...and has the variables from its next start on.
    client
        .stop_machine(APP, &early, &StopRequest::default())
        .await
        .expect("stop");
    client.start_machine(APP, &early).await.expect("start");
    assert_eq!(storage_env(&daemon, &early).await, want);

    // A machine made afterwards has them from the first start; its own
    // config.env wins over them.
    let late = client
        .create_machine(APP, &env_recorder(&[]))
        .await
        .expect("create")
        .id;
    assert_eq!(storage_env(&daemon, &late).await, want);
    let own = client
        .create_machine(APP, &env_recorder(&[("BUCKET_NAME", "mine")]))
        .await
        .expect("create")
        .id;
    let mut with_own = want.clone();
    with_own.insert("BUCKET_NAME".into(), "mine".into());
    assert_eq!(storage_env(&daemon, &own).await, with_own);

    // Destroying the storage takes the variables away at the next start.
    let _: Value = client
        .delete(&format!("/v1/apps/{APP}/storage/env-bucket"))
        .await
        .expect("destroy storage");
    client.restart_machine(APP, &late).await.expect("restart");
    assert!(storage_env(&daemon, &late).await.is_empty());
}
