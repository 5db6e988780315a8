//! What leaves by the WebSocket: the bytes handed to sockets, by whether the socket
//! negotiated compression; the compressions made (each once per frame, whatever the number
//! of sockets that share it); the client messages refused while inflating them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a client's compressed message was refused (the connection closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateRefusal {
    /// It inflated past the frame limit: a deflate bomb (1009).
    TooBig,
    /// It was not valid deflate data (1007).
    Corrupt,
}

impl InflateRefusal {
    const ALL: [Self; 2] = [Self::TooBig, Self::Corrupt];

    fn as_str(self) -> &'static str {
        match self {
            Self::TooBig => "too_big",
            Self::Corrupt => "corrupt",
        }
    }
}

#[derive(Default)]
pub struct Egress {
    /// Bytes handed to sockets without the extension, and with it.
    plain_bytes: AtomicU64,
    deflate_bytes: AtomicU64,
    compressed: AtomicU64,
    refused: [AtomicU64; InflateRefusal::ALL.len()],
}

impl Egress {
    /// Bytes (headers included) handed to sockets: `deflate` for sockets that negotiated
    /// compression, whether or not each frame was compressed.
    pub fn written(&self, deflate: bool, bytes: u64) {
        let counter = if deflate {
            &self.deflate_bytes
        } else {
            &self.plain_bytes
        };
        if bytes > 0 {
            counter.fetch_add(bytes, Relaxed);
        }
    }

    pub fn frame_compressed(&self) {
        self.compressed.fetch_add(1, Relaxed);
    }

    pub fn inflate_refused(&self, why: InflateRefusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    /// `(socket kind, bytes)`: `plain` and `deflate`.
    pub fn bytes_by_kind(&self) -> [(&'static str, u64); 2] {
        [
            ("plain", self.plain_bytes.load(Relaxed)),
            ("deflate", self.deflate_bytes.load(Relaxed)),
        ]
    }

    pub fn frames_compressed(&self) -> u64 {
        self.compressed.load(Relaxed)
    }

    pub fn inflate_refused_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        InflateRefusal::ALL
            .iter()
            .zip(&self.refused)
            .map(|(r, n)| (r.as_str(), n.load(Relaxed)))
    }
}
