//! Menus as data: screens defined in TOML files under `menus/`, loaded and validated at
//! start (and by `chogate menus check`), rendered into screens that fit one USSD message,
//! and navigated by [`engine`]. Actions, data sources, conditions and loaders are named in
//! the files and implemented in code (see [`registry`]).
//!
//! A file holds `[screen.NAME]` tables and `[message.NAME]` texts. Every text has a
//! Vietnamese (`vi`) and an English (`en`) version. Screen kinds:
//!
//! | kind | what | keys |
//! | --- | --- | --- |
//! | `choice` | static options (up to six never page) | `title`, `options = [{vi, en, goto, action?, when?}]` |
//! | `list` | options from a data source, paged | `title`, `source`, `var`, `goto`, `empty` |
//! | `number` | a number within bounds | `title`, `var`, `min`, `max`, `goto`, `action?` |
//! | `text` | free text or a format | `title`, `var`, `format?`, `max_len?`, `same_as?`, `goto`, `action?` |
//! | `confirm` | 1. yes / 2. no | `title`, `action?`, `goto`, `cancel?` |
//! | `switch` | branch on a condition, shows nothing | `cond`, `then`, `else` |
//! | `info` | text to read (paged), then back | `title` |
//! | `final` | last screen, ends the dialogue (paged) | `title` |
//!
//! Any screen may name a `load`er that fills variables before it is shown. Texts use
//! `{var}` and `{var.field}` placeholders; a number typed on a `number` screen is also
//! stored as `{var.fmt}`, with the thousands separated as the language writes them.
//! An option with `when = "cond"` is offered only when the condition holds (the options
//! shown are numbered 1, 2, ... in their order, and keep their numbers while the screen is
//! shown).

pub mod engine;
pub mod guide;
pub mod registry;
pub mod walk;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::TextMode;

/// Index of a screen in [`Menus`].
pub type ScreenId = usize;

/// Names of the root screens.
pub mod roots {
    /// A registered household's main menu.
    pub const MAIN: &str = "main";
    /// A team leader's menu.
    pub const LEADER: &str = "leader";
    /// Self-registration for a number chogate does not know.
    pub const REGISTER: &str = "register";
    /// A household that registered itself, until its team leader confirms it.
    pub const PENDING: &str = "pending";
}

/// A menu file is wrong: which file, which line (`FILE:LINE: reason`, or `FILE: reason`
/// when no line is to blame), why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", place(file, *line))]
pub struct MenuError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when the error is not tied to a line).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

fn place(file: &Path, line: usize) -> String {
    match line {
        0 => file.display().to_string(),
        n => format!("{}:{n}", file.display()),
    }
}

pub use crate::text::Lang;

/// A text in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    /// Vietnamese.
    pub vi: String,
    /// English.
    pub en: String,
}

impl Text {
    /// The text in a language.
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::Vi => &self.vi,
            Lang::En => &self.en,
        }
    }
}

/// What a text input must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Any non-empty text.
    #[default]
    Any,
    /// Digits only.
    Digits,
    /// A 4-digit PIN (kept out of logs, cleared after use).
    Pin,
    /// A Vietnamese mobile number (normalised to 84…).
    Msisdn,
}

/// One static option of a choice screen.
#[derive(Debug, Clone)]
pub struct MenuOption {
    /// Its label.
    pub label: Text,
    /// Where it leads.
    pub goto: ScreenId,
    /// An action run before going there.
    pub action: Option<String>,
    /// Offered only when this condition holds.
    pub when: Option<String>,
}

