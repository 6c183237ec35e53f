//! USSD dialogues end to end: the real daemon, real SMPP over TCP, a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chogate::market::{Actor, Channel, Household, IdemKey, Lang, Market, OrderMove, OrderStatus};
use chogate::smpp::pdu::{BindKind, BindResp, Body, Pdu, Tlvs, empty_response};
use chogate::smpp::status;
use common::{Family, Peer, TestDaemon, Ussdc, base_config_with, subscriber_pdu, ussd_fields};
use serde_json::json;

const LEADER: &str = "84987000001";
const HOUSEHOLD: &str = "84912345678";

fn cli() -> Actor {
    Actor { msisdn: "test".into(), channel: Channel::Cli }
}

/// A village with a team leader and one household under them.
async fn village(m: &Market) -> (Household, Household) {
    let leader = m
        .register_leader(&cli(), IdemKey("l1".into()), LEADER, "Hoàng Văn Minh", 6001, "Bản Chu", Lang::Vi)
        .await
        .unwrap();
    let hh =
        m.register_household(&cli(), IdemKey("h1".into()), leader.id, HOUSEHOLD, "Lý Thị Mai").await.unwrap();
    (leader, hh)
}

fn market(d: &TestDaemon) -> Market {
    d.daemon.as_ref().unwrap().market.clone()
}

/// A daemon whose SQLite file lives in a fresh directory.
async fn daemon_with(smpp: &str, extra: &str) -> (TestDaemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chogate.db");
    let extra = format!("{extra}\n");
    let mut config = base_config_with(smpp, &extra);
    config.database.url = format!("sqlite://{}", db.display());
    (TestDaemon::start(config).await, dir)
}

async fn daemon() -> (TestDaemon, tempfile::TempDir) {
    daemon_with("", "").await
}

#[tokio::test]
async fn new_listing_dial_should_end_on_the_final_screen_with_the_listing_stored() {
    let (d, _dir) = daemon().await;
    let m = market(&d);
    let (_, hh) = village(&m).await;
    let before = m.stats().await.unwrap();
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let screens = u.run(HOUSEHOLD, 7, &["1", "1", "10", "25000", "1"]).await;
    assert_eq!(
        screens[0].text,
        "1. Đăng bán sản phẩm\n2. Đơn hàng\n3. Xác nhận thanh toán\n4. Cửa hàng\n5. Trợ giúp"
    );
    assert!(screens[1].text.starts_with("Chọn sản phẩm:\n1. Na\n"), "{}", screens[1].text);
    assert_eq!(screens[2].text, "Na: số lượng (kg)?");
    assert_eq!(screens[4].text, "Bán 10 kg Na, giá 25000 đ/kg?\n1. Đồng ý\n2. Hủy");
    let last = screens.last().unwrap();
    assert!(last.text.starts_with("Đã đăng bán. Mã tin: L"), "{}", last.text);
    assert!(last.is_final());
    for s in &screens[..5] {
        assert_eq!(s.op, 2, "{s:?}");
        assert_eq!(s.data_coding, 8, "Vietnamese goes out as UCS2");
        assert_eq!(s.its_session, Some([7, 0]), "session number echoed, no end bit");
        assert_eq!(s.dest, HOUSEHOLD);
    }
    assert_eq!(last.its_session, Some([7, 1]), "end bit on the final screen");
    let listings = m.listings(hh.id).await.unwrap();
    assert_eq!(listings.len(), 1);
    assert_eq!((listings[0].quantity_kg, listings[0].price_per_kg), (10, 25000));
    assert!(last.text.contains(&listings[0].code));
    let after = m.stats().await.unwrap();
    assert_eq!(after.listings, before.listings + 1);
    assert!(after.events > before.events);
    d.stop().await;
}

