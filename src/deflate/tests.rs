use std::io::Cursor;

use bytes::{Bytes, BytesMut};
use flate2::{Decompress, FlushDecompress};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

use super::inflate::{Inflater, Refused};
use super::*;

const BASE: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn offers_browsers_and_libraries_make_are_taken() {
    // Chromium, Firefox, Node's ws and Python's websockets.
    assert_eq!(
        negotiate(["permessage-deflate; client_max_window_bits"]).as_deref(),
        Some(BASE)
    );
    assert_eq!(
        negotiate(["permessage-deflate; client_max_window_bits=15; server_no_context_takeover"])
            .as_deref(),
        Some(BASE)
    );
    assert_eq!(negotiate(["Permessage-Deflate"]).as_deref(), Some(BASE));
    assert_eq!(
        negotiate(["permessage-deflate; server_max_window_bits=15"]).as_deref(),
        Some(format!("{BASE}; server_max_window_bits=15").as_str())
    );
}

#[test]
fn offers_that_cannot_share_frames_or_are_malformed_are_declined() {
    assert_eq!(negotiate(Vec::<&str>::new()), None);
    assert_eq!(negotiate(["x-webkit-deflate-frame"]), None);
    // A smaller server window cannot use the frames compressed for everyone.
    assert_eq!(
        negotiate(["permessage-deflate; server_max_window_bits=10"]),
        None
    );
    for bad in [
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=+9",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; unknown",
    ] {
        assert_eq!(negotiate([bad]), None, "{bad}");
    }
    // The next offer, in a list or another header line, is taken.
    assert_eq!(
        negotiate(["permessage-deflate; server_max_window_bits=9, permessage-deflate"]).as_deref(),
        Some(BASE)
    );
    assert_eq!(
        negotiate(["foo", "permessage-deflate"]).as_deref(),
        Some(BASE)
    );
}

/// What a receiver makes of a message's payload (RFC 7692 §7.2.2).
fn receive(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&SYNC_MARKER);
    let mut inflate = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    inflate
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(inflate.total_in() as usize, input.len());
    out
}

fn chat_frame(comments: usize) -> Vec<u8> {
    let comment = r#"{"id":"1700000000000-0","user":{"id":"u1","name":"viewer one"},"text":"what a goal, did you see that?","kind":"user","ts":1700000000000}"#;
    let all = vec![comment; comments].join(",");
    format!(r#"{{"type":"comments","comments":[{all}]}}"#).into_bytes()
}

#[test]
fn a_compressed_frame_inflates_to_its_text_and_is_smaller() {
    let text = chat_frame(10);
    let payload = compress(&text).unwrap();
    assert!(
        payload.len() * 4 < text.len(),
        "{} of {}",
        payload.len(),
        text.len()
    );
    assert_eq!(receive(&payload), text);
    // Nothing to gain: left plain.
    assert_eq!(compress(b"{}"), None);
}

#[test]
fn an_open_frame_takes_a_tail_of_its_own() {
    let text = chat_frame(5);
    let body = &text[..text.len() - 1];
    let open = compress_open(body).unwrap();
    for tail in [&b"}"[..], br#","skipped":12}"#] {
        let mut payload = open.to_vec();
        stored(tail, &mut payload).unwrap();
        assert_eq!(payload.len(), open.len() + STORED_HEADER + tail.len());
        let mut expected = body.to_vec();
        expected.extend_from_slice(tail);
        assert_eq!(receive(&payload), expected);
    }
}

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A client frame: masked, RSV1 as given.
fn client_frame(opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        is_final: fin,
        rsv1,
        opcode,
        mask: Some(MASK),
        ..FrameHeader::default()
    };
    let mut out = Vec::new();
    Frame::from_payload(header, Bytes::copy_from_slice(payload))
        .format(&mut out)
        .unwrap();
    out
}

/// The frames in `bytes`: (opcode, fin, rsv1, unmasked payload).
fn frames(bytes: &[u8]) -> Vec<(OpCode, bool, bool, Vec<u8>)> {
    let mut cursor = Cursor::new(bytes);
    let mut out = Vec::new();
    while (cursor.position() as usize) < bytes.len() {
        let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        let start = cursor.position() as usize;
        let mut payload = bytes[start..start + len as usize].to_vec();
        let mask = header.mask.expect("client frames stay masked");
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        cursor.set_position((start + len as usize) as u64);
        out.push((header.opcode, header.is_final, header.rsv1, payload));
    }
    out
}

fn run(inflater: &mut Inflater, wire: &[u8]) -> Result<Vec<u8>, Refused> {
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    // A byte at a time: frames split anywhere come out whole and in order.
    for byte in wire {
        input.extend_from_slice(&[*byte]);
        inflater.process(&mut input, &mut output)?;
    }
    assert!(input.is_empty());
    Ok(output.to_vec())
}

