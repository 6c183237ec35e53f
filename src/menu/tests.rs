use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::engine::{ActError, Backend, Cursor, Item, Vars};
use super::*;

fn shipped() -> Menus {
    Menus::load_dir(&PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/menus"))).unwrap()
}

/// The shipped files with one of them replaced by `text`, or added when the name is new.
fn with_file(name: &str, text: &str) -> Result<Menus, MenuError> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/menus"));
    let mut sources: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
        .filter(|(p, _)| !p.ends_with(name))
        .collect();
    sources.push((dir.join(name), text.to_owned()));
    sources.sort();
    Menus::from_sources(&sources)
}

const VI: Target = Target { lang: Lang::Vi, mode: TextMode::Ucs2 };
const VI_GSM: Target = Target { lang: Lang::Vi, mode: TextMode::Gsm };

/// A backend that plays the market from a script of its own.
#[derive(Default)]
struct Fake {
    products: usize,
    long_name: Option<String>,
    has_pin: bool,
    actions: Mutex<Vec<(String, String)>>,
}

impl Backend for Fake {
    async fn items(&self, source: &str, _vars: &Vars) -> Result<Arc<Vec<Item>>, ActError> {
        let names = [
            "Na",
            "Hoa hồi",
            "Thạch đen",
            "Rau bò khai",
            "Lạp sườn",
            "Chè Vạn Linh",
            "Gạo nếp",
            "Mật ong",
            "Măng khô",
            "Quýt",
        ];
        Ok(Arc::new(match source {
            "products" => (0..self.products)
                .map(|i| Item {
                    id: (i + 1).to_string(),
                    label: match &self.long_name {
                        Some(n) => Text { vi: n.clone(), en: n.clone() },
                        None => Text { vi: names[i % names.len()].into(), en: format!("Product {i}") },
                    },
                    fields: vec![("unit".into(), "kg".into())],
                })
                .collect(),
            "orders.awaiting_payment" => vec![Item {
                id: "7".into(),
                label: Text { vi: "DH000007 250.000đ".into(), en: "DH000007 250,000d".into() },
                fields: vec![("code".into(), "DH000007".into()), ("amount".into(), "250.000".into())],
            }],
            _ => vec![],
        }))
    }

    async fn act(&self, action: &str, key: &str, vars: &mut Vars) -> Result<(), ActError> {
        self.actions.lock().unwrap().push((action.into(), key.into()));
        match action {
            "listing.create" => {
                vars.insert("listing.code".into(), "L000042".into());
                Ok(())
            }
            "payment.confirm" if vars.get("pin").map(String::as_str) == Some("1234") => Ok(()),
            "payment.confirm" => {
                Err(ActError::Reask { message: "pin_wrong", vars: vec![("remaining".into(), "4".into())] })
            }
            _ => Ok(()),
        }
    }

    async fn check(&self, cond: &str, _vars: &Vars) -> Result<bool, ActError> {
        Ok(match cond {
            "has_pin" => self.has_pin,
            "no_pin" => !self.has_pin,
            _ => false,
        })
    }

    async fn load(&self, _loader: &str, vars: &mut Vars) -> Result<(), ActError> {
        vars.insert("leader.contact".into(), "tổ trưởng Hoàng Văn Minh (0912345678)".into());
        Ok(())
    }
}

async fn dial(menus: &Menus, b: &Fake, t: Target, inputs: &[&str]) -> (Cursor, Vec<String>) {
    let mut c = menus.cursor("d1".into(), menus.main, t);
    menus.start(&mut c, b).await;
    let mut screens = vec![menus.render(&c).text];
    for i in inputs {
        menus.input(&mut c, i, b).await;
        screens.push(menus.render(&c).text);
    }
    (c, screens)
}

#[test]
fn shipped_menus_should_load_and_every_screen_fit() {
    let m = shipped();
    assert_eq!(m.screens[m.main].name, "main");
    assert!(m.secret_vars.contains("pin") && m.secret_vars.contains("pin1"));
}

#[tokio::test]
async fn main_menu_should_fit_one_ucs2_screen_in_spec_order() {
    let m = shipped();
    let (_, screens) = dial(&m, &Fake::default(), VI, &[]).await;
    assert_eq!(screens[0], "1. Đăng bán hàng\n2. Đơn hàng\n3. Thanh toán\n4. Cửa hàng\n5. Trợ giúp");
    assert!(VI.fits(&screens[0]));
}

