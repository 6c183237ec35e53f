//! `chogate menus print`: every screen of the tree as a printable guide (Markdown) for the
//! community technology teams who train households: each screen as the phone shows it (with
//! example values), and where each key leads.

use std::collections::HashSet;
use std::fmt::Write;

use super::engine::{Vars, fill};
use super::{Kind, Lang, Menus, ScreenId};

/// Example values for the placeholders, as a household would see them.
const EXAMPLES: &[(&str, &str, &str)] = &[
    ("code", "D000012", "D000012"),
    ("amount", "350.000", "350,000"),
    ("unit", "kg", "kg"),
    ("price", "35.000", "35,000"),
    ("product", "Na", "Custard apple"),
    ("label", "Na", "Custard apple"),
    ("status", "đã giao bưu điện", "handed to post"),
    ("buyer", "Nguyễn Văn An", "Nguyễn Văn An"),
    (
        "ship",
        "Nguyễn Văn An, 0912345678, Số 12 Trần Đăng Ninh, P. Lương Văn Tri",
        "Nguyễn Văn An, 0912345678, 12 Tran Dang Ninh, Luong Van Tri",
    ),
    ("name", "Lý Thị Mai", "Lý Thị Mai"),
    ("hh_name", "Lý Thị Mai", "Lý Thị Mai"),
    ("new_name", "Lý Thị Mai", "Lý Thị Mai"),
    ("new_phone", "0912345678", "0912345678"),
    ("phone", "0912***678", "0912***678"),
    ("village", "Thôn Đồng Lâm", "Thôn Đồng Lâm"),
    ("commune.label", "Xã Chi Lăng", "Xã Chi Lăng"),
    ("village.label", "Thôn Đồng Lâm", "Thôn Đồng Lâm"),
    ("reason.label", "Hết hàng", "Out of stock"),
    ("who", "tổ trưởng Hoàng Văn Minh", "team leader Hoàng Văn Minh"),
    ("contact", "tổ trưởng Hoàng Văn Minh (0912100001)", "team leader Hoàng Văn Minh (0912100001)"),
    ("until", "14:35", "14:35"),
    ("households", "24", "24"),
    ("listing", "15", "15"),
    ("epay", "12", "12"),
    ("pending", "2", "2"),
    ("month_orders", "3", "3"),
    ("month_amount", "1.050.000", "1,050,000"),
    ("all_orders", "11", "11"),
    ("all_amount", "4.200.000", "4,200,000"),
    ("qty.fmt", "50", "50"),
    ("price.fmt", "35.000", "35,000"),
    ("hh.label", "Lý Thị Mai 0912***678", "Lý Thị Mai 0912***678"),
    ("listing.qty", "50", "50"),
    ("order.qty", "10", "10"),
];

fn example_vars(lang: Lang, text: &str) -> Vars {
    let mut vars = Vars::default();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        let last = name.rsplit_once('.').map_or(name, |(_, l)| l);
        let found = EXAMPLES
            .iter()
            .find(|(k, _, _)| *k == name)
            .or_else(|| EXAMPLES.iter().find(|(k, _, _)| *k == last));
        let value = match (found, lang) {
            (Some((_, vi, _)), Lang::Vi) => (*vi).to_owned(),
            (Some((_, _, en)), Lang::En) => (*en).to_owned(),
            (None, _) => format!("[{name}]"),
        };
        vars.insert(name.to_owned(), value);
        rest = &after[close + 1..];
    }
    vars
}

fn text_of(lang: Lang, template: &str) -> String {
    fill(template, &example_vars(lang, template))
}

/// The whole tree, root by root, each screen once, in the order a household meets them.
pub fn markdown(menus: &Menus, lang: Lang) -> String {
    let mut out = String::new();
    let (title, intro) = match lang {
        Lang::Vi => (
            "# Chợ 384: các màn hình *384#",
            "Hướng dẫn cho tổ công nghệ số cộng đồng. Phím: 1-8 chọn, 0 trang sau, 9 quay lại, \
             * quay lại ở màn hình nhập, 00 về menu chính. Mất sóng: bấm lại *384# trong 5 phút, chọn 1 để làm tiếp.",
        ),
        Lang::En => (
            "# Market 384: the *384# screens",
            "A guide for the community technology teams. Keys: 1-8 choose, 0 next page, 9 back, \
             * back on a screen that asks for a value, 00 main menu. Call dropped: dial *384# again \
             within 5 minutes and choose 1 to go on.",
        ),
    };
    let _ = writeln!(out, "{title}\n\n{intro}\n");
    let mut seen: HashSet<ScreenId> = HashSet::new();
    let roots = [
        (menus.register, "Số mới: tự đăng ký", "A new number: signing up"),
        (menus.pending, "Chờ tổ trưởng xác nhận", "Waiting for the team leader"),
        (menus.main, "Hộ gia đình", "A household"),
        (menus.leader, "Tổ trưởng", "A team leader"),
    ];
    for (root, vi, en) in roots {
        let _ = writeln!(out, "## {}\n", if lang == Lang::Vi { vi } else { en });
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            screen(menus, lang, id, &mut out);
            let mut next = super::successors(&menus.screens[id].kind);
            next.reverse();
            stack.extend(next);
        }
    }
    out
}

