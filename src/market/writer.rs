//! The group-commit writer: the one task that changes the database.
//!
//! Callers send a [`Job`] over a bounded channel, with a oneshot for the answer. The writer
//! takes the first job, then whatever else is queued (up to `[database] write_batch`), and
//! runs them all in ONE transaction:
//!
//! - each action runs inside its own savepoint, so a refused or failing action is rolled
//!   back alone and the others still commit;
//! - each action is applied, then its idempotency key is stored with the outcome in one
//!   `INSERT ... ON CONFLICT DO NOTHING`. A key already there (earlier in this group, which
//!   is looked up first, or committed before, or committed meanwhile by another node on
//!   PostgreSQL, whose insert waits for that commit) rolls the action back and replays the
//!   first outcome. A refused action probes its key before answering (an insert, rolled
//!   back: on PostgreSQL it waits for another node holding the key), so a repeat of an
//!   applied action replays it even where running it again would be refused;
//! - the audit events of the whole group are written at the end with one multi-row insert
//!   (SQLite) or one `UNNEST` insert (PostgreSQL);
//! - then one COMMIT, and only then is each caller answered.
//!
//! While a group is committing, new jobs queue up and form the next group: the busier the
//! market, the bigger the groups, and the fewer commits (and fsyncs) per action. If the
//! transaction fails as a whole, every action in it is answered with
//! [`StoreError::TransactionFailed`] and the connection is opened anew for the next group;
//! repeating an action with its key is then safe whether or not it had been applied.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::order_flow::{self, Mover, OrderMove};
use super::pin::{LOCK_MS, MAX_FAILURES};
use super::types::{
    Actor, Channel, Household, IdemKey, Lang, Listing, ListingChange, ListingStatus, MarketError, Order,
    OrderStatus, Product, WriterCounters, listing_code, order_code,
};
use super::{notice, now_ms, queries};
use crate::args;
use crate::logging::mask_msisdn;
use crate::store::{Arg, Backend, ColType, Conn, Store, StoreError, WriterConn};

/// The all-or-nothing household import (`chogate households import`).
mod household_import;

/// The HTTP API's writes.
pub(crate) mod http_api;

mod households;
mod listings;
mod orders;
mod pins;
mod sms;

use households::*;
use listings::*;
use orders::*;
pub(crate) use pins::PinCheck;
use pins::*;
use sms::*;

/// One audit event, written with the rest of its group.
#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    pub at_ms: i64,
    pub actor: String,
    pub channel: Channel,
    pub kind: &'static str,
    pub subject: String,
    /// JSON.
    pub data: String,
}

/// The actions the writer applies (arguments already validated and normalised).
#[derive(Debug)]
pub(crate) enum Action {
    /// An HTTP API write, stored with the partner's key (see [`http_api`]).
    Api {
        call: super::reports::ApiCall,
        render: super::reports::Render,
        op: super::reports::ApiOp,
    },
    CreateListing {
        household_id: i64,
        product_id: i64,
        quantity_kg: i64,
        price_per_kg: i64,
    },
    MoveOrder {
        household_id: i64,
        order_id: i64,
        mv: OrderMove,
        /// The tracking code of a shipment, the reason of a cancellation.
        detail: Option<String>,
    },
    SetPin {
        household_id: i64,
        hash: String,
    },
    ConfirmPayment {
        household_id: i64,
        order_id: i64,
        pin: PinCheck,
    },
    UpdateListing {
        household_id: i64,
        listing_id: i64,
        change: ListingChange,
    },
    SelfRegister {
        msisdn: String,
        commune_code: u32,
        village_name: String,
        name: String,
        lang: Lang,
    },
    RegisterHousehold {
        leader_household_id: i64,
        msisdn: String,
        name: String,
    },
    ResetPin {
        leader_household_id: i64,
        /// The leader's own PIN, checked.
        pin: PinCheck,
        msisdn: String,
    },
    PlaceOrder(super::types::NewOrder),
    MarkDelivered {
        order_id: i64,
    },
    RegisterLeader {
        msisdn: String,
        name: String,
        commune_code: u32,
        village_name: String,
        lang: Lang,
    },
    SetEpay {
        household_id: i64,
        has_epay: bool,
    },
    /// A leader's word on a household of their village.
    Leader {
        leader_household_id: i64,
        household_id: i64,
        what: LeaderDecision,
    },
    ImportHouseholds(super::household_import::ImportBatch),
    QueueSms {
        msisdn: String,
        text: String,
        lang: Lang,
        kind: String,
        ttl_ms: i64,
    },
}

