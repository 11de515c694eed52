"""S3 conformance with real clients (boto3, awscli, plain HTTP as a browser
sends it): versioning, tagging, object attributes, checksum types,
conditional writes, listing edge cases, CORS, presigned POST, canned ACLs.

Usage: conformance.py ENDPOINT ACCESS_KEY SECRET_KEY OTHER_ACCESS OTHER_SECRET
Both key pairs belong to apps; buckets each one creates become its own.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import uuid
import zlib

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, ak, sk, other_ak, other_sk = sys.argv[1:6]
host = endpoint.split("//", 1)[1]
MIB = 1024 * 1024


def client(access, secret):
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
        region_name="auto", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def error(fn):
    """The (HTTP status, S3 error code) of a call expected to fail."""
    try:
        fn()
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]
    raise AssertionError("the call succeeded")


def new_bucket(s3):
    name = "conf-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    return name


def aws(*args, access=ak, secret=sk):
    """awscli's s3api, its JSON answer parsed."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="auto")
    out = subprocess.run(["aws", "--endpoint-url", endpoint, "--output", "json", "s3api"] + list(args),
                         check=True, env=env, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else {}


def raw(method, path, headers=None, body=b""):
    """A request as a browser or plain HTTP client sends it (unsigned)."""
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    out = (resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    conn.close()
    return out


def history(bucket, key):
    """The version ids of `key`, newest first: its versions, its delete markers."""
    page = s3.list_object_versions(Bucket=bucket, Prefix=key)
    return ([v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key],
            [m["VersionId"] for m in page.get("DeleteMarkers", []) if m["Key"] == key])


def b64(digest):
    return base64.b64encode(digest).decode()


s3 = client(ak, sk)
other = client(other_ak, other_sk)

# --- Buckets: creating an existing one, one's own or another app's.
mine = new_bucket(s3)
assert error(lambda: s3.create_bucket(Bucket=mine)) == (409, "BucketAlreadyOwnedByYou")
assert error(lambda: other.create_bucket(Bucket=mine)) == (409, "BucketAlreadyExists")

# --- Versioning: Enabled, version ids, reads and deletes by version, markers.
vb = new_bucket(s3)
assert "Status" not in s3.get_bucket_versioning(Bucket=vb)
s3.put_bucket_versioning(Bucket=vb, VersioningConfiguration={"Status": "Enabled"})
assert s3.get_bucket_versioning(Bucket=vb)["Status"] == "Enabled"
ids = [s3.put_object(Bucket=vb, Key="doc", Body=b"v%d" % i)["VersionId"] for i in range(3)]
assert len(set(ids)) == 3 and "null" not in ids, ids
assert s3.get_object(Bucket=vb, Key="doc")["Body"].read() == b"v2"
for i, vid in enumerate(ids):
    got = s3.get_object(Bucket=vb, Key="doc", VersionId=vid)
    assert got["Body"].read() == b"v%d" % i and got["VersionId"] == vid
    assert s3.head_object(Bucket=vb, Key="doc", VersionId=vid)["ContentLength"] == 2
assert error(lambda: s3.get_object(Bucket=vb, Key="doc", VersionId="no-such-version"))[0] in (400, 404)
# A plain DELETE adds a delete marker: the key reads as missing, every version stays.
marker = s3.delete_object(Bucket=vb, Key="doc")
assert marker["DeleteMarker"] is True and marker["VersionId"] not in ids, marker
try:
    s3.get_object(Bucket=vb, Key="doc")
    raise AssertionError("GET after a delete marker succeeded")
except ClientError as e:
    assert e.response["Error"]["Code"] == "NoSuchKey"
    assert e.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
assert error(lambda: s3.head_object(Bucket=vb, Key="doc"))[0] == 404
assert s3.get_object(Bucket=vb, Key="doc", VersionId=ids[1])["Body"].read() == b"v1"
assert "Contents" not in s3.list_objects_v2(Bucket=vb)
listed = s3.list_object_versions(Bucket=vb)
assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [
    (ids[2], False), (ids[1], False), (ids[0], False)], listed
assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(marker["VersionId"], True)]
# Deleting the marker by version brings the newest version back; deleting a
# version removes it for good.
s3.delete_object(Bucket=vb, Key="doc", VersionId=marker["VersionId"])
assert s3.get_object(Bucket=vb, Key="doc")["Body"].read() == b"v2"
out = s3.delete_object(Bucket=vb, Key="doc", VersionId=ids[2])
assert out["VersionId"] == ids[2] and "DeleteMarker" not in out, out
assert s3.get_object(Bucket=vb, Key="doc")["Body"].read() == b"v1"
assert error(lambda: s3.get_object(Bucket=vb, Key="doc", VersionId=ids[2]))[0] in (400, 404)
# DeleteObjects by version and with markers.
out = s3.delete_objects(Bucket=vb, Delete={"Objects": [{"Key": "doc", "VersionId": ids[0]}, {"Key": "other"}]})
deleted = {(d["Key"], d.get("VersionId")): d.get("DeleteMarker", False) for d in out["Deleted"]}
assert deleted[("doc", ids[0])] is False and [k for k in deleted if k[0] == "other"], out
assert [m["Key"] for m in s3.list_object_versions(Bucket=vb, Prefix="other")["DeleteMarkers"]] == ["other"]

# ListObjectVersions: prefix, delimiter, key and version-id markers.
lb = new_bucket(s3)
s3.put_bucket_versioning(Bucket=lb, VersioningConfiguration={"Status": "Enabled"})
versions = {}
for key in ["a/1", "a/2", "b", "c"]:
    versions[key] = [s3.put_object(Bucket=lb, Key=key, Body=key.encode() * n)["VersionId"] for n in (1, 2)]
page = s3.list_object_versions(Bucket=lb, Prefix="a/")
assert [(v["Key"], v["VersionId"]) for v in page["Versions"]] == [
    ("a/1", versions["a/1"][1]), ("a/1", versions["a/1"][0]),
    ("a/2", versions["a/2"][1]), ("a/2", versions["a/2"][0])], page
page = s3.list_object_versions(Bucket=lb, Delimiter="/")
assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/"] and {v["Key"] for v in page["Versions"]} == {"b", "c"}
seen, kw = [], {}
while True:
    page = s3.list_object_versions(Bucket=lb, MaxKeys=3, **kw)
    seen += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
    if not page["IsTruncated"]:
        break
    kw = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
assert seen == [(k, v) for k in ["a/1", "a/2", "b", "c"] for v in reversed(versions[k])], seen
page = s3.list_object_versions(Bucket=lb, KeyMarker="b", VersionIdMarker=versions["b"][1])
assert [(v["Key"], v["VersionId"]) for v in page["Versions"]][:1] == [("b", versions["b"][0])], page
page = s3.list_object_versions(Bucket=lb, KeyMarker="b")
assert {v["Key"] for v in page["Versions"]} == {"c"}, page
# Emptying a bucket page by page (list a page, delete what it lists, list the
# next from its markers) sees every version, though each page's marker
# version is gone by the time the next page is asked for: versioned keys
# and, in an unversioned bucket, `null` versions.
def empty_by_pages(bucket):
    kw, deleted = {}, 0
    while True:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=3, **kw)
        batch = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", [])]
        if batch:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            deleted += len(batch)
        if not page["IsTruncated"]:
            return deleted
        kw = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
