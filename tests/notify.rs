//! SMS notifications end to end: the outbox drained to a fake SMSC over real SMPP, receipts
//! matched, retries, routing and failover, SMS keywords.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use chogate::market::{Actor, Channel, Household, IdemKey, Lang, Listing, Market, OrderStatus};
use chogate::smpp::pdu::{Address, BindResp, Body, MessageIdResp, Pdu, Sm, Tlvs, tag};
use chogate::smpp::status;
use common::db::TestDb;
use common::{Peer, TestDaemon, base_config};
use tokio::net::TcpListener;

const HOUSEHOLD: &str = "84912345678";

fn cli() -> Actor {
    Actor { msisdn: "test".into(), channel: Channel::Cli }
}

fn partner() -> Actor {
    Actor { msisdn: "shopee".into(), channel: Channel::Http }
}

/// A selling household with a listing. It leads its own village: a household its leader
/// registers is sent a welcome SMS, and these tests start from an empty outbox.
async fn village(m: &Market, lang: Lang) -> (Household, Listing) {
    let hh = m
        .register_leader(&cli(), IdemKey("h1".into()), HOUSEHOLD, "Lý Thị Mai", 6001, "Bản Chu", Lang::Vi)
        .await
        .unwrap();
    assert_eq!(lang, Lang::Vi, "households registered by the command line speak Vietnamese");
    let listing = m.create_listing(&cli(), IdemKey("c1".into()), hh.id, 1, 500, 30000).await.unwrap();
    (hh, listing)
}

struct Smsc {
    listener: TcpListener,
}

impl Smsc {
    async fn start() -> Smsc {
        Smsc { listener: TcpListener::bind("127.0.0.1:0").await.unwrap() }
    }

    fn config(&self, name: &str, prefixes: &str) -> String {
        format!(
            "[[smsc]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\nsystem_id = \"gw\"\npassword = \"secret\"\n\
             route_prefixes = [{prefixes}]\nreconnect_min_ms = 20\nreconnect_max_ms = 100\n",
            self.listener.local_addr().unwrap().port()
        )
    }

    async fn accept(&self) -> Peer {
        let (stream, _) =
            tokio::time::timeout(common::PATIENCE, self.listener.accept()).await.unwrap().unwrap();
        let mut p = Peer::from_stream(stream);
        let bind = p.recv().await.unwrap();
        let Body::Bind(b) = &bind.body else { panic!("{bind:?}") };
        let resp = BindResp { kind: b.kind, system_id: "smsc".into(), tlvs: Tlvs::default() };
        p.send(&Pdu::new(bind.sequence, Body::BindResp(resp))).await;
        p
    }
}

/// The next submit_sm the SMSC receives.
async fn next_submit(p: &mut Peer) -> (u32, Box<Sm>) {
    loop {
        let pdu = p.recv_skip_enquire().await.expect("connection closed");
        if let Body::SubmitSm(sm) = pdu.body {
            return (pdu.sequence, sm);
        }
    }
}

/// Takes the next message part by part (each part goes out after the previous one was
/// answered), answering part `i` with `ids(i)`; returns its text and its parts.
async fn take_message(p: &mut Peer, ids: impl Fn(usize) -> String) -> (String, Vec<Box<Sm>>) {
    let mut parts: Vec<Box<Sm>> = Vec::new();
    loop {
        let (seq, sm) = next_submit(p).await;
        answer(p, seq, 0, &ids(parts.len())).await;
        let (total, last) =
            if sm.esm_class & 0x40 != 0 { (sm.short_message[4], sm.short_message[5]) } else { (1, 1) };
        parts.push(sm);
        if last == total {
            break;
        }
    }
    let text = parts
        .iter()
        .map(|sm| {
            let body = if sm.esm_class & 0x40 != 0 { &sm.short_message[6..] } else { &sm.short_message[..] };
            chogate::text::decode_short_message(sm.data_coding, body)
        })
        .collect();
    (text, parts)
}

