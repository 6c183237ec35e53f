//! chogate as SMPP server: USSD centres bind to it. Real daemon, port 0, real TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use chogate::smpp::pdu::{Address, Bind, BindKind, Body, DataSm, Pdu, Sm, cmd, tag};
use chogate::smpp::status;
use common::{ACCOUNT, PASSWORD, Peer, TestDaemon, base_config, base_config_with, raw_pdu};

fn ussd_sm() -> Box<Sm> {
    let mut sm = Sm {
        service_type: "USSD".into(),
        source: Address::international("84912345678"),
        dest: Address { ton: 0, npi: 0, addr: "*384#".into() },
        short_message: bytes::Bytes::from_static(b"*384#"),
        ..Sm::default()
    };
    sm.tlvs.set(tag::USSD_SERVICE_OP, vec![1u8]);
    Box::new(sm)
}

#[tokio::test]
async fn bind_with_right_password_should_succeed_and_answer_enquire_link() {
    let d = TestDaemon::start(base_config("")).await;
    let mut p = Peer::connect(d.smpp).await;
    let resp = p.bind(BindKind::Transceiver, ACCOUNT, PASSWORD).await;
    assert_eq!(resp.status, status::ESME_ROK);
    let Body::BindResp(r) = &resp.body else { panic!("{resp:?}") };
    assert_eq!(r.kind, BindKind::Transceiver);
    assert_eq!(r.system_id, "chogate");
    assert_eq!(r.tlvs.get_u8(tag::SC_INTERFACE_VERSION), Some(0x34));
    p.ping().await;
    d.stop().await;
}

#[tokio::test]
async fn every_bind_kind_should_be_accepted() {
    let d = TestDaemon::start(base_config("")).await;
    for kind in [BindKind::Transmitter, BindKind::Receiver, BindKind::Transceiver] {
        let mut p = Peer::connect(d.smpp).await;
        let resp = p.bind(kind, "other", "pw2").await;
        assert_eq!(resp.status, status::ESME_ROK, "{kind:?}");
        assert_eq!(resp.command_id(), Body::Bind(Bind::new(kind, "", "")).command_id() | cmd::RESP);
    }
    d.stop().await;
}

#[tokio::test]
async fn wrong_password_should_get_invpaswd_and_close() {
    let d = TestDaemon::start(base_config("")).await;
    for (sid, pw) in [(ACCOUNT, "wrong"), ("nobody", PASSWORD)] {
        let mut p = Peer::connect(d.smpp).await;
        let resp = p.bind(BindKind::Transceiver, sid, pw).await;
        assert_eq!(resp.status, status::ESME_RINVPASWD, "{sid}/{pw}");
        p.expect_closed().await;
    }
    d.stop().await;
}

/// Binds one connection each; the status and how long the answer took.
async fn timed_bind(addr: std::net::SocketAddr, password: &str) -> (u32, Duration) {
    let mut p = Peer::connect(addr).await;
    let t = Instant::now();
    let resp = p.bind(BindKind::Transceiver, ACCOUNT, password).await;
    (resp.status, t.elapsed())
}

#[tokio::test]
async fn right_and_wrong_passwords_should_wait_alike_and_the_address_be_locked_after_the_limit() {
    let d = TestDaemon::start(base_config_with(
        "failed_bind_delay_ms = 150\nfailed_bind_max_delay_ms = 2000\nfailed_bind_limit = 4",
        "",
    ))
    .await;
    // No failure yet: answered at once, right or wrong (nothing to tell apart).
    assert_eq!(timed_bind(d.smpp, "wrong").await.0, status::ESME_RINVPASWD);
    // One failure: the right password waits what a wrong one would (150 ms), then two (300 ms).
    let (st, right) = timed_bind(d.smpp, PASSWORD).await;
    assert_eq!(st, status::ESME_ROK);
    assert!(right >= Duration::from_millis(150), "{right:?}");
    let (st, wrong) = timed_bind(d.smpp, "wrong").await;
    assert_eq!(st, status::ESME_RINVPASWD);
    assert!(wrong >= Duration::from_millis(150), "{wrong:?}");
    let (_, wrong) = timed_bind(d.smpp, "wrong").await;
    assert!(wrong >= Duration::from_millis(300), "{wrong:?}");
    // The fourth failure locks the address out: the right password is refused now.
    assert_eq!(timed_bind(d.smpp, "wrong").await.0, status::ESME_RINVPASWD);
    assert_eq!(timed_bind(d.smpp, PASSWORD).await.0, status::ESME_RBINDFAIL);
    d.stop().await;
}

