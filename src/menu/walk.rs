//! `chogate menus check --walk`: drives every reachable path of a menu tree against a
//! worst-case market (the longest values each placeholder can take, lists long and short,
//! every condition both ways) in both languages and both encodings, and reports every
//! screen that breaks a household-screen rule:
//!
//! - it does not fit one USSD message;
//! - a prompt was cut to fit (input and confirmation screens never page: their title must
//!   fit with what they offer);
//! - a list entry was cut or split;
//! - an invalid key changed what the page lists, or what its numbers select;
//! - a screen that asks for something shows no way back.
//!
//! The market it walks against is [`WorstCase`], built from the real formatters by the
//! layer that owns them (`crate::ussd::worst_case`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::engine::{ActError, Backend, Cursor, Item, Vars};
use super::{Format, Kind, Menus, ScreenId, Target, Text};

/// The longest values the walk fills in.
#[derive(Debug, Clone, Default)]
pub struct WorstCase {
    /// A placeholder (`order.amount`) or its last part (`amount`) → its longest value.
    pub values: HashMap<String, Text>,
    /// A data source → the longest label of one of its entries, and its fields.
    pub entries: HashMap<String, (Text, Vec<(String, String)>)>,
}

impl WorstCase {
    fn value(&self, var: &str, lang: super::Lang) -> String {
        let found =
            self.values.get(var).or_else(|| var.rsplit_once('.').and_then(|(_, last)| self.values.get(last)));
        match found {
            Some(t) => t.get(lang).to_owned(),
            None => "x".repeat(super::engine::PLACEHOLDER_BUDGET),
        }
    }
}

/// One broken rule: where, how it was reached, what the screen showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The screen's name.
    pub screen: String,
    /// Language and encoding.
    pub target: Target,
    /// The inputs from the root.
    pub path: Vec<String>,
    /// The rule broken.
    pub what: String,
    /// The screen as rendered.
    pub text: String,
}

/// What a walk saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Screens rendered.
    pub screens: usize,
    /// Distinct screens of the tree reached.
    pub reached: usize,
    /// Rules broken (at most one per screen, rule and target).
    pub problems: Vec<Problem>,
}

/// The market the walk plays: every list has `entries` entries with the worst-case label,
/// every condition gives `conds`, every action succeeds.
struct WalkBackend<'a> {
    worst: &'a WorstCase,
    entries: usize,
    /// Every condition holds, none does, only the one named, or all but the one named.
    conds: Conds<'a>,
    lang: super::Lang,
}

#[derive(Clone, Copy)]
enum Conds<'a> {
    All(bool),
    Only(&'a str),
    AllBut(&'a str),
}

impl Backend for WalkBackend<'_> {
    async fn items(&self, source: &str, _vars: &Vars) -> Result<Arc<Vec<Item>>, ActError> {
        let (label, fields) = self
            .worst
            .entries
            .get(source)
            .cloned()
            .unwrap_or_else(|| (Text { vi: "x".repeat(20), en: "x".repeat(20) }, Vec::new()));
        Ok(Arc::new(
            (0..self.entries)
                .map(|i| Item { id: (i + 1).to_string(), label: label.clone(), fields: fields.clone() })
                .collect(),
        ))
    }

    async fn act(&self, _action: &str, _key: &str, vars: &mut Vars) -> Result<(), ActError> {
        self.fill(vars);
        Ok(())
    }

    async fn check(&self, cond: &str, _vars: &Vars) -> Result<bool, ActError> {
        Ok(match self.conds {
            Conds::All(v) => v,
            Conds::Only(c) => c == cond,
            Conds::AllBut(c) => c != cond,
        })
    }

    async fn load(&self, _loader: &str, vars: &mut Vars) -> Result<(), ActError> {
        self.fill(vars);
        Ok(())
    }
}

impl WalkBackend<'_> {
    /// Every placeholder a loader or an action could set, at its longest.
    fn fill(&self, vars: &mut Vars) {
        for name in self.worst.values.keys().filter(|k| k.contains('.')) {
            vars.insert(name.clone(), self.worst.value(name, self.lang));
        }
    }
}

/// The entries of a rendered list page: its numbered lines other than "0." and "9.".
fn entries(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            l.split_once(". ").is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && !l.starts_with("0. ")
                && !l.starts_with("9. ")
        })
        .map(str::to_owned)
        .collect()
}

