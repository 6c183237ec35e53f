//! chogate as ESME: it binds to operators' SMSCs. A fake SMSC on port 0 plays the operator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chogate::smpp::pdu::{Address, BindKind, BindResp, Body, MessageIdResp, Pdu, Sm, Tlvs, tag};
use chogate::smpp::session::SessionError;
use chogate::smpp::status;
use common::{PATIENCE, Peer, TestDaemon, base_config, base_config_with, client_session, default_tuning};
use tokio::net::TcpListener;

struct FakeSmsc {
    listener: TcpListener,
}

impl FakeSmsc {
    async fn start() -> FakeSmsc {
        FakeSmsc { listener: TcpListener::bind("127.0.0.1:0").await.unwrap() }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    fn config(&self, name: &str, bind: &str, window: u32) -> String {
        format!(
            "[[smsc]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\nsystem_id = \"gw\"\npassword = \"secret\"\n\
             bind = \"{bind}\"\nwindow = {window}\nreconnect_min_ms = 20\nreconnect_max_ms = 200\n",
            self.port()
        )
    }

    /// Accepts the next connection and reads its bind, without answering.
    async fn accept_bind(&self) -> (Peer, Pdu) {
        let (stream, _) = tokio::time::timeout(PATIENCE, self.listener.accept()).await.unwrap().unwrap();
        let mut peer = Peer::from_stream(stream);
        let bind = peer.recv().await.expect("no bind");
        (peer, bind)
    }

    /// Accepts a connection and answers its bind with `st`.
    async fn accept(&self, st: u32) -> (Peer, BindKind) {
        let (mut peer, bind) = self.accept_bind().await;
        let Body::Bind(b) = &bind.body else { panic!("expected a bind, got {bind:?}") };
        let resp = BindResp { kind: b.kind, system_id: "smsc".into(), tlvs: Tlvs::default() };
        peer.send(&Pdu { status: st, sequence: bind.sequence, body: Body::BindResp(resp) }).await;
        (peer, b.kind)
    }
}

fn sms(text: &str) -> Body {
    Body::SubmitSm(Box::new(Sm {
        source: Address::international("84384"),
        dest: Address::international("84912345678"),
        short_message: bytes::Bytes::copy_from_slice(text.as_bytes()),
        ..Sm::default()
    }))
}

#[tokio::test]
async fn daemon_should_bind_with_configured_credentials_and_interface_version_34() {
    let smsc = FakeSmsc::start().await;
    let d = TestDaemon::start(base_config(&smsc.config("viettel", "transceiver", 10))).await;
    let (mut peer, bind) = smsc.accept_bind().await;
    let Body::Bind(b) = &bind.body else { panic!("{bind:?}") };
    assert_eq!((b.kind, b.system_id.as_str(), b.password.as_str()), (BindKind::Transceiver, "gw", "secret"));
    assert_eq!(b.interface_version, 0x34);
    let resp = BindResp { kind: b.kind, system_id: "smsc".into(), tlvs: Tlvs::default() };
    peer.send(&Pdu::new(bind.sequence, Body::BindResp(resp))).await;
    let handle = d.daemon.as_ref().unwrap().registry.wait_for("viettel").await;
    assert_eq!(handle.wait_bound().await.unwrap(), BindKind::Transceiver);
    peer.ping().await;
    drop(peer);
    d.stop().await;
}

#[tokio::test]
async fn transmitter_receiver_mode_should_open_two_binds() {
    let smsc = FakeSmsc::start().await;
    let d = TestDaemon::start(base_config(&smsc.config("mobi", "transmitter+receiver", 10))).await;
    let (_a, k1) = smsc.accept(status::ESME_ROK).await;
    let (_b, k2) = smsc.accept(status::ESME_ROK).await;
    let mut kinds = [k1, k2];
    kinds.sort_by_key(|k| k.as_str());
    assert_eq!(kinds, [BindKind::Receiver, BindKind::Transmitter]);
    d.stop().await;
}

#[tokio::test]
async fn dropped_bind_should_be_reconnected() {
    let smsc = FakeSmsc::start().await;
    let d = TestDaemon::start(base_config(&smsc.config("viettel", "transceiver", 10))).await;
    let (peer, _) = smsc.accept(status::ESME_ROK).await;
    drop(peer);
    let (mut again, _) = smsc.accept(status::ESME_ROK).await;
    again.ping().await;
    // A refused bind is retried too.
    drop(again);
    let (_refused, _) = smsc.accept(status::ESME_RINVPASWD).await;
    let (mut third, _) = smsc.accept(status::ESME_ROK).await;
    third.ping().await;
    drop(third);
    d.stop().await;
}

#[tokio::test]
async fn generic_nack_to_the_bind_should_count_as_refused_and_be_retried() {
    let smsc = FakeSmsc::start().await;
    let d = TestDaemon::start(base_config(&smsc.config("viettel", "transceiver", 10))).await;
    let (mut peer, bind) = smsc.accept_bind().await;
    // A generic_nack with status 0: the SMSC could not read our bind. Not a bind.
    peer.send(&Pdu::new(bind.sequence, Body::GenericNack)).await;
    peer.expect_closed().await;
    assert!(d.daemon.as_ref().unwrap().registry.get("viettel").is_empty());
    let (mut again, _) = smsc.accept(status::ESME_ROK).await;
    again.ping().await;
    drop(again);
    d.stop().await;
}

#[tokio::test]
async fn window_should_bound_outstanding_requests() {
    let smsc = FakeSmsc::start().await;
    let d = TestDaemon::start(base_config(&smsc.config("viettel", "transceiver", 2))).await;
    let (mut peer, _) = smsc.accept(status::ESME_ROK).await;
    let handle = d.daemon.as_ref().unwrap().registry.wait_for("viettel").await;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..5 {
        let h = handle.clone();
        sends.spawn(async move { h.request(sms(&format!("m{i}"))).await });
    }
    // Two arrive; the third only after one is answered.
    let first = peer.recv_skip_enquire().await.unwrap();
    let second = peer.recv_skip_enquire().await.unwrap();
    // Both out and waiting; the other three wait for room, none is out.
    assert_eq!(handle.in_flight(), 2, "a third request went out with a window of 2");
    assert!(peer.nothing_buffered(), "a third request reached the SMSC with a window of 2");
    let mut answered = 0;
    for req in [first, second] {
        let resp = MessageIdResp { message_id: format!("id{}", req.sequence), tlvs: Tlvs::default() };
        peer.send(&Pdu::new(req.sequence, Body::SubmitSmResp(resp))).await;
        answered += 1;
    }
    while answered < 5 {
        let req = peer.recv_skip_enquire().await.unwrap();
        let resp = MessageIdResp { message_id: format!("id{}", req.sequence), tlvs: Tlvs::default() };
        peer.send(&Pdu::new(req.sequence, Body::SubmitSmResp(resp))).await;
        answered += 1;
    }
    let mut ids = Vec::new();
    while let Some(r) = sends.join_next().await {
        let pdu = r.unwrap().unwrap();
        let Body::SubmitSmResp(m) = pdu.body else { panic!() };
        assert_eq!(m.message_id, format!("id{}", pdu.sequence));
        ids.push(m.message_id);
    }
    assert_eq!(ids.len(), 5);
    drop(peer);
    d.stop().await;
}

#[tokio::test]
async fn unanswered_request_should_time_out_and_free_its_window_slot() {
    let smsc = FakeSmsc::start().await;
    let cfg = base_config_with("response_timeout_secs = 1", &smsc.config("viettel", "transceiver", 1));
    let d = TestDaemon::start(cfg).await;
    let (mut peer, _) = smsc.accept(status::ESME_ROK).await;
    let handle = d.daemon.as_ref().unwrap().registry.wait_for("viettel").await;
    let h = handle.clone();
    let started = std::time::Instant::now();
    let first = tokio::spawn(async move { h.request(sms("lost")).await });
    let _ignored = peer.recv_skip_enquire().await.unwrap();
    assert_eq!(first.await.unwrap(), Err(SessionError::Timeout(Duration::from_secs(1))));
    // The session's sweep answers it once it is past its time, never before.
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    // The slot is free again: the next request goes out and is answered.
    let h = handle.clone();
    let second = tokio::spawn(async move { h.request(sms("ok")).await });
    let req = peer.recv_skip_enquire().await.unwrap();
    peer.send(&Pdu::new(req.sequence, Body::SubmitSmResp(MessageIdResp::default()))).await;
    assert_eq!(second.await.unwrap().unwrap().status, 0);
    drop(peer);
    d.stop().await;
}

#[tokio::test]
async fn smsc_error_status_should_reach_the_sender() {
    let smsc = FakeSmsc::start().await;
    let d = TestDaemon::start(base_config(&smsc.config("viettel", "transceiver", 5))).await;
    let (mut peer, _) = smsc.accept(status::ESME_ROK).await;
    let handle = d.daemon.as_ref().unwrap().registry.wait_for("viettel").await;
    let h = handle.clone();
    let send = tokio::spawn(async move { h.request(sms("x")).await });
    let req = peer.recv_skip_enquire().await.unwrap();
    peer.send(&Pdu {
        status: status::ESME_RTHROTTLED,
        sequence: req.sequence,
        body: Body::SubmitSmResp(MessageIdResp::default()),
    })
    .await;
    assert_eq!(send.await.unwrap().unwrap().status, status::ESME_RTHROTTLED);
    // A generic_nack for a request is a response too.
    let h = handle.clone();
    let send = tokio::spawn(async move { h.request(sms("y")).await });
    let req = peer.recv_skip_enquire().await.unwrap();
    peer.send(&Pdu { status: status::ESME_RINVCMDLEN, sequence: req.sequence, body: Body::GenericNack })
        .await;
    let resp = send.await.unwrap().unwrap();
    assert_eq!((resp.body, resp.status), (Body::GenericNack, status::ESME_RINVCMDLEN));
    drop(peer);
    d.stop().await;
}

#[tokio::test]
async fn receiver_only_bind_should_refuse_to_send() {
    let smsc = FakeSmsc::start().await;
    let d = TestDaemon::start(base_config(&smsc.config("rx", "transmitter+receiver", 5))).await;
    let (_a, _) = smsc.accept(status::ESME_ROK).await;
    let (_b, _) = smsc.accept(status::ESME_ROK).await;
    let registry = d.daemon.as_ref().unwrap().registry.clone();
    // Both binds are registered under the SMSC's name; only the transmitter may send.
    let mut results = Vec::new();
    for h in tokio::time::timeout(PATIENCE, registry.wait_for_count("rx", 2)).await.unwrap() {
        results.push((h.wait_bound().await.unwrap(), h.request(sms("z")).await.err()));
    }
    let rx_err = results.iter().find(|(k, _)| *k == BindKind::Receiver).unwrap().1.clone();
    assert!(matches!(rx_err, Some(SessionError::NotPermitted { .. })), "{rx_err:?}");
    d.stop().await;
}

#[tokio::test]
async fn deliver_sm_from_the_smsc_should_be_answered() {
    let smsc = FakeSmsc::start().await;
    let d = TestDaemon::start(base_config(&smsc.config("viettel", "transceiver", 5))).await;
    let (mut peer, _) = smsc.accept(status::ESME_ROK).await;
    let mut sm =
        Sm { service_type: "USSD".into(), source: Address::international("84912345678"), ..Sm::default() };
    sm.tlvs.set(tag::USSD_SERVICE_OP, vec![1u8]);
    let seq = peer.request(Body::DeliverSm(Box::new(sm))).await;
    let resp = peer.recv_skip_enquire().await.unwrap();
    assert_eq!(resp.sequence, seq);
    assert!(matches!(resp.body, Body::DeliverSmResp(_)));
    drop(peer);
    d.stop().await;
}

#[tokio::test]
async fn shutdown_should_drain_in_flight_requests_then_unbind() {
    let smsc = FakeSmsc::start().await;
    let cfg = base_config_with("drain_timeout_secs = 5", &smsc.config("viettel", "transceiver", 5));
    let d = TestDaemon::start(cfg).await;
    let (mut peer, _) = smsc.accept(status::ESME_ROK).await;
    let handle = d.daemon.as_ref().unwrap().registry.wait_for("viettel").await;
    let h = handle.clone();
    let in_flight = tokio::spawn(async move { h.request(sms("in flight")).await });
    let req = peer.recv_skip_enquire().await.unwrap();
    d.shutdown.cancel();
    // The in-flight one is answered and delivered to its sender, and only then unbind.
    let resp = MessageIdResp { message_id: "42".into(), tlvs: Tlvs::default() };
    peer.send(&Pdu::new(req.sequence, Body::SubmitSmResp(resp))).await;
    let unbind = peer.recv_skip_enquire().await.unwrap();
    assert_eq!(unbind.body, Body::Unbind);
    // No new request goes out once unbinding.
    let refused = handle.request(sms("late")).await;
    assert!(matches!(refused, Err(SessionError::NotBound(_))), "{refused:?}");
    peer.send(&Pdu::new(unbind.sequence, Body::UnbindResp)).await;
    let resp = in_flight.await.unwrap().unwrap();
    let Body::SubmitSmResp(m) = resp.body else { panic!() };
    assert_eq!(m.message_id, "42");
    peer.expect_closed().await;
    d.stop().await;
}

#[tokio::test]
async fn a_full_queue_should_throttle_and_a_closed_one_or_a_dropped_request_should_answer_rx_t_appn() {
    let smsc = FakeSmsc::start().await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", smsc.port())).await.unwrap();
    // The application's queue holds one request.
    let (tx, mut queue) = tokio::sync::mpsc::channel(1);
    let (handle, run, shutdown) = client_session(stream, "gw", "secret", tx.into(), default_tuning());
    let (mut peer, _) = smsc.accept(status::ESME_ROK).await;
    tokio::time::timeout(PATIENCE, handle.wait_bound()).await.unwrap().unwrap();

    let deliver =
        || Body::DeliverSm(Box::new(Sm { short_message: bytes::Bytes::from_static(b"hi"), ..Sm::default() }));
    let queued = peer.request(deliver()).await;
    let refused = peer.request(deliver()).await;
    let resp = peer.recv_skip_enquire().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (refused, status::ESME_RTHROTTLED));
    // The queued one is the application's to answer.
    let req = tokio::time::timeout(PATIENCE, queue.recv()).await.unwrap().unwrap();
    req.responder.respond(status::ESME_ROK, "").await;
    let resp = peer.recv_skip_enquire().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (queued, status::ESME_ROK));
    // A request the application drops unanswered is answered for it.
    let dropped = peer.request(deliver()).await;
    drop(tokio::time::timeout(PATIENCE, queue.recv()).await.unwrap().unwrap());
    let resp = peer.recv_skip_enquire().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (dropped, status::ESME_RX_T_APPN));
    // The application has stopped reading.
    drop(queue);
    let late = peer.request(deliver()).await;
    let resp = peer.recv_skip_enquire().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (late, status::ESME_RX_T_APPN));

    shutdown.cancel();
    drop(peer);
    tokio::time::timeout(PATIENCE, run).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_peer_that_reads_nothing_should_end_the_session_after_the_response_timeout() {
    use chogate::smpp::session::{SessionEnd, Tuning};
    use tokio::io::AsyncWriteExt;
    // Connections with a small receive buffer, and a peer that never reads from its own.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(8).unwrap();
    let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (tx, _queue) = tokio::sync::mpsc::channel(16);
    let smpp = chogate::config::SmppTuning { response_timeout_secs: 1, ..Default::default() };
    let (handle, run, _shutdown) = client_session(stream, "gw", "secret", tx.into(), Tuning::new(&smpp, 10));
    let (sock, _) = listener.accept().await.unwrap();
    let mut peer = Peer::from_stream(sock);
    let bind = peer.recv().await.unwrap();
    let Body::Bind(b) = &bind.body else { panic!("{bind:?}") };
    let resp = BindResp { kind: b.kind, system_id: "smsc".into(), tlvs: Tlvs::default() };
    peer.send(&Pdu::new(bind.sequence, Body::BindResp(resp))).await;
    tokio::time::timeout(PATIENCE, handle.wait_bound()).await.unwrap().unwrap();
    // enquire_links, whose answers it never reads, until the session has gone.
    let Peer { reader: _unread, mut writer, .. } = peer;
    let ping = Pdu::new(7, Body::EnquireLink).to_bytes().unwrap();
    let flood = tokio::spawn(async move { while writer.write_all(&ping).await.is_ok() {} });
    let end =
        tokio::time::timeout(PATIENCE, run).await.expect("the session waited for a peer that reads nothing");
    assert_eq!(end.unwrap(), SessionEnd::Io("write failed".into()));
    flood.abort();
}