/// What a screen does.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Static options.
    Choice {
        /// The options.
        options: Vec<MenuOption>,
    },
    /// Options from a data source.
    List {
        /// The data source.
        source: String,
        /// Variable the chosen item goes to.
        var: String,
        /// Where choosing leads.
        goto: ScreenId,
        /// Final text when there is nothing to list.
        empty: Text,
    },
    /// A number within bounds.
    Number {
        /// Variable.
        var: String,
        /// Lowest accepted.
        min: i64,
        /// Highest accepted.
        max: i64,
        /// Next screen.
        goto: ScreenId,
        /// Action run with the input.
        action: Option<String>,
    },
    /// Free text.
    Input {
        /// Variable.
        var: String,
        /// Expected format.
        format: Format,
        /// Longest accepted, in characters.
        max_len: usize,
        /// Must equal this variable (PIN entered twice).
        same_as: Option<String>,
        /// Next screen.
        goto: ScreenId,
        /// Action run with the input.
        action: Option<String>,
    },
    /// Yes / no.
    Confirm {
        /// Action run on yes.
        action: Option<String>,
        /// Where yes leads.
        goto: ScreenId,
        /// Where no leads (the root by default).
        cancel: Option<ScreenId>,
    },
    /// A branch on a condition.
    Switch {
        /// The condition.
        cond: String,
        /// When true.
        then: ScreenId,
        /// When false.
        otherwise: ScreenId,
    },
    /// Text to read, paged; `9` (or `*`) goes back.
    Info,
    /// The last screen.
    Final,
}

/// A validated screen.
#[derive(Debug, Clone)]
pub struct Screen {
    /// Its name.
    pub name: String,
    /// Title (or the whole text for final screens); empty for switches.
    pub title: Text,
    /// What it does.
    pub kind: Kind,
    /// A loader that fills variables before it is shown.
    pub load: Option<String>,
    /// Where it was defined.
    pub file: PathBuf,
    /// Line of its table.
    pub line: usize,
}

/// The whole validated menu tree.
#[derive(Debug, Clone)]
pub struct Menus {
    /// All screens.
    pub screens: Vec<Screen>,
    by_name: HashMap<String, ScreenId>,
    messages: HashMap<String, Text, foldhash::fast::RandomState>,
    /// The registered household's main menu.
    pub main: ScreenId,
    /// The leader menu.
    pub leader: ScreenId,
    /// Self-registration.
    pub register: ScreenId,
    /// A self-registered household waiting for its leader.
    pub pending: ScreenId,
    /// Variables that hold PINs (never logged, cleared after use).
    pub secret_vars: HashSet<String>,
}

