//! Plain-HTTP forwarding on the proxy's own HTTP/1.1 code, for the
//! requests that are nearly all of it: HTTP/1.1 requests without a body
//! (apt's, pip's and curl's downloads). Their response body moves from
//! the upstream's socket to the client's by `splice(2)`, as a tunnel's
//! bytes do; through hyper, each byte was copied into the proxy's memory
//! and out again, which held a forwarded download well below a tunnel.
//!
//! The proxy reads each request head itself ([`next_head`]). What this
//! path does not take (CONNECT, a body, `Expect`, `Upgrade`,
//! `Proxy-Tokenizer`, HTTP/1.0, a head it cannot parse, one larger than
//! the proxy takes, or a target or Host header the proxy refuses) goes to
//! hyper with every byte read so far, and hyper serves the rest of the
//! connection: its answers, refusals included, stay hyper's.

use crate::answer::Answer;
use crate::ledger::Tally;
use crate::policy::Destination;
use crate::{answer, splice};
use bytes::{Buf, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Headers a request or response head may have (hyper's own bound).
const MAX_HEADERS: usize = 100;
/// Largest response head taken from an upstream (about hyper's bound).
const MAX_RESPONSE_HEAD: usize = 256 * 1024;
/// Request headers that send a request to hyper: a body, a protocol
/// switch, an interim answer, or the tokenizer.
const NOT_HERE: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "expect",
    "upgrade",
    crate::proxy::PROXY_TOKENIZER,
];

/// What a client connection holds next.
pub(crate) enum Next {
    /// A request for this path, its head taken from the buffer.
    Request(Box<Head>),
    /// Hyper's to serve, from the buffered bytes on.
    Hyper,
    /// Nothing more: the client closed between requests, failed, or did
    /// not send a whole head within the header timeout.
    Closed,
}

/// A request head for this path, checked and made ready for its upstream.
pub(crate) struct Head {
    pub parts: Parts,
    pub destination: Destination,
    /// The client asked to close after this request.
    pub close: bool,
}

/// Reads the client's next request head into `buffered` within `timeout`
/// (a deadline for the whole head, as hyper keeps it) and decides who
/// serves it.
pub(crate) async fn next_head(
    client: &mut TcpStream,
    buffered: &mut BytesMut,
    max_head: usize,
    timeout: Duration,
) -> Next {
    let deadline = Instant::now() + timeout;
    loop {
        if !buffered.is_empty() {
            match parse(buffered) {
                Parsed::Partial if buffered.len() <= max_head => {}
                Parsed::Partial | Parsed::Hyper => return Next::Hyper,
                Parsed::Head(head, length) => {
                    buffered.advance(length);
                    return Next::Request(head);
                }
            }
        }
        buffered.reserve(8 * 1024);
        match tokio::time::timeout_at(deadline, client.read_buf(buffered)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => return Next::Closed,
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "egress client failed between requests");
                return Next::Closed;
            }
            Err(_) => {
                tracing::debug!(?timeout, "egress client sent no whole request head in time");
                return Next::Closed;
            }
        }
    }
}

enum Parsed {
    Partial,
    Hyper,
    /// A head for this path and its length in bytes.
    Head(Box<Head>, usize),
}

fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => {
            head(&request).map_or(Parsed::Hyper, |head| Parsed::Head(head, length))
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Hyper,
    }
}

/// The head, if this path takes it.
fn head(request: &httparse::Request<'_, '_>) -> Option<Box<Head>> {
    if request.version != Some(1) {
        return None;
    }
    let method = Method::from_bytes(request.method?.as_bytes()).ok()?;
    if method == Method::CONNECT {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for h in request.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if NOT_HERE.contains(&name.as_str()) {
            return None;
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    let close = has_token(&headers, header::CONNECTION, "close");
    let (mut parts, ()) = http::Request::builder()
        .method(method)
        .uri(request.path?)
        .body(())
        .ok()?
        .into_parts();
    parts.headers = headers;
    let destination = crate::proxy::outbound(&mut parts).ok()?;
    Some(Box::new(Head {
        parts,
        destination,
        close,
    }))
}

/// Whether a comma-separated header of `name` lists `token`.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// How a failed exchange ends.
pub(crate) enum Failed {
    /// Before a byte of the response reached the client: it gets an answer.
    Answer(Answer),
    /// Midway: the client connection is closed.
    Broken(io::Error),
}

/// Sends `request` to `upstream` (asking it to close after answering:
/// the connection is the request's alone) and relays the answer to
/// `client`, its body by splice. Answers whether the client connection
/// may carry another request.
pub(crate) async fn exchange(
    client: &mut TcpStream,
    mut upstream: TcpStream,
    request: &Head,
    tally: &Tally,
    idle: Duration,
) -> Result<bool, Failed> {
    let failed = |err: io::Error| {
        Failed::Answer(answer::upstream_failed(
            &request.destination,
            &err.to_string(),
        ))
    };
    let head = request_head(&request.parts);
    within(idle, upstream.write_all(&head))
        .await
        .map_err(failed)?;
    tally.sent(head.len());
    let mut buffered = BytesMut::new();
    let response = read_response(&mut upstream, &mut buffered, tally, idle)
        .await
        .map_err(failed)?;
    let body = framing(&request.parts.method, &response);
    let keep = !request.close && matches!(body, Body::Length(_));
    let mut out = response_head(&response, &body, keep);
    let early = match body {
        Body::Length(length) => buffered
            .len()
            .min(usize::try_from(length).unwrap_or(usize::MAX)),
        Body::UntilClose => buffered.len(),
    };
    out.extend_from_slice(&buffered[..early]);
    within(idle, client.write_all(&out))
        .await
        .map_err(Failed::Broken)?;
    let rest = match body {
        Body::Length(length) => Some(length - early as u64),
        Body::UntilClose => None,
    };
    if rest != Some(0) {
        splice::body(&upstream, client, rest, tally, idle)
            .await
            .map_err(Failed::Broken)?;
    }
    Ok(keep)
}

/// `io`'s outcome, or `TimedOut` if it has not finished within `after`.
async fn within<T>(
    after: Duration,
    io: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(after, io).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no progress within {after:?}"),
        )
    })?
}

