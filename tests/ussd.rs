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
const MAIN: &str = "1. Đăng bán hàng\n2. Đơn hàng\n3. Thanh toán\n4. Cửa hàng\n5. Trợ giúp";

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
    assert_eq!(screens[0].text, MAIN);
    assert!(screens[1].text.starts_with("Chọn sản phẩm:\n1. Na\n"), "{}", screens[1].text);
    assert_eq!(screens[2].text, "Na: số lượng (kg)?\n* Quay lại");
    assert_eq!(screens[4].text, "Bán 10kg Na, 25.000đ/kg?\n1. Đồng ý\n2. Không");
    let last = screens.last().unwrap();
    assert_eq!(last.text, "Đã đăng bán 10kg Na. Có đơn sẽ báo SMS.");
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

    let after = m.stats().await.unwrap();
    assert_eq!(after.listings, before.listings + 1);
    assert!(after.events > before.events);
    d.stop().await;
}

#[tokio::test]
async fn help_should_name_the_team_leader_the_sms_keywords_and_how_to_resume() {
    let (d, _dir) = daemon().await;
    village(&market(&d)).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let screens = u.run(HOUSEHOLD, 1, &["5", "1", "9", "2", "9", "3"]).await;
    assert_eq!(screens[2].text, "Cần giúp, gọi tổ trưởng Hoàng Văn Minh (0987000001).\n9. Quay lại");
    assert!(screens[4].text.contains("DH") && screens[4].text.contains("HUY"), "{}", screens[4].text);
    assert!(screens[6].text.contains("*384#"), "{}", screens[6].text);
    // The leader is pointed at the hotline, not at himself; without one, at the commune.
    let s = u.run(LEADER, 2, &["5", "5", "1"]).await;
    assert_eq!(s[3].text, "Cần giúp, gọi UBND Xã Đoàn Kết.\n9. Quay lại");
    d.stop().await;
}

#[tokio::test]
async fn help_should_give_the_hotline_where_a_village_has_no_leader() {
    let (d, _dir) = daemon_with("", "[ussd]\nhotline = \"1900 1234\"").await;
    let m = market(&d);
    // A household whose village has no team: registered through the admin import path.
    let leader = m
        .register_leader(&cli(), IdemKey("l1".into()), LEADER, "Hoàng Văn Minh", 6001, "Bản Chu", Lang::Vi)
        .await
        .unwrap();
    let s = Ussdc::bind(d.smpp, Family::DeliverSm).await.run(&leader.msisdn, 3, &["5", "5", "1"]).await;
    assert_eq!(s[3].text, "Cần giúp, gọi đường dây nóng 1900 1234.\n9. Quay lại");
    d.stop().await;
}

#[tokio::test]
async fn shortcut_dial_string_should_run_its_inputs() {
    let (d, _dir) = daemon().await;
    village(&market(&d)).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let screen = u.send(HOUSEHOLD, "*384*5*1#", 1, Some(3), None).await;
    assert!(screen.text.starts_with("Cần giúp, gọi tổ trưởng"), "{}", screen.text);
    let screen = u.send(HOUSEHOLD, "*384*2#", 1, Some(4), None).await;
    assert!(screen.is_final(), "no orders: the list ends the dialogue");
    d.stop().await;
}

#[tokio::test]
async fn long_dial_string_should_run_only_the_first_inputs() {
    // 5 then 9 is help and back: a thousand such pairs would walk two thousand screens.
    // Only the first 16 inputs run (eight pairs: back on the main menu); 5, 1 after them
    // would show whom to call.
    let (d, _dir) = daemon().await;
    village(&market(&d)).await;
    // data_sm: the dial string goes in message_payload, past short_message's 254 octets.
    let mut u = Ussdc::bind(d.smpp, Family::DataSm).await;
    let dial = format!("*384*{}5*1#", "5*9*".repeat(1000));
    let screen = u.send(HOUSEHOLD, &dial, 1, Some(3), None).await;
    assert_eq!(screen.text, MAIN);
    assert!(!screen.is_final());
    // The dialogue goes on from there as usual.
    let screen = u.answer(HOUSEHOLD, 3, "5").await;
    assert!(screen.text.starts_with("1. "), "{}", screen.text);
    d.stop().await;

    let (d, _dir) = daemon_with("", "[ussd]\nmax_inputs_per_dial = 1").await;
    village(&market(&d)).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let screen = u.send(HOUSEHOLD, "*384*5*1#", 1, Some(4), None).await;
    assert!(!screen.text.starts_with("Cần giúp"), "only 5 ran: {}", screen.text);
    let help = u.answer(HOUSEHOLD, 4, "1").await;
    assert!(help.text.starts_with("Cần giúp, gọi tổ trưởng"), "{}", help.text);
    d.stop().await;
}

