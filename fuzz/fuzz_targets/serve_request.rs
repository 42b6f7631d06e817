//! `serve`'s request handling on arbitrary bytes from a client: hyper
//! with nettop's bounds (`nettop::export::http`) and its router, on an
//! in-memory connection. Never a panic; any answer is a status line with a
//! code the server may give; memory stays bounded (the allocator).
#![no_main]

#[path = "../src/bounded_alloc.rs"]
mod bounded_alloc;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nettop::export::http::{Handler, LISTING_WAIT, Listings, Reply, Route, serve_connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static ALLOC: bounded_alloc::Bounded = bounded_alloc::Bounded::new();

/// A paused clock: a client that stops half-way is timed out at once.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let handler: Handler = Arc::new(|route| match route {
        Route::NotFound => Reply::text(404, "no\n"),
        Route::MethodNotAllowed => Reply::text(405, "no\n"),
        Route::Connections { client_id: Some(id) } => Reply::text(200, id),
        _ => Reply::text(200, "ok\n"),
    });
    let out = runtime().block_on(async {
        let (mut client, server) = tokio::io::duplex(64 << 10);
        let task = tokio::spawn(serve_connection(server, handler, Listings::new(1, LISTING_WAIT)));
        let _ = client.write_all(data).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(60), client.read_to_end(&mut out)).await;
        drop(client);
        let _ = task.await;
        out
    });
    if out.is_empty() {
        return;
    }
    let line = out.split(|&b| b == b'\n').next().unwrap_or_default();
    let version = line.get(..9).filter(|v| *v == b"HTTP/1.1 " || *v == b"HTTP/1.0 ");
    let code = version.and_then(|_| line.get(9..12));
    let code = code.and_then(|c| std::str::from_utf8(c).ok()).and_then(|c| c.parse::<u16>().ok());
    assert!(
        matches!(code, Some(200 | 400 | 404 | 405 | 408 | 413 | 414 | 431 | 501 | 505)),
        "{:?}",
        String::from_utf8_lossy(line)
    );
});
