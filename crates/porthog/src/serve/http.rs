//! The HTTP side of `serve`: hyper's HTTP/1 server on a single-threaded tokio runtime. GET (or
//! HEAD) `/metrics` answers the latest exposition text, `/` the page `run` wrote, anything else
//! 404.
//! Nothing here waits for a collection: each answer is a copy of text rendered beforehand.

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::Latest;
use crate::present::metrics;

pub fn serve(listener: std::net::TcpListener, latest: Latest, page: Arc<str>) -> Result<u8> {
    listener.set_nonblocking(true).context("cannot make the listening socket non-blocking")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .context("cannot register the listening socket")?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of fds (a scrape storm) or a connection reset before accept: keep going.
                Err(e) => {
                    eprintln!("porthog: warning: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (latest, page) = (latest.clone(), page.clone());
            tokio::task::spawn(async move {
                let service = service_fn(move |req| answer(req, latest.clone(), page.clone()));
                // A client that hangs up mid-answer is its own business.
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn answer(
    req: Request<Incoming>,
    latest: Latest,
    page: Arc<str>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into()));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            let text = latest.get();
            let mut response = Response::new(Full::new(Bytes::from(text.as_bytes().to_vec())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
            response
        }
        "/" => {
            let mut response = Response::new(Full::new(Bytes::from(page.as_bytes().to_vec())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            response
        }
        _ => plain(StatusCode::NOT_FOUND, "not found: try /metrics\n".into()),
    })
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
