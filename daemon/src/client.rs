//! A client of hotspotd's API over its Unix socket, for `hotspotctl` and tests: one HTTP/1.1
//! connection per request, JSON in and out, API errors turned into their sentence.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, body::Bytes};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::views::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach hotspotd at {socket} (is hotspotd running? try 'systemctl status hotspotd', or pass --socket)"
    )]
    Connect {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to hotspotd at {socket} failed")]
    Http {
        socket: PathBuf,
        source: hyper::Error,
    },
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error(
        "hotspotd answered something this hotspotctl does not understand (are both the same version?)"
    )]
    Decode { source: serde_json::Error },
    #[error(
        "cannot write {path}: the vouchers were created and their codes are printed above (they are not kept anywhere else); copy them from there"
    )]
    Export {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct ApiClient {
    socket: PathBuf,
}

impl ApiClient {
    #[must_use]
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ClientError> {
        self.request(Method::POST, path, Some(body.to_string()))
            .await
    }

    /// A listing a page at a time (`/v1/clients`, `/v1/sessions`): the page, and how many
    /// match in all (`X-Total-Count`; `None` from a daemon that does not say).
    pub async fn get_page<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, Option<u64>), ClientError> {
        let response = self.send(Method::GET, path, None).await?;
        let total = response
            .headers()
            .get("x-total-count")
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse().ok());
        let bytes = self.successful(response).await?;
        let page =
            serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode { source })?;
        Ok((page, total))
    }

    /// For endpoints that answer text, like `/metrics`.
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let bytes = self.successful_body(Method::GET, path, None).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// For endpoints that answer `204 No Content`.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.request(Method::DELETE, path, None).await
    }

    /// Reads a streaming endpoint (`/v1/events`) line by line, handing each line to
    /// `on_line` as it arrives, until the daemon closes the stream.
    pub async fn stream_lines(
        &self,
        path: &str,
        mut on_line: impl FnMut(&str),
    ) -> Result<(), ClientError> {
        let response = self.send(Method::GET, path, None).await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|source| self.http_error(source))?
                .to_bytes();
            return Err(api_error(status.as_u16(), &bytes));
        }
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| self.http_error(source))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            pending.extend_from_slice(data);
            while let Some(end) = pending.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                on_line(String::from_utf8_lossy(&line[..end]).trim_end());
            }
        }
        Ok(())
    }

    fn http_error(&self, source: hyper::Error) -> ClientError {
        ClientError::Http {
            socket: self.socket.clone(),
            source,
        }
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<T, ClientError> {
        let bytes = self.successful_body(method, path, body).await?;
        // An empty answer (204) is JSON null, which is what `()` reads.
        let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(body).map_err(|source| ClientError::Decode { source })
    }

    /// The whole body of a successful answer; an unsuccessful one as its API error.
    async fn successful_body(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Bytes, ClientError> {
        let response = self.send(method, path, body).await?;
        self.successful(response).await
    }

    /// The whole body of `response` if it succeeded; else its API error.
    async fn successful(
        &self,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<Bytes, ClientError> {
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|source| self.http_error(source))?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        Err(api_error(status.as_u16(), &bytes))
    }

    /// One request on a connection of its own.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let http_error = |source| ClientError::Http {
            socket: self.socket.clone(),
            source,
        };
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_error)?;
        tokio::spawn(connection);

        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "hotspotd")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())));
        // Only a malformed `path` fails here, and every caller passes a literal.
        let request = request.map_err(|error| ClientError::Api {
            status: 0,
            code: "bad_request".to_owned(),
            message: format!("cannot build the request for {path}: {error}"),
        })?;
        sender.send_request(request).await.map_err(http_error)
    }
}

/// The API's error document as a [`ClientError`].
fn api_error(status: u16, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(ErrorBody { error }) => ClientError::Api {
            status,
            code: error.code,
            message: error.message,
        },
        Err(source) => ClientError::Decode { source },
    }
}
