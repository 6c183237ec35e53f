//! How a screen is laid out: placeholders filled, pages cut so that each fits one USSD
//! message, the navigation hint placed, a title cut with "…" where it must be. The
//! navigation (what a key selects, where it goes) is in the engine.

use super::*;

/// Replaces `{name}` placeholders with variables (unknown ones are left empty).
pub fn fill(template: &str, vars: &Vars) -> String {
    fill_with(template, |name| vars.get(name).map(String::as_str))
}

/// [`fill`], borrowing the template when it has no placeholder (most titles and labels).
pub(super) fn fill_cow<'a>(template: &'a str, vars: &Vars) -> Cow<'a, str> {
    if template.contains('{') { Cow::Owned(fill(template, vars)) } else { Cow::Borrowed(template) }
}

pub(super) fn fill_with<'a>(template: &'a str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                out.push_str(lookup(&after[..close]).unwrap_or(""));
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A piece of a list screen (header, entry, navigation line) and its lengths, measured once
/// for all the pages it is tried on.
pub(super) struct Piece<'a> {
    pub(super) text: Cow<'a, str>,
    pub(super) len: Lengths,
}

impl<'a> Piece<'a> {
    pub(super) fn new(text: impl Into<Cow<'a, str>>, t: Target) -> Self {
        let text = text.into();
        let len = t.lengths(&text);
        Piece { text, len }
    }
}

/// What a page is written into: its text, or only its lengths (to try it for size).
pub(super) trait PageOut {
    fn put(&mut self, piece: &Piece<'_>);
    /// A newline, or an entry's number and ". ".
    fn put_ascii(&mut self, text: &str);
    fn put_number(&mut self, n: usize);
    fn is_empty(&self) -> bool;
}

impl PageOut for String {
    fn put(&mut self, piece: &Piece<'_>) {
        self.push_str(&piece.text);
    }

    fn put_ascii(&mut self, text: &str) {
        self.push_str(text);
    }

    fn put_number(&mut self, n: usize) {
        if n >= 10 {
            self.put_number(n / 10);
        }
        // A digit: n % 10 < 10.
        self.push(char::from(b'0' + (n % 10) as u8));
    }

    fn is_empty(&self) -> bool {
        String::is_empty(self)
    }
}

/// The lengths of a page being tried for size.
pub(super) struct Size {
    pub(super) len: Lengths,
    pub(super) empty: bool,
}

impl PageOut for Size {
    fn put(&mut self, piece: &Piece<'_>) {
        self.len = self.len.plus(piece.len);
        self.empty &= piece.text.is_empty();
    }

    fn put_ascii(&mut self, text: &str) {
        self.len = self.len.plus(Lengths::ascii(text.len()));
        self.empty &= text.is_empty();
    }

    fn put_number(&mut self, n: usize) {
        let digits = n.checked_ilog10().unwrap_or(0) as usize + 1;
        self.len = self.len.plus(Lengths::ascii(digits));
        self.empty = false;
    }