fn screen(menus: &Menus, lang: Lang, id: ScreenId, out: &mut String) {
    let s = &menus.screens[id];
    let name = |id: ScreenId| format!("`{}`", menus.screens[id].name);
    let title = text_of(lang, s.title.get(lang));
    let is_root = [menus.main, menus.leader, menus.register, menus.pending].contains(&id);
    let back = if is_root && id != menus.main { "" } else { menus.message("back").get(lang) };
    let back_input = if is_root { "" } else { menus.message("back_input").get(lang) };
    let join_back = |t: &str, b: &str| if b.is_empty() { t.to_owned() } else { format!("{t}\n{b}") };
    let (body, keys): (String, Vec<String>) = match &s.kind {
        Kind::Switch { cond, then, otherwise } => {
            let _ = writeln!(out, "### `{}`\n\n{cond}? → {} / {}\n", s.name, name(*then), name(*otherwise));
            return;
        }
        Kind::Choice { options } => {
            let mut lines: Vec<String> = if title.is_empty() { vec![] } else { vec![title] };
            let mut keys = Vec::new();
            for (i, o) in options.iter().enumerate() {
                let label = text_of(lang, o.label.get(lang));
                lines.push(format!("{}. {label}", i + 1));
                let when = o.when.as_deref().map(|w| format!(" (when {w})")).unwrap_or_default();
                keys.push(format!("{} → {}{when}", i + 1, name(o.goto)));
            }
            if !back.is_empty() {
                lines.push(back.to_owned());
            }
            (lines.join("\n"), keys)
        }
        Kind::List { source, goto, empty, .. } => {
            let body = format!(
                "{title}\n1. …\n2. …\n0. {}\n{back}",
                menus.message("next").get(lang).trim_start_matches("0. ")
            );
            let keys = vec![
                format!("1-8 → {} ({source})", name(*goto)),
                format!("empty: «{}»", text_of(lang, empty.get(lang))),
            ];
            (body, keys)
        }
        Kind::Number { goto, min, max, .. } => {
            (join_back(&title, back_input), vec![format!("{min}–{max} → {}", name(*goto))])
        }
        Kind::Input { goto, .. } => (join_back(&title, back_input), vec![format!("→ {}", name(*goto))]),
        Kind::Confirm { goto, cancel, .. } => {
            let body = format!(
                "{title}\n1. {}\n2. {}",
                menus.message("yes").get(lang),
                menus.message("no").get(lang)
            );
            let root = if lang == Lang::Vi { "menu đầu".to_owned() } else { "the first menu".to_owned() };
            let no = cancel.map_or(root, name);
            (body, vec![format!("1 → {}", name(*goto)), format!("2 → {no}")])
        }
        Kind::Info => (format!("{title}\n{back}"), Vec::new()),
        Kind::Final => (title, Vec::new()),
    };
    let _ = writeln!(out, "### `{}`\n\n```\n{body}\n```\n", s.name);
    if !keys.is_empty() {
        let _ = writeln!(out, "{}\n", keys.join(" · "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_should_show_every_screen_once_with_example_values() {
        let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/menus"));
        let menus = Menus::load_dir(&dir).unwrap();
        let md = markdown(&menus, Lang::Vi);
        for s in &menus.screens {
            assert_eq!(md.matches(&format!("### `{}`\n", s.name)).count(), 1, "{}", s.name);
        }
        assert!(md.contains("1. Đăng bán hàng"), "{md}");
        assert!(md.contains("D000012"), "examples fill the placeholders");
        assert!(!md.contains("{order."), "no placeholder left");
    }
}