async fn answer(p: &mut Peer, seq: u32, st: u32, id: &str) {
    let body = Body::SubmitSmResp(MessageIdResp { message_id: id.into(), tlvs: Tlvs::default() });
    p.send(&Pdu { status: st, sequence: seq, body }).await;
}

/// Sends a receipt for `id`, in the text only, and waits for its deliver_sm_resp.
async fn receipt(p: &mut Peer, id: &str, stat: &str) {
    let text = format!(
        "id:{id} sub:001 dlvr:001 submit date:2611231010 done date:2611231011 stat:{stat} err:000 text:"
    );
    let sm = Sm {
        source: Address::international(HOUSEHOLD),
        dest: Address::international("384"),
        esm_class: 0x04,
        short_message: Bytes::from(text.into_bytes()),
        ..Sm::default()
    };
    let seq = p.request(Body::DeliverSm(Box::new(sm))).await;
    loop {
        let resp = p.recv_skip_enquire().await.unwrap();
        if resp.sequence == seq && matches!(resp.body, Body::DeliverSmResp(_)) {
            assert_eq!(resp.status, 0);
            return;
        }
    }
}

fn market(d: &TestDaemon) -> Market {
    d.daemon.as_ref().unwrap().market.clone()
}

async fn outbox_id(m: &Market) -> i64 {
    // The only message queued so far in these tests is the first one.
    for id in 1..10 {
        if m.message(id).await.unwrap().is_some() {
            return id;
        }
    }
    panic!("no outbox message");
}

#[tokio::test]
async fn new_order_should_be_sent_as_ucs2_and_delivered_with_a_receipt_in_another_base() {
    let smsc = Smsc::start().await;
    // This SMSC answers submit_sm with hex ids and writes decimal ids in its receipts.
    let config = format!("{}receipt_ids = \"decimal\"\n", smsc.config("viettel", "\"849\""));
    let d = TestDaemon::start(base_config(&config)).await;
    let m = market(&d);
    let mut p = smsc.accept().await;
    let (_, listing) = village(&m, Lang::Vi).await;
    m.place_order(&partner(), IdemKey("o1".into()), listing.id, "Nguyễn Văn B", 5, 150000).await.unwrap();
    // hex ids in the responses (0A1B, 0A1C, ...)
    let (text, parts) = take_message(&mut p, |i| format!("0A1{}", (b'B' + i as u8) as char)).await;
    assert!(text.starts_with("Đơn mới D"), "{text}");
    for sm in &parts {
        assert_eq!(sm.dest.addr, HOUSEHOLD);
        assert_eq!((sm.registered_delivery, sm.data_coding), (1, 8));
    }
    let notifier = d.daemon.as_ref().unwrap().notifier.clone();
    notifier.wait_recorded(1).await;
    let id = outbox_id(&m).await;
    let msg = m.message(id).await.unwrap().unwrap();
    assert_eq!((msg.status.as_str(), msg.parts), ("sent", parts.len() as i64));
    // decimal with leading zeros in the receipts
    for i in 0..parts.len() {
        receipt(&mut p, &format!("00000{}", 0x0A1B + i), "DELIVRD").await;
    }
    let msg = m.message(id).await.unwrap().unwrap();
    assert_eq!(msg.status, "delivered", "{msg:?}");
    assert!(msg.done_at_ms.is_some());
    d.stop().await;
}

#[tokio::test]
async fn receipt_before_the_submit_response_should_still_match() {
    let smsc = Smsc::start().await;
    let d = TestDaemon::start(base_config(&smsc.config("viettel", ""))).await;
    let m = market(&d);
    let mut p = smsc.accept().await;
    village(&m, Lang::Vi).await;
    let actor = Actor { msisdn: HOUSEHOLD.into(), channel: Channel::Sms };
    m.queue_sms(&actor, IdemKey("q1".into()), HOUSEHOLD, "Hello", Lang::En, "test").await.unwrap();
    let (seq, sm) = next_submit(&mut p).await;
    assert_eq!((sm.data_coding, &sm.short_message[..]), (0, &b"Hello"[..]), "GSM text in one part");
    // The receipt overtakes the response: it is kept, and applied when the part is recorded.
    receipt(&mut p, "4242", "DELIVRD").await;
    answer(&mut p, seq, 0, "00004242").await;
    let notifier = d.daemon.as_ref().unwrap().notifier.clone();
    notifier.wait_recorded(2).await;
    let id = outbox_id(&m).await;
    assert_eq!(m.message(id).await.unwrap().unwrap().status, "delivered");
    d.stop().await;
}