#[tokio::test]
async fn help_should_end_on_the_team_leader_screen() {
    let (d, _dir) = daemon().await;
    village(&market(&d)).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let screens = u.run(HOUSEHOLD, 1, &["5"]).await;
    assert_eq!(screens[1].text, "Hỗ trợ: tổ trưởng Hoàng Văn Minh, ĐT 0987000001.");
    assert!(screens[1].is_final());
    d.stop().await;
}

#[tokio::test]
async fn shortcut_dial_string_should_run_its_inputs() {
    let (d, _dir) = daemon().await;
    village(&market(&d)).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let screen = u.send(HOUSEHOLD, "*384*5#", 1, Some(3), None).await;
    assert!(screen.text.starts_with("Hỗ trợ:"), "{}", screen.text);
    assert!(screen.is_final());
    d.stop().await;
}

#[tokio::test]
async fn unregistered_number_should_self_register_then_get_the_main_menu() {
    let (d, _dir) = daemon().await;
    let m = market(&d);
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let s = u.run("84911111111", 2, &["9999", "6001", "Bản Chu", "Hoàng Văn An", "1"]).await;
    assert!(s[0].text.starts_with("Chợ 384: đăng ký cửa hàng"), "{}", s[0].text);
    assert!(s[1].text.starts_with("Mã xã không có trong danh sách."), "{}", s[1].text);
    assert_eq!(s[2].text, "Xã Đoàn Kết. Tên thôn/bản:");
    assert_eq!(s[4].text, "Đăng ký hộ Hoàng Văn An, Bản Chu, Xã Đoàn Kết?\n1. Đồng ý\n2. Hủy");
    assert!(s[5].is_final(), "{s:?}");
    let h = m.household_by_msisdn("0911111111").await.unwrap().expect("registered");
    assert_eq!((h.name.as_str(), h.commune_code), ("Hoàng Văn An", 6001));
    let again = u.dial("84911111111", 3).await;
    assert!(again.text.starts_with("1. Đăng bán sản phẩm"), "{}", again.text);
    d.stop().await;
}

#[tokio::test]
async fn orders_should_be_listed_and_accepted() {
    let (d, _dir) = daemon().await;
    let m = market(&d);
    let (_, hh) = village(&m).await;
    let listing = m.create_listing(&cli(), IdemKey("c1".into()), hh.id, 1, 50, 30000).await.unwrap();
    let partner = Actor { msisdn: "shopee".into(), channel: Channel::Http };
    let order =
        m.place_order(&partner, IdemKey("o1".into()), listing.id, "Nguyễn Văn B", 5, 150000).await.unwrap();
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let s = u.run(HOUSEHOLD, 4, &["2", "1", "1"]).await;
    assert!(s[1].text.contains(&order.code), "{}", s[1].text);
    assert_eq!(
        s[2].text,
        format!("{}: 150.000đ\n1. Nhận đơn\n2. Từ chối\n3. Đã giao bưu điện\n9. Quay lại", order.code)
    );
    assert_eq!(s[3].text, format!("Đã nhận đơn {}. Hãy chuẩn bị hàng.", order.code));
    assert_eq!(m.order(hh.id, order.id).await.unwrap().status, OrderStatus::Accepted);
    d.stop().await;
}

