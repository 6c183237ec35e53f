//! Navigating the menu tree: one [`Cursor`] per dialogue, moved by the subscriber's inputs;
//! rendering the current screen so that every page fits one USSD message.
//!
//! Conventions: options are numbered 1–8 on each page; `0` shows the next page ("0. Tiếp"),
//! `9` the previous page or screen ("9. Quay lại"), `00` returns to the root menu from
//! anywhere. Input screens (numbers, text) go back with `*` ("* Quay lại"), a key no value
//! can be mistaken for. Invalid input re-asks the same screen with a short hint.
//!
//! What a key selects never changes until the subscriber moves on: pages are laid out
//! without the hint, so an invalid choice re-shows the same page with the same items and
//! numbers (the hint goes on top only where it fits, else it is dropped); no option or
//! prompt is split across pages; input, number and confirmation screens never page (a
//! title too long for the screen is cut, never its options).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use super::{Format, Kind, Lang, Menus, Screen, ScreenId, Target, Text};
use crate::text::Lengths;

/// Width at which `menus check` counts a placeholder.
mod layout;

use layout::*;
pub use layout::{fill, worst_case_page};

pub const PLACEHOLDER_BUDGET: usize = 10;
/// Options on one page at most (9 and 0 are navigation).
pub const MAX_OPTIONS_PER_PAGE: usize = 8;
/// A choice of up to this many options never pages (`menus check` refuses one that would).
pub const NEVER_PAGED_OPTIONS: usize = 6;
/// The key that goes back from an input screen.
pub const BACK_KEY: &str = "*";

/// Dialogue variables.
pub type Vars = HashMap<String, String, foldhash::fast::RandomState>;

/// A message shown on top of a screen after invalid input: its name and its variables.
pub type Hint = (&'static str, Vec<(String, String)>);

/// One entry of a list screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Stored in the list's variable when chosen.
    pub id: String,
    /// Shown in the list.
    pub label: Text,
    /// Stored as `var.field` when chosen.
    pub fields: Vec<(String, String)>,
}

/// Why an action, source, condition or loader did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActError {
    /// Show the same screen again with this message on top (e.g. a wrong PIN).
    Reask {
        /// Message name.
        message: &'static str,
        /// Values for its placeholders.
        vars: Vec<(String, String)>,
    },
    /// End the dialogue with this message (e.g. PIN locked, not allowed).
    Fail {
        /// Message name.
        message: &'static str,
        /// Values for its placeholders.
        vars: Vec<(String, String)>,
    },
}

impl ActError {
    /// A failure with no placeholders.
    pub fn fail(message: &'static str) -> Self {
        ActError::Fail { message, vars: Vec::new() }
    }

    /// A re-ask with no placeholders.
    pub fn reask(message: &'static str) -> Self {
        ActError::Reask { message, vars: Vec::new() }
    }
}

/// What the engine needs from the world: data, actions, conditions.
pub trait Backend: Send + Sync {
    /// Items of a data source.
    fn items(
        &self,
        source: &str,
        vars: &Vars,
    ) -> impl Future<Output = Result<Arc<Vec<Item>>, ActError>> + Send;
    /// Runs an action once per `key`; may set variables for the screens after it.
    fn act(
        &self,
        action: &str,
        key: &str,
        vars: &mut Vars,
    ) -> impl Future<Output = Result<(), ActError>> + Send;
    /// Evaluates a condition.
    fn check(&self, cond: &str, vars: &Vars) -> impl Future<Output = Result<bool, ActError>> + Send;
    /// Fills variables before a screen is shown.
    fn load(&self, loader: &str, vars: &mut Vars) -> impl Future<Output = Result<(), ActError>> + Send;
}

/// Where a dialogue is.
#[derive(Debug, Clone)]
pub struct Cursor {
    /// Dialogue id; with `step` it makes the idempotency key of each action.
    pub id: String,
    /// The root screen of this subscriber (main, leader or register).
    pub root: ScreenId,
    /// The current screen.
    pub screen: ScreenId,
    /// The page of the current screen.
    pub page: usize,
    /// Variables.
    pub vars: Vars,
    /// Items of the current list screen.
    pub items: Arc<Vec<Item>>,
    /// The options of the current choice screen that are offered (indices, in order).
    pub shown: Vec<u8>,
    /// Screens to go back to.
    pub history: Vec<ScreenId>,
    /// Inputs taken so far.
    pub step: u32,
    /// A message shown on top of the screen (after invalid input).
    pub hint: Option<Box<Hint>>,
    /// The dialogue ends with this text instead of the screen's own.
    pub ending: Option<Box<Text>>,
    /// Language and encoding.
    pub target: Target,
}

