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

use std::cell::RefCell;
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
    /// While a compressed message is open (fragmented): what it has inflated so far.
    open: Option<usize>,
    /// A fragmented message's own inflater (the thread's serves messages of one frame), or
    /// with `keep_context` the connection's, kept from message to message.
    own: Option<Box<Decompress>>,
    keep_context: bool,
    /// Bytes of an uncompressed frame still to pass through as they come.
    passing: u64,
}

impl Inflater {
    /// Messages may inflate to at most `limit` bytes; each is inflated on its own (the
    /// sender took no context over: danmaku asks its clients for that).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            open: None,
            own: None,
            keep_context: false,
            passing: 0,
        }
    }

    /// The same for a sender that keeps its compression context from message to message
    /// (a server that did not agree to `server_no_context_takeover`): one inflater for the
    /// connection's life, ~40 KiB. For a client of such a server, such as the load
    /// generator against other servers.
    pub fn keeping_context(limit: usize) -> Self {
        Self {
            keep_context: true,
            ..Self::new(limit)
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
            OpCode::Data(Data::Text | Data::Binary) => header.rsv1 && self.open.is_none(),
            OpCode::Data(Data::Continue) => self.open.is_some(),
            OpCode::Data(_) | OpCode::Control(_) => false,
        }
    }

    /// One frame's payload of the open message, inflated (the message's end too if `last`).
    /// A message of one frame, the usual case, is inflated by the thread's inflater; only a
    /// fragmented one holds an inflater of its own (~40 KiB) until its last frame.
    fn inflate(&mut self, payload: &[u8], last: bool) -> Result<Bytes, Refused> {
        let first = self.open.is_none();
        let room = self.limit - self.open.unwrap_or(0);
        let out = if first && last && !self.keep_context {
            INFLATER.with_borrow_mut(|inflate| {
                inflate.reset(false);
                inflate_into(inflate, payload, true, room)
            })?
        } else {
            let inflate = self
                .own
                .get_or_insert_with(|| Box::new(Decompress::new(false)));
            inflate_into(inflate, payload, last, room)?
        };
        if last {
            self.open = None;
            if !self.keep_context {
                self.own = None;
            }
        } else {
            self.open = Some(self.limit - room + out.len());
        }
        Ok(Bytes::from(out))
    }
}

thread_local! {
    /// One inflater per thread for whole messages, reset for each: a new one costs ~40 KiB.
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// `payload` inflated by `inflate` (with the message's end if `last`), refused past `room`
/// bytes.
fn inflate_into(
    inflate: &mut Decompress,
    payload: &[u8],
    last: bool,
    room: usize,
) -> Result<Vec<u8>, Refused> {
    // Grown as needed up to one byte more than may be made: filling that byte is the proof
    // of a bomb. (Reserving the whole limit up front would cost a large limit's allocation
    // per frame.)
    let mut out = Vec::with_capacity((payload.len() * 4 + 64).min(room + 1));
    let tail: &[u8] = if last { &SYNC_MARKER } else { &[] };
    for input in [payload, tail] {
        let mut rest = input;
        loop {
            if out.len() == out.capacity() {
                let grow = out.capacity().max(64).min(room + 1 - out.len());
                out.reserve_exact(grow);
            }
            let (before_in, before_out) = (inflate.total_in(), out.len());
            let status = inflate
                .decompress_vec(rest, &mut out, FlushDecompress::Sync)
                .map_err(|_| Refused::Corrupt)?;
            let used = (inflate.total_in() - before_in) as usize;
            rest = &rest[used..];
            if out.len() > room {
                return Err(Refused::TooBig);
            }
            // Done with this input when it is all taken and the inflater had room to spare
            // (so it holds nothing more back).
            if status == Status::StreamEnd || (rest.is_empty() && out.len() < out.capacity()) {
                break;
            }
            if used == 0 && out.len() == before_out && out.len() < out.capacity() {
                return Err(Refused::Corrupt);
            }
        }
    }
    Ok(out)
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}
