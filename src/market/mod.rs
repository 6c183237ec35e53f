//! The market: households, communes and villages, community tech teams, the product
//! catalogue, listings, orders and payments, as typed actions.
//!
//! Reads go to the store's read pool. Every action goes through the one group-commit writer
//! task ([`writer`]): it is answered only after the transaction that carries it committed,
//! it appends its audit event (who, channel, what, when, data) in that same transaction, and
//! it is idempotent per [`IdemKey`]: a repeat returns the first outcome, re-read from the
//! database, and applies nothing again.

pub mod household_import;
mod notice;
pub mod order_flow;
mod outbox;
mod pin;
mod progress;
mod queries;
pub mod reports;
mod seed;
mod types;
mod writer;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use types::{
    Actor, Channel, Commune, Delivery, Household, IdemKey, Lang, Leader, Listing, ListingChange,
    ListingStatus, MarketError, NewOrder, Order, OrderStatus, Product, Sales, Stats, Village,
    VillageHousehold, VillageProgress, WriterCounters, listing_code, normalize_msisdn, order_code,
};

pub use notice::{money, national};
pub use order_flow::{Mover, OrderMove};
pub use outbox::{MessageStatus, OutboxMessage, OutboxOutcome, PENDING_RECEIPT_MS, ReceiptUpdate};
pub use writer::LeaderDecision;

use crate::args;
use crate::config::{DatabaseConfig, SecurityConfig};
use crate::logging::mask_msisdn;
use crate::store::{Backend, ReadConn, Store, StoreError};
use writer::{Action, ActionJob, Counters, Done, EventRow, Job, PinCheck, Writer};

/// Smallest and largest quantity of a listing, kg.
pub const QUANTITY_KG: std::ops::RangeInclusive<i64> = 1..=100_000;
/// Smallest and largest price per kg, đồng.
pub const PRICE_PER_KG: std::ops::RangeInclusive<i64> = 1_000..=100_000_000;
/// Largest order amount, đồng.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// Longest name (household, village, buyer), in characters.
pub const MAX_NAME_CHARS: usize = 80;
/// Longest idempotency key, in characters.
pub const MAX_KEY_CHARS: usize = 200;
/// Longest delivery address line, in characters.
pub const MAX_ADDRESS_CHARS: usize = 200;
/// Most entries a household's lists (orders) return.
pub const MAX_LISTED: i64 = 64;

/// The product catalogue a new database is seeded with: (Vietnamese name, English name,
/// unit), in menu order. For `menus check --walk`, which needs no database.
pub fn seed_catalogue() -> Vec<(String, String, String)> {
    seed::PRODUCTS.iter().map(|p| (p.name_vi.to_owned(), p.name_en.to_owned(), p.unit.to_owned())).collect()
}

/// The names of the communes of the 2025 list (empty if the embedded list cannot be read).
pub fn seed_commune_names() -> Vec<String> {
    seed::communes_2025().map(|cs| cs.into_iter().map(|c| c.name).collect()).unwrap_or_default()
}

use crate::time::now_ms;

/// The market over its durable store. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Market {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// The PIN pepper (see [`pin`]).
    pepper: pin::Pepper,
    jobs: mpsc::Sender<Job>,
    products: Arc<Vec<Product>>,
    counters: Arc<Counters>,
    stopped: CancellationToken,
}

/// Rows of each kind one pruning batch deletes at most.
pub const PRUNE_BATCH: i64 = 5000;

/// What [`Market::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Idempotency keys.
    pub keys: u64,
    /// API request records (partners' Idempotency-Keys and their first responses).
    pub requests: u64,
}

fn check_range(
    field: &'static str,
    value: i64,
    range: &std::ops::RangeInclusive<i64>,
) -> Result<(), MarketError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(MarketError::Invalid {
            field,
            reason: format!("must be between {} and {}, got {value}", range.start(), range.end()),
        })
    }
}

/// Trims and collapses whitespace; refuses empty, over-long, control or bidirectional
/// characters, and a leading `= + - @` (a spreadsheet would read the name as a formula).
fn clean_name(field: &'static str, s: &str) -> Result<String, MarketError> {
    clean_text(field, s, MAX_NAME_CHARS)
}

/// [`clean_name`] with another length limit.
fn clean_text(field: &'static str, s: &str, max_chars: usize) -> Result<String, MarketError> {
    let cleaned = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let invalid = |reason: &str| MarketError::Invalid { field, reason: reason.to_owned() };
    if cleaned.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if cleaned.chars().count() > max_chars {
        return Err(invalid(&format!("must be at most {max_chars} characters")));
    }
    if cleaned.chars().any(|c| c.is_control() || crate::text::is_bidi_control(c)) {
        return Err(invalid("must not contain control or bidirectional characters"));
    }
    if cleaned.starts_with(['=', '+', '-', '@']) {
        return Err(invalid("must not start with = + - or @"));
    }
    Ok(cleaned)
}

/// A Vietnamese mobile number, normalised, or [`MarketError::Invalid`] naming `field`.
fn phone(field: &'static str, s: &str) -> Result<String, MarketError> {
    normalize_msisdn(s).map_err(|e| match e {
        MarketError::Invalid { reason, .. } => MarketError::Invalid { field, reason },
        other => other,
    })
}

