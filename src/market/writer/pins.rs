//! The writer's rules for PINs and payments: the first PIN, the one PIN check (counted and
//! locked) that confirms a payment or a leader's reset, the reset.

use super::*;

pub(super) async fn set_pin(
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
pub(super) struct PinState {
    pub(super) household_id: i64,
    pub(super) failures_before: i64,
    pub(super) locked_until: i64,
}

pub(super) async fn pin_state(
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

pub(super) async fn confirm_payment(
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

pub(super) async fn reset_pin(
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
