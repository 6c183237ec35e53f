//! The outbox's bookkeeping, run by the group-commit writer: claiming due messages with a
//! lease, recording send outcomes, matching delivery receipts to the parts they report on.
//!
//! Everything is batched: one statement updates many rows (`WITH v(...) AS (VALUES ...)
//! UPDATE ... FROM v`), because on SQLite each statement costs a thread hand-off.

use std::collections::HashMap;

use super::types::Lang;
use crate::args;
use crate::store::{Arg, Backend, ColType, Conn, StoreError};

/// Rows per statement (SQLite allows 32766 bound values).
const CHUNK: usize = 512;

/// A receipt that matched no sent part is kept this long for its part to be recorded (it
/// comes before the `submit_sm_resp` is recorded, by milliseconds to seconds); the sweep
/// drops older ones, so that receipts for messages that are not ours cannot pile up.
pub const PENDING_RECEIPT_MS: i64 = 3_600_000;

/// A message claimed for sending.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// Its id.
    pub id: i64,
    /// Destination, normalised (84…).
    pub msisdn: String,
    /// The text.
    pub text: String,
    /// The household's language.
    pub lang: Lang,
    /// What it tells (order_new, keyword_reply, …).
    pub kind: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When it was queued.
    pub created_at_ms: i64,
    /// After this it is never sent.
    pub expires_at_ms: i64,
}

/// What became of one send attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxOutcome {
    /// Every part accepted by the SMSC; canonical part ids in order.
    Sent {
        /// The message.
        id: i64,
        /// The SMSC it went to.
        smsc: String,
        /// Canonical ids of its parts (see `notify::receipt::canonical`).
        part_ids: Vec<String>,
        /// Attempts so far, this one included.
        attempts: u32,
        /// When.
        at_ms: i64,
    },
    /// Try again later.
    Retry {
        /// The message.
        id: i64,
        /// Attempts so far.
        attempts: u32,
        /// When it is due again.
        next_at_ms: i64,
        /// Why this attempt failed.
        error: String,
    },
    /// Given up.
    Failed {
        /// The message.
        id: i64,
        /// Attempts made.
        attempts: u32,
        /// Why.
        error: String,
    },
    /// Past its validity: never sent.
    Expired {
        /// The message.
        id: i64,
    },
    /// Claimed but not attempted (shutdown): due again at once.
    Release {
        /// The message.
        id: i64,
    },
}

/// A delivery receipt to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptUpdate {
    /// The id in the form the SMSC's `submit_sm_resp` gave it (canonical; see
    /// `notify::receipt::response_form`): a match is exact, never a guess.
    pub message_id: String,
    /// Delivered, or failed for good.
    pub delivered: bool,
    /// The SMSC's state word.
    pub state: String,
    /// When it arrived.
    pub at_ms: i64,
}

/// One message's status, for the API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessageStatus {
    /// Its id.
    pub id: i64,
    /// What it tells.
    pub kind: String,
    /// queued, sent, delivered, failed or expired.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// Queued at.
    pub created_at_ms: i64,
    /// Accepted by the SMSC at.
    pub sent_at_ms: Option<i64>,
    /// Delivered, failed or expired at.
    pub done_at_ms: Option<i64>,
    /// Never sent after this.
    pub expires_at_ms: i64,
    /// The last error.
    pub last_error: Option<String>,
    /// The SMSC that took it.
    pub smsc: Option<String>,
    /// Parts sent.
    pub parts: i64,
}

/// Work for the writer.
#[derive(Debug)]
pub(crate) enum OutboxOp {
    /// `sweep`: also drop receipts kept unmatched for [`PENDING_RECEIPT_MS`], and mark
    /// expired every queued message past its validity, due or not (a
    /// scan of the queue: the notifier asks for it now and then, not at every claim).
    Claim {
        limit: usize,
        lease_ms: i64,
        sweep: bool,
    },
    Record(Vec<OutboxOutcome>),
    Receipts(Vec<(String, ReceiptUpdate)>),
    /// Not the outbox's, but bookkeeping of the same kind (no audit event, through the one
    /// writer): at most `batch` idempotency keys and as many API request records written
    /// before `before_ms` are deleted.
    Prune {
        before_ms: i64,
        batch: i64,
    },
}