#[tokio::test]
async fn unregistered_number_should_self_register_then_get_the_main_menu() {
    let (d, dir) = daemon().await;
    let m = market(&d);
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let (leader, _) = village(&m).await;
    let s = u
        .run(
            "84911111111",
            2,
            &["99999", "doan ket", "1", "2", "ban  CHU", "0912345678", "Hoàng Văn An", "1"],
        )
        .await;
    assert_eq!(s[0].text, "Chợ 384: đăng ký bán hàng. Nhập tên xã/phường (vd: chi lang):");
    // A name that is no commune: asked again, the hint in the title's place, never paged.
    assert_eq!(s[1].text, "Không tìm thấy xã/phường này. Nhập lại vài chữ của tên:");
    assert_eq!(s[2].text, "Chọn xã/phường:\n1. Xã Đoàn Kết\n9. Quay lại");
    assert_eq!(s[3].text, "Chọn thôn/bản:\n1. Bản Chu\n2. Thôn/bản khác\n9. Quay lại");
    assert_eq!(s[4].text, "Tên thôn/bản của bạn:\n* Quay lại");
    assert_eq!(
        s[6].text, "Tên chỉ gồm chữ cái và dấu cách.\nHọ tên chủ hộ:\n* Quay lại",
        "a number is no name"
    );
    // "ban  CHU" is the commune's Bản Chu, not a new village.
    assert_eq!(s[7].text, "Đăng ký Hoàng Văn An, Bản Chu?\n1. Đồng ý\n2. Không");
    assert_eq!(s[8].text, "Đã gửi đăng ký. Chờ tổ trưởng Hoàng Văn Minh xác nhận, bạn sẽ nhận SMS.");
    assert!(s[8].is_final(), "{s:?}");
    let h = m.household_by_msisdn("0911111111").await.unwrap().expect("registered");
    assert_eq!(
        (h.name.as_str(), h.commune_code, h.village_id, h.pending),
        ("Hoàng Văn An", 6001, leader.village_id, true)
    );
    // Until the leader confirms, it cannot sell, and it is told whom to call.
    let again = u.dial("84911111111", 3).await;
    assert_eq!(again.text, "Đăng ký chờ xác nhận, có SMS báo. Gọi tổ trưởng Hoàng Văn Minh (0987000001).");
    assert!(again.is_final());
    // The leader was told by SMS, and confirms from the leader menu.
    let sms = outbox_texts(&dir, LEADER);
    assert_eq!(
        sms,
        [
            "Hộ Hoàng Văn An (0911111111) đăng ký bán hàng ở Bản Chu. Bấm *384#, chọn 1 (Chờ xác nhận) để xác nhận."
        ]
    );
    let l = u.run(LEADER, 4, &["1", "1", "1"]).await;
    assert_eq!(l[1].text, "Chờ xác nhận:\n1. Hoàng Văn An 0911***111\n9. Quay lại");
    assert_eq!(l[2].text, "Hoàng Văn An 0911***111:\n1. Xác nhận\n2. Không phải hộ trong thôn\n9. Quay lại");
    assert!(l[3].is_final() && l[3].text.starts_with("Đã xác nhận hộ Hoàng Văn An."), "{}", l[3].text);
    let welcome = outbox_texts(&dir, "84911111111");
    assert!(
        welcome[0].starts_with("Chào Hoàng Văn An! Cửa hàng Chợ 384 của bạn đã sẵn sàng."),
        "{welcome:?}"
    );
    let again = u.dial("84911111111", 5).await;
    assert_eq!(again.text, MAIN);
    d.stop().await;
}

