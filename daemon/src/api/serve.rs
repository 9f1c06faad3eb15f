//! Serves the API's router on a listener: one HTTP/1.1 connection task per client, at most
//! [`MAX_CONNECTIONS`] at once, with time limits so a client that stops half-way through a
//! request cannot hold a connection (a task and a file descriptor) forever, and a graceful end
//! on shutdown. `axum::serve` does the same without the cap and the time limits.

use std::{future::Future, io, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{ConnectInfo, Request},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::Semaphore,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::error::{ApiError, MAX_BODY_BYTES};

/// How long a client may take to send a request's headers, counted from when the
/// connection is ready for them (also an idle kept-alive connection's limit).
const HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body once its headers are in.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Connections one listener serves at once. Each is a task, buffers and a file descriptor;
/// without a cap, clients that open connections and keep them (idle, or reading
/// `/v1/events`) would run the daemon out of file descriptors, and the TCP listener can be
/// reachable from further than the portal. A portal needs a handful; 256 leaves room for
/// event streams and scrapers and stays far below the usual limit of 1,024 descriptors.
/// Connections beyond it wait in the kernel's listen backlog until one ends.
pub(crate) const MAX_CONNECTIONS: usize = 256;

/// Accepts connections from `accept` and serves `router` on each until `shutdown`, at most
/// `max_connections` at once; then lets the requests in flight finish (event streams end with
/// `shutdown` themselves) and returns. What `accept` tells of a connection (its peer address,
/// say), if anything, is on each of its requests as `ConnectInfo<C>`.
pub(crate) async fn serve<S, C, A, F>(
    accept: A,
    router: Router,
    shutdown: CancellationToken,
    max_connections: usize,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: Clone + Send + Sync + 'static,
    A: FnMut() -> F,
    F: Future<Output = io::Result<(S, Option<C>)>>,
{
    let as_is = |stream: S| std::future::ready(Some(stream));
    serve_prepared(accept, as_is, router, shutdown, max_connections).await;
}

/// [`serve`], with `prepare` run on each accepted connection before HTTP (a TLS handshake),
/// in the connection's own task: a slow one holds its connection's place, never the accept
/// loop. A connection that `prepare` turns into `None` is closed.
pub(crate) async fn serve_prepared<R, S, C, A, F, P, PF>(
    mut accept: A,
    prepare: P,
    router: Router,
    shutdown: CancellationToken,
    max_connections: usize,
) where
    R: Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: Clone + Send + Sync + 'static,
    A: FnMut() -> F,
    F: Future<Output = io::Result<(R, Option<C>)>>,
    P: Fn(R) -> PF + Clone + Send + 'static,
    PF: Future<Output = Option<S>> + Send + 'static,
{
    let connections = TaskTracker::new();
    let places = Arc::new(Semaphore::new(max_connections));
    loop {
        // A place first, then the connection: one over the cap is not accepted (no task, no
        // descriptor) but waits in the kernel's backlog, where the client sees a slow connect
        // rather than a refusal, until a served connection ends.
        let place = tokio::select! {
            () = shutdown.cancelled() => break,
            place = Arc::clone(&places).acquire_owned() => match place {
                Ok(place) => place,
                // Never closed; if it were, nothing could be served.
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(error = %crate::text::chain(&error), "the API cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let router = TowerToHyperService::new(router.clone());
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            if let Some(peer) = peer.clone() {
                request.extensions_mut().insert(ConnectInfo(peer));
            }
            hyper::service::Service::call(&router, request)
        });
        let shutdown = shutdown.clone();
        let prepare = prepare.clone();
        connections.spawn(async move {
            // Held until the connection ends, whichever way.
            let _place = place;
            // A shutdown does not wait for a handshake in progress.
            let prepared = tokio::select! {
                prepared = prepare(stream) => prepared,
                () = shutdown.cancelled() => None,
            };
            let Some(stream) = prepared else {
                return;
            };
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
pub(crate) async fn read_body_in_time(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES));
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) if too_large(&error) => {
            return super::error::body_too_large().into_response();
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::routing::get;
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream},
        sync::{Mutex, mpsc},
    };

    use super::*;

    const CAP: usize = 3;

    /// Asks for `/` on `stream` and returns the answer's status line.
    async fn ask(stream: &mut DuplexStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: hotspotd\r\n\r\n")
            .await
            .expect("send the request");
        let mut answer = vec![0; 1024];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
            .await
            .expect("an answer within 5 s")
            .expect("read the answer");
        String::from_utf8_lossy(&answer[..read])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Lets the server run until it has nothing left to do.
    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn connections_over_the_cap_wait_until_one_ends() {
        // The listener's backlog: connections the clients opened, not yet accepted.
        let (backlog, pending) = mpsc::unbounded_channel::<DuplexStream>();
        let pending = Mutex::new(pending);
        let accepted = AtomicUsize::new(0);
        let accept = || async {
            let stream = pending.lock().await.recv().await;
            accepted.fetch_add(1, Ordering::SeqCst);
            stream
                .map(|stream| (stream, None::<std::net::SocketAddr>))
                .ok_or_else(|| io::Error::other("the test's backlog is closed"))
        };
        let router = Router::new().route("/", get(|| async { "ok" }));
        let shutdown = CancellationToken::new();
        let server = serve(accept, router, shutdown.clone(), CAP);

        let clients = async {
            let mut open = Vec::new();
            for _ in 0..CAP + 2 {
                let (client, server_end) = tokio::io::duplex(4096);
                backlog
                    .send(server_end)
                    .expect("the server takes connections");
                open.push(client);
            }
            settle().await;
            assert_eq!(
                accepted.load(Ordering::SeqCst),
                CAP,
                "accepted more connections than the cap"
            );
            // The first CAP are served; keep-alive keeps them open.
            for client in &mut open[..CAP] {
                assert_eq!(ask(client).await, "HTTP/1.1 200 OK");
            }
            settle().await;
            assert_eq!(accepted.load(Ordering::SeqCst), CAP);

            // One ends: exactly one more is accepted, and answered.
            drop(open.remove(0));
            settle().await;
            assert_eq!(accepted.load(Ordering::SeqCst), CAP + 1);
            assert_eq!(ask(&mut open[CAP - 1]).await, "HTTP/1.1 200 OK");

            // All end: the last one waiting is served too, and a new one after it.
            open.truncate(0);
            let (mut client, server_end) = tokio::io::duplex(4096);
            backlog
                .send(server_end)
                .expect("the server takes connections");
            // The one that waited was dropped with the others; the new one is answered.
            assert_eq!(ask(&mut client).await, "HTTP/1.1 200 OK");
            shutdown.cancel();
        };
        tokio::join!(server, clients);
    }
}
