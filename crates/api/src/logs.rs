//! roost extension: `GET /v1/apps/{app}/machines/{id}/logs[?follow=true]`.
//!
//! Returns the main process's stdout and stderr as `text/plain`, oldest
//! first (the rotated file, then the current one). With `follow=true` the
//! response stays open and streams new output as it is written, until the
//! client disconnects or the machine is destroyed.

use crate::auth::AsCaller;
use crate::error::ApiError;
use crate::extract::Params;
use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// How often a followed log is checked for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Deserialize)]
pub(crate) struct LogsQuery {
    #[serde(default)]
    follow: Option<String>,
}

pub(crate) async fn logs(
    AsCaller(s): AsCaller,
    Path((app, id)): Path<(String, String)>,
    Params(q): Params<LogsQuery>,
) -> Result<Response, ApiError> {
    let follow = match q.follow.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "follow={other:?} is invalid: use true or false"
            )))
        }
    };
    let files = s.log_files(&app, &id)?;
    let mut history = Vec::new();
    for file in &files.history {
        history.extend(tokio::fs::read(file).await.unwrap_or_default());
    }
    let headers = [(
        axum::http::header::CONTENT_TYPE,
        "text/plain; charset=utf-8",
    )];
    if !follow {
        return Ok((headers, history).into_response());
    }
    let current = files.current;
    let position = tokio::fs::metadata(&current)
        .await
        .map(|m| Position {
            file: m.ino(),
            offset: m.len(),
        })
        .unwrap_or_default();
    let machines = s.clone();
    let stream =
        futures_util::stream::unfold((Some(history), position), move |(first, mut position)| {
            let current = current.clone();
            let machines = machines.clone();
            let (app, id) = (app.clone(), id.clone());
            async move {
                if let Some(history) = first {
                    return Some((Ok::<_, std::io::Error>(history), (None, position)));
                }
                loop {
                    tokio::time::sleep(FOLLOW_INTERVAL).await;
                    let gone = machines
                        .get_machine(&app, &id)
                        .map(|m| m.state == roost_types::MachineState::Destroyed)
                        .unwrap_or(true);
                    if gone {
                        return None;
                    }
                    let chunk = read_from(&current, &mut position).await;
                    if !chunk.is_empty() {
                        return Some((Ok(chunk), (None, position)));
                    }
                }
            }
        });
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// How far a follower has read: which file (inode) and how much of it.
#[derive(Clone, Copy, Default)]
struct Position {
    file: u64,
    offset: u64,
}

/// Reads what was appended to `path` since `position`. Another file at
/// `path` means the log was rotated (renamed to `log.1`, a new one begun):
/// start again from the new file's beginning.
async fn read_from(path: &std::path::Path, position: &mut Position) -> Vec<u8> {
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return Vec::new();
    };
    let Ok(meta) = file.metadata().await else {
        return Vec::new();
    };
    if meta.ino() != position.file {
        *position = Position {
            file: meta.ino(),
            offset: 0,
        };
    }
    // The relay bounds the file, so this read is bounded too.
    let mut chunk = Vec::new();
    if file
        .seek(std::io::SeekFrom::Start(position.offset))
        .await
        .is_ok()
    {
        let _ = file.read_to_end(&mut chunk).await;
    }
    position.offset += chunk.len() as u64;
    chunk
}
