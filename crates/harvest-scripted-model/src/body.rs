//! A response body fed from a channel, so the SSE stream can pause between events and a
//! broken stream can be simulated by ending it with an error.

use bytes::Bytes;
use hyper::body::{Body, Frame};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

pub enum Chunk {
    Data(Bytes),
    /// Abort the response: the client sees the connection drop mid-stream.
    Break,
}

pub struct ChannelBody {
    rx: mpsc::Receiver<Chunk>,
}

impl ChannelBody {
    pub fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        ChannelBody { rx }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("scripted broken stream")]
pub struct Broken;

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Broken;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Broken>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Chunk::Data(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Chunk::Break)) => Poll::Ready(Some(Err(Broken))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