/// Checks and normalises an order to place: names trimmed, ranges, numbers normalised. The
/// listing (price, quantity on offer) and the commune are checked by the writer.
pub(crate) fn check_new_order(o: NewOrder) -> Result<NewOrder, MarketError> {
    check_range("quantity_kg", o.quantity_kg, &QUANTITY_KG)?;
    check_range("amount", o.amount, &(1..=MAX_AMOUNT))?;
    let buyer_name = clean_name("buyer_name", &o.buyer_name)?;
    let buyer_phone = o.buyer_phone.map(|p| phone("buyer_phone", &p)).transpose()?;
    let delivery = match o.delivery {
        None => None,
        Some(d) => Some(Delivery {
            name: clean_name("delivery.name", &d.name)?,
            phone: phone("delivery.phone", &d.phone)?,
            address: clean_text("delivery.address", &d.address, MAX_ADDRESS_CHARS)?,
            commune_code: d.commune_code,
        }),
    };
    Ok(NewOrder { buyer_name, buyer_phone, delivery, ..o })
}

/// A person's name as a household or a leader types it: letters and spaces (with `.`,
/// `'` and `-` inside a name), at least two letters, no digits.
pub fn person_name(field: &'static str, s: &str) -> Result<String, MarketError> {
    let cleaned = clean_name(field, s)?;
    let letters = cleaned.chars().filter(|c| c.is_alphabetic()).count();
    let allowed = |c: char| c.is_alphabetic() || matches!(c, ' ' | '.' | '\'' | '-');
    if letters < 2 || !cleaned.chars().all(allowed) {
        return Err(MarketError::Invalid { field, reason: "must be letters and spaces".to_owned() });
    }
    Ok(cleaned)
}

/// A village's name as a household types it: letters, digits and spaces ("Thôn 3"), not
/// digits alone.
pub fn village_name(field: &'static str, s: &str) -> Result<String, MarketError> {
    let cleaned = clean_name(field, s)?;
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, ' ' | '.' | '\'' | '-');
    if !cleaned.chars().any(char::is_alphabetic) || !cleaned.chars().all(allowed) {
        return Err(MarketError::Invalid { field, reason: "must be letters, digits and spaces".to_owned() });
    }
    Ok(cleaned)
}

/// A village name's loose key, for matching what a household types against the villages
/// of its commune: folded (accents and case ignored) and without the word for a village
/// in front (`"Thôn Đồng Lâm"`, `"ban dong lam"` and `"Dong Lam"` are one).
pub fn village_match_key(name: &str) -> String {
    let folded = crate::text::fold(name);
    for prefix in ["thon ", "ban ", "xom ", "lang ", "khu ", "to "] {
        if let Some(rest) = folded.strip_prefix(prefix)
            && !rest.is_empty()
        {
            return rest.to_owned();
        }
    }
    folded
}

fn check_key(key: &IdemKey) -> Result<(), MarketError> {
    let n = key.0.chars().count();
    if n == 0 || n > MAX_KEY_CHARS {
        return Err(MarketError::Invalid {
            field: "key",
            reason: format!("must be 1 to {MAX_KEY_CHARS} characters"),
        });
    }
    Ok(())
}

fn unexpected(done: Done) -> MarketError {
    MarketError::Store(StoreError::Corrupt { column: "writer reply", value: format!("{done:?}") })
}

impl Market {
    /// Opens the database at `cfg.url` (`sqlite://path`, creating the file; or
    /// `postgres://...`), runs the migrations, seeds the communes (the 2025 list, and the 2024
    /// districts and communes for history) and the product catalogue where missing, and
    /// starts the group-commit writer task. The writer stops when `shutdown` is cancelled,
    /// after committing what was queued; [`Market::stopped`] waits for that.
    pub async fn open(cfg: &DatabaseConfig, shutdown: CancellationToken) -> Result<Market, MarketError> {
        Market::open_with(cfg, &SecurityConfig::default(), shutdown).await
    }

