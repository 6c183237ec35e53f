//! `households import FILE.csv` and `households export`.
//!
//! The file is CSV with a header row: `msisdn,name,commune_code,village` and optionally
//! `language` (vi | en), `leader`, `has_epay`, `pending` (yes/no, 1/0). Columns in any
//! order, names in any case; a UTF-8 byte-order mark (spreadsheet exports) is skipped.
//! Parsed with the `csv` crate: fields may be quoted, with commas, quotes (`""`) and line
//! breaks inside.
//!
//! Every line is checked on its own here, then against the database by the writer, and
//! the lines are written in one transaction only if none was refused: a file is never half
//! imported. See [`crate::market::household_import`].

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::ManageError;
use crate::args;
use crate::market::household_import::{
    HouseholdFields, HouseholdLine, ImportProgress, ImportResult, ImportTotals, LineRejection,
};
use crate::market::{Actor, Channel, IdemKey, Market, MarketError};
use crate::store::StoreError;

/// The columns, in the order `export` writes them.
pub const COLUMNS: [&str; 8] =
    ["msisdn", "name", "commune_code", "village", "language", "leader", "has_epay", "pending"];
const REQUIRED: usize = 4;

/// How often the progress line is redrawn, at most.
const REDRAW: Duration = Duration::from_millis(100);

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportOutcome {
    /// Every line written.
    Imported(ImportTotals),
    /// The file had no line after its header.
    Empty,
    /// The same import had been applied before (a retry after an unclear failure).
    Replayed,
}

/// The CSV's column positions.
struct Columns {
    index: [Option<usize>; 8],
    count: usize,
}

fn columns(path: &str, header: &csv::StringRecord) -> Result<Columns, ManageError> {
    let bad = |reason: String| ManageError::Header { path: path.to_owned(), reason };
    let mut index = [None; 8];
    for (i, name) in header.iter().enumerate() {
        let name = name.trim().to_lowercase();
        let Some(c) = COLUMNS.iter().position(|k| *k == name) else {
            return Err(bad(format!(
                "unknown column {name:?} in the header (columns: {}; the first four are required)",
                COLUMNS.join(",")
            )));
        };
        if index[c].replace(i).is_some() {
            return Err(bad(format!("column {name:?} appears twice in the header")));
        }
    }
    if let Some(missing) = (0..REQUIRED).find(|c| index[*c].is_none()) {
        return Err(bad(format!(
            "the header has no column {:?} (a header row `{}` is required)",
            COLUMNS[missing],
            COLUMNS[..REQUIRED].join(",")
        )));
    }
    Ok(Columns { index, count: header.len() })
}

fn fields(cols: &Columns, record: &csv::StringRecord) -> HouseholdFields {
    let get = |c: usize| cols.index[c].and_then(|i| record.get(i)).map(str::to_owned);
    HouseholdFields {
        msisdn: get(0),
        name: get(1),
        commune_code: get(2),
        village: get(3),
        language: get(4),
        leader: get(5),
        has_epay: get(6),
        pending: get(7),
    }
}

/// The lines read and checked on their own, and the refused ones.
struct Parsed {
    lines: Vec<HouseholdLine>,
    refused: Vec<LineRejection>,
    read: usize,
}

fn parse(path: &str, bytes: &[u8]) -> Result<Parsed, ManageError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header =
        reader.headers().map_err(|e| ManageError::Header { path: path.to_owned(), reason: e.to_string() })?;
    let cols = columns(path, header)?;
    let mut parsed = Parsed { lines: Vec::new(), refused: Vec::new(), read: 0 };
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                parsed.read += 1;
                let line = e.position().map_or(line, |p| p.line());
                let reason = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "not valid UTF-8 text (save the file as UTF-8)".to_owned(),
                    _ => format!("unreadable: {e}"),
                };
                parsed.refused.push(LineRejection { line, reason });
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    break;
                }
                continue;
            }
        }
        parsed.read += 1;
        let line = match record.position() {
            Some(_) => crate::market::household_import::record_line(bytes, &record),
            None => line,
        };
        if record.len() > cols.count {
            parsed.refused.push(LineRejection {
                line,
                reason: format!("{} fields, the header has {}", record.len(), cols.count),
            });
            continue;
        }
        match HouseholdLine::check(line, &fields(&cols, &record)) {
            Err(reason) => parsed.refused.push(LineRejection { line, reason }),
            Ok(l) => match seen.get(&l.msisdn) {
                Some(first) => parsed.refused.push(LineRejection {
                    line,
                    reason: format!("duplicate in file: same MSISDN as line {first}"),
                }),
                None => {
                    seen.insert(l.msisdn.clone(), line);
                    parsed.lines.push(l);
                }
            },
        }
    }
    Ok(parsed)
}

