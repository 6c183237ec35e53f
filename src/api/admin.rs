//! Admin routes (scope `admin`): households (list, one, create, update, CSV import),
//! villages, teams and their leaders and members.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Authed, NeedAdmin};
use super::body::{CsvBody, JsonBody, Params, PathParam, idempotency_key, path_id};
use super::error::ApiError;
use super::partner::write;
use super::{AppState, views};
use crate::market::reports::{ApiOp, HouseholdFilter, ImportRow};
use crate::market::{Lang, Market, normalize_msisdn};

/// Most lines in one import.
const MAX_IMPORT_ROWS: usize = 5000;

fn lang(field: &str, s: Option<&str>) -> Result<Lang, ApiError> {
    match s.map(str::trim) {
        None | Some("") => Ok(Lang::Vi),
        Some(v) => Lang::parse(v).ok_or_else(|| ApiError::bad(field, format!("`{v}` is not one of vi, en"))),
    }
}

async fn commune_exists(market: &Market, field: &str, code: u32) -> Result<(), ApiError> {
    match market.commune(code).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::bad(field, format!("no commune {code} in the 2025 list"))),
    }
}

/// `GET /v1/admin/households?commune=&village_id=&msisdn=&limit=&after=`
pub async fn households(
    Authed(_c, _): Authed<NeedAdmin>,
    State(st): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    params.only(&["commune", "village_id", "msisdn", "limit", "after"])?;
    let msisdn = match params.get("msisdn") {
        Some(m) => Some(normalize_msisdn(m).map_err(|e| ApiError::bad("msisdn", e.to_string()))?),
        None => None,
    };
    let filter = HouseholdFilter {
        commune_code: params.number::<u32>("commune", 1..=99_999)?,
        village_id: params.number::<i64>("village_id", 1..=i64::MAX)?,
        msisdn,
        after: params.number::<i64>("after", 0..=i64::MAX)?.unwrap_or(0),
        limit: params.number::<i64>("limit", 1..=1000)?.unwrap_or(100),
    };
    let rows = st.market.admin_households(&filter).await?;
    let next = if rows.len() as i64 == filter.limit { rows.last().map(|h| h.household.id) } else { None };
    Ok(Json(
        json!({ "households": rows.iter().map(views::household).collect::<Vec<_>>(), "next_after": next }),
    )
    .into_response())
}

/// `GET /v1/admin/households/{id}`
pub async fn household(
    Authed(_c, _): Authed<NeedAdmin>,
    State(st): State<AppState>,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "household")?;
    let h = st.market.admin_household(id).await?.ok_or_else(|| ApiError::not_found("household"))?;
    Ok(Json(views::household(&h)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHousehold {
    msisdn: String,
    name: String,
    commune_code: u32,
    village_name: String,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    has_epay: bool,
}

/// `POST /v1/admin/households`
pub async fn create_household(
    Authed(caller, _): Authed<NeedAdmin>,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: JsonBody<NewHousehold>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, false)?;
    let NewHousehold { msisdn, name, commune_code, village_name, language, has_epay } = body.value;
    let lang = lang("language", language.as_deref())?;
    commune_exists(&st.market, "commune_code", commune_code).await?;
    let op = ApiOp::CreateHousehold { msisdn, name, commune_code, village_name, lang, has_epay };
    write(&st, &caller, key, body.hash, views::household_created, op).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HouseholdChange {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    has_epay: Option<bool>,
    #[serde(default)]
    pending: Option<bool>,
    #[serde(default)]
    commune_code: Option<u32>,
    #[serde(default)]
    village_name: Option<String>,
}

/// `PATCH /v1/admin/households/{id}`
pub async fn update_household(
    Authed(caller, _): Authed<NeedAdmin>,
    State(st): State<AppState>,
    PathParam(id): PathParam,
    headers: HeaderMap,
    body: JsonBody<HouseholdChange>,
) -> Result<Response, ApiError> {
    let household_id = path_id(&id, "household")?;
    let key = idempotency_key(&headers, false)?;
    let HouseholdChange { name, language, has_epay, pending, commune_code, village_name } = body.value;
    let lang = match language {
        Some(l) => Some(lang("language", Some(&l))?),
        None => None,
    };
    let village = match (commune_code, village_name) {
        (Some(c), Some(v)) => {
            commune_exists(&st.market, "commune_code", c).await?;
            Some((c, v))
        }
        (None, None) => None,
        (Some(_), None) => return Err(ApiError::bad("village_name", "give it with commune_code")),
        (None, Some(_)) => return Err(ApiError::bad("commune_code", "give it with village_name")),
    };
    if name.is_none() && lang.is_none() && has_epay.is_none() && pending.is_none() && village.is_none() {
        return Err(ApiError::BadRequest { field: None, message: "nothing to change".into() });
    }
    if st.market.admin_household(household_id).await?.is_none() {
        return Err(ApiError::not_found("household"));
    }
    let op = ApiOp::UpdateHousehold { household_id, name, lang, has_epay, pending, village };
    write(&st, &caller, key, body.hash, views::household_updated, op).await
}

/// Splits CSV text (RFC 4180: quoted fields, `""` escapes, CRLF or LF, blank lines skipped)
/// into records, each with the line it starts on: the `csv` crate, as `households import`
/// reads files. A quote left open (the crate would take the rest of the text into the
/// field) is refused.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, ApiError> {
    if text.matches('"').count() % 2 == 1 {
        let line = text.rfind('"').map_or(1, |i| text[..i].matches('\n').count() + 1);
        return Err(ApiError::bad(format!("csv[{line}]"), "a quoted field is not closed"));
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut records = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            ApiError::bad(format!("csv[{line}]"), format!("unreadable: {e}"))
        })?;
        let line = crate::market::household_import::record_line(text.as_bytes(), &record) as usize;
        records.push((line, record.iter().map(str::to_owned).collect()));
    }
    Ok(records)
}