/// An SMSC pinned to other numbers (`msisdn_prefixes`) cannot text in a keyword for this
/// household, but its receipt for the SMS chogate sent the household through it is taken:
/// a receipt's number is the recipient's, whatever route the SMS took.
#[tokio::test]
async fn an_smscs_prefixes_should_refuse_its_keywords_for_other_numbers_but_never_a_receipt() {
    let smsc = Smsc::start().await;
    let config = format!("{}msisdn_prefixes = [\"8498\"]\n", smsc.config("viettel", ""));
    let d = TestDaemon::start(base_config(&config)).await;
    let m = market(&d);
    let mut p = smsc.accept().await;
    village(&m, Lang::Vi).await;
    let actor = Actor { msisdn: HOUSEHOLD.into(), channel: Channel::Sms };
    m.queue_sms(&actor, IdemKey("q1".into()), HOUSEHOLD, "Hello", Lang::En, "test").await.unwrap();
    let (seq, _) = next_submit(&mut p).await;
    answer(&mut p, seq, 0, "77").await;
    receipt(&mut p, "77", "DELIVRD").await;
    let notifier = d.daemon.as_ref().unwrap().notifier.clone();
    notifier.wait_recorded(2).await;
    assert_eq!(m.message(outbox_id(&m).await).await.unwrap().unwrap().status, "delivered");
    let sm = Sm {
        source: Address::international(HOUSEHOLD),
        dest: Address::international("384"),
        short_message: Bytes::from_static(b"DH"),
        ..Sm::default()
    };
    let seq = p.request(Body::DeliverSm(Box::new(sm))).await;
    let resp = p.recv_skip_enquire().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (seq, status::ESME_RINVSRCADR));
    d.stop().await;
}

#[tokio::test]
async fn throttled_message_should_be_retried_and_permanent_errors_fail() {
    let smsc = Smsc::start().await;
    let d = TestDaemon::start(base_config(&smsc.config("viettel", ""))).await;
    let m = market(&d);
    let mut p = smsc.accept().await;
    let (hh, listing) = village(&m, Lang::Vi).await;
    m.place_order(&partner(), IdemKey("o1".into()), listing.id, "B", 1, 30000).await.unwrap();
    let (seq, first) = next_submit(&mut p).await;
    answer(&mut p, seq, status::ESME_RTHROTTLED, "").await;
    // Backs off (1 s), then the same message again, from its first part.
    let (text, parts) = take_message(&mut p, |i| format!("7{i}")).await;
    assert_eq!(parts[0].short_message[6..], first.short_message[6..]);
    assert!(text.starts_with("Đơn mới"));
    let notifier = d.daemon.as_ref().unwrap().notifier.clone();
    notifier.wait_recorded(2).await;
    let id = outbox_id(&m).await;
    let msg = m.message(id).await.unwrap().unwrap();
    assert_eq!((msg.status.as_str(), msg.attempts), ("sent", 2));

    // An invalid destination is permanent.
    let actor = Actor { msisdn: HOUSEHOLD.into(), channel: Channel::Sms };
    m.queue_sms(&actor, IdemKey("q1".into()), HOUSEHOLD, "Xin chào", Lang::Vi, "test").await.unwrap();
    let (seq, _) = next_submit(&mut p).await;
    answer(&mut p, seq, status::ESME_RINVDSTADR, "").await;
    notifier.wait_recorded(3).await;
    let failed = m.message(id + 1).await.unwrap().unwrap();
    assert_eq!(failed.status, "failed");
    assert!(failed.last_error.unwrap().contains("ESME_RINVDSTADR"));
    let _ = hh;
    d.stop().await;
}