/// The attack the issue measured: 50 guesses at once from one address. Exactly
/// `failed_bind_limit` of them are judged; every other is refused as locked out, and so is
/// the password itself, tried last.
#[tokio::test]
async fn parallel_guessing_from_one_address_should_find_no_password() {
    let mut config = base_config_with("failed_bind_limit = 5\nfailed_bind_max_delay_ms = 1000", "");
    config.smpp_server.max_connections_per_ip = 64;
    let d = TestDaemon::start(config).await;
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..50 {
        let addr = d.smpp;
        guesses.spawn(async move {
            let mut p = Peer::connect(addr).await;
            p.bind(BindKind::Transceiver, ACCOUNT, &format!("guess{i}")).await.status
        });
    }
    let mut answered = Vec::new();
    while let Some(r) = guesses.join_next().await {
        answered.push(r.unwrap());
    }
    let wrong = answered.iter().filter(|st| **st == status::ESME_RINVPASWD).count();
    let locked = answered.iter().filter(|st| **st == status::ESME_RBINDFAIL).count();
    assert_eq!((wrong, locked), (5, 45), "{answered:?}");
    assert_eq!(timed_bind(d.smpp, PASSWORD).await.0, status::ESME_RBINDFAIL);
    d.stop().await;
}

#[tokio::test]
async fn a_bind_from_an_address_the_account_does_not_allow_should_be_refused() {
    let extra = r#"
[[smpp_server.accounts]]
system_id = "pinned"
password = "pw"
allowed_ips = ["192.0.2.0/24", "2001:db8::/32"]
[[smpp_server.accounts]]
system_id = "local"
password = "pw"
allowed_ips = ["127.0.0.0/8"]
"#;
    let d = TestDaemon::start(base_config(extra)).await;
    let mut p = Peer::connect(d.smpp).await;
    // Refused like a wrong password: nothing tells the peer the password was right.
    assert_eq!(p.bind(BindKind::Transceiver, "pinned", "pw").await.status, status::ESME_RINVPASWD);
    p.expect_closed().await;
    let mut p = Peer::connect(d.smpp).await;
    assert_eq!(p.bind(BindKind::Transceiver, "local", "pw").await.status, status::ESME_ROK);
    d.stop().await;
}

#[tokio::test]
async fn a_message_for_a_number_outside_the_accounts_prefixes_should_be_refused() {
    let extra = r#"
[[smpp_server.accounts]]
system_id = "viettel"
password = "pw"
msisdn_prefixes = ["8498", "8497"]
"#;
    let d = TestDaemon::start(base_config(extra)).await;
    let mut p = Peer::connect(d.smpp).await;
    assert_eq!(p.bind(BindKind::Transceiver, "viettel", "pw").await.status, status::ESME_ROK);
    // 84912345678 is not one of this account's subscribers.
    let seq = p.request(Body::SubmitSm(ussd_sm())).await;
    let resp = p.recv_skip_enquire().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (seq, status::ESME_RINVSRCADR));
    // One of its own is served.
    let mut sm = ussd_sm();
    sm.source = Address::international("84981234567");
    let seq = p.request(Body::SubmitSm(sm)).await;
    let resp = p.recv_skip_enquire().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (seq, status::ESME_ROK));
    let screen = p.recv_skip_enquire().await.unwrap();
    assert!(matches!(screen.body, Body::DeliverSm(_)), "{screen:?}");
    d.stop().await;
}