/// A value that passes an input screen, at its longest.
fn valid_input(kind: &Kind, worst: &WorstCase, lang: super::Lang) -> Option<String> {
    match kind {
        Kind::Number { max, .. } => Some(max.to_string()),
        Kind::Input { format: Format::Pin, .. } => Some("1234".into()),
        Kind::Input { format: Format::Msisdn, .. } => Some("0912345678".into()),
        Kind::Input { format: Format::Digits, max_len, .. } => Some("9".repeat(*max_len)),
        Kind::Input { var, max_len, .. } => {
            let v = worst.value(var, lang);
            Some(v.chars().take(*max_len).collect())
        }
        _ => None,
    }
}

/// The inputs worth trying on the screen the cursor shows.
fn inputs(menus: &Menus, c: &Cursor, worst: &WorstCase, shown: &str) -> Vec<String> {
    let kind = &menus.screens[c.screen].kind;
    let mut out: Vec<String> = Vec::new();
    match kind {
        Kind::Choice { .. } | Kind::List { .. } => {
            for line in entries(shown) {
                if let Some((n, _)) = line.split_once(". ") {
                    out.push(n.to_owned());
                }
            }
            out.extend(["0", "9", "*", "77"].map(str::to_owned));
        }
        Kind::Number { min, .. } => {
            out.extend(valid_input(kind, worst, c.target.lang));
            out.push(min.saturating_sub(1).to_string());
            out.push("*".into());
        }
        Kind::Input { .. } => {
            out.extend(valid_input(kind, worst, c.target.lang));
            out.push("\u{1}".into());
            out.push("*".into());
        }
        Kind::Confirm { .. } => out.extend(["1", "2", "3"].map(str::to_owned)),
        Kind::Info => out.extend(["0", "9", "5"].map(str::to_owned)),
        Kind::Final | Kind::Switch { .. } => out.push("0".into()),
    }
    out
}

struct Walker<'a> {
    menus: &'a Menus,
    report: Report,
    seen_problems: HashSet<(String, String, Target)>,
    reached: HashSet<ScreenId>,
}

impl Walker<'_> {
    fn problem(&mut self, c: &Cursor, path: &[String], what: &str, text: &str) {
        let screen = self.menus.screens[c.screen].name.clone();
        if self.seen_problems.insert((screen.clone(), what.to_owned(), c.target)) {
            self.report.problems.push(Problem {
                screen,
                target: c.target,
                path: path.to_vec(),
                what: what.to_owned(),
                text: text.to_owned(),
            });
        }
    }

    /// Checks the screen the cursor shows; returns its text.
    fn check(&mut self, c: &Cursor, path: &[String]) -> String {
        let r = self.menus.render(c);
        self.report.screens += 1;
        self.reached.insert(c.screen);
        let t = c.target;
        if !t.fits(&r.text) {
            self.problem(c, path, "does not fit one USSD message", &r.text);
        }
        let kind = &self.menus.screens[c.screen].kind;
        let asks = c.ending.is_none() && !matches!(kind, Kind::Final);
        if asks
            && matches!(kind, Kind::Number { .. } | Kind::Input { .. } | Kind::Confirm { .. })
            && r.text.contains('…')
        {
            self.problem(c, path, "its prompt was cut to fit", &r.text);
        }
        if asks && !c.history.is_empty() {
            let lang = t.lang;
            let back = [self.menus.message("back").get(lang), self.menus.message("back_input").get(lang)];
            let no = format!("2. {}", self.menus.message("no").get(lang));
            let has_back = back.iter().any(|b| r.text.contains(*b)) || r.text.contains(&no);
            if !has_back && !matches!(kind, Kind::Info) {
                self.problem(c, path, "shows no way back", &r.text);
            }
            if matches!(kind, Kind::Info) && r.end {
                self.problem(c, path, "an info screen ended the dialogue", &r.text);
            }
        }
        if matches!(kind, Kind::Choice { .. } | Kind::List { .. }) && c.ending.is_none() {
            // Every entry whole: a list entry is never cut.
            if let Kind::List { .. } = kind {
                let label = c.items.first().map(|i| i.label.get(t.lang).to_owned());
                for line in entries(&r.text) {
                    if let (Some(label), Some((_, shown))) = (&label, line.split_once(". "))
                        && shown != label
                    {
                        self.problem(c, path, "a list entry was cut", &r.text);
                    }
                }
            }
        }
        r.text
    }
}

