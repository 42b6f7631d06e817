//! `serve`'s HTTP/1.1 (hyper), bounded against hostile clients: a request
//! head larger than `MAX_HEAD` is refused with 431, one not sent whole
//! within `HEAD_TIMEOUT` closes its connection (slowloris), no connection
//! outlives `CONNECTION_LIFETIME`, and the serving code only ever sees a
//! `Route`. What each route answers is the caller's
//! (`Handler`); it runs on the runtime's blocking threads, since listing
//! the connections can take a while.
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

/// The largest request head (request line and headers) served.
pub const MAX_HEAD: usize = 16 << 10;
/// The most headers in one request.
pub const MAX_HEADERS: usize = 64;
/// A request head must arrive whole within this long.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection lasts at most this long, however busy: a client that asks
/// for `/connections` and never reads the answer holds it no longer.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

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

/// Serve one connection until the client closes it or breaks a bound.
pub async fn serve_connection<IO>(io: IO, handler: Handler)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            let route = route(req.method(), req.uri().path(), req.uri().query());
            let reply = tokio::task::spawn_blocking(move || handler(route))
                .await
                .unwrap_or_else(|_| Reply::text(500, "internal error\n"));
            let response = Response::builder()
                .status(reply.code)
                .header("Content-Type", reply.kind)
                .body(Full::new(Bytes::from(reply.body)))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
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
                let task = tokio::spawn(serve_connection(server, handler.clone()));
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
}