/// The writer's answer.
#[derive(Debug)]
pub(crate) enum OutboxReply {
    Claimed(Vec<OutboxMessage>),
    Recorded,
    Receipts { unmatched: usize },
    Pruned { keys: u64, requests: u64 },
}

pub(crate) async fn apply(c: &mut Conn<'_>, op: OutboxOp, now: i64) -> Result<OutboxReply, StoreError> {
    match op {
        OutboxOp::Claim { limit, lease_ms, sweep } => {
            claim(c, limit, lease_ms, sweep, now).await.map(OutboxReply::Claimed)
        }
        OutboxOp::Record(outcomes) => record(c, outcomes, now).await.map(|()| OutboxReply::Recorded),
        OutboxOp::Receipts(list) => {
            receipts(c, list).await.map(|unmatched| OutboxReply::Receipts { unmatched })
        }
        OutboxOp::Prune { before_ms, batch } => prune(c, before_ms, batch).await,
    }
}

fn cast(backend: Backend, t: ColType) -> &'static str {
    match (backend, t) {
        (Backend::Postgres, ColType::Int) => "::bigint",
        (Backend::Postgres, _) => "::text",
        (Backend::Sqlite, _) => "",
    }
}

/// Runs `update` (which refers to the rows as `v`) over `rows`, a chunk at a time:
/// `WITH v(cols) AS (VALUES ...) <update>`.
async fn update_values(
    c: &mut Conn<'_>,
    cols: &[(&str, ColType)],
    rows: Vec<Vec<Arg>>,
    update: &str,
) -> Result<u64, StoreError> {
    let backend = c.backend();
    let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
    let mut changed = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut chunk: Vec<Vec<Arg>> = rows.by_ref().take(CHUNK).collect();
        crate::store::pad(&mut chunk);
        let mut sql = format!("WITH v({}) AS (VALUES ", names.join(", "));
        let mut n = 0;
        for (i, _) in chunk.iter().enumerate() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for (j, (_, t)) in cols.iter().enumerate() {
                n += 1;
                if j > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${n}{}", cast(backend, *t)));
            }
            sql.push(')');
        }
        sql.push_str(") ");
        sql.push_str(update);
        // Audited: static column names, numbered placeholders and casts; values are bound.
        changed += c.execute(crate::store::built_sql(sql), chunk.into_iter().flatten().collect()).await?;
    }
    Ok(changed)
}

/// One batch of the retention pruning. PostgreSQL: rows another node is pruning meanwhile
/// are skipped, not waited for.
async fn prune(c: &mut Conn<'_>, before_ms: i64, batch: i64) -> Result<OutboxReply, StoreError> {
    let (keys, requests) = match c.backend() {
        Backend::Postgres => (
            "DELETE FROM idempotency_keys WHERE idem_key IN (SELECT idem_key FROM idempotency_keys \
             WHERE at_ms < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            "DELETE FROM api_requests WHERE id IN (SELECT id FROM api_requests \
             WHERE created_at_ms < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        ),
        Backend::Sqlite => (
            "DELETE FROM idempotency_keys WHERE idem_key IN (SELECT idem_key FROM idempotency_keys \
             WHERE at_ms < $1 LIMIT $2)",
            "DELETE FROM api_requests WHERE id IN (SELECT id FROM api_requests \
             WHERE created_at_ms < $1 LIMIT $2)",
        ),
    };
    let keys = c.execute(keys, args![before_ms, batch]).await?;
    let requests = c.execute(requests, args![before_ms, batch]).await?;
    Ok(OutboxReply::Pruned { keys, requests })
}

async fn claim(
    c: &mut Conn<'_>,
    limit: usize,
    lease_ms: i64,
    sweep: bool,
    now: i64,
) -> Result<Vec<OutboxMessage>, StoreError> {
    if sweep {
        c.execute(
            "UPDATE outbox SET status = 'expired', done_at_ms = $1 WHERE status = 'queued' AND expires_at_ms <= $1",
            args![now],
        )
        .await?;
        c.execute("DELETE FROM receipts_pending WHERE at_ms <= $1", args![now - PENDING_RECEIPT_MS]).await?;
    }
    let lock = match c.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT id, msisdn, text, lang, kind, attempts, created_at_ms, expires_at_ms FROM outbox \
         WHERE status = 'queued' AND next_attempt_at_ms <= $1 ORDER BY next_attempt_at_ms, id LIMIT $2{lock}"
    );
    let rows = c.fetch_all(crate::store::built_sql(sql), args![now, limit as i64]).await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut expired = Vec::new();
    for r in rows {
        if r.int("expires_at_ms")? <= now {
            // Past its validity: never sent.
            expired.push(vec![Arg::Int(r.int("id")?), Arg::Int(now)]);
            continue;
        }
        let lang_text = r.text("lang")?;
        let lang = Lang::parse(&lang_text)
            .ok_or_else(|| StoreError::Corrupt { column: "outbox.lang", value: lang_text.clone() })?;
        out.push(OutboxMessage {
            id: r.int("id")?,
            msisdn: r.text("msisdn")?,
            text: r.text("text")?,
            lang,
            kind: r.text("kind")?,
            attempts: u32::try_from(r.int("attempts")?).unwrap_or(u32::MAX),
            created_at_ms: r.int("created_at_ms")?,
            expires_at_ms: r.int("expires_at_ms")?,
        });
    }
    update_values(
        c,
        &[("id", ColType::Int), ("at", ColType::Int)],
        expired,
        "UPDATE outbox SET status = 'expired', done_at_ms = v.at FROM v WHERE outbox.id = v.id",
    )
    .await?;
    // The lease: ours until then; due again afterwards if we never record an outcome.
    let rows: Vec<Vec<Arg>> = out.iter().map(|m| vec![Arg::Int(m.id), Arg::Int(now + lease_ms)]).collect();
    update_values(
        c,
        &[("id", ColType::Int), ("due", ColType::Int)],
        rows,
        "UPDATE outbox SET next_attempt_at_ms = v.due FROM v WHERE outbox.id = v.id",
    )
    .await?;
    Ok(out)
}