#[tokio::test]
async fn payment_should_set_a_pin_confirm_and_lock_after_five_wrong() {
    let (d, _dir) = daemon().await;
    let m = market(&d);
    let (_, hh) = village(&m).await;
    let listing = m.create_listing(&cli(), IdemKey("c1".into()), hh.id, 1, 50, 30000).await.unwrap();
    let partner = Actor { msisdn: "post".into(), channel: Channel::Http };
    let mut orders = Vec::new();
    for i in 0..2 {
        let o = m.place_order(&partner, IdemKey(format!("o{i}")), listing.id, "B", 1, 30000).await.unwrap();
        m.move_order(&cli(), IdemKey(format!("a{i}")), hh.id, o.id, OrderMove::Accept, None).await.unwrap();
        m.move_order(&cli(), IdemKey(format!("s{i}")), hh.id, o.id, OrderMove::Ship, None).await.unwrap();
        orders.push(o);
    }
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let s = u.run(HOUSEHOLD, 5, &["3", "1", "1234", "1234", "1234"]).await;
    assert_eq!(s[2].text, "Tạo mã PIN 4 số để xác nhận thanh toán:");
    assert_eq!(s[3].text, "Nhập lại mã PIN:");
    assert!(s[4].text.starts_with("Nhập PIN xác nhận đã nhận 30.000đ"), "{}", s[4].text);
    assert!(s[5].is_final() && s[5].text.starts_with("Đã xác nhận thanh toán"), "{}", s[5].text);
    let mut paid = 0;
    for o in &orders {
        paid += usize::from(m.order(hh.id, o.id).await.unwrap().status == OrderStatus::Paid);
    }
    assert_eq!(paid, 1);

    // Five wrong PINs lock payment confirmation.
    let mut s = u.run(HOUSEHOLD, 6, &["3", "1"]).await;
    assert!(s[2].text.starts_with("Nhập PIN"), "{}", s[2].text);
    for i in 0..5 {
        let screen = u.answer(HOUSEHOLD, 6, "0000").await;
        s.push(screen.clone());
        if i < 4 {
            assert!(screen.text.starts_with(&format!("Sai mã PIN. Còn {} lần.", 4 - i)), "{}", screen.text);
        } else {
            assert!(screen.is_final() && screen.text.starts_with("Sai PIN 5 lần."), "{}", screen.text);
        }
    }
    d.stop().await;
}

#[tokio::test]
async fn aborted_dialogue_should_resume_where_it_was_and_apply_once() {
    let (d, dir) = daemon().await;
    let m = market(&d);
    let (_, hh) = village(&m).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let s = u.run(HOUSEHOLD, 8, &["1", "1", "10"]).await;
    assert_eq!(s[3].text, "Giá bán mỗi kg (đồng)?");
    u.abort(HOUSEHOLD, 8).await;
    let offer = u.dial(HOUSEHOLD, 9).await;
    assert_eq!(offer.text, "Bạn đang làm dở.\n1. Tiếp tục\n2. Bắt đầu lại");
    let back = u.answer(HOUSEHOLD, 9, "1").await;
    assert_eq!(back.text, "Giá bán mỗi kg (đồng)?", "continues at the same screen");
    let confirm = u.answer(HOUSEHOLD, 9, "25000").await;
    assert_eq!(
        confirm.text, "Bán 10 kg Na, giá 25000 đ/kg?\n1. Đồng ý\n2. Hủy",
        "with what was typed before"
    );
    let done = u.answer(HOUSEHOLD, 9, "1").await;
    assert!(done.is_final());
    assert_eq!(m.listings(hh.id).await.unwrap().len(), 1);
    d.stop().await;

    // One audit event per dialogue, written when it ended: how, after how many answers.
    let rows = dialogue_events(&dir, &hh.msisdn);
    let summary: Vec<_> =
        rows.iter().map(|(k, _, d)| (k.as_str(), d["outcome"].clone(), d["inputs"].clone())).collect();
    assert_eq!(
        summary,
        [
            ("dialogue_closed", json!("user abort"), json!(3)),
            ("dialogue_closed", json!("completed"), json!(3)),
        ]
    );
    for (_, at_ms, data) in &rows {
        let opened = data["opened_at_ms"].as_i64().unwrap();
        assert!(opened > 1_700_000_000_000 && opened <= *at_ms, "{data} at {at_ms}");
    }
}

