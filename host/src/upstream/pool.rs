//! Upstream connections kept open between requests, one set per thread and
//! origin. A connection has no task of its own: the task of the request
//! using it drives it, polling it with that request's response and body.
//! Relaying a frame then wakes one task instead of handing it from a
//! connection task to the request's, and a request that is abandoned drops,
//! hence closes, its connection, which is what cancels the upstream call.

use bytes::Bytes;
use crossbeam_utils::CachePadded;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use hyper::{Request, Response};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};
use thread_local::ThreadLocal;
use tokio::net::TcpStream;

pub type Io = MaybeHttpsStream<TokioIo<TcpStream>>;
type Body = Full<Bytes>;

/// One HTTP/1.1 connection to an upstream origin.
pub struct Link {
    /// The origin's pool key.
    key: Arc<str>,
    sender: http1::SendRequest<Body>,
    /// `None` once it finished (closed or failed). Boxed: it holds the TLS
    /// state, and a request's future would otherwise carry (and move) it
    /// inline.
    connection: Option<Box<http1::Connection<Io, Body>>>,
}

impl Link {
    pub fn new(
        key: Arc<str>,
        sender: http1::SendRequest<Body>,
        connection: http1::Connection<Io, Body>,
    ) -> Self {
        Link {
            key,
            sender,
            connection: Some(Box::new(connection)),
        }
    }

    /// Does the reading and writing the connection can do now; every poll
    /// of the request on it calls this first.
    pub fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(connection) = &mut self.connection
            && Pin::new(&mut **connection).poll(cx).is_ready()
        {
            // Its outcome also reaches the request's response or body,
            // which report it. Dropped, it hands back a request it had not
            // begun to send: an upstream closing an idle connection ends it
            // cleanly, without failing what is still queued.
            self.connection = None;
        }
    }

    /// Sends `request` and waits for the response's head. A request the
    /// connection ended before beginning to send comes back with the
    /// error.
    pub async fn exchange(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Body>>> {
        let mut response = pin!(self.sender.try_send_request(request));
        poll_fn(|cx| {
            self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }

    /// Whether another request may go on it: still open, and done with
    /// the last one. Processes what already arrived first, such as the
    /// upstream closing it while it sat idle.
    fn reusable(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()));
        self.ready()
    }

    /// Whether another request may go on it, as of its last drive.
    fn ready(&self) -> bool {
        self.connection.is_some() && self.sender.is_ready()
    }
}

struct Idle {
    link: Link,
    since: Instant,
}

/// One thread's idle connections.
struct Shelf {
    /// Keyed by origin, which the operator configures: the fast hash
    /// needs no defence against keys chosen to collide.
    links: foldhash::HashMap<Arc<str>, Vec<Idle>>,
    /// When the connections of every origin were last checked.
    swept: Instant,
}

impl Default for Shelf {
    fn default() -> Self {
        Shelf {
            links: foldhash::HashMap::default(),
            swept: Instant::now(),
        }
    }
}

impl Shelf {
    /// Once every `keep`, drops the connections of every origin that
    /// expired or that the upstream closed: those of an origin no request
    /// goes to any more (a channel removed, a quiet one) would otherwise
    /// stay open, or half-closed, for good.
    fn sweep(&mut self, now: Instant, keep: Duration) {
        if now.duration_since(self.swept) < keep {
            return;
        }
        self.swept = now;
        self.links.retain(|_, links| {
            links.retain_mut(|idle| now.duration_since(idle.since) < keep && idle.link.reusable());
            !links.is_empty()
        });
    }
}

/// The idle connections, per thread so that taking and returning one
/// never contends, each shelf on cache lines of its own (the threads'
/// shelves are allocated side by side).
pub struct Pool {
    shelves: ThreadLocal<CachePadded<RefCell<Shelf>>>,
    /// How long an idle connection is kept.
    keep: Duration,
}

impl Pool {
    pub fn new(keep: Duration) -> Self {
        Pool {
            shelves: ThreadLocal::new(),
            keep,
        }
    }

    /// The most recently used connection to the origin `key` that can take
    /// a request, if any.
    pub fn take(&self, key: &str) -> Option<Link> {
        let mut shelf = self.shelves.get_or_default().borrow_mut();
        let now = Instant::now();
        shelf.sweep(now, self.keep);
        let links = shelf.links.get_mut(key)?;
        while let Some(Idle { mut link, since }) = links.pop() {
            if now.duration_since(since) >= self.keep {
                // The rest went idle even earlier.
                links.clear();
                break;
            }
            if link.reusable() {
                return Some(link);
            }
        }
        None
    }

    /// Keeps `link` for the next request to its origin, unless it cannot
    /// take one. Not driven again: it comes back as its answer ends, which
    /// its last drive delivered (a closing answer leaves it not ready), and
    /// whatever arrives while it waits is processed when it is taken.
    pub fn give_back(&self, link: Link) {
        if !link.ready() {
            return;
        }
        let mut shelf = self.shelves.get_or_default().borrow_mut();
        let now = Instant::now();
        shelf.sweep(now, self.keep);
        let links = match shelf.links.get_mut(&link.key) {
            Some(links) => links,
            None => shelf.links.entry(link.key.clone()).or_default(),
        };
        links.push(Idle { link, since: now });
    }
}
