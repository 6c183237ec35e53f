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

async fn set_epay(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    household_id: i64,
    has_epay: bool,
) -> Result<Applied, MarketError> {
    let changed =
        c.execute("UPDATE households SET has_epay = $2 WHERE id = $1", args![household_id, has_epay]).await?;
    if changed != 1 {
        return Err(MarketError::NotFound("household"));
    }
    ev.push("epay_set", format!("household:{household_id}"), json!({ "has_epay": has_epay }));
    reread_household(c, household_id).await
}

async fn household_exists(c: &mut Conn<'_>, id: i64) -> Result<bool, MarketError> {
    Ok(c.fetch_optional("SELECT id FROM households WHERE id = $1", args![id]).await?.is_some())
}

#[allow(clippy::too_many_arguments)]
async fn create_listing(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    products: &[Product],
    now: i64,
    household_id: i64,
    product_id: i64,
    quantity_kg: i64,
    price_per_kg: i64,
) -> Result<Applied, MarketError> {
    let product = products.iter().find(|p| p.id == product_id).ok_or(MarketError::NotFound("product"))?;
    // One statement checks the household too: it must exist and be confirmed by its leader
    // (a pending self-registration cannot sell); only a refusal reads it again, to say why.
    let inserted = c
        .insert_or_skip(
            "INSERT INTO listings (household_id, product_id, quantity_kg, price_per_kg, status, created_at_ms, \
             updated_at_ms) SELECT id, $2, $3, $4, 'active', $5, $5 FROM households WHERE id = $1 AND NOT pending",
            args![household_id, product_id, quantity_kg, price_per_kg, now],
        )
        .await?;
    let Some(id) = inserted else {
        return Err(if household_exists(c, household_id).await? {
            MarketError::NotAllowed("the household waits for its team leader's confirmation".to_owned())
        } else {
            MarketError::NotFound("household")
        });
    };
    #[derive(serde::Serialize)]
    struct Created<'a> {
        household_id: i64,
        product: &'a str,
        quantity_kg: i64,
        price_per_kg: i64,
    }
    ev.push(
        "listing_created",
        format!("listing:{id}"),
        Created { household_id, product: &product.code, quantity_kg, price_per_kg },
    );
    let listing = Listing {
        id,
        code: listing_code(id),
        household_id,
        product_id,
        product_name_vi: product.name_vi.clone(),
        product_name_en: product.name_en.clone(),
        unit: product.unit.clone(),
        quantity_kg,
        price_per_kg,
        status: ListingStatus::Active,
        created_at_ms: now,
    };
    ok(Done::Listing(listing), id)
}

/// The household's own order (anyone else's is "not found", as if it did not exist).
async fn own_order(c: &mut Conn<'_>, household_id: i64, order_id: i64) -> Result<Order, MarketError> {
    match queries::order_by_id(c, order_id).await? {
        Some(order) if order.household_id == household_id => Ok(order),
        _ => Err(MarketError::NotFound("order")),
    }
}

async fn set_status(c: &mut Conn<'_>, order: &Order, to: OrderStatus, now: i64) -> Result<(), MarketError> {
    let changed = c
        .execute(
            "UPDATE orders SET status = $2, updated_at_ms = $3 WHERE id = $1 AND status = $4",
            args![order.id, to.as_str(), now, order.status.as_str()],
        )
        .await?;
    if changed != 1 {
        return Err(MarketError::NotAllowed(format!("order {} changed meanwhile", order.code)));
    }
    Ok(())
}

async fn household_move(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    household_id: i64,
    order_id: i64,
    mv: OrderMove,
    detail: Option<String>,
) -> Result<Applied, MarketError> {
    let mut order = own_order(c, household_id, order_id).await?;
    let to = order_flow::next(&order, mv, Mover::Household)?;
    let extra = match (mv, &detail) {
        (OrderMove::Cancel, reason) => {
            c.execute("UPDATE orders SET cancel_reason = $2 WHERE id = $1", args![order.id, reason.clone()])
                .await?;
            json!({ "reason": reason })
        }
        (OrderMove::Ship, tracking_code) => {
            c.execute(
                "INSERT INTO shipments (order_id, partner, status, tracking_code, at_ms) \
                 VALUES ($1, 'household', 'shipped', $2, $3)",
                args![order.id, tracking_code.clone(), now],
            )
            .await?;
            json!({ "tracking_code": tracking_code })
        }
        _ => json!({}),
    };
    move_order(c, ev, now, &mut order, mv, to, extra).await?;
    let id = order.id;
    ok(Done::Order(order), id)
}

