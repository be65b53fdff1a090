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
//!
//! A request without a body needs nothing, and neither does an HTTP/2 one:
//! a stream can be reset alone, and the header is not allowed there.

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

/// A request body that remembers whether it was read to its end, in a flag
/// of its own when its reader keeps it ([`OwnBody`]), in a shared one when
/// it goes into a request the router's handlers take ([`watch`]).
pub struct Watched<F> {
    body: Body,
    ended: F,
}

/// Where a [`Watched`] body marks its end.
pub trait EndFlag {
    fn set(&mut self);
    fn is_set(&self) -> bool;
}

impl EndFlag for bool {
    fn set(&mut self) {
        *self = true;
    }

    fn is_set(&self) -> bool {
        *self
    }
}

impl EndFlag for Arc<AtomicBool> {
    fn set(&mut self) {
        self.store(true, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.load(Ordering::Relaxed)
    }
}

/// The body of a request its handler reads itself (the call routes): no
/// flag to share and no second boxed body layer.
pub type OwnBody = Watched<bool>;

impl OwnBody {
    pub fn new(version: Version, body: Body) -> Self {
        let ended = needs_nothing(version, &body);
        Watched { body, ended }
    }

    /// Marks `response` to close the connection if the body was not read.
    pub fn settle(&self, response: &mut Response) {
        settle(&self.ended, response);
    }
}

fn needs_nothing(version: Version, body: &Body) -> bool {
    body.is_end_stream() || version >= Version::HTTP_2
}

fn settle(ended: &impl EndFlag, response: &mut Response) {
    if !ended.is_set() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
}

/// Whether a request's body, handed on inside the request, was read to its
/// end.
pub struct ReadToEnd(Option<Arc<AtomicBool>>);

/// Lets the request's body report when it has been read to its end.
pub fn watch(request: Request) -> (Request, ReadToEnd) {
    if needs_nothing(request.version(), request.body()) {
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
        if let Some(ended) = self.0 {
            settle(&ended, response);
        }
    }
}

impl<F: EndFlag + Unpin> HttpBody for Watched<F> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.ended.set();
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