eb = new_bucket(s3)
s3.put_bucket_versioning(Bucket=eb, VersioningConfiguration={"Status": "Enabled"})
for key in ["k1", "k2"]:
    for n in range(4):
        s3.put_object(Bucket=eb, Key=key, Body=b"v%d" % n)
assert empty_by_pages(eb) == 8
ub = new_bucket(s3)
for n in range(7):
    s3.put_object(Bucket=ub, Key="u%d" % n, Body=b"x")
assert empty_by_pages(ub) == 7
s3.delete_bucket(Bucket=eb)
s3.delete_bucket(Bucket=ub)
assert error(lambda: s3.list_object_versions(Bucket=lb, KeyMarker="b", VersionIdMarker="not-a-version")) == (
    400, "InvalidArgument")
# The same through awscli.
page = aws("list-object-versions", "--bucket", lb, "--delimiter", "/")
assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/"], page
page = aws("list-object-versions", "--bucket", lb, "--prefix", "c")
assert [v["VersionId"] for v in page["Versions"]] == list(reversed(versions["c"])), page

# CopyObject from a version, and the version id of the copy.
out = s3.copy_object(Bucket=lb, Key="copied", CopySource={"Bucket": lb, "Key": "b", "VersionId": versions["b"][0]})
assert out["CopySourceVersionId"] == versions["b"][0] and out["VersionId"], out
assert s3.get_object(Bucket=lb, Key="copied")["Body"].read() == b"b"