// ---- raw file format ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    screen: BTreeMap<String, Spanned<RawScreen>>,
    #[serde(default)]
    message: BTreeMap<String, Spanned<Text>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOption {
    vi: String,
    en: String,
    goto: String,
    action: Option<String>,
    when: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScreen {
    kind: String,
    title: Option<Text>,
    options: Option<Vec<RawOption>>,
    source: Option<String>,
    var: Option<String>,
    goto: Option<String>,
    empty: Option<Text>,
    min: Option<i64>,
    max: Option<i64>,
    format: Option<Format>,
    max_len: Option<usize>,
    same_as: Option<String>,
    action: Option<String>,
    cancel: Option<String>,
    cond: Option<String>,
    then: Option<String>,
    #[serde(rename = "else")]
    otherwise: Option<String>,
    load: Option<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Parses a TOML error message for its line ("at line 3, column 1").
fn toml_error(file: &Path, e: &toml::de::Error, text: &str) -> MenuError {
    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
    let reason = e.message().to_owned();
    MenuError { file: file.to_owned(), line, reason }
}

struct Pending {
    raw: RawScreen,
    file: PathBuf,
    line: usize,
}

/// The shipped menu files (`menus/*.toml`), compiled into the binary: the menus chogate
/// runs when `[ussd] menus_dir` is not set, so that the daemon needs no file beside it.
/// Errors name them as `menus/10-household.toml (built in)`. A test checks this table
/// against the folder.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("10-household.toml", include_str!("../../menus/10-household.toml")),
    ("20-register.toml", include_str!("../../menus/20-register.toml")),
    ("30-leader.toml", include_str!("../../menus/30-leader.toml")),
    ("90-messages.toml", include_str!("../../menus/90-messages.toml")),
];

impl Menus {
    /// Loads and validates the menus compiled into the binary ([`BUILT_IN`]).
    pub fn built_in() -> Result<Menus, MenuError> {
        let sources: Vec<(PathBuf, String)> = BUILT_IN
            .iter()
            .map(|(name, text)| (PathBuf::from(format!("menus/{name} (built in)")), (*text).to_owned()))
            .collect();
        Menus::from_sources(&sources)
    }

    /// The menus of `dir`, or the built-in ones when there is none.
    pub fn load(dir: Option<&Path>) -> Result<Menus, MenuError> {
        match dir {
            Some(dir) => Menus::load_dir(dir),
            None => Menus::built_in(),
        }
    }

    /// Loads and validates every `*.toml` file in `dir` (sorted by name).
    pub fn load_dir(dir: &Path) -> Result<Menus, MenuError> {
        let err = |reason: String| MenuError { file: dir.to_owned(), line: 0, reason };
        let entries = std::fs::read_dir(dir).map_err(|e| err(format!("cannot read menu directory: {e}")))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(err("no *.toml menu files".into()));
        }
        let mut sources = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| MenuError {
                file: f.clone(),
                line: 0,
                reason: format!("cannot read: {e}"),
            })?;
            sources.push((f, text));
        }
        Menus::from_sources(&sources)
    }

    /// Loads and validates menus from (file name, text) pairs.
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<Menus, MenuError> {
        let mut pending: Vec<(String, Pending)> = Vec::new();
        let mut names: HashMap<String, (PathBuf, usize)> = HashMap::new();
        let mut messages = HashMap::default();
        for (file, text) in sources {
            let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(file, &e, text))?;
            for (name, s) in raw.screen {
                let line = line_of(text, s.span().start);
                if let Some((f, l)) = names.get(&name) {
                    return Err(MenuError {
                        file: file.clone(),
                        line,
                        reason: format!("screen `{name}` is already defined at {}:{l}", f.display()),
                    });
                }
                names.insert(name.clone(), (file.clone(), line));
                pending.push((name, Pending { raw: s.into_inner(), file: file.clone(), line }));
            }
            for (name, m) in raw.message {
                let line = line_of(text, m.span().start);
                if messages.insert(name.clone(), m.into_inner()).is_some() {
                    return Err(MenuError {
                        file: file.clone(),
                        line,
                        reason: format!("message `{name}` defined twice"),
                    });
                }
            }
        }
        // Screens keep the order they were read in: file by file, table by table.
        let by_name: HashMap<String, ScreenId> =
            pending.iter().enumerate().map(|(i, (name, _))| (name.clone(), i)).collect();
        let mut screens = Vec::with_capacity(pending.len());
        let mut secret_vars = HashSet::new();
        for (name, p) in pending {
            screens.push(build_screen(&name, p, &by_name, &mut secret_vars)?);
        }
        let root = |n: &str| {
            by_name.get(n).copied().ok_or_else(|| MenuError {
                file: sources.first().map(|(f, _)| f.clone()).unwrap_or_default(),
                line: 0,
                reason: format!("the root screen `{n}` is not defined in any file"),
            })
        };
        let menus = Menus {
            main: root(roots::MAIN)?,
            leader: root(roots::LEADER)?,
            register: root(roots::REGISTER)?,
            pending: root(roots::PENDING)?,
            screens,
            by_name,
            messages,
            secret_vars,
        };
        menus.validate()?;
        Ok(menus)
    }

    /// A screen by name.
    pub fn screen_id(&self, name: &str) -> Option<ScreenId> {
        self.by_name.get(name).copied()
    }

    /// A message by name; validated to exist for every name in [`registry::MESSAGES`].
    pub fn message(&self, name: &str) -> &Text {
        static MISSING: std::sync::OnceLock<Text> = std::sync::OnceLock::new();
        self.messages.get(name).unwrap_or_else(|| {
            MISSING.get_or_init(|| Text { vi: "Lỗi hệ thống.".into(), en: "System error.".into() })
        })
    }

    fn validate(&self) -> Result<(), MenuError> {
        let first_file = self.screens.first().map(|s| s.file.clone()).unwrap_or_default();
        for m in registry::MESSAGES {
            if !self.messages.contains_key(*m) {
                return Err(MenuError {
                    file: first_file,
                    line: 0,
                    reason: format!("message `{m}` is required but not defined in any file"),
                });
            }
        }
        // Every screen must be reachable from a root.
        let mut seen = vec![false; self.screens.len()];
        let mut stack = vec![self.main, self.leader, self.register, self.pending];
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut seen[id], true) {
                continue;
            }
            stack.extend(successors(&self.screens[id].kind));
        }
        // A screen some other screen leads to shows the way back; a root only reached as
        // a root has nowhere to go back to.
        let led_to: HashSet<ScreenId> = self.screens.iter().flat_map(|s| successors(&s.kind)).collect();
        for (id, s) in self.screens.iter().enumerate() {
            if !seen[id] {
                return Err(s.err(format!("screen `{}` cannot be reached from any root", s.name)));
            }
            check_fit(self, s, led_to.contains(&id))?;
        }
        Ok(())
    }
}

