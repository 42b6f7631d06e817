//! `serve`'s HTTP/1.1 (hyper), bounded against hostile clients: a request
//! head larger than `MAX_HEAD` is refused with 431, one not sent whole
//! within `HEAD_TIMEOUT` closes its connection (slowloris), no connection
//! outlives `CONNECTION_LIFETIME`, at most `Listings`' bound of
//! `/connections` answers are being sent at once (each holds a copy of the
//! table until its client has read it), and the serving code only ever
//! sees a `Route`. What each route answers is the caller's (`Handler`); it
//! runs on the runtime's blocking threads, since listing the connections
//! can take a while.
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest request head (request line and headers) served.
pub const MAX_HEAD: usize = 16 << 10;
/// The most headers in one request.
pub const MAX_HEADERS: usize = 64;
/// A request head must arrive whole within this long.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection lasts at most this long, however busy: a client that asks
/// for `/connections` and never reads the answer holds it no longer.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// `/connections` answers being made or sent at once (serve's bound): a client that
/// asks and never reads holds its answer's memory, a listing of the whole
/// table, for up to `CONNECTION_LIFETIME`.
pub const MAX_LISTINGS: usize = 4;
/// How long a `/connections` request waits for one of them to finish before
/// it is answered 503 (with `Retry-After`).
pub const LISTING_WAIT: Duration = Duration::from_secs(5);
/// Bodies go out this much at a time: hyper asks for the next piece only
/// once the client has taken the last, so a listing's permit is held until
/// it has (nearly) all been read.
const PIECE: usize = 64 << 10;

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Metrics,
    /// `/connections`, or what changed for agent `client_id` since its
    /// last poll.
    Connections {
        client_id: Option<String>,
    },
    Status,
    Healthz,
    NotFound,
    /// Anything but GET (and HEAD).
    MethodNotAllowed,
}

impl Route {
    /// Its answer grows with the table.
    fn is_listing(&self) -> bool {
        matches!(self, Route::Connections { .. })
    }
}

/// A request's route: the method and path only (the query names an
/// agent for `/connections`).
pub fn route(method: &Method, path: &str, query: Option<&str>) -> Route {
    if method != Method::GET && method != Method::HEAD {
        return Route::MethodNotAllowed;
    }
    match path {
        "/metrics" => Route::Metrics,
        "/connections" => Route::Connections {
            client_id: query
                .unwrap_or_default()
                .split('&')
                .find_map(|kv| kv.strip_prefix("client_id="))
                .map(str::to_owned),
        },
        "/status" => Route::Status,
        "/healthz" => Route::Healthz,
        _ => Route::NotFound,
    }
}

/// An answer: status code, content type, body.
pub struct Reply {
    pub code: u16,
    pub kind: &'static str,
    pub body: String,
}

pub const TEXT: &str = "text/plain; charset=utf-8";

impl Reply {
    pub fn text(code: u16, body: impl Into<String>) -> Reply {
        Reply { code, kind: TEXT, body: body.into() }
    }
}

/// What each route answers.
pub type Handler = Arc<dyn Fn(Route) -> Reply + Send + Sync>;

/// The `/connections` answers being made or sent, shared by every
/// connection of a server.
pub struct Listings {
    permits: Arc<Semaphore>,
    limit: usize,
    wait: Duration,
    refused: AtomicU64,
}

impl Listings {
    /// At most `limit` at once; a request waits `wait` for one to finish.
    pub fn new(limit: usize, wait: Duration) -> Arc<Listings> {
        let permits = Arc::new(Semaphore::new(limit));
        Arc::new(Listings { permits, limit, wait, refused: 0.into() })
    }

    /// How many are being made or sent now.
    pub fn sending(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Requests answered 503 because `limit` were being sent for all of
    /// their wait.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    async fn wait_for_one(&self) -> Option<OwnedSemaphorePermit> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await;
        let permit = permit.ok().and_then(Result::ok);
        if permit.is_none() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        permit
    }
}

/// A reply's body, handed out a piece at a time, holding its listing's
/// permit (if any) until the last piece is taken.
struct Pieces {
    rest: Bytes,
    permit: Option<OwnedSemaphorePermit>,
}

impl Pieces {
    fn new(body: impl Into<Bytes>, permit: Option<OwnedSemaphorePermit>) -> Pieces {
        Pieces { rest: body.into(), permit }
    }
}