    /// [`Market::open`] with `[security]`: the PIN pepper is read from its file, or made
    /// there when absent (see [`pin::Pepper::load_or_create`]).
    pub async fn open_with(
        cfg: &DatabaseConfig,
        security: &SecurityConfig,
        shutdown: CancellationToken,
    ) -> Result<Market, MarketError> {
        let store = Store::open(cfg).await?;
        // After the store: a SQLite database's folder exists by now.
        let pepper_path = pin::Pepper::path(security, store.sqlite_file());
        let (pepper, created) = pin::Pepper::load_or_create(&pepper_path)?;
        if created {
            // A new pepper for a database whose PINs were peppered: the file was lost or the
            // path is wrong, and no PIN could be checked. Stop instead.
            let peppered = {
                let mut r = store.read().await?;
                r.conn()
                    .fetch_one("SELECT COUNT(*) AS n FROM households WHERE pin_hash LIKE '%keyid=%'", args![])
                    .await?
                    .int("n")?
            };
            if peppered > 0 {
                let _ = std::fs::remove_file(&pepper_path);
                return Err(MarketError::Pepper {
                    path: pepper_path.display().to_string(),
                    reason: format!(
                        "missing, but {peppered} PINs were hashed with a pepper: restore the file (or set \
                         [security] pin_pepper_file to where it is)"
                    ),
                });
            }
            warn!(
                path = %pepper_path.display(),
                "made a new PIN pepper: keep this file with the database's backups (PINs cannot be \
                 checked without it), and give every node of this database the same file"
            );
        }
        let stopped = CancellationToken::new();
        let mut writer_conn = store.writer().await?;
        {
            let mut c = writer_conn.conn();
            c.begin_write().await?;
            match seed::seed(&mut c).await {
                Ok(()) => c.raw("COMMIT").await?,
                Err(e) => {
                    let _ = c.raw("ROLLBACK").await;
                    return Err(e.into());
                }
            }
        }
        let products = {
            let mut r = store.read().await?;
            Arc::new(queries::products(&mut r.conn()).await?)
        };
        let (jobs, rx) = mpsc::channel(cfg.write_queue.max(1) as usize);
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            store: store.clone(),
            conn: Some(writer_conn),
            rx,
            batch_max: cfg.write_batch.max(1) as usize,
            counters: counters.clone(),
            products: products.clone(),
        };
        // `stopped` is cancelled once the writer has committed its last group and closed its
        // connection, or should it panic: shutdown never waits for a writer that is gone.
        let guard = stopped.clone();
        let task = async move {
            let _stopped = guard.drop_guard();
            writer.run(shutdown).await;
        };
        match store.backend() {
            // SQLite statements run in the calling thread: the writer gets a thread of its
            // own (with a runtime of its own for the channels and the shutdown token), so
            // that its commits never hold up the tasks that serve the SMPP binds.
            Backend::Sqlite => {
                crate::thread::on_own_thread("chogate-writer", task)
                    .map_err(|e| StoreError::Thread(e.to_string()))?;
            }
            Backend::Postgres => {
                tokio::spawn(task);
            }
        }
        info!(backend = ?store.backend(), products = products.len(), "market open");
        Ok(Market { inner: Arc::new(Inner { store, pepper, jobs, products, counters, stopped }) })
    }

    /// Which database backs the market.
    pub fn backend(&self) -> Backend {
        self.inner.store.backend()
    }

    /// The store, for bulk reads and exports.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// What the writer did so far: commits, actions, events, largest group.
    pub fn writer_counters(&self) -> WriterCounters {
        self.inner.counters.snapshot()
    }

    /// Waits until the writer has committed its last group and stopped (after the
    /// `shutdown` token given to [`Market::open`] was cancelled).
    pub async fn stopped(&self) {
        self.inner.stopped.cancelled().await;
    }

    async fn read(&self) -> Result<ReadConn, MarketError> {
        Ok(self.inner.store.read().await?)
    }

    /// Hands outbox work to the writer and waits for its group to commit.
    async fn outbox_op(&self, op: outbox::OutboxOp) -> Result<outbox::OutboxReply, MarketError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .jobs
            .send(Job::Outbox(writer::OutboxJob { op, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Claims up to `limit` queued messages that are due, for `lease_ms`: nobody else takes
    /// them meanwhile, and they are due again afterwards unless an outcome is recorded.
    /// Due messages past their validity are marked expired instead of claimed; with `sweep`,
    /// every queued message past its validity is (a scan of the queue: now and then).
    pub async fn outbox_claim(
        &self,
        limit: usize,
        lease_ms: i64,
        sweep: bool,
    ) -> Result<Vec<OutboxMessage>, MarketError> {
        match self.outbox_op(outbox::OutboxOp::Claim { limit, lease_ms, sweep }).await? {
            outbox::OutboxReply::Claimed(m) => Ok(m),
            other => Err(MarketError::NotAllowed(format!("unexpected writer answer {other:?}"))),
        }
    }

    /// Deletes the idempotency keys and API request records older than `retention`, in
    /// batches of [`PRUNE_BATCH`] through the writer (each batch one short part of a group
    /// commit); the audit events are kept. Returns how many of each went.
    pub async fn prune(&self, retention: std::time::Duration) -> Result<Pruned, MarketError> {
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let before_ms = now_ms().saturating_sub(retention_ms);
        let mut total = Pruned::default();
        loop {
            let op = outbox::OutboxOp::Prune { before_ms, batch: PRUNE_BATCH };
            let (keys, requests) = match self.outbox_op(op).await? {
                outbox::OutboxReply::Pruned { keys, requests } => (keys, requests),
                other => return Err(MarketError::NotAllowed(format!("unexpected writer answer {other:?}"))),
            };
            total.keys += keys;
            total.requests += requests;
            if keys < PRUNE_BATCH as u64 && requests < PRUNE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Records send outcomes (one group commit for the lot). Receipts that arrived before a
    /// part was recorded as sent are applied to it now.
    pub async fn outbox_record(&self, outcomes: Vec<OutboxOutcome>) -> Result<(), MarketError> {
        self.outbox_op(outbox::OutboxOp::Record(outcomes)).await.map(|_| ())
    }

    /// Records delivery receipts `(smsc, receipt)`; returns how many matched no sent part
    /// yet (they are kept and applied when the part is recorded).
    pub async fn outbox_receipts(
        &self,
        receipts: Vec<(String, ReceiptUpdate)>,
    ) -> Result<usize, MarketError> {
        match self.outbox_op(outbox::OutboxOp::Receipts(receipts)).await? {
            outbox::OutboxReply::Receipts { unmatched } => Ok(unmatched),
            other => Err(MarketError::NotAllowed(format!("unexpected writer answer {other:?}"))),
        }
    }

    /// Queues an SMS to `msisdn` (a keyword reply, say), valid for 24 hours, with its event.
    pub async fn queue_sms(
        &self,
        actor: &Actor,
        key: IdemKey,
        msisdn: &str,
        text: &str,
        lang: Lang,
        kind: &str,
    ) -> Result<(), MarketError> {
        let msisdn = normalize_msisdn(msisdn)?;
        let action = Action::QueueSms {
            msisdn,
            text: text.to_owned(),
            lang,
            kind: kind.to_owned(),
            ttl_ms: notice::NEW_ORDER_TTL_MS,
        };
        self.act(actor, key, action).await.map(|_| ())
    }

    /// One SMS's status.
    pub async fn message(&self, id: i64) -> Result<Option<MessageStatus>, MarketError> {
        let mut r = self.read().await?;
        Ok(outbox::message(&mut r.conn(), id).await?)
    }

    /// Hands an action to the writer and waits for its committed outcome.
    async fn act(&self, actor: &Actor, key: IdemKey, action: Action) -> Result<Done, MarketError> {
        check_key(&key)?;
        let (reply, answer) = oneshot::channel();
        let job = Job::Action(ActionJob { actor: actor.clone(), key, action, reply });
        let sent = std::time::Instant::now();
        self.inner.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        let done = answer.await.map_err(|_| StoreError::Closed)?;
        crate::metrics::action_latency(sent.elapsed());
        done
    }

    /// Whether a key has been used (so the writer will replay it): spares the Argon2 work
    /// for a retransmitted step.
    async fn key_used(&self, key: &IdemKey) -> Result<bool, MarketError> {
        let mut r = self.read().await?;
        let row = r
            .conn()
            .fetch_optional(
                "SELECT kind FROM idempotency_keys WHERE idem_key = $1 AND outcome <> 'pending'",
                args![&key.0],
            )
            .await?;
        Ok(row.is_some())
    }

    // ---- reads -------------------------------------------------------------------------

    /// The household with this MSISDN (any written form; see [`normalize_msisdn`]).
    pub async fn household_by_msisdn(&self, msisdn: &str) -> Result<Option<Household>, MarketError> {
        let msisdn = normalize_msisdn(msisdn)?;
        let mut r = self.read().await?;
        Ok(queries::household_by_msisdn(&mut r.conn(), &msisdn).await?)
    }

    /// The household with this id.
    pub async fn household(&self, household_id: i64) -> Result<Option<Household>, MarketError> {
        let mut r = self.read().await?;
        Ok(queries::household_by_id(&mut r.conn(), household_id).await?)
    }

    /// Every household, by id (for `households export`).
    pub async fn households(&self) -> Result<Vec<Household>, MarketError> {
        let mut r = self.read().await?;
        Ok(queries::all_households(&mut r.conn()).await?)
    }

    /// A commune or ward of the 2025 list.
    pub async fn commune(&self, code: u32) -> Result<Option<Commune>, MarketError> {
        let mut r = self.read().await?;
        Ok(queries::commune(&mut r.conn(), code).await?)
    }

    /// The product catalogue in menu order (na first); loaded once at open.
    pub async fn products(&self) -> Result<Arc<Vec<Product>>, MarketError> {
        Ok(self.inner.products.clone())
    }

    /// The household's orders waiting for it: New or Accepted, newest first.
    pub async fn open_orders(&self, household_id: i64) -> Result<Vec<Order>, MarketError> {
        self.orders_with(household_id, &[OrderStatus::New, OrderStatus::Accepted]).await
    }

    /// The household's orders still under way (new, accepted, shipped, delivered), newest
    /// first: its order list.
    pub async fn orders_in_progress(&self, household_id: i64) -> Result<Vec<Order>, MarketError> {
        use OrderStatus::*;
        self.orders_with(household_id, &[New, Accepted, Shipped, Delivered]).await
    }

    /// The household's orders whose payment can be confirmed: Shipped or Delivered, newest
    /// first.
    pub async fn orders_awaiting_payment(&self, household_id: i64) -> Result<Vec<Order>, MarketError> {
        self.orders_with(household_id, &[OrderStatus::Shipped, OrderStatus::Delivered]).await
    }

    /// The household's ended orders (paid, rejected, cancelled), newest first.
    pub async fn past_orders(&self, household_id: i64) -> Result<Vec<Order>, MarketError> {
        use OrderStatus::*;
        self.orders_with(household_id, &[Paid, Rejected, Cancelled]).await
    }

    async fn orders_with(
        &self,
        household_id: i64,
        statuses: &[OrderStatus],
    ) -> Result<Vec<Order>, MarketError> {
        let mut r = self.read().await?;
        Ok(queries::orders_with(&mut r.conn(), household_id, statuses, MAX_LISTED).await?)
    }

    /// One of the household's orders; [`MarketError::NotFound`] if it is not theirs.
    pub async fn order(&self, household_id: i64, order_id: i64) -> Result<Order, MarketError> {
        let mut r = self.read().await?;
        match queries::order_by_id(&mut r.conn(), order_id).await? {
            Some(o) if o.household_id == household_id => Ok(o),
            _ => Err(MarketError::NotFound("order")),
        }
    }

    /// The household's active listings, newest first.
    pub async fn listings(&self, household_id: i64) -> Result<Vec<Listing>, MarketError> {
        self.listings_in(household_id, ListingStatus::Active).await
    }

    /// The household's listings in one state, newest first.
    pub async fn listings_in(
        &self,
        household_id: i64,
        status: ListingStatus,
    ) -> Result<Vec<Listing>, MarketError> {
        let mut r = self.read().await?;
        Ok(queries::listings_in(&mut r.conn(), household_id, status).await?)
    }

    /// Every commune of the 2025 list, by name.
    pub async fn communes(&self) -> Result<Vec<Commune>, MarketError> {
        let mut r = self.read().await?;
        Ok(queries::communes(&mut r.conn()).await?)
    }

    /// The villages of a commune, by name.
    pub async fn villages_of(&self, commune_code: u32) -> Result<Vec<Village>, MarketError> {
        let mut r = self.read().await?;
        Ok(queries::villages_of(&mut r.conn(), commune_code).await?)
    }

    /// The households of the village `leader_household_id` leads (only those waiting for
    /// confirmation with `only_pending`), pending first; [`MarketError::NotAllowed`] for a
    /// household that leads no village.
    pub async fn village_households(
        &self,
        leader_household_id: i64,
        only_pending: bool,
    ) -> Result<Vec<VillageHousehold>, MarketError> {
        let mut r = self.read().await?;
        let mut c = r.conn();
        let village = queries::led_village(&mut c, leader_household_id)
            .await?
            .ok_or_else(|| MarketError::NotAllowed("only a village team leader can see this".to_owned()))?;
        Ok(queries::village_households(&mut c, village, only_pending).await?)
    }

    /// The household's paid orders this month (Vietnam time) and in all.
    pub async fn sales(&self, household_id: i64) -> Result<Sales, MarketError> {
        let month_start = crate::time::vn_month_start_ms(now_ms());
        let mut r = self.read().await?;
        Ok(queries::sales(&mut r.conn(), household_id, month_start).await?)
    }

    /// One of the household's listings (any state); [`MarketError::NotFound`] if it is not
    /// theirs.
    pub async fn listing(&self, household_id: i64, listing_id: i64) -> Result<Listing, MarketError> {
        let mut r = self.read().await?;
        match queries::listing_by_id(&mut r.conn(), listing_id).await? {
            Some(l) if l.household_id == household_id => Ok(l),
            _ => Err(MarketError::NotFound("listing")),
        }
    }

    /// The team leader of the household's village, if the village has a team.
    pub async fn leader_of(&self, household_id: i64) -> Result<Option<Leader>, MarketError> {
        let mut r = self.read().await?;
        Ok(queries::leader_of(&mut r.conn(), household_id).await?)
    }

    /// Progress of the village the household leads; [`MarketError::NotAllowed`] if it
    /// leads none.
    pub async fn village_progress(&self, leader_household_id: i64) -> Result<VillageProgress, MarketError> {
        let mut r = self.read().await?;
        let mut c = r.conn();
        if let Some(p) = queries::village_progress(&mut c, leader_household_id).await? {
            return Ok(p);
        }
        match queries::household_by_id(&mut c, leader_household_id).await? {
            Some(_) => Err(MarketError::NotAllowed("only a village team leader can see this".to_owned())),
            None => Err(MarketError::NotFound("household")),
        }
    }

    /// Counts over the whole market.
    pub async fn stats(&self) -> Result<Stats, MarketError> {
        let mut r = self.read().await?;
        Ok(queries::stats(&mut r.conn()).await?)
    }

    /// Audit events per kind, by kind.
    pub async fn events_by_kind(&self) -> Result<Vec<(String, i64)>, MarketError> {
        let mut r = self.read().await?;
        Ok(queries::events_by_kind(&mut r.conn()).await?)
    }

    // ---- actions -----------------------------------------------------------------------

    /// Opens a listing: 1..=100000 kg at 1000..=100000000 đồng per kg. Its code is
    /// `L` + the id (`L000123`).
    #[allow(clippy::too_many_arguments)]
    pub async fn create_listing(
        &self,
        actor: &Actor,
        key: IdemKey,
        household_id: i64,
        product_id: i64,
        quantity_kg: i64,
        price_per_kg: i64,
    ) -> Result<Listing, MarketError> {
        check_range("quantity_kg", quantity_kg, &QUANTITY_KG)?;
        check_range("price_per_kg", price_per_kg, &PRICE_PER_KG)?;
        match self
            .act(actor, key, Action::CreateListing { household_id, product_id, quantity_kg, price_per_kg })
            .await?
        {
            Done::Listing(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }

    /// The household makes a move on one of its orders, as the order state machine
    /// ([`order_flow`]) allows: accept or reject a new order (rejecting puts the quantity
    /// back on offer), hand an accepted one to the post office (`detail`: the tracking code,
    /// optional), or call off an accepted one (`detail`: the reason, required; the quantity
    /// goes back on offer). A move the status does not allow is
    /// [`MarketError::OrderState`]; paying goes through [`Market::confirm_payment`].
    pub async fn move_order(
        &self,
        actor: &Actor,
        key: IdemKey,
        household_id: i64,
        order_id: i64,
        mv: OrderMove,
        detail: Option<&str>,
    ) -> Result<Order, MarketError> {
        let detail = match (mv, detail.map(str::trim).filter(|d| !d.is_empty())) {
            (OrderMove::Pay, _) => {
                return Err(MarketError::NotAllowed("a payment is confirmed with the PIN".to_owned()));
            }
            (OrderMove::Cancel, None) => {
                return Err(MarketError::Invalid { field: "reason", reason: "must not be empty".to_owned() });
            }
            (OrderMove::Cancel, Some(d)) => Some(clean_name("reason", d)?),
            (OrderMove::Ship, Some(d)) => Some(clean_name("tracking_code", d)?),
            (_, _) => None,
        };
        match self.act(actor, key, Action::MoveOrder { household_id, order_id, mv, detail }).await? {
            Done::Order(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// Sets the household's payment PIN: exactly 4 digits, stored as an Argon2id hash. Only
    /// when none is set: a set PIN is changed by the team leader's reset (so whoever holds
    /// the phone cannot replace it).
    pub async fn set_pin(
        &self,
        actor: &Actor,
        key: IdemKey,
        household_id: i64,
        pin: &str,
    ) -> Result<(), MarketError> {
        check_key(&key)?;
        if !pin::well_formed(pin) {
            return Err(MarketError::Invalid { field: "pin", reason: "must be exactly 4 digits".to_owned() });
        }
        // A repeat is replayed by the writer: no need to hash again.
        let hash = if self.key_used(&key).await? {
            String::new()
        } else {
            pin::hash(pin.to_owned(), self.inner.pepper.clone()).await?
        };
        match self.act(actor, key, Action::SetPin { household_id, hash }).await? {
            Done::Nothing => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Confirms the payment of a Shipped or Delivered order (→ Paid, a payment row),
    /// checking the PIN: wrong → [`MarketError::PinWrong`] with the tries left (counted
    /// durably; a malformed PIN counts as wrong); the 5th wrong in a row →
    /// [`MarketError::PinLocked`] for 15 minutes; right → the count starts afresh.
    pub async fn confirm_payment(
        &self,
        actor: &Actor,
        key: IdemKey,
        household_id: i64,
        order_id: i64,
        pin: &str,
    ) -> Result<Order, MarketError> {
        check_key(&key)?;
        let pin = self.check_pin(&key, household_id, pin).await?;
        match self.act(actor, key, Action::ConfirmPayment { household_id, order_id, pin }).await? {
            Done::Order(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// The slow half of a PIN check, done before the action reaches the writer (on the
    /// blocking pool): whether `pin` is the household's, and the hash it was checked
    /// against. The writer refuses in its order (not a leader, no PIN, locked, the PIN
    /// changed meanwhile), counts a wrong PIN and locks at the fifth; so no PIN set or a
    /// lock checks nothing here (no hashing while locked), nor does a repeat of a used key
    /// (the writer replays the first outcome).
    async fn check_pin(&self, key: &IdemKey, household_id: i64, pin: &str) -> Result<PinCheck, MarketError> {
        let unchecked = PinCheck { ok: false, hash: None, rehash: None };
        if self.key_used(key).await? {
            return Ok(unchecked);
        }
        let row = {
            let mut r = self.read().await?;
            r.conn()
                .fetch_optional(
                    "SELECT pin_hash, pin_locked_until_ms FROM households WHERE id = $1",
                    args![household_id],
                )
                .await?
                .ok_or(MarketError::NotFound("household"))?
        };
        let Some(hash) = row.opt_text("pin_hash")? else { return Ok(unchecked) };
        if row.int("pin_locked_until_ms")? > now_ms() {
            return Ok(unchecked);
        }
        let checked = if pin::well_formed(pin) {
            pin::verify(pin.to_owned(), hash.clone(), self.inner.pepper.clone()).await?
        } else {
            pin::Checked::Wrong
        };
        let (ok, rehash) = match checked {
            pin::Checked::Wrong => (false, None),
            pin::Checked::Right => (true, None),
            pin::Checked::RightUpgrade(new) => (true, Some(new)),
        };
        Ok(PinCheck { ok, hash: Some(hash), rehash })
    }

    /// Changes one of the household's listings: price, quantity (a sold-out listing becomes
    /// active again) or stop. A stopped listing cannot change.
    pub async fn update_listing(
        &self,
        actor: &Actor,
        key: IdemKey,
        household_id: i64,
        listing_id: i64,
        change: ListingChange,
    ) -> Result<Listing, MarketError> {
        match &change {
            ListingChange::Price(p) => check_range("price_per_kg", *p, &PRICE_PER_KG)?,
            ListingChange::Quantity(q) => check_range("quantity_kg", *q, &QUANTITY_KG)?,
            ListingChange::Stop | ListingChange::Restart => {}
        }
        match self.act(actor, key, Action::UpdateListing { household_id, listing_id, change }).await? {
            Done::Listing(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }

    /// A household registers itself: in the commune's village of that name (matched without
    /// regard to case and spacing; created, marked pending, if new). The household is
    /// pending until its team leader confirms it; the event names the leader.
    #[allow(clippy::too_many_arguments)]
    pub async fn self_register(
        &self,
        actor: &Actor,
        key: IdemKey,
        msisdn: &str,
        commune_code: u32,
        village_name: &str,
        name: &str,
        lang: Lang,
    ) -> Result<Household, MarketError> {
        let msisdn = normalize_msisdn(msisdn)?;
        let village_name = clean_name("village_name", village_name)?;
        let name = clean_name("name", name)?;
        match self
            .act(actor, key, Action::SelfRegister { msisdn, commune_code, village_name, name, lang })
            .await?
        {
            Done::Household(h) => Ok(h),
            other => Err(unexpected(other)),
        }
    }

    /// A team leader registers a household in their village (language Vietnamese).
    /// [`MarketError::NotAllowed`] if `leader_household_id` leads no village,
    /// [`MarketError::AlreadyRegistered`] if the MSISDN is taken.
    pub async fn register_household(
        &self,
        actor: &Actor,
        key: IdemKey,
        leader_household_id: i64,
        msisdn: &str,
        name: &str,
    ) -> Result<Household, MarketError> {
        let msisdn = normalize_msisdn(msisdn)?;
        let name = clean_name("name", name)?;
        match self.act(actor, key, Action::RegisterHousehold { leader_household_id, msisdn, name }).await? {
            Done::Household(h) => Ok(h),
            other => Err(unexpected(other)),
        }
    }

    /// A team leader clears the PIN (hash, failure count and lock) of a household of their
    /// village, which can then set a new one. The leader's own PIN authorises it, checked
    /// as a payment's is (wrong → [`MarketError::PinWrong`], counted with the payments'
    /// wrong PINs; the 5th in a row → [`MarketError::PinLocked`]; none set →
    /// [`MarketError::PinNotSet`]): whoever dials as the leader cannot reset PINs without it.
    pub async fn reset_pin(
        &self,
        actor: &Actor,
        key: IdemKey,
        leader_household_id: i64,
        leader_pin: &str,
        msisdn: &str,
    ) -> Result<(), MarketError> {
        check_key(&key)?;
        let msisdn = normalize_msisdn(msisdn)?;
        let pin = self.check_pin(&key, leader_household_id, leader_pin).await?;
        match self.act(actor, key, Action::ResetPin { leader_household_id, pin, msisdn }).await? {
            Done::Nothing => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// A team leader decides about a household of their village: confirms or refuses its
    /// self-registration (the household is told by SMS), or records its e-payment account.
    /// [`MarketError::NotAllowed`] for a household of another village or one confirmed
    /// already (confirm, refuse).
    pub async fn leader_decides(
        &self,
        actor: &Actor,
        key: IdemKey,
        leader_household_id: i64,
        household_id: i64,
        what: LeaderDecision,
    ) -> Result<Option<Household>, MarketError> {
        match self.act(actor, key, Action::Leader { leader_household_id, household_id, what }).await? {
            Done::Household(h) => Ok(Some(h)),
            Done::Nothing => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Records whether the household has an e-payment account (the CLI import, and later
    /// the payment partners); counted in [`Market::village_progress`].
    pub async fn set_epay(
        &self,
        actor: &Actor,
        key: IdemKey,
        household_id: i64,
        has_epay: bool,
    ) -> Result<Household, MarketError> {
        match self.act(actor, key, Action::SetEpay { household_id, has_epay }).await? {
            Done::Household(h) => Ok(h),
            other => Err(unexpected(other)),
        }
    }

    /// Records a USSD dialogue that ended (completed, cut, timed out, replaced by a redial):
    /// one audit event per dialogue, written when it ends, with when it opened, how many
    /// answers the subscriber gave and how it ended. Where people drop out is read from
    /// these. Dialogues open when the daemon stops are recorded as ended by "shutdown"; a
    /// crash leaves those open at the time without an event. The event goes with the
    /// writer's next group: this waits for room in the write queue, not for the commit. Only
    /// a stopped writer drops it (counted in [`WriterCounters::dropped_events`]).
    pub async fn record_dialogue(&self, msisdn: &str, opened_at_ms: i64, inputs: u32, outcome: &str) {
        let msisdn = normalize_msisdn(msisdn).unwrap_or_else(|_| msisdn.chars().take(32).collect());
        let outcome: String = outcome.chars().take(100).collect();
        #[derive(serde::Serialize)]
        struct Closed<'a> {
            outcome: &'a str,
            opened_at_ms: i64,
            inputs: u32,
        }
        let event = EventRow {
            at_ms: now_ms(),
            actor: msisdn.clone(),
            channel: Channel::Ussd,
            kind: "dialogue_closed",
            subject: format!("msisdn:{msisdn}"),
            data: writer::event_json(&Closed { outcome: &outcome, opened_at_ms, inputs }),
        };
        // Waits for room in the writer's queue rather than dropping the event: under a burst
        // dialogues end a little slower, and the audit log stays complete.
        if self.inner.jobs.send(Job::Event(event)).await.is_err() {
            self.inner.counters.dropped_events.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(msisdn = %mask_msisdn(&msisdn), "writer stopped: dialogue event dropped");
        }
    }

    /// Places an order for an active listing without a buyer's number or a delivery
    /// address (the command line and tests; partners go through the HTTP API, which
    /// requires both): see [`Market::place_order_with`].
    #[allow(clippy::too_many_arguments)]
    pub async fn place_order(
        &self,
        actor: &Actor,
        key: IdemKey,
        listing_id: i64,
        buyer_name: &str,
        quantity_kg: i64,
        amount: i64,
    ) -> Result<Order, MarketError> {
        let order = NewOrder {
            listing_id,
            buyer_name: buyer_name.to_owned(),
            quantity_kg,
            amount,
            buyer_phone: None,
            delivery: None,
        };
        self.place_order_with(actor, key, order).await
    }

    /// Places an order for an active listing. The amount must be the quantity times the
    /// listing's price (else [`MarketError::Invalid`] on `amount`, naming the figure), the
    /// delivery commune one of the 2025 list. The quantity is taken off the listing (sold out
    /// at 0). An SMS telling the household is queued in the outbox, in its language, in the
    /// same transaction.
    pub async fn place_order_with(
        &self,
        actor: &Actor,
        key: IdemKey,
        order: NewOrder,
    ) -> Result<Order, MarketError> {
        let order = check_new_order(order)?;
        match self.act(actor, key, Action::PlaceOrder(order)).await? {
            Done::Order(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// Marks an order delivered by the post office (for tests and seed-demo now; later the
    /// partners' shipment events): Shipped → Delivered.
    pub async fn mark_delivered(
        &self,
        actor: &Actor,
        key: IdemKey,
        order_id: i64,
    ) -> Result<Order, MarketError> {
        match self.act(actor, key, Action::MarkDelivered { order_id }).await? {
            Done::Order(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a leader household: the village's team, led by it (for seeding and the CLI
    /// import). The village is created if new. A household already registered in that
    /// village becomes its leader; one registered elsewhere is
    /// [`MarketError::AlreadyRegistered`]; a village with a leader already is
    /// [`MarketError::NotAllowed`].
    #[allow(clippy::too_many_arguments)]
    pub async fn register_leader(
        &self,
        actor: &Actor,
        key: IdemKey,
        msisdn: &str,
        name: &str,
        commune_code: u32,
        village_name: &str,
        lang: Lang,
    ) -> Result<Household, MarketError> {
        let msisdn = normalize_msisdn(msisdn)?;
        let name = clean_name("name", name)?;
        let village_name = clean_name("village_name", village_name)?;
        match self
            .act(actor, key, Action::RegisterLeader { msisdn, name, commune_code, village_name, lang })
            .await?
        {
            Done::Household(h) => Ok(h),
            other => Err(unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_should_be_trimmed_collapsed_and_bounded() {
        assert_eq!(clean_name("name", "  Hoàng   Văn  A ").unwrap(), "Hoàng Văn A");
        assert!(matches!(clean_name("name", "   "), Err(MarketError::Invalid { field: "name", .. })));
        assert!(clean_name("name", &"a".repeat(81)).is_err());
        assert!(clean_name("name", &"ă".repeat(80)).is_ok());
        assert!(clean_name("name", "a\u{7}b").is_err());
    }

    #[test]
    fn names_should_refuse_formulas_bidi_digits_and_numbers() {
        assert!(clean_name("name", "=HYPERLINK(\"x\")").is_err());
        assert!(clean_name("name", "+A1").is_err());
        assert!(clean_name("name", "abc\u{202E}cba").is_err());
        assert_eq!(person_name("name", " Lý  Thị Mai ").unwrap(), "Lý Thị Mai");
        assert!(person_name("name", "0912345678").is_err(), "a phone number is not a name");
        assert!(person_name("name", "abc1").is_err());
        assert!(person_name("name", "a").is_err());
        assert_eq!(village_name("v", "Thôn 3").unwrap(), "Thôn 3");
        assert!(village_name("v", "12").is_err());
    }

    #[test]
    fn village_keys_should_ignore_accents_case_and_the_word_for_village() {
        assert_eq!(village_match_key("Thôn Đồng Lâm"), "dong lam");
        assert_eq!(village_match_key("dong  LAM"), "dong lam");
        assert_eq!(village_match_key("Bản Chu"), village_match_key("ban chu"));
        assert_eq!(village_match_key("Thôn"), "thon");
    }

    #[test]
    fn keys_should_be_bounded() {
        assert!(check_key(&IdemKey(String::new())).is_err());
        assert!(check_key(&IdemKey("k".repeat(201))).is_err());
        assert!(check_key(&IdemKey("ussd:viettel:42:3".into())).is_ok());
    }
}