async fn record(c: &mut Conn<'_>, outcomes: Vec<OutboxOutcome>, now: i64) -> Result<(), StoreError> {
    let (mut sent, mut retry, mut failed, mut done, mut release) = (vec![], vec![], vec![], vec![], vec![]);
    let mut parts = Vec::new();
    for o in outcomes {
        match o {
            OutboxOutcome::Sent { id, smsc, part_ids, attempts, at_ms } => {
                let first = part_ids.first().cloned().unwrap_or_default();
                sent.push(vec![
                    Arg::Int(id),
                    Arg::Text(smsc.clone()),
                    Arg::Text(first),
                    attempts.into_arg(),
                    Arg::Int(at_ms),
                ]);
                for (i, mid) in part_ids.into_iter().enumerate() {
                    parts.push((id, i as i64, smsc.clone(), mid));
                }
            }
            OutboxOutcome::Retry { id, attempts, next_at_ms, error } => {
                retry.push(vec![Arg::Int(id), attempts.into_arg(), Arg::Int(next_at_ms), Arg::Text(error)]);
            }
            OutboxOutcome::Failed { id, attempts, error } => {
                failed.push(vec![Arg::Int(id), attempts.into_arg(), Arg::Text(error), Arg::Int(now)]);
            }
            OutboxOutcome::Expired { id } => done.push(vec![Arg::Int(id), Arg::Int(now)]),
            OutboxOutcome::Release { id } => release.push(vec![Arg::Int(id), Arg::Int(now)]),
        }
    }
    use ColType::{Int, Text};
    update_values(
        c,
        &[("id", Int), ("smsc", Text), ("mid", Text), ("att", Int), ("at", Int)],
        sent,
        "UPDATE outbox SET status = 'sent', smsc = v.smsc, smsc_message_id = v.mid, attempts = v.att, \
         sent_at_ms = v.at, last_error = NULL FROM v WHERE outbox.id = v.id AND outbox.status = 'queued'",
    )
    .await?;
    update_values(
        c,
        &[("id", Int), ("att", Int), ("due", Int), ("err", Text)],
        retry,
        "UPDATE outbox SET attempts = v.att, next_attempt_at_ms = v.due, last_error = v.err \
         FROM v WHERE outbox.id = v.id AND outbox.status = 'queued'",
    )
    .await?;
    update_values(
        c,
        &[("id", Int), ("att", Int), ("err", Text), ("at", Int)],
        failed,
        "UPDATE outbox SET status = 'failed', attempts = v.att, last_error = v.err, done_at_ms = v.at \
         FROM v WHERE outbox.id = v.id AND outbox.status = 'queued'",
    )
    .await?;
    update_values(
        c,
        &[("id", Int), ("at", Int)],
        done,
        "UPDATE outbox SET status = 'expired', done_at_ms = v.at FROM v WHERE outbox.id = v.id AND outbox.status = 'queued'",
    )
    .await?;
    update_values(
        c,
        &[("id", Int), ("at", Int)],
        release,
        "UPDATE outbox SET next_attempt_at_ms = v.at FROM v WHERE outbox.id = v.id AND outbox.status = 'queued'",
    )
    .await?;
    if parts.is_empty() {
        return Ok(());
    }
    const PART_COLUMNS: &[(&str, ColType)] = &[
        ("outbox_id", ColType::Int),
        ("part", ColType::Int),
        ("smsc", ColType::Text),
        ("message_id", ColType::Text),
    ];
    let rows = parts
        .iter()
        .map(|(id, i, smsc, mid)| {
            vec![Arg::Int(*id), Arg::Int(*i), Arg::Text(smsc.clone()), Arg::Text(mid.clone())]
        })
        .collect();
    c.insert_rows("outbox_parts", PART_COLUMNS, rows, true).await?;
    apply_pending(c, &parts).await
}

