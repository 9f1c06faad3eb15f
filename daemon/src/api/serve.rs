//! Serves the API's router on a listener: one HTTP/1.1 connection task per client, with time
//! limits so a client that stops half-way through a request cannot hold a connection (a task
//! and a file descriptor) forever, and a graceful end on shutdown. `axum::serve` does the
//! same without the time limits.

use std::{future::Future, io, time::Duration};

use axum::{
    Router,
    extract::Request,
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{ApiError, MAX_BODY_BYTES};

/// How long a client may take to send a request's headers, counted from when the
/// connection is ready for them (also an idle kept-alive connection's limit).
const HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body once its headers are in.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections from `accept` and serves `router` on each until `shutdown`; then lets
/// the requests in flight finish (event streams end with `shutdown` themselves) and returns.
pub(super) async fn serve<S, A, F>(mut accept: A, router: Router, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: FnMut() -> F,
    F: Future<Output = io::Result<S>>,
{
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = accept() => match accepted {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(error = %crate::text::chain(&error), "the API cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADERS_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            // A client that went away or timed out; nothing to tell anyone.
            if let Err(error) = served {
                tracing::debug!(error = %crate::text::chain(&error), "an API connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// Reads the request's body, at most [`MAX_BODY_BYTES`] of it, within [`BODY_TIMEOUT`], before
/// the handler runs: a client that sends less than it announced gets `request_timeout`
/// instead of holding its connection. Layered on every route by [`super::router`].
pub(super) async fn read_body_in_time(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES));
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) if too_large(&error) => {
            return super::handlers::body_too_large().into_response();
        }
        Ok(Err(error)) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "the request body could not be read: {}",
                    crate::text::chain(&error)
                ),
            )
            .into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s; send it whole",
                    BODY_TIMEOUT.as_secs()
                ),
            )
            .into_response();
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Whether reading a body failed because it is longer than the limit.
fn too_large(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}