/// The dialogue events of a number (kind, at_ms, data), read from the stopped daemon's file.
fn dialogue_events(dir: &tempfile::TempDir, msisdn: &str) -> Vec<(String, i64, serde_json::Value)> {
    let db = rusqlite::Connection::open(dir.path().join("chogate.db")).unwrap();
    let mut q = db
        .prepare(
            "SELECT kind, at_ms, data FROM events WHERE kind LIKE 'dialogue%' AND actor = ?1 ORDER BY id",
        )
        .unwrap();
    q.query_map([msisdn], |r| {
        Ok((r.get(0)?, r.get(1)?, serde_json::from_str(&r.get::<_, String>(2)?).unwrap()))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[tokio::test]
async fn dialogue_open_at_shutdown_should_be_recorded_as_ended() {
    let (d, dir) = daemon().await;
    let (_, hh) = village(&market(&d)).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    u.run(HOUSEHOLD, 50, &["1"]).await;
    d.stop().await;
    let rows = dialogue_events(&dir, &hh.msisdn);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].2["outcome"].clone(), rows[0].2["inputs"].clone()), (json!("shutdown"), json!(1)));
}

#[tokio::test]
async fn final_screen_that_was_not_delivered_should_be_shown_again_without_applying_twice() {
    let (d, _dir) = daemon().await;
    let m = market(&d);
    let (_, hh) = village(&m).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    u.run(HOUSEHOLD, 10, &["1", "1", "10", "25000"]).await;
    // Confirm, but the USSD centre fails to deliver the final screen (weak signal).
    let body = subscriber_pdu(Family::DeliverSm, HOUSEHOLD, "1", 18, Some(10), None);
    let seq = u.peer.request(body).await;
    let resp = u.peer.recv_skip_enquire().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (seq, 0));
    let final_pdu = u.peer.recv_skip_enquire().await.unwrap();
    let screen = ussd_fields(&final_pdu).unwrap();
    assert!(screen.is_final());
    let nack = empty_response(final_pdu.command_id()).unwrap();
    u.peer.send(&Pdu { status: status::ESME_RSYSERR, sequence: final_pdu.sequence, body: nack }).await;
    assert_eq!(m.listings(hh.id).await.unwrap().len(), 1);
    // Redial: continue shows the outcome again; nothing is listed twice.
    let offer = u.dial(HOUSEHOLD, 11).await;
    assert!(offer.text.contains("1. Tiếp tục"), "{}", offer.text);
    let again = u.answer(HOUSEHOLD, 11, "1").await;
    assert_eq!(again.text, screen.text);
    assert!(again.is_final());
    assert_eq!(m.listings(hh.id).await.unwrap().len(), 1);
    d.stop().await;
}

#[tokio::test]
async fn restart_choice_should_start_from_the_main_menu() {
    let (d, _dir) = daemon().await;
    village(&market(&d)).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    u.run(HOUSEHOLD, 12, &["1", "1"]).await;
    u.abort(HOUSEHOLD, 12).await;
    u.dial(HOUSEHOLD, 13).await;
    let main = u.answer(HOUSEHOLD, 13, "2").await;
    assert!(main.text.starts_with("1. Đăng bán sản phẩm"), "{}", main.text);
    d.stop().await;
}

#[tokio::test]
async fn replies_should_use_the_accounts_pdu_family_and_text_mode() {
    let extra = "[[smpp_server.accounts]]\nsystem_id = \"sub\"\npassword = \"pw\"\nreply_pdu = \"submit_sm\"\n\
                 [[smpp_server.accounts]]\nsystem_id = \"data\"\npassword = \"pw\"\nreply_pdu = \"data_sm\"\ntext_mode = \"gsm\"\n";
    let (d, _dir) = daemon_with("", extra).await;
    village(&market(&d)).await;
    for (account, family, command, dc) in
        [("sub", Family::SubmitSm, "submit_sm", 8u8), ("data", Family::DataSm, "data_sm", 0u8)]
    {
        let mut peer = Peer::connect(d.smpp).await;
        assert_eq!(peer.bind(BindKind::Transceiver, account, "pw").await.status, 0);
        let mut u = Ussdc { peer, family };
        let s = u.run(HOUSEHOLD, 20, &["5"]).await;
        assert_eq!((s[0].command, s[0].data_coding), (command, dc), "{account}");
        if dc == 0 {
            assert_eq!(
                s[0].text,
                "1. Dang ban san pham\n2. Don hang\n3. Xac nhan thanh toan\n4. Cua hang\n5. Tro giup"
            );
            assert_eq!(s[1].text, "Ho tro: to truong Hoang Van Minh, DT 0987000001.");
        }
        assert!(s[1].is_final());
    }
    d.stop().await;
}

