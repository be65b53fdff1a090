//! Closes the connection after answering a request whose body was left
//! unread.
//!
//! A handler may answer before it reads the body (a refused key, a tenant
//! token on an operator route, an unknown path, a body over the cap). hyper
//! then drains what has already arrived and, if the rest has not, stops
//! reading and closes the connection once the answer is written, but that
//! answer went out without `Connection: close`. A client that reuses the
//! connection meanwhile sends its next request into a closing socket and
//! sees it dropped with no answer. Saying `Connection: close` on such an
//! answer is what HTTP/1.1 asks of a server that does not read a body
//! (RFC 9112 §9.6), and the client then opens a fresh connection instead.

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::Version;
use axum::http::header::{CONNECTION, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// Whether a request's body was read to its end.
pub struct ReadToEnd(Option<Arc<AtomicBool>>);

/// Lets the request's body report when it has been read to its end. A
/// request without a body is left as it is, and so is an HTTP/2 one: a
/// stream can be reset alone, and the header is not allowed there.
pub fn watch(request: Request) -> (Request, ReadToEnd) {
    if request.body().is_end_stream() || request.version() >= Version::HTTP_2 {
        return (request, ReadToEnd(None));
    }
    let ended = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(Watched {
            body,
            ended: ended.clone(),
        })
    });
    (request, ReadToEnd(Some(ended)))
}

impl ReadToEnd {
    /// Marks `response` to close the connection if the body was not read.
    pub fn settle(self, response: &mut Response) {
        if let Some(ended) = self.0
            && !ended.load(Ordering::Relaxed)
        {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

struct Watched {
    body: Body,
    ended: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.ended.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
