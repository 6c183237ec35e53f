//! The all-or-nothing household import (see [`crate::market::household_import`]), applied
//! by the writer in the action's one savepoint.
//!
//! First every line is checked against the database (reads only, the state the lines
//! build up kept in memory: MSISDNs taken, villages and whether they have a leader); only
//! if none is refused, and the import is not a dry run, is anything written. A refusal is
//! answered with an error, so the savepoint (idempotency key included) rolls back.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::super::household_import::{
    HouseholdLine, ImportBatch, ImportProgress, ImportTotals, LineRejection, REJECTED_FIELD,
};
use super::{Applied, Done, Events, village_key};
use crate::args;
use crate::market::queries;
use crate::market::types::MarketError;
use crate::store::{Arg, Conn};

/// A village as the lines so far leave it.
struct Village {
    /// None: created by this import.
    id: Option<i64>,
    has_leader: bool,
}

/// Applies an import; see the module documentation.
pub(super) async fn apply(
    c: &mut Conn<'_>,
    ev: &mut Events<'_>,
    now: i64,
    batch: ImportBatch,
) -> Result<Applied, MarketError> {
    let ImportBatch { mut lines, commit, progress, rejected } = batch;
    // Leaders first, so the households of their villages can join.
    lines.sort_by_key(|l| (!l.leader, l.line));
    let mut taken = registered(c, &lines).await?;
    let mut communes: HashMap<u32, bool> = HashMap::new();
    let mut villages: HashMap<(u32, String), Village> = HashMap::new();
    let mut refused = Vec::new();
    let mut status = ImportProgress::default();
    for line in &lines {
        if let Err(reason) = check(c, line, &mut taken, &mut communes, &mut villages).await? {
            refused.push(LineRejection { line: line.line, reason });
        }
        status.checked += 1;
        progress.send_replace(status);
    }
    if !refused.is_empty() || !commit {
        let reason = format!("{} lines refused", refused.len());
        rejected.send_replace(refused);
        return Err(MarketError::Invalid { field: REJECTED_FIELD, reason });
    }

    // Every line passed: write them. The villages are looked up again, by key, as they
    // are created on the way.
    let mut ids: HashMap<(u32, String), i64> =
        villages.into_iter().filter_map(|(k, v)| v.id.map(|id| (k, id))).collect();
    let mut totals = ImportTotals::default();
    let mut last_id = 0;
    for line in &lines {
        let vkey = (line.commune_code, village_key(&line.village));
        let village_id = match ids.get(&vkey) {
            Some(id) => *id,
            None => {
                // A leader's village is confirmed; a pending household's waits for one.
                let pending = !line.leader;
                let id = c
                    .insert(
                        "INSERT INTO villages (commune_code, name, name_key, pending, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5)",
                        args![i64::from(line.commune_code), &line.village, &vkey.1, pending, now],
                    )
                    .await?;
                ev.push(
                    "village_created",
                    format!("village:{id}"),
                    json!({ "commune_code": line.commune_code, "name": line.village, "pending": pending,
                            "imported": true }),
                );
                totals.villages_created += 1;
                ids.insert(vkey, id);
                id
            }
        };
        let id = c
            .insert_or_skip(
                "INSERT INTO households (msisdn, name, village_id, language, has_epay, pending, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (msisdn) DO NOTHING",
                args![
                    &line.msisdn,
                    &line.name,
                    village_id,
                    line.language.as_str(),
                    line.has_epay,
                    line.pending,
                    now
                ],
            )
            .await?;
        let Some(id) = id else {
            // Registered meanwhile by another node (PostgreSQL).
            rejected.send_replace(vec![LineRejection {
                line: line.line,
                reason: "already registered".to_owned(),
            }]);
            return Err(MarketError::Invalid { field: REJECTED_FIELD, reason: "1 line refused".to_owned() });
        };
        last_id = id;
        totals.households += 1;
        totals.pending += u64::from(line.pending);
        totals.with_epay += u64::from(line.has_epay);
        if line.leader {
            let team_id = c
                .insert(
                    "INSERT INTO teams (village_id, leader_household_id, created_at_ms) VALUES ($1, $2, $3)",
                    args![village_id, id, now],
                )
                .await?;
            c.execute("INSERT INTO team_members (team_id, household_id) VALUES ($1, $2)", args![team_id, id])
                .await?;
            c.execute("UPDATE villages SET pending = $2 WHERE id = $1 AND pending", args![village_id, false])
                .await?;
            totals.leaders += 1;
            ev.push(
                "leader_registered",
                format!("household:{id}"),
                json!({ "village_id": village_id, "team_id": team_id, "commune_code": line.commune_code,
                        "promoted": false, "imported": true, "has_epay": line.has_epay }),
            );
        } else {
            ev.push(
                "household_imported",
                format!("household:{id}"),
                json!({ "village_id": village_id, "commune_code": line.commune_code, "pending": line.pending,
                        "has_epay": line.has_epay }),
            );
        }
        status.written += 1;
        progress.send_replace(status);
    }
    Ok(Applied { reply: Ok(Done::Imported(totals)), result_id: Some(last_id), outcome: "ok".to_owned() })
}