#[tokio::test]
async fn long_text_should_go_in_concatenated_parts_and_be_delivered_when_all_are() {
    let smsc = Smsc::start().await;
    let d = TestDaemon::start(base_config(&smsc.config("viettel", ""))).await;
    let m = market(&d);
    let mut p = smsc.accept().await;
    village(&m, Lang::Vi).await;
    let long =
        "Thông báo: đơn hàng của bạn đã được người mua xác nhận và bưu điện sẽ đến lấy hàng vào sáng mai. "
            .repeat(2);
    let actor = Actor { msisdn: HOUSEHOLD.into(), channel: Channel::Sms };
    m.queue_sms(&actor, IdemKey("q1".into()), HOUSEHOLD, &long, Lang::Vi, "test").await.unwrap();
    let (text, parts) = take_message(&mut p, |i| format!("{}", 100 + i)).await;
    assert!(parts.len() >= 3, "{} parts", parts.len());
    for (i, sm) in parts.iter().enumerate() {
        assert_eq!(sm.esm_class & 0x40, 0x40, "UDH indicator");
        let udh = &sm.short_message[..6];
        assert_eq!(&udh[..3], &[5, 0, 3]);
        assert_eq!((udh[4], udh[5]), (parts.len() as u8, i as u8 + 1));
        assert!(sm.short_message.len() <= 140);
    }
    assert_eq!(text, long);
    let seqs = parts;
    let notifier = d.daemon.as_ref().unwrap().notifier.clone();
    notifier.wait_recorded(1).await;
    let id = outbox_id(&m).await;
    assert_eq!(m.message(id).await.unwrap().unwrap().parts, seqs.len() as i64);
    receipt(&mut p, "100", "DELIVRD").await;
    assert_eq!(m.message(id).await.unwrap().unwrap().status, "sent", "one part delivered is not the message");
    for i in 1..seqs.len() {
        receipt(&mut p, &format!("{}", 100 + i), "DELIVRD").await;
    }
    assert_eq!(m.message(id).await.unwrap().unwrap().status, "delivered");
    d.stop().await;
}

#[tokio::test]
async fn down_route_should_fail_over_to_another_smsc() {
    let a = Smsc::start().await;
    let b = Smsc::start().await;
    let config = format!("{}{}", a.config("mobi", "\"8491\""), b.config("viettel", "\"8498\""));
    let d = TestDaemon::start(base_config(&config)).await;
    let m = market(&d);
    // Only viettel answers its bind; mobi's connection is accepted and dropped.
    let (dropped, _) = a.listener.accept().await.unwrap();
    drop(dropped);
    let mut vt = b.accept().await;
    let (_, listing) = village(&m, Lang::Vi).await;
    m.place_order(&partner(), IdemKey("o1".into()), listing.id, "B", 1, 30000).await.unwrap();
    let (_, parts) = take_message(&mut vt, |i| format!("{i}")).await;
    assert_eq!(parts[0].dest.addr, HOUSEHOLD, "8491… routes to mobi, which is down");
    d.stop().await;
}

// ---- SMS keywords, on both backends --------------------------------------------------

both_backends!(
    sms_keywords_should_always_answer_and_change_an_order_once,
    dh_should_list_what_fits_one_sms_and_say_how_many_more_there_are,
);

/// A daemon on `db` with one SMSC, bound; a Vietnamese household with a listing of 500 kg
/// of na at 30.000đ/kg.
async fn keyword_env(db: &TestDb) -> (TestDaemon, Market, Peer, Household, Listing) {
    let smsc = Smsc::start().await;
    let mut config = base_config(&smsc.config("viettel", ""));
    config.database.url = db.url.clone();
    let d = TestDaemon::start(config).await;
    let m = market(&d);
    let p = smsc.accept().await;
    let (hh, listing) = village(&m, Lang::Vi).await;
    (d, m, p, hh, listing)
}