/// The texts of the SMS queued for a number, oldest first, read from the daemon's file.
fn outbox_texts(dir: &tempfile::TempDir, msisdn: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(dir.path().join("chogate.db")).unwrap();
    let mut q = db.prepare("SELECT text FROM outbox WHERE msisdn = ?1 ORDER BY id").unwrap();
    q.query_map([msisdn], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
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
    let s = u.run(HOUSEHOLD, 4, &["2", "1", "3", "9", "1"]).await;
    assert_eq!(s[1].text, format!("Đơn hàng:\n1. {} Na 5kg Mới\n9. Quay lại", order.code));
    // A new order offers what a new order allows: no "handed to the post office".
    assert_eq!(
        s[2].text,
        format!("{} mới:\n1. Nhận đơn\n2. Từ chối\n3. Xem chi tiết\n9. Quay lại", order.code)
    );
    // The details: what and who on the first page, where to send it on the second.
    assert_eq!(
        s[3].text,
        format!("{}: 5kg Na, 150.000đ, người mua Nguyễn Văn B.\n0. Tiếp\n9. Quay lại", order.code)
    );
    assert_eq!(
        s[5].text,
        format!("Đã nhận đơn {}. Gửi hàng ở bưu điện, rồi chọn Đã giao bưu điện.", order.code)
    );
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
    let s = u.run(HOUSEHOLD, 5, &["3", "1", "1", "1234", "1234"]).await;
    assert_eq!(s[3].text, "Chưa có mã PIN. Tạo PIN 4 số (giữ bí mật):\n* Quay lại");
    assert!(s[4].text.starts_with("Nhập lại PIN để xác nhận đã nhận 30.000đ"), "{}", s[4].text);
    assert!(
        s[5].is_final() && s[5].text.starts_with("Đã tạo mã PIN và xác nhận thanh toán"),
        "{}",
        s[5].text
    );
    let mut paid = 0;
    for o in &orders {
        paid += usize::from(m.order(hh.id, o.id).await.unwrap().status == OrderStatus::Paid);
    }
    assert_eq!(paid, 1);

    // Five wrong PINs lock payment confirmation.
    let mut s = u.run(HOUSEHOLD, 6, &["3", "1", "1"]).await;
    assert!(s[3].text.starts_with("Nhập PIN"), "{}", s[3].text);
    for i in 0..5 {
        let screen = u.answer(HOUSEHOLD, 6, "0000").await;
        s.push(screen.clone());
        if i < 4 {
            assert!(screen.text.starts_with(&format!("Sai mã PIN. Còn {} lần.", 4 - i)), "{}", screen.text);
        } else {
            assert!(
                screen.is_final()
                    && screen.text.starts_with("Khóa đến ")
                    && screen.text.ends_with("do sai PIN 5 lần. Gọi tổ trưởng Hoàng Văn Minh (0987000001)."),
                "{}",
                screen.text
            );
        }
    }
    // During the lock the PIN is not asked for: the screen says until when, and who can unlock.
    let s = u.run(HOUSEHOLD, 7, &["3", "1", "1"]).await;
    assert!(s[3].is_final(), "{s:?}");
    assert!(s[3].text.starts_with("Khóa đến "), "{}", s[3].text);
    assert!(
        s[3].text.ends_with("do sai PIN 5 lần. Gọi tổ trưởng Hoàng Văn Minh (0987000001)."),
        "{}",
        s[3].text
    );
    d.stop().await;
}

#[tokio::test]
async fn aborted_dialogue_should_resume_where_it_was_and_apply_once() {
    let (d, dir) = daemon().await;
    let m = market(&d);
    let (_, hh) = village(&m).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let s = u.run(HOUSEHOLD, 8, &["1", "1", "10"]).await;
    assert_eq!(s[3].text, "Giá mỗi kg (đồng)?\n* Quay lại");
    u.abort(HOUSEHOLD, 8).await;
    let offer = u.dial(HOUSEHOLD, 9).await;
    assert_eq!(offer.text, "Bạn đang làm dở: Đăng bán hàng.\n1. Tiếp tục\n2. Bắt đầu lại");
    let back = u.answer(HOUSEHOLD, 9, "1").await;
    assert_eq!(back.text, "Giá mỗi kg (đồng)?\n* Quay lại", "continues at the same screen");
    let confirm = u.answer(HOUSEHOLD, 9, "25000").await;
    assert_eq!(confirm.text, "Bán 10kg Na, 25.000đ/kg?\n1. Đồng ý\n2. Không", "with what was typed before");
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
    assert_eq!(main.text, MAIN);
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
        let mut u = Ussdc::bind_as(d.smpp, account, "pw", family).await;
        let s = u.run(HOUSEHOLD, 20, &["5", "1", "9", "9", "2"]).await;
        assert_eq!((s[0].command, s[0].data_coding), (command, dc), "{account}");
        if dc == 0 {
            assert_eq!(s[0].text, "1. Dang ban hang\n2. Don hang\n3. Thanh toan\n4. Cua hang\n5. Tro giup");
            assert_eq!(s[2].text, "Can giup, goi to truong Hoang Van Minh (0987000001).\n9. Quay lai");
        }
        assert!(s[5].is_final(), "no orders: the list ends the dialogue");
    }
    d.stop().await;
}

#[tokio::test]
async fn dialogues_keyed_by_user_message_reference_should_stay_apart() {
    let extra = "[[smpp_server.accounts]]\nsystem_id = \"umr\"\npassword = \"pw\"\ndialogue_key = \"user_message_reference\"\n";
    let (d, _dir) = daemon_with("", extra).await;
    village(&market(&d)).await;
    let mut u = Ussdc::bind_as(d.smpp, "umr", "pw", Family::DeliverSm).await;
    // Two dialogues of one subscriber, told apart by their reference only.
    let a = u.send(HOUSEHOLD, "*384#", 1, None, Some(100)).await;
    assert_eq!(a.umr, Some(100));
    let a2 = u.send(HOUSEHOLD, "1", 18, None, Some(100)).await;
    assert!(a2.text.starts_with("Chọn sản phẩm:"), "{}", a2.text);
    let b = u.send(HOUSEHOLD, "*384#", 1, None, Some(200)).await;
    assert_eq!(b.umr, Some(200));
    let b2 = u.send(HOUSEHOLD, "2", 18, None, Some(200)).await;
    assert!(b2.is_final() && b2.umr == Some(200));
    let a3 = u.send(HOUSEHOLD, "1", 18, None, Some(100)).await;
    assert_eq!(a3.text, "Na: số lượng (kg)?\n* Quay lại");
    d.stop().await;
}