/// The request as the upstream gets it: origin form, the client's headers
/// less hop-by-hop ones, and `Connection: close`.
fn request_head(parts: &Parts) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.uri.to_string().as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    put_headers(&mut head, &parts.headers);
    head.extend_from_slice(b"connection: close\r\n\r\n");
    head
}

fn put_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// An upstream's final response head.
struct Response {
    status: StatusCode,
    headers: HeaderMap,
}

/// Reads the upstream's response head into `buffered` (passing over
/// interim 1xx answers), leaving there whatever body bytes came with it.
async fn read_response(
    upstream: &mut TcpStream,
    buffered: &mut BytesMut,
    tally: &Tally,
    idle: Duration,
) -> io::Result<Response> {
    loop {
        if let Some((response, length)) = parse_response(buffered)? {
            buffered.advance(length);
            if !response.status.is_informational() {
                return Ok(response);
            }
            continue;
        }
        if buffered.len() > MAX_RESPONSE_HEAD {
            return Err(invalid("a response head larger than 256 KiB"));
        }
        buffered.reserve(16 * 1024);
        let n = within(idle, upstream.read_buf(buffered)).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the upstream closed before a whole response head",
            ));
        }
        tally.received(n);
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the upstream sent {what}"),
    )
}

/// A whole response head at the start of `bytes` and its length, if there
/// is one yet.
fn parse_response(bytes: &[u8]) -> io::Result<Option<(Response, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(invalid(&format!("an invalid response head ({err})"))),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| invalid("an invalid status"))?;
    let mut map = HeaderMap::with_capacity(response.headers.len());
    for h in response.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| invalid("an invalid header name"))?;
        let value =
            HeaderValue::from_bytes(h.value).map_err(|_| invalid("an invalid header value"))?;
        map.append(name, value);
    }
    if !map.contains_key(header::TRANSFER_ENCODING) {
        length_of(&map)?;
    }
    Ok(Some((
        Response {
            status,
            headers: map,
        },
        length,
    )))
}

/// The Content-Length, if the head has one; an error if its values are
/// not one and the same number.
fn length_of(headers: &HeaderMap) -> io::Result<Option<u64>> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let text = value
            .to_str()
            .map_err(|_| invalid("an invalid Content-Length"))?;
        for part in text.split(',') {
            let part = part.trim();
            let n = (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| invalid("an invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(invalid("two different Content-Lengths"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// Where a response body ends.
enum Body {
    Length(u64),
    /// When the upstream closes: a body with a transfer coding (passed on
    /// as it came, for the client to decode) or with no length at all.
    UntilClose,
}

fn framing(method: &Method, response: &Response) -> Body {
    let status = response.status;
    if method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Body::Length(0);
    }
    if response.headers.contains_key(header::TRANSFER_ENCODING) {
        return Body::UntilClose;
    }
    match length_of(&response.headers) {
        Ok(Some(length)) => Body::Length(length),
        _ => Body::UntilClose,
    }
}

/// The response head as the client gets it: the upstream's headers less
/// hop-by-hop ones (a transfer coding kept, since its body goes as it
/// came), and `Connection: close` unless the connection is kept.
fn response_head(response: &Response, body: &Body, keep: bool) -> Vec<u8> {
    let mut headers = response.headers.clone();
    let coding: Vec<HeaderValue> = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .cloned()
        .collect();
    roost_tokenizer::strip_hop_by_hop(&mut headers);
    if matches!(body, Body::UntilClose) && !coding.is_empty() {
        headers.remove(header::CONTENT_LENGTH);
        for value in coding {
            headers.append(header::TRANSFER_ENCODING, value);
        }
    }
    let status = response.status;
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    put_headers(&mut head, &headers);
    if !keep {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Closes a client connection after its last answer without losing that
/// answer: the write side is shut (the answer ends with a FIN), and what
/// the client still sends (requests it pipelined past a closing answer)
/// is read and dropped until it closes, for at most a second. Closing
/// with those bytes unread would send a reset, which can cost the client
/// the end of the answer.
pub(crate) async fn linger(client: &mut TcpStream) {
    if client.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 16 * 1024];
    let drained = async { while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drained).await;
}

/// One of the proxy's own answers, as bytes on the wire.
pub(crate) fn answer_bytes(answer: &Answer, close: bool) -> Vec<u8> {
    let body = format!("{}\n", answer.body);
    let status = answer.status;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    head.push_str(&body);
    head.into_bytes()
}