/// Texts `text` from the household and returns the SMS that answers it (all its parts).
async fn ask(p: &mut Peer, text: &str) -> String {
    let enc = chogate::text::encode_text(text, true);
    let sm = Sm {
        source: Address::international(HOUSEHOLD),
        dest: Address::international("384"),
        data_coding: enc.encoding.data_coding(),
        short_message: Bytes::from(enc.bytes),
        ..Sm::default()
    };
    let s = p.request(Body::DeliverSm(Box::new(sm))).await;
    let mut answered = false;
    let mut parts: Vec<String> = Vec::new();
    loop {
        let pdu = p.recv_skip_enquire().await.unwrap();
        match pdu.body {
            Body::DeliverSmResp(_) if pdu.sequence == s => {
                assert_eq!(pdu.status, 0);
                answered = true;
            }
            Body::SubmitSm(sm) => {
                assert!(answered, "the reply is queued only after the keyword was recorded");
                answer(p, pdu.sequence, 0, &format!("r{s}-{}", parts.len())).await;
                let udh = sm.esm_class & 0x40 != 0;
                let body = if udh { &sm.short_message[6..] } else { &sm.short_message[..] };
                parts.push(chogate::text::decode_short_message(sm.data_coding, body));
                if !udh || sm.short_message[4] == sm.short_message[5] {
                    return parts.concat();
                }
            }
            _ => {}
        }
    }
}

/// Places an order of `kg` kg and takes the SMS that tells the household of it.
async fn order(m: &Market, p: &mut Peer, listing: &Listing, k: &str, kg: i64) -> chogate::market::Order {
    let o = m.place_order(&partner(), IdemKey(k.into()), listing.id, "B", kg, kg * 30_000).await.unwrap();
    let (text, _) = take_message(p, |i| format!("{k}-{i}")).await;
    assert!(text.starts_with(&format!("Đơn mới {}", o.code)), "{text}");
    o
}

fn minute() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60
}

async fn count(m: &Market, sql: &'static str) -> i64 {
    let mut r = m.store().read().await.unwrap();
    r.conn().fetch_one(sql, chogate::args![]).await.unwrap().int("n").unwrap()
}