trait IntoArg {
    fn into_arg(self) -> Arg;
}

impl IntoArg for u32 {
    fn into_arg(self) -> Arg {
        Arg::Int(i64::from(self))
    }
}

/// A receipt matched to a part.
struct Hit {
    outbox_id: i64,
    part: i64,
    delivered: bool,
    state: String,
    at_ms: i64,
}

/// Receipts that came before these parts were recorded.
async fn apply_pending(c: &mut Conn<'_>, parts: &[(i64, i64, String, String)]) -> Result<(), StoreError> {
    let by_id: HashMap<(&str, &str), (i64, i64)> =
        parts.iter().map(|(id, i, smsc, mid)| ((smsc.as_str(), mid.as_str()), (*id, *i))).collect();
    let mut hits = Vec::new();
    let mut applied = Vec::new();
    let rows = c.fetch_in(
        |list| {
            format!("SELECT id, smsc, message_id, delivered, state, at_ms FROM receipts_pending WHERE message_id IN ({list})")
        },
        parts.iter().map(|p| Arg::Text(p.3.clone())).collect(),
    )
    .await?;
    for r in rows {
        let (smsc, mid) = (r.text("smsc")?, r.text("message_id")?);
        if let Some(&(outbox_id, part)) = by_id.get(&(smsc.as_str(), mid.as_str())) {
            applied.push(vec![Arg::Int(r.int("id")?)]);
            hits.push(Hit {
                outbox_id,
                part,
                delivered: r.int("delivered")? != 0,
                state: r.text("state")?,
                at_ms: r.int("at_ms")?,
            });
        }
    }
    if hits.is_empty() {
        return Ok(());
    }
    apply_hits(c, hits).await?;
    update_values(
        c,
        &[("id", ColType::Int)],
        applied,
        "DELETE FROM receipts_pending WHERE id IN (SELECT id FROM v)",
    )
    .await?;
    Ok(())
}