#[tokio::test]
async fn a_delivery_receipt_from_a_ussd_centre_should_be_refused() {
    let d = TestDaemon::start(base_config("")).await;
    let mut p = Peer::bound(d.smpp).await;
    let receipt = Sm {
        source: Address::international("84912345678"),
        dest: Address::international("384"),
        esm_class: 0x04,
        short_message: bytes::Bytes::from_static(
            b"id:1 sub:001 dlvrd:001 submit date:2612080000 done date:2612080000 stat:DELIVRD err:000 text:",
        ),
        ..Sm::default()
    };
    let seq = p.request(Body::DeliverSm(Box::new(receipt))).await;
    let resp = p.recv_skip_enquire().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (seq, status::ESME_RINVESMCLASS));
    p.ping().await;
    d.stop().await;
}

#[tokio::test]
async fn connections_over_the_per_address_limit_should_be_closed_at_once() {
    let mut config = base_config("");
    config.smpp_server.max_connections_per_ip = 2;
    let d = TestDaemon::start(config).await;
    let mut first = Peer::bound(d.smpp).await;
    let mut second = Peer::connect(d.smpp).await;
    let mut third = Peer::connect(d.smpp).await;
    third.expect_closed().await;
    // The two within the limit live on; once one goes, a new one is served.
    second.ping().await;
    first.ping().await;
    drop(first);
    let mut again = loop {
        // The daemon frees the slot when it sees the close: until then a new connection
        // is closed as the third was.
        let mut p = Peer::connect(d.smpp).await;
        let seq = p.request(Body::Bind(Bind::new(BindKind::Transceiver, ACCOUNT, PASSWORD))).await;
        if let Some(resp) = p.recv().await {
            assert_eq!((resp.sequence, resp.status), (seq, status::ESME_ROK));
            break p;
        }
    };
    again.ping().await;
    d.stop().await;
}

#[tokio::test]
async fn connections_over_the_total_limit_should_wait_for_a_free_slot() {
    let mut config = base_config("");
    config.smpp_server.max_connections = 1;
    let d = TestDaemon::start(config).await;
    let mut first = Peer::bound(d.smpp).await;
    // The second connects (the kernel's backlog takes it) but is not served yet.
    let mut second = Peer::connect(d.smpp).await;
    let seq = second.request(Body::Bind(Bind::new(BindKind::Transceiver, "other", "pw2"))).await;
    first.ping().await;
    assert!(second.nothing_buffered(), "served past max_connections");
    let unbind = first.request(Body::Unbind).await;
    assert_eq!(first.recv().await.unwrap(), Pdu::new(unbind, Body::UnbindResp));
    first.expect_closed().await;
    let resp = second.recv().await.expect("served once the first closed");
    assert_eq!((resp.sequence, resp.status), (seq, status::ESME_ROK));
    d.stop().await;
}

#[tokio::test]
async fn second_bind_on_one_connection_should_get_alybnd_and_keep_the_session() {
    let d = TestDaemon::start(base_config("")).await;
    let mut p = Peer::bound(d.smpp).await;
    let resp = p.bind(BindKind::Transceiver, ACCOUNT, PASSWORD).await;
    assert_eq!(resp.status, status::ESME_RALYBND);
    p.ping().await;
    d.stop().await;
}

#[tokio::test]
async fn request_before_bind_should_get_invbndsts() {
    let d = TestDaemon::start(base_config("")).await;
    let mut p = Peer::connect(d.smpp).await;
    let seq = p.request(Body::SubmitSm(ussd_sm())).await;
    let resp = p.recv().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (seq, status::ESME_RINVBNDSTS));
    assert!(matches!(resp.body, Body::SubmitSmResp(_)));
    let seq = p.request(Body::Unbind).await;
    let resp = p.recv().await.unwrap();
    assert_eq!((resp.sequence, resp.status, resp.body), (seq, status::ESME_RINVBNDSTS, Body::UnbindResp));
    // enquire_link is answered in any state, and a bind still works afterwards.
    let seq = p.request(Body::EnquireLink).await;
    assert_eq!(p.recv().await.unwrap(), Pdu::new(seq, Body::EnquireLinkResp));
    assert_eq!(p.bind(BindKind::Transceiver, ACCOUNT, PASSWORD).await.status, 0);
    d.stop().await;
}

