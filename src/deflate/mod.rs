//! WebSocket compression, RFC 7692's `permessage-deflate`, made to be shared: danmaku always
//! answers with `server_no_context_takeover`, so a frame's compressed bytes depend on that
//! frame alone and one compression serves every socket that negotiated the extension, as one
//! encoding of a frame serves every socket today. It also asks for
//! `client_no_context_takeover`: each client message inflates on its own, so a connection
//! keeps no inflate window between messages (32 KiB a socket otherwise).
//!
//! - [`negotiate`]: the handshake's answer to the client's offers, or none.
//! - [`compress`] and [`compress_open`]: a frame's text as one compressed message, or open for
//!   a tail of the socket's own that [`stored`] appends uncompressed (`"skipped":n`).
//! - [`inflate`]: client frames with RSV1 set, inflated with a bounded output before
//!   tungstenite reads them.
//!
//! It imports nothing of the crate: the delivery engine compresses with it, the WebSocket
//! endpoint negotiates and inflates with it.

pub mod inflate;

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

/// The extension's name in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";

/// The bytes a sync flush ends with (an empty stored block); RFC 7692 has the sender drop
/// them from the end of a message and the receiver add them back.
const SYNC_MARKER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The compression level: a frame is compressed once for all its sockets, so a level that
/// spends a little more CPU for fewer bytes pays off from a handful of viewers on.
const LEVEL: u32 = 6;

/// The answer to a client's `Sec-WebSocket-Extensions` offers (each header value given as
/// is), or `None` when no offer can be taken: the first `permessage-deflate` offer whose
/// parameters are well formed and let frames be shared (a server window of 15 bits, the
/// only one danmaku compresses with).
pub fn negotiate<'a>(offers: impl IntoIterator<Item = &'a str>) -> Option<String> {
    offers
        .into_iter()
        .flat_map(|value| value.split(','))
        .find_map(answer)
}

/// The answer to one offer (`name; param; param=value`), if it can be taken.
fn answer(offer: &str) -> Option<String> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut server_window = None;
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (part, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None; // RFC 7692 §7.1: a repeated parameter declines the offer.
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(bits)) => {
                window_bits(bits)?;
            }
            ("server_max_window_bits", Some(bits)) => server_window = Some(window_bits(bits)?),
            _ => return None,
        }
        seen.push(name);
    }
    match server_window {
        None => Some(format!(
            "{NAME}; server_no_context_takeover; client_no_context_takeover"
        )),
        // Frames are compressed once with a 32 KiB window: a smaller one cannot share them.
        Some(15) => Some(format!(
            "{NAME}; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15"
        )),
        Some(_) => None,
    }
}

/// A window size parameter: 8 to 15, digits only.
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

thread_local! {
    /// One compressor per thread, reset for each frame: a new one costs ~256 KiB of state.
    static COMPRESSOR: RefCell<Compress> =
        RefCell::new(Compress::new(Compression::new(LEVEL), false));
}

/// `text` as the payload of one compressed message (RSV1 set on its frame), or `None` when
/// compressing does not make it smaller.
pub fn compress(text: &[u8]) -> Option<Bytes> {
    let mut out = deflate_sync(text);
    out.truncate(out.len() - SYNC_MARKER.len());
    (out.len() < text.len()).then(|| Bytes::from(out))
}

/// `body` compressed and left open, ending on a byte boundary, for a [`stored`] tail to
/// complete the message; `None` when that does not make it smaller.
pub fn compress_open(body: &[u8]) -> Option<Bytes> {
    let out = deflate_sync(body);
    (out.len() + STORED_HEADER < body.len()).then(|| Bytes::from(out))
}

/// The bytes of a stored (uncompressed) block's header.
pub const STORED_HEADER: usize = 5;

/// Appends `bytes` (at most 65,535) to `out` as a stored block, the end of a message that
/// [`compress_open`] began: a socket's own tail after the shared compressed bytes.
pub fn stored(bytes: &[u8], out: &mut impl std::io::Write) -> std::io::Result<()> {
    let len = u16::try_from(bytes.len()).expect("a tail is short");
    // BFINAL 0, BTYPE 00 (stored), padded to the byte; then LEN and its complement.
    out.write_all(&[0x00])?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&(!len).to_le_bytes())?;
    out.write_all(bytes)
}

/// Raw deflate of `input` with a sync flush: it ends with [`SYNC_MARKER`].
fn deflate_sync(input: &[u8]) -> Vec<u8> {
    COMPRESSOR.with_borrow_mut(|compressor| {
        compressor.reset();
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        loop {
            let consumed = compressor.total_in() as usize;
            let status = compressor
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .expect("deflate of a buffer in memory does not fail");
            let done = compressor.total_in() as usize == input.len()
                && out.ends_with(&SYNC_MARKER)
                && out.len() < out.capacity();
            if done || status == Status::StreamEnd {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        debug_assert!(out.ends_with(&SYNC_MARKER));
        out
    })
}

#[cfg(test)]
mod tests;