/// Walks every path of `menus` from each root, at most `depth` inputs deep, in every
/// language and encoding, with lists of 0, 1, 3, 9 and 40 entries, and the conditions all
/// true, all false, each alone true and each alone false (a leader's PIN screen needs the
/// household's PIN set and their own, but no lock).
pub async fn walk(menus: &Menus, worst: &WorstCase, depth: usize) -> Report {
    let mut w =
        Walker { menus, report: Report::default(), seen_problems: HashSet::new(), reached: HashSet::new() };
    for target in Target::all() {
        for entries_n in [0usize, 1, 3, 9, 40] {
            let variants = [Conds::All(true), Conds::All(false)]
                .into_iter()
                .chain(super::registry::CONDS.iter().map(|c| Conds::Only(c)))
                .chain(super::registry::CONDS.iter().map(|c| Conds::AllBut(c)));
            for conds in variants {
                let b = WalkBackend { worst, entries: entries_n, conds, lang: target.lang };
                for root in [menus.main, menus.leader, menus.register, menus.pending] {
                    let mut c = menus.cursor("walk".into(), root, target);
                    menus.start(&mut c, &b).await;
                    // Depth-first over the inputs, each state seen once per run.
                    let mut seen: HashSet<(ScreenId, usize, bool, usize)> = HashSet::new();
                    let mut stack: Vec<(Cursor, Vec<String>)> = vec![(c, Vec::new())];
                    while let Some((c, path)) = stack.pop() {
                        let shown = w.check(&c, &path);
                        let state = (c.screen, c.page, c.ending.is_some(), c.history.len().min(1));
                        if !seen.insert(state) || path.len() >= depth || menus.render(&c).end {
                            continue;
                        }
                        for input in inputs(menus, &c, worst, &shown) {
                            let mut next = c.clone();
                            menus.input(&mut next, &input, &b).await;
                            let mut p = path.clone();
                            p.push(input.clone());
                            // An invalid key leaves the page as it was: the same entries.
                            if next.screen == c.screen && next.hint.is_some() && next.page == c.page {
                                let after = menus.render(&next).text;
                                if entries(&after) != entries(&shown) {
                                    w.problem(&next, &p, "an invalid key moved the list", &after);
                                }
                            }
                            stack.push((next, p));
                        }
                    }
                }
            }
        }
    }
    w.report.reached = w.reached.len();
    for (id, s) in menus.screens.iter().enumerate() {
        if !w.reached.contains(&id) && !matches!(s.kind, Kind::Switch { .. }) {
            w.report.problems.push(Problem {
                screen: s.name.clone(),
                target: Target::all()[0],
                path: Vec::new(),
                what: "was never reached by the walk".to_owned(),
                text: String::new(),
            });
        }
    }
    w.report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Menus {
        Menus::load_dir(&std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/menus"))).unwrap()
    }

    #[tokio::test]
    async fn a_name_too_long_for_its_confirmation_should_be_reported() {
        let menus = shipped();
        let mut worst = WorstCase::default();
        // A village of the list (no input bounds it) with a very long name.
        let long = "Thôn Khuổi Bó Nà Lầm Pác Thôn Khuổi Bó Nà Lầm Pác".to_owned();
        let fields = vec![("name".to_owned(), long.clone()), ("label".to_owned(), long.clone())];
        worst.entries.insert("villages.of_commune".into(), (Text { vi: long.clone(), en: long }, fields));
        let report = walk(&menus, &worst, 8).await;
        assert!(
            report.problems.iter().any(|p| p.screen == "reg_confirm" && p.what.contains("prompt was cut")),
            "{:?}",
            report.problems
        );
    }

    #[tokio::test]
    async fn entries_too_long_for_a_page_should_be_reported() {
        let menus = shipped();
        let mut worst = WorstCase::default();
        let long = Text { vi: "x".repeat(90), en: "x".repeat(90) };
        worst.entries.insert("products".into(), (long, Vec::new()));
        let report = walk(&menus, &worst, 3).await;
        assert!(report.problems.iter().any(|p| p.screen == "sell_product"), "{:?}", report.problems);
    }

    #[test]
    fn entries_should_be_the_numbered_lines_but_navigation() {
        assert_eq!(entries("Title:\n1. Na\n2. Hồi\n0. Tiếp\n9. Quay lại"), ["1. Na", "2. Hồi"]);
        assert!(entries("Nhập số từ 1. đến 2.").is_empty());
    }
}
