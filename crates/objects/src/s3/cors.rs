//! A bucket's CORS configuration: Put, Get and Delete BucketCors. The
//! rules are applied to browser requests by the HTTP front
//! (`endpoint::cors`), which answers preflights itself.

use super::bucket_config;
use crate::error::Error;
use crate::index::buckets::Setting;
use crate::record::CorsRule;
use crate::store::ObjectStore;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

/// S3's limit on rules per configuration.
const MAX_RULES: usize = 100;
const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD"];

fn rule_of(rule: CORSRule) -> S3Result<CorsRule> {
    if rule.allowed_origins.is_empty() || rule.allowed_methods.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "each CORS rule needs at least one AllowedOrigin and one AllowedMethod"
        ));
    }
    for method in &rule.allowed_methods {
        if !METHODS.contains(&method.as_str()) {
            return Err(s3_error!(
                InvalidRequest,
                "unsupported CORS method '{method}' (GET, PUT, POST, DELETE and HEAD are allowed)"
            ));
        }
    }
    for origin in &rule.allowed_origins {
        if origin.matches('*').count() > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "AllowedOrigin '{origin}' can not have more than one wildcard"
            ));
        }
    }
    Ok(CorsRule {
        id: rule.id,
        allowed_origins: rule.allowed_origins,
        allowed_methods: rule.allowed_methods,
        allowed_headers: rule.allowed_headers.unwrap_or_default(),
        expose_headers: rule.expose_headers.unwrap_or_default(),
        max_age_seconds: rule.max_age_seconds,
    })
}

pub(super) async fn put_bucket_cors(
    store: &ObjectStore,
    req: S3Request<PutBucketCorsInput>,
) -> S3Result<S3Response<PutBucketCorsOutput>> {
    let input = req.input;
    let rules = input.cors_configuration.cors_rules;
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(s3_error!(
            MalformedXML,
            "a CORS configuration holds 1 to {MAX_RULES} rules"
        ));
    }
    let rules = rules
        .into_iter()
        .map(rule_of)
        .collect::<S3Result<Vec<_>>>()?;
    let json = serde_json::to_string(&rules).map_err(Error::from)?;
    store
        .set_bucket(&input.bucket, Setting::Cors, Some(json))
        .await?;
    Ok(S3Response::new(PutBucketCorsOutput::default()))
}

pub(super) async fn get_bucket_cors(
    store: &ObjectStore,
    req: S3Request<GetBucketCorsInput>,
) -> S3Result<S3Response<GetBucketCorsOutput>> {
    let config = bucket_config(store, &req.input.bucket).await?;
    let Some(rules) = config.cors else {
        return Err(s3_error!(NoSuchCORSConfiguration));
    };
    Ok(S3Response::new(GetBucketCorsOutput {
        cors_rules: Some(
            rules
                .into_iter()
                .map(|r| CORSRule {
                    id: r.id,
                    allowed_origins: r.allowed_origins,
                    allowed_methods: r.allowed_methods,
                    allowed_headers: (!r.allowed_headers.is_empty()).then_some(r.allowed_headers),
                    expose_headers: (!r.expose_headers.is_empty()).then_some(r.expose_headers),
                    max_age_seconds: r.max_age_seconds,
                })
                .collect(),
        ),
    }))
}

pub(super) async fn delete_bucket_cors(
    store: &ObjectStore,
    req: S3Request<DeleteBucketCorsInput>,
) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
    store
        .set_bucket(&req.input.bucket, Setting::Cors, None)
        .await?;
    Ok(S3Response::with_status(
        DeleteBucketCorsOutput::default(),
        http::StatusCode::NO_CONTENT,
    ))
}
