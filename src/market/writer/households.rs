//! The writer's rules for households, villages, teams and leaders: registration (by a
//! leader, by oneself, confirmed or refused), e-payment accounts, leaders.

use super::*;

pub(super) async fn set_epay(
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

pub(super) async fn household_exists(c: &mut Conn<'_>, id: i64) -> Result<bool, MarketError> {
    Ok(c.fetch_optional("SELECT id FROM households WHERE id = $1", args![id]).await?.is_some())
}

/// A village name's matching key: lower case, whitespace collapsed.
pub(crate) fn village_key(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Finds the village (by its key) or creates it, with its `village_created` event; returns
/// (id, created).
pub(super) async fn find_or_create_village(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
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
    ev.push(
        "village_created",
        format!("village:{id}"),
        json!({ "commune_code": commune_code, "name": name, "pending": pending }),
    );
    Ok((id, true))
}

pub(super) async fn msisdn_taken(c: &mut Conn<'_>, msisdn: &str) -> Result<Option<i64>, MarketError> {
    let row = c.fetch_optional("SELECT id FROM households WHERE msisdn = $1", args![msisdn]).await?;
    Ok(row.map(|r| r.int("id")).transpose()?)
}

pub(super) async fn insert_household(
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

pub(super) async fn reread_household(c: &mut Conn<'_>, id: i64) -> Result<Applied, MarketError> {
    let household = queries::household_by_id(c, id).await?.ok_or(MarketError::NotFound("household"))?;
    ok(Done::Household(household), id)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn self_register(
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
    let loose = crate::market::village_match_key(&village_name);
    let known = queries::villages_of(c, commune_code)
        .await?
        .into_iter()
        .find(|v| crate::market::village_match_key(&v.name) == loose);
    let (village_id, created) = match known {
        Some(v) => (v.id, false),
        None => find_or_create_village(c, ev, commune_code, &village_name, true, now).await?,
    };
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

pub(super) async fn village_name_of(c: &mut Conn<'_>, village_id: i64) -> Result<String, MarketError> {
    Ok(c.fetch_one("SELECT name FROM villages WHERE id = $1", args![village_id]).await?.text("name")?)
}

/// A household of the village `leader_household_id` leads: (msisdn, name, pending, language).
pub(super) async fn member_of_led_village(
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

/// A self-registered household of the leader's village still waiting for them: its number,
/// name and language; refused when it is confirmed already.
async fn pending_member(
    c: &mut Conn<'_>,
    leader_household_id: i64,
    household_id: i64,
) -> Result<(String, String, Lang), MarketError> {
    let (msisdn, name, pending, lang) = member_of_led_village(c, leader_household_id, household_id).await?;
    if !pending {
        return Err(MarketError::NotAllowed(format!("{name} is confirmed already")));
    }
    Ok((msisdn, name, lang))
}

/// A leader confirms a self-registered household of their village: it can sell from now
/// on, and gets a welcome SMS saying how.
pub(super) async fn confirm_household(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    leader_household_id: i64,
    household_id: i64,
) -> Result<Applied, MarketError> {
    let (msisdn, name, lang) = pending_member(c, leader_household_id, household_id).await?;
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
pub(super) async fn refuse_household(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    leader_household_id: i64,
    household_id: i64,
) -> Result<Applied, MarketError> {
    let (msisdn, name, lang) = pending_member(c, leader_household_id, household_id).await?;
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
pub(super) async fn leader_set_epay(
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
pub(super) async fn leader_village(c: &mut Conn<'_>, leader_household_id: i64) -> Result<i64, MarketError> {
    match queries::led_village(c, leader_household_id).await? {
        Some(v) => Ok(v),
        None if household_exists(c, leader_household_id).await? => {
            Err(MarketError::NotAllowed("only a village team leader can do this".to_owned()))
        }
        None => Err(MarketError::NotFound("household")),
    }
}

pub(super) async fn register_household(
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

#[allow(clippy::too_many_arguments)]
pub(super) async fn register_leader(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    msisdn: String,
    name: String,
    commune_code: u32,
    village_name: String,
    lang: Lang,
) -> Result<Applied, MarketError> {
    let (village_id, _) = find_or_create_village(c, ev, commune_code, &village_name, false, now).await?;
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