async fn sms_keywords_should_always_answer_and_change_an_order_once(db: TestDb) {
    let (d, m, mut p, hh, listing) = keyword_env(&db).await;
    let o1 = order(&m, &mut p, &listing, "o1", 2).await;
    let c1 = &o1.code;

    // A read-only command answers every time, the same text within the minute too.
    let list = format!("Don hang (1): {c1} 2 kg Na 60.000d (moi).");
    assert_eq!(ask(&mut p, "DH").await, list);
    assert_eq!(ask(&mut p, "dh").await, list);

    // A change is applied once; its repeat gets the same reply.
    let started = minute();
    let first = ask(&mut p, &format!("nhận {c1}")).await;
    let again = ask(&mut p, &format!("NHAN {c1}")).await;
    assert_eq!(first, format!("Da nhan don {c1}. Gui hang o buu dien, roi nhan GUI {c1} [ma van don]."));
    if minute() == started {
        assert_eq!(again, first, "the repeat replays the first outcome");
    }
    assert_eq!(m.order(hh.id, o1.id).await.unwrap().status, OrderStatus::Accepted);
    assert_eq!(count(&m, "SELECT COUNT(*) AS n FROM events WHERE kind = 'order_accepted'").await, 1);

    // HUY rejects a new order (its quantity back on offer).
    let o2 = order(&m, &mut p, &listing, "o2", 10).await;
    assert_eq!(m.listing(hh.id, listing.id).await.unwrap().quantity_kg, 488);
    assert_eq!(
        ask(&mut p, &format!("huy {}", o2.code)).await,
        format!("Da tu choi don {}. Nguoi mua se duoc bao.", o2.code)
    );
    assert_eq!(m.order(hh.id, o2.id).await.unwrap().status, OrderStatus::Rejected);
    assert_eq!(m.listing(hh.id, listing.id).await.unwrap().quantity_kg, 498);

    // GUI: handed to the post office, with the tracking code the partner then sees.
    assert_eq!(
        ask(&mut p, &format!("gửi {c1} eb123456789vn")).await,
        format!("Don {c1} da giao buu dien, ma van don EB123456789VN. Khi nhan duoc tien: TT {c1} <PIN>.")
    );
    let seen = m.partner_order(o1.id).await.unwrap().unwrap();
    assert_eq!(
        (seen.order.status, seen.tracking_code.as_deref()),
        (OrderStatus::Shipped, Some("EB123456789VN"))
    );

    // Moves the order's status does not allow: why, and what can be done.
    assert_eq!(
        ask(&mut p, &format!("HUY {c1}")).await,
        format!("Don {c1} da giao buu dien, khong the tu choi. Co the: TT {c1} <PIN>.")
    );
    let o3 = order(&m, &mut p, &listing, "o3", 1).await;
    let c3 = &o3.code;
    assert_eq!(
        ask(&mut p, &format!("GUI {c3}")).await,
        format!("Don {c3} moi, khong the ghi da giao buu dien. Co the: NHAN {c3}, HUY {c3}.")
    );
    // A tracking code no post office gives: refused, and answered (its key stays short).
    assert_eq!(
        ask(&mut p, &format!("GUI {c3} {}", "X".repeat(200))).await,
        "Ma van don khong hop le (toi da 80 ky tu)."
    );
    // TT without a PIN: where to make one only when the order can be paid.
    assert_eq!(
        ask(&mut p, &format!("TT {c3} 1234")).await,
        format!("Don {c3} moi, khong the xac nhan thanh toan. Co the: NHAN {c3}, HUY {c3}.")
    );
    assert_eq!(
        ask(&mut p, &format!("TT {c1} 1234")).await,
        format!("Chua co ma PIN. Bam *384#, chon 3 (Thanh toan), chon don {c1} de tao PIN va xac nhan.")
    );
    m.set_pin(&partner(), IdemKey("pin".into()), hh.id, "2468").await.unwrap();
    assert_eq!(ask(&mut p, &format!("TT {c1} 1111")).await, "Sai ma PIN. Con 4 lan.");
    let started = minute();
    let paid = ask(&mut p, &format!("TT {c1} 2468")).await;
    let again = ask(&mut p, &format!("tt {c1} 2468")).await;
    assert_eq!(paid, format!("Da xac nhan thanh toan don {c1}."));
    if minute() == started {
        assert_eq!(again, paid);
    }
    assert_eq!(count(&m, "SELECT COUNT(*) AS n FROM payments").await, 1);

    assert_eq!(ask(&mut p, "NHAN D999999").await, "Khong tim thay don D999999. DH de xem don hang.");
    // Help: every keyword, and whom to call: the household leads its village, and no hotline
    // is configured, so the commune's People's Committee.
    let help = ask(&mut p, "xin chao").await;
    assert_eq!(
        help,
        "DH=xem don; NHAN <ma>=Nhan don; HUY <ma>=Tu choi; GUI <ma> [van don]=Da giao buu dien; \
         TT <ma> <PIN>=Xac nhan thanh toan. Bam *384#. Goi UBND Xa Doan Ket"
    );
    assert_eq!(ask(&mut p, "HD").await, help);
    assert_eq!(ask(&mut p, "HD").await, help, "help answers every time");
    d.stop().await;
}

async fn dh_should_list_what_fits_one_sms_and_say_how_many_more_there_are(db: TestDb) {
    let (d, m, mut p, _hh, listing) = keyword_env(&db).await;
    let mut codes = Vec::new();
    for i in 1..=8 {
        codes.push(order(&m, &mut p, &listing, &format!("o{i}"), i).await.code);
    }
    let reply = ask(&mut p, "DH").await;
    assert!(chogate::text::gsm_septets(&reply).is_some_and(|n| n <= 160), "{reply}");
    let shown = codes.iter().filter(|c| reply.contains(c.as_str())).count();
    assert!((1..8).contains(&shown), "{reply}");
    // Newest first, every amount with its currency.
    assert!(reply.starts_with(&format!("Don hang (8): {} 8 kg Na 240.000d (moi); ", codes[7])), "{reply}");
    assert!(reply.ends_with(&format!("; va {} don khac. Bam *384#, chon 2.", 8 - shown)), "{reply}");
    d.stop().await;
}