/// Draws `checked n/N, written n/N` on a terminal, redrawn in place.
async fn draw_progress(
    mut rx: watch::Receiver<ImportProgress>,
    total: usize,
    mut err: Box<dyn Write + Send>,
) {
    let mut draw = |p: ImportProgress| {
        let _ = write!(err, "\rchecked {}/{total}, written {}/{total}", p.checked, p.written);
        let _ = err.flush();
    };
    let mut last = Instant::now();
    draw(ImportProgress::default());
    while rx.changed().await.is_ok() {
        let p = *rx.borrow_and_update();
        if last.elapsed() >= REDRAW {
            last = Instant::now();
            draw(p);
        }
    }
    // Every sender is gone: the import is over.
    draw(*rx.borrow());
}

/// Imports the households of a CSV file, all or nothing. Refused lines are written to
/// `report` as `FILE:LINE: reason` (then the error is [`ManageError::Rejected`], and nothing
/// was written); with `progress`, a progress line is drawn on standard error.
pub async fn import_households(
    market: &Market,
    path: &Path,
    out: &mut dyn Write,
    report: &mut dyn Write,
    progress: bool,
) -> Result<ImportOutcome, ManageError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ManageError::Read { path: shown.clone(), source })?;
    let Parsed { lines, mut refused, read } = parse(&shown, &bytes)?;
    if read == 0 {
        writeln!(out, "{shown}: no lines after the header; nothing to import")?;
        return Ok(ImportOutcome::Empty);
    }
    let total = lines.len();
    let commit = refused.is_empty();
    let (tx, rx) = watch::channel(ImportProgress::default());
    let drawer = (progress && std::io::stderr().is_terminal())
        .then(|| tokio::spawn(draw_progress(rx, total, Box::new(std::io::stderr()))));
    let actor = Actor::new("cli", Channel::Cli);
    let key = IdemKey(format!("cli:import:{}:{}", std::process::id(), crate::time::now_ms()));
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        match market.import_households(&actor, key.clone(), lines.clone(), commit, tx.clone()).await {
            // The whole transaction failed (a deadlock with another node, say): the key
            // makes the repeat safe.
            Err(MarketError::Store(StoreError::TransactionFailed(_))) if attempts < 3 => continue,
            other => break other,
        }
    };
    drop(tx);
    if let Some(drawer) = drawer {
        let _ = drawer.await;
        eprintln!();
    }
    match result? {
        ImportResult::Imported(t) => {
            writeln!(
                out,
                "{shown}: imported {} households ({} team leaders, {} pending, {} with e-payment), {} new villages",
                t.households, t.leaders, t.pending, t.with_epay, t.villages_created
            )?;
            Ok(ImportOutcome::Imported(t))
        }
        ImportResult::Replayed => {
            writeln!(out, "{shown}: this import had been applied already")?;
            Ok(ImportOutcome::Replayed)
        }
        ImportResult::Rejected(db) => {
            refused.extend(db);
            refused.sort();
            for r in &refused {
                writeln!(report, "{shown}:{}: {}", r.line, r.reason)?;
            }
            Err(ManageError::Rejected { path: shown, rejected: refused.len(), lines: read })
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Writes every household as CSV (the columns of [`COLUMNS`]), leaders first, then by id:
/// a file `import` takes back into an empty database. Returns the number of households.
pub async fn export_households(market: &Market, out: &mut dyn Write) -> Result<usize, ManageError> {
    let rows = {
        let mut r = market.store().read().await?;
        r.conn()
            .fetch_all(
                "SELECT h.msisdn, h.name, v.commune_code, v.name AS village, h.language, \
                 EXISTS (SELECT 1 FROM teams t WHERE t.leader_household_id = h.id) AS leader, \
                 h.has_epay, h.pending \
                 FROM households h JOIN villages v ON v.id = h.village_id \
                 ORDER BY leader DESC, h.id",
                args![],
            )
            .await?
    };
    let mut w = csv::Writer::from_writer(out);
    w.write_record(COLUMNS)?;
    let cell = |s: String| crate::text::csv_cell(&s).into_owned();
    for row in &rows {
        w.write_record([
            cell(row.text("msisdn")?),
            cell(row.text("name")?),
            row.int("commune_code")?.to_string(),
            cell(row.text("village")?),
            cell(row.text("language")?),
            yes_no(row.flag("leader")?).to_owned(),
            yes_no(row.flag("has_epay")?).to_owned(),
            yes_no(row.flag("pending")?).to_owned(),
        ])?;
    }
    w.flush()?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Parsed, ManageError> {
        parse("f.csv", s.as_bytes())
    }

    #[test]
    fn quoted_fields_and_a_bom_should_be_read() {
        let p = parse_str(
            "\u{feff}MSISDN,Name,commune_code,village,leader\n\
             0912345678,\"Hoàng Văn \"\"Ba\"\", Jr\",6463,\"Bản Chu, trên\",yes\n",
        )
        .unwrap();
        assert!(p.refused.is_empty(), "{:?}", p.refused);
        assert_eq!(p.lines.len(), 1);
        assert_eq!(p.lines[0].name, "Hoàng Văn \"Ba\", Jr");
        assert_eq!(p.lines[0].village, "Bản Chu, trên");
        assert_eq!(p.lines[0].line, 2);
        assert!(p.lines[0].leader);
    }

    #[test]
    fn bad_lines_should_be_reported_with_their_line_numbers() {
        let p = parse_str(
            "msisdn,name,commune_code,village,language\n\
             0912345678,A,6463,V,vi\n\
             12345,B,6463,V,vi\n\
             0912345679,C,6463\n\
             +84 912 345 678,D,6463,V,\n\
             0912345680,E,6463,V,fr\n\
             0912345681,F,6463,V,vi,extra\n",
        )
        .unwrap();
        let got: Vec<(u64, &str)> = p.refused.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(got[0].0 == 3 && got[0].1.contains("bad MSISDN"), "{got:?}");
        assert!(got[1].0 == 4 && got[1].1.contains("missing field village"), "{got:?}");
        assert!(got[2].0 == 5 && got[2].1.contains("duplicate in file: same MSISDN as line 2"), "{got:?}");
        assert!(got[3].0 == 6 && got[3].1.contains("bad language"), "{got:?}");
        assert!(got[4].0 == 7 && got[4].1.contains("6 fields"), "{got:?}");
        assert_eq!(p.read, 6);
    }

    #[test]
    fn a_quoted_line_break_should_keep_the_next_line_numbers_right() {
        let p =
            parse_str("msisdn,name,commune_code,village\n0912345678,\"A\nB\",6463,V\n12,C,6463,V\n").unwrap();
        assert_eq!(p.refused.len(), 1);
        assert_eq!(p.refused[0].line, 4);
    }

    #[test]
    fn invalid_utf8_should_refuse_that_line_only() {
        let mut bytes = b"msisdn,name,commune_code,village\n0912345678,A,6463,V\n0912345679,".to_vec();
        bytes.extend_from_slice(b"\xff\xfe,6463,V\n0912345670,C,6463,V\n");
        let p = parse("f.csv", &bytes).unwrap();
        assert_eq!(p.refused.len(), 1, "{:?}", p.refused);
        assert_eq!(p.refused[0].line, 3);
        assert_eq!(p.lines.len(), 2);
    }

    #[test]
    fn a_bad_header_should_be_refused_whole() {
        for (csv, want) in [
            ("msisdn,name,commune_code\n", "no column \"village\""),
            ("msisdn,name,commune_code,village,age\n", "unknown column \"age\""),
            ("msisdn,name,commune_code,village,name\n", "appears twice"),
            ("0912345678,A,6463,V\n", "unknown column"),
        ] {
            let Err(ManageError::Header { reason, .. }) = parse_str(csv) else {
                panic!("{csv}: accepted");
            };
            assert!(reason.contains(want), "{csv}: {reason}");
        }
    }
}