/// The lines' MSISDNs that are registered already.
async fn registered(c: &mut Conn<'_>, lines: &[HouseholdLine]) -> Result<HashSet<String>, MarketError> {
    let rows = c
        .fetch_in(
            |list| format!("SELECT msisdn FROM households WHERE msisdn IN ({list})"),
            lines.iter().map(|l| Arg::from(&l.msisdn)).collect(),
        )
        .await?;
    rows.iter().map(|row| Ok(row.text("msisdn")?)).collect()
}

/// Checks one line against the database and the lines before it (leaders first); on
/// success, records what it will change.
async fn check(
    c: &mut Conn<'_>,
    line: &HouseholdLine,
    taken: &mut HashSet<String>,
    communes: &mut HashMap<u32, bool>,
    villages: &mut HashMap<(u32, String), Village>,
) -> Result<Result<(), String>, MarketError> {
    if taken.contains(&line.msisdn) {
        return Ok(Err("already registered".to_owned()));
    }
    let known = match communes.get(&line.commune_code) {
        Some(k) => *k,
        None => {
            let k = queries::commune(c, line.commune_code).await?.is_some();
            communes.insert(line.commune_code, k);
            k
        }
    };
    if !known {
        return Ok(Err(format!("unknown commune code {}", line.commune_code)));
    }
    let vkey = (line.commune_code, village_key(&line.village));
    if !villages.contains_key(&vkey) {
        let row = c
            .fetch_optional(
                "SELECT v.id, EXISTS (SELECT 1 FROM teams t WHERE t.village_id = v.id) AS has_leader \
                 FROM villages v WHERE v.commune_code = $1 AND v.name_key = $2",
                args![i64::from(line.commune_code), &vkey.1],
            )
            .await?;
        let village = match row {
            Some(r) => Village { id: Some(r.int("id")?), has_leader: r.flag("has_leader")? },
            None => Village { id: None, has_leader: false },
        };
        villages.insert(vkey.clone(), village);
    }
    let Some(village) = villages.get_mut(&vkey) else {
        return Ok(Err("village lookup failed".to_owned()));
    };
    if line.leader {
        if village.has_leader {
            return Ok(Err(format!(
                "village {:?} of commune {} already has a team leader",
                line.village, line.commune_code
            )));
        }
        village.has_leader = true;
    } else if !line.pending && !village.has_leader {
        return Ok(Err(format!(
            "village {:?} of commune {} has no team leader: add a line for its leader (leader = yes), or \
             mark the household pending",
            line.village, line.commune_code
        )));
    }
    taken.insert(line.msisdn.clone());
    Ok(Ok(()))
}
