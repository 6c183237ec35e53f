//! The session over an in-memory pipe (`tokio::io::duplex`), the test driving the other
//! end with the codec; timers on a paused clock.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::smpp::frame::{Frame, FrameReader};
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

struct Far {
    frames: FrameReader<ReadHalf<DuplexStream>>,
    w: WriteHalf<DuplexStream>,
}

impl Far {
    async fn recv(&mut self) -> Option<Pdu> {
        match self.frames.next().await.unwrap() {
            Some(Frame::Pdu(b)) => Some(Pdu::decode(&b).unwrap()),
            Some(Frame::Oversized(h)) => panic!("{h:?}"),
            None => None,
        }
    }

    async fn send(&mut self, pdu: Pdu) {
        self.w.write_all(&pdu.to_bytes().unwrap()).await.unwrap();
    }
}

fn tuning() -> Tuning {
    Tuning {
        enquire_link: Duration::from_secs(30),
        response_timeout: Duration::from_secs(10),
        bind_timeout: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(1),
        max_pdu_len: 65536,
        window: 2,
        inbound_window: 4,
    }
}

/// A client session (chogate binds to the far end) over a pipe, bound as a transceiver.
async fn bound_client() -> (SessionHandle, Far, tokio::task::JoinHandle<SessionEnd>, CancellationToken) {
    let (near, far) = tokio::io::duplex(64 * 1024);
    let (inbound, _rx) = mpsc::channel(16);
    std::mem::forget(_rx);
    let shutdown = CancellationToken::new();
    let params = SessionParams {
        role: RoleParams::Client {
            bind: Bind::new(BindKind::Transceiver, "gw", "pw"),
            label: Arc::from("smsc"),
            msisdn_prefixes: Arc::from([]),
        },
        tuning: tuning(),
        inbound: inbound.into(),
        registry: Arc::new(Registry::default()),
        shutdown: shutdown.clone(),
    };
    let conn = Conn::Stream { io: Box::new(near), peer: SocketAddr::from(([127, 0, 0, 1], 1)) };
    let (handle, run) = start(conn, params);
    let run = tokio::spawn(run);
    let (r, w) = tokio::io::split(far);
    let mut far = Far { frames: FrameReader::new(r, 65536), w };
    let bind = far.recv().await.unwrap();
    let Body::Bind(b) = &bind.body else { panic!("{bind:?}") };
    let resp = BindResp { kind: b.kind, system_id: "smsc".into(), tlvs: Tlvs::default() };
    far.send(Pdu::new(bind.sequence, Body::BindResp(resp))).await;
    assert_eq!(handle.wait_bound().await.unwrap(), BindKind::Transceiver);
    (handle, far, run, shutdown)
}

#[tokio::test(start_paused = true)]
async fn a_request_should_time_out_after_the_response_timeout_and_free_its_room() {
    let (handle, mut far, _run, _shutdown) = bound_client().await;
    let started = Instant::now();
    let waiting = tokio::spawn({
        let h = handle.clone();
        async move { h.request(Body::EnquireLink).await }
    });
    let sent = far.recv().await.unwrap();
    assert_eq!(sent.body, Body::EnquireLink);
    let result = waiting.await.unwrap();
    assert_eq!(result, Err(SessionError::Timeout(Duration::from_secs(10))));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(10) && waited <= Duration::from_millis(11_250), "{waited:?}");
    // The room in the window came back: two more fit at once.
    let _a = handle.reserve().await.unwrap();
    let _b = handle.reserve().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_window_should_hold_a_third_request_until_a_response_comes() {
    let (handle, mut far, _run, _shutdown) = bound_client().await;
    let mut waiting = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let h = handle.clone();
        waiting.spawn(async move { h.request(Body::EnquireLink).await });
    }
    let first = far.recv().await.unwrap();
    let second = far.recv().await.unwrap();
    // The third is not out while two wait: answering one lets it go.
    assert_eq!(handle.shared.pending().len(), 2);
    far.send(Pdu::new(first.sequence, Body::EnquireLinkResp)).await;
    let third = far.recv().await.unwrap();
    assert_ne!(third.sequence, second.sequence);
    far.send(Pdu::new(second.sequence, Body::EnquireLinkResp)).await;
    far.send(Pdu::new(third.sequence, Body::EnquireLinkResp)).await;
    while let Some(r) = waiting.join_next().await {
        assert_eq!(r.unwrap().unwrap().body, Body::EnquireLinkResp);
    }
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_enquire_link_should_end_the_session_as_dead() {
    let (_handle, mut far, run, _shutdown) = bound_client().await;
    // Idle for enquire_link: the session asks, and nobody answers.
    let probe = far.recv().await.unwrap();
    assert_eq!(probe.body, Body::EnquireLink);
    assert_eq!(run.await.unwrap(), SessionEnd::LinkDead);
}

#[tokio::test(start_paused = true)]
async fn the_peers_unbind_should_be_answered_and_end_the_session() {
    let (handle, mut far, run, _shutdown) = bound_client().await;
    far.send(Pdu::new(7, Body::Unbind)).await;
    assert_eq!(far.recv().await.unwrap(), Pdu::new(7, Body::UnbindResp));
    assert_eq!(run.await.unwrap(), SessionEnd::PeerUnbound);
    assert_eq!(handle.state(), SessionState::Closed);
}

#[test]
fn a_bind_should_carry_messages_the_way_its_kind_allows_in_either_role() {
    use BindKind::{Receiver as Rx, Transceiver as Trx, Transmitter as Tx};
    // (kind, role, way) -> allowed: SMPP 3.4 §2.2 with chogate as SMSC (server) or ESME (client).
    let table = [
        (Tx, Role::Server, Way::In, true),
        (Tx, Role::Server, Way::Out, false),
        (Rx, Role::Server, Way::In, false),
        (Rx, Role::Server, Way::Out, true),
        (Trx, Role::Server, Way::In, true),
        (Trx, Role::Server, Way::Out, true),
        (Tx, Role::Client, Way::In, false),
        (Tx, Role::Client, Way::Out, true),
        (Rx, Role::Client, Way::In, true),
        (Rx, Role::Client, Way::Out, false),
        (Trx, Role::Client, Way::In, true),
        (Trx, Role::Client, Way::Out, true),
    ];
    for (kind, role, way, allowed) in table {
        assert_eq!(carries(kind, role, way), allowed, "{kind:?} {role:?} {way:?}");
    }
}
