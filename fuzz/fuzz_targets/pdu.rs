//! Fuzz target: raw bytes from a peer -> `FrameReader` -> `Pdu::decode` -> `encode_into`
//! -> `Pdu::decode` again.
//!
//! The input is the byte stream a peer sends on an SMPP connection. It is read through the
//! real framing path (a `FrameReader` over `&[u8]`, driven by one current-thread tokio
//! runtime), twice: with the default `max_pdu_len` (65 536) and with a tiny one (64) so that
//! the oversized-frame skip path is exercised as well.
//!
//! Checked, besides "never panics":
//! - framing: every `Frame::Pdu` is exactly the next `command_length` octets of the input,
//!   an oversized frame is skipped by its `command_length`, the reader ends (no frame out of
//!   nothing), and the error it stops with agrees with what is left of the input;
//! - every frame that decodes re-encodes, `encode_into` appends after what the buffer held
//!   (and leaves it untouched on error), the re-encoded PDU decodes to a value equal to the
//!   first decode, and encoding that second value gives the same octets again.
//!
//! A decoded PDU that cannot be encoded again (`encode_into` fails) is a failure too. Set
//! `CHOGATE_FUZZ_LENIENT_ENCODE=1` to let `PduError::FieldTooLong` through (the round trip
//! is still checked for everything that does encode), e.g. to look past a known one.

#![no_main]

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use chogate::smpp::frame::{DISCARD_LIMIT, Frame, FrameError, FrameReader};
use chogate::smpp::pdu::{HEADER_LEN, Header, Pdu, PduError};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::{Builder, Runtime};

/// `max_pdu_len` values the stream is framed with: the configuration default, and a small
/// one that sends most inputs down the oversized-frame path.
const MAX_LENS: [u32; 2] = [65_536, 64];

/// Octets put in the output buffer before `encode_into`, to check it appends.
const PREFIX: &[u8] = b"\xAApre";

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Builder::new_current_thread().build().expect("tokio runtime"))
}

fn lenient_encode() -> bool {
    static LENIENT: OnceLock<bool> = OnceLock::new();
    *LENIENT.get_or_init(|| std::env::var_os("CHOGATE_FUZZ_LENIENT_ENCODE").is_some_and(|v| v == "1"))
}

fuzz_target!(|data: &[u8]| {
    for max_len in MAX_LENS {
        runtime().block_on(read_stream(data, max_len));
    }
});

async fn read_stream(data: &[u8], max_len: u32) {
    let mut reader = FrameReader::new(data, max_len);
    // Position in the stream of the next frame (may pass data.len() after an oversized
    // frame whose tail never came).
    let mut off: usize = 0;
    // Every frame consumes at least a header, so there cannot be more than this many.
    let max_frames = data.len() / HEADER_LEN;
    let mut frames = 0usize;
    loop {
        let next = reader.next().await;
        match next {
            Ok(Some(Frame::Pdu(frame))) => {
                let len = frame.len();
                assert!((HEADER_LEN..=max_len as usize).contains(&len), "frame of {len} octets, max {max_len}");
                assert_eq!(Some(&frame[..]), data.get(off..off + len), "frame is not the next {len} input octets");
                let header = Header::parse(&frame).expect("frame has a header");
                assert_eq!(header.command_length as usize, len);
                off += len;
                roundtrip(&frame);
            }
            Ok(Some(Frame::Oversized(header))) => {
                assert!(header.command_length > max_len && header.command_length <= DISCARD_LIMIT, "{header:?}");
                assert_eq!(Header::parse(&data[off..]), Some(header), "oversized header is not the next 16 octets");
                off += header.command_length as usize;
            }
            Ok(None) => {
                assert_eq!(off, data.len(), "clean end of stream with octets left");
                return;
            }
            Err(FrameError::UnexpectedEof(n)) => {
                assert!(n > 0, "UnexpectedEof(0)");
                assert_eq!(n, off.abs_diff(data.len()), "UnexpectedEof count at offset {off} of {}", data.len());
                return;
            }
            Err(FrameError::Unframeable { len, header }) => {
                let rest = &data[off..];
                assert!(rest.len() >= 4);
                assert_eq!(len, u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
                assert!(len < HEADER_LEN as u32 || len > DISCARD_LIMIT, "unframeable length {len}");
                assert_eq!(header, Header::parse(rest));
                return;
            }
            Err(FrameError::Io(e)) => panic!("reading a byte slice failed: {e}"),
        }
        frames += 1;
        assert!(frames <= max_frames, "{frames} frames out of {} octets", data.len());
    }
}

fn roundtrip(frame: &Bytes) {
    let Ok(first) = Pdu::decode(frame) else {
        return;
    };

    let mut out = BytesMut::from(PREFIX);
    if let Err(e) = first.encode_into(&mut out) {
        assert_eq!(&out[..], PREFIX, "encode_into failed ({e}) but changed the buffer");
        if lenient_encode() && matches!(e, PduError::FieldTooLong { .. }) {
            return;
        }
        panic!("decoded PDU does not encode again: {e}\nPDU: {first:?}\nframe: {}", hex(frame));
    }
    assert_eq!(&out[..PREFIX.len()], PREFIX, "encode_into overwrote what the buffer held");
    let encoded = out.split_off(PREFIX.len()).freeze();
    let header = Header::parse(&encoded).expect("encoded PDU has a header");
    assert_eq!(header.command_length as usize, encoded.len(), "command_length of the encoded PDU");
    assert_eq!(header.command_id, first.command_id());
    assert_eq!(header.command_status, first.status);
    assert_eq!(header.sequence, first.sequence);

    let second = match Pdu::decode(&encoded) {
        Ok(p) => p,
        Err(e) => panic!(
            "re-encoded PDU does not decode: {e:?}\nPDU: {first:?}\nframe:     {}\nre-encoded: {}",
            hex(frame),
            hex(&encoded)
        ),
    };
    assert_eq!(
        first,
        second,
        "decode -> encode -> decode changed the PDU\nframe:      {}\nre-encoded: {}",
        hex(frame),
        hex(&encoded)
    );

    let again = second.to_bytes().expect("a PDU that encoded once encodes again");
    assert_eq!(again, encoded, "encoding is not stable");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