fn flag(field: &str, v: &str) -> Result<bool, ApiError> {
    crate::market::household_import::parse_flag(v).ok_or_else(|| {
        ApiError::bad(field, format!("`{}` is not one of yes, no, 1, 0, true, false", v.trim()))
    })
}

/// Parses and checks an import: a header naming `msisdn`, `name`, `commune_code`,
/// `village_name` (or `village`) and optionally `language`, `has_epay`, then one household
/// per line.
async fn import_rows(market: &Market, text: &str) -> Result<Vec<ImportRow>, ApiError> {
    const COLUMNS: [&str; 6] = ["msisdn", "name", "commune_code", "village_name", "language", "has_epay"];
    let mut records = csv_records(text)?.into_iter();
    let Some((_, header)) = records.next() else {
        return Err(ApiError::bad("csv", "empty: a header line and one household per line are needed"));
    };
    let mut index = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase();
        // `households export` (the command line) names the column `village`.
        let name = if name == "village" { "village_name".to_owned() } else { name };
        if !COLUMNS.contains(&name.as_str()) {
            return Err(ApiError::bad(
                "csv[1]",
                format!("unknown column `{name}`; known: {}", COLUMNS.join(", ")),
            ));
        }
        if index.insert(name.clone(), i).is_some() {
            return Err(ApiError::bad("csv[1]", format!("column `{name}` given twice")));
        }
    }
    for required in &COLUMNS[..4] {
        if !index.contains_key(*required) {
            return Err(ApiError::bad("csv[1]", format!("column `{required}` is missing")));
        }
    }
    let mut rows = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut communes: HashSet<u32> = HashSet::new();
    for (line, fields) in records {
        if rows.len() == MAX_IMPORT_ROWS {
            return Err(ApiError::bad("csv", format!("at most {MAX_IMPORT_ROWS} households per import")));
        }
        if fields.len() != header.len() {
            return Err(ApiError::bad(
                format!("csv[{line}]"),
                format!("{} fields, the header has {}", fields.len(), header.len()),
            ));
        }
        let get = |name: &str| index.get(name).and_then(|i| fields.get(*i)).map(|s| s.trim()).unwrap_or("");
        let at = |name: &str| format!("csv[{line}].{name}");
        let msisdn =
            normalize_msisdn(get("msisdn")).map_err(|e| ApiError::bad(at("msisdn"), e.to_string()))?;
        if let Some(first) = seen.insert(msisdn.clone(), line) {
            return Err(ApiError::bad(at("msisdn"), format!("also on line {first}")));
        }
        let commune_code: u32 = get("commune_code").parse().map_err(|_| {
            ApiError::bad(at("commune_code"), format!("`{}` is not a commune code", get("commune_code")))
        })?;
        if communes.insert(commune_code) {
            commune_exists(market, &at("commune_code"), commune_code).await?;
        }
        for name in ["name", "village_name"] {
            if get(name).is_empty() {
                return Err(ApiError::bad(at(name), "must not be empty"));
            }
        }
        rows.push(ImportRow {
            line,
            msisdn,
            name: get("name").to_owned(),
            commune_code,
            village_name: get("village_name").to_owned(),
            lang: lang(&at("language"), Some(get("language")))?,
            has_epay: flag(&at("has_epay"), get("has_epay"))?,
        });
    }
    if rows.is_empty() {
        return Err(ApiError::bad("csv", "no household after the header"));
    }
    Ok(rows)
}