#[tokio::test]
async fn receiver_bind_should_not_be_allowed_to_submit() {
    let d = TestDaemon::start(base_config("")).await;
    let mut p = Peer::connect(d.smpp).await;
    assert_eq!(p.bind(BindKind::Receiver, ACCOUNT, PASSWORD).await.status, 0);
    let seq = p.request(Body::SubmitSm(ussd_sm())).await;
    let resp = p.recv().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (seq, status::ESME_RINVBNDSTS));
    d.stop().await;
}

#[tokio::test]
async fn messages_should_be_answered_on_the_same_connection_in_every_pdu_family() {
    let d = TestDaemon::start(base_config("")).await;
    let mut p = Peer::bound(d.smpp).await;
    let mut data_sm = DataSm {
        service_type: "USSD".into(),
        source: Address::international("84912345679"),
        dest: Address { ton: 0, npi: 0, addr: "*384#".into() },
        ..DataSm::default()
    };
    data_sm.tlvs.set(tag::USSD_SERVICE_OP, vec![1u8]);
    data_sm.tlvs.set(tag::MESSAGE_PAYLOAD, b"*384#".to_vec());
    for body in [Body::SubmitSm(ussd_sm()), Body::DeliverSm(ussd_sm()), Body::DataSm(Box::new(data_sm))] {
        let id = body.command_id();
        let seq = p.request(body).await;
        let resp = p.recv_skip_enquire().await.unwrap();
        assert_eq!(resp.sequence, seq);
        assert_eq!(resp.command_id(), id | cmd::RESP);
        assert_eq!(resp.status, status::ESME_ROK);
        // Then the USSD service's screen (registration, for a number it does not know).
        let screen = p.recv_skip_enquire().await.unwrap();
        let Body::DeliverSm(sm) = &screen.body else { panic!("{screen:?}") };
        assert_eq!(sm.tlvs.get_u8(tag::USSD_SERVICE_OP), Some(2));
        let ack = chogate::smpp::pdu::empty_response(screen.command_id()).unwrap();
        p.send(&Pdu::new(screen.sequence, ack)).await;
    }
    d.stop().await;
}

#[tokio::test]
async fn connection_that_never_binds_should_be_closed_after_bind_timeout() {
    let d = TestDaemon::start(base_config_with("bind_timeout_secs = 1", "")).await;
    let mut p = Peer::connect(d.smpp).await;
    let connected = Instant::now();
    p.expect_closed().await;
    // Closed by the timeout, not at once: a lower bound only, a slow machine passes.
    assert!(connected.elapsed() >= Duration::from_secs(1), "closed after {:?}", connected.elapsed());
    d.stop().await;
}

#[tokio::test]
async fn idle_session_should_get_enquire_link_and_be_closed_when_it_goes_unanswered() {
    let d = TestDaemon::start(base_config_with("enquire_link_secs = 1\nresponse_timeout_secs = 1", "")).await;
    let mut p = Peer::bound(d.smpp).await;
    // Answer the first one: the session lives on.
    let el = p.recv().await.unwrap();
    assert_eq!(el.body, Body::EnquireLink);
    p.send(&Pdu::new(el.sequence, Body::EnquireLinkResp)).await;
    // Ignore the next: the daemon gives the link up.
    let el2 = p.recv().await.unwrap();
    assert_eq!(el2.body, Body::EnquireLink);
    assert!(el2.sequence > el.sequence);
    p.expect_closed().await;
    d.stop().await;
}

