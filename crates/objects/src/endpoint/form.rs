//! A streaming reader of `multipart/form-data` bodies (RFC 7578), for
//! browser uploads: the fields before the `file` field are read into
//! memory (bounded), the file itself is handed on as a stream, so an
//! upload never sits in memory.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Bounds on what is held in memory: one field's value, all of them, the
/// headers of one part.
const MAX_FIELD: usize = 1024 * 1024;
const MAX_FIELDS: usize = 20 * 1024 * 1024;
const MAX_PART_HEADERS: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FormError {
    #[error("the form is not valid multipart/form-data: {0}")]
    Malformed(&'static str),
    #[error("a form field is larger than {MAX_FIELD} bytes, or all are larger than {MAX_FIELDS}")]
    FieldTooLarge,
    #[error("cannot read the request body: {0}")]
    Body(String),
}

/// The fields of a form, names lower-cased (S3 form field names are
/// case-insensitive), in order.
pub(crate) struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The form's `file` field: its file name, and its content still to be
/// read.
pub(crate) struct FilePart {
    pub filename: Option<String>,
    pub content: FileStream,
}

struct Reader {
    body: s3s::Body,
    buf: BytesMut,
}

impl Reader {
    /// Reads more of the body into the buffer; false at its end.
    async fn fill(&mut self) -> Result<bool, FormError> {
        match self.body.next().await {
            Some(Ok(chunk)) => {
                self.buf.extend_from_slice(&chunk);
                Ok(true)
            }
            Some(Err(err)) => Err(FormError::Body(err.to_string())),
            None => Ok(false),
        }
    }

    /// The bytes before the next `pattern` (which is consumed), at most
    /// `limit` of them.
    async fn until(&mut self, pattern: &[u8], limit: usize) -> Result<Bytes, FormError> {
        loop {
            if let Some(at) = memchr::memmem::find(&self.buf, pattern) {
                let before = self.buf.split_to(at).freeze();
                let _ = self.buf.split_to(pattern.len());
                return Ok(before);
            }
            if self.buf.len() > limit + pattern.len() {
                return Err(FormError::FieldTooLarge);
            }
            if !self.fill().await? {
                return Err(FormError::Malformed("the body ends inside a part"));
            }
        }
    }

    /// The next two bytes: `\r\n` before another part, `--` at the end.
    async fn after_delimiter(&mut self) -> Result<bool, FormError> {
        while self.buf.len() < 2 {
            if !self.fill().await? {
                return Err(FormError::Malformed("the body ends after a delimiter"));
            }
        }
        let more = match &self.buf[..2] {
            b"\r\n" => true,
            b"--" => false,
            _ => return Err(FormError::Malformed("a delimiter is followed by junk")),
        };
        let _ = self.buf.split_to(2);
        Ok(more)
    }
}

/// A part's name and file name, from its `Content-Disposition`.
fn disposition(headers: &str) -> Result<(String, Option<String>), FormError> {
    let line = headers
        .split("\r\n")
        .find(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("content-disposition"))
        })
        .ok_or(FormError::Malformed("a part has no Content-Disposition"))?;
    let value = line.split_once(':').map_or("", |(_, v)| v);
    let mut name = None;
    let mut filename = None;
    for param in value.split(';').skip(1) {
        let Some((key, raw)) = param.trim().split_once('=') else {
            continue;
        };
        let raw = raw.trim();
        let unquoted = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(raw)
            .replace("\\\"", "\"");
        match key.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(unquoted),
            "filename" => filename = Some(unquoted),
            _ => {}
        }
    }
    let name = name.ok_or(FormError::Malformed("a part has no name"))?;
    Ok((name, filename))
}