#[tokio::test]
async fn dialogues_keyed_by_user_message_reference_should_stay_apart() {
    let extra = "[[smpp_server.accounts]]\nsystem_id = \"umr\"\npassword = \"pw\"\ndialogue_key = \"user_message_reference\"\n";
    let (d, _dir) = daemon_with("", extra).await;
    village(&market(&d)).await;
    let mut peer = Peer::connect(d.smpp).await;
    assert_eq!(peer.bind(BindKind::Transceiver, "umr", "pw").await.status, 0);
    let mut u = Ussdc { peer, family: Family::DeliverSm };
    // Two dialogues of one subscriber, told apart by their reference only.
    let a = u.send(HOUSEHOLD, "*384#", 1, None, Some(100)).await;
    assert_eq!(a.umr, Some(100));
    let a2 = u.send(HOUSEHOLD, "1", 18, None, Some(100)).await;
    assert!(a2.text.starts_with("Chọn sản phẩm:"), "{}", a2.text);
    let b = u.send(HOUSEHOLD, "*384#", 1, None, Some(200)).await;
    assert_eq!(b.umr, Some(200));
    let b2 = u.send(HOUSEHOLD, "5", 18, None, Some(200)).await;
    assert!(b2.is_final() && b2.umr == Some(200));
    let a3 = u.send(HOUSEHOLD, "1", 18, None, Some(100)).await;
    assert_eq!(a3.text, "Na: số lượng (kg)?");
    d.stop().await;
}

#[tokio::test]
async fn leader_should_register_a_household_and_see_village_progress() {
    let (d, _dir) = daemon().await;
    let m = market(&d);
    village(&m).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let s = u.run(LEADER, 30, &["1", "0912 000 111", "Đinh Văn Tám", "1"]).await;
    assert!(s[0].text.starts_with("1. Đăng ký hộ mới"), "{}", s[0].text);
    assert_eq!(s[3].text, "Đăng ký hộ Đinh Văn Tám, số 84912000111?\n1. Đồng ý\n2. Hủy");
    assert!(s[4].is_final());
    assert!(m.household_by_msisdn("84912000111").await.unwrap().is_some());
    let p = u.run(LEADER, 31, &["2"]).await;
    assert!(p[1].is_final());
    assert!(p[1].text.starts_with("Bản Chu: 3 hộ"), "{}", p[1].text);
    d.stop().await;
}

#[tokio::test]
async fn idle_dialogue_should_time_out_and_be_resumable() {
    let (d, _dir) = daemon_with("", "[ussd]\nsession_timeout_secs = 1\n").await;
    village(&market(&d)).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    u.run(HOUSEHOLD, 40, &["1", "1"]).await;
    // The sweeper closes it after a second of silence: wait for that event.
    let ussd = d.daemon.as_ref().unwrap().ussd.clone();
    tokio::time::timeout(common::PATIENCE, ussd.wait_no_dialogues()).await.unwrap();
    let offer = u.dial(HOUSEHOLD, 41).await;
    assert!(offer.text.contains("1. Tiếp tục"), "{}", offer.text);
    d.stop().await;
}

#[tokio::test]
async fn client_role_should_answer_smsc_ussd_with_submit_sm() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let extra = format!(
        "[[smsc]]\nname = \"viettel\"\nhost = \"127.0.0.1\"\nport = {port}\nsystem_id = \"gw\"\npassword = \"secret\"\n"
    );
    let (d, _dir) = daemon_with("", &extra).await;
    village(&market(&d)).await;
    let (stream, _) = listener.accept().await.unwrap();
    let mut smsc = Peer::from_stream(stream);
    let bind = smsc.recv().await.unwrap();
    let resp = BindResp { kind: BindKind::Transceiver, system_id: "smsc".into(), tlvs: Tlvs::default() };
    smsc.send(&Pdu::new(bind.sequence, Body::BindResp(resp))).await;
    let mut u = Ussdc { peer: smsc, family: Family::DeliverSm };
    let s = u.run(HOUSEHOLD, 50, &["5"]).await;
    assert_eq!(s[0].command, "submit_sm");
    assert!(s[1].is_final() && s[1].command == "submit_sm");
    assert_eq!(s[1].its_session, Some([50, 1]));
    drop(u);
    d.stop().await;
}