#[tokio::test]
async fn messages_queued_while_no_smsc_is_bound_should_go_out_once_one_binds() {
    let smsc = Smsc::start().await;
    let d = TestDaemon::start(base_config(&smsc.config("viettel", ""))).await;
    let m = market(&d);
    let (_, listing) = village(&m, Lang::Vi).await;
    m.place_order(&partner(), IdemKey("o1".into()), listing.id, "B", 1, 30000).await.unwrap();
    // The bind comes only now: the message waited in the outbox.
    let mut p = smsc.accept().await;
    let (text, parts) = take_message(&mut p, |i| format!("5{i}")).await;
    assert_eq!(parts[0].dest.addr, HOUSEHOLD);
    assert!(text.starts_with("Đơn mới"));
    assert!(parts[0].tlvs.get(tag::MESSAGE_PAYLOAD).is_none());
    d.stop().await;
}

/// A backlog that takes longer to send than a claim's lease (a low `tps`, a lease of 2 s):
/// each message is submitted once. Claimed 2000 at a time, the messages still under way when
/// the batch had been handed out had outlived their lease, were claimed again, and went out
/// twice; now no more are claimed than can be in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_slower_than_the_lease_should_be_submitted_once_each() {
    const N: usize = 80;
    let smsc = Smsc::start().await;
    // 80 messages at 20 a second: 4 s of sending, twice the lease.
    let config = format!("[notify]\nlease_secs = 2\n{}window = 2\ntps = 20\n", smsc.config("viettel", ""));
    let config = base_config(&config);
    {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let m = Market::open(&config.database, shutdown.clone()).await.unwrap();
        village(&m, Lang::Vi).await;
        let actor = Actor { msisdn: HOUSEHOLD.into(), channel: Channel::Sms };
        for i in 0..N {
            m.queue_sms(&actor, IdemKey(format!("q{i}")), HOUSEHOLD, &format!("Tin {i}"), Lang::En, "test")
                .await
                .unwrap();
        }
        shutdown.cancel();
        m.stopped().await;
    }
    let d = TestDaemon::start(config).await;
    let m = market(&d);
    let mut p = smsc.accept().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let answering = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let pdu = match p.recv().await {
                    Some(pdu) => pdu,
                    None => return,
                };
                match pdu.body {
                    Body::SubmitSm(sm) => {
                        let n = seen.lock().unwrap().len();
                        answer(&mut p, pdu.sequence, 0, &format!("{n}")).await;
                        seen.lock().unwrap().push(String::from_utf8_lossy(&sm.short_message).into_owned());
                    }
                    Body::EnquireLink => p.send(&Pdu::new(pdu.sequence, Body::EnquireLinkResp)).await,
                    Body::Unbind => p.send(&Pdu::new(pdu.sequence, Body::UnbindResp)).await,
                    _ => {}
                }
            }
        })
    };
    // Every message recorded sent (the last ones after the batch's lease had run out).
    let sent = "SELECT COUNT(*) AS n FROM outbox WHERE status = 'sent'";
    tokio::time::timeout(4 * common::PATIENCE, async {
        while count(&m, sent).await < N as i64 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("not all sent");
    // One more message, claimed after every claim that could have taken one of the 80 again:
    // once it is submitted, so is anything claimed before it (the pacer serves in turn).
    let actor = Actor { msisdn: HOUSEHOLD.into(), channel: Channel::Sms };
    m.queue_sms(&actor, IdemKey("last".into()), HOUSEHOLD, "Tin cuoi", Lang::En, "test").await.unwrap();
    tokio::time::timeout(common::PATIENCE, async {
        while !seen.lock().unwrap().iter().any(|t| t == "Tin cuoi") {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the last message was not submitted");
    d.stop().await;
    answering.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let mut twice: Vec<&String> =
        seen.iter().filter(|t| seen.iter().filter(|s| s == t).count() > 1).collect();
    twice.sort();
    twice.dedup();
    assert!(twice.is_empty(), "submitted twice: {twice:?}");
    assert_eq!(seen.len(), N + 1);
}