#[tokio::test]
async fn peer_unbind_should_get_unbind_resp_and_close() {
    let d = TestDaemon::start(base_config("")).await;
    let mut p = Peer::bound(d.smpp).await;
    let seq = p.request(Body::Unbind).await;
    let resp = p.recv().await.unwrap();
    assert_eq!(resp, Pdu::new(seq, Body::UnbindResp));
    p.expect_closed().await;
    d.stop().await;
}

#[tokio::test]
async fn shutdown_should_unbind_bound_peers_then_stop() {
    let d = TestDaemon::start(base_config("")).await;
    let mut p = Peer::bound(d.smpp).await;
    d.shutdown.cancel();
    let unbind = p.recv().await.unwrap();
    assert_eq!(unbind.body, Body::Unbind);
    p.send(&Pdu::new(unbind.sequence, Body::UnbindResp)).await;
    p.expect_closed().await;
    d.stop().await;
    // Nothing listens any more.
    // (the listener is dropped when the accept loop ends)
}

/// Malformed PDUs that can still be framed: each gets a generic_nack (or the command's own
/// error response) and the session goes on.
fn malformed_corpus() -> Vec<(&'static str, bytes::Bytes, u32)> {
    let mut bad_tlv = Vec::new();
    // data_sm body: service_type, src ton/npi/addr, dst ton/npi/addr, esm, rd, dc, then a TLV
    // whose length runs past the end.
    bad_tlv.extend_from_slice(b"USSD\0\x01\x01849\0\x00\x00*384#\0\x00\x00\x00");
    bad_tlv.extend_from_slice(&[0x05, 0x01, 0x00, 0x09, 0x01]);
    let mut short_tlv = b"USSD\0\x01\x01849\0\x00\x00*384#\0\x00\x00\x00".to_vec();
    short_tlv.extend_from_slice(&[0x05, 0x01, 0x00]);
    let mut sm_too_long = b"USSD\0\x01\x01849\0\x00\x00*384#\0\x00\x00\x00\0\0\x00\x00\x00\x00".to_vec();
    sm_too_long.push(200); // sm_length 200, 3 octets follow
    sm_too_long.extend_from_slice(b"abc");
    vec![
        ("unknown command", raw_pdu(0x0000_7777, 101, &[], None), status::ESME_RINVCMDID),
        (
            "query_sm (not served)",
            raw_pdu(cmd::QUERY_SM, 102, b"1\0\x01\x01849\0", None),
            status::ESME_RINVCMDID,
        ),
        ("truncated submit_sm", raw_pdu(cmd::SUBMIT_SM, 103, b"USSD\0\x01", None), status::ESME_RINVCMDLEN),
        ("bad TLV length", raw_pdu(cmd::DATA_SM, 104, &bad_tlv, None), status::ESME_RINVCMDLEN),
        ("TLV cut after its tag", raw_pdu(cmd::DATA_SM, 105, &short_tlv, None), status::ESME_RINVCMDLEN),
        ("sm_length past the end", raw_pdu(cmd::SUBMIT_SM, 106, &sm_too_long, None), status::ESME_RINVCMDLEN),
        (
            "unterminated service_type",
            raw_pdu(cmd::SUBMIT_SM, 107, &[b'X'; 40], None),
            status::ESME_RINVCMDLEN,
        ),
        (
            "enquire_link with a body",
            raw_pdu(cmd::ENQUIRE_LINK, 108, &[0, 0, 0], None),
            status::ESME_RINVCMDLEN,
        ),
        ("garbage body", raw_pdu(cmd::DELIVER_SM, 109, &[0xFF; 64], None), status::ESME_RINVCMDLEN),
    ]
}