    fn is_empty(&self) -> bool {
        self.empty
    }
}

/// Splits list entries into pages: each page holds `header`, up to eight entries and the
/// navigation lines, and fits one message (a single entry too long for any page gets a
/// page of its own and is cut when rendered). A list that fits one page whole is one page.
pub(super) fn paginate(
    header: &Piece<'_>,
    labels: &[Piece<'_>],
    nav: &Nav<'_>,
    t: Target,
) -> Vec<Range<usize>> {
    let size = |labels: &[Piece<'_>], first, page, more| {
        compose(Size { len: Lengths::ascii(0), empty: true }, header, labels, first, nav, page, more).len
    };
    if labels.len() <= MAX_OPTIONS_PER_PAGE && t.fits_lengths(size(labels, 1, 0, false)) {
        return std::iter::once(0..labels.len()).collect();
    }
    let mut pages = Vec::new();
    let mut start = 0;
    while start < labels.len() {
        let mut end = start + 1;
        while end < labels.len()
            && end - start < MAX_OPTIONS_PER_PAGE
            && t.fits_lengths(size(
                &labels[start..=end],
                first_number(labels.len(), start),
                pages.len(),
                end + 1 < labels.len(),
            ))
        {
            end += 1;
        }
        pages.push(start..end);
        start = end;
    }
    if pages.is_empty() {
        pages.push(0..0);
    }
    pages
}

/// Navigation lines in the target language.
pub(super) struct Nav<'a> {
    pub(super) next: Piece<'a>,
    pub(super) back: Option<Piece<'a>>,
}

impl<'a> Nav<'a> {
    pub(super) fn new(next: &'a str, back: Option<&'a str>, t: Target) -> Self {
        Nav { next: Piece::new(next, t), back: back.map(|b| Piece::new(b, t)) }
    }
}

/// The number of the first entry on a page: screens of up to eight entries number them
/// 1..n across pages (so "5" means the same on every page), longer lists 1..8 per page.
pub(super) fn first_number(total: usize, page_start: usize) -> usize {
    if total <= MAX_OPTIONS_PER_PAGE { page_start + 1 } else { 1 }
}

/// One page of a list screen: the header, numbered entries, then "next" when `more`
/// and "back" when there is somewhere to go back to.
pub(super) fn compose<O: PageOut>(
    mut out: O,
    header: &Piece<'_>,
    labels: &[Piece<'_>],
    first: usize,
    nav: &Nav<'_>,
    page: usize,
    more: bool,
) -> O {
    out.put(header);
    for (i, l) in labels.iter().enumerate() {
        if !out.is_empty() {
            out.put_ascii("\n");
        }
        out.put_number(first + i);
        out.put_ascii(". ");
        out.put(l);
    }
    if more {
        out.put_ascii("\n");
        out.put(&nav.next);
    }
    if let Some(back) = &nav.back
        && (page > 0 || !back.text.is_empty())
    {
        out.put_ascii("\n");
        out.put(back);
    }
    out
}

/// Splits a long text into pages that fit with the "next" line, the last page carrying
/// `tail`: at line breaks where a whole line fits, else at word boundaries.
pub(super) fn text_pages(text: &str, tail: &str, next: &str, t: Target) -> Vec<String> {
    let whole = join(text, tail);
    if t.fits(&whole) {
        return vec![whole];
    }
    let mut pages = Vec::new();
    let mut current = String::new();
    let lines: Vec<&str> = text.split('\n').collect();
    for (i, line) in lines.iter().copied().enumerate() {
        // The last line ends the text: what follows it is the tail, not "next".
        let after = if i + 1 == lines.len() { tail } else { next };
        let candidate = join(&current, line);
        if t.fits(&join(&candidate, after)) {
            current = candidate;
            continue;
        }
        if !current.is_empty() {
            pages.push(join(&current, next));
            current.clear();
        }
        if t.fits(&join(line, after)) {
            current = line.to_owned();
            continue;
        }
        // A line too long for a page of its own: by words.
        for word in line.split(' ') {
            let candidate = if current.is_empty() { word.to_owned() } else { format!("{current} {word}") };
            if t.fits(&join(&candidate, next)) || current.is_empty() {
                current = candidate;
            } else {
                pages.push(join(&current, next));
                current = word.to_owned();
            }
        }
    }
    let last = join(&current, tail);
    if t.fits(&last) || tail.is_empty() {
        pages.push(last);
        return pages;
    }
    // The tail does not fit after the last words: move some of them to a page of their own
    // with it, rather than leave the tail alone on a page.
    for sep in ["\n", " "] {
        let parts: Vec<&str> = current.split(sep).collect();
        for k in 1..parts.len() {
            let (head, rest) = (parts[..parts.len() - k].join(sep), parts[parts.len() - k..].join(sep));
            if t.fits(&join(&head, next)) && t.fits(&join(&rest, tail)) {
                pages.push(join(&head, next));
                pages.push(join(&rest, tail));
                return pages;
            }
        }
    }
    pages.push(join(&current, next));
    pages.push(tail.to_owned());
    pages
}

pub(super) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_owned(),
        (true, false) => b.to_owned(),
        (false, false) => format!("{a}\n{b}"),
    }
}