#[tokio::test]
async fn leader_should_register_a_household_and_see_village_progress() {
    let (d, dir) = daemon().await;
    let m = market(&d);
    village(&m).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    // A number registered already is refused on the phone screen, before anything else.
    let s = u.run(LEADER, 30, &["2", HOUSEHOLD, "0912 000 111", "0912000112", "Đinh Văn Tám", "1"]).await;
    assert_eq!(
        s[0].text,
        "1. Chờ xác nhận\n2. Đăng ký hộ\n3. Hộ trong thôn\n4. Tiến độ thôn\n5. Cửa hàng tôi"
    );
    assert_eq!(s[2].text, "Số này đã đăng ký rồi. Nhập số khác:\nSố điện thoại của hộ:\n* Quay lại");
    // A phone number is no name.
    assert_eq!(s[4].text, "Tên chỉ gồm chữ cái và dấu cách.\nHọ tên chủ hộ:\n* Quay lại");
    assert_eq!(s[5].text, "Đăng ký hộ Đinh Văn Tám, số 0912000111?\n1. Đồng ý\n2. Không");
    assert!(s[6].is_final());
    assert!(m.household_by_msisdn("84912000111").await.unwrap().is_some());
    let welcome = outbox_texts(&dir, "84912000111");
    assert!(welcome[0].starts_with("Chào Đinh Văn Tám!"), "{welcome:?}");
    // Progress counts confirmed households and listings on sale: a stopped one does not.
    let (_, hh) = (
        m.household_by_msisdn(LEADER).await.unwrap().unwrap(),
        m.household_by_msisdn(HOUSEHOLD).await.unwrap().unwrap(),
    );
    let l = m.create_listing(&cli(), IdemKey("c1".into()), hh.id, 1, 5, 30000).await.unwrap();
    m.update_listing(&cli(), IdemKey("c2".into()), hh.id, l.id, chogate::market::ListingChange::Stop)
        .await
        .unwrap();
    m.self_register(&cli(), IdemKey("r1".into()), "0911111112", 6001, "Bản Chu", "Vy Thị Ngọc", Lang::Vi)
        .await
        .unwrap();
    let p = u.run(LEADER, 31, &["4"]).await;
    assert_eq!(
        p[1].text,
        "Bản Chu: 3 hộ\n0 đang bán\n0 có tài khoản thanh toán\n1 chờ xác nhận\n9. Quay lại"
    );
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
    let s = u.run(HOUSEHOLD, 50, &["2"]).await;
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
    let s = u.run(HOUSEHOLD, 60, &["4", "1", "1", "1", "32.000"]).await;
    assert_eq!(
        s[1].text,
        "1. Hàng đang bán\n2. Hàng đã ngừng bán\n3. Doanh thu\n4. Đơn đã xong\n9. Quay lại"
    );
    // No internal code: the product, its quantity and price.
    assert_eq!(s[2].text, "Đang bán:\n1. Na 50kg 30.000đ/kg\n9. Quay lại");
    assert_eq!(s[3].text, "Na:\n1. Đổi giá\n2. Đổi số lượng\n3. Ngừng bán\n9. Quay lại");
    assert_eq!(s[5].text, "Đã cập nhật Na: 50kg, 32.000đ/kg.");
    assert!(s[5].is_final());
    let s = u.run(HOUSEHOLD, 61, &["4", "1", "1", "2", "80"]).await;
    assert_eq!(s[5].text, "Đã cập nhật Na: 80kg, 32.000đ/kg.");
    // Stopping asks first; "2" keeps it on sale, and "9" there goes back to the list.
    let s = u.run(HOUSEHOLD, 62, &["4", "1", "1", "3", "2", "9", "1", "3", "1"]).await;
    assert_eq!(s[4].text, "Ngừng bán Na? Người mua sẽ không thấy nữa.\n1. Đồng ý\n2. Không");
    assert_eq!(s[5].text, s[3].text);
    assert_eq!(s[6].text, s[2].text, "not back to the confirmation");
    assert_eq!(s[9].text, "Đã ngừng bán Na. Mở lại ở Cửa hàng > Hàng đã ngừng bán.");
    assert!(m.listings(hh.id).await.unwrap().is_empty(), "a stopped listing is no longer active");
    let s = u.run(HOUSEHOLD, 63, &["4", "1"]).await;
    assert_eq!(s[2].text, "Chưa có hàng đang bán. Chọn 1 ở menu chính để đăng bán.");
    // A stopped listing can be put on sale again.
    let s = u.run(HOUSEHOLD, 64, &["4", "2", "1", "1"]).await;
    assert_eq!(s[2].text, "Mở bán lại:\n1. Na 80kg 32.000đ/kg\n9. Quay lại");
    assert_eq!(s[4].text, "Đã mở bán lại Na. Có đơn sẽ báo SMS.");
    assert_eq!(m.listings(hh.id).await.unwrap()[0].id, listing.id);
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
    // "No" on the rejection goes back to the order, and "9" there to the list.
    let s = u.run(HOUSEHOLD, 63, &["2", "1", "2", "2", "9"]).await;
    assert_eq!(s[4].text, s[2].text);
    assert_eq!(s[5].text, s[1].text, "9 goes to the list, not to the confirmation");
    // Rejecting asks first.
    let s = u.run(HOUSEHOLD, 64, &["2", "1", "2", "1"]).await;
    assert_eq!(s[3].text, format!("Từ chối đơn {}? Hàng được bán lại.\n1. Đồng ý\n2. Không", a.code));
    assert_eq!(s[4].text, format!("Đã từ chối đơn {}. Người mua sẽ được báo.", a.code));
    assert_eq!(m.order(hh.id, a.id).await.unwrap().status, OrderStatus::Rejected);
    let b = m.place_order(&partner, IdemKey("o2".into()), listing.id, "C", 1, 30000).await.unwrap();
    m.move_order(&cli(), IdemKey("a2".into()), hh.id, b.id, OrderMove::Accept, None).await.unwrap();
    // An accepted order offers the post office (with a tracking code, "0" for none) and cancelling.
    let s = u.run(HOUSEHOLD, 65, &["2", "1", "1", "*", "1", "EB123456789VN"]).await;
    assert_eq!(s[1].text, format!("Đơn hàng:\n1. {} Na 1kg Chờ gửi\n9. Quay lại", b.code));
    assert_eq!(
        s[2].text,
        format!("{} chờ gửi:\n1. Đã giao bưu điện\n2. Hủy đơn\n3. Xem chi tiết\n9. Quay lại", b.code)
    );
    assert_eq!(s[3].text, "Mã vận đơn bưu điện (không có: 0):\n* Quay lại");
    assert_eq!(s[4].text, s[2].text, "* goes back");
    assert_eq!(s[6].text, format!("Đã ghi đơn {} đã giao bưu điện. Có tiền sẽ báo SMS.", b.code));
    assert_eq!(m.order(hh.id, b.id).await.unwrap().status, OrderStatus::Shipped);
    // An accepted order cancelled with a reason: its quantity goes back on sale.
    let c = m.place_order(&partner, IdemKey("o3".into()), listing.id, "D", 2, 60000).await.unwrap();
    m.move_order(&cli(), IdemKey("a3".into()), hh.id, c.id, OrderMove::Accept, None).await.unwrap();
    let before = m.listing(hh.id, listing.id).await.unwrap().quantity_kg;
    let s = u.run(HOUSEHOLD, 66, &["2", "1", "2", "1", "1"]).await;
    assert_eq!(
        s[3].text,
        "Lý do hủy:\n1. Hết hàng\n2. Hàng hỏng\n3. Không gửi được\n4. Lý do khác\n9. Quay lại"
    );
    assert_eq!(s[4].text, format!("Hủy đơn {} (Hết hàng)?\n1. Đồng ý\n2. Không", c.code));
    assert!(s[5].is_final() && s[5].text.starts_with(&format!("Đã hủy đơn {}.", c.code)), "{}", s[5].text);
    assert_eq!(m.order(hh.id, c.id).await.unwrap().status, OrderStatus::Cancelled);
    assert_eq!(m.listing(hh.id, listing.id).await.unwrap().quantity_kg, before + 2);
    d.stop().await;
}

