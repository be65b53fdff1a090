//! Reading an upstream response's body, with the idle timeout between
//! pieces, and returning its connection to the pool once it is read.

use super::UpstreamError;
use super::pool::{Link, Pool};
use crate::joined::Joined;
use bytes::Bytes;
use futures_util::FutureExt;
use hyper::body::{Body, Frame, Incoming};
use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// Most bytes gathered into one piece from frames that had already
/// arrived.
const COALESCE_LIMIT: usize = 64 << 10;

/// A response body read piece by piece, each piece holding every frame that
/// had already arrived (an upstream that writes one SSE event per chunk
/// would otherwise cost one client write per event), never waiting for more
/// than the first: streaming stays as prompt as the upstream. Dropping it
/// before the end closes the connection, which cancels the upstream call.
pub struct UpstreamBody {
    body: Incoming,
    /// The connection the body arrives on, until the body ends.
    link: Option<Link>,
    pool: Arc<Pool>,
    idle: Duration,
    /// An error met while gathering, reported after the bytes before it.
    deferred: Option<UpstreamError>,
}

impl UpstreamBody {
    pub(super) fn new(body: Incoming, link: Link, pool: Arc<Pool>, idle: Duration) -> Self {
        UpstreamBody {
            body,
            link: Some(link),
            pool,
            idle,
            deferred: None,
        }
    }

    /// The next piece; `None` at the end. A silence longer than the idle
    /// timeout is an error.
    pub async fn next(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        let Some(first) = self.data().await? else {
            return Ok(None);
        };
        let mut gathered = Joined::default();
        gathered.push(first);
        while gathered.len() < COALESCE_LIMIT {
            match poll_fn(|cx| self.poll_frame(cx)).now_or_never() {
                Some(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        gathered.push(data);
                    }
                }
                Some(Some(Err(error))) => {
                    self.link = None;
                    self.deferred = Some(UpstreamError::Broken(error.to_string()));
                    break;
                }
                // The end is seen again by the next call; nothing more has
                // arrived.
                Some(None) | None => break,
            }
        }
        Ok(Some(gathered.into_bytes()))
    }

    /// The whole rest of the body, of at most `limit` bytes. Frame by
    /// frame: gathering what already arrived (see [`UpstreamBody::next`])
    /// saves nothing when everything is kept until the end anyway.
    pub async fn read_all(&mut self, limit: usize) -> Result<Bytes, UpstreamError> {
        let mut collected = Joined::default();
        while let Some(data) = self.data().await? {
            if collected.len() + data.len() > limit {
                self.link = None;
                return Err(UpstreamError::Broken(format!(
                    "response larger than {limit} bytes"
                )));
            }
            collected.push(data);
        }
        Ok(collected.into_bytes())
    }

    /// The next non-empty data frame, waiting at most the idle timeout.
    async fn data(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        if let Some(error) = self.deferred.take() {
            return Err(error);
        }
        loop {
            // The clock starts at the first wait: most frames of an answer
            // are there already, and then no timer is made at all.
            let mut timer = pin!(None::<Sleep>);
            let frame = poll_fn(|cx| match self.poll_frame(cx) {
                Poll::Ready(frame) => Poll::Ready(Ok(frame)),
                Poll::Pending => {
                    if timer.is_none() {
                        timer.set(Some(tokio::time::sleep(self.idle)));
                    }
                    let timer = timer.as_mut().as_pin_mut().expect("set above");
                    timer.poll(cx).map(Err)
                }
            })
            .await;
            match frame {
                Err(()) => {
                    self.link = None;
                    return Err(UpstreamError::Timeout(self.idle));
                }
                Ok(None) => {
                    if let Some(link) = self.link.take() {
                        self.pool.give_back(link);
                    }
                    return Ok(None);
                }
                Ok(Some(Err(error))) => {
                    self.link = None;
                    return Err(UpstreamError::Broken(error.to_string()));
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The body is polled before the connection is driven, and again
    /// after. hyper's body channel holds one frame: a frame already waiting
    /// (a short body arrives with the head) is taken without a drive, and
    /// once it is taken the drive can deliver the next one, or the end,
    /// within this same poll.
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        match &mut self.link {
            Some(link) if frame.is_pending() => {
                link.drive(cx);
                Pin::new(&mut self.body).poll_frame(cx)
            }
            _ => frame,
        }
    }
}