impl Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.rest.is_empty() {
            self.permit = None;
            return Poll::Ready(None);
        }
        let n = self.rest.len().min(PIECE);
        Poll::Ready(Some(Ok(Frame::data(self.rest.split_to(n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// Serve one connection until the client closes it or breaks a bound.
pub async fn serve_connection<IO>(io: IO, handler: Handler, listings: Arc<Listings>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let (handler, listings) = (handler.clone(), listings.clone());
        async move {
            let route = route(req.method(), req.uri().path(), req.uri().query());
            let mut permit = None;
            if route.is_listing() {
                permit = listings.wait_for_one().await;
                if permit.is_none() {
                    return Ok(busy());
                }
            }
            let reply = tokio::task::spawn_blocking(move || handler(route))
                .await
                .unwrap_or_else(|_| Reply::text(500, "internal error\n"));
            let body = Pieces::new(reply.body, permit);
            let response = Response::builder()
                .status(reply.code)
                .header("Content-Type", reply.kind)
                .body(body)
                .unwrap_or_else(|_| Response::new(Pieces::new(Bytes::new(), None)));
            Ok::<_, Infallible>(response)
        }
    });
    let connection = http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .max_header_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
}

/// 503: every listing slot stayed taken for the whole wait.
fn busy() -> Response<Pieces> {
    let text = "too many /connections answers are being sent; try again\n";
    Response::builder()
        .status(503)
        .header("Content-Type", TEXT)
        .header("Retry-After", "1")
        .body(Pieces::new(text, None))
        .unwrap_or_else(|_| Response::new(Pieces::new(Bytes::new(), None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let get = |p: &str, q: Option<&str>| route(&Method::GET, p, q);
        assert_eq!(get("/metrics", None), Route::Metrics);
        assert_eq!(get("/connections", None), Route::Connections { client_id: None });
        assert_eq!(
            get("/connections", Some("a=1&client_id=x7")),
            Route::Connections { client_id: Some("x7".into()) }
        );
        assert_eq!(get("/nothing", None), Route::NotFound);
        assert_eq!(route(&Method::POST, "/metrics", None), Route::MethodNotAllowed);
    }

    /// Raw requests through the real server: routes, 405, 404, and a head
    /// over the bound refused.
    #[test]
    fn raw_requests_get_their_status() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let handler: Handler = Arc::new(|r| match r {
            Route::NotFound => Reply::text(404, "no\n"),
            Route::MethodNotAllowed => Reply::text(405, "no\n"),
            _ => Reply::text(200, "ok\n"),
        });
        let status = |raw: Vec<u8>| -> String {
            rt.block_on(async {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let (mut client, server) = tokio::io::duplex(1 << 20);
                let task = tokio::spawn(serve_connection(
                    server,
                    handler.clone(),
                    Listings::new(1, LISTING_WAIT),
                ));
                // No half-close: hyper would take it for the client gone.
                let _ = client.write_all(&raw).await;
                let mut out = Vec::new();
                let _ = client.read_to_end(&mut out).await;
                let _ = task.await;
                String::from_utf8_lossy(&out).lines().next().unwrap_or_default().to_owned()
            })
        };
        let close = "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let req = |line: &str| format!("{line} {close}").into_bytes();
        assert!(status(req("GET /healthz")).contains(" 200 "));
        assert!(status(req("GET /x")).contains(" 404 "));
        assert!(status(req("DELETE /metrics")).contains(" 405 "));
        assert!(status(req("POST /metrics")).contains(" 405 "));
        let long_line =
            [b"GET /".to_vec(), vec![b'a'; 2 * MAX_HEAD], b" HTTP/1.1\r\n\r\n".to_vec()];
        assert!(status(long_line.concat()).contains(" 431 "), "a long request line");
        let long_header =
            [b"GET / HTTP/1.1\r\nX: ".to_vec(), vec![b'a'; 2 * MAX_HEAD], b"\r\n\r\n".to_vec()];
        assert!(status(long_header.concat()).contains(" 431 "), "a long header");
        assert!(status(b"\x00\x01garbage\r\n\r\n".to_vec()).contains(" 400 "));
    }

    /// One request on a connection of its own, read to the end.
    async fn ask(handler: &Handler, listings: &Arc<Listings>, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64 << 10);
        let task = tokio::spawn(serve_connection(server, handler.clone(), listings.clone()));
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        client.write_all(raw.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        task.await.unwrap();
        String::from_utf8_lossy(&out).to_ascii_lowercase()
    }

    /// Clients that ask for `/connections` and never read hold its slots;
    /// past the bound others wait, then get 503; `/metrics` is never held
    /// up; a slot is free again once its client goes.
    #[test]
    fn listings_held_by_clients_that_never_read_are_bounded() {
        use tokio::io::AsyncWriteExt;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let big = "x".repeat(4 << 20);
        let handler: Handler = Arc::new(move |r| match r {
            Route::Connections { .. } => Reply::text(200, big.clone()),
            _ => Reply::text(200, "ok\n"),
        });
        let listings = Listings::new(2, Duration::from_millis(200));
        rt.block_on(async {
            let mut held = Vec::new();
            for _ in 0..2 {
                let (mut client, server) = tokio::io::duplex(64 << 10);
                let task =
                    tokio::spawn(serve_connection(server, handler.clone(), listings.clone()));
                client.write_all(b"GET /connections HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
                held.push((client, task));
            }
            for _ in 0..500 {
                if listings.sending() == 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(listings.sending(), 2, "a client that reads nothing keeps its slot");
            let third = ask(&handler, &listings, "/connections").await;
            assert!(
                third.starts_with("http/1.1 503 ") && third.contains("retry-after: 1"),
                "{third}"
            );
            assert_eq!(listings.refused(), 1);
            assert!(ask(&handler, &listings, "/metrics").await.starts_with("http/1.1 200 "));
            let (client, task) = held.pop().unwrap();
            drop(client);
            task.await.unwrap();
            assert_eq!(listings.sending(), 1, "its slot is given back");
            let whole = ask(&handler, &listings, "/connections").await;
            assert!(whole.starts_with("http/1.1 200 ") && whole.ends_with(&"x".repeat(4 << 20)));
            assert_eq!(listings.refused(), 1);
        });
    }
}