#[tokio::test]
async fn leader_should_reset_a_households_pin_with_their_own_which_is_then_set_anew() {
    let (d, _dir) = daemon().await;
    let m = market(&d);
    let (_, hh) = village(&m).await;
    m.set_pin(&cli(), IdemKey("p1".into()), hh.id, "4321").await.unwrap();
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    // The leader has no PIN yet: the reset creates it, and its second typing resets.
    let s = u.run(LEADER, 66, &["3", "1", "1", "9", "2", "1", "2580", "2580"]).await;
    assert_eq!(s[1].text, "Hộ trong thôn:\n1. Lý Thị Mai: chưa bán\n9. Quay lại");
    assert_eq!(
        s[2].text,
        "Lý Thị Mai:\n1. Tình hình\n2. Đặt lại PIN\n3. Có tài khoản thanh toán\n9. Quay lại"
    );
    assert_eq!(
        s[3].text, "Lý Thị Mai 0912***678:\nđã xác nhận\nchưa bán\n0. Tiếp\n9. Quay lại",
        "where it stands, a line each"
    );
    assert_eq!(s[5].text, "Đặt lại mã PIN của Lý Thị Mai (0912***678)?\n1. Đồng ý\n2. Không");
    assert_eq!(s[6].text, "Cần mã PIN của bạn. Tạo PIN 4 số (giữ bí mật):\n* Quay lại");
    assert_eq!(s[7].text, "Nhập lại PIN để xác nhận đặt lại:\n* Quay lại");
    assert_eq!(s[8].text, "Đã tạo PIN của bạn, đặt lại PIN của Lý Thị Mai. Hộ nhận SMS.");
    assert!(s[8].is_final());
    assert!(!m.household_by_msisdn(HOUSEHOLD).await.unwrap().unwrap().has_pin);
    assert!(m.household_by_msisdn(LEADER).await.unwrap().unwrap().has_pin);
    // With a PIN, the leader types it: a wrong one is counted and asked again, * goes back.
    m.set_pin(&cli(), IdemKey("p2".into()), hh.id, "4321").await.unwrap();
    let s = u.run(LEADER, 65, &["3", "1", "2", "1", "4321", "*", "1", "2580"]).await;
    assert_eq!(s[4].text, "Nhập mã PIN của bạn để xác nhận:\n* Quay lại");
    assert_eq!(s[5].text, "Sai mã PIN. Còn 4 lần.\nNhập mã PIN của bạn để xác nhận:\n* Quay lại");
    assert_eq!(s[6].text, "Đặt lại mã PIN của Lý Thị Mai (0912***678)?\n1. Đồng ý\n2. Không");
    assert!(s[8].is_final() && s[8].text.starts_with("Đã đặt lại PIN của Lý Thị Mai."), "{}", s[8].text);
    assert!(!m.household_by_msisdn(HOUSEHOLD).await.unwrap().unwrap().has_pin);
    // No PIN now: a reset is no longer offered. The leader records the household's e-payment
    // account (the programme's second target).
    let s = u.run(LEADER, 68, &["3", "1", "2", "1"]).await;
    assert_eq!(s[2].text, "Lý Thị Mai:\n1. Tình hình\n2. Có tài khoản thanh toán\n9. Quay lại");
    assert!(
        s[4].is_final() && s[4].text.starts_with("Đã ghi nhận: Lý Thị Mai có tài khoản"),
        "{}",
        s[4].text
    );
    assert!(m.household_by_msisdn(HOUSEHOLD).await.unwrap().unwrap().has_epay);
    let s = u.run(LEADER, 69, &["3", "1"]).await;
    assert_eq!(s[2].text, "Lý Thị Mai:\n1. Tình hình\n9. Quay lại", "recorded: not offered again");
    // A household is no leader: the leader menu is not theirs.
    let s = u.run(HOUSEHOLD, 67, &[]).await;
    assert_eq!(s[0].text, MAIN);
    d.stop().await;
}

