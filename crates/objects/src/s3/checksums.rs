//! Checksums a request declares (headers, algorithm, aws-chunked
//! trailers), their verification, and S3's composite checksum of parts.

use crate::record::Checksums;
use crate::store::Received;
use s3s::checksum::ChecksumHasher;
use s3s::dto::*;
use s3s::{s3_error, S3Result};

/// A hasher for the checksums a request names (headers or algorithm).
pub(super) fn hasher_for(
    algorithm: Option<&ChecksumAlgorithm>,
    given: &Checksums,
) -> S3Result<ChecksumHasher> {
    let mut hasher = ChecksumHasher::default();
    let mut enable = |name: &str| -> S3Result<()> {
        match name {
            "CRC32" => hasher.crc32 = Some(Default::default()),
            "CRC32C" => hasher.crc32c = Some(Default::default()),
            "SHA1" => hasher.sha1 = Some(Default::default()),
            "SHA256" => hasher.sha256 = Some(Default::default()),
            "CRC64NVME" => hasher.crc64nvme = Some(Default::default()),
            other => {
                return Err(s3_error!(
                    InvalidRequest,
                    "checksum algorithm {other} is not supported (CRC32, CRC32C, SHA1, SHA256, CRC64NVME are)"
                ))
            }
        }
        Ok(())
    };
    if let Some(algorithm) = algorithm {
        enable(&algorithm.as_str().to_ascii_uppercase())?;
    }
    for (name, value) in [
        ("CRC32", &given.crc32),
        ("CRC32C", &given.crc32c),
        ("SHA1", &given.sha1),
        ("SHA256", &given.sha256),
        ("CRC64NVME", &given.crc64nvme),
    ] {
        if value.is_some() {
            enable(name)?;
        }
    }
    Ok(hasher)
}

/// Checksums the client declared in headers, or in the trailer of an
/// aws-chunked body (known only once the body is read).
pub(super) fn declared_checksums(
    headers: Checksums,
    trailers: Option<s3s::TrailingHeaders>,
) -> S3Result<Checksums> {
    let mut declared = headers;
    let Some(trailers) = trailers.and_then(|t| t.take()) else {
        return Ok(declared);
    };
    for (name, slot) in [
        ("x-amz-checksum-crc32", &mut declared.crc32),
        ("x-amz-checksum-crc32c", &mut declared.crc32c),
        ("x-amz-checksum-sha1", &mut declared.sha1),
        ("x-amz-checksum-sha256", &mut declared.sha256),
        ("x-amz-checksum-crc64nvme", &mut declared.crc64nvme),
    ] {
        if let Some(value) = trailers.get(name) {
            let value = value
                .to_str()
                .map_err(|_| s3_error!(InvalidArgument, "{name} trailer is not text"))?;
            *slot = Some(value.to_string());
        }
    }
    Ok(declared)
}

/// Verifies the received body against Content-MD5 and every declared
/// checksum; the computed checksums are what gets stored.
pub(super) fn verify(
    received: &Received,
    content_md5: Option<&str>,
    declared: &Checksums,
) -> S3Result<Checksums> {
    use base64::Engine as _;
    if let Some(md5) = content_md5 {
        let given = base64::engine::general_purpose::STANDARD
            .decode(md5)
            .map_err(|_| s3_error!(InvalidDigest, "Content-MD5 is not base64"))?;
        if given != received.md5 {
            return Err(s3_error!(BadDigest, "Content-MD5 does not match the body"));
        }
    }
    let computed = Checksums::from(received.checksum.clone());
    for (name, want, got) in [
        ("CRC32", &declared.crc32, &computed.crc32),
        ("CRC32C", &declared.crc32c, &computed.crc32c),
        ("SHA1", &declared.sha1, &computed.sha1),
        ("SHA256", &declared.sha256, &computed.sha256),
        ("CRC64NVME", &declared.crc64nvme, &computed.crc64nvme),
    ] {
        if let Some(want) = want {
            if Some(want) != got.as_ref() {
                return Err(s3_error!(
                    BadDigest,
                    "the {name} checksum you specified did not match the calculated checksum"
                ));
            }
        }
    }
    Ok(computed)
}

pub(super) fn checksums_of(
    input_crc32: Option<String>,
    crc32c: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
    crc64: Option<String>,
) -> Checksums {
    Checksums {
        crc32: input_crc32,
        crc32c,
        sha1,
        sha256,
        crc64nvme: crc64,
    }
}

/// S3's composite checksum of a multipart object: the checksum of the
/// parts' binary checksums, then `-<parts>`.
pub(super) fn composite(values: &[Option<String>], algorithm: &str) -> Option<String> {
    use base64::Engine as _;
    use s3s::crypto::Checksum as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut joined = Vec::new();
    for value in values {
        joined.extend(engine.decode(value.as_ref()?).ok()?);
    }
    let digest: Vec<u8> = match algorithm {
        "CRC32" => s3s::crypto::Crc32::checksum(&joined).as_ref().to_vec(),
        "CRC32C" => s3s::crypto::Crc32c::checksum(&joined).as_ref().to_vec(),
        "SHA1" => s3s::crypto::Sha1::checksum(&joined).as_ref().to_vec(),
        "SHA256" => s3s::crypto::Sha256::checksum(&joined).as_ref().to_vec(),
        _ => return None,
    };
    Some(format!("{}-{}", engine.encode(digest), values.len()))
}