/// `POST /v1/admin/households/import` (`text/csv`): all lines or none; lines whose MSISDN
/// is registered already are reported as `existing` and left alone.
pub async fn import_households(
    Authed(caller, _): Authed<NeedAdmin>,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: CsvBody,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, false)?;
    let rows = import_rows(&st.market, &body.text).await?;
    let op = ApiOp::ImportHouseholds { rows };
    write(&st, &caller, key, body.hash, views::import_done, op).await
}

/// `GET /v1/admin/villages?commune=`
pub async fn villages(
    Authed(_c, _): Authed<NeedAdmin>,
    State(st): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    params.only(&["commune"])?;
    let commune = params.number::<u32>("commune", 1..=99_999)?;
    let rows = st.market.villages(commune).await?;
    Ok(Json(json!({ "villages": rows.iter().map(views::village).collect::<Vec<_>>() })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVillage {
    commune_code: u32,
    name: String,
}

/// `POST /v1/admin/villages`: creates the village, or confirms a pending one (201), or
/// returns the one there (200).
pub async fn create_village(
    Authed(caller, _): Authed<NeedAdmin>,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: JsonBody<NewVillage>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, false)?;
    let NewVillage { commune_code, name } = body.value;
    commune_exists(&st.market, "commune_code", commune_code).await?;
    write(&st, &caller, key, body.hash, views::village_saved, ApiOp::CreateVillage { commune_code, name })
        .await
}

/// `GET /v1/admin/teams?commune=`
pub async fn teams(
    Authed(_c, _): Authed<NeedAdmin>,
    State(st): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    params.only(&["commune"])?;
    let commune = params.number::<u32>("commune", 1..=99_999)?;
    let rows = st.market.teams(commune).await?;
    Ok(Json(json!({ "teams": rows.iter().map(views::team).collect::<Vec<_>>() })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLeader {
    msisdn: String,
    name: String,
    commune_code: u32,
    village_name: String,
    #[serde(default)]
    language: Option<String>,
}

/// `POST /v1/admin/leaders`: a village's team leader; the team is created (and the village
/// if new). A household of that village becomes its leader.
pub async fn register_leader(
    Authed(caller, _): Authed<NeedAdmin>,
    State(st): State<AppState>,
    headers: HeaderMap,
    body: JsonBody<NewLeader>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, false)?;
    let NewLeader { msisdn, name, commune_code, village_name, language } = body.value;
    let lang = lang("language", language.as_deref())?;
    commune_exists(&st.market, "commune_code", commune_code).await?;
    let op = ApiOp::RegisterLeader { msisdn, name, commune_code, village_name, lang };
    write(&st, &caller, key, body.hash, views::team_saved, op).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    household_id: i64,
}

/// `POST /v1/admin/teams/{id}/members`: adds a household of the team's village (201), or
/// finds it there (200).
pub async fn add_member(
    Authed(caller, _): Authed<NeedAdmin>,
    State(st): State<AppState>,
    PathParam(id): PathParam,
    headers: HeaderMap,
    body: JsonBody<NewMember>,
) -> Result<Response, ApiError> {
    let team_id = path_id(&id, "team")?;
    let key = idempotency_key(&headers, false)?;
    let op = ApiOp::AddTeamMember { team_id, household_id: body.value.household_id };
    write(&st, &caller, key, body.hash, views::team_saved, op).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_should_handle_quotes_crlf_and_blank_lines() {
        let text = "a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\r\n\r\n1,\n\"multi\nline\",z";
        let r = csv_records(text).unwrap();
        assert_eq!(r[0], (1, vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(r[1], (2, vec!["x, y".to_owned(), "say \"hi\"".to_owned()]));
        assert_eq!(r[2], (4, vec!["1".to_owned(), String::new()]));
        assert_eq!(r[3], (5, vec!["multi\nline".to_owned(), "z".to_owned()]));
        assert!(csv_records("a,\"b").is_err());
    }

    #[test]
    fn flags_should_accept_plain_forms() {
        assert!(flag("f", "Yes").unwrap());
        assert!(!flag("f", "").unwrap());
        assert!(flag("f", "maybe").is_err());
    }
}