/// Screens a screen can lead to.
pub fn successors(kind: &Kind) -> Vec<ScreenId> {
    match kind {
        Kind::Choice { options } => options.iter().map(|o| o.goto).collect(),
        Kind::List { goto, .. } | Kind::Number { goto, .. } | Kind::Input { goto, .. } => vec![*goto],
        Kind::Confirm { goto, cancel, .. } => std::iter::once(*goto).chain(*cancel).collect(),
        Kind::Switch { then, otherwise, .. } => vec![*then, *otherwise],
        Kind::Info | Kind::Final => vec![],
    }
}

impl Screen {
    fn err(&self, reason: String) -> MenuError {
        MenuError { file: self.file.clone(), line: self.line, reason }
    }
}

fn build_screen(
    name: &str,
    p: Pending,
    by_name: &HashMap<String, ScreenId>,
    secret_vars: &mut HashSet<String>,
) -> Result<Screen, MenuError> {
    let Pending { raw, file, line } = p;
    let err =
        |reason: String| MenuError { file: file.clone(), line, reason: format!("screen `{name}`: {reason}") };
    let target = |key: &str, v: &Option<String>| -> Result<ScreenId, MenuError> {
        let v = v.as_ref().ok_or_else(|| err(format!("kind `{}` needs `{key}`", raw.kind)))?;
        by_name.get(v).copied().ok_or_else(|| err(format!("{key} = \"{v}\": no such screen")))
    };
    let need = |key: &str, v: &Option<String>| -> Result<String, MenuError> {
        v.clone().ok_or_else(|| err(format!("kind `{}` needs `{key}`", raw.kind)))
    };
    let check_name = |what: &str, v: &Option<String>, known: &[&str]| -> Result<(), MenuError> {
        match v {
            Some(n) if !known.contains(&n.as_str()) => {
                Err(err(format!("unknown {what} `{n}` (known: {})", known.join(", "))))
            }
            _ => Ok(()),
        }
    };
    check_name("action", &raw.action, registry::ACTIONS)?;
    check_name("loader", &raw.load, registry::LOADERS)?;
    // Keys that make no sense for this kind are refused rather than silently ignored.
    let allowed: &[&str] = match raw.kind.as_str() {
        "choice" => &["title", "options", "load"],
        "list" => &["title", "source", "var", "goto", "empty", "load"],
        "number" => &["title", "var", "min", "max", "goto", "action", "load"],
        "text" => &["title", "var", "format", "max_len", "same_as", "goto", "action", "load"],
        "confirm" => &["title", "action", "goto", "cancel", "load"],
        "switch" => &["cond", "then", "else"],
        "info" | "final" => &["title", "load"],
        other => {
            return Err(err(format!(
                "unknown kind `{other}` (choice, list, number, text, confirm, switch, info, final)"
            )));
        }
    };
    let present: [(&str, bool); 17] = [
        ("title", raw.title.is_some()),
        ("options", raw.options.is_some()),
        ("source", raw.source.is_some()),
        ("var", raw.var.is_some()),
        ("goto", raw.goto.is_some()),
        ("empty", raw.empty.is_some()),
        ("min", raw.min.is_some()),
        ("max", raw.max.is_some()),
        ("format", raw.format.is_some()),
        ("max_len", raw.max_len.is_some()),
        ("same_as", raw.same_as.is_some()),
        ("action", raw.action.is_some()),
        ("cancel", raw.cancel.is_some()),
        ("cond", raw.cond.is_some()),
        ("then", raw.then.is_some()),
        ("else", raw.otherwise.is_some()),
        ("load", raw.load.is_some()),
    ];
    if let Some((k, _)) = present.iter().find(|(k, p)| *p && !allowed.contains(k)) {
        return Err(err(format!("`{k}` does not apply to kind `{}`", raw.kind)));
    }
    // A choice may go without a title (the main menu needs every character for its options).
    let untitled = matches!(raw.kind.as_str(), "switch" | "choice");
    let title = match &raw.title {
        Some(t) => t.clone(),
        None if untitled => Text { vi: String::new(), en: String::new() },
        None => return Err(err(format!("kind `{}` needs `title`", raw.kind))),
    };
    if raw.title.is_some() && (title.vi.trim().is_empty() || title.en.trim().is_empty()) {
        return Err(err("title needs both `vi` and `en` text".into()));
    }
    let kind = match raw.kind.as_str() {
        "choice" => {
            let raw_options =
                raw.options.as_ref().ok_or_else(|| err("kind `choice` needs `options`".into()))?;
            if raw_options.is_empty() {
                return Err(err("`options` is empty".into()));
            }
            if raw_options.len() > engine::MAX_OPTIONS_PER_PAGE {
                return Err(err(format!(
                    "{} options: a choice has at most {} (9 and 0 are the keys to move)",
                    raw_options.len(),
                    engine::MAX_OPTIONS_PER_PAGE
                )));
            }
            let mut options = Vec::new();
            for o in raw_options {
                if let Some(a) = &o.action
                    && !registry::ACTIONS.contains(&a.as_str())
                {
                    return Err(err(format!("option `{}`: unknown action `{a}`", o.vi)));
                }
                if let Some(w) = &o.when
                    && !registry::CONDS.contains(&w.as_str())
                {
                    return Err(err(format!(
                        "option `{}`: unknown condition `{w}` (known: {})",
                        o.vi,
                        registry::CONDS.join(", ")
                    )));
                }
                if o.vi.trim().is_empty() || o.en.trim().is_empty() {
                    return Err(err("every option needs both `vi` and `en` text".into()));
                }
                let goto = by_name.get(&o.goto).copied().ok_or_else(|| {
                    err(format!("option `{}`: goto = \"{}\": no such screen", o.vi, o.goto))
                })?;
                options.push(MenuOption {
                    label: Text { vi: o.vi.clone(), en: o.en.clone() },
                    goto,
                    action: o.action.clone(),
                    when: o.when.clone(),
                });
            }
            Kind::Choice { options }
        }
        "list" => {
            check_name("source", &raw.source, registry::SOURCES)?;
            Kind::List {
                source: need("source", &raw.source)?,
                var: need("var", &raw.var)?,
                goto: target("goto", &raw.goto)?,
                empty: raw.empty.clone().ok_or_else(|| err("kind `list` needs `empty`".into()))?,
            }
        }
        "number" => {
            let (min, max) = match (raw.min, raw.max) {
                (Some(a), Some(b)) if a <= b => (a, b),
                (Some(a), Some(b)) => return Err(err(format!("min {a} is above max {b}"))),
                _ => return Err(err("kind `number` needs `min` and `max`".into())),
            };
            Kind::Number {
                var: need("var", &raw.var)?,
                min,
                max,
                goto: target("goto", &raw.goto)?,
                action: raw.action.clone(),
            }
        }
        "text" => {
            let var = need("var", &raw.var)?;
            let format = raw.format.unwrap_or_default();
            if format == Format::Pin {
                secret_vars.insert(var.clone());
            }
            let max_len = raw.max_len.unwrap_or(60);
            if max_len == 0 || max_len > 160 {
                return Err(err(format!("max_len {max_len} must be within 1..=160")));
            }
            Kind::Input {
                var,
                format,
                max_len,
                same_as: raw.same_as.clone(),
                goto: target("goto", &raw.goto)?,
                action: raw.action.clone(),
            }
        }
        "confirm" => Kind::Confirm {
            action: raw.action.clone(),
            goto: target("goto", &raw.goto)?,
            cancel: raw.cancel.as_ref().map(|_| target("cancel", &raw.cancel)).transpose()?,
        },
        "switch" => {
            check_name("condition", &raw.cond, registry::CONDS)?;
            Kind::Switch {
                cond: need("cond", &raw.cond)?,
                then: target("then", &raw.then)?,
                otherwise: target("else", &raw.otherwise)?,
            }
        }
        "info" => Kind::Info,
        _ => Kind::Final,
    };
    Ok(Screen { name: name.to_owned(), title, kind, load: raw.load.clone(), file, line })
}

