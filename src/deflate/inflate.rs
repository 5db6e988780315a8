//! Compressed frames made plain, on their way to tungstenite (which knows no extensions):
//! frames from the byte stream are taken one by one; a message whose first frame has RSV1
//! set is inflated, frame by frame, into frames without it (same opcode, FIN and mask), and
//! everything else passes through untouched, so tungstenite still judges every rule of RFC
//! 6455 (RSV1 on a control frame or a continuation stays its protocol error).
//!
//! What a message inflates to is bounded: past `limit` bytes it is refused ([`Refused::TooBig`],
//! a deflate bomb, which the endpoint closes with 1009) without inflating further. A frame of
//! a compressed message longer than `limit` on the wire is refused the same way, before it
//! is read.

use std::io::Cursor;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Decompress, FlushDecompress, Status};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

use super::SYNC_MARKER;

/// Why a compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// It inflates (or its frame is) past the limit.
    #[error("a compressed message inflates past the frame limit")]
    TooBig,
    /// It is not valid deflate data.
    #[error("a compressed message is not valid deflate data")]
    Corrupt,
}

/// The inflating side of one connection.
pub struct Inflater {
    limit: usize,
    /// While a compressed message is open (fragmented): its inflater and what it has made.
    message: Option<Message>,
    /// Bytes of an uncompressed frame still to pass through as they come.
    passing: u64,
}

struct Message {
    inflate: Decompress,
    inflated: usize,
}

impl Inflater {
    /// Messages may inflate to at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            message: None,
            passing: 0,
        }
    }

    /// Moves what `input` holds of frames to `output`: uncompressed bytes as they come,
    /// compressed frames once whole, inflated. What is left in `input` is the start of a
    /// frame still to come.
    pub fn process(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> Result<(), Refused> {
        loop {
            if self.passing > 0 {
                let n = (self.passing as usize).min(input.len());
                output.put(input.split_to(n));
                self.passing -= n as u64;
                if self.passing > 0 {
                    return Ok(());
                }
            }
            let mut cursor = Cursor::new(&input[..]);
            let (header, length) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                // The header is not whole yet.
                Ok(None) => return Ok(()),
                // A malformed header passes on, for tungstenite to refuse.
                Err(_) => {
                    output.put(input.split());
                    return Ok(());
                }
            };
            let header_len = cursor.position() as usize;
            if !self.is_compressed(&header) {
                output.put(input.split_to(header_len));
                self.passing = length;
                continue;
            }
            if length > self.limit as u64 {
                return Err(Refused::TooBig);
            }
            if input.len() < header_len + length as usize {
                return Ok(());
            }
            input.advance(header_len);
            let mut payload = input.split_to(length as usize);
            if let Some(mask) = header.mask {
                unmask(&mut payload, mask);
            }
            let plain = self.inflate(&payload, header.is_final)?;
            let header = FrameHeader {
                rsv1: false,
                ..header
            };
            let mut out = output.writer();
            Frame::from_payload(header, plain)
                .format(&mut out)
                .expect("writing to memory does not fail");
        }
    }

    /// Whether a frame belongs to a compressed message: the first frame of a message with
    /// RSV1 set, or a continuation of such a message.
    fn is_compressed(&self, header: &FrameHeader) -> bool {
        match header.opcode {
            OpCode::Data(Data::Text | Data::Binary) => header.rsv1 && self.message.is_none(),
            OpCode::Data(Data::Continue) => self.message.is_some(),
            OpCode::Data(_) | OpCode::Control(_) => false,
        }
    }

    /// One frame's payload of the open message, inflated (the message's end too if `last`).
    fn inflate(&mut self, payload: &[u8], last: bool) -> Result<Bytes, Refused> {
        let message = self.message.get_or_insert_with(|| Message {
            inflate: Decompress::new(false),
            inflated: 0,
        });
        let room = self.limit - message.inflated;
        // Grown as needed up to one byte more than may be made: filling that byte is the
        // proof of a bomb. (Reserving the whole limit up front would cost a large limit's
        // allocation per frame.)
        let mut out = Vec::with_capacity((payload.len() * 4 + 64).min(room + 1));
        let tail: &[u8] = if last { &SYNC_MARKER } else { &[] };
        for input in [payload, tail] {
            let mut rest = input;
            loop {
                if out.len() == out.capacity() {
                    let grow = out.capacity().max(64).min(room + 1 - out.len());
                    out.reserve_exact(grow);
                }
                let (before_in, before_out) = (message.inflate.total_in(), out.len());
                let status = message
                    .inflate
                    .decompress_vec(rest, &mut out, FlushDecompress::Sync)
                    .map_err(|_| Refused::Corrupt)?;
                let used = (message.inflate.total_in() - before_in) as usize;
                rest = &rest[used..];
                if out.len() > room {
                    return Err(Refused::TooBig);
                }
                let stuck = used == 0 && out.len() == before_out;
                // Done with this input when it is all taken and the inflater had room to
                // spare (so it holds nothing more back).
                if status == Status::StreamEnd || (rest.is_empty() && out.len() < out.capacity()) {
                    break;
                }
                if stuck && out.len() < out.capacity() {
                    return Err(Refused::Corrupt);
                }
            }
        }
        message.inflated += out.len();
        if last {
            self.message = None;
        }
        Ok(Bytes::from(out))
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}
