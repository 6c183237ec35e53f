//! The all-or-nothing household import (`chogate households import FILE.csv`): every line
//! is checked, and either every household is written in one transaction or nothing is.
//!
//! Lines are checked twice: here, on their own ([`HouseholdLine::check`]: fields present,
//! MSISDN, names, language, yes/no flags), by the caller before anything is sent; then by
//! the writer against the database, inside the one savepoint that applies them (MSISDN
//! registered already, commune unknown, village with a leader already or without one). Any
//! line refused there rolls the whole savepoint back, so a file is never half imported.
//!
//! Leaders are applied first, so the households of their villages can join whatever the
//! order of the lines. A line with `pending = yes` is a self-registered household waiting
//! for its leader (its village is created pending if new); any other household must join a
//! village that has a team leader, in the database or in the file. This is what
//! `households export` writes, so an export imports back into an empty database.

use tokio::sync::watch;

use super::types::{Actor, IdemKey, Lang, MarketError, normalize_msisdn};
use super::writer::{Action, Done};
use super::{Market, clean_name, unexpected};

/// One line's raw fields, as read from the file (`None`: no such column, or a short line).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HouseholdFields {
    /// `msisdn`, any written form.
    pub msisdn: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `commune_code` (2025 list).
    pub commune_code: Option<String>,
    /// `village`.
    pub village: Option<String>,
    /// `language`: vi (default) or en.
    pub language: Option<String>,
    /// `leader`: yes/no/1/0 (default no).
    pub leader: Option<String>,
    /// `has_epay`: yes/no/1/0 (default no).
    pub has_epay: Option<String>,
    /// `pending`: yes/no/1/0 (default no): self-registered, not yet confirmed by a leader.
    pub pending: Option<String>,
}

/// A checked line, ready for [`Market::import_households`].
#[derive(Clone, PartialEq)]
pub struct HouseholdLine {
    /// Line number in the file (the header is line 1).
    pub line: u64,
    /// Normalised MSISDN (`84…`).
    pub msisdn: String,
    /// Name, whitespace collapsed.
    pub name: String,
    /// Commune code (2025 list); whether it exists is checked by the writer.
    pub commune_code: u32,
    /// Village name, whitespace collapsed.
    pub village: String,
    /// Menu and SMS language.
    pub language: Lang,
    /// Leads its village's team.
    pub leader: bool,
    /// Has an e-payment account.
    pub has_epay: bool,
    /// Self-registered, waiting for its leader.
    pub pending: bool,
}

impl std::fmt::Debug for HouseholdLine {
    // MSISDNs masked: lines may end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HouseholdLine")
            .field("line", &self.line)
            .field("msisdn", &crate::logging::mask_msisdn(&self.msisdn))
            .field("commune_code", &self.commune_code)
            .field("leader", &self.leader)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

/// A refused line and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineRejection {
    /// Line number in the file.
    pub line: u64,
    /// Why, for people: "already registered", "unknown commune code 9999", ...
    pub reason: String,
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportTotals {
    /// Households created (leaders included).
    pub households: u64,
    /// Of which team leaders (one team each).
    pub leaders: u64,
    /// Of which pending (self-registered, waiting for their leader).
    pub pending: u64,
    /// Of which with an e-payment account.
    pub with_epay: u64,
    /// Villages created.
    pub villages_created: u64,
}

/// How an import ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportResult {
    /// Every line was written, in one transaction.
    Imported(ImportTotals),
    /// Nothing was written: these lines were refused against the database (empty for a
    /// dry run that found nothing wrong).
    Rejected(Vec<LineRejection>),
    /// The key was used before: that import was applied then, nothing now.
    Replayed,
}

/// The writer's part: the lines, and where it reports progress and refusals.
pub(crate) struct ImportBatch {
    pub lines: Vec<HouseholdLine>,
    /// Write (true) or only check and roll back (false).
    pub commit: bool,
    /// Lines checked and written so far.
    pub progress: watch::Sender<ImportProgress>,
    /// The lines the database refused (set before the savepoint is rolled back).
    pub rejected: watch::Sender<Vec<LineRejection>>,
}