/// What a leader decides about a household of their village.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderDecision {
    /// Confirm a self-registration.
    Confirm,
    /// Refuse a self-registration (not of the village).
    Refuse,
    /// Record an e-payment account.
    Epay,
}

impl LeaderDecision {
    fn kind(self) -> &'static str {
        match self {
            LeaderDecision::Confirm => "confirm_household",
            LeaderDecision::Refuse => "refuse_household",
            LeaderDecision::Epay => "leader_set_epay",
        }
    }
}

/// What kind of row an action's result is, for replays.
enum Produces {
    Api,
    Listing,
    Order,
    Household,
    Nothing,
}

impl Action {
    /// The name recorded with the idempotency key.
    fn kind(&self) -> &'static str {
        match self {
            Action::Api { op, .. } => op.kind(),
            Action::CreateListing { .. } => "create_listing",
            Action::MoveOrder { .. } => "move_order",
            Action::SetPin { .. } => "set_pin",
            Action::ConfirmPayment { .. } => "confirm_payment",
            Action::UpdateListing { .. } => "update_listing",
            Action::SelfRegister { .. } => "self_register",
            Action::RegisterHousehold { .. } => "register_household",
            Action::ResetPin { .. } => "reset_pin",
            Action::PlaceOrder(_) => "place_order",
            Action::MarkDelivered { .. } => "mark_delivered",
            Action::RegisterLeader { .. } => "register_leader",
            Action::SetEpay { .. } => "set_epay",
            Action::Leader { what, .. } => what.kind(),
            Action::ImportHouseholds(_) => "import_households",
            Action::QueueSms { .. } => "queue_sms",
        }
    }

    /// An import: too much work to run again only to find its key used.
    fn is_bulk(&self) -> bool {
        matches!(
            self,
            Action::ImportHouseholds(_)
                | Action::Api { op: super::reports::ApiOp::ImportHouseholds { .. }, .. }
        )
    }

    fn produces(&self) -> Produces {
        match self {
            Action::Api { .. } => Produces::Api,
            Action::ImportHouseholds(_) => Produces::Nothing,
            Action::CreateListing { .. } | Action::UpdateListing { .. } => Produces::Listing,
            Action::MoveOrder { .. }
            | Action::ConfirmPayment { .. }
            | Action::PlaceOrder(_)
            | Action::MarkDelivered { .. } => Produces::Order,
            Action::SelfRegister { .. }
            | Action::RegisterHousehold { .. }
            | Action::RegisterLeader { .. }
            | Action::SetEpay { .. }
            | Action::Leader { what: LeaderDecision::Confirm | LeaderDecision::Epay, .. } => {
                Produces::Household
            }
            Action::Leader { what: LeaderDecision::Refuse, .. } => Produces::Nothing,
            Action::SetPin { .. } | Action::ResetPin { .. } | Action::QueueSms { .. } => Produces::Nothing,
        }
    }
}

/// An action's result.
#[derive(Debug)]
pub(crate) enum Done {
    Api(super::reports::StoredResponse),
    Listing(Listing),
    Order(Order),
    Household(Household),
    Imported(super::household_import::ImportTotals),
    Nothing,
}

/// Where an action's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<Done, MarketError>>;

/// An action waiting for the writer.
pub(crate) struct ActionJob {
    pub actor: Actor,
    pub key: IdemKey,
    pub action: Action,
    pub reply: Reply,
}

