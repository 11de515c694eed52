//! Access control through the whole S3 service: an app's key pair reaches
//! its app's buckets only (AccessDenied elsewhere, including as a copy
//! source), buckets it creates become its app's, and the admin key pair
//! reaches every bucket.

mod common;

use common::{Harness, Req};
use http::Method;
use roost_objects::AccessKey;

fn copy_from(bucket: &str, key: &str, source: &str) -> Req {
    Req::new(Method::PUT, Some(bucket), Some(key)).header("x-amz-copy-source", source)
}

#[tokio::test(flavor = "multi_thread")]
async fn app_keys_reach_only_their_apps_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let alpha = AccessKey::generate("ALPHA");
    let beta = AccessKey::generate("BETA");
    let h = Harness::open(dir.path(), None, &[("alpha", &alpha), ("beta", &beta)]);
    let (a, b) = (Some(&alpha), Some(&beta));

    // Buckets created with a key pair belong to its app; admin's to nobody.
    h.ok(Req::bucket(Method::PUT, "admin-only")).await;
    assert_eq!(
        h.send(a, Req::bucket(Method::PUT, "alpha-data"))
            .await
            .status,
        200
    );
    assert_eq!(
        h.send(b, Req::bucket(Method::PUT, "beta-data"))
            .await
            .status,
        200
    );
    let owner = |name: &'static str| {
        let store = h.store.clone();
        async move { store.bucket(name).await.unwrap().unwrap().owner }
    };
    assert_eq!(owner("admin-only").await, None);
    assert_eq!(owner("alpha-data").await.as_deref(), Some("alpha"));
    assert_eq!(owner("beta-data").await.as_deref(), Some("beta"));
    h.ok(Req::put("admin-only", "secret", "admin's")).await;
    assert_eq!(
        h.send(b, Req::put("beta-data", "secret", "beta's"))
            .await
            .status,
        200
    );

    // Alpha works in its own bucket.
    assert_eq!(
        h.send(a, Req::put("alpha-data", "mine", "alpha's"))
            .await
            .status,
        200
    );
    let got = h.send(a, Req::get("alpha-data", "mine")).await;
    assert_eq!((got.status, got.body.as_ref()), (200, b"alpha's".as_ref()));
    let listed = h.send(a, Req::root()).await;
    assert_eq!(listed.tags("Name"), ["alpha-data"]);

    // ...and nowhere else, whatever the operation.
    for bucket in ["beta-data", "admin-only"] {
        let denied = [
            Req::get(bucket, "secret"),
            Req::new(Method::HEAD, Some(bucket), Some("secret")),
            Req::put(bucket, "planted", "x"),
            Req::new(Method::DELETE, Some(bucket), Some("secret")),
            Req::bucket(Method::HEAD, bucket),
            Req::bucket(Method::GET, bucket).query("list-type", "2"),
            Req::bucket(Method::GET, bucket).query("versions", ""),
            Req::bucket(Method::GET, bucket).query("uploads", ""),
            Req::bucket(Method::DELETE, bucket),
            Req::bucket(Method::POST, bucket)
                .query("delete", "")
                .body("<Delete><Object><Key>secret</Key></Object></Delete>"),
            Req::new(Method::POST, Some(bucket), Some("mp")).query("uploads", ""),
            copy_from(bucket, "stolen", "alpha-data/mine"),
        ];
        for req in denied {
            let what = format!("{} {}?{:?}", req.method, req.path(), req.query);
            let head = req.method == Method::HEAD;
            let resp = h.send(a, req).await;
            // A HEAD answer has no body to carry the code.
            let code = if head { String::new() } else { resp.code() };
            let want = if head { "" } else { "AccessDenied" };
            assert_eq!(
                (resp.status, code.as_str()),
                (403, want),
                "{what}: {}",
                resp.text()
            );
        }
    }
    // Bucket names are one namespace: creating another's bucket says it
    // exists, as S3 does, and changes nothing.
    for bucket in ["beta-data", "admin-only"] {
        h.send(a, Req::bucket(Method::PUT, bucket))
            .await
            .expect_error(409, "BucketAlreadyExists");
    }
    // As a copy source, into its own bucket: object copy and part copy.
    let resp = h
        .send(a, copy_from("alpha-data", "stolen", "beta-data/secret"))
        .await;
    resp.expect_error(403, "AccessDenied");
    let upload = h
        .send(
            a,
            Req::new(Method::POST, Some("alpha-data"), Some("mp")).query("uploads", ""),
        )
        .await;
    let upload_id = upload.tags("UploadId").remove(0);
    let resp = h
        .send(
            a,
            copy_from("alpha-data", "mp", "admin-only/secret")
                .query("partNumber", "1")
                .query("uploadId", &upload_id),
        )
        .await;
    resp.expect_error(403, "AccessDenied");
    assert!(h.get("alpha-data", "stolen").await.is_none());

    // Nothing of the others changed.
    assert_eq!(h.get("beta-data", "secret").await.unwrap(), "beta's");
    assert_eq!(h.get("admin-only", "secret").await.unwrap(), "admin's");
    assert!(h.get("beta-data", "planted").await.is_none());
    assert_eq!(owner("beta-data").await.as_deref(), Some("beta"));

    // A missing bucket is NoSuchBucket, not someone else's.
    let resp = h.send(a, Req::get("no-such-bucket", "k")).await;
    resp.expect_error(404, "NoSuchBucket");

    // Admin reaches everything, and may copy across apps.
    let all = h.ok(Req::root()).await;
    assert_eq!(all.tags("Name"), ["admin-only", "alpha-data", "beta-data"]);
    h.ok(copy_from("alpha-data", "given", "beta-data/secret"))
        .await;
    let got = h.send(a, Req::get("alpha-data", "given")).await;
    assert_eq!((got.status, got.body.as_ref()), (200, b"beta's".as_ref()));

    // Authentication itself.
    let stranger = AccessKey::generate("NOBODY");
    h.send(Some(&stranger), Req::root())
        .await
        .expect_error(403, "InvalidAccessKeyId");
    let forged = AccessKey {
        access_key_id: alpha.access_key_id.clone(),
        secret_access_key: beta.secret_access_key.clone(),
    };
    h.send(Some(&forged), Req::get("alpha-data", "mine"))
        .await
        .expect_error(403, "SignatureDoesNotMatch");
    h.send(None, Req::get("alpha-data", "mine"))
        .await
        .expect_error(403, "AccessDenied");
}