#[tokio::test]
async fn my_shop_should_change_price_and_quantity_and_stop_selling() {
    let (d, _dir) = daemon().await;
    let m = market(&d);
    let (_, hh) = village(&m).await;
    let listing = m.create_listing(&cli(), IdemKey("c1".into()), hh.id, 1, 50, 30000).await.unwrap();
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let s = u.run(HOUSEHOLD, 60, &["4", "1", "1", "32.000"]).await;
    assert_eq!(s[1].text, format!("Hàng đang bán:\n1. {} Na 50kg\n9. Quay lại", listing.code));
    assert_eq!(
        s[2].text,
        format!("{}: 50kg, 30.000đ/kg\n1. Đổi giá\n2. Đổi số lượng\n3. Ngừng bán\n9. Quay lại", listing.code)
    );
    assert_eq!(s[4].text, format!("Đã cập nhật {}: 50kg, 32.000đ/kg.", listing.code));
    assert!(s[4].is_final());
    let s = u.run(HOUSEHOLD, 61, &["4", "1", "2", "80"]).await;
    assert_eq!(s[4].text, format!("Đã cập nhật {}: 80kg, 32.000đ/kg.", listing.code));
    let s = u.run(HOUSEHOLD, 62, &["4", "1", "3"]).await;
    assert_eq!(s[3].text, format!("Đã ngừng bán {}.", listing.code));
    assert!(m.listings(hh.id).await.unwrap().is_empty(), "a stopped listing is no longer active");
    let s = u.run(HOUSEHOLD, 63, &["4"]).await;
    assert_eq!(s[1].text, "Bạn chưa đăng bán sản phẩm nào.");
    d.stop().await;
}

#[tokio::test]
async fn orders_should_be_rejected_or_handed_to_the_post_office() {
    let (d, _dir) = daemon().await;
    let m = market(&d);
    let (_, hh) = village(&m).await;
    let listing = m.create_listing(&cli(), IdemKey("c1".into()), hh.id, 1, 50, 30000).await.unwrap();
    let partner = Actor { msisdn: "shopee".into(), channel: Channel::Http };
    let a = m.place_order(&partner, IdemKey("o1".into()), listing.id, "B", 1, 30000).await.unwrap();
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let s = u.run(HOUSEHOLD, 64, &["2", "1", "2"]).await;
    assert_eq!(s[3].text, format!("Đã từ chối đơn {}.", a.code));
    assert_eq!(m.order(hh.id, a.id).await.unwrap().status, OrderStatus::Rejected);
    let b = m.place_order(&partner, IdemKey("o2".into()), listing.id, "C", 1, 30000).await.unwrap();
    m.move_order(&cli(), IdemKey("a2".into()), hh.id, b.id, OrderMove::Accept, None).await.unwrap();
    let s = u.run(HOUSEHOLD, 65, &["2", "1", "3"]).await;
    assert_eq!(s[3].text, format!("Đơn {} đã giao bưu điện.", b.code));
    assert_eq!(m.order(hh.id, b.id).await.unwrap().status, OrderStatus::Shipped);
    d.stop().await;
}