/// What callers send to the writer.
pub(crate) enum Job {
    /// An action; answered after its group committed.
    Action(ActionJob),
    /// An audit event nobody waits for (a dialogue ended).
    Event(EventRow),
    /// Outbox bookkeeping for the notifier; answered after its group committed.
    Outbox(OutboxJob),
}

/// Outbox work and where its answer goes.
pub(crate) struct OutboxJob {
    pub op: super::outbox::OutboxOp,
    pub reply: oneshot::Sender<Result<super::outbox::OutboxReply, MarketError>>,
}

/// The writer's counters, shared with [`super::Market`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    actions: AtomicU64,
    events: AtomicU64,
    largest_group: AtomicU64,
    failed_groups: AtomicU64,
    pub dropped_events: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> WriterCounters {
        WriterCounters {
            commits: self.commits.load(Ordering::Relaxed),
            actions: self.actions.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            largest_group: self.largest_group.load(Ordering::Relaxed),
            failed_groups: self.failed_groups.load(Ordering::Relaxed),
            dropped_events: self.dropped_events.load(Ordering::Relaxed),
        }
    }
}

/// The writer task's state.
pub(crate) struct Writer {
    pub store: Store,
    pub conn: Option<WriterConn>,
    pub rx: mpsc::Receiver<Job>,
    pub batch_max: usize,
    pub counters: Arc<Counters>,
    pub products: Arc<Vec<Product>>,
}

/// A key used earlier: what it did and how it ended.
#[derive(Debug, Clone)]
struct Stored {
    kind: String,
    result_id: Option<i64>,
    outcome: String,
}

/// One group's bookkeeping.
#[derive(Default)]
struct Group {
    /// Keys applied earlier in this group (not committed yet, so a repeat must see them here).
    keys: HashMap<String, Stored>,
    events: Vec<EventRow>,
    replies: Vec<(Reply, Result<Done, MarketError>)>,
    outbox:
        Vec<(oneshot::Sender<Result<super::outbox::OutboxReply, MarketError>>, super::outbox::OutboxReply)>,
}

