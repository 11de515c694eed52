//! A typed HTTP client for roost's API (the Fly Machines API v1 plus
//! roost's extensions). The CLI is built on it; tests and tools can use it
//! alone.

mod egress;
mod secrets;
mod tokens;
mod volumes;

use reqwest::Method;
use roost_types::{
    App, CreateAppRequest, CreateMachineRequest, ExecRequest, ExecResponse, ListAppsResponse,
    Machine, MachineEvent, Missing, RegistryAuth, StopRequest,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// roost answered with an error status; `message` is its explanation,
    /// and `missing` what the request named that is not there, if that was
    /// the reason (so a front end can say how to get it).
    #[error("{message} (HTTP {status})")]
    Api {
        status: u16,
        message: String,
        missing: Option<Missing>,
    },
    #[error(
        "cannot reach roost at {url}: {source}; is `roost up` running and ROOST_API_URL right?"
    )]
    Unreachable { url: String, source: reqwest::Error },
    #[error("unexpected response from roost: {0}")]
    Decode(String),
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// `base_url` like `http://127.0.0.1:4280` (no `/v1`).
    pub fn new(base_url: &str, token: &str) -> Client {
        Client {
            base: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request and returns the raw response if its status is a success.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.checked(request, url).await
    }

    /// Sends `request` and returns the response if its status is a success.
    async fn checked(
        &self,
        request: reqwest::RequestBuilder,
        url: String,
    ) -> Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let (message, missing) = match serde_json::from_str::<roost_types::ErrorResponse>(&text) {
            Ok(body) => (body.error, body.missing),
            Err(_) => (text, None),
        };
        Err(ClientError::Api {
            status: status.as_u16(),
            message,
            missing,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        let response = self.send(method, path, body).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Decode(format!("{e}: {}", String::from_utf8_lossy(&bytes))))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, None::<&()>).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::DELETE, path, None::<&()>).await
    }

    pub async fn create_app(&self, name: &str) -> Result<App> {
        let req = CreateAppRequest {
            app_name: name.to_string(),
            ..Default::default()
        };
        self.post("/v1/apps", &req).await
    }

    pub async fn list_apps(&self) -> Result<ListAppsResponse> {
        self.get("/v1/apps").await
    }

    pub async fn delete_app(&self, name: &str) -> Result<()> {
        self.send(Method::DELETE, &format!("/v1/apps/{name}"), None::<&()>)
            .await?;
        Ok(())
    }

    pub async fn create_machine(&self, app: &str, req: &CreateMachineRequest) -> Result<Machine> {
        self.post(&format!("/v1/apps/{app}/machines"), req).await
    }

    pub async fn list_machines(&self, app: &str) -> Result<Vec<Machine>> {
        self.get(&format!("/v1/apps/{app}/machines")).await
    }

    pub async fn get_machine(&self, app: &str, id: &str) -> Result<Machine> {
        self.get(&format!("/v1/apps/{app}/machines/{id}")).await
    }

    pub async fn start_machine(&self, app: &str, id: &str) -> Result<serde_json::Value> {
        self.post(&format!("/v1/apps/{app}/machines/{id}/start"), &())
            .await
    }

    pub async fn stop_machine(
        &self,
        app: &str,
        id: &str,
        req: &StopRequest,
    ) -> Result<serde_json::Value> {
        self.post(&format!("/v1/apps/{app}/machines/{id}/stop"), req)
            .await
    }

    pub async fn restart_machine(&self, app: &str, id: &str) -> Result<serde_json::Value> {
        self.post(&format!("/v1/apps/{app}/machines/{id}/restart"), &())
            .await
    }

    pub async fn destroy_machine(
        &self,
        app: &str,
        id: &str,
        force: bool,
    ) -> Result<serde_json::Value> {
        self.delete(&format!("/v1/apps/{app}/machines/{id}?force={force}"))
            .await
    }

    pub async fn exec(&self, app: &str, id: &str, req: &ExecRequest) -> Result<ExecResponse> {
        self.post(&format!("/v1/apps/{app}/machines/{id}/exec"), req)
            .await
    }

    pub async fn wait(
        &self,
        app: &str,
        id: &str,
        state: &str,
        timeout_secs: u64,
    ) -> Result<serde_json::Value> {
        self.get(&format!(
            "/v1/apps/{app}/machines/{id}/wait?state={state}&timeout={timeout_secs}"
        ))
        .await
    }

    pub async fn events(&self, app: &str, id: &str) -> Result<Vec<MachineEvent>> {
        self.get(&format!("/v1/apps/{app}/machines/{id}/events"))
            .await
    }

    /// The log response; read it whole, or stream it with `follow`.
    pub async fn logs(&self, app: &str, id: &str, follow: bool) -> Result<reqwest::Response> {
        self.send(
            Method::GET,
            &format!("/v1/apps/{app}/machines/{id}/logs?follow={follow}"),
            None::<&()>,
        )
        .await
    }

    pub async fn import_image(&self, path: &str, name: &str) -> Result<serde_json::Value> {
        self.post(
            "/v1/images",
            &serde_json::json!({"path": path, "name": name}),
        )
        .await
    }

    pub async fn list_images(&self) -> Result<Vec<serde_json::Value>> {
        self.get("/v1/images").await
    }

    /// Pulls an image from its registry and returns the stored image.
    pub async fn pull_image(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<serde_json::Value> {
        self.post(
            "/v1/images/pull",
            &serde_json::json!({"image": image, "auth": auth}),
        )
        .await
    }

    /// Like [`Client::pull_image`], but answered as a stream of JSON lines: layer progress,
    /// then `{"image": ...}` or `{"error": ..., "status": ...}`.
    pub async fn pull_image_stream(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}/v1/images/pull", self.base);
        let request = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/x-ndjson")
            .json(&serde_json::json!({"image": image, "auth": auth}));
        self.checked(request, url).await
    }

    /// Removes an image record; refused (409) while a machine uses the image.
    pub async fn remove_image(&self, reference: &str) -> Result<serde_json::Value> {
        self.delete(&format!("/v1/images/{reference}")).await
    }

    /// Deletes blobs and layers no image or machine references.
    pub async fn prune_images(&self) -> Result<serde_json::Value> {
        self.post("/v1/images/prune", &serde_json::json!({})).await
    }
}