# Multipart into a versioned bucket: the completion is a new version.
part = os.urandom(5 * MIB)
uid = s3.create_multipart_upload(Bucket=lb, Key="b")["UploadId"]
e1 = s3.upload_part(Bucket=lb, Key="b", UploadId=uid, PartNumber=1, Body=part)["ETag"]
e2 = s3.upload_part(Bucket=lb, Key="b", UploadId=uid, PartNumber=2, Body=b"tail")["ETag"]
done = s3.complete_multipart_upload(Bucket=lb, Key="b", UploadId=uid, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
assert done["VersionId"] and done["VersionId"] not in versions["b"], done
assert [v["VersionId"] for v in s3.list_object_versions(Bucket=lb, Prefix="b")["Versions"]] == [
    done["VersionId"]] + list(reversed(versions["b"]))
assert s3.get_object(Bucket=lb, Key="b", VersionId=versions["b"][1])["Body"].read() == b"bb"
assert s3.get_object(Bucket=lb, Key="b")["Body"].read() == part + b"tail"

# Suspended: new writes are the `null` version, replacing the previous null one;
# the versions written while Enabled stay.
s3.put_bucket_versioning(Bucket=lb, VersioningConfiguration={"Status": "Suspended"})
assert aws("get-bucket-versioning", "--bucket", lb)["Status"] == "Suspended"
for body in (b"null-1", b"null-2"):
    assert "VersionId" not in s3.put_object(Bucket=lb, Key="c", Body=body)
assert history(lb, "c") == (["null"] + list(reversed(versions["c"])), []), history(lb, "c")
assert s3.get_object(Bucket=lb, Key="c", VersionId="null")["Body"].read() == b"null-2"
out = s3.delete_object(Bucket=lb, Key="c")
assert out["DeleteMarker"] is True and out.get("VersionId", "null") == "null", out
assert history(lb, "c") == (list(reversed(versions["c"])), ["null"]), history(lb, "c")

# --- Tagging: objects and buckets, Put/Get/Delete, and x-amz-tagging on PUT.
tb = new_bucket(s3)
s3.put_object(Bucket=tb, Key="t", Body=b"x", Tagging="team=robots&stage=test%20run")
assert s3.get_object_tagging(Bucket=tb, Key="t")["TagSet"] == [
    {"Key": "stage", "Value": "test run"}, {"Key": "team", "Value": "robots"}]
assert s3.get_object(Bucket=tb, Key="t")["TagCount"] == 2
s3.put_object_tagging(Bucket=tb, Key="t", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
assert aws("get-object-tagging", "--bucket", tb, "--key", "t")["TagSet"] == [{"Key": "k", "Value": "v"}]
aws("delete-object-tagging", "--bucket", tb, "--key", "t")
assert s3.get_object_tagging(Bucket=tb, Key="t")["TagSet"] == []
too_many = {"TagSet": [{"Key": "k%d" % i, "Value": "v"} for i in range(11)]}
assert error(lambda: s3.put_object_tagging(Bucket=tb, Key="t", Tagging=too_many)) == (400, "InvalidTag")
assert error(lambda: s3.put_object_tagging(Bucket=tb, Key="t", Tagging={"TagSet": [
    {"Key": "k" * 129, "Value": "v"}]})) == (400, "InvalidTag")
assert error(lambda: s3.get_bucket_tagging(Bucket=tb)) == (404, "NoSuchTagSet")
s3.put_bucket_tagging(Bucket=tb, Tagging={"TagSet": [{"Key": "owner", "Value": "me"}]})
assert s3.get_bucket_tagging(Bucket=tb)["TagSet"] == [{"Key": "owner", "Value": "me"}]
s3.delete_bucket_tagging(Bucket=tb)
assert error(lambda: s3.get_bucket_tagging(Bucket=tb)) == (404, "NoSuchTagSet")
# Tags of one version of a versioned object.
s3.put_object_tagging(Bucket=lb, Key="b", VersionId=versions["b"][0], Tagging={"TagSet": [{"Key": "old", "Value": "1"}]})
assert s3.get_object_tagging(Bucket=lb, Key="b", VersionId=versions["b"][0])["TagSet"] == [{"Key": "old", "Value": "1"}]
assert s3.get_object_tagging(Bucket=lb, Key="b")["TagSet"] == []

# --- GetObjectAttributes: ETag, Checksum, ObjectParts, StorageClass, ObjectSize.
ab = new_bucket(s3)
body = os.urandom(1000)
s3.put_object(Bucket=ab, Key="one", Body=body, ChecksumAlgorithm="SHA256")
attrs = s3.get_object_attributes(Bucket=ab, Key="one",
                                 ObjectAttributes=["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"])
assert attrs["ETag"] == hashlib.md5(body).hexdigest(), attrs
assert attrs["Checksum"]["ChecksumSHA256"] == b64(hashlib.sha256(body).digest()), attrs
assert attrs["StorageClass"] == "STANDARD" and attrs["ObjectSize"] == 1000 and "ObjectParts" not in attrs, attrs
only = s3.get_object_attributes(Bucket=ab, Key="one", ObjectAttributes=["ObjectSize"])
assert only["ObjectSize"] == 1000 and "ETag" not in only and "StorageClass" not in only, only
p1, p2 = os.urandom(5 * MIB), os.urandom(MIB)
uid = s3.create_multipart_upload(Bucket=ab, Key="mp", ChecksumAlgorithm="SHA256")["UploadId"]
parts = [s3.upload_part(Bucket=ab, Key="mp", UploadId=uid, PartNumber=n, Body=data, ChecksumAlgorithm="SHA256")
         for n, data in ((1, p1), (2, p2))]
s3.complete_multipart_upload(Bucket=ab, Key="mp", UploadId=uid, MultipartUpload={"Parts": [
    {"PartNumber": n + 1, "ETag": p["ETag"], "ChecksumSHA256": p["ChecksumSHA256"]} for n, p in enumerate(parts)]})
attrs = aws("get-object-attributes", "--bucket", ab, "--key", "mp", "--object-attributes",
            "ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize", "--max-parts", "1")
assert attrs["ObjectSize"] == 6 * MIB and attrs["ETag"].endswith("-2") and not attrs["ETag"].startswith("\""), attrs
assert attrs["ObjectParts"]["TotalPartsCount"] == 2 and attrs["ObjectParts"]["IsTruncated"] is True, attrs
assert [(p["PartNumber"], p["Size"], p["ChecksumSHA256"]) for p in attrs["ObjectParts"]["Parts"]] == [
    (1, 5 * MIB, b64(hashlib.sha256(p1).digest()))], attrs
composite = b64(hashlib.sha256(hashlib.sha256(p1).digest() + hashlib.sha256(p2).digest()).digest())
assert attrs["Checksum"] == {"ChecksumSHA256": composite + "-2", "ChecksumType": "COMPOSITE"}, attrs
rest = s3.get_object_attributes(Bucket=ab, Key="mp", ObjectAttributes=["ObjectParts"], PartNumberMarker=1)
assert [p["PartNumber"] for p in rest["ObjectParts"]["Parts"]] == [2], rest

# --- Multipart checksum types, and a re-uploaded part replacing the first upload.
cb = new_bucket(s3)
# FULL_OBJECT (CRC32): the object's checksum is the CRC32 of the whole body.
uid = s3.create_multipart_upload(Bucket=cb, Key="full", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
assert uid["ChecksumType"] == "FULL_OBJECT" and uid["ChecksumAlgorithm"] == "CRC32", uid
uid = uid["UploadId"]
crc = lambda data: b64(zlib.crc32(data).to_bytes(4, "big"))
parts = [s3.upload_part(Bucket=cb, Key="full", UploadId=uid, PartNumber=n, Body=d, ChecksumCRC32=crc(d))
         for n, d in ((1, p1), (2, p2))]
done = s3.complete_multipart_upload(Bucket=cb, Key="full", UploadId=uid, ChecksumCRC32=crc(p1 + p2),
                                    ChecksumType="FULL_OBJECT", MultipartUpload={"Parts": [
                                        {"PartNumber": n + 1, "ETag": p["ETag"], "ChecksumCRC32": p["ChecksumCRC32"]}
                                        for n, p in enumerate(parts)]})
assert done["ChecksumCRC32"] == crc(p1 + p2) and done["ChecksumType"] == "FULL_OBJECT", done
head = s3.head_object(Bucket=cb, Key="full", ChecksumMode="ENABLED")
assert head["ChecksumCRC32"] == crc(p1 + p2) and head["ChecksumType"] == "FULL_OBJECT", head
# COMPOSITE (SHA256, the default type for it): shown in the parts listing too.
uid = s3.create_multipart_upload(Bucket=cb, Key="comp", ChecksumAlgorithm="SHA256")
assert uid["ChecksumType"] == "COMPOSITE", uid
uid = uid["UploadId"]
# Part 1 uploaded twice: the second upload is the part, and completion uses it.
first = s3.upload_part(Bucket=cb, Key="comp", UploadId=uid, PartNumber=1, Body=os.urandom(5 * MIB),
                       ChecksumAlgorithm="SHA256")
again = s3.upload_part(Bucket=cb, Key="comp", UploadId=uid, PartNumber=1, Body=p1, ChecksumAlgorithm="SHA256")
assert first["ETag"] != again["ETag"]
last = s3.upload_part(Bucket=cb, Key="comp", UploadId=uid, PartNumber=2, Body=p2, ChecksumAlgorithm="SHA256")
listed = s3.list_parts(Bucket=cb, Key="comp", UploadId=uid)
assert listed["ChecksumType"] == "COMPOSITE" and [p["ETag"] for p in listed["Parts"]] == [again["ETag"], last["ETag"]], listed
assert error(lambda: s3.complete_multipart_upload(Bucket=cb, Key="comp", UploadId=uid, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": last["ETag"]}]})) == (400, "InvalidPart")
done = s3.complete_multipart_upload(Bucket=cb, Key="comp", UploadId=uid, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": again["ETag"], "ChecksumSHA256": again["ChecksumSHA256"]},
    {"PartNumber": 2, "ETag": last["ETag"], "ChecksumSHA256": last["ChecksumSHA256"]}]})
assert done["ChecksumSHA256"] == composite + "-2" and done["ChecksumType"] == "COMPOSITE", done
assert s3.get_object(Bucket=cb, Key="comp")["Body"].read() == p1 + p2
# A completion repeated after it succeeded answers the same object.
again_done = s3.complete_multipart_upload(Bucket=cb, Key="comp", UploadId=uid, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": again["ETag"]}, {"PartNumber": 2, "ETag": last["ETag"]}]})
assert again_done["ETag"] == done["ETag"], again_done

# --- Conditional writes: If-None-Match: * and If-Match on PUT and on completion.
wb = new_bucket(s3)
etag = s3.put_object(Bucket=wb, Key="k", Body=b"one", IfNoneMatch="*")["ETag"]
assert error(lambda: s3.put_object(Bucket=wb, Key="k", Body=b"two", IfNoneMatch="*")) == (412, "PreconditionFailed")
assert error(lambda: s3.put_object(Bucket=wb, Key="k", Body=b"two", IfMatch='"0123"')) == (412, "PreconditionFailed")
assert error(lambda: s3.put_object(Bucket=wb, Key="absent", Body=b"x", IfMatch=etag))[1] in ("NoSuchKey", "PreconditionFailed")
s3.put_object(Bucket=wb, Key="k", Body=b"two", IfMatch=etag)
assert s3.get_object(Bucket=wb, Key="k")["Body"].read() == b"two"
uid = s3.create_multipart_upload(Bucket=wb, Key="k")["UploadId"]
e = s3.upload_part(Bucket=wb, Key="k", UploadId=uid, PartNumber=1, Body=b"three")["ETag"]
assert error(lambda: s3.complete_multipart_upload(Bucket=wb, Key="k", UploadId=uid, IfNoneMatch="*",
                                                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})) == (
    412, "PreconditionFailed")
assert error(lambda: s3.complete_multipart_upload(Bucket=wb, Key="k", UploadId=uid, IfMatch=etag,
                                                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})) == (
    412, "PreconditionFailed")
current = s3.head_object(Bucket=wb, Key="k")["ETag"]
s3.complete_multipart_upload(Bucket=wb, Key="k", UploadId=uid, IfMatch=current,
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
assert s3.get_object(Bucket=wb, Key="k")["Body"].read() == b"three"
uid = s3.create_multipart_upload(Bucket=wb, Key="new")["UploadId"]
e = s3.upload_part(Bucket=wb, Key="new", UploadId=uid, PartNumber=1, Body=b"fresh")["ETag"]
s3.complete_multipart_upload(Bucket=wb, Key="new", UploadId=uid, IfNoneMatch="*",
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
assert s3.get_object(Bucket=wb, Key="new")["Body"].read() == b"fresh"

# --- Listing edge cases: an empty delimiter, max-keys=0, keys with control characters.
eb = new_bucket(s3)
for key in ["bar", "baz", "foo/x", "line\nbreak", "tab\tkey"]:
    s3.put_object(Bucket=eb, Key=key, Body=b"x")
out = s3.list_objects(Bucket=eb, Delimiter="")
assert "Delimiter" not in out and "CommonPrefixes" not in out and len(out["Contents"]) == 5, out
out = s3.list_objects_v2(Bucket=eb, Delimiter="")
assert "Delimiter" not in out and len(out["Contents"]) == 5, out
out = s3.list_objects_v2(Bucket=eb, MaxKeys=0)
assert out["KeyCount"] == 0 and out["IsTruncated"] is False and "Contents" not in out, out
out = s3.list_objects(Bucket=eb, MaxKeys=0)
assert out["IsTruncated"] is False and "Contents" not in out, out
# botocore asks for encoding-type=url and decodes: `\n` comes back as sent.
assert [o["Key"] for o in s3.list_objects_v2(Bucket=eb, Prefix="line")["Contents"]] == ["line\nbreak"]
assert [o["Key"] for o in s3.list_objects(Bucket=eb, Prefix="tab")["Contents"]] == ["tab\tkey"]
assert [o["Key"] for o in aws("list-objects-v2", "--bucket", eb, "--prefix", "line")["Contents"]] == ["line\nbreak"]
# Asked for explicitly, the encoding is left to the caller: `\n` is `%0A`.
out = s3.list_objects_v2(Bucket=eb, Prefix="line", EncodingType="url")
assert [o["Key"] for o in out["Contents"]] == ["line%0Abreak"], out

# --- Unicode metadata: a non-ASCII value (which botocore sends as UTF-8 when
# set as a header, and reads back as Latin-1) comes back as it was sent.
uni = client(ak, sk)
uni.meta.events.register("before-call.s3.PutObject", lambda params, **_: params["headers"].update(
    {"x-amz-meta-note": "h\u00e9llo w\u00f6rld"}))
uni.put_object(Bucket=eb, Key="meta", Body=b"x")
assert s3.head_object(Bucket=eb, Key="meta")["Metadata"] == {"note": "h\u00e9llo w\u00f6rld"}

# --- A PUT sent chunked (Transfer-Encoding: chunked, no Content-Length) to a
# presigned URL, as a streaming HTTP client does.
def chunks():
    for i in range(5):
        yield bytes([65 + i]) * (100 * 1024)


u = urllib.parse.urlparse(s3.generate_presigned_url("put_object", Params={"Bucket": eb, "Key": "streamed"}))
conn = http.client.HTTPConnection(host, timeout=30)
conn.request("PUT", u.path + "?" + u.query, body=chunks(), encode_chunked=True)
resp = conn.getresponse()
assert resp.status == 200, (resp.status, resp.read())
conn.close()
got = s3.get_object(Bucket=eb, Key="streamed")
assert got["ContentLength"] == 500 * 1024 and got["Body"].read() == b"".join(chunks())

# --- CORS: the configuration, preflights answered per rule, headers on answers.
xb = new_bucket(s3)
assert error(lambda: s3.get_bucket_cors(Bucket=xb)) == (404, "NoSuchCORSConfiguration")
st, _, _ = raw("OPTIONS", "/%s/obj" % xb, {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
assert st == 403, st
s3.put_bucket_cors(Bucket=xb, CORSConfiguration={"CORSRules": [
    {"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["GET", "PUT"], "AllowedHeaders": ["content-*"],
     "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["https://*.robots.example"], "AllowedMethods": ["GET"]},
]})
assert len(aws("get-bucket-cors", "--bucket", xb)["CORSRules"]) == 2
st, h, _ = raw("OPTIONS", "/%s/obj" % xb, {"Origin": "https://app.example", "Access-Control-Request-Method": "PUT",
                                          "Access-Control-Request-Headers": "Content-Type"})
assert st == 200 and h["access-control-allow-origin"] == "https://app.example", (st, h)
assert "PUT" in h["access-control-allow-methods"] and h["access-control-max-age"] == "600", h
assert "content-type" in h["access-control-allow-headers"].lower(), h
st, h, _ = raw("OPTIONS", "/%s/obj" % xb, {"Origin": "https://a.robots.example", "Access-Control-Request-Method": "GET"})
assert st == 200 and h["access-control-allow-origin"] == "https://a.robots.example", (st, h)
for origin, method, headers in [("https://a.robots.example", "PUT", ""), ("https://evil.example", "GET", ""),
                                ("https://app.example", "PUT", "x-custom")]:
    req = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        req["Access-Control-Request-Headers"] = headers
    st, h, _ = raw("OPTIONS", "/%s/obj" % xb, req)
    assert st == 403 and "access-control-allow-origin" not in h, (origin, method, st, h)
s3.put_object(Bucket=xb, Key="obj", Body=b"cors")
url = s3.generate_presigned_url("get_object", Params={"Bucket": xb, "Key": "obj"})
u = urllib.parse.urlparse(url)
st, h, body = raw("GET", u.path + "?" + u.query, {"Origin": "https://app.example"})
assert st == 200 and body == b"cors" and h["access-control-allow-origin"] == "https://app.example", (st, h)
assert h["access-control-expose-headers"] == "ETag", h
st, h, _ = raw("GET", u.path + "?" + u.query, {"Origin": "https://evil.example"})
assert st == 200 and "access-control-allow-origin" not in h, h
s3.delete_bucket_cors(Bucket=xb)
assert error(lambda: s3.get_bucket_cors(Bucket=xb)) == (404, "NoSuchCORSConfiguration")


# --- Presigned POST: an HTML form upload, its policy document checked.
def form(fields, file_body, filename="upload.txt"):
    boundary = "----roost" + uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (boundary, name, value)).encode()
    out += ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n" % (boundary, filename)).encode()
    out += file_body + ("\r\n--%s--\r\n" % boundary).encode()
    return out, "multipart/form-data; boundary=" + boundary


def post(bucket, fields, file_body, origin=None):
    body, ctype = form(fields, file_body)
    headers = {"Content-Type": ctype}
    if origin:
        headers["Origin"] = origin
    return raw("POST", "/" + bucket, headers, body)


pb = new_bucket(s3)
signed = s3.generate_presigned_post(pb, "uploads/${filename}", Fields={"acl": "private"}, Conditions=[
    {"acl": "private"}, ["starts-with", "$key", "uploads/"], ["content-length-range", 1, 1024 * 1024]], ExpiresIn=300)
st, h, body = post(pb, signed["fields"], b"from a form")
assert st == 204, (st, body)
assert s3.get_object(Bucket=pb, Key="uploads/upload.txt")["Body"].read() == b"from a form"
big = os.urandom(3 * MIB)
signed_big = s3.generate_presigned_post(pb, "big", Fields={"success_action_status": "201"}, Conditions=[
    {"success_action_status": "201"}, ["content-length-range", 0, 4 * MIB]])
st, _, body = post(pb, signed_big["fields"], big)
assert st == 201 and b"<Key>big</Key>" in body, (st, body)
assert s3.get_object(Bucket=pb, Key="big")["Body"].read() == big
# What the policy does not allow is refused and stores nothing.
st, _, body = post(pb, signed["fields"], os.urandom(MIB + 1))
assert st == 400 and b"EntityTooLarge" in body, (st, body)
st, _, body = post(pb, dict(signed["fields"], acl="public-read"), b"x")
assert st == 403 and b"AccessDenied" in body, (st, body)
st, _, body = post(pb, dict(signed["fields"], key="elsewhere/x"), b"x")
assert st == 403 and b"AccessDenied" in body, (st, body)
tampered = dict(signed["fields"], policy=base64.b64encode(json.dumps({
    "expiration": "2099-01-01T00:00:00Z", "conditions": [{"bucket": pb}]}).encode()).decode())
st, _, body = post(pb, tampered, b"x")
assert st == 403 and b"SignatureDoesNotMatch" in body, (st, body)
# A policy whose expiration is not an ISO 8601 UTC time is refused.
def policy_signed(doc):
    policy = base64.b64encode(json.dumps(doc).encode()).decode()
    return {"AWSAccessKeyId": ak, "policy": policy, "signature": base64.b64encode(
        hmac.new(sk.encode(), policy.encode(), hashlib.sha1).digest()).decode()}
for expiration, status in [("2099-01-01 00:00:00.5+00:00", 400), ("2099-01-01T00:00:00Z", 204)]:
    fields = dict(policy_signed({"expiration": expiration, "conditions": [{"bucket": pb}, ["starts-with", "$key", "dated"]]}),
                  key="dated")
    st, _, body = post(pb, fields, b"x")
    assert st == status, (expiration, st, body)
assert [o["Key"] for o in s3.list_objects_v2(Bucket=pb)["Contents"]] == ["big", "dated", "uploads/upload.txt"]
# A browser's form post gets the bucket's CORS headers.
s3.put_bucket_cors(Bucket=pb, CORSConfiguration={"CORSRules": [
    {"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["POST"]}]})
st, h, _ = post(pb, signed["fields"], b"cors form", origin="https://app.example")
assert st == 204 and h["access-control-allow-origin"] == "https://app.example", (st, h)

# --- Canned ACLs: private and public-read, on objects and on buckets.
cb2 = new_bucket(s3)
s3.put_object(Bucket=cb2, Key="private", Body=b"secret")
s3.put_object(Bucket=cb2, Key="public", Body=b"hello", ACL="public-read")
st, _, body = raw("GET", "/%s/public" % cb2)
assert st == 200 and body == b"hello", (st, body)
assert raw("GET", "/%s/private" % cb2)[0] == 403
assert raw("GET", "/%s" % cb2)[0] == 403
grants = s3.get_object_acl(Bucket=cb2, Key="public")["Grants"]
assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ" for g in grants), grants
s3.put_object_acl(Bucket=cb2, Key="public", ACL="private")
assert raw("GET", "/%s/public" % cb2)[0] == 403
assert error(lambda: other.get_object(Bucket=cb2, Key="private")) == (403, "AccessDenied")
s3.put_bucket_acl(Bucket=cb2, ACL="public-read")
st, _, body = raw("GET", "/%s" % cb2)
assert st == 200 and b"<Key>private</Key>" in body, (st, body)
assert raw("PUT", "/%s/anon" % cb2, body=b"x")[0] == 403
s3.put_bucket_acl(Bucket=cb2, ACL="private")
assert raw("GET", "/%s" % cb2)[0] == 403
# A public-read bucket at creation, through awscli.
pub = "conf-" + uuid.uuid4().hex[:12]
aws("create-bucket", "--bucket", pub, "--acl", "public-read")
assert raw("GET", "/%s" % pub)[0] == 200

# --- Signature V2 (boto3's signature_version="s3"), which signs a bucket
# request's resource as `/bucket/`: bucket and object operations.
def v2_client(secret):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=secret,
                        config=Config(signature_version="s3", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
v2 = v2_client(sk)
v2b = "conf-" + uuid.uuid4().hex[:12]
v2.create_bucket(Bucket=v2b)
v2.put_object(Bucket=v2b, Key="k", Body=b"signed v2")
assert [o["Key"] for o in v2.list_objects(Bucket=v2b)["Contents"]] == ["k"]
assert v2.get_object(Bucket=v2b, Key="k")["Body"].read() == b"signed v2"
assert error(lambda: v2_client("wrong" + sk[5:]).list_objects(Bucket=v2b))[0] == 403
v2.delete_object(Bucket=v2b, Key="k")
v2.delete_bucket(Bucket=v2b)

# --- What roost does not implement answers NotImplemented (501), never a 500.
for op in (lambda: s3.put_bucket_policy(Bucket=mine, Policy='{"Version": "2012-10-17", "Statement": []}'),
           lambda: s3.put_bucket_lifecycle_configuration(Bucket=mine, LifecycleConfiguration={"Rules": [
               {"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}]}),
           lambda: s3.put_object_lock_configuration(Bucket=mine, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}),
           lambda: s3.put_bucket_website(Bucket=mine, WebsiteConfiguration={"IndexDocument": {"Suffix": "i.html"}}),
           lambda: s3.put_object_acl(Bucket=cb2, Key="private", AccessControlPolicy={"Grants": [
               {"Grantee": {"ID": "someone", "Type": "CanonicalUser"}, "Permission": "READ"}],
               "Owner": {"ID": s3.get_bucket_acl(Bucket=cb2)["Owner"]["ID"]}}),
           lambda: s3.put_bucket_versioning(Bucket=mine, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"},
                                            MFA="serial 123456")):
    assert error(op) == (501, "NotImplemented"), error(op)
assert s3.get_object(Bucket=cb2, Key="private")["Body"].read() == b"secret"
print("ok")