#[tokio::test]
async fn a_leaders_wrong_pins_should_lock_resets_as_they_lock_payments() {
    let (d, _dir) = daemon().await;
    let m = market(&d);
    let (leader, hh) = village(&m).await;
    m.set_pin(&cli(), IdemKey("p1".into()), hh.id, "4321").await.unwrap();
    m.set_pin(&cli(), IdemKey("p2".into()), leader.id, "2580").await.unwrap();
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    // No: back to the household, nothing asked.
    let s = u.run(LEADER, 1, &["3", "1", "2", "2"]).await;
    assert!(s[4].text.starts_with("Lý Thị Mai:\n1. Tình hình\n2. Đặt lại PIN"), "{}", s[4].text);
    let s = u.run(LEADER, 2, &["3", "1", "2", "1", "0000", "1111", "2222", "3333", "4444"]).await;
    assert!(s[8].text.starts_with("Sai mã PIN. Còn 1 lần."), "{}", s[8].text);
    let locked = &s[9];
    assert!(locked.is_final(), "{locked:?}");
    // A leader is pointed at the commune (or the hotline), not at themselves.
    assert!(
        locked.text.starts_with("Khóa đến ")
            && locked.text.ends_with("do sai PIN 5 lần. Gọi UBND Xã Đoàn Kết."),
        "{}",
        locked.text
    );
    // During the lock the PIN is not asked for; the household keeps its PIN.
    let s = u.run(LEADER, 3, &["3", "1", "2", "1"]).await;
    assert!(s[4].is_final() && s[4].text.starts_with("Khóa đến "), "{}", s[4].text);
    assert!(m.household_by_msisdn(HOUSEHOLD).await.unwrap().unwrap().has_pin);
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

#[tokio::test]
async fn an_english_household_should_read_its_orders_and_help_in_english() {
    let (d, _dir) = daemon().await;
    let m = market(&d);
    let (leader, _) = village(&m).await;
    let en = m
        .self_register(&cli(), IdemKey("r".into()), "0911222333", 6001, "Bản Chu", "Vy Thị Ngọc", Lang::En)
        .await
        .unwrap();
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    // Pending: told so, in English, with whom to call.
    let s = u.run("84911222333", 1, &[]).await;
    assert_eq!(s[0].text, "Sign-up pending, SMS to follow. Call team leader Hoàng Văn Minh (0987000001).");
    m.leader_decides(&cli(), IdemKey("c".into()), leader.id, en.id, chogate::market::LeaderDecision::Confirm)
        .await
        .unwrap();
    let listing = m.create_listing(&cli(), IdemKey("l".into()), en.id, 1, 50, 30000).await.unwrap();
    let partner = Actor { msisdn: "shopee".into(), channel: Channel::Http };
    let o = m.place_order(&partner, IdemKey("o".into()), listing.id, "Nguyễn Văn B", 2, 60000).await.unwrap();
    let s = u.run("84911222333", 2, &["2", "1", "7", "2", "2"]).await;
    assert_eq!(s[0].text, "1. Sell produce\n2. Orders\n3. Payments\n4. My shop\n5. Help");
    assert_eq!(s[1].text, format!("Orders:\n1. {} Custard apple 2kg new\n9. Back", o.code));
    let menu = format!("{}, new:\n1. Accept\n2. Reject\n3. Details\n9. Back", o.code);
    assert_eq!(s[2].text, menu);
    assert_eq!(s[3].text, format!("Try again:\n{menu}"), "a wrong key keeps the same options");
    assert_eq!(s[4].text, format!("Reject order {}? The goods go back on sale.\n1. Yes\n2. No", o.code));
    assert_eq!(s[5].text, menu, "No goes back to the order");
    let s = u.run("84911222333", 3, &["5", "1"]).await;
    assert_eq!(s[2].text, "For help call team leader Hoàng Văn Minh (0987000001).\n9. Back");
    d.stop().await;
}

#[tokio::test]
async fn a_dialogue_cut_back_on_its_main_menu_should_not_be_offered_for_resume() {
    let (d, _dir) = daemon().await;
    village(&market(&d)).await;
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    // Into help and back to the main menu, then cut: nothing to resume.
    u.run(HOUSEHOLD, 80, &["5", "9"]).await;
    u.abort(HOUSEHOLD, 80).await;
    assert_eq!(u.dial(HOUSEHOLD, 81).await.text, MAIN);
    // Cut in the middle of selling: the offer says what was under way.
    u.run(HOUSEHOLD, 82, &["1", "1"]).await;
    u.abort(HOUSEHOLD, 82).await;
    assert_eq!(
        u.dial(HOUSEHOLD, 83).await.text,
        "Bạn đang làm dở: Đăng bán hàng.\n1. Tiếp tục\n2. Bắt đầu lại"
    );
    d.stop().await;
}

/// Issue 17's defects, each checked in the three ways a household reads its screens:
/// Vietnamese with accents (UCS2), unaccented Vietnamese (GSM) and English. The words come
/// from the shipped menus, so the test checks what each screen offers, not its wording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_defect_should_stay_fixed_in_vietnamese_gsm_and_english() {
    use chogate::menu::{Lang as MenuLang, Menus};
    let menus =
        Menus::load_dir(&std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/menus"))).unwrap();
    let extra = "[[smpp_server.accounts]]\nsystem_id = \"gsm\"\npassword = \"pw\"\ntext_mode = \"gsm\"\n";
    let (d, _dir) = daemon_with("", extra).await;
    let m = market(&d);
    let partner = Actor { msisdn: "shopee".into(), channel: Channel::Http };
    let modes =
        [("vi", Lang::Vi, false, 6001u32), ("gsm", Lang::Vi, true, 6463), ("en", Lang::En, false, 6325)];
    for (n, (name, lang, gsm, commune)) in modes.into_iter().enumerate() {
        let ml = if lang == Lang::En { MenuLang::En } else { MenuLang::Vi };
        // What a screen shows of a message, in this mode.
        let word = |message: &str| {
            let t = menus.message(message).get(ml).to_owned();
            if gsm { chogate::text::unaccent(&t) } else { t }
        };
        let leader_no = format!("8498700010{n}");
        let hh_no = format!("8491230010{n}");
        let leader = m
            .register_leader(
                &cli(),
                IdemKey(format!("l{n}")),
                &leader_no,
                "Hoàng Văn Minh",
                commune,
                "Bản Chu",
                lang,
            )
            .await
            .unwrap();
        let hh = m
            .self_register(&cli(), IdemKey(format!("r{n}")), &hh_no, commune, "ban chu", "Lý Thị Mai", lang)
            .await
            .unwrap();
        assert_eq!(hh.village_id, leader.village_id, "{name}: typed without accents, the same village");
        let mut u = if gsm {
            Ussdc::bind_as(d.smpp, "gsm", "pw", Family::DeliverSm).await
        } else {
            Ussdc::bind(d.smpp, Family::DeliverSm).await
        };
        let s0 = (n as u8) * 40;
        // Defect 2: until its leader confirms it, the household is told so, and cannot sell.
        let s = u.run(&hh_no, s0 + 1, &[]).await;
        assert!(s[0].is_final() && s[0].text.contains("Minh"), "{name}: {}", s[0].text);
        let s = u.run(&leader_no, s0 + 2, &["1", "1", "1"]).await;
        assert!(s[3].is_final(), "{name}: {s:?}");
        // Defect 5: a wrong key on the main menu keeps it one page, hint or not.
        let s = u.run(&hh_no, s0 + 3, &["7"]).await;
        assert!(s[1].text.starts_with(&word("invalid")), "{name}: {}", s[1].text);
        assert!(s[1].text.contains("5. ") && !s[1].text.contains("0. "), "{name}: {}", s[1].text);
        // Defect 6: * goes back from the quantity, where 9 is 9 units.
        let s = u.run(&hh_no, s0 + 4, &["1", "1", "*", "1", "9"]).await;
        assert_eq!(s[3].text, s[1].text, "{name}");
        assert!(s[5].text.ends_with(&word("back_input")), "{name}: {}", s[5].text);
        // Defect 1: nine orders; a wrong key on page 2 keeps its items; 1 opens the one shown.
        let listing = m.create_listing(&cli(), IdemKey(format!("c{n}")), hh.id, 1, 500, 30000).await.unwrap();
        for i in 0..9 {
            m.place_order(&partner, IdemKey(format!("o{n}{i}")), listing.id, "B", 1 + i, 30000 * (1 + i))
                .await
                .unwrap();
        }
        let s = u.run(&hh_no, s0 + 5, &["2", "0", "77", "1"]).await;
        let items = |t: &str| {
            t.lines()
                .filter(|l| {
                    l.starts_with(|c: char| c.is_ascii_digit())
                        && !l.starts_with("0.")
                        && !l.starts_with("9.")
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(items(&s[3].text), items(&s[2].text), "{name}: {}", s[3].text);
        let first = items(&s[2].text)[0].split_whitespace().nth(1).unwrap().to_owned();
        assert!(s[4].text.starts_with(&first), "{name}: {first} / {}", s[4].text);
        // Defect 3: a new order offers accept, reject and details (not "handed to the post");
        // rejecting asks first.
        assert_eq!(items(&s[4].text).len(), 3, "{name}: {}", s[4].text);
        let r = u.answer(&hh_no, s0 + 5, "2").await;
        assert!(r.text.ends_with(&format!("1. {}\n2. {}", word("yes"), word("no"))), "{name}: {}", r.text);
        // Defect 4: during a lock the PIN is not asked for.
        let o = m.place_order(&partner, IdemKey(format!("p{n}")), listing.id, "B", 1, 30000).await.unwrap();
        m.move_order(&cli(), IdemKey(format!("pa{n}")), hh.id, o.id, OrderMove::Accept, None).await.unwrap();
        m.move_order(&cli(), IdemKey(format!("ps{n}")), hh.id, o.id, OrderMove::Ship, None).await.unwrap();
        m.set_pin(&cli(), IdemKey(format!("pin{n}")), hh.id, "2468").await.unwrap();
        for i in 0..5 {
            let _ = m.confirm_payment(&cli(), IdemKey(format!("w{n}{i}")), hh.id, o.id, "0000").await;
        }
        let s = u.run(&hh_no, s0 + 6, &["3", "1", "1"]).await;
        assert!(s[3].is_final() && s[3].text.contains("Minh"), "{name}: {}", s[3].text);
        // Defect 7: a number registered already is refused on the phone screen.
        let s = u.run(&leader_no, s0 + 7, &["2", &hh_no]).await;
        assert!(s[2].text.starts_with(&word("already_registered")), "{name}: {}", s[2].text);
        assert!(s[2].text.ends_with(&word("back_input")), "{name}: {}", s[2].text);
        // Defect 8: help names whom to call.
        let s = u.run(&hh_no, s0 + 8, &["5", "1"]).await;
        assert!(s[2].text.contains("Minh") && s[2].text.contains("0987000"), "{name}: {}", s[2].text);
        // Unaccented text goes out in the GSM alphabet; Vietnamese in UCS2 (English as
        // whatever its characters need).
        for screen in s.iter().filter(|_| lang == Lang::Vi) {
            assert_eq!(screen.data_coding, if gsm { 0 } else { 8 }, "{name}: {}", screen.text);
        }
    }
    d.stop().await;
}

/// A dial while the database cannot be read (here its households table is out of the way, as
/// during a PostgreSQL restart) ends on "busy, try again later": not on the sign-up menu,
/// which asked a household chogate knows to register again. Once it can be read, the same
/// number gets its main menu.
#[tokio::test]
async fn dial_while_the_household_cannot_be_read_should_say_try_again_not_offer_sign_up() {
    let (d, dir) = daemon().await;
    let m = market(&d);
    village(&m).await;
    let file = rusqlite::Connection::open(dir.path().join("chogate.db")).unwrap();
    file.busy_timeout(common::PATIENCE).unwrap();
    file.execute_batch("ALTER TABLE households RENAME TO households_away").unwrap();
    let mut u = Ussdc::bind(d.smpp, Family::DeliverSm).await;
    let s = u.dial(HOUSEHOLD, 1).await;
    assert_eq!(s.text, "Hệ thống bận, vui lòng thử lại sau.");
    assert!(s.is_final(), "{s:?}");
    file.execute_batch("ALTER TABLE households_away RENAME TO households").unwrap();
    let s = u.dial(HOUSEHOLD, 2).await;
    assert_eq!(s.text, MAIN);
    d.stop().await;
}
