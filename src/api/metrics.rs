//! `/metrics`: the process-wide counters ([`crate::metrics`], the SMPP layer's PDU counts)
//! and what is read at scrape time (outbox depth, writer counters, binds), in the text
//! exposition format.

use std::fmt::Write as _;

use crate::metrics::{header, label};

/// What is read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// SMS in the outbox per status (None: the database did not answer).
    pub outbox: Option<Vec<(String, i64)>>,
    /// The writer's counters.
    pub writer: crate::market::WriterCounters,
    /// Bound SMPP sessions per label.
    pub binds: Vec<(String, usize)>,
}

/// The whole exposition.
pub fn render(scrape: &Scrape) -> String {
    let mut out = String::with_capacity(8192);
    crate::metrics::render(&mut out);
    crate::smpp::counters::render(&mut out);
    header(&mut out, "chogate_smpp_binds", "gauge", "Bound SMPP sessions per peer.");
    for (name, n) in &scrape.binds {
        let _ = writeln!(out, "chogate_smpp_binds{{peer=\"{}\"}} {n}", label(name));
    }
    header(&mut out, "chogate_outbox_messages", "gauge", "SMS in the outbox, by status.");
    if let Some(outbox) = &scrape.outbox {
        let mut rows: Vec<(String, i64)> = ["queued", "sent", "delivered", "failed", "expired"]
            .iter()
            .map(|s| ((*s).to_owned(), 0))
            .collect();
        for (status, n) in outbox {
            match rows.iter_mut().find(|(s, _)| s == status) {
                Some(row) => row.1 = *n,
                None => rows.push((status.clone(), *n)),
            }
        }
        for (status, n) in rows {
            let _ = writeln!(out, "chogate_outbox_messages{{status=\"{}\"}} {n}", label(&status));
        }
    }
    let w = &scrape.writer;
    for (name, help, v) in [
        ("chogate_db_commits_total", "Group transactions committed.", w.commits),
        ("chogate_db_actions_total", "Actions answered from committed groups.", w.actions),
        ("chogate_db_events_total", "Audit events written.", w.events),
        ("chogate_db_failed_groups_total", "Groups that failed as a whole.", w.failed_groups),
        (
            "chogate_db_dropped_events_total",
            "Dialogue events dropped on a full write queue.",
            w.dropped_events,
        ),
    ] {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_should_hold_the_counters_and_the_scrape() {
        let text = render(&Scrape { outbox: Some(vec![("queued".into(), 3)]), ..Scrape::default() });
        assert!(text.contains(r#"chogate_outbox_messages{status="queued"} 3"#));
        assert!(text.contains(r#"chogate_outbox_messages{status="failed"} 0"#));
        assert!(text.contains("# TYPE chogate_ussd_dialogues_total counter"));
        assert!(text.contains("# TYPE chogate_smpp_pdus_total counter"));
        assert!(text.contains("chogate_db_commits_total 0"));
    }
}