#[test]
fn compressed_messages_come_out_plain_and_the_rest_untouched() {
    let text = br#"{"type":"comment","text":"hello hello hello hello","ref":"a"}"#;
    let payload = compress(text).unwrap();
    let (first, second) = payload.split_at(payload.len() / 2);
    let mut wire = client_frame(OpCode::Data(Data::Text), true, true, &payload);
    // A fragmented compressed message with a ping between its frames.
    wire.extend(client_frame(OpCode::Data(Data::Text), false, true, first));
    wire.extend(client_frame(
        OpCode::Control(Control::Ping),
        true,
        false,
        b"p",
    ));
    wire.extend(client_frame(
        OpCode::Data(Data::Continue),
        true,
        false,
        second,
    ));
    // An uncompressed message, and RSV1 on a control frame, pass as they are.
    wire.extend(client_frame(
        OpCode::Data(Data::Text),
        true,
        false,
        b"plain",
    ));
    wire.extend(client_frame(
        OpCode::Control(Control::Ping),
        true,
        true,
        b"x",
    ));
    let out = frames(&run(&mut Inflater::new(4096), &wire).unwrap());
    let text_op = OpCode::Data(Data::Text);
    assert_eq!(out[0], (text_op, true, false, text.to_vec()));
    assert_eq!(out[1].0, text_op);
    assert!(!out[1].1 && !out[1].2);
    assert_eq!(
        out[2],
        (OpCode::Control(Control::Ping), true, false, b"p".to_vec())
    );
    assert_eq!(out[3].0, OpCode::Data(Data::Continue));
    let mut joined = out[1].3.clone();
    joined.extend_from_slice(&out[3].3);
    assert_eq!(joined, text);
    assert_eq!(out[4], (text_op, true, false, b"plain".to_vec()));
    assert_eq!(
        out[5],
        (OpCode::Control(Control::Ping), true, true, b"x".to_vec())
    );
}

#[test]
fn a_deflate_bomb_is_refused_without_inflating_it() {
    let bomb = compress(&vec![b'a'; 1 << 20]).unwrap();
    assert!(bomb.len() < 4096, "{}", bomb.len());
    let wire = client_frame(OpCode::Data(Data::Text), true, true, &bomb);
    assert_eq!(run(&mut Inflater::new(4096), &wire), Err(Refused::TooBig));
    // Exactly the limit inflates; one byte more does not.
    let at = compress(&vec![b'a'; 4096]).unwrap();
    let wire = client_frame(OpCode::Data(Data::Text), true, true, &at);
    assert!(run(&mut Inflater::new(4096), &wire).is_ok());
    let over = compress(&vec![b'a'; 4097]).unwrap();
    let wire = client_frame(OpCode::Data(Data::Text), true, true, &over);
    assert_eq!(run(&mut Inflater::new(4096), &wire), Err(Refused::TooBig));
    // Fragments add up.
    let (a, b) = over.split_at(over.len() / 2);
    let mut wire = client_frame(OpCode::Data(Data::Text), false, true, a);
    wire.extend(client_frame(OpCode::Data(Data::Continue), true, false, b));
    assert_eq!(run(&mut Inflater::new(4096), &wire), Err(Refused::TooBig));
}

#[test]
fn long_or_corrupt_compressed_frames_are_refused() {
    let long = client_frame(OpCode::Data(Data::Text), true, true, &[0; 5000]);
    let mut inflater = Inflater::new(4096);
    let mut input = BytesMut::from(&long[..10]);
    assert_eq!(
        inflater.process(&mut input, &mut BytesMut::new()),
        Err(Refused::TooBig),
        "refused on its header"
    );
    let corrupt = client_frame(OpCode::Data(Data::Text), true, true, &[0xff; 16]);
    assert_eq!(
        run(&mut Inflater::new(4096), &corrupt),
        Err(Refused::Corrupt)
    );
}

#[test]
fn a_message_many_times_its_wire_size_inflates_whole_under_a_large_limit() {
    let text: Vec<u8> = (0..200_000u32)
        .map(|i| b"abcdefgh"[(i % 8) as usize])
        .collect();
    let payload = compress(&text).unwrap();
    assert!(payload.len() * 100 < text.len());
    let wire = client_frame(OpCode::Data(Data::Text), true, true, &payload);
    let mut input = BytesMut::from(&wire[..]);
    let mut output = BytesMut::new();
    Inflater::new(1 << 20)
        .process(&mut input, &mut output)
        .unwrap();
    assert_eq!(frames(&output)[0].3, text);
}

#[test]
fn a_sender_that_keeps_its_context_is_read_by_an_inflater_that_keeps_it_too() {
    // One compressor for two messages, as a server without `server_no_context_takeover`.
    let mut deflate = flate2::Compress::new(flate2::Compression::default(), false);
    let text = br#"{"type":"comments","comments":[{"text":"the same words again and again"}]}"#;
    let mut wire = Vec::new();
    for _ in 0..2 {
        let mut out = Vec::with_capacity(512);
        deflate
            .compress_vec(text, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        out.truncate(out.len() - SYNC_MARKER.len());
        let header = FrameHeader {
            rsv1: true,
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        Frame::from_payload(header, Bytes::from(out))
            .format(&mut wire)
            .unwrap();
    }
    let mut input = BytesMut::from(&wire[..]);
    let mut output = BytesMut::new();
    Inflater::keeping_context(4096)
        .process(&mut input, &mut output)
        .unwrap();
    let mut cursor = Cursor::new(&output[..]);
    for _ in 0..2 {
        let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert!(!header.rsv1);
        let start = cursor.position() as usize;
        assert_eq!(&output[start..start + len as usize], text);
        cursor.set_position(start as u64 + len);
    }
    // Read message by message, the second refers back into the first: refused, not misread.
    let mut input = BytesMut::from(&wire[..]);
    assert_eq!(
        Inflater::new(4096).process(&mut input, &mut BytesMut::new()),
        Err(Refused::Corrupt)
    );
}