/// Reads the fields of a form up to its `file` field, which it returns
/// unread (none when the form has no file).
pub(crate) async fn read(
    body: s3s::Body,
    boundary: &str,
) -> Result<(Fields, Option<FilePart>), FormError> {
    let mut reader = Reader {
        body,
        buf: BytesMut::new(),
    };
    let first = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    let _preamble = reader.until(first.as_bytes(), MAX_FIELD).await?;
    let mut fields = Vec::new();
    let mut total = 0usize;
    while reader.after_delimiter().await? {
        let headers = reader.until(b"\r\n\r\n", MAX_PART_HEADERS).await?;
        let headers = String::from_utf8_lossy(&headers).into_owned();
        let (name, filename) = disposition(&headers)?;
        let name = name.to_ascii_lowercase();
        if name == "file" {
            return Ok((
                Fields(fields),
                Some(FilePart {
                    filename,
                    content: FileStream {
                        body: reader.body,
                        buf: reader.buf,
                        delimiter,
                        done: false,
                    },
                }),
            ));
        }
        let value = reader.until(&delimiter, MAX_FIELD).await?;
        total += value.len();
        if total > MAX_FIELDS {
            return Err(FormError::FieldTooLarge);
        }
        fields.push((name, String::from_utf8_lossy(&value).into_owned()));
    }
    Ok((Fields(fields), None))
}

/// The content of a form's file field, up to the delimiter after it.
pub(crate) struct FileStream {
    body: s3s::Body,
    buf: BytesMut,
    delimiter: Vec<u8>,
    done: bool,
}

impl Stream for FileStream {
    type Item = Result<Bytes, FormError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(at) = memchr::memmem::find(&this.buf, &this.delimiter) {
                this.done = true;
                let content = this.buf.split_to(at).freeze();
                if !content.is_empty() {
                    return Poll::Ready(Some(Ok(content)));
                }
                continue;
            }
            // Everything but a tail that could start the delimiter is file.
            let safe = this.buf.len().saturating_sub(this.delimiter.len() - 1);
            if safe >= 64 * 1024 {
                return Poll::Ready(Some(Ok(this.buf.split_to(safe).freeze())));
            }
            match Pin::new(&mut this.body).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(err))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(FormError::Body(err.to_string()))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(FormError::Malformed(
                        "the body ends inside the file",
                    ))));
                }
                Poll::Pending if safe > 0 => {
                    return Poll::Ready(Some(Ok(this.buf.split_to(safe).freeze())));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A form split into chunks of every size reads the same: fields, file
    /// name, and the file's exact bytes (which contain a near-delimiter).
    #[tokio::test]
    async fn reads_fields_and_streams_the_file_whatever_the_chunking() {
        let file: Vec<u8> = b"line one\r\n--boun not quite\r\n--bou".repeat(500);
        let mut body = Vec::new();
        body.extend_from_slice(b"--bound\r\nContent-Disposition: form-data; name=\"KeY\"\r\n\r\nuploads/${filename}\r\n");
        body.extend_from_slice(
            b"--bound\r\nContent-Disposition: form-data; name=\"acl\"\r\n\r\npublic-read\r\n",
        );
        body.extend_from_slice(b"--bound\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n");
        body.extend_from_slice(&file);
        body.extend_from_slice(b"\r\n--bound--\r\n");
        for chunk in [1, 7, 100, 4096, body.len()] {
            let pieces: Vec<Result<Bytes, std::io::Error>> = body
                .chunks(chunk)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let stream = s3s::dto::StreamingBlob::wrap(futures_util::stream::iter(pieces));
            let (fields, part) = read(s3s::Body::from(stream), "bound").await.unwrap();
            assert_eq!(
                fields.get("key"),
                Some("uploads/${filename}"),
                "chunk {chunk}"
            );
            assert_eq!(fields.get("acl"), Some("public-read"));
            let part = part.expect("a file");
            assert_eq!(part.filename.as_deref(), Some("a.txt"));
            let got: Vec<u8> = part.content.map(|c| c.unwrap().to_vec()).concat().await;
            assert!(got == file, "chunk {chunk}: {} bytes read", got.len());
        }
    }

    #[tokio::test]
    async fn a_form_cut_inside_the_file_is_an_error() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc".to_vec();
        let (_, part) = read(s3s::Body::from(body), "b").await.unwrap();
        let results: Vec<_> = part.unwrap().content.collect().await;
        assert!(results.last().unwrap().is_err());
    }
}
