//! SMS the writer queues in the outbox with the action that causes them.

use super::*;

/// One SMS to queue.
pub(super) struct Sms<'a> {
    pub(super) msisdn: &'a str,
    pub(super) text: String,
    pub(super) lang: Lang,
    /// What it tells (`order_new`, `payment_received`, ...).
    pub(super) kind: &'a str,
    /// Valid this long from now.
    pub(super) ttl_ms: i64,
}

/// Queues one SMS in the outbox, due now, in the transaction of the action that causes it,
/// with its `sms_queued` event (`kind` and what `about` holds); returns its id.
pub(super) async fn enqueue_sms(
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
pub(super) async fn tell_household(
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
pub(super) async fn household_contact(
    c: &mut Conn<'_>,
    household_id: i64,
) -> Result<(String, Lang), MarketError> {
    let row =
        c.fetch_one("SELECT msisdn, language FROM households WHERE id = $1", args![household_id]).await?;
    let language = row.text("language")?;
    let lang = Lang::parse(&language).ok_or_else(|| corrupt("households.language", &language))?;
    Ok((row.text("msisdn")?, lang))
}