/// Applies a move the state machine allowed: the status (guarded against a change
/// meanwhile), the quantity back on offer where the move restocks, and the move's event
/// (`extra` merged into its data).
async fn move_order(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    order: &mut Order,
    mv: OrderMove,
    to: OrderStatus,
    extra: serde_json::Value,
) -> Result<(), MarketError> {
    set_status(c, order, to, now).await?;
    if mv.restocks() {
        c.execute(
            "UPDATE listings SET quantity_kg = quantity_kg + $2, \
             status = CASE WHEN status = 'sold_out' THEN 'active' ELSE status END, updated_at_ms = $3 \
             WHERE id = $1",
            args![order.listing_id, order.quantity_kg, now],
        )
        .await?;
    }
    let mut data = serde_json::Map::new();
    data.insert("from".to_owned(), order.status.as_str().into());
    data.insert("to".to_owned(), to.as_str().into());
    if let serde_json::Value::Object(more) = extra {
        data.extend(more);
    }
    ev.push(mv.event_kind(), format!("order:{}", order.id), serde_json::Value::Object(data));
    order.status = to;
    Ok(())
}

async fn set_pin(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    household_id: i64,
    hash: String,
) -> Result<Applied, MarketError> {
    let row = c
        .fetch_optional("SELECT pin_hash FROM households WHERE id = $1", args![household_id])
        .await?
        .ok_or(MarketError::NotFound("household"))?;
    if row.opt_text("pin_hash")?.is_some() {
        return Err(MarketError::NotAllowed("a PIN is set already; the team leader can reset it".to_owned()));
    }
    c.execute(
        "UPDATE households SET pin_hash = $2, pin_failures = 0, pin_locked_until_ms = 0 WHERE id = $1",
        args![household_id, hash],
    )
    .await?;
    ev.push("pin_set", format!("household:{household_id}"), json!({}));
    ok(Done::Nothing, household_id)
}

/// A PIN checked against a household's before its action reached the writer
/// ([`super::Market`] does the slow hashing off the writer).
#[derive(Debug)]
pub(crate) struct PinCheck {
    /// Whether the PIN typed is the household's.
    pub ok: bool,
    /// The hash it was checked against; `None` when nothing was checked (no PIN set, PIN
    /// use locked, or a repeat of a used key, which is replayed).
    pub hash: Option<String>,
    /// A right PIN against a hash made without the pepper: its peppered hash, written in the
    /// action's transaction.
    pub rehash: Option<String>,
}

/// The household's PIN state, read in the action's transaction: refuses when no PIN is
/// set, when PIN use is locked, or when the PIN changed since it was checked.
struct PinState {
    household_id: i64,
    failures_before: i64,
    locked_until: i64,
}

async fn pin_state(
    c: &mut Conn<'_>,
    now: i64,
    household_id: i64,
    pin: &PinCheck,
) -> Result<PinState, MarketError> {
    let row = c
        .fetch_optional(
            "SELECT pin_hash, pin_failures, pin_locked_until_ms FROM households WHERE id = $1",
            args![household_id],
        )
        .await?
        .ok_or(MarketError::NotFound("household"))?;
    let hash = row.opt_text("pin_hash")?.ok_or(MarketError::PinNotSet)?;
    let locked_until = row.int("pin_locked_until_ms")?;
    if locked_until > now {
        return Err(MarketError::PinLocked { until_ms: locked_until });
    }
    if pin.hash.as_deref() != Some(hash.as_str()) {
        return Err(MarketError::NotAllowed("the PIN changed meanwhile; try again".to_owned()));
    }
    // A lock that has run out starts the count afresh.
    let failures_before = if locked_until > 0 { 0 } else { row.int("pin_failures")? };
    Ok(PinState { household_id, failures_before, locked_until })
}

