//! Multipart uploads are assembled by streaming: UploadPartCopy of a large
//! range, CompleteMultipartUpload of a ~90 MiB object and its GET each
//! raise this process's peak memory by far less than the data they move,
//! and the result is exact (bytes, size, `-N` ETag, part listing). This
//! file holds one test so that no other test's memory blurs the peak.

mod common;

use common::{md5_hex, pattern, peak_rss, reset_peak, Harness, Req};
use futures_util::StreamExt;
use http::Method;
use s3s::crypto::{Checksum as _, Md5};

const BUCKET: &str = "multipart";
const MIB: usize = 1024 * 1024;
/// How much the peak may grow while tens of MiB move: buffers of a few
/// MiB, not the object.
const PEAK_SLACK: u64 = 16 * MIB as u64;

fn part(upload: &str, number: u32) -> Req {
    Req::new(Method::PUT, Some(BUCKET), Some("big"))
        .query("partNumber", &number.to_string())
        .query("uploadId", upload)
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_is_assembled_by_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::open(dir.path(), None, &[]);
    h.ok(Req::bucket(Method::PUT, BUCKET)).await;
    let source = pattern(1, 48 * MIB);
    h.ok(Req::put(BUCKET, "source", source.clone())).await;
    let upload = h
        .ok(Req::new(Method::POST, Some(BUCKET), Some("big")).query("uploads", ""))
        .await
        .tags("UploadId")
        .remove(0);

    // Part 1: 40 MiB copied from the source.
    let before = reset_peak();
    let copied = h
        .ok(part(&upload, 1)
            .header("x-amz-copy-source", "multipart/source")
            .header(
                "x-amz-copy-source-range",
                &format!("bytes={}-{}", MIB, 41 * MIB - 1),
            ))
        .await;
    let growth = peak_rss().saturating_sub(before);
    assert!(
        growth < PEAK_SLACK,
        "UploadPartCopy of 40 MiB raised the peak by {growth} bytes"
    );
    let range = source.slice(MIB..41 * MIB);
    let e1 = md5_hex(&range);
    assert_eq!(copied.tags("ETag"), [format!("\"{e1}\"")]);
    // Part 2: uploaded; part 3: the whole source again; part 4: 3 bytes.
    let p2 = pattern(2, 5 * MIB);
    let e2 = h
        .ok(part(&upload, 2).body(p2.clone()))
        .await
        .header("etag")
        .unwrap();
    h.ok(part(&upload, 3).header("x-amz-copy-source", "multipart/source"))
        .await;
    let e4 = h
        .ok(part(&upload, 4).body("end"))
        .await
        .header("etag")
        .unwrap();
    assert_eq!(e2, format!("\"{}\"", md5_hex(&p2)));

    let parts = h
        .ok(Req::new(Method::GET, Some(BUCKET), Some("big")).query("uploadId", &upload))
        .await;
    assert_eq!(parts.tags("PartNumber"), ["1", "2", "3", "4"]);
    let sizes = [40 * MIB, 5 * MIB, 48 * MIB, 3];
    let want: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
    assert_eq!(parts.tags("Size"), want);
    let files_before = h.data_files();
    assert_eq!(files_before.len(), 5, "source and four part files");

    let etags = [e1.clone(), md5_hex(&p2), md5_hex(&source), md5_hex(b"end")];
    let complete: String = etags
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "<Part><PartNumber>{}</PartNumber><ETag>\"{e}\"</ETag></Part>",
                i + 1
            )
        })
        .collect();
    assert_eq!(e4, format!("\"{}\"", etags[3]));
    let before = reset_peak();
    let done = h
        .ok(Req::new(Method::POST, Some(BUCKET), Some("big"))
            .query("uploadId", &upload)
            .body(format!(
                "<CompleteMultipartUpload>{complete}</CompleteMultipartUpload>"
            )))
        .await;
    let growth = peak_rss().saturating_sub(before);
    assert!(
        growth < PEAK_SLACK,
        "completing ~93 MiB raised the peak by {growth} bytes"
    );
    let md5s: Vec<u8> = etags.iter().flat_map(|e| hex::decode(e).unwrap()).collect();
    let etag = format!("\"{}-4\"", md5_hex(&md5s));
    assert_eq!(done.tags("ETag")[..], [etag.as_str()]);

    // The object: exact bytes, streamed back.
    let mut expected = Md5::new();
    for piece in [
        range.as_ref(),
        p2.as_ref(),
        source.as_ref(),
        b"end".as_ref(),
    ] {
        expected.update(piece);
    }
    let expected = hex::encode(expected.finalize());
    let total: usize = sizes.iter().sum();
    drop((source, p2, range));
    let before = reset_peak();
    let response = h
        .call(Some(&h.admin.clone()), Req::get(BUCKET, "big"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], etag.as_str());
    assert_eq!(
        response.headers()["content-length"],
        total.to_string().as_str()
    );
    let mut body = response.into_body();
    let (mut md5, mut read) = (Md5::new(), 0usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        read += chunk.len();
        md5.update(&chunk);
    }
    let growth = peak_rss().saturating_sub(before);
    assert_eq!((read, hex::encode(md5.finalize())), (total, expected));
    assert!(
        growth < PEAK_SLACK,
        "reading ~93 MiB raised the peak by {growth} bytes"
    );

    // The parts are gone: their files, the upload.
    assert_eq!(h.data_files().len(), 2, "source and the object");
    let resp = h
        .send(
            Some(&h.admin.clone()),
            Req::new(Method::GET, Some(BUCKET), Some("big")).query("uploadId", &upload),
        )
        .await;
    resp.expect_error(404, "NoSuchUpload");
}