#[tokio::test]
async fn leader_should_reset_a_households_pin_which_is_then_set_anew() {
    let (d, _dir) = daemon().await;
    let m = market(&d);
    let (_, hh) = village(&m).await;
    m.set_pin(&cli(), IdemKey("p1".into()), hh.id, "4321").await.unwrap();
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let s = u.run(LEADER, 66, &["3", "0912345678", "1"]).await;
    assert_eq!(s[2].text, "Đặt lại mã PIN của 84912345678?\n1. Đồng ý\n2. Hủy");
    assert!(s[3].is_final() && s[3].text.starts_with("Đã đặt lại PIN."), "{}", s[3].text);
    assert!(!m.household_by_msisdn(HOUSEHOLD).await.unwrap().unwrap().has_pin);
    // A household is no leader: the leader menu is not theirs, and a reset from them is refused.
    let s = u.run(HOUSEHOLD, 67, &[]).await;
    assert!(s[0].text.starts_with("1. Đăng bán sản phẩm"), "{}", s[0].text);
    d.stop().await;
}

#[tokio::test]
async fn a_dial_beyond_max_dialogues_should_be_throttled_until_one_ends() {
    let (d, _dir) = daemon_with("", "[ussd]\nmax_dialogues = 1").await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let first = u.dial("84911111111", 1).await;
    assert_eq!(first.op, 2, "{first:?}");
    // The table is full: the second number's dial is refused at once, and nothing is held.
    let seq =
        u.peer.request(subscriber_pdu(Family::DeliverSm, "84922222222", "*384#", 1, Some(2), None)).await;
    let resp = u.peer.recv_skip_enquire().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (seq, status::ESME_RTHROTTLED));
    // A new dial in the first dialogue (same key) replaces it: it is not refused.
    assert_eq!(u.dial("84911111111", 1).await.op, 2);
    // Once it ends (user abort), the second number gets its menu.
    let abort =
        u.peer.request(subscriber_pdu(Family::DeliverSm, "84911111111", "", 0x81, Some(1), None)).await;
    let resp = u.peer.recv_skip_enquire().await.unwrap();
    assert_eq!((resp.sequence, resp.status), (abort, 0));
    assert_eq!(u.dial("84922222222", 4).await.op, 2);
    d.stop().await;
}

#[tokio::test]
async fn a_subscriber_pdu_should_be_answered_only_when_its_screen_has_room_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config_with("", "");
    config.database.url = format!("sqlite://{}", dir.path().join("chogate.db").display());
    config.smpp_server.accounts[0].window = 1;
    let d = TestDaemon::start(config).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    // A's screen takes the one place in chogate's window; the USSD centre holds its answer.
    let a = u.peer.request(subscriber_pdu(Family::DeliverSm, "84911111111", "*384#", 1, Some(1), None)).await;
    let resp_a = u.peer.recv_skip_enquire().await.unwrap();
    assert_eq!((resp_a.sequence, resp_a.status), (a, 0));
    let screen_a = u.peer.recv_skip_enquire().await.unwrap();
    assert!(ussd_fields(&screen_a).is_some(), "{screen_a:?}");
    // B dials: its step is done, but its screen has no room, so its PDU keeps its place in
    // the centre's window (not answered) instead of a step waiting inside chogate.
    let b = u.peer.request(subscriber_pdu(Family::DeliverSm, "84922222222", "*384#", 1, Some(2), None)).await;
    let early = tokio::time::timeout(Duration::from_millis(300), u.peer.recv_skip_enquire()).await;
    assert!(early.is_err(), "answered before its screen had room: {early:?}");
    // A's screen is answered: B's PDU is answered, then B's screen comes.
    u.peer.send(&Pdu::new(screen_a.sequence, empty_response(screen_a.command_id()).unwrap())).await;
    let resp_b = u.peer.recv_skip_enquire().await.unwrap();
    assert_eq!((resp_b.sequence, resp_b.status), (b, 0));
    let screen_b = u.peer.recv_skip_enquire().await.unwrap();
    assert!(ussd_fields(&screen_b).is_some(), "{screen_b:?}");
    u.peer.send(&Pdu::new(screen_b.sequence, empty_response(screen_b.command_id()).unwrap())).await;
    d.stop().await;
}
