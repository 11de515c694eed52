"""Real S3 clients (boto3, awscli, plain HTTP) against roost's S3 endpoint.

Usage: client.py ENDPOINT ACCESS_KEY SECRET_KEY BUCKET OTHER_ACCESS OTHER_SECRET
The first key pair owns BUCKET; the second belongs to another app.
"""
import base64
import contextlib
import datetime
import hashlib
import hmac
import http.client
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zlib

import boto3
import botocore.httpchecksum
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


def status(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]
    return 200


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    """CRC32C (Castagnoli) as S3's x-amz-checksum-crc32c carries it (botocore needs awscrt for it)."""
    c = 0xFFFFFFFF
    for b in data:
        c = CRC32C_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return base64.b64encode((c ^ 0xFFFFFFFF).to_bytes(4, "big")).decode()


def crc32(data):
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@contextlib.contextmanager
def trailing_checksums():
    """botocore sends aws-chunked bodies with a trailing checksum
    (STREAMING-UNSIGNED-PAYLOAD-TRAILER) only over TLS; make it believe the
    endpoint is https so that its real encoder runs over plain HTTP."""
    real = botocore.httpchecksum.urlparse
    botocore.httpchecksum.urlparse = lambda url: real(url)._replace(scheme="https")
    try:
        yield
    finally:
        botocore.httpchecksum.urlparse = real