#[tokio::test]
async fn new_listing_dial_should_end_on_the_final_screen_with_the_code() {
    let m = shipped();
    let b = Fake { products: 6, ..Fake::default() };
    let (c, screens) = dial(&m, &b, VI, &["1", "1", "10", "25000", "1"]).await;
    // Six products do not fit 80 UCS2 characters: the list pages.
    assert_eq!(
        screens[1],
        "Chọn sản phẩm:\n1. Na\n2. Hoa hồi\n3. Thạch đen\n4. Rau bò khai\n0. Tiếp\n9. Quay lại"
    );
    assert_eq!(screens[2], "Na: số lượng (kg)?\n* Quay lại");
    assert_eq!(screens[3], "Giá mỗi kg (đồng)?\n* Quay lại");
    assert_eq!(screens[4], "Bán 10kg Na, 25.000đ/kg?\n1. Đồng ý\n2. Không");
    assert_eq!(screens[5], "Đã đăng bán 10kg Na. Có đơn sẽ báo SMS.");
    assert!(m.render(&c).end);
    assert_eq!(*b.actions.lock().unwrap(), vec![("listing.create".to_string(), "d1:5".to_string())]);
}

#[tokio::test]
async fn help_should_name_someone_to_call_and_go_back() {
    let m = shipped();
    let (c, screens) = dial(&m, &Fake::default(), VI, &["5", "1", "9", "2"]).await;
    assert_eq!(screens[1], "1. Người hỗ trợ\n2. Lệnh tin nhắn SMS\n3. Khi bị mất sóng\n9. Quay lại");
    assert_eq!(screens[2], "Cần giúp, gọi tổ trưởng Hoàng Văn Minh (0912345678).\n9. Quay lại");
    assert_eq!(screens[3], screens[1]);
    assert!(screens[4].starts_with("Nhắn SMS:\nDH: xem đơn\nNHAN, HUY mã đơn"), "{}", screens[4]);
    assert!(screens[4].ends_with("0. Tiếp\n9. Quay lại"), "every page of a text to read says how to go back");
    assert!(!m.render(&c).end);
}

#[tokio::test]
async fn gsm_mode_should_render_unaccented_text_that_fits() {
    let m = shipped();
    let (_, screens) = dial(&m, &Fake::default(), VI_GSM, &[]).await;
    let encoded = crate::text::encode_text(&screens[0], false);
    assert_eq!(encoded.encoding, crate::text::Encoding::Gsm7);
    assert_eq!(
        crate::text::gsm_decode(&encoded.bytes),
        "1. Dang ban hang\n2. Don hang\n3. Thanh toan\n4. Cua hang\n5. Tro giup"
    );
}

#[tokio::test]
async fn invalid_input_should_reask_with_a_hint_and_keep_numbers_meaningful() {
    let m = shipped();
    let (c, screens) = dial(&m, &Fake::default(), VI, &["7", "5"]).await;
    // The main menu never pages, hint or not; "5" still means help.
    assert_eq!(screens[1], format!("Chọn lại:\n{}", screens[0]));
    assert!(screens[2].starts_with("1. Người hỗ trợ"), "{}", screens[2]);
    assert!(!m.render(&c).end);
}

