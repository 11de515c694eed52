"""Real S3 clients (boto3, awscli, plain HTTP) against roost's S3 endpoint.

Usage: client.py ENDPOINT ACCESS_KEY SECRET_KEY BUCKET OTHER_ACCESS OTHER_SECRET
The first key pair owns BUCKET; the second belongs to another app.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, ak, sk, bucket, other_ak, other_sk = sys.argv[1:7]


def client(access, secret, style="path", url=None):
    return boto3.client(
        "s3", endpoint_url=url or endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
        region_name="auto", config=Config(s3={"addressing_style": style}, retries={"max_attempts": 1}))


def code(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


s3 = client(ak, sk)
s3.head_bucket(Bucket=bucket)
assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]

# Keys that must map safely: slashes, spaces, unicode, dot segments, escapes.
keys = ["a/b", "a%2Fb", "../escape", "a/../b", "sp ace/ü ñ", "dir/sub/x.txt", "dir/y", "top"]
for k in keys:
    s3.put_object(Bucket=bucket, Key=k, Body=k.encode(), ContentType="text/plain",
                  Metadata={"origin": "test"}, ContentDisposition="inline")
for k in keys:
    got = s3.get_object(Bucket=bucket, Key=k)
    assert got["Body"].read() == k.encode(), k
    assert got["Metadata"] == {"origin": "test"}
    assert got["ContentType"] == "text/plain"
    assert got["ContentDisposition"] == "inline"
    assert got["ETag"] == '"%s"' % hashlib.md5(k.encode()).hexdigest()

# Listing: order, delimiter, pagination, start-after, url encoding.
listed = s3.list_objects_v2(Bucket=bucket)
assert [o["Key"] for o in listed["Contents"]] == sorted(keys, key=lambda k: k.encode()), listed
d = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
assert [p["Prefix"] for p in d["CommonPrefixes"]] == ["../", "a/", "dir/", "sp ace/"], d
assert [o["Key"] for o in d["Contents"]] == ["a%2Fb", "top"]
d = s3.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
assert [o["Key"] for o in d["Contents"]] == ["dir/y"] and d["CommonPrefixes"] == [{"Prefix": "dir/sub/"}]
seen, token = [], None
while True:
    kw = {"ContinuationToken": token} if token else {}
    page = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, Delimiter="/", **kw)
    seen += [o["Key"] for o in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    if not page["IsTruncated"]:
        break
    token = page["NextContinuationToken"]
assert sorted(seen) == sorted(["../", "a/", "dir/", "sp ace/", "a%2Fb", "top"]), seen
assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, StartAfter="dir/y")["Contents"]][0] == "sp ace/ü ñ"
v1 = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=1)
assert v1["IsTruncated"] and v1["NextMarker"] == "../"
versions = s3.list_object_versions(Bucket=bucket, Prefix="dir/")
assert [(v["Key"], v["VersionId"]) for v in versions["Versions"]] == [("dir/sub/x.txt", "null"), ("dir/y", "null")]

# Ranges and conditionals.
s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=2-4")["Body"].read() == b"234"
assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=-3")["Body"].read() == b"789"
assert code(lambda: s3.get_object(Bucket=bucket, Key="r", Range="bytes=20-30")) == "InvalidRange"
etag = s3.head_object(Bucket=bucket, Key="r")["ETag"]
assert code(lambda: s3.get_object(Bucket=bucket, Key="r", IfMatch='"nope"')) == "PreconditionFailed"
assert code(lambda: s3.get_object(Bucket=bucket, Key="r", IfNoneMatch=etag)) == "304"
assert s3.get_object(Bucket=bucket, Key="r", IfMatch=etag)["Body"].read() == b"0123456789"
assert code(lambda: s3.put_object(Bucket=bucket, Key="r", Body=b"x", IfNoneMatch="*")) == "PreconditionFailed"

# Checksums: every algorithm verified and returned.
try:
    import awscrt  # noqa: F401  (botocore computes CRC32C only with it)
    algorithms = ["CRC32", "CRC32C", "SHA1", "SHA256"]
except ImportError:
    algorithms = ["CRC32", "SHA1", "SHA256"]
for alg in algorithms:
    out = s3.put_object(Bucket=bucket, Key="sum-" + alg, Body=b"hello checksum", ChecksumAlgorithm=alg)
    assert "Checksum" + alg in out, out
    got = s3.get_object(Bucket=bucket, Key="sum-" + alg, ChecksumMode="ENABLED")
    assert got["Checksum" + alg] == out["Checksum" + alg]
assert code(lambda: s3.put_object(Bucket=bucket, Key="bad", Body=b"x", ChecksumSHA256="AAAA")) in ("BadDigest", "InvalidRequest")

# Copy with metadata directive.
s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "top"})
assert s3.head_object(Bucket=bucket, Key="copy")["Metadata"] == {"origin": "test"}
s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "top"},
               MetadataDirective="REPLACE", Metadata={"new": "1"})
assert s3.head_object(Bucket=bucket, Key="copy")["Metadata"] == {"new": "1"}
assert code(lambda: s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "copy"})) == "InvalidRequest"

# Multipart: too-small parts, list, copy part, complete, -N ETag.
mp = s3.create_multipart_upload(Bucket=bucket, Key="mp")
uid = mp["UploadId"]
p1 = os.urandom(5 * 1024 * 1024)
e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=p1)["ETag"]
e2 = s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=2,
                         CopySource={"Bucket": bucket, "Key": "r"}, CopySourceRange="bytes=0-4")["CopyPartResult"]["ETag"]
assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)["Parts"]] == [1, 2]
assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [uid]
s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
head = s3.head_object(Bucket=bucket, Key="mp")
assert head["ETag"].endswith('-2"') and head["ContentLength"] == len(p1) + 5
assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == p1 + b"01234"
small = s3.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
f1 = s3.upload_part(Bucket=bucket, Key="small", UploadId=small, PartNumber=1, Body=b"a")["ETag"]
f2 = s3.upload_part(Bucket=bucket, Key="small", UploadId=small, PartNumber=2, Body=b"b")["ETag"]
assert code(lambda: s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=small, MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": f1}, {"PartNumber": 2, "ETag": f2}]})) == "EntityTooSmall"
s3.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=small)
assert code(lambda: s3.list_parts(Bucket=bucket, Key="small", UploadId=small)) == "NoSuchUpload"

# Large file through awscli (multipart, 8 MiB parts) and back.
with tempfile.TemporaryDirectory() as tmp:
    src, dst = os.path.join(tmp, "big"), os.path.join(tmp, "back")
    with open(src, "wb") as f:
        f.write(os.urandom(40 * 1024 * 1024 + 123))
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk, AWS_DEFAULT_REGION="auto")
    aws = ["aws", "--endpoint-url", endpoint, "s3"]
    subprocess.run(aws + ["cp", src, "s3://%s/big/file" % bucket], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(aws + ["cp", "s3://%s/big/file" % bucket, dst], check=True, env=env, stdout=subprocess.DEVNULL)
    assert open(src, "rb").read() == open(dst, "rb").read()
    ls = subprocess.run(aws + ["ls", "s3://%s/" % bucket], check=True, env=env, capture_output=True, text=True).stdout
    assert "PRE big/" in ls and "PRE dir/" in ls, ls
assert s3.head_object(Bucket=bucket, Key="big/file")["ETag"].rstrip('"').split("-")[-1].isdigit()

# Presigned GET and PUT with a plain HTTP client.
url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre"}, ExpiresIn=300)
urllib.request.urlopen(urllib.request.Request(url, data=b"presigned", method="PUT")).read()
url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre"}, ExpiresIn=300)
assert urllib.request.urlopen(url).read() == b"presigned"
try:
    urllib.request.urlopen(url.replace("/pre?", "/prf?"))
    raise AssertionError("tampered presigned URL accepted")
except urllib.error.HTTPError as e:
    assert e.code == 403 and b"SignatureDoesNotMatch" in e.read()

# Virtual-host style: BUCKET.localhost resolves to loopback only on some
# hosts, so send the Host header by hand through a path-style socket.
vh = client(ak, sk, "virtual", endpoint.replace("127.0.0.1", "localhost"))
host = endpoint.split("//", 1)[1]
vurl = vh.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre"})
assert vurl.startswith("http://%s.localhost:" % bucket), vurl
vreq = urllib.request.Request(vurl.replace("%s.localhost" % bucket, "127.0.0.1", 1),
                              headers={"Host": "%s.localhost:%s" % (bucket, host.rsplit(":", 1)[1])})
assert urllib.request.urlopen(vreq).read() == b"presigned"

# Access control: another app's key pair gets AccessDenied; bad secret fails.
other = client(other_ak, other_sk)
assert code(lambda: other.get_object(Bucket=bucket, Key="top")) == "AccessDenied"
assert code(lambda: other.put_object(Bucket=bucket, Key="x", Body=b"x")) == "AccessDenied"
assert bucket not in [b["Name"] for b in other.list_buckets()["Buckets"]]
assert code(lambda: other.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "top"})) == "AccessDenied"
assert code(lambda: client(ak, "wrong").get_object(Bucket=bucket, Key="top")) == "SignatureDoesNotMatch"
assert code(lambda: s3.get_object(Bucket=bucket, Key="missing")) == "NoSuchKey"
assert code(lambda: s3.get_object(Bucket="no-such-bucket-x", Key="k")) in ("NoSuchBucket", "AccessDenied")

# Buckets: not empty, then delete everything, then delete.
assert code(lambda: s3.delete_bucket(Bucket=bucket)) == "BucketNotEmpty"
s3.create_bucket(Bucket=bucket + "-two")
assert s3.get_bucket_location(Bucket=bucket + "-two").get("LocationConstraint") in (None, "")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
assert len(out["Deleted"]) == len(keys)
assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
s3.delete_bucket(Bucket=bucket + "-two")
assert code(lambda: s3.get_bucket_acl(Bucket=bucket)) == "NotImplemented"
print("ok")