impl Writer {
    /// Runs until `shutdown` is cancelled (or every sender is gone), then stops taking jobs,
    /// commits what is queued, and closes its connection.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                job = self.rx.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
                () = shutdown.cancelled() => break,
            };
            let jobs = self.take_queued(first);
            self.group(jobs).await;
        }
        self.rx.close();
        while let Some(first) = self.rx.recv().await {
            let jobs = self.take_queued(first);
            self.group(jobs).await;
        }
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
        info!(counters = ?self.counters.snapshot(), "database writer stopped");
    }

    fn take_queued(&mut self, first: Job) -> Vec<Job> {
        let mut jobs = vec![first];
        while jobs.len() < self.batch_max {
            match self.rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        jobs
    }

    async fn group(&mut self, jobs: Vec<Job>) {
        let size = jobs.len() as u64;
        self.counters.largest_group.fetch_max(size, Ordering::Relaxed);
        if self.conn.is_none() {
            match self.store.writer().await {
                Ok(conn) => self.conn = Some(conn),
                Err(e) => {
                    warn!(error = %e, "cannot open the writer connection");
                    self.counters.failed_groups.fetch_add(1, Ordering::Relaxed);
                    fail_all(Vec::new(), jobs.into_iter(), &e.to_string());
                    return;
                }
            }
        }
        let Some(writer_conn) = self.conn.as_mut() else {
            return;
        };
        let mut conn = writer_conn.conn();
        let mut group = Group::default();
        let mut jobs = jobs.into_iter();
        let now = now_ms();
        let started = std::time::Instant::now();
        match run_group(&mut conn, &mut jobs, &mut group, &self.products, now).await {
            Ok(events) => {
                crate::metrics::commit_latency(started.elapsed());
                writer_conn.committed();
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                self.counters.actions.fetch_add(group.replies.len() as u64, Ordering::Relaxed);
                self.counters.events.fetch_add(events, Ordering::Relaxed);
                debug!(jobs = size, actions = group.replies.len(), events, "group committed");
                for (reply, result) in group.replies {
                    // The caller may have gone (a cut dialogue): the action stays applied, and
                    // a repeat with its key replays it.
                    let _ = reply.send(result);
                }
                for (reply, result) in group.outbox {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                let _ = conn.raw("ROLLBACK").await;
                warn!(error = %e, jobs = size, "group transaction failed; its actions are answered with an error");
                self.counters.failed_groups.fetch_add(1, Ordering::Relaxed);
                let message = e.to_string();
                for (reply, _) in group.outbox {
                    let _ =
                        reply.send(Err(MarketError::Store(StoreError::TransactionFailed(message.clone()))));
                }
                fail_all(group.replies, jobs, &message);
                // Start the next group on a fresh connection, whatever state this one is in.
                if let Some(conn) = self.conn.take() {
                    conn.close().await;
                }
            }
        }
    }
}

fn fail_all(
    replies: Vec<(Reply, Result<Done, MarketError>)>,
    rest: impl Iterator<Item = Job>,
    message: &str,
) {
    let error = || Err(MarketError::Store(StoreError::TransactionFailed(message.to_owned())));
    for (reply, _) in replies {
        let _ = reply.send(error());
    }
    for job in rest {
        match job {
            Job::Action(a) => {
                let _ = a.reply.send(error());
            }
            Job::Outbox(o) => {
                let _ =
                    o.reply.send(Err(MarketError::Store(StoreError::TransactionFailed(message.to_owned()))));
            }
            Job::Event(_) => {}
        }
    }
}

const EVENT_COLUMNS: &[(&str, ColType)] = &[
    ("at_ms", ColType::Int),
    ("actor", ColType::Text),
    ("channel", ColType::Text),
    ("kind", ColType::Text),
    ("subject", ColType::Text),
    ("data", ColType::Json),
];

/// Runs one group in one transaction; returns the number of events written.
async fn run_group(
    c: &mut Conn<'_>,
    jobs: &mut impl Iterator<Item = Job>,
    group: &mut Group,
    products: &[Product],
    now: i64,
) -> Result<u64, StoreError> {
    c.begin_write().await?;
    for job in jobs.by_ref() {
        match job {
            Job::Event(event) => group.events.push(event),
            Job::Outbox(OutboxJob { op, reply }) => {
                let result = super::outbox::apply(c, op, now).await?;
                group.outbox.push((reply, result));
            }
            Job::Action(ActionJob { actor, key, action, reply }) => {
                match run_action(c, group, &actor, &key, action, products, now).await {
                    Ok(result) => group.replies.push((reply, result)),
                    Err(e) => {
                        group.replies.push((reply, Err(MarketError::NotAllowed(String::new()))));
                        return Err(e);
                    }
                }
            }
        }
    }
    let events = std::mem::take(&mut group.events);
    if c.backend() == Backend::Sqlite {
        // The counts reports read (see `queries::events_by_kind`): one upsert per kind
        // written in this group.
        let mut by_kind: Vec<(&'static str, i64)> = Vec::new();
        for e in &events {
            match by_kind.iter_mut().find(|(k, _)| *k == e.kind) {
                Some((_, n)) => *n += 1,
                None => by_kind.push((e.kind, 1)),
            }
        }
        for (kind, n) in by_kind {
            c.execute(
                "INSERT INTO event_counts (kind, n) VALUES ($1, $2) \
                 ON CONFLICT (kind) DO UPDATE SET n = event_counts.n + excluded.n",
                args![kind, n],
            )
            .await?;
        }
    }
    let rows: Vec<Vec<Arg>> = events
        .into_iter()
        .map(|e| {
            vec![
                Arg::Int(e.at_ms),
                Arg::Text(e.actor),
                Arg::Text(e.channel.as_str().to_owned()),
                Arg::Text(e.kind.to_owned()),
                Arg::Text(e.subject),
                Arg::Text(e.data),
            ]
        })
        .collect();
    let events = c.insert_rows("events", EVENT_COLUMNS, rows, false).await?;
    c.raw("COMMIT").await?;
    Ok(events)
}

/// Runs one action in its savepoint. The outer error is fatal for the group (the savepoint
/// itself failed); the inner result is the action's answer.
async fn run_action(
    c: &mut Conn<'_>,
    group: &mut Group,
    actor: &Actor,
    key: &IdemKey,
    action: Action,
    products: &[Product],
    now: i64,
) -> Result<Result<Done, MarketError>, StoreError> {
    c.raw("SAVEPOINT job").await?;
    let mut events = Vec::new();
    match attempt(c, group, actor, key, action, products, now, &mut events).await {
        Ok(Attempt { reply, stored }) => {
            c.raw("RELEASE SAVEPOINT job").await?;
            group.events.append(&mut events);
            if let Some(stored) = stored {
                group.keys.insert(key.0.clone(), stored);
            }
            Ok(reply)
        }
        Err(e) => {
            c.raw("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job").await?;
            let e = retryable(e);
            if let MarketError::Store(store) = &e {
                warn!(error = %store, "action failed in the database; rolled back alone");
            }
            Ok(Err(e))
        }
    }
}

/// A deadlock with another node's writer, a serialization failure or a lock timeout
/// (PostgreSQL) rolled the action back: the caller may repeat it with the same key.
fn retryable(e: MarketError) -> MarketError {
    if let MarketError::Store(store) = &e
        && let Some(reason) = store.retryable_reason()
    {
        return MarketError::Store(StoreError::TransactionFailed(reason));
    }
    e
}

/// An action's answer, and what to remember under its key (None for replays).
struct Attempt {
    reply: Result<Done, MarketError>,
    stored: Option<Stored>,
}

/// What an applied action leaves: the answer (an error for a counted wrong PIN, which is
/// committed all the same), the id of the row it concerns, the outcome to remember.
struct Applied {
    reply: Result<Done, MarketError>,
    result_id: Option<i64>,
    outcome: String,
}

fn ok(done: Done, id: i64) -> Result<Applied, MarketError> {
    Ok(Applied { reply: Ok(done), result_id: Some(id), outcome: "ok".to_owned() })
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    c: &mut Conn<'_>,
    group: &Group,
    actor: &Actor,
    key: &IdemKey,
    action: Action,
    products: &[Product],
    now: i64,
    events: &mut Vec<EventRow>,
) -> Result<Attempt, MarketError> {
    let (kind, produces) = (action.kind(), action.produces());
    if let Some(stored) = group.keys.get(&key.0) {
        return replay(c, kind, produces, stored).await;
    }
    if action.is_bulk()
        && let Some(stored) = stored_key(c, key).await?
    {
        return replay(c, kind, produces, &stored).await;
    }
    // The common case is a key never seen: apply, then store the key with the outcome (one
    // write for the key, not a claim and then an update).
    let mut ev = Events { actor, now, events };
    let applied = match apply(c, &mut ev, action, products, now).await {
        Ok(applied) => applied,
        Err(refused) => {
            // Refused or failed: if the key was used before, the first outcome is the answer.
            // The savepoint is rolled back first (on PostgreSQL a failed statement leaves the
            // transaction unusable until then). The key is then probed with an insert rather
            // than looked up: on PostgreSQL an insert waits for another node's transaction
            // that holds the same key, where a read would not see it and this refusal would
            // contradict that node's outcome.
            undo(c, events).await?;
            if !store_key(c, key, kind, None, "pending", now).await? {
                return replay_stored(c, key, kind, produces).await;
            }
            // Nothing is kept for a refusal: the probe goes with the savepoint.
            undo(c, events).await?;
            return Err(refused);
        }
    };
    if !store_key(c, key, kind, applied.result_id, &applied.outcome, now).await? {
        // Used before: undo this run and replay the first outcome.
        undo(c, events).await?;
        return replay_stored(c, key, kind, produces).await;
    }
    Ok(Attempt {
        reply: applied.reply,
        stored: Some(Stored {
            kind: kind.to_owned(),
            result_id: applied.result_id,
            outcome: applied.outcome,
        }),
    })
}

/// Rolls the action back to its savepoint, with the events it collected.
async fn undo(c: &mut Conn<'_>, events: &mut Vec<EventRow>) -> Result<(), MarketError> {
    c.raw("ROLLBACK TO SAVEPOINT job").await?;
    events.clear();
    Ok(())
}

/// Stores a key with its outcome unless it is there already (on PostgreSQL, waiting for
/// another node's transaction that holds it); whether it was stored.
async fn store_key(
    c: &mut Conn<'_>,
    key: &IdemKey,
    kind: &'static str,
    result_id: Option<i64>,
    outcome: &str,
    now: i64,
) -> Result<bool, MarketError> {
    let stored = c
        .execute(
            "INSERT INTO idempotency_keys (idem_key, kind, result_id, outcome, at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idem_key) DO NOTHING",
            args![&key.0, kind, result_id, outcome, now],
        )
        .await?;
    Ok(stored == 1)
}

/// Replays the first outcome of a key found already stored.
async fn replay_stored(
    c: &mut Conn<'_>,
    key: &IdemKey,
    kind: &'static str,
    produces: Produces,
) -> Result<Attempt, MarketError> {
    let stored = stored_key(c, key).await?.ok_or_else(|| corrupt("idempotency_keys.idem_key", &key.0))?;
    replay(c, kind, produces, &stored).await
}

/// What a key stored earlier records, if it was.
async fn stored_key(c: &mut Conn<'_>, key: &IdemKey) -> Result<Option<Stored>, MarketError> {
    let row = c
        .fetch_optional(
            "SELECT kind, result_id, outcome FROM idempotency_keys WHERE idem_key = $1",
            args![&key.0],
        )
        .await?;
    Ok(match row {
        Some(row) => Some(Stored {
            kind: row.text("kind")?,
            result_id: row.opt_int("result_id")?,
            outcome: row.text("outcome")?,
        }),
        None => None,
    })
}

fn corrupt(column: &'static str, value: impl ToString) -> MarketError {
    MarketError::Store(StoreError::Corrupt { column, value: value.to_string() })
}

/// Replays the first outcome of a key: re-reads the row it produced, or repeats the
/// counted PIN failure. Writes nothing.
async fn replay(
    c: &mut Conn<'_>,
    kind: &'static str,
    produces: Produces,
    stored: &Stored,
) -> Result<Attempt, MarketError> {
    if stored.kind != kind {
        return Err(MarketError::NotAllowed(format!("idempotency key already used for {}", stored.kind)));
    }
    let reply = if stored.outcome == "ok" {
        let id = stored.result_id.ok_or_else(|| corrupt("idempotency_keys.result_id", "NULL"))?;
        match produces {
            Produces::Listing => queries::listing_by_id(c, id)
                .await?
                .map(Done::Listing)
                .ok_or(MarketError::NotFound("listing")),
            Produces::Order => {
                queries::order_by_id(c, id).await?.map(Done::Order).ok_or(MarketError::NotFound("order"))
            }
            Produces::Household => queries::household_by_id(c, id)
                .await?
                .map(Done::Household)
                .ok_or(MarketError::NotFound("household")),
            Produces::Api => http_api::replay(c, id).await,
            Produces::Nothing => Ok(Done::Nothing),
        }
    } else if let Some(n) = stored.outcome.strip_prefix("pin_wrong:") {
        Err(MarketError::PinWrong {
            remaining: n.parse().map_err(|_| corrupt("idempotency_keys.outcome", &stored.outcome))?,
        })
    } else if let Some(t) = stored.outcome.strip_prefix("pin_locked:") {
        Err(MarketError::PinLocked {
            until_ms: t.parse().map_err(|_| corrupt("idempotency_keys.outcome", &stored.outcome))?,
        })
    } else {
        return Err(corrupt("idempotency_keys.outcome", &stored.outcome));
    };
    Ok(Attempt { reply, stored: None })
}

/// An event's data as JSON: a `json!` value, or on the busiest paths a struct (no map built
/// to be thrown away).
pub(crate) fn event_json(data: &impl serde::Serialize) -> String {
    // Plain data (numbers, strings, maps keyed by strings) always serialises; were it not to,
    // the event would still record that the action happened.
    serde_json::to_string(data).unwrap_or_else(|e| json!({ "unserialisable": e.to_string() }).to_string())
}

/// Collects an action's audit events.
struct Events<'a> {
    actor: &'a Actor,
    now: i64,
    events: &'a mut Vec<EventRow>,
}

impl Events<'_> {
    /// `data` is serialised at once (see [`event_json`]).
    fn push(&mut self, kind: &'static str, subject: String, data: impl serde::Serialize) {
        let data = event_json(&data);
        self.events.push(EventRow {
            at_ms: self.now,
            actor: self.actor.msisdn.clone(),
            channel: self.actor.channel,
            kind,
            subject,
            data,
        });
    }
}

