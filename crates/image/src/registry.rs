//! One repository of an OCI distribution (v2) registry: manifests and blobs over HTTP(S),
//! authenticated the way a `401` challenge asks (see [`crate::auth`]).

use std::io::Read;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{ACCEPT, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::auth::{self, Challenge, Credentials, TokenResponse};
use crate::digest::Digest;
use crate::error::ImageError;
use crate::manifest::MAX_DOCUMENT_SIZE;
use crate::reference::Remote;

/// Every manifest form roost can use, so the registry never has to down-convert.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";
/// Manifests, configs and tokens are small; a registry that takes longer is stuck. Layer
/// downloads have no overall limit, their size is what it is.
const DOCUMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// How requests prove who is asking, once a challenge said how.
#[derive(Clone)]
enum Authorization {
    Basic(Credentials),
    Bearer(String),
}

pub(crate) struct Session<'a> {
    http: &'a Client,
    remote: &'a Remote,
    scheme: &'static str,
    credentials: Option<&'a Credentials>,
    /// What worked last, shared by the layer downloads running in parallel.
    authorization: Mutex<Option<Authorization>>,
}

impl<'a> Session<'a> {
    pub(crate) fn new(
        http: &'a Client,
        remote: &'a Remote,
        insecure: bool,
        credentials: Option<&'a Credentials>,
    ) -> Session<'a> {
        Session {
            http,
            remote,
            scheme: if insecure { "http" } else { "https" },
            credentials,
            authorization: Mutex::new(None),
        }
    }

    /// A manifest or index by tag or digest, at most [`MAX_DOCUMENT_SIZE`] bytes.
    pub(crate) fn manifest(&self, reference: &str) -> Result<Vec<u8>, ImageError> {
        let url = self.url("manifests", reference);
        let response = self.get(&url, Some(MANIFEST_ACCEPT), Some(DOCUMENT_TIMEOUT))?;
        let what = format!("manifest {reference}");
        let response = self.expect_found(response, &what)?;
        self.read_document(response, &what)
    }

    /// A small blob (an image config) read into memory.
    pub(crate) fn small_blob(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let response = self.get(
            &self.url("blobs", &digest.to_string()),
            None,
            Some(DOCUMENT_TIMEOUT),
        )?;
        let what = format!("blob {digest}");
        let response = self.expect_found(response, &what)?;
        self.read_document(response, &what)
    }

    /// A blob as a stream, for layers.
    pub(crate) fn blob(&self, digest: &Digest) -> Result<Response, ImageError> {
        let response = self.get(&self.url("blobs", &digest.to_string()), None, None)?;
        self.expect_found(response, &format!("blob {digest}"))
    }

    pub(crate) fn upstream(&self, reason: impl Into<String>) -> ImageError {
        ImageError::Registry {
            registry: self.remote.registry.clone(),
            reason: reason.into(),
        }
    }

    fn url(&self, kind: &str, reference: &str) -> String {
        format!(
            "{}://{}/v2/{}/{kind}/{reference}",
            self.scheme, self.remote.endpoint, self.remote.repository
        )
    }

    /// GET `url`; on a `401`, authenticate as its challenge asks and try once more.
    fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Response, ImageError> {
        let request = || {
            let mut request = self.http.get(url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            request
        };
        let response = self.send(self.authorize(request()), url)?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let authorization = self.authenticate(&challenge)?;
        *self
            .authorization
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(authorization);
        let response = self.send(self.authorize(request()), url)?;
        if matches!(
            response.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(self.refused(format!(
                "it answered HTTP {} with the {}",
                response.status().as_u16(),
                if self.credentials.is_some() {
                    "credentials given"
                } else {
                    "anonymous token; the repository needs credentials"
                }
            )));
        }
        Ok(response)
    }

    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        let current = self
            .authorization
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match current {
            Some(Authorization::Basic(credentials)) => {
                request.basic_auth(credentials.username, Some(credentials.password))
            }
            Some(Authorization::Bearer(token)) => request.bearer_auth(token),
            None => request,
        }
    }

    fn send(&self, request: RequestBuilder, url: &str) -> Result<Response, ImageError> {
        request.send().map_err(|err| {
            if let Some(rustls::Error::InvalidCertificate(_)) = tls_failure(&err) {
                // Speaking plain HTTP would not help here: the registry does TLS, roost just
                // does not trust who signed its certificate.
                return self.upstream(format!(
                    "its TLS certificate is not trusted: {}; if a private CA signed it, trust \
                     that CA's certificate with roost up --registry-ca FILE (or \"ca_file\" in \
                     DATA_DIR/registries.json)",
                    error_chain(&err)
                ));
            }
            let hint = if self.scheme == "https" {
                format!(
                    "; if it serves plain HTTP, list it as insecure (roost up --insecure-registry {})",
                    self.remote.registry
                )
            } else {
                String::new()
            };
            self.upstream(format!(
                "cannot reach {url}: {}; check that the registry is running and reachable from \
                 the roost host{hint}",
                error_chain(&err)
            ))
        })
    }

    fn authenticate(&self, challenge: &str) -> Result<Authorization, ImageError> {
        match auth::parse_challenge(challenge) {
            Some(Challenge::Basic) => match self.credentials {
                Some(credentials) => Ok(Authorization::Basic(credentials.clone())),
                None => Err(self.refused(
                    "it requires a username and password (HTTP basic) and none were given",
                )),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope =
                    scope.unwrap_or_else(|| format!("repository:{}:pull", self.remote.repository));
                let mut query = vec![("scope", scope)];
                query.extend(service.map(|service| ("service", service)));
                let mut request = self
                    .http
                    .get(&realm)
                    .query(&query)
                    .timeout(DOCUMENT_TIMEOUT);
                if let Some(credentials) = self.credentials {
                    request =
                        request.basic_auth(&credentials.username, Some(&credentials.password));
                }
                let response = self.send(request, &realm)?;
                let status = response.status();
                if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                    return Err(self.refused(format!(
                        "its token service {realm} answered HTTP {}",
                        status.as_u16()
                    )));
                }
                if !status.is_success() {
                    return Err(self.upstream(format!(
                        "its token service {realm} answered HTTP {}",
                        status.as_u16()
                    )));
                }
                let body = self.read_document(response, "token response")?;
                serde_json::from_slice::<TokenResponse>(&body)
                    .ok()
                    .and_then(TokenResponse::into_token)
                    .map(Authorization::Bearer)
                    .ok_or_else(|| {
                        self.upstream(format!("its token service {realm} returned no token"))
                    })
            }
            None => Err(self.refused(format!(
                "it answered HTTP 401 with a challenge roost does not support ('{challenge}'); \
                 roost speaks Basic and Bearer"
            ))),
        }
    }

    /// Turns a non-success answer into the error that says what to check.
    fn expect_found(&self, response: Response, what: &str) -> Result<Response, ImageError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let detail = registry_error(response);
        if status == StatusCode::NOT_FOUND {
            return Err(ImageError::NotInRegistry {
                registry: self.remote.registry.clone(),
                reference: self.remote.record.clone(),
                reason: format!("{what}: {detail}"),
            });
        }
        Err(self.upstream(format!(
            "GET of {what} of {} answered HTTP {}: {detail}",
            self.remote.repository,
            status.as_u16()
        )))
    }

    fn read_document(&self, response: Response, what: &str) -> Result<Vec<u8>, ImageError> {
        let mut bytes = Vec::new();
        response
            .take(MAX_DOCUMENT_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.upstream(format!("reading {what}: {}", error_chain(&e))))?;
        if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(self.upstream(format!(
                "{what} is larger than {MAX_DOCUMENT_SIZE} bytes, which no real manifest, config or token is"
            )));
        }
        Ok(bytes)
    }

    fn refused(&self, reason: impl Into<String>) -> ImageError {
        ImageError::RegistryAuth {
            registry: self.remote.registry.clone(),
            repository: self.remote.repository.clone(),
            reason: reason.into(),
        }
    }
}

/// The registry's own explanation of a failed request: the first `{"errors": [{code,
/// message}]}` entry of the distribution spec's error body, else the status text.
fn registry_error(response: Response) -> String {
    #[derive(Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        code: String,
        #[serde(default)]
        message: String,
    }
    let status = response.status();
    let mut bytes = Vec::new();
    let _ = response.take(64 << 10).read_to_end(&mut bytes);
    match serde_json::from_slice::<Body>(&bytes) {
        Ok(body) if !body.errors.is_empty() => {
            let entry = &body.errors[0];
            format!("{} {}", entry.code, entry.message)
                .trim()
                .to_owned()
        }
        _ => format!(
            "HTTP {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .trim()
        .to_owned(),
    }
}

/// The TLS error under `err`, if a TLS handshake is what failed. The TLS stack hands it up
/// wrapped in `io::Error`s (reqwest wraps the one of tokio-rustls again), and an `io::Error`'s
/// `source()` skips the error it wraps, so I/O errors are opened rather than followed.
fn tls_failure<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut next = Some(err);
    while let Some(current) = next {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    None
}

/// An error and its sources on one line: reqwest's own message is only "error sending
/// request", the cause (refused, TLS, DNS) is further down.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