/// Marks parts delivered or failed, then each message: failed when a part failed,
/// delivered when every part is.
async fn apply_hits(c: &mut Conn<'_>, hits: Vec<Hit>) -> Result<(), StoreError> {
    use ColType::{Int, Text};
    let mut ids: Vec<i64> = hits.iter().map(|h| h.outbox_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let at = hits.iter().map(|h| h.at_ms).max().unwrap_or(0);
    let rows = hits
        .into_iter()
        .map(|h| {
            let status = if h.delivered { "delivered" } else { "failed" };
            vec![
                Arg::Int(h.outbox_id),
                Arg::Int(h.part),
                Arg::Text(status.into()),
                Arg::Text(h.state),
                Arg::Int(h.at_ms),
            ]
        })
        .collect();
    update_values(
        c,
        &[("oid", Int), ("part", Int), ("status", Text), ("state", Text), ("at", Int)],
        rows,
        "UPDATE outbox_parts SET status = v.status, state = v.state, done_at_ms = v.at FROM v \
         WHERE outbox_parts.outbox_id = v.oid AND outbox_parts.part = v.part AND outbox_parts.status = 'sent'",
    )
    .await?;
    let mut finished = Vec::new();
    let counts = c
        .fetch_in(
            |list| {
                format!(
                    "SELECT outbox_id, COUNT(*) AS n, \
                 SUM(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END) AS d, \
                 SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS f \
                 FROM outbox_parts WHERE outbox_id IN ({list}) GROUP BY outbox_id"
                )
            },
            ids.iter().map(|id| Arg::Int(*id)).collect(),
        )
        .await?;
    for r in counts {
        let (n, d, f) = (r.int("n")?, r.int("d")?, r.int("f")?);
        let status = if f > 0 {
            "failed"
        } else if d == n {
            "delivered"
        } else {
            continue;
        };
        finished.push(vec![Arg::Int(r.int("outbox_id")?), Arg::Text(status.into()), Arg::Int(at)]);
    }
    update_values(
        c,
        &[("id", Int), ("status", Text), ("at", Int)],
        finished,
        "UPDATE outbox SET status = v.status, done_at_ms = v.at FROM v WHERE outbox.id = v.id AND outbox.status = 'sent'",
    )
    .await?;
    Ok(())
}

async fn receipts(c: &mut Conn<'_>, list: Vec<(String, ReceiptUpdate)>) -> Result<usize, StoreError> {
    let mut all: Vec<&str> = list.iter().map(|(_, r)| r.message_id.as_str()).collect();
    all.sort_unstable();
    all.dedup();
    let mut found: HashMap<(String, String), (i64, i64)> = HashMap::new();
    let rows = c
        .fetch_in(
            |list| {
                format!(
                    "SELECT outbox_id, part, smsc, message_id FROM outbox_parts WHERE message_id IN ({list})"
                )
            },
            all.iter().map(|m| Arg::Text((*m).to_owned())).collect(),
        )
        .await?;
    for r in rows {
        found.insert((r.text("smsc")?, r.text("message_id")?), (r.int("outbox_id")?, r.int("part")?));
    }
    let mut hits = Vec::new();
    let mut pending = Vec::new();
    for (smsc, r) in list {
        match found.get(&(smsc.clone(), r.message_id.clone())) {
            Some(&(outbox_id, part)) => {
                hits.push(Hit { outbox_id, part, delivered: r.delivered, state: r.state, at_ms: r.at_ms });
            }
            None => pending.push(vec![
                Arg::Text(smsc),
                Arg::Text(r.message_id),
                Arg::Int(i64::from(r.delivered)),
                Arg::Text(r.state),
                Arg::Int(r.at_ms),
            ]),
        }
    }
    let unmatched = pending.len();
    if !hits.is_empty() {
        apply_hits(c, hits).await?;
    }
    const PENDING_COLUMNS: &[(&str, ColType)] = &[
        ("smsc", ColType::Text),
        ("message_id", ColType::Text),
        ("delivered", ColType::Int),
        ("state", ColType::Text),
        ("at_ms", ColType::Int),
    ];
    c.insert_rows("receipts_pending", PENDING_COLUMNS, pending, false).await?;
    Ok(unmatched)
}

/// One message's status.
pub(crate) async fn message(c: &mut Conn<'_>, id: i64) -> Result<Option<MessageStatus>, StoreError> {
    let row = c
        .fetch_optional(
            "SELECT o.id, o.kind, o.status, o.attempts, o.created_at_ms, o.sent_at_ms, o.done_at_ms, o.expires_at_ms, \
             o.last_error, o.smsc, (SELECT COUNT(*) FROM outbox_parts p WHERE p.outbox_id = o.id) AS parts \
             FROM outbox o WHERE o.id = $1",
            args![id],
        )
        .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(MessageStatus {
        id: r.int("id")?,
        kind: r.text("kind")?,
        status: r.text("status")?,
        attempts: r.int("attempts")?,
        created_at_ms: r.int("created_at_ms")?,
        sent_at_ms: r.opt_int("sent_at_ms")?,
        done_at_ms: r.opt_int("done_at_ms")?,
        expires_at_ms: r.int("expires_at_ms")?,
        last_error: r.opt_text("last_error")?,
        smsc: r.opt_text("smsc")?,
        parts: r.int("parts")?,
    }))
}