def signed_chunked_put(access, secret, key, data, chunk=64 * 1024, trailer=None, tamper=False):
    """PUT with a SigV4-signed aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD,
    or ...-TRAILER with a signed trailing checksum), as the Java and Go SDKs
    send over plain HTTP. Returns (status, body)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz = now.strftime("%Y%m%dT%H%M%SZ")
    scope = "%s/auto/s3/aws4_request" % amz[:8]
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
    host = endpoint.split("//", 1)[1]
    path = "/%s/%s" % (bucket, urllib.parse.quote(key, safe="/~"))
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    trailer_block = b""
    if trailer:
        trailer_block = ("%s:%s\r\n" % trailer).encode() + b"x-amz-trailer-signature:" + b"0" * 64 + b"\r\n"
    length = sum(len("%x;chunk-signature=\r\n" % len(p)) + 64 + len(p) + (2 if p else 0) for p in pieces)
    length += len(trailer_block) + 2
    headers = {"host": host, "x-amz-date": amz, "x-amz-content-sha256": mode, "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(data)), "content-length": str(length)}
    if trailer:
        headers["x-amz-trailer"] = trailer[0]
    names = sorted(headers)
    canonical = "\n".join(["PUT", path, "", "".join("%s:%s\n" % (n, headers[n]) for n in names),
                           ";".join(names), mode])

    def mac(k, msg):
        return hmac.new(k, msg.encode(), hashlib.sha256).digest()

    signing = ("AWS4" + secret).encode()
    for part in (amz[:8], "auto", "s3", "aws4_request"):
        signing = mac(signing, part)

    def sign(kind, prev, digest):
        return hmac.new(signing, "\n".join([kind, amz, scope] + ([prev] if prev else []) + [digest]).encode(),
                        hashlib.sha256).hexdigest()

    seed = sign("AWS4-HMAC-SHA256", None, hashlib.sha256(canonical.encode()).hexdigest())
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        access, scope, ";".join(names), seed)
    empty = hashlib.sha256(b"").hexdigest()
    body, prev = b"", seed
    for p in pieces:
        prev = sign("AWS4-HMAC-SHA256-PAYLOAD", prev, empty + "\n" + hashlib.sha256(p).hexdigest())
        sent = p[:-1] + bytes([p[-1] ^ 1]) if tamper and p else p
        body += b"%x;chunk-signature=%s\r\n" % (len(p), prev.encode()) + sent + (b"\r\n" if p else b"")
    if trailer:
        canonical_trailer = "%s:%s\n" % trailer
        tsig = sign("AWS4-HMAC-SHA256-TRAILER", prev, hashlib.sha256(canonical_trailer.encode()).hexdigest())
        body += ("%s:%s\r\nx-amz-trailer-signature:%s\r\n" % (trailer[0], trailer[1], tsig)).encode()
    body += b"\r\n"
    assert len(body) == length, (len(body), length)
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.request("PUT", path, body=body, headers=headers)
    resp = conn.getresponse()
    out = (resp.status, resp.read())
    conn.close()
    return out


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

# Single deletes, HEAD and DELETE of what is not there.
s3.put_object(Bucket=bucket, Key="doomed", Body=b"x")
assert s3.delete_object(Bucket=bucket, Key="doomed")["ResponseMetadata"]["HTTPStatusCode"] == 204
assert code(lambda: s3.get_object(Bucket=bucket, Key="doomed")) == "NoSuchKey"
assert status(lambda: s3.head_object(Bucket=bucket, Key="doomed")) == 404
assert s3.delete_object(Bucket=bucket, Key="doomed")["ResponseMetadata"]["HTTPStatusCode"] == 204

# Stored headers: every content header comes back as it was put.
expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
s3.put_object(Bucket=bucket, Key="headers", Body=b"gz", ContentType="application/x-thing",
              ContentEncoding="gzip", ContentDisposition='attachment; filename="a b.txt"',
              ContentLanguage="de", CacheControl="max-age=60", Expires=expires,
              Metadata={"Mixed-Case": "Value with spaces", "second": "2"})
got = s3.head_object(Bucket=bucket, Key="headers")
assert (got["ContentType"], got["ContentEncoding"], got["ContentDisposition"], got["ContentLanguage"],
        got["CacheControl"]) == ("application/x-thing", "gzip", 'attachment; filename="a b.txt"', "de",
                                 "max-age=60"), got
assert got["Expires"] == expires, got
assert got["Metadata"] == {"mixed-case": "Value with spaces", "second": "2"}, got["Metadata"]
s3.delete_object(Bucket=bucket, Key="headers")

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
assert all(v["IsLatest"] for v in versions["Versions"]) and not versions.get("DeleteMarkers")
assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
# v1 pages by Marker (no NextMarker without a delimiter: the last key is the marker).
seen, marker = [], ""
while True:
    page = s3.list_objects(Bucket=bucket, Prefix="a", MaxKeys=1, Marker=marker)
    seen += [o["Key"] for o in page.get("Contents", [])]
    if not page["IsTruncated"]:
        break
    marker = seen[-1]
assert seen == ["a%2Fb", "a/../b", "a/b"], seen
# encoding-type=url asked for explicitly: botocore leaves the answer as sent.
raw = s3.list_objects_v2(Bucket=bucket, Prefix="sp ace/", EncodingType="url")
assert [o["Key"] for o in raw["Contents"]] == ["sp%20ace/%C3%BC%20%C3%B1"] and raw["Prefix"] == "sp%20ace/", raw
raw = s3.list_objects(Bucket=bucket, Delimiter=" ", EncodingType="url")
assert [p["Prefix"] for p in raw["CommonPrefixes"]] == ["sp%20"] and raw["Delimiter"] == "%20", raw
raw = s3.list_object_versions(Bucket=bucket, Prefix="sp ace/", EncodingType="url")
assert [v["Key"] for v in raw["Versions"]] == ["sp%20ace/%C3%BC%20%C3%B1"], raw
assert code(lambda: s3.list_objects_v2(Bucket=bucket, EncodingType="base64")) == "InvalidArgument"
assert code(lambda: s3.list_objects_v2(Bucket=bucket, ContinuationToken="not-a-token")) == "InvalidArgument"

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
modified = s3.head_object(Bucket=bucket, Key="r")["LastModified"]
day = datetime.timedelta(days=1)
assert code(lambda: s3.get_object(Bucket=bucket, Key="r", IfModifiedSince=modified)) == "304"
assert code(lambda: s3.get_object(Bucket=bucket, Key="r", IfModifiedSince=modified + day)) == "304"
assert status(lambda: s3.head_object(Bucket=bucket, Key="r", IfModifiedSince=modified)) == 304
assert s3.get_object(Bucket=bucket, Key="r", IfModifiedSince=modified - day)["Body"].read() == b"0123456789"
assert code(lambda: s3.get_object(Bucket=bucket, Key="r", IfUnmodifiedSince=modified - day)) == "PreconditionFailed"
assert status(lambda: s3.head_object(Bucket=bucket, Key="r", IfUnmodifiedSince=modified - day)) == 412
assert s3.get_object(Bucket=bucket, Key="r", IfUnmodifiedSince=modified)["Body"].read() == b"0123456789"
# If-Match decides over If-Unmodified-Since, If-None-Match over If-Modified-Since (RFC 9110 as S3 applies it).
assert s3.get_object(Bucket=bucket, Key="r", IfMatch=etag, IfUnmodifiedSince=modified - day)["ContentLength"] == 10
assert s3.get_object(Bucket=bucket, Key="r", IfNoneMatch='"other"', IfModifiedSince=modified + day)["ContentLength"] == 10
assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=7-")["Body"].read() == b"789"
assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=7-")["ContentRange"] == "bytes 7-9/10"
assert status(lambda: s3.get_object(Bucket=bucket, Key="r", Range="bytes=10-")) == 416

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
# CRC32C computed here (botocore computes it only with awscrt) and sent as a header.
data = os.urandom(100 * 1024)
out = s3.put_object(Bucket=bucket, Key="sum-crc32c-header", Body=data, ChecksumCRC32C=crc32c(data))
assert out["ChecksumCRC32C"] == crc32c(data), out
got = s3.head_object(Bucket=bucket, Key="sum-crc32c-header", ChecksumMode="ENABLED")
assert got["ChecksumCRC32C"] == crc32c(data), got
assert code(lambda: s3.put_object(Bucket=bucket, Key="bad", Body=data, ChecksumCRC32C=crc32c(b"other"))) == "BadDigest"
assert code(lambda: s3.head_object(Bucket=bucket, Key="bad")) == "404"

# aws-chunked bodies: botocore's unsigned trailer encoding (its TLS default),
# and signed chunks with and without a signed trailer (Java/Go SDKs over HTTP).
data = os.urandom(300 * 1024 + 7)
with trailing_checksums():
    out = s3.put_object(Bucket=bucket, Key="chunked-unsigned", Body=data)
    assert out["ChecksumCRC32"] == crc32(data), out
    s3.put_object(Bucket=bucket, Key="chunked-unsigned-sha1", Body=data, ChecksumAlgorithm="SHA1")
assert s3.get_object(Bucket=bucket, Key="chunked-unsigned")["Body"].read() == data
got = s3.get_object(Bucket=bucket, Key="chunked-unsigned-sha1", ChecksumMode="ENABLED")
assert got["ChecksumSHA1"] == base64.b64encode(hashlib.sha1(data).digest()).decode() and got["Body"].read() == data
st, body = signed_chunked_put(ak, sk, "chunked-signed", data)
assert st == 200, body
assert s3.get_object(Bucket=bucket, Key="chunked-signed")["Body"].read() == data
assert s3.head_object(Bucket=bucket, Key="chunked-signed")["ETag"] == '"%s"' % hashlib.md5(data).hexdigest()
st, body = signed_chunked_put(ak, sk, "chunked-trailer", data, trailer=("x-amz-checksum-crc32c", crc32c(data)))
assert st == 200, body
got = s3.get_object(Bucket=bucket, Key="chunked-trailer", ChecksumMode="ENABLED")
assert got["ChecksumCRC32C"] == crc32c(data) and got["Body"].read() == data
st, body = signed_chunked_put(ak, sk, "chunked-bad-trailer", data, trailer=("x-amz-checksum-crc32c", crc32c(b"x")))
assert st == 400 and b"BadDigest" in body, (st, body)
st, body = signed_chunked_put(ak, sk, "chunked-tampered", data, tamper=True)
assert st == 403 and b"SignatureDoesNotMatch" in body, (st, body)
for k in ("chunked-bad-trailer", "chunked-tampered"):
    assert status(lambda: s3.head_object(Bucket=bucket, Key=k)) == 404, k

# Copy with metadata directive.
s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "top"})
assert s3.head_object(Bucket=bucket, Key="copy")["Metadata"] == {"origin": "test"}
assert s3.head_object(Bucket=bucket, Key="copy")["ContentType"] == "text/plain"
s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "top"},
               MetadataDirective="REPLACE", Metadata={"new": "1"}, ContentType="application/json")
got = s3.head_object(Bucket=bucket, Key="copy")
assert got["Metadata"] == {"new": "1"} and got["ContentType"] == "application/json", got
assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"top"
s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "copy"},
               MetadataDirective="REPLACE", Metadata={"in-place": "yes"})
assert s3.head_object(Bucket=bucket, Key="copy")["Metadata"] == {"in-place": "yes"}
assert code(lambda: s3.copy_object(Bucket=bucket, Key="c2", CopySource={"Bucket": bucket, "Key": "top"},
                                   CopySourceIfMatch='"nope"')) == "PreconditionFailed"
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
md5s = hashlib.md5(p1).digest() + hashlib.md5(b"01234").digest()
assert head["ETag"] == '"%s-2"' % hashlib.md5(md5s).hexdigest(), head
assert head["ContentLength"] == len(p1) + 5
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
assert code(lambda: s3.get_object(Bucket="no-such-bucket-x", Key="k")) == "NoSuchBucket"
assert code(lambda: s3.list_objects_v2(Bucket="no-such-bucket-x")) == "NoSuchBucket"
assert status(lambda: s3.head_bucket(Bucket="no-such-bucket-x")) == 404

# Operations roost does not implement answer NotImplemented (501), and the
# server goes on serving.
for op in (lambda: s3.put_bucket_policy(Bucket=bucket, Policy='{"Version": "2012-10-17", "Statement": []}'),
           lambda: s3.get_bucket_encryption(Bucket=bucket),
           lambda: s3.get_bucket_website(Bucket=bucket)):
    assert code(op) == "NotImplemented" and status(op) == 501
assert s3.get_object(Bucket=bucket, Key="top")["Body"].read() == b"top"

# Buckets: not empty, then delete everything, then delete.
assert code(lambda: s3.delete_bucket(Bucket=bucket)) == "BucketNotEmpty"
assert status(lambda: s3.delete_bucket(Bucket=bucket)) == 409
s3.create_bucket(Bucket=bucket + "-two")
assert s3.get_bucket_location(Bucket=bucket + "-two").get("LocationConstraint") in (None, "")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": keys[0]}], "Quiet": True})
assert not quiet.get("Deleted") and not quiet.get("Errors"), quiet
out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
assert len(out["Deleted"]) == len(keys)
assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
s3.delete_bucket(Bucket=bucket + "-two")
assert status(lambda: s3.head_bucket(Bucket=bucket + "-two")) == 404
print("ok")
