//! The per-PDU and per-screen work, without I/O: PDU framing, decoding and encoding; menu
//! screen rendering; text encoding (UCS2, unaccented GSM, SMS splitting).
//!
//! ```sh
//! cargo bench --bench codec
//! cargo test --bench codec        # each case once (a smoke test)
//! ```
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use chogate::config::TextMode;
use chogate::menu::{Lang, Menus, Target};
use chogate::smpp::frame::{Frame, FrameReader};
use chogate::smpp::pdu::{Address, Body, Pdu, Sm, tag};
use divan::Bencher;
use divan::counter::ItemsCount;

fn main() {
    divan::main();
}

/// A subscriber's answer as a USSD centre sends it: deliver_sm with the USSD TLVs.
fn ussd_pdu(seq: u32) -> Pdu {
    let mut sm = Sm {
        service_type: "USSD".into(),
        source: Address::international("84912345678"),
        dest: Address { ton: 0, npi: 1, addr: "*384#".into() },
        short_message: Bytes::from_static(b"25000"),
        ..Sm::default()
    };
    sm.tlvs.set(tag::USSD_SERVICE_OP, vec![0x12u8]);
    sm.tlvs.set(tag::ITS_SESSION_INFO, vec![7u8, 0]);
    Pdu::new(seq, Body::DeliverSm(Box::new(sm)))
}

#[divan::bench]
fn decode_deliver_sm(b: Bencher) {
    let frame = ussd_pdu(1).to_bytes().unwrap();
    b.counter(ItemsCount::new(1usize)).bench(|| Pdu::decode(divan::black_box(&frame)).unwrap());
}

#[divan::bench]
fn encode_deliver_sm(b: Bencher) {
    let pdu = ussd_pdu(1);
    let mut out = BytesMut::with_capacity(256);
    b.counter(ItemsCount::new(1usize)).bench_local(|| {
        out.clear();
        divan::black_box(&pdu).encode_into(&mut out).unwrap();
    });
}

/// 1 000 PDUs back to back, cut into frames and decoded, as a session's reader does.
#[divan::bench]
fn frame_and_decode_1000(b: Bencher) {
    let mut stream = BytesMut::new();
    for i in 0..1000 {
        ussd_pdu(i).encode_into(&mut stream).unwrap();
    }
    let stream = stream.freeze();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    b.counter(ItemsCount::new(1000usize)).bench_local(|| {
        rt.block_on(async {
            let mut reader = FrameReader::new(&stream[..], 65536);
            let mut n = 0;
            while let Some(Frame::Pdu(f)) = reader.next().await.unwrap() {
                Pdu::decode(&f).unwrap();
                n += 1;
            }
            assert_eq!(n, 1000);
        })
    });
}

fn menus() -> Menus {
    Menus::load_dir(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/menus"))).unwrap()
}

#[divan::bench(args = ["ucs2", "gsm"])]
fn render_main_menu(b: Bencher, mode: &str) {
    let m = menus();
    let mode = if mode == "ucs2" { TextMode::Ucs2 } else { TextMode::Gsm };
    let c = m.cursor("bench".into(), m.main, Target { lang: Lang::Vi, mode });
    b.counter(ItemsCount::new(1usize)).bench_local(|| m.render(divan::black_box(&c)));
}

const SCREEN: &str = "Bán 10 kg Na, giá 25000 đ/kg?\n1. Đồng ý\n2. Hủy";
const LONG_SMS: &str = "Đơn mới D000123: 10 kg Na, 250.000đ, người mua Nguyễn Văn B. Quay *384# để nhận đơn.";

#[divan::bench]
fn encode_screen_ucs2() -> chogate::text::Encoded {
    chogate::text::encode_text(divan::black_box(SCREEN), true)
}

#[divan::bench]
fn encode_screen_unaccented_gsm() -> chogate::text::Encoded {
    chogate::text::encode_text(divan::black_box(SCREEN), false)
}

#[divan::bench]
fn split_sms_ucs2() -> usize {
    chogate::text::split_sms(divan::black_box(LONG_SMS), true, 7).unwrap().1.len()
}
