//! Progress reports (scope `reports:read`), replacing the daily hand-filled forms: per
//! commune, or per village of a commune, households with a digital shop and with an
//! e-payment account as shares of the households, against the province's targets (50% by
//! 2025, 80% by 2030), and orders and revenue, for a day or a range of days (Vietnam time).
//! JSON, or CSV with `Accept: text/csv`.
//!
//! The definitions are the leader's village progress's (`Market::village_progress`): a
//! household counts once its leader confirmed it (pending self-registrations do not); a
//! digital shop is a listing on sale now (active, quantity left); e-payment is an account
//! recorded for a confirmed household.

use axum::Json;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Authed, NeedReports};
use super::body::Params;
use super::error::ApiError;
use crate::market::reports::ProgressRow;
use crate::time::now_ms;
use crate::time::{format_date, parse_date, vn_day, vn_day_start_ms};

/// The share of households with a digital shop and an e-payment account aimed at by 2025.
pub const TARGET_2025: f64 = 0.5;
/// ... and by 2030.
pub const TARGET_2030: f64 = 0.8;
/// Longest range, in days.
const MAX_DAYS: i64 = 3660;

/// A report period: whole Vietnamese days, `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Period {
    first: i64,
    last: i64,
}

impl Period {
    /// `?date=D`, or `?from=A&to=B` (both), or today.
    fn from_params(p: &Params, today: i64) -> Result<Period, ApiError> {
        let day = |name: &str| -> Result<Option<i64>, ApiError> {
            match p.get(name) {
                None => Ok(None),
                Some(v) => parse_date(v).map(Some).ok_or_else(|| {
                    ApiError::bad(name, format!("`{v}` is not a date YYYY-MM-DD (2000 to 2100)"))
                }),
            }
        };
        let (date, from, to) = (day("date")?, day("from")?, day("to")?);
        let period = match (date, from, to) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(ApiError::bad("date", "give either date, or from and to"));
            }
            (Some(d), None, None) => Period { first: d, last: d },
            (None, Some(f), Some(t)) => Period { first: f, last: t },
            (None, Some(_), None) => return Err(ApiError::bad("to", "give it with from")),
            (None, None, Some(_)) => return Err(ApiError::bad("from", "give it with to")),
            (None, None, None) => Period { first: today, last: today },
        };
        if period.last < period.first {
            return Err(ApiError::bad("to", "must not be before from"));
        }
        if period.last - period.first >= MAX_DAYS {
            return Err(ApiError::bad("to", format!("the range must be at most {MAX_DAYS} days")));
        }
        Ok(period)
    }

    fn start_ms(self) -> i64 {
        vn_day_start_ms(self.first)
    }

    fn end_ms(self) -> i64 {
        vn_day_start_ms(self.last + 1)
    }
}

fn share(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}

fn totals(rows: &[ProgressRow]) -> ProgressRow {
    let mut t = ProgressRow {
        id: 0,
        name: "total".to_owned(),
        commune_code: 0,
        households: 0,
        with_listing: 0,
        with_epay: 0,
        orders: 0,
        revenue: 0,
    };
    for r in rows {
        t.households += r.households;
        t.with_listing += r.with_listing;
        t.with_epay += r.with_epay;
        t.orders += r.orders;
        t.revenue += r.revenue;
    }
    t
}

fn counts_json(r: &ProgressRow) -> Value {
    json!({
        "households": r.households,
        "with_listing": r.with_listing,
        "with_listing_share": share(r.with_listing, r.households),
        "with_epay": r.with_epay,
        "with_epay_share": share(r.with_epay, r.households),
        "orders": r.orders,
        "revenue": r.revenue,
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// A CSV text field, neutralised ([`crate::text::csv_cell`]) and quoted when needed.
fn csv_field(s: &str) -> String {
    let s = crate::text::csv_cell(s);
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers.get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|m| m.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("text/csv"))
    })
}

/// What the two reports differ in.
struct Level {
    /// `communes` or `villages`.
    name: &'static str,
    /// JSON keys and CSV headers of the unit's id and name.
    id_key: &'static str,
    name_key: &'static str,
    /// Whether rows carry their commune's code besides (villages).
    commune_column: bool,
}

