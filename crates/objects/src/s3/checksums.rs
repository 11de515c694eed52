//! Checksums a request declares (headers, algorithm, aws-chunked
//! trailers), their verification, and the checksum of a multipart object
//! made from its parts' checksums: COMPOSITE (a checksum of the parts'
//! checksums, `-<parts>` appended) or FULL_OBJECT (the CRC of the whole
//! body, combined from the parts' CRCs without reading the body again).

use crate::record::{Checksums, PartInfo};
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
    if let Some(algorithm) = algorithm {
        enable(&mut hasher, Algorithm::parse(algorithm.as_str())?);
    }
    for algorithm in Algorithm::ALL {
        if algorithm.of(given).is_some() {
            enable(&mut hasher, algorithm);
        }
    }
    Ok(hasher)
}

/// Makes `hasher` compute `algorithm` too.
pub(super) fn enable(hasher: &mut ChecksumHasher, algorithm: Algorithm) {
    match algorithm {
        Algorithm::Crc32 => hasher.crc32 = Some(Default::default()),
        Algorithm::Crc32c => hasher.crc32c = Some(Default::default()),
        Algorithm::Sha1 => hasher.sha1 = Some(Default::default()),
        Algorithm::Sha256 => hasher.sha256 = Some(Default::default()),
        Algorithm::Crc64Nvme => hasher.crc64nvme = Some(Default::default()),
    }
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

/// `x-amz-checksum-type` values.
pub(super) const COMPOSITE: &str = "COMPOSITE";
pub(super) const FULL_OBJECT: &str = "FULL_OBJECT";

/// The checksum algorithms S3 defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Algorithm {
    Crc32,
    Crc32c,
    Sha1,
    Sha256,
    Crc64Nvme,
}

impl Algorithm {
    pub(super) const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Sha1,
        Algorithm::Sha256,
        Algorithm::Crc64Nvme,
    ];

    pub(super) fn parse(name: &str) -> S3Result<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "checksum algorithm {name} is not supported (CRC32, CRC32C, SHA1, SHA256, CRC64NVME are)"
                )
            })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Crc64Nvme => "CRC64NVME",
        }
    }

    pub(super) fn of(self, sums: &Checksums) -> &Option<String> {
        match self {
            Algorithm::Crc32 => &sums.crc32,
            Algorithm::Crc32c => &sums.crc32c,
            Algorithm::Sha1 => &sums.sha1,
            Algorithm::Sha256 => &sums.sha256,
            Algorithm::Crc64Nvme => &sums.crc64nvme,
        }
    }

    pub(super) fn set(self, sums: &mut Checksums, value: Option<String>) {
        match self {
            Algorithm::Crc32 => sums.crc32 = value,
            Algorithm::Crc32c => sums.crc32c = value,
            Algorithm::Sha1 => sums.sha1 = value,
            Algorithm::Sha256 => sums.sha256 = value,
            Algorithm::Crc64Nvme => sums.crc64nvme = value,
        }
    }

    /// The reflected polynomial and width of a CRC (full-object checksums
    /// exist for CRCs only).
    fn crc(self) -> Option<(u64, u32)> {
        match self {
            Algorithm::Crc32 => Some((0xEDB8_8320, 32)),
            Algorithm::Crc32c => Some((0x82F6_3B78, 32)),
            Algorithm::Crc64Nvme => Some((0x9A6C_9329_AC4B_C9B5, 64)),
            Algorithm::Sha1 | Algorithm::Sha256 => None,
        }
    }

    /// The checksum type a multipart upload gets when it names none.
    pub(super) fn default_type(self) -> &'static str {
        match self {
            Algorithm::Crc64Nvme => FULL_OBJECT,
            _ => COMPOSITE,
        }
    }

    /// Refuses the combinations S3 refuses: FULL_OBJECT for a hash,
    /// COMPOSITE for CRC64NVME.
    pub(super) fn check_type(self, checksum_type: &str) -> S3Result<()> {
        let ok = match checksum_type {
            FULL_OBJECT => self.crc().is_some(),
            COMPOSITE => self != Algorithm::Crc64Nvme,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(s3_error!(
                InvalidRequest,
                "checksum type {checksum_type} is not supported with {} (FULL_OBJECT needs CRC32, CRC32C or CRC64NVME; COMPOSITE needs one of the others)",
                self.name()
            ))
        }
    }
}

/// `x^(8·len)` applied to a CRC register: the GF(2) matrix arithmetic of
/// zlib's `crc32_combine`, for any reflected CRC whose initial value and
/// final xor are all ones (CRC32, CRC32C and CRC64NVME all are).
fn gf2_times(matrix: &[u64], mut vector: u64) -> u64 {
    let mut sum = 0;
    let mut row = 0;
    while vector != 0 {
        if vector & 1 == 1 {
            sum ^= matrix[row];
        }
        vector >>= 1;
        row += 1;
    }
    sum
}