/// For `menus check`: the fullest page of a screen with every placeholder at its budget
/// width; `None` for screens that show nothing. A choice of up to
/// [`NEVER_PAGED_OPTIONS`] options is shown whole (it must fit one page).
pub fn worst_case_page(menus: &Menus, s: &Screen, t: Target, back: bool) -> Option<String> {
    let budget = "x".repeat(PLACEHOLDER_BUDGET);
    let wide = |template: &str| fill_with(template, |_| Some(budget.as_str()));
    let lang = t.lang;
    let title = wide(s.title.get(lang));
    let back_line = if back { menus.message("back").get(lang) } else { "" };
    let nav = Nav::new(menus.message("next").get(lang), Some(back_line), t);
    match &s.kind {
        Kind::Switch { .. } => None,
        Kind::Choice { options } => {
            let header = Piece::new(title.as_str(), t);
            let labels: Vec<Piece<'_>> =
                options.iter().map(|o| Piece::new(wide(o.label.get(lang)), t)).collect();
            if labels.len() <= NEVER_PAGED_OPTIONS {
                return Some(compose(
                    String::with_capacity(200),
                    &header,
                    &labels,
                    1,
                    &nav,
                    usize::from(back),
                    false,
                ));
            }
            let pages = paginate(&header, &labels, &nav, t);
            pages
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let first = first_number(labels.len(), r.start);
                    compose(
                        String::with_capacity(200),
                        &header,
                        &labels[r.clone()],
                        first,
                        &nav,
                        i,
                        i + 1 < pages.len(),
                    )
                })
                .max_by_key(|p| crate::text::measure(p, true).1)
        }
        Kind::List { empty, .. } => {
            let one = [Piece::new(budget.repeat(2), t)];
            let page =
                compose(String::with_capacity(200), &Piece::new(title.as_str(), t), &one, 1, &nav, 1, true);
            let empty = wide(empty.get(lang));
            Some(if t.fits(&page) { empty } else { page })
        }
        Kind::Confirm { .. } => Some(join(&title, &yes_no(menus, lang))),
        Kind::Number { .. } | Kind::Input { .. } => {
            Some(join(&title, if back { menus.message("back_input").get(lang) } else { "" }))
        }
        // Texts to read page at word boundaries: the fullest page counts.
        Kind::Info | Kind::Final => {
            let tail = if matches!(s.kind, Kind::Info) { back_line } else { "" };
            text_pages(&title, tail, &join(menus.message("next").get(lang), tail), t)
                .into_iter()
                .max_by_key(|p| crate::text::measure(p, true).1)
        }
    }
}

/// The longest start of `title` (cut at a word, marked with "…") that fits with `tail`.
pub(super) fn cut_to_fit(title: &str, tail: &str, t: Target) -> String {
    let mut words: Vec<&str> = title.split(' ').collect();
    while words.len() > 1 {
        words.pop();
        let cut = format!("{}…", words.join(" "));
        if t.fits(&join(&cut, tail)) {
            return cut;
        }
    }
    let mut cut: String = title.to_owned();
    while !cut.is_empty() && !t.fits(&join(&format!("{cut}…"), tail)) {
        cut.pop();
    }
    format!("{cut}…")
}

/// Cuts a text (at a character boundary) until it fits; the last resort for one list entry
/// longer than a screen.
pub(super) fn truncate_to_fit(text: &str, t: Target) -> String {
    let mut s: String = text.to_owned();
    while !t.fits(&s) && !s.is_empty() {
        s.pop();
    }
    s
}