/// A rendered screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The text.
    pub text: String,
    /// Whether the dialogue ends with it.
    pub end: bool,
}

fn yes_no(menus: &Menus, lang: Lang) -> String {
    format!("1. {}\n2. {}", menus.message("yes").get(lang), menus.message("no").get(lang))
}

/// Keeps digits only after dropping spaces and the thousands separators people type
/// ("25.000", "25,000", "25 000").
fn parse_number(input: &str) -> Option<i64> {
    let digits: String = input.chars().filter(|c| !matches!(c, '.' | ',' | ' ')).collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `1500000` → `1.500.000` (Vietnamese) or `1,500,000` (English).
pub fn group_thousands(n: i64, lang: Lang) -> String {
    crate::text::group_thousands(n, if lang == Lang::Vi { '.' } else { ',' })
}

impl Menus {
    /// A cursor on `root`, before [`Menus::start`].
    pub fn cursor(&self, id: String, root: ScreenId, target: Target) -> Cursor {
        Cursor {
            id,
            root,
            screen: root,
            page: 0,
            vars: Vars::default(),
            items: Arc::new(Vec::new()),
            shown: Vec::new(),
            history: Vec::new(),
            step: 0,
            hint: None,
            ending: None,
            target,
        }
    }

    /// Enters the root screen.
    pub async fn start<B: Backend>(&self, c: &mut Cursor, b: &B) {
        self.enter_at(c, c.root, b).await;
    }

    /// Takes one input from the subscriber.
    pub async fn input<B: Backend>(&self, c: &mut Cursor, raw: &str, b: &B) {
        let input = raw.trim();
        c.step += 1;
        c.hint = None;
        if c.ending.is_some() {
            if input == "0" {
                c.page += 1;
            }
            return;
        }
        if input == "00" {
            c.history.clear();
            self.clear_secrets(c);
            self.enter_at(c, c.root, b).await;
            return;
        }
        let screen = &self.screens[c.screen];
        if input == BACK_KEY && !matches!(screen.kind, Kind::Final) {
            if c.history.is_empty() {
                c.hint = Some(Box::new(("invalid", Vec::new())));
            } else {
                self.clear_secrets(c);
                self.back(c, b).await;
            }
            return;
        }
        let lang = c.target.lang;
        match &screen.kind {
            Kind::Choice { .. } | Kind::List { .. } => {
                let total = match &screen.kind {
                    Kind::Choice { .. } => c.shown.len(),
                    _ => c.items.len(),
                };
                // Only what the page on the screen shows can be chosen. The layout leaves
                // the hint out, so it is the one the subscriber saw.
                let (header, labels, nav) = self.list_parts(c, None);
                let pages = paginate(&header, &labels, &nav, c.target);
                let page = pages.get(c.page).cloned().unwrap_or(0..0);
                match input {
                    "0" if c.page + 1 < pages.len() => c.page += 1,
                    "9" if c.page > 0 => c.page -= 1,
                    "9" if !c.history.is_empty() => self.back(c, b).await,
                    _ => {
                        let n = input.parse::<usize>().ok();
                        let first = first_number(total, page.start);
                        let index = match n {
                            Some(n) if n >= first && n - first < page.len() => page.start + n - first,
                            _ => {
                                c.hint = Some(Box::new(("invalid", Vec::new())));
                                return;
                            }
                        };
                        match &screen.kind {
                            Kind::Choice { options } => {
                                let Some(option) =
                                    c.shown.get(index).and_then(|&i| options.get(usize::from(i)))
                                else {
                                    return;
                                };
                                let (goto, action) = (option.goto, option.action.clone());
                                if let Some(action) = action
                                    && !self.act(c, &action, b).await
                                {
                                    return;
                                }
                                self.enter(c, goto, b).await;
                            }
                            Kind::List { var, goto, .. } => {
                                let items = Arc::clone(&c.items);
                                let Some(item) = items.get(index) else { return };
                                c.vars.insert(var.clone(), item.id.clone());
                                c.vars.insert(format!("{var}.label"), item.label.get(lang).to_owned());
                                for (k, v) in &item.fields {
                                    c.vars.insert(format!("{var}.{k}"), v.clone());
                                }
                                self.enter(c, *goto, b).await;
                            }
                            _ => {}
                        }
                    }
                }
            }
            Kind::Number { var, min, max, goto, action } => {
                let value = parse_number(input).filter(|v| (*min..=*max).contains(v));
                let Some(value) = value else {
                    c.hint = Some(Box::new((
                        "number_range",
                        vec![
                            ("min".into(), group_thousands(*min, lang)),
                            ("max".into(), group_thousands(*max, lang)),
                        ],
                    )));
                    return;
                };
                c.vars.insert(var.clone(), value.to_string());
                c.vars.insert(format!("{var}.fmt"), group_thousands(value, lang));
                let (goto, action) = (*goto, action.clone());
                if let Some(action) = action
                    && !self.act(c, &action, b).await
                {
                    return;
                }
                self.enter(c, goto, b).await;
            }
            Kind::Input { var, format, max_len, same_as, goto, action } => {
                let value = match check_format(*format, input, *max_len) {
                    Ok(v) => v,
                    Err(message) => {
                        c.hint = Some(Box::new((message, vec![("max_len".into(), max_len.to_string())])));
                        return;
                    }
                };
                if let Some(other) = same_as {
                    match c.vars.get(other) {
                        Some(first) if *first == value => {}
                        Some(_) => {
                            c.hint = Some(Box::new(("pin_mismatch", Vec::new())));
                            return;
                        }
                        // The first entry is gone (a resumed dialogue keeps no PIN): ask it again.
                        None => {
                            self.back(c, b).await;
                            c.hint = Some(Box::new(("pin_mismatch", Vec::new())));
                            return;
                        }
                    }
                }
                c.vars.insert(var.clone(), value);
                let (goto, action) = (*goto, action.clone());
                if let Some(action) = action
                    && !self.act(c, &action, b).await
                {
                    return;
                }
                self.enter(c, goto, b).await;
            }
            Kind::Confirm { action, goto, cancel } => {
                let (action, goto, cancel) = (action.clone(), *goto, *cancel);
                match input {
                    "1" => {
                        if let Some(action) = action
                            && !self.act(c, &action, b).await
                        {
                            return;
                        }
                        self.enter(c, goto, b).await;
                    }
                    "2" => {
                        self.clear_secrets(c);
                        match cancel {
                            // Back where the household came from, as if the confirmation had
                            // never been shown: "9" there goes further back, not here again.
                            Some(to) => {
                                // (`to` may be a switch: cut at the screen it resolved to.)
                                self.enter_at(c, to, b).await;
                                if let Some(at) = c.history.iter().rposition(|&s| s == c.screen) {
                                    c.history.truncate(at);
                                }
                            }
                            None => {
                                c.history.clear();
                                self.enter_at(c, c.root, b).await;
                            }
                        }
                    }
                    _ => c.hint = Some(Box::new(("invalid", Vec::new()))),
                }
            }
            Kind::Final => {
                if input == "0" && c.page + 1 < self.text_page_count(c) {
                    c.page += 1;
                }
            }
            Kind::Info => match input {
                "0" if c.page + 1 < self.text_page_count(c) => c.page += 1,
                "9" if c.page > 0 => c.page -= 1,
                "9" if !c.history.is_empty() => self.back(c, b).await,
                // The same page again: a hint would move the words between pages.
                _ => {}
            },
            Kind::Switch { .. } => {}
        }
    }

    /// Runs an action; false (with a hint or an ending set) when it did not go through.
    async fn act<B: Backend>(&self, c: &mut Cursor, action: &str, b: &B) -> bool {
        let key = format!("{}:{}", c.id, c.step);
        let result = b.act(action, &key, &mut c.vars).await;
        // PINs are needed by one action only: never keep them longer.
        self.clear_secrets(c);
        match result {
            Ok(()) => true,
            Err(e) => {
                self.apply_error(c, e);
                false
            }
        }
    }

    fn apply_error(&self, c: &mut Cursor, e: ActError) {
        match e {
            ActError::Reask { message, vars } => c.hint = Some(Box::new((message, vars))),
            ActError::Fail { message, vars } => {
                for (k, v) in vars {
                    c.vars.insert(k, v);
                }
                c.ending = Some(Box::new(self.message(message).clone()));
                c.page = 0;
            }
        }
    }

    /// Drops every PIN the cursor holds (after their one action, and before a cut dialogue
    /// is kept for resumption).
    pub fn clear_secrets(&self, c: &mut Cursor) {
        if !self.secret_vars.is_empty() {
            c.vars.retain(|k, _| !self.secret_vars.contains(k));
        }
    }

    async fn back<B: Backend>(&self, c: &mut Cursor, b: &B) {
        if let Some(prev) = c.history.pop() {
            self.enter_at(c, prev, b).await;
        }
    }

    /// Moves forward to `to`, remembering where we were.
    async fn enter<B: Backend>(&self, c: &mut Cursor, to: ScreenId, b: &B) {
        c.history.push(c.screen);
        if c.history.len() > 32 {
            c.history.remove(0);
        }
        self.enter_at(c, to, b).await;
    }

    /// Shows `to`: follows switches, runs its loader, fetches its items.
    async fn enter_at<B: Backend>(&self, c: &mut Cursor, mut to: ScreenId, b: &B) {
        c.page = 0;
        for _ in 0..self.screens.len() {
            let Kind::Switch { cond, then, otherwise } = &self.screens[to].kind else { break };
            match b.check(cond, &c.vars).await {
                Ok(true) => to = *then,
                Ok(false) => to = *otherwise,
                Err(e) => {
                    self.apply_error(c, e);
                    return;
                }
            }
        }
        let screen = &self.screens[to];
        c.screen = to;
        if let Some(loader) = &screen.load
            && let Err(e) = b.load(loader, &mut c.vars).await
        {
            self.apply_error(c, e);
            return;
        }
        if let Kind::Choice { options } = &screen.kind {
            c.shown.clear();
            for (i, o) in options.iter().enumerate() {
                let offered = match &o.when {
                    None => true,
                    Some(cond) => match b.check(cond, &c.vars).await {
                        Ok(v) => v,
                        Err(e) => {
                            self.apply_error(c, e);
                            return;
                        }
                    },
                };
                if offered {
                    // At most MAX_OPTIONS_PER_PAGE options (checked at load).
                    c.shown.push(u8::try_from(i).unwrap_or(u8::MAX));
                }
            }
        }
        if let Kind::List { source, empty, .. } = &screen.kind {
            match b.items(source, &c.vars).await {
                Ok(items) => {
                    if items.is_empty() {
                        c.ending = Some(Box::new(empty.clone()));
                    }
                    c.items = items;
                }
                Err(e) => self.apply_error(c, e),
            }
        }
    }

    fn hint_text(&self, c: &Cursor, hint: Option<&Hint>) -> Option<String> {
        let (name, vars) = hint?;
        let template = self.message(name).get(c.target.lang);
        Some(fill_with(template, |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())))
    }

    /// Header, labels and navigation of a choice or list screen (the hint on top, when
    /// given).
    fn list_parts<'a>(&'a self, c: &'a Cursor, hint: Option<&Hint>) -> (Piece<'a>, Vec<Piece<'a>>, Nav<'a>) {
        let lang = c.target.lang;
        let screen = &self.screens[c.screen];
        let title = fill_cow(screen.title.get(lang), &c.vars);
        let header = match self.hint_text(c, hint) {
            Some(h) => Cow::Owned(join(&h, &title)),
            None => title,
        };
        let labels: Vec<Piece<'a>> = match &screen.kind {
            Kind::Choice { options } => c
                .shown
                .iter()
                .filter_map(|&i| options.get(usize::from(i)))
                .map(|o| Piece::new(fill_cow(o.label.get(lang), &c.vars), c.target))
                .collect(),
            _ => c.items.iter().map(|i| Piece::new(i.label.get(lang), c.target)).collect(),
        };
        let back = if c.history.is_empty() { "" } else { self.message("back").get(lang) };
        (Piece::new(header, c.target), labels, Nav::new(self.message("next").get(lang), Some(back), c.target))
    }

    fn text_page_count(&self, c: &Cursor) -> usize {
        self.text_screen_pages(c).len()
    }

    /// Pages of a screen made of text (everything but choices and lists). Only final texts
    /// page; a screen that asks for something is one page: its prompt and what it offers
    /// (yes / no, the way back), with the hint on top where it fits, the title cut where
    /// even that does not fit.
    fn text_screen_pages(&self, c: &Cursor) -> Vec<String> {
        let lang = c.target.lang;
        let next = self.message("next").get(lang);
        if let Some(text) = &c.ending {
            return text_pages(&fill_cow(text.get(lang), &c.vars), "", next, c.target);
        }
        let screen = &self.screens[c.screen];
        let title = fill_cow(screen.title.get(lang), &c.vars);
        let tail = match screen.kind {
            Kind::Confirm { .. } => yes_no(self, lang),
            Kind::Number { .. } | Kind::Input { .. } if !c.history.is_empty() => {
                self.message("back_input").get(lang).to_owned()
            }
            Kind::Final => return text_pages(&title, "", next, c.target),
            Kind::Info => {
                // Every page says how to go back.
                let back = if c.history.is_empty() { "" } else { self.message("back").get(lang) };
                return text_pages(&title, back, &join(next, back), c.target);
            }
            _ => String::new(),
        };
        let prompt = join(&title, &tail);
        // The hint on top of the title, else in its place (a hint asks again itself).
        if let Some(h) = self.hint_text(c, c.hint.as_deref()) {
            for text in [join(&h, &prompt), join(&h, &tail)] {
                if c.target.fits(&text) {
                    return vec![text];
                }
            }
        }
        if c.target.fits(&prompt) {
            return vec![prompt];
        }
        vec![join(&cut_to_fit(&title, &tail, c.target), &tail)]
    }

    /// What the dialogue is about: the label of the root's option it went through
    /// ("Đăng bán hàng"), for the resume offer; `None` on the root itself.
    pub fn topic(&self, c: &Cursor) -> Option<&str> {
        let first = match c.history.as_slice() {
            [root, rest @ ..] if *root == c.root => rest.first().copied().unwrap_or(c.screen),
            _ => return None,
        };
        let Kind::Choice { options } = &self.screens[c.root].kind else { return None };
        options.iter().find(|o| o.goto == first).map(|o| o.label.get(c.target.lang))
    }

    /// The resume offer for a dialogue cut at `c`.
    pub fn resume_offer(&self, c: &Cursor) -> String {
        let lang = c.target.lang;
        match self.topic(c) {
            Some(topic) => {
                fill_with(self.message("resume_topic").get(lang), |k| (k == "topic").then_some(topic))
            }
            None => self.message("resume").get(lang).to_owned(),
        }
    }

    /// Whether a cut dialogue holds anything worth resuming: something typed, and not back
    /// on its root menu.
    pub fn worth_resuming(&self, c: &Cursor) -> bool {
        c.step > 0 && !(c.screen == c.root && c.history.is_empty() && c.ending.is_none())
    }

    /// The current page of the current screen.
    pub fn render(&self, c: &Cursor) -> Rendered {
        let screen = &self.screens[c.screen];
        let is_text = c.ending.is_some() || !matches!(screen.kind, Kind::Choice { .. } | Kind::List { .. });
        if is_text {
            let pages = self.text_screen_pages(c);
            let last = pages.len().saturating_sub(1);
            let page = c.page.min(last);
            let ends = c.ending.is_some() || matches!(screen.kind, Kind::Final);
            let text = pages.into_iter().nth(page).unwrap_or_default();
            return Rendered { text, end: ends && page == last };
        }
        // Laid out without the hint: the same pages, items and numbers as before it.
        let (header, labels, nav) = self.list_parts(c, None);
        let pages = paginate(&header, &labels, &nav, c.target);
        let page = c.page.min(pages.len() - 1);
        let range = pages[page].clone();
        let first = first_number(labels.len(), range.start);
        let more = page + 1 < pages.len();
        // The hint on top of the title; else, for a title that only says what the list is
        // ("Đơn hàng:"), in its place; a title that names something (which order) stays and
        // the hint is left out.
        let names_something = self.screens[c.screen].title.get(c.target.lang).contains('{');
        let with_hint = self.hint_text(c, c.hint.as_deref()).and_then(|h| {
            let tops =
                if names_something { vec![join(&h, &header.text)] } else { vec![join(&h, &header.text), h] };
            tops.into_iter().find_map(|top| {
                let top = Piece::new(top, c.target);
                let t = compose(
                    String::with_capacity(200),
                    &top,
                    &labels[range.clone()],
                    first,
                    &nav,
                    page,
                    more,
                );
                c.target.fits(&t).then_some(t)
            })
        });
        let mut text = with_hint.unwrap_or_else(|| {
            compose(String::with_capacity(200), &header, &labels[range.clone()], first, &nav, page, more)
        });
        if !c.target.fits(&text) {
            // One entry too long for any page: cut the entry, keep the way back.
            let mut label: String =
                labels[range].iter().map(|l| l.text.as_ref()).collect::<Vec<_>>().join(" ");
            while !label.is_empty() {
                label.pop();
                let cut = [Piece::new(format!("{label}…"), c.target)];
                let page_text = compose(String::with_capacity(200), &header, &cut, first, &nav, page, more);
                if c.target.fits(&page_text) {
                    text = page_text;
                    break;
                }
            }
            if !c.target.fits(&text) {
                text = truncate_to_fit(&text, c.target);
            }
        }
        Rendered { text, end: false }
    }
}