/// How a screen's text is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// Language.
    pub lang: Lang,
    /// Whether the operator shows UCS2 (else unaccented GSM).
    pub mode: TextMode,
}

impl Target {
    /// Whether a text fits one screen for this target.
    pub fn fits(&self, text: &str) -> bool {
        self.fits_lengths(self.lengths(text))
    }

    /// The lengths of a piece of a screen, to add up with [`Target::fits_lengths`].
    pub fn lengths(&self, text: &str) -> crate::text::Lengths {
        crate::text::Lengths::of(text, self.mode == TextMode::Ucs2)
    }

    /// Whether a text of these lengths (measured for this target) fits one screen.
    pub fn fits_lengths(&self, lengths: crate::text::Lengths) -> bool {
        let (enc, len) = lengths.measure();
        len <= enc.ussd_max()
    }

    /// Every language and mode, for validation.
    pub fn all() -> [Target; 4] {
        [
            Target { lang: Lang::Vi, mode: TextMode::Ucs2 },
            Target { lang: Lang::Vi, mode: TextMode::Gsm },
            Target { lang: Lang::En, mode: TextMode::Ucs2 },
            Target { lang: Lang::En, mode: TextMode::Gsm },
        ]
    }
}

/// Checks a screen fits in every language and mode, with each placeholder taken at its
/// budget width (dynamic lists page at run time, so only their title and one item count).
fn check_fit(menus: &Menus, s: &Screen, back: bool) -> Result<(), MenuError> {
    for target in Target::all() {
        let page = engine::worst_case_page(menus, s, target, back);
        if let Some(text) = page
            && !target.fits(&text)
        {
            let allow = target.mode == TextMode::Ucs2;
            let (enc, len) = crate::text::measure(&text, allow);
            return Err(s.err(format!(
                "screen `{}` does not fit one USSD message in {:?}/{:?}: {len} {enc} units, at most {} \
                 (placeholders counted at {} characters):\n{text}",
                s.name,
                target.lang,
                target.mode,
                enc.ussd_max(),
                engine::PLACEHOLDER_BUDGET
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