impl std::fmt::Debug for ImportBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportBatch").field("lines", &self.lines.len()).field("commit", &self.commit).finish()
    }
}

/// How far the writer is with an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportProgress {
    /// Lines checked against the database.
    pub checked: usize,
    /// Lines written (once every line passed).
    pub written: usize,
}

/// The field the writer's refusal names; [`Market::import_households`] turns it into
/// [`ImportResult::Rejected`].
pub(crate) const REJECTED_FIELD: &str = "import";

/// The line a CSV record starts on, counted in `text` (what the `csv` crate reads). Its own
/// count is off after a CRLF, which spreadsheets write: it places the record at the `\n` the
/// line before left, so that line is counted here, past blank lines too.
pub fn record_line(text: &[u8], record: &csv::StringRecord) -> u64 {
    let Some(at) = record.position().map(|p| p.byte() as usize) else { return 0 };
    let at = at.min(text.len());
    let start = text[at..].iter().position(|b| !matches!(b, b'\r' | b'\n')).map_or(text.len(), |i| at + i);
    1 + text[..start].iter().filter(|b| **b == b'\n').count() as u64
}

/// Parses a yes/no column: yes/no, 1/0, true/false, có/không (any case); empty is no.
pub fn parse_flag(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "" | "no" | "n" | "0" | "false" | "không" | "khong" => Some(false),
        "yes" | "y" | "1" | "true" | "có" | "co" => Some(true),
        _ => None,
    }
}

fn required<'a>(field: &'static str, v: &'a Option<String>) -> Result<&'a str, String> {
    match v.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("missing field {field}")),
    }
}

fn flag(field: &'static str, v: &Option<String>) -> Result<bool, String> {
    let s = v.as_deref().unwrap_or("");
    parse_flag(s).ok_or_else(|| format!("bad {field} {s:?}: use yes/no or 1/0"))
}

impl HouseholdLine {
    /// Checks one line on its own (not against the database): the four required fields
    /// present, the MSISDN a Vietnamese mobile number, names non-empty and at most 80
    /// characters, language vi or en, flags yes/no; a leader cannot be pending.
    pub fn check(line: u64, f: &HouseholdFields) -> Result<HouseholdLine, String> {
        let msisdn = required("msisdn", &f.msisdn)?;
        let name = required("name", &f.name)?;
        let commune = required("commune_code", &f.commune_code)?;
        let village = required("village", &f.village)?;
        let msisdn = normalize_msisdn(msisdn).map_err(|_| format!("bad MSISDN {msisdn:?}"))?;
        let name = clean_name("name", name).map_err(|e| e.to_string())?;
        let village = clean_name("village", village).map_err(|e| e.to_string())?;
        let commune_code =
            commune.parse::<u32>().map_err(|_| format!("bad commune code {commune:?}: not a number"))?;
        let language = match f.language.as_deref().map(str::trim) {
            None | Some("") => Lang::Vi,
            Some(s) => Lang::parse(s).ok_or_else(|| format!("bad language {s:?}: use vi or en"))?,
        };
        let leader = flag("leader", &f.leader)?;
        let has_epay = flag("has_epay", &f.has_epay)?;
        let pending = flag("pending", &f.pending)?;
        if leader && pending {
            return Err("a team leader cannot be pending".to_owned());
        }
        Ok(HouseholdLine { line, msisdn, name, commune_code, village, language, leader, has_epay, pending })
    }
}