fn gf2_square(matrix: &[u64]) -> Vec<u64> {
    matrix.iter().map(|&row| gf2_times(matrix, row)).collect()
}

/// The CRC of A‖B from the CRC of A, the CRC of B and the length of B.
fn crc_combine(poly: u64, width: u32, crc_a: u64, crc_b: u64, mut len_b: u64) -> u64 {
    if len_b == 0 {
        return crc_a;
    }
    let width = width as usize;
    // The operator of one zero bit, then of two and four.
    let mut odd: Vec<u64> = std::iter::once(poly)
        .chain((1..width).map(|n| 1u64 << (n - 1)))
        .collect();
    let mut even = gf2_square(&odd);
    odd = gf2_square(&even);
    let mut crc = crc_a;
    loop {
        even = gf2_square(&odd);
        if len_b & 1 == 1 {
            crc = gf2_times(&even, crc);
        }
        len_b >>= 1;
        if len_b == 0 {
            break;
        }
        odd = gf2_square(&even);
        if len_b & 1 == 1 {
            crc = gf2_times(&odd, crc);
        }
        len_b >>= 1;
        if len_b == 0 {
            break;
        }
    }
    crc ^ crc_b
}

/// The checksum of a multipart object from its parts' checksums, as
/// `checksum_type` says: `None` when a part lacks one (or the type does
/// not apply to the algorithm).
pub(super) fn multipart_checksum(
    algorithm: Algorithm,
    checksum_type: &str,
    parts: &[PartInfo],
) -> Option<String> {
    use base64::Engine as _;
    use s3s::crypto::Checksum as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut decoded = Vec::with_capacity(parts.len());
    for part in parts {
        decoded.push(
            engine
                .decode(algorithm.of(&part.checksums).as_ref()?)
                .ok()?,
        );
    }
    if checksum_type == FULL_OBJECT {
        let (poly, width) = algorithm.crc()?;
        let mut crc: Option<u64> = None;
        for (value, part) in decoded.iter().zip(parts) {
            let mut bytes = [0u8; 8];
            let n = value.len();
            if n * 8 != width as usize {
                return None;
            }
            bytes[8 - n..].copy_from_slice(value);
            let part_crc = u64::from_be_bytes(bytes);
            crc = Some(match crc {
                None => part_crc,
                Some(acc) => crc_combine(poly, width, acc, part_crc, part.size),
            });
        }
        let crc = crc?;
        let bytes = crc.to_be_bytes();
        return Some(engine.encode(&bytes[8 - width as usize / 8..]));
    }
    let joined: Vec<u8> = decoded.concat();
    let digest: Vec<u8> = match algorithm {
        Algorithm::Crc32 => s3s::crypto::Crc32::checksum(&joined).as_ref().to_vec(),
        Algorithm::Crc32c => s3s::crypto::Crc32c::checksum(&joined).as_ref().to_vec(),
        Algorithm::Sha1 => s3s::crypto::Sha1::checksum(&joined).as_ref().to_vec(),
        Algorithm::Sha256 => s3s::crypto::Sha256::checksum(&joined).as_ref().to_vec(),
        Algorithm::Crc64Nvme => return None,
    };
    Some(format!("{}-{}", engine.encode(digest), parts.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::crypto::Checksum as _;

    fn crc_of(algorithm: Algorithm, data: &[u8]) -> u64 {
        let bytes: Vec<u8> = match algorithm {
            Algorithm::Crc32 => s3s::crypto::Crc32::checksum(data).as_ref().to_vec(),
            Algorithm::Crc32c => s3s::crypto::Crc32c::checksum(data).as_ref().to_vec(),
            Algorithm::Crc64Nvme => s3s::crypto::Crc64Nvme::checksum(data).as_ref().to_vec(),
            _ => unreachable!(),
        };
        let mut padded = [0u8; 8];
        padded[8 - bytes.len()..].copy_from_slice(&bytes);
        u64::from_be_bytes(padded)
    }

    /// The combined CRC of two pieces is the CRC of the whole, for every
    /// full-object algorithm and for pieces of odd and even lengths.
    #[test]
    fn crc_combine_matches_the_crc_of_the_concatenation() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for algorithm in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
            let (poly, width) = algorithm.crc().unwrap();
            for cut in [0, 1, 2, 3, 1000, 4095, 4999] {
                let (a, b) = data.split_at(cut);
                let combined = if a.is_empty() {
                    crc_of(algorithm, b)
                } else {
                    crc_combine(
                        poly,
                        width,
                        crc_of(algorithm, a),
                        crc_of(algorithm, b),
                        b.len() as u64,
                    )
                };
                assert_eq!(
                    combined,
                    crc_of(algorithm, &data),
                    "{algorithm:?} cut at {cut}"
                );
            }
        }
    }
}