fn respond(
    level: &Level,
    period: Period,
    rows: &[ProgressRow],
    headers: &HeaderMap,
    extra: Value,
) -> Result<Response, ApiError> {
    let (from, to) = (format_date(period.first), format_date(period.last));
    if wants_csv(headers) {
        let commune_header = if level.commune_column { "commune_code," } else { "" };
        let mut out = format!(
            "from,to,{},{},{commune_header}households,with_listing,with_listing_share,with_epay,with_epay_share,\
             orders,revenue,target_2025,target_2030\r\n",
            level.id_key, level.name_key
        );
        for r in rows {
            let commune = if level.commune_column { format!("{},", r.commune_code) } else { String::new() };
            out.push_str(&format!(
                "{from},{to},{},{},{commune}{},{},{},{},{},{},{},{TARGET_2025},{TARGET_2030}\r\n",
                r.id,
                csv_field(&r.name),
                r.households,
                r.with_listing,
                opt(share(r.with_listing, r.households)),
                r.with_epay,
                opt(share(r.with_epay, r.households)),
                r.orders,
                r.revenue,
            ));
        }
        let disposition = format!("attachment; filename=\"chogate-{}-{from}-{to}.csv\"", level.name);
        let mut response = out.into_response();
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            response.headers_mut().insert(CONTENT_DISPOSITION, v);
        }
        return Ok(response);
    }
    let units: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut unit = json!({ level.id_key: r.id, level.name_key: r.name });
            if level.commune_column {
                unit = merge(unit, json!({ "commune_code": r.commune_code }));
            }
            merge(unit, counts_json(r))
        })
        .collect();
    let body = merge(
        json!({
            "from": from,
            "to": to,
            "timezone": "+07:00",
            "targets": { "2025": TARGET_2025, "2030": TARGET_2030 },
            level.name: units,
            "total": counts_json(&totals(rows)),
        }),
        extra,
    );
    Ok(Json(body).into_response())
}

/// `GET /v1/reports/communes?date=` or `?from=&to=`
pub async fn communes(
    Authed(_c, _): Authed<NeedReports>,
    State(st): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    params.only(&["date", "from", "to"])?;
    let period = Period::from_params(&params, vn_day(now_ms()))?;
    let rows = st.market.commune_progress(period.start_ms(), period.end_ms()).await?;
    let level =
        Level { name: "communes", id_key: "commune_code", name_key: "commune_name", commune_column: false };
    respond(&level, period, &rows, &headers, json!({}))
}

/// `GET /v1/reports/villages?commune=` with `date=` or `from=&to=`
pub async fn villages(
    Authed(_c, _): Authed<NeedReports>,
    State(st): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    params.only(&["commune", "date", "from", "to"])?;
    let code = params
        .number::<u32>("commune", 1..=99_999)?
        .ok_or_else(|| ApiError::bad("commune", "the commune code is required"))?;
    let commune = st.market.commune(code).await?.ok_or_else(|| ApiError::not_found("commune"))?;
    let period = Period::from_params(&params, vn_day(now_ms()))?;
    let rows = st.market.village_progress_report(code, period.start_ms(), period.end_ms()).await?;
    let level =
        Level { name: "villages", id_key: "village_id", name_key: "village_name", commune_column: true };
    respond(
        &level,
        period,
        &rows,
        &headers,
        json!({ "commune": { "code": commune.code, "name": commune.name } }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_csv_fields_should_be_neutralised_then_quoted() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("Xã Chi Lăng"), "Xã Chi Lăng");
    }

    fn period(q: &str) -> Result<Period, ApiError> {
        Period::from_params(&Params::parse(q).unwrap(), 20_000)
    }

    #[test]
    fn periods_should_be_a_day_a_range_or_today() {
        let d = parse_date("2026-11-23").unwrap();
        assert_eq!(period("date=2026-11-23").unwrap(), Period { first: d, last: d });
        assert_eq!(period("from=2026-11-01&to=2026-11-23").unwrap().first, d - 22);
        assert_eq!(period("").unwrap(), Period { first: 20_000, last: 20_000 });
        for (q, field) in [
            ("date=2026-11-23&from=2026-11-01", "date"),
            ("from=2026-11-24&to=2026-11-23", "to"),
            ("from=2026-11-24", "to"),
            ("to=2026-11-24", "from"),
            ("date=23/11/2026", "date"),
            ("from=2000-01-01&to=2100-01-01", "to"),
        ] {
            match period(q) {
                Err(ApiError::BadRequest { field: Some(f), .. }) => assert_eq!(f, field, "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
    }

    #[test]
    fn shares_should_be_rounded_and_none_without_households() {
        assert_eq!(share(1, 3), Some(0.3333));
        assert_eq!(share(0, 0), None);
        assert_eq!(csv_field("Xã \"A\", B"), "\"Xã \"\"A\"\", B\"");
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static("application/json, text/csv;q=0.9"));
        assert!(wants_csv(&h));
        h.insert(ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!wants_csv(&h));
    }
}