impl Market {
    /// Imports households all or nothing, in one savepoint of one transaction: leaders
    /// first (each creates its village's team; the village is created if new), then the
    /// others. Every line is checked against the database first; if any is refused
    /// (registered already, unknown commune, village with a leader already, or without
    /// one), nothing is written and the refusals are returned. With `commit` false the
    /// lines are only checked, and nothing is written either way. `progress` counts the
    /// lines checked, then written. One audit event per household and per new village.
    ///
    /// The writer is busy for the whole import: other actions wait for it (on SQLite, so
    /// does a daemon using the same file, up to its `busy_timeout_ms`).
    pub async fn import_households(
        &self,
        actor: &Actor,
        key: IdemKey,
        lines: Vec<HouseholdLine>,
        commit: bool,
        progress: watch::Sender<ImportProgress>,
    ) -> Result<ImportResult, MarketError> {
        let (rejected, refused) = watch::channel(Vec::new());
        let batch = ImportBatch { lines, commit, progress, rejected };
        match self.act(actor, key, Action::ImportHouseholds(batch)).await {
            Ok(Done::Imported(totals)) => Ok(ImportResult::Imported(totals)),
            Ok(Done::Nothing) => Ok(ImportResult::Replayed),
            Ok(other) => Err(unexpected(other)),
            Err(MarketError::Invalid { field: REJECTED_FIELD, .. }) => {
                let mut lines = refused.borrow().clone();
                lines.sort();
                Ok(ImportResult::Rejected(lines))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lines_should_be_right_after_crlf_blank_lines_and_quoted_breaks() {
        let text = b"a,b\r\n\"x, y\",z\r\n\r\n1,\n\"multi\nline\",z\n";
        let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&text[..]);
        let lines: Vec<u64> = reader.records().map(|r| record_line(text, &r.unwrap())).collect();
        assert_eq!(lines, vec![1, 2, 4, 5]);
    }

    fn fields(msisdn: &str, name: &str, commune: &str, village: &str) -> HouseholdFields {
        HouseholdFields {
            msisdn: Some(msisdn.into()),
            name: Some(name.into()),
            commune_code: Some(commune.into()),
            village: Some(village.into()),
            ..HouseholdFields::default()
        }
    }

    #[test]
    fn a_good_line_should_be_normalised() {
        let mut f = fields(" 0912 345 678 ", "  Hoàng  Văn A ", "6463", "Bản  Chu");
        f.language = Some("EN".into());
        f.leader = Some("Có".into());
        f.has_epay = Some("1".into());
        let l = HouseholdLine::check(7, &f).unwrap();
        assert_eq!(
            (l.line, l.msisdn.as_str(), l.name.as_str(), l.commune_code, l.village.as_str()),
            (7, "84912345678", "Hoàng Văn A", 6463, "Bản Chu")
        );
        assert_eq!((l.language, l.leader, l.has_epay, l.pending), (Lang::En, true, true, false));
    }

    #[test]
    fn each_bad_field_should_be_named() {
        let ok = fields("0912345678", "A", "6463", "V");
        let cases: Vec<(HouseholdFields, &str)> = vec![
            (HouseholdFields { msisdn: None, ..ok.clone() }, "missing field msisdn"),
            (HouseholdFields { name: Some("  ".into()), ..ok.clone() }, "missing field name"),
            (HouseholdFields { village: None, ..ok.clone() }, "missing field village"),
            (HouseholdFields { msisdn: Some("12345".into()), ..ok.clone() }, "bad MSISDN"),
            (HouseholdFields { commune_code: Some("Chi Lăng".into()), ..ok.clone() }, "bad commune code"),
            (HouseholdFields { language: Some("fr".into()), ..ok.clone() }, "bad language"),
            (HouseholdFields { leader: Some("maybe".into()), ..ok.clone() }, "bad leader"),
            (HouseholdFields { name: Some("x".repeat(81)), ..ok.clone() }, "at most 80"),
            (
                HouseholdFields { leader: Some("yes".into()), pending: Some("yes".into()), ..ok.clone() },
                "cannot be pending",
            ),
        ];
        for (f, want) in cases {
            let err = HouseholdLine::check(2, &f).unwrap_err();
            assert!(err.contains(want), "{f:?}: {err}");
        }
    }

    #[test]
    fn flags_should_accept_english_vietnamese_and_digits() {
        for s in ["yes", "Y", "1", "true", "có", "CO"] {
            assert_eq!(parse_flag(s), Some(true), "{s}");
        }
        for s in ["", " no ", "0", "FALSE", "không"] {
            assert_eq!(parse_flag(s), Some(false), "{s}");
        }
        assert_eq!(parse_flag("2"), None);
    }

    #[test]
    fn debug_output_should_mask_the_msisdn() {
        let l = HouseholdLine::check(2, &fields("0912345678", "A", "6463", "V")).unwrap();
        let s = format!("{l:?}");
        assert!(!s.contains("84912345678"), "{s}");
    }
}