#[tokio::test]
async fn malformed_pdus_should_be_nacked_and_the_session_and_others_live_on() {
    let d = TestDaemon::start(base_config_with("max_pdu_len = 1024", "")).await;
    let mut bad = Peer::bound(d.smpp).await;
    let mut good = Peer::connect(d.smpp).await;
    assert_eq!(good.bind(BindKind::Transceiver, "other", "pw2").await.status, 0);

    for (what, bytes, expected) in malformed_corpus() {
        let seq = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        bad.send_raw(&bytes).await;
        let resp = bad.recv_skip_enquire().await.unwrap_or_else(|| panic!("{what}: connection closed"));
        assert_eq!(resp.body, Body::GenericNack, "{what}: {resp:?}");
        assert_eq!((resp.sequence, resp.status), (seq, expected), "{what}");
        bad.ping().await;
        good.ping().await;
    }

    // Oversized but framable: skipped, nacked, and the next PDU is read in sync.
    let mut big = raw_pdu(cmd::SUBMIT_SM, 150, &[0u8; 4000], None).to_vec();
    big.extend_from_slice(&raw_pdu(cmd::ENQUIRE_LINK, 151, &[], None));
    bad.send_raw(&big).await;
    let nack = bad.recv().await.unwrap();
    assert_eq!((nack.body, nack.sequence, nack.status), (Body::GenericNack, 150, status::ESME_RINVCMDLEN));
    assert_eq!(bad.recv().await.unwrap(), Pdu::new(151, Body::EnquireLinkResp));

    // Cut into single bytes: still one PDU.
    let el = raw_pdu(cmd::ENQUIRE_LINK, 152, &[], None);
    for b in el.iter() {
        bad.send_raw(&[*b]).await;
    }
    assert_eq!(bad.recv().await.unwrap(), Pdu::new(152, Body::EnquireLinkResp));
    bad.ping().await;

    // A command_length that cannot be framed loses the stream: nack, then close. The other
    // bind is untouched.
    bad.send_raw(&raw_pdu(cmd::ENQUIRE_LINK, 160, &[], Some(8))).await;
    let nack = bad.recv().await.unwrap();
    assert_eq!((nack.body, nack.status), (Body::GenericNack, status::ESME_RINVCMDLEN));
    bad.expect_closed().await;
    good.ping().await;

    let mut absurd = Peer::bound(d.smpp).await;
    absurd.send_raw(&raw_pdu(cmd::SUBMIT_SM, 170, &[], Some(0xFFFF_FFF0))).await;
    let nack = absurd.recv().await.unwrap();
    assert_eq!((nack.body, nack.sequence), (Body::GenericNack, 170));
    absurd.expect_closed().await;
    good.ping().await;

    // Pure garbage before any bind.
    let mut garbage = Peer::connect(d.smpp).await;
    garbage.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    garbage.expect_closed().await;
    good.ping().await;
    d.stop().await;
}

#[tokio::test]
async fn many_binds_should_be_served_at_once() {
    let d = TestDaemon::start(base_config("")).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let addr = d.smpp;
        tasks.spawn(async move {
            let mut p = Peer::bound(addr).await;
            for _ in 0..20 {
                p.ping().await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    d.stop().await;
}

#[tokio::test]
async fn account_bind_limit_should_refuse_extra_binds() {
    let extra = "[[smpp_server.accounts]]\nsystem_id = \"single\"\npassword = \"pw\"\nmax_binds = 1\n";
    let d = TestDaemon::start(base_config(extra)).await;
    let mut first = Peer::connect(d.smpp).await;
    assert_eq!(first.bind(BindKind::Transceiver, "single", "pw").await.status, 0);
    let mut second = Peer::connect(d.smpp).await;
    assert_eq!(second.bind(BindKind::Transceiver, "single", "pw").await.status, status::ESME_RBINDFAIL);
    // Once the first unbinds, the slot is free again.
    let seq = first.request(Body::Unbind).await;
    assert_eq!(first.recv().await.unwrap(), Pdu::new(seq, Body::UnbindResp));
    first.expect_closed().await;
    let mut third = Peer::connect(d.smpp).await;
    assert_eq!(third.bind(BindKind::Transceiver, "single", "pw").await.status, 0);
    d.stop().await;
}