/// Validates a text input; returns the value to store or the message to re-ask with.
fn check_format(format: Format, input: &str, max_len: usize) -> Result<String, &'static str> {
    if input.is_empty() {
        return Err("text_format");
    }
    if input.chars().count() > max_len {
        return Err("too_long");
    }
    match format {
        Format::Any => Ok(input.to_owned()),
        Format::Digits if input.bytes().all(|b| b.is_ascii_digit()) => Ok(input.to_owned()),
        Format::Digits => Err("text_format"),
        Format::Pin if input.len() == 4 && input.bytes().all(|b| b.is_ascii_digit()) => Ok(input.to_owned()),
        Format::Pin => Err("pin_format"),
        Format::Msisdn => crate::msisdn::normalize(input).ok_or("msisdn_format"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_should_replace_known_and_blank_unknown_placeholders() {
        let mut vars = Vars::default();
        vars.insert("qty".into(), "10".into());
        vars.insert("product.name".into(), "Na".into());
        assert_eq!(fill("Bán {qty} kg {product.name}{missing}?", &vars), "Bán 10 kg Na?");
        assert_eq!(fill("no braces", &vars), "no braces");
        assert_eq!(fill("open { brace", &vars), "open { brace");
    }

    #[test]
    fn numbers_should_accept_thousands_separators() {
        assert_eq!(parse_number("25.000"), Some(25000));
        assert_eq!(parse_number("25,000"), Some(25000));
        assert_eq!(parse_number(" 1 000 "), Some(1000));
        assert_eq!(parse_number("-5"), None);
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_number(""), None);
    }

    proptest::proptest! {
        #[test]
        fn pages_should_fit_and_be_as_full_as_they_can(
            labels in proptest::collection::vec("[a-zA-Z0-9 ạăơưđĐếồ€{]{1,30}", 0..20),
            header in "[a-zA-Z ạăơưđ]{0,40}",
            ucs2: bool,
            back: bool,
        ) {
            let mode = if ucs2 { crate::config::TextMode::Ucs2 } else { crate::config::TextMode::Gsm };
            let t = Target { lang: Lang::Vi, mode };
            let header = Piece::new(header.as_str(), t);
            let labels: Vec<Piece<'_>> = labels.iter().map(|l| Piece::new(l.as_str(), t)).collect();
            let nav = Nav::new("0. Tiếp", Some(if back { "9. Quay lại" } else { "" }), t);
            let pages = paginate(&header, &labels, &nav, t);
            let text = |r: Range<usize>, page: usize, more: bool| {
                compose(String::with_capacity(200), &header, &labels[r.clone()], first_number(labels.len(), r.start), &nav, page, more)
            };
            for (i, r) in pages.iter().enumerate() {
                let more = i + 1 < pages.len();
                proptest::prop_assert!(t.fits(&text(r.clone(), i, more)) || r.len() == 1);
                if more && r.len() < MAX_OPTIONS_PER_PAGE {
                    let longer = r.start..r.end + 1;
                    proptest::prop_assert!(!t.fits(&text(longer.clone(), i, longer.end < labels.len())));
                }
            }
        }
    }

    #[test]
    fn text_pages_should_each_fit() {
        let t = Target { lang: Lang::Vi, mode: crate::config::TextMode::Ucs2 };
        let long = "Đơn hàng của bạn đã được ghi nhận và sẽ được giao trong vài ngày tới. ".repeat(5);
        let pages = text_pages(&long, "1. Đồng ý\n2. Hủy", "0. Tiếp", t);
        assert!(pages.len() > 1);
        for p in &pages {
            assert!(t.fits(p), "{p}");
        }
        assert!(pages.last().unwrap().ends_with("2. Hủy"));
    }
}