async fn apply(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    action: Action,
    products: &[Product],
    now: i64,
) -> Result<Applied, MarketError> {
    match action {
        Action::Api { call, render, op } => http_api::apply(c, ev, now, call, render, op).await,
        Action::CreateListing { household_id, product_id, quantity_kg, price_per_kg } => {
            create_listing(c, ev, products, now, household_id, product_id, quantity_kg, price_per_kg).await
        }
        Action::MoveOrder { household_id, order_id, mv, detail } => {
            household_move(c, ev, now, household_id, order_id, mv, detail).await
        }
        Action::SetPin { household_id, hash } => set_pin(c, ev, household_id, hash).await,
        Action::ConfirmPayment { household_id, order_id, pin } => {
            confirm_payment(c, ev, now, household_id, order_id, pin).await
        }
        Action::UpdateListing { household_id, listing_id, change } => {
            update_listing(c, ev, now, household_id, listing_id, change).await
        }
        Action::SelfRegister { msisdn, commune_code, village_name, name, lang } => {
            self_register(c, ev, now, msisdn, commune_code, village_name, name, lang).await
        }
        Action::RegisterHousehold { leader_household_id, msisdn, name } => {
            register_household(c, ev, now, leader_household_id, msisdn, name).await
        }
        Action::ResetPin { leader_household_id, pin, msisdn } => {
            reset_pin(c, ev, now, leader_household_id, pin, msisdn).await
        }
        Action::PlaceOrder(order) => place_order(c, ev, now, order).await,
        Action::MarkDelivered { order_id } => mark_delivered(c, ev, now, order_id).await,
        Action::RegisterLeader { msisdn, name, commune_code, village_name, lang } => {
            register_leader(c, ev, now, msisdn, name, commune_code, village_name, lang).await
        }
        Action::SetEpay { household_id, has_epay } => set_epay(c, ev, household_id, has_epay).await,
        Action::Leader { leader_household_id, household_id, what } => match what {
            LeaderDecision::Confirm => confirm_household(c, ev, leader_household_id, household_id).await,
            LeaderDecision::Refuse => refuse_household(c, ev, leader_household_id, household_id).await,
            LeaderDecision::Epay => leader_set_epay(c, ev, leader_household_id, household_id).await,
        },
        Action::ImportHouseholds(batch) => household_import::apply(c, ev, now, batch).await,
        Action::QueueSms { msisdn, text, lang, kind, ttl_ms } => {
            // A keyword reply, say.
            let sms = Sms { msisdn: &msisdn, text, lang, kind: &kind, ttl_ms };
            let id = enqueue_sms(c, ev, sms, json!({ "msisdn": mask_msisdn(&msisdn) })).await?;
            ok(Done::Nothing, id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn village_key_should_ignore_case_and_spacing() {
        assert_eq!(village_key("  Thôn  Nà   LẦM "), "thôn nà lầm");
        assert_eq!(village_key("Bản Chắt"), village_key("bản\tchắt"));
    }
}