impl PinState {
    /// Writes the check's outcome: a wrong PIN is counted (the 5th in a row locks PIN use
    /// for [`LOCK_MS`]) and answered with the refusal, which the transaction keeps (`Some`);
    /// a right one clears an earlier count (`None`: the action goes on). `what` goes into
    /// the events (the order paid, the household whose PIN is reset).
    async fn settle(
        self,
        c: &mut Conn<'_>,
        ev: &mut Events<'_>,
        now: i64,
        pin: &PinCheck,
        what: serde_json::Value,
    ) -> Result<Option<Applied>, MarketError> {
        let id = self.household_id;
        if pin.ok {
            if self.failures_before != 0 || self.locked_until != 0 {
                c.execute(
                    "UPDATE households SET pin_failures = 0, pin_locked_until_ms = 0 WHERE id = $1",
                    args![id],
                )
                .await?;
            }
            if let Some(rehash) = &pin.rehash {
                // The PIN was right against a hash from before the pepper: peppered from now on.
                c.execute("UPDATE households SET pin_hash = $2 WHERE id = $1", args![id, rehash]).await?;
            }
            return Ok(None);
        }
        let subject = format!("household:{id}");
        let failures = self.failures_before.saturating_add(1);
        let mut data = match what {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        if failures >= i64::from(MAX_FAILURES) {
            let until_ms = now + LOCK_MS;
            c.execute(
                "UPDATE households SET pin_failures = 0, pin_locked_until_ms = $2 WHERE id = $1",
                args![id, until_ms],
            )
            .await?;
            data.insert("until_ms".to_owned(), until_ms.into());
            ev.push("pin_locked", subject, serde_json::Value::Object(data));
            return Ok(Some(Applied {
                reply: Err(MarketError::PinLocked { until_ms }),
                result_id: Some(id),
                outcome: format!("pin_locked:{until_ms}"),
            }));
        }
        c.execute(
            "UPDATE households SET pin_failures = $2, pin_locked_until_ms = 0 WHERE id = $1",
            args![id, failures],
        )
        .await?;
        let remaining = u32::try_from(i64::from(MAX_FAILURES) - failures).unwrap_or(0);
        data.insert("failures".to_owned(), failures.into());
        ev.push("pin_wrong", subject, serde_json::Value::Object(data));
        Ok(Some(Applied {
            reply: Err(MarketError::PinWrong { remaining }),
            result_id: Some(id),
            outcome: format!("pin_wrong:{remaining}"),
        }))
    }
}

async fn confirm_payment(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    household_id: i64,
    order_id: i64,
    pin: PinCheck,
) -> Result<Applied, MarketError> {
    let state = pin_state(c, now, household_id, &pin).await?;
    let mut order = own_order(c, household_id, order_id).await?;
    let to = order_flow::next(&order, OrderMove::Pay, Mover::Household)?;
    if let Some(refused) = state.settle(c, ev, now, &pin, json!({ "order_id": order_id })).await? {
        return Ok(refused);
    }
    let amount = order.amount;
    move_order(c, ev, now, &mut order, OrderMove::Pay, to, json!({ "amount": amount })).await?;
    c.execute(
        "INSERT INTO payments (order_id, household_id, amount, at_ms, actor, channel) VALUES ($1, $2, $3, $4, $5, $6)",
        args![order.id, household_id, amount, now, &ev.actor.msisdn, ev.actor.channel.as_str()],
    )
    .await?;
    let id = order.id;
    ok(Done::Order(order), id)
}

async fn update_listing(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    household_id: i64,
    listing_id: i64,
    change: ListingChange,
) -> Result<Applied, MarketError> {
    let mut listing = match queries::listing_by_id(c, listing_id).await? {
        Some(l) if l.household_id == household_id => l,
        _ => return Err(MarketError::NotFound("listing")),
    };
    match (&change, listing.status) {
        (ListingChange::Restart, ListingStatus::Stopped) => {}
        (ListingChange::Restart, _) => {
            return Err(MarketError::NotAllowed(format!("listing {} is not stopped", listing.code)));
        }
        (_, ListingStatus::Stopped) => {
            return Err(MarketError::NotAllowed(format!("listing {} is stopped", listing.code)));
        }
        _ => {}
    }
    let subject = format!("listing:{}", listing.id);
    match change {
        ListingChange::Price(price) => {
            c.execute(
                "UPDATE listings SET price_per_kg = $2, updated_at_ms = $3 WHERE id = $1",
                args![listing.id, price, now],
            )
            .await?;
            ev.push("listing_price_changed", subject, json!({ "from": listing.price_per_kg, "to": price }));
            listing.price_per_kg = price;
        }
        ListingChange::Quantity(quantity) => {
            c.execute(
                "UPDATE listings SET quantity_kg = $2, status = 'active', updated_at_ms = $3 WHERE id = $1",
                args![listing.id, quantity, now],
            )
            .await?;
            ev.push(
                "listing_quantity_changed",
                subject,
                json!({ "from": listing.quantity_kg, "to": quantity }),
            );
            listing.quantity_kg = quantity;
            listing.status = ListingStatus::Active;
        }
        ListingChange::Stop => {
            c.execute(
                "UPDATE listings SET status = 'stopped', updated_at_ms = $2 WHERE id = $1",
                args![listing.id, now],
            )
            .await?;
            ev.push("listing_stopped", subject, json!({ "from": listing.status.as_str() }));
            listing.status = ListingStatus::Stopped;
        }
        ListingChange::Restart => {
            // What was left when it stopped goes on sale again; nothing left: sold out.
            let to = if listing.quantity_kg > 0 { ListingStatus::Active } else { ListingStatus::SoldOut };
            c.execute(
                "UPDATE listings SET status = $2, updated_at_ms = $3 WHERE id = $1",
                args![listing.id, to.as_str(), now],
            )
            .await?;
            ev.push("listing_restarted", subject, json!({ "to": to.as_str() }));
            listing.status = to;
        }
    }
    let id = listing.id;
    ok(Done::Listing(listing), id)
}

/// A village name's matching key: lower case, whitespace collapsed.
pub(crate) fn village_key(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Finds the village (by its key) or creates it; returns (id, created).
async fn find_or_create_village(
    c: &mut Conn<'_>,
    commune_code: u32,
    name: &str,
    pending: bool,
    now: i64,
) -> Result<(i64, bool), MarketError> {
    if queries::commune(c, commune_code).await?.is_none() {
        return Err(MarketError::NotFound("commune"));
    }
    let key = village_key(name);
    let code = i64::from(commune_code);
    if let Some(row) = c
        .fetch_optional(
            "SELECT id FROM villages WHERE commune_code = $1 AND name_key = $2",
            args![code, &key],
        )
        .await?
    {
        return Ok((row.int("id")?, false));
    }
    let id = c
        .insert(
            "INSERT INTO villages (commune_code, name, name_key, pending, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
            args![code, name, &key, pending, now],
        )
        .await?;
    Ok((id, true))
}

async fn msisdn_taken(c: &mut Conn<'_>, msisdn: &str) -> Result<Option<i64>, MarketError> {
    let row = c.fetch_optional("SELECT id FROM households WHERE msisdn = $1", args![msisdn]).await?;
    Ok(row.map(|r| r.int("id")).transpose()?)
}

async fn insert_household(
    c: &mut Conn<'_>,
    msisdn: &str,
    name: &str,
    village_id: i64,
    lang: Lang,
    pending: bool,
    now: i64,
) -> Result<i64, MarketError> {
    Ok(c.insert(
        "INSERT INTO households (msisdn, name, village_id, language, pending, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        args![msisdn, name, village_id, lang.as_str(), pending, now],
    )
    .await?)
}

async fn reread_household(c: &mut Conn<'_>, id: i64) -> Result<Applied, MarketError> {
    let household = queries::household_by_id(c, id).await?.ok_or(MarketError::NotFound("household"))?;
    ok(Done::Household(household), id)
}

#[allow(clippy::too_many_arguments)]
async fn self_register(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    msisdn: String,
    commune_code: u32,
    village_name: String,
    name: String,
    lang: Lang,
) -> Result<Applied, MarketError> {
    if msisdn_taken(c, &msisdn).await?.is_some() {
        return Err(MarketError::AlreadyRegistered);
    }
    // What a household types is matched loosely: "Dong Lam" is the commune's "Thôn Đồng Lâm".
    let loose = super::village_match_key(&village_name);
    let known = queries::villages_of(c, commune_code)
        .await?
        .into_iter()
        .find(|v| super::village_match_key(&v.name) == loose);
    let (village_id, created) = match known {
        Some(v) => (v.id, false),
        None => find_or_create_village(c, commune_code, &village_name, true, now).await?,
    };
    if created {
        ev.push(
            "village_created",
            format!("village:{village_id}"),
            json!({ "commune_code": commune_code, "name": village_name, "pending": true }),
        );
    }
    let id = insert_household(c, &msisdn, &name, village_id, lang, true, now).await?;
    let leader = c
        .fetch_optional("SELECT leader_household_id FROM teams WHERE village_id = $1", args![village_id])
        .await?
        .map(|r| r.int("leader_household_id"))
        .transpose()?;
    // The leader's to-do list: self-registered households are pending until confirmed.
    ev.push(
        "household_self_registered",
        format!("household:{id}"),
        json!({ "village_id": village_id, "commune_code": commune_code, "village_created": created,
                "leader_household_id": leader, "pending": true }),
    );
    // The leader hears of it at once.
    if let Some(leader) = leader {
        let (leader_msisdn, leader_lang) = household_contact(c, leader).await?;
        let village = village_name_of(c, village_id).await?;
        let text = notice::signed_up(&name, &msisdn, &village, leader_lang);
        let sms = Sms {
            msisdn: &leader_msisdn,
            text,
            lang: leader_lang,
            kind: "household_signed_up",
            ttl_ms: notice::NEW_ORDER_TTL_MS,
        };
        enqueue_sms(c, ev, sms, json!({ "household_id": id })).await?;
    }
    info!(msisdn = %mask_msisdn(&msisdn), household = id, village = village_id, "household self-registered");
    reread_household(c, id).await
}

async fn village_name_of(c: &mut Conn<'_>, village_id: i64) -> Result<String, MarketError> {
    Ok(c.fetch_one("SELECT name FROM villages WHERE id = $1", args![village_id]).await?.text("name")?)
}

/// A household of the village `leader_household_id` leads: (msisdn, name, pending, language).
async fn member_of_led_village(
    c: &mut Conn<'_>,
    leader_household_id: i64,
    household_id: i64,
) -> Result<(String, String, bool, Lang), MarketError> {
    let village_id = leader_village(c, leader_household_id).await?;
    let row = c
        .fetch_optional(
            "SELECT msisdn, name, pending, language, village_id FROM households WHERE id = $1",
            args![household_id],
        )
        .await?
        .ok_or(MarketError::NotFound("household"))?;
    if row.int("village_id")? != village_id {
        return Err(MarketError::NotAllowed("the household is not in your village".to_owned()));
    }
    let language = row.text("language")?;
    let lang = Lang::parse(&language).ok_or_else(|| corrupt("households.language", &language))?;
    Ok((row.text("msisdn")?, row.text("name")?, row.flag("pending")?, lang))
}

/// A leader confirms a self-registered household of their village: it can sell from now
/// on, and gets a welcome SMS saying how.
async fn confirm_household(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    leader_household_id: i64,
    household_id: i64,
) -> Result<Applied, MarketError> {
    let (msisdn, name, pending, lang) = member_of_led_village(c, leader_household_id, household_id).await?;
    if !pending {
        return Err(MarketError::NotAllowed(format!("{name} is confirmed already")));
    }
    c.execute("UPDATE households SET pending = $2 WHERE id = $1", args![household_id, false]).await?;
    c.execute(
        "UPDATE villages SET pending = $2 WHERE id = (SELECT village_id FROM households WHERE id = $1)",
        args![household_id, false],
    )
    .await?;
    ev.push(
        "household_confirmed",
        format!("household:{household_id}"),
        json!({ "leader_household_id": leader_household_id }),
    );
    let sms = Sms {
        msisdn: &msisdn,
        text: notice::welcome(&name, lang),
        lang,
        kind: "welcome",
        ttl_ms: notice::NEW_ORDER_TTL_MS,
    };
    enqueue_sms(c, ev, sms, json!({ "household_id": household_id })).await?;
    reread_household(c, household_id).await
}

/// A leader refuses a self-registration (not a household of the village): the registration
/// is removed, and the number is told by SMS whom to call.
async fn refuse_household(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    leader_household_id: i64,
    household_id: i64,
) -> Result<Applied, MarketError> {
    let (msisdn, name, pending, lang) = member_of_led_village(c, leader_household_id, household_id).await?;
    if !pending {
        return Err(MarketError::NotAllowed(format!("{name} is confirmed already")));
    }
    let busy = c
        .fetch_optional("SELECT id FROM listings WHERE household_id = $1 LIMIT 1", args![household_id])
        .await?
        .is_some();
    if busy {
        return Err(MarketError::NotAllowed(format!("{name} has listings; an admin must remove it")));
    }
    let leader =
        queries::household_by_id(c, leader_household_id).await?.ok_or(MarketError::NotFound("household"))?;
    c.execute("DELETE FROM households WHERE id = $1", args![household_id]).await?;
    ev.push(
        "household_refused",
        format!("household:{household_id}"),
        json!({ "leader_household_id": leader_household_id, "msisdn": mask_msisdn(&msisdn) }),
    );
    let text = notice::refused(&leader.name, &leader.msisdn, &leader.village_name, lang);
    let sms = Sms { msisdn: &msisdn, text, lang, kind: "signup_refused", ttl_ms: notice::NEW_ORDER_TTL_MS };
    enqueue_sms(c, ev, sms, json!({})).await?;
    ok(Done::Nothing, household_id)
}

/// A leader records that a household of their village opened an e-payment account.
async fn leader_set_epay(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    leader_household_id: i64,
    household_id: i64,
) -> Result<Applied, MarketError> {
    member_of_led_village(c, leader_household_id, household_id).await?;
    c.execute("UPDATE households SET has_epay = $2 WHERE id = $1", args![household_id, true]).await?;
    ev.push(
        "epay_set",
        format!("household:{household_id}"),
        json!({ "has_epay": true, "leader_household_id": leader_household_id }),
    );
    reread_household(c, household_id).await
}

/// The village a household leads, or NotAllowed / NotFound.
async fn leader_village(c: &mut Conn<'_>, leader_household_id: i64) -> Result<i64, MarketError> {
    match queries::led_village(c, leader_household_id).await? {
        Some(v) => Ok(v),
        None if household_exists(c, leader_household_id).await? => {
            Err(MarketError::NotAllowed("only a village team leader can do this".to_owned()))
        }
        None => Err(MarketError::NotFound("household")),
    }
}

async fn register_household(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    leader_household_id: i64,
    msisdn: String,
    name: String,
) -> Result<Applied, MarketError> {
    let village_id = leader_village(c, leader_household_id).await?;
    if msisdn_taken(c, &msisdn).await?.is_some() {
        return Err(MarketError::AlreadyRegistered);
    }
    let id = insert_household(c, &msisdn, &name, village_id, Lang::Vi, false, now).await?;
    ev.push(
        "household_registered",
        format!("household:{id}"),
        json!({ "village_id": village_id, "leader_household_id": leader_household_id }),
    );
    let sms = Sms {
        msisdn: &msisdn,
        text: notice::welcome(&name, Lang::Vi),
        lang: Lang::Vi,
        kind: "welcome",
        ttl_ms: notice::NEW_ORDER_TTL_MS,
    };
    enqueue_sms(c, ev, sms, json!({ "household_id": id })).await?;
    info!(msisdn = %mask_msisdn(&msisdn), household = id, village = village_id, "household registered by its leader");
    reread_household(c, id).await
}

async fn reset_pin(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    leader_household_id: i64,
    pin: PinCheck,
    msisdn: String,
) -> Result<Applied, MarketError> {
    let village_id = leader_village(c, leader_household_id).await?;
    let row = c
        .fetch_optional("SELECT id, village_id FROM households WHERE msisdn = $1", args![&msisdn])
        .await?
        .ok_or(MarketError::NotFound("household"))?;
    let id = row.int("id")?;
    if row.int("village_id")? != village_id {
        return Err(MarketError::NotAllowed("the household is not in your village".to_owned()));
    }
    let state = pin_state(c, now, leader_household_id, &pin).await?;
    if let Some(refused) = state.settle(c, ev, now, &pin, json!({ "reset_household_id": id })).await? {
        return Ok(refused);
    }
    c.execute(
        "UPDATE households SET pin_hash = NULL, pin_failures = 0, pin_locked_until_ms = 0 WHERE id = $1",
        args![id],
    )
    .await?;
    ev.push("pin_reset", format!("household:{id}"), json!({ "leader_household_id": leader_household_id }));
    // The household hears of it: who did it, how to make a new PIN, whom to call if it did
    // not ask for this.
    let leader =
        c.fetch_one("SELECT name, msisdn FROM households WHERE id = $1", args![leader_household_id]).await?;
    let (leader_name, leader_msisdn) = (leader.text("name")?, leader.text("msisdn")?);
    let text = |lang| notice::pin_reset(&leader_name, &leader_msisdn, lang);
    tell_household(c, ev, id, "pin_reset", text, json!({ "household_id": id })).await?;
    ok(Done::Nothing, id)
}

async fn place_order(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    new: super::types::NewOrder,
) -> Result<Applied, MarketError> {
    let super::types::NewOrder { listing_id, buyer_name, quantity_kg, amount, buyer_phone, delivery } = new;
    let listing = queries::listing_by_id(c, listing_id).await?.ok_or(MarketError::NotFound("listing"))?;
    if listing.status != ListingStatus::Active {
        return Err(MarketError::NotAllowed(format!(
            "listing {} is {}",
            listing.code,
            listing.status.as_str()
        )));
    }
    // A household its leader has not confirmed sells nothing (a listing from before that rule
    // is not on offer either).
    let pending = c
        .fetch_optional("SELECT pending FROM households WHERE id = $1", args![listing.household_id])
        .await?
        .map(|r| r.flag("pending"))
        .transpose()?
        .unwrap_or(false);
    if pending {
        return Err(MarketError::NotAllowed(format!("listing {} is not on offer", listing.code)));
    }
    if quantity_kg > listing.quantity_kg {
        return Err(MarketError::Invalid {
            field: "quantity_kg",
            reason: format!("only {} kg on offer", listing.quantity_kg),
        });
    }
    // The amount is the listing's price, not whatever the partner says.
    match quantity_kg.checked_mul(listing.price_per_kg) {
        Some(expected) if expected == amount => {}
        expected => {
            return Err(MarketError::Invalid {
                field: "amount",
                reason: match expected {
                    Some(expected) => format!(
                        "must be quantity_kg × the listing's price_per_kg: {quantity_kg} × {} = {expected}, got {amount}",
                        listing.price_per_kg
                    ),
                    None => "quantity_kg × the listing's price_per_kg is out of range".to_owned(),
                },
            });
        }
    }
    if let Some(d) = &delivery
        && queries::commune(c, d.commune_code).await?.is_none()
    {
        return Err(MarketError::Invalid {
            field: "delivery.commune_code",
            reason: format!("no commune {} in the 2025 list", d.commune_code),
        });
    }
    let (d_name, d_phone, d_address, d_commune) = match &delivery {
        Some(d) => (
            Some(d.name.clone()),
            Some(d.phone.clone()),
            Some(d.address.clone()),
            Some(i64::from(d.commune_code)),
        ),
        None => (None, None, None, None),
    };
    let id = c
        .insert(
            "INSERT INTO orders (listing_id, household_id, buyer_name, quantity_kg, amount, status, created_at_ms, \
             updated_at_ms, buyer_phone, delivery_name, delivery_phone, delivery_address, delivery_commune_code) \
             VALUES ($1, $2, $3, $4, $5, 'new', $6, $6, $7, $8, $9, $10, $11)",
            args![
                listing.id,
                listing.household_id,
                &buyer_name,
                quantity_kg,
                amount,
                now,
                buyer_phone.clone(),
                d_name,
                d_phone,
                d_address,
                d_commune
            ],
        )
        .await?;
    // Guarded: another node (PostgreSQL) may have taken some of it meanwhile.
    let taken = c
        .execute(
            "UPDATE listings SET quantity_kg = quantity_kg - $2, \
             status = CASE WHEN quantity_kg - $2 = 0 THEN 'sold_out' ELSE status END, updated_at_ms = $3 \
             WHERE id = $1 AND status = 'active' AND quantity_kg >= $2",
            args![listing.id, quantity_kg, now],
        )
        .await?;
    if taken != 1 {
        return Err(MarketError::NotAllowed(format!("listing {} changed meanwhile", listing.code)));
    }
    let order = Order {
        id,
        code: order_code(id),
        listing_id: listing.id,
        household_id: listing.household_id,
        product_name_vi: listing.product_name_vi.clone(),
        product_name_en: listing.product_name_en.clone(),
        unit: listing.unit.clone(),
        buyer_name,
        buyer_phone,
        delivery,
        quantity_kg,
        amount,
        status: OrderStatus::New,
        created_at_ms: now,
    };
    ev.push(
        "order_placed",
        format!("order:{id}"),
        json!({ "listing_id": listing.id, "household_id": listing.household_id, "buyer": order.buyer_name,
                "quantity_kg": quantity_kg, "amount": amount }),
    );
    // The household hears of it by SMS, in its language; queued in the same transaction.
    let (msisdn, lang) = household_contact(c, listing.household_id).await?;
    let text = notice::new_order(&order, lang);
    let sms = Sms { msisdn: &msisdn, text, lang, kind: "order_new", ttl_ms: notice::NEW_ORDER_TTL_MS };
    enqueue_sms(c, ev, sms, json!({ "order_id": id })).await?;
    ok(Done::Order(order), id)
}

async fn mark_delivered(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    order_id: i64,
) -> Result<Applied, MarketError> {
    let mut order = queries::order_by_id(c, order_id).await?.ok_or(MarketError::NotFound("order"))?;
    let to = order_flow::next(&order, OrderMove::Deliver, Mover::Partner)?;
    move_order(c, ev, now, &mut order, OrderMove::Deliver, to, json!({})).await?;
    let id = order.id;
    let text = |lang| notice::order_delivered(&order, lang);
    tell_household(c, ev, order.household_id, "order_delivered", text, json!({ "order_id": id })).await?;
    ok(Done::Order(order), id)
}

#[allow(clippy::too_many_arguments)]
async fn register_leader(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    msisdn: String,
    name: String,
    commune_code: u32,
    village_name: String,
    lang: Lang,
) -> Result<Applied, MarketError> {
    let (village_id, created) = find_or_create_village(c, commune_code, &village_name, false, now).await?;
    if created {
        ev.push(
            "village_created",
            format!("village:{village_id}"),
            json!({ "commune_code": commune_code, "name": village_name, "pending": false }),
        );
    }
    if let Some(row) = c
        .fetch_optional("SELECT leader_household_id FROM teams WHERE village_id = $1", args![village_id])
        .await?
    {
        let leader = row.int("leader_household_id")?;
        return Err(if msisdn_taken(c, &msisdn).await? == Some(leader) {
            MarketError::AlreadyRegistered
        } else {
            MarketError::NotAllowed("the village has a team leader already".to_owned())
        });
    }
    let existing =
        c.fetch_optional("SELECT id, village_id FROM households WHERE msisdn = $1", args![&msisdn]).await?;
    let (id, promoted) = match existing {
        // A household of this village becomes its leader.
        Some(row) if row.int("village_id")? == village_id => (row.int("id")?, true),
        Some(_) => return Err(MarketError::AlreadyRegistered),
        None => (insert_household(c, &msisdn, &name, village_id, lang, false, now).await?, false),
    };
    let team_id = c
        .insert(
            "INSERT INTO teams (village_id, leader_household_id, created_at_ms) VALUES ($1, $2, $3)",
            args![village_id, id, now],
        )
        .await?;
    c.execute("INSERT INTO team_members (team_id, household_id) VALUES ($1, $2)", args![team_id, id]).await?;
    // A leader confirms their village and themselves.
    c.execute("UPDATE villages SET pending = $2 WHERE id = $1", args![village_id, false]).await?;
    c.execute("UPDATE households SET pending = $2 WHERE id = $1", args![id, false]).await?;
    ev.push(
        "leader_registered",
        format!("household:{id}"),
        json!({ "village_id": village_id, "team_id": team_id, "commune_code": commune_code, "promoted": promoted }),
    );
    info!(msisdn = %mask_msisdn(&msisdn), household = id, village = village_id, "team leader registered");
    reread_household(c, id).await
}

/// One SMS to queue.
struct Sms<'a> {
    msisdn: &'a str,
    text: String,
    lang: Lang,
    /// What it tells (`order_new`, `payment_received`, ...).
    kind: &'a str,
    /// Valid this long from now.
    ttl_ms: i64,
}

/// Queues one SMS in the outbox, due now, in the transaction of the action that causes it,
/// with its `sms_queued` event (`kind` and what `about` holds); returns its id.
async fn enqueue_sms(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    sms: Sms<'_>,
    about: serde_json::Value,
) -> Result<i64, MarketError> {
    let now = ev.now;
    let id = c
        .insert(
            "INSERT INTO outbox (msisdn, text, lang, kind, status, created_at_ms, expires_at_ms, next_attempt_at_ms) \
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $5)",
            args![sms.msisdn, sms.text, sms.lang.as_str(), sms.kind, now, now + sms.ttl_ms],
        )
        .await?;
    let mut data = serde_json::Map::new();
    data.insert("kind".to_owned(), sms.kind.into());
    if let serde_json::Value::Object(more) = about {
        data.extend(more);
    }
    ev.push("sms_queued", format!("outbox:{id}"), serde_json::Value::Object(data));
    Ok(id)
}

/// Tells a household something by SMS, in its language (`text` writes it), in the
/// transaction of the action that causes it; returns the message's id.
async fn tell_household(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    household_id: i64,
    kind: &str,
    text: impl FnOnce(Lang) -> String,
    about: serde_json::Value,
) -> Result<i64, MarketError> {
    let (msisdn, lang) = household_contact(c, household_id).await?;
    let sms = Sms { msisdn: &msisdn, text: text(lang), lang, kind, ttl_ms: notice::NOTICE_TTL_MS };
    enqueue_sms(c, ev, sms, about).await
}

/// A household's number and language, to tell it something by SMS.
async fn household_contact(c: &mut Conn<'_>, household_id: i64) -> Result<(String, Lang), MarketError> {
    let row =
        c.fetch_one("SELECT msisdn, language FROM households WHERE id = $1", args![household_id]).await?;
    let language = row.text("language")?;
    let lang = Lang::parse(&language).ok_or_else(|| corrupt("households.language", &language))?;
    Ok((row.text("msisdn")?, lang))
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