#[tokio::test]
async fn invalid_choice_should_reshow_the_same_page_with_the_same_numbers() {
    let m = shipped();
    let b = Fake { products: 9, ..Fake::default() };
    for t in Target::all() {
        let (c, screens) = dial(&m, &b, t, &["1", "0", "7", "1"]).await;
        let items = |s: &str| {
            s.lines()
                .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        // The page after the wrong key lists exactly what it listed before it.
        assert_eq!(items(&screens[3]), items(&screens[2]), "{t:?}");
        assert!(screens[3].starts_with(m.message("invalid").get(t.lang)), "{t:?}: {}", screens[3]);
        // And "1" is the first entry of that page, as shown.
        let first = items(&screens[2])[0].clone();
        let label = first.split_once(". ").unwrap().1;
        assert!(screens[4].contains(label), "{t:?}: {} / {}", screens[4], label);
        let page1 =
            items(&screens[1]).iter().filter(|l| !l.starts_with("0.") && !l.starts_with("9.")).count();
        assert_eq!(c.vars.get("product").cloned(), Some((page1 + 1).to_string()), "{t:?}");
    }
}

#[tokio::test]
async fn a_number_not_on_the_page_shown_should_choose_nothing() {
    let m = shipped();
    // Six products: two pages numbered 1-6 across them; "6" on the first page is not shown.
    let b = Fake { products: 6, ..Fake::default() };
    let (c, screens) = dial(&m, &b, VI, &["1", "6"]).await;
    assert!(!screens[1].contains("6. "), "{}", screens[1]);
    assert!(screens[2].starts_with("Chọn lại:"), "{}", screens[2]);
    assert!(!c.vars.contains_key("product"));
}

#[tokio::test]
async fn star_should_go_back_from_an_input_screen_and_nine_should_be_a_value() {
    let m = shipped();
    let b = Fake { products: 3, ..Fake::default() };
    let (c, screens) = dial(&m, &b, VI, &["1", "1", "*", "1", "9"]).await;
    assert_eq!(screens[3], screens[1], "* goes back to the product list");
    assert_eq!(c.vars.get("qty").map(String::as_str), Some("9"), "9 kg is a quantity");
    assert_eq!(screens[5], "Giá mỗi kg (đồng)?\n* Quay lại");
}

#[tokio::test]
async fn a_confirmation_too_long_should_keep_its_options_on_one_page() {
    let m = shipped();
    let long = "Chè Shan Tuyết cổ thụ Vạn Linh loại đặc biệt".to_owned();
    let b = Fake { products: 1, long_name: Some(long), ..Fake::default() };
    for t in Target::all() {
        let (c, screens) = dial(&m, &b, t, &["1", "1", "100000", "100000000"]).await;
        let s = &screens[4];
        assert!(t.fits(s), "{t:?}: {s}");
        let (yes, no) = (m.message("yes").get(t.lang), m.message("no").get(t.lang));
        assert!(s.ends_with(&format!("1. {yes}\n2. {no}")), "{t:?}: {s}");
        assert!(!m.render(&c).end);
    }
}

#[tokio::test]
async fn number_out_of_range_should_reask_with_bounds() {
    let m = shipped();
    let b = Fake { products: 3, ..Fake::default() };
    let (_, screens) = dial(&m, &b, VI, &["1", "1", "0", "100001", "10.000"]).await;
    assert_eq!(screens[3], "Nhập số từ 1 đến 100.000.\nNa: số lượng (kg)?\n* Quay lại");
    assert_eq!(screens[4], screens[3]);
    assert_eq!(screens[5], "Giá mỗi kg (đồng)?\n* Quay lại");
}

#[tokio::test]
async fn long_lists_should_page_with_next_and_back() {
    let m = shipped();
    let b = Fake { products: 20, ..Fake::default() };
    let (c, screens) = dial(&m, &b, VI, &["1", "0", "0", "9", "2"]).await;
    assert!(screens[1].contains("\n0. Tiếp\n9. Quay lại"), "{}", screens[1]);
    assert!(screens[2].starts_with("Chọn sản phẩm:\n1. "), "{}", screens[2]);
    assert_ne!(screens[1], screens[2]);
    assert_eq!(screens[4], screens[2], "9 goes back one page");
    for s in &screens {
        assert!(VI.fits(s), "{s}");
    }
    // "2" on the second page is the second entry of that page.
    let first_page_len = screens[1]
        .lines()
        .filter(|l| {
            l.chars().next().is_some_and(|c| c.is_ascii_digit())
                && !l.starts_with("0.")
                && !l.starts_with("9.")
        })
        .count();
    assert_eq!(c.vars.get("product").map(String::as_str), Some((first_page_len + 2).to_string().as_str()));
}

#[tokio::test]
async fn double_zero_should_return_to_main_and_nine_to_the_previous_screen() {
    let m = shipped();
    let b = Fake { products: 3, ..Fake::default() };
    let (_, screens) = dial(&m, &b, VI, &["1", "1", "00", "1", "9"]).await;
    assert_eq!(screens[3], screens[0]);
    assert_eq!(screens[5], screens[0]);
}

#[tokio::test]
async fn a_first_payment_should_create_the_pin_and_pay_with_it_and_never_keep_it() {
    let m = shipped();
    let b = Fake::default();
    let (c, screens) = dial(&m, &b, VI, &["3", "1", "1", "12", "1234", "1243", "*", "4321", "4321"]).await;
    assert_eq!(screens[1], "1. Đơn chờ thanh toán\n2. Tạo mã PIN\n9. Quay lại", "no PIN yet: create one");
    let create = "Chưa có mã PIN. Tạo PIN 4 số (giữ bí mật):\n* Quay lại";
    let repeat = "Nhập lại PIN để xác nhận đã nhận 250.000đ (DH000007):\n* Quay lại";
    assert_eq!(screens[3], create);
    assert_eq!(screens[4], format!("Mã PIN gồm 4 chữ số.\n{create}"));
    assert_eq!(screens[5], repeat);
    assert_eq!(screens[6], "Hai mã PIN không khớp, nhập lại:\n* Quay lại", "the hint asks again itself");
    assert_eq!(screens[7], create, "a mistyped first PIN can be redone");
    assert_eq!(screens[8], repeat);
    // The second typing creates the PIN and confirms the payment: no PIN waits a step more.
    assert_eq!(screens[9], "Đã tạo mã PIN và xác nhận thanh toán DH000007. Nhớ PIN, không cho ai biết.");
    for secret in ["pin", "pin1", "pin2"] {
        assert!(!c.vars.contains_key(secret), "{secret} kept after use");
    }
    let actions: Vec<String> = b.actions.lock().unwrap().iter().map(|(a, _)| a.clone()).collect();
    assert_eq!(actions, vec!["pin.set_and_pay"]);
}

#[tokio::test]
async fn a_payment_with_a_pin_should_reask_a_wrong_one() {
    let m = shipped();
    let b = Fake { has_pin: true, ..Fake::default() };
    let (_, screens) = dial(&m, &b, VI, &["3", "1", "1", "9999", "1234"]).await;
    assert_eq!(screens[1], "1. Đơn chờ thanh toán\n2. Quên mã PIN\n9. Quay lại");
    let ask = "Nhập PIN xác nhận đã nhận 250.000đ (DH000007):\n* Quay lại";
    assert_eq!(screens[3], ask);
    assert_eq!(screens[4], format!("Sai mã PIN. Còn 4 lần.\n{ask}"));
    assert_eq!(screens[5], "Đã xác nhận thanh toán đơn DH000007. Cảm ơn bạn!");
}

#[tokio::test]
async fn empty_list_should_end_with_its_text() {
    let m = shipped();
    let (c, screens) = dial(&m, &Fake::default(), VI, &["2"]).await;
    assert_eq!(screens[1], "Chưa có đơn hàng. Có đơn sẽ báo qua SMS.");
    assert!(m.render(&c).end);
}

#[test]
fn unknown_goto_should_be_refused_naming_file_line_and_screen() {
    let text =
        "[screen.main]\nkind = \"choice\"\noptions = [{ vi = \"A\", en = \"A\", goto = \"nowhere\" }]\n";
    let e = with_file("10-household.toml", text).unwrap_err();
    assert!(e.file.ends_with("10-household.toml"), "{e}");
    assert_eq!(e.line, 1, "{e}");
    assert!(e.reason.contains("`main`") && e.reason.contains("nowhere"), "{e}");
}

#[test]
fn unknown_action_kind_and_key_should_be_refused() {
    let base =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/menus/20-register.toml")).unwrap();
    let bad_action = base.replace("action = \"household.register\"", "action = \"household.explode\"");
    let e = with_file("20-register.toml", &bad_action).unwrap_err();
    assert!(e.reason.contains("unknown action `household.explode`"), "{e}");
    assert!(e.line > 1, "{e}");

    let bad_kind = base.replace("kind = \"confirm\"", "kind = \"maybe\"");
    assert!(with_file("20-register.toml", &bad_kind).unwrap_err().reason.contains("unknown kind `maybe`"));

    let bad_key = base.replace("var = \"hh_name\"\n", "var = \"hh_name\"\ncolour = 1\n");
    let e = with_file("20-register.toml", &bad_key).unwrap_err();
    assert!(e.reason.contains("colour"), "{e}");
    let line = bad_key.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    assert!(e.line > 0 && e.line <= line, "{e}");

    let wrong_kind_key = base.replace("max_len = 30\n", "max_len = 30\nmin = 3\n");
    assert!(
        with_file("20-register.toml", &wrong_kind_key).unwrap_err().reason.contains("`min` does not apply")
    );
}

#[test]
fn too_long_screen_should_be_refused_with_its_length() {
    let base =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/menus/20-register.toml")).unwrap();
    let long =
        base.replace("vi = \"Họ tên chủ hộ:\"", &format!("vi = \"{}\"", "Họ tên chủ hộ rất dài ".repeat(6)));
    let e = with_file("20-register.toml", &long).unwrap_err();
    assert!(e.reason.contains("does not fit one USSD message"), "{e}");
    assert!(e.reason.contains("`reg_name`"), "{e}");
}

#[test]
fn duplicate_unreachable_and_missing_pieces_should_be_refused() {
    let dup = "[screen.help]\nkind = \"final\"\ntitle = { vi = \"x\", en = \"x\" }\n";
    let e = with_file("50-extra.toml", dup).unwrap_err();
    assert!(e.reason.contains("already defined"), "{e}");

    let orphan = "[screen.orphan]\nkind = \"final\"\ntitle = { vi = \"x\", en = \"x\" }\n";
    let e = with_file("50-extra.toml", orphan).unwrap_err();
    assert!(e.reason.contains("cannot be reached"), "{e}");

    let e = with_file("90-messages.toml", "[message.yes]\nvi = \"Có\"\nen = \"Yes\"\n").unwrap_err();
    assert!(e.reason.contains("is required but not defined"), "{e}");

    let e = with_file("50-extra.toml", "[screen.x\nkind = 1").unwrap_err();
    assert!(e.file.ends_with("50-extra.toml") && e.line == 1, "{e}");

    let no_en = "[screen.orphan]\nkind = \"final\"\ntitle = { vi = \"x\" }\n";
    assert!(with_file("50-extra.toml", no_en).unwrap_err().reason.contains("en"));
}

fn arb_input() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..10).prop_map(|d| d.to_string()),
        Just("00".to_string()),
        Just("1234".to_string()),
        Just("25000".to_string()),
        Just("0912345678".to_string()),
        "[a-zA-ZđĐ ]{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn every_page_of_any_walk_should_fit(inputs in proptest::collection::vec(arb_input(), 0..25), products in 0usize..30, gsm in any::<bool>(), en in any::<bool>(), root in 0usize..4) {
        let m = shipped();
        let t = Target { lang: if en { Lang::En } else { Lang::Vi }, mode: if gsm { TextMode::Gsm } else { TextMode::Ucs2 } };
        let b = Fake { products, ..Fake::default() };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let root = [m.main, m.leader, m.register, m.pending][root];
            let mut c = m.cursor("p".into(), root, t);
            m.start(&mut c, &b).await;
            for i in &inputs {
                let r = m.render(&c);
                prop_assert!(t.fits(&r.text), "{:?}", r.text);
                if r.end { break; }
                m.input(&mut c, i, &b).await;
            }
            Ok(())
        })?;
    }
}

#[test]
fn built_in_menus_should_be_the_shipped_files() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/menus"));
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    let built_in: Vec<(String, String)> =
        BUILT_IN.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect();
    assert_eq!(built_in, files, "every menus/*.toml is in menu::BUILT_IN, in name order");
    let menus = Menus::built_in().unwrap();
    assert_eq!(menus.screens.len(), shipped().screens.len());
    // Errors found later (a screen's file and line) name them as built in.
    assert_eq!(menus.screens[menus.main].file, PathBuf::from("menus/10-household.toml (built in)"));
}

#[test]
fn an_error_in_a_built_in_file_should_name_it_as_built_in() {
    let sources =
        vec![(PathBuf::from("menus/10-household.toml (built in)"), "[screen.main]\nkind = 3\n".to_owned())];
    let e = Menus::from_sources(&sources).unwrap_err();
    assert!(e.to_string().starts_with("menus/10-household.toml (built in):2: "), "{e}");
}
