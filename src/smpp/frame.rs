//! Cutting a byte stream into PDU frames by `command_length`, before any decoding.
//!
//! A frame longer than the configured maximum is skipped (its header is kept so the
//! session can answer `generic_nack` with its sequence number) as long as it is not absurd;
//! a `command_length` below the header size, or beyond [`DISCARD_LIMIT`], means the stream
//! cannot be resynchronised and the connection must close.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::pdu::{HEADER_LEN, Header};

/// An oversized frame up to this many octets is read and discarded; beyond it the stream is
/// given up as garbage.
pub const DISCARD_LIMIT: u32 = 16 * 1024 * 1024;

/// What the reader produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One whole PDU, `command_length` octets.
    Pdu(Bytes),
    /// A PDU over the maximum length whose body was discarded.
    Oversized(Header),
}

/// Why the stream cannot be read on.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(std::io::Error),
    /// The peer closed the connection in the middle of a PDU.
    #[error("connection closed inside a PDU ({0} octets buffered)")]
    UnexpectedEof(usize),
    /// A `command_length` that cannot be framed: the stream is lost.
    #[error("command_length {len} cannot be framed (header {header:?})")]
    Unframeable {
        /// the declared length.
        len: u32,
        /// the header, when 16 octets were there.
        header: Option<Header>,
    },
}

// The cause is in the message, so it is not a source too (`{:#}` would print it twice).
impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Reads frames from an `AsyncRead`. [`FrameReader::next`] is cancel-safe: octets read
/// before a cancellation stay buffered.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_len: u32,
    /// Octets of an oversized frame still to throw away.
    discard: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader that accepts PDUs up to `max_len` octets.
    pub fn new(inner: R, max_len: u32) -> Self {
        FrameReader { inner, buf: BytesMut::with_capacity(16 * 1024), max_len, discard: 0 }
    }

    /// The next frame; `Ok(None)` on a clean end of stream between PDUs.
    pub async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(frame) = self.buffered()? {
                return Ok(Some(frame));
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return match self.buf.len() + self.discard {
                    0 => Ok(None),
                    n => Err(FrameError::UnexpectedEof(n)),
                };
            }
        }
    }

    /// Cuts a frame from the buffer if a whole one is there, without reading.
    pub fn buffered(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.discard > 0 {
            let n = self.discard.min(self.buf.len());
            self.buf.advance(n);
            self.discard -= n;
            if self.discard > 0 {
                return Ok(None);
            }
        }
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len < HEADER_LEN as u32 || len > DISCARD_LIMIT {
            return Err(FrameError::Unframeable { len, header: Header::parse(&self.buf) });
        }
        if len > self.max_len {
            let Some(header) = Header::parse(&self.buf) else {
                return Ok(None);
            };
            self.buf.advance(HEADER_LEN);
            self.discard = len as usize - HEADER_LEN;
            let n = self.discard.min(self.buf.len());
            self.buf.advance(n);
            self.discard -= n;
            return Ok(Some(Frame::Oversized(header)));
        }
        if self.buf.len() < len as usize {
            self.buf.reserve(len as usize - self.buf.len());
            return Ok(None);
        }
        Ok(Some(Frame::Pdu(self.buf.split_to(len as usize).freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn pdu(len: u32, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&0x15u32.to_be_bytes());
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        v.resize(len as usize, 0xAA);
        v
    }

    #[tokio::test]
    async fn frames_split_across_reads_should_be_reassembled() {
        let (mut tx, rx) = tokio::io::duplex(7);
        let mut reader = FrameReader::new(rx, 1024);
        let mut data = pdu(16, 1);
        data.extend(pdu(40, 2));
        let writer = tokio::spawn(async move {
            tx.write_all(&data).await.unwrap();
        });
        let Some(Frame::Pdu(a)) = reader.next().await.unwrap() else { panic!() };
        let Some(Frame::Pdu(b)) = reader.next().await.unwrap() else { panic!() };
        assert_eq!((a.len(), b.len()), (16, 40));
        writer.await.unwrap();
        assert!(reader.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_frame_should_be_skipped_and_the_next_one_read() {
        let mut data = pdu(5000, 9);
        data.extend(pdu(16, 10));
        let mut reader = FrameReader::new(&data[..], 1024);
        let Some(Frame::Oversized(h)) = reader.next().await.unwrap() else { panic!() };
        assert_eq!((h.sequence, h.command_length), (9, 5000));
        let Some(Frame::Pdu(next)) = reader.next().await.unwrap() else { panic!() };
        assert_eq!(Header::parse(&next).unwrap().sequence, 10);
    }

    #[tokio::test]
    async fn absurd_length_should_be_unframeable() {
        let data = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1];
        let mut reader = FrameReader::new(&data[..], 1024);
        assert!(matches!(
            reader.next().await,
            Err(FrameError::Unframeable { len: u32::MAX, header: Some(_) })
        ));
        let short = [0, 0, 0, 8, 0, 0, 0, 0x15];
        let mut reader = FrameReader::new(&short[..], 1024);
        assert!(matches!(reader.next().await, Err(FrameError::Unframeable { len: 8, .. })));
    }

    #[tokio::test]
    async fn eof_inside_a_frame_should_be_an_error() {
        let data = pdu(40, 1);
        let mut reader = FrameReader::new(&data[..20], 1024);
        assert!(matches!(reader.next().await, Err(FrameError::UnexpectedEof(20))));
    }
}
