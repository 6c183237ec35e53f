//! The OpenAPI 3.1 document served at `/openapi.json`. Written by hand next to the route
//! table; a test checks both ways that it matches the real router.

use serde_json::{Map, Value, json};

/// A documented operation.
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    tag: &'static str,
    /// Accepted scopes (empty: no token).
    scopes: &'static [&'static str],
    params: Vec<Value>,
    body: Option<Value>,
    /// Idempotency-Key: Some(true) required, Some(false) optional.
    idempotency: Option<bool>,
    /// Success status and schema.
    ok: (&'static str, Value),
    /// Error statuses besides those of authentication.
    errors: &'static [&'static str],
}

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn query(name: &str, schema: Value, description: &str, required: bool) -> Value {
    json!({ "name": name, "in": "query", "required": required, "schema": schema, "description": description })
}

fn path_id(description: &str) -> Value {
    json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 },
            "description": description })
}

fn json_body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "additionalProperties": false, "required": required, "properties": properties })
}

fn error_text(code: &str) -> &'static str {
    match code {
        "400" => "Invalid input; `error.field` names the field.",
        "401" => "No token, or not a valid one.",
        "403" => "The token's scopes do not cover this route.",
        "404" => "Not found (or not the caller's).",
        "409" => "The state does not allow it, or the Idempotency-Key was used for another request.",
        "413" => "The body is over `[api] max_body_bytes`.",
        "415" => "The body is not in the route's media type.",
        "429" => "Past the token's rate; see Retry-After.",
        "503" => "The database is unavailable; repeat with the same Idempotency-Key.",
        _ => "Error.",
    }
}

fn report_params(with_commune: bool) -> Vec<Value> {
    let date = json!({ "type": "string", "format": "date" });
    let mut p = Vec::new();
    if with_commune {
        p.push(query("commune", json!({ "type": "integer" }), "Commune code (2025 list).", true));
    }
    p.push(query("date", date.clone(), "One day (Vietnam time); default today.", false));
    p.push(query("from", date.clone(), "First day of a range (with `to`).", false));
    p.push(query("to", date, "Last day of a range (with `from`).", false));
    p
}

fn ops() -> Vec<Op> {
    let int = json!({ "type": "integer" });
    let page = || {
        vec![
            query("limit", json!({ "type": "integer", "minimum": 1 }), "Rows per page.", false),
            query(
                "after",
                json!({ "type": "integer", "minimum": 0 }),
                "Rows with ids above this (next_after).",
                false,
            ),
        ]
    };
    let commune_filter = query("commune", int.clone(), "Commune code (2025 list).", false);
    vec![
        Op {
            method: "get",
            path: "/live",
            id: "live",
            summary: "The process is running.",
            tag: "ops",
            scopes: &[],
            params: vec![],
            body: None,
            idempotency: None,
            ok: ("200", json!({ "type": "object" })),
            errors: &[],
        },
        Op {
            method: "get",
            path: "/ready",
            id: "ready",
            summary: "The database answers and no shutdown has begun (503 if not). Names no account: the bound SMPP sessions per account are on the [http] ops_listen port's /ready.",
            tag: "ops",
            scopes: &[],
            params: vec![],
            body: None,
            idempotency: None,
            ok: ("200", json!({ "type": "object" })),
            errors: &["503"],
        },
        Op {
            method: "get",
            path: "/metrics",
            id: "metrics",
            summary: "Prometheus metrics (text format); on the [http] ops_listen port instead when one is set.",
            tag: "ops",
            scopes: &[],
            params: vec![],
            body: None,
            idempotency: None,
            ok: ("200", json!({ "type": "string" })),
            errors: &[],
        },
        Op {
            method: "get",
            path: "/openapi.json",
            id: "openapi",
            summary: "This document.",
            tag: "ops",
            scopes: &[],
            params: vec![],
            body: None,
            idempotency: None,
            ok: ("200", json!({ "type": "object" })),
            errors: &[],
        },
        Op {
            method: "get",
            path: "/v1/listings",
            id: "listListings",
            summary: "Active listings, to show buyers.",
            tag: "partners",
            scopes: &["orders:write"],
            params: [
                vec![
                    query(
                        "product",
                        json!({ "type": "string" }),
                        "Product code (`na`, `hoa_hoi`, ...).",
                        false,
                    ),
                    commune_filter.clone(),
                ],
                page(),
            ]
            .concat(),
            body: None,
            idempotency: None,
            ok: (
                "200",
                object(
                    &["listings", "next_after"],
                    json!({
                 "listings": { "type": "array", "items": r("Listing") }, "next_after": { "type": ["integer", "null"] } }),
                ),
            ),
            errors: &["400"],
        },
        Op {
            method: "post",
            path: "/v1/orders",
            id: "placeOrder",
            summary: "Order from a listing; the household is told by SMS.",
            tag: "partners",
            scopes: &["orders:write"],
            params: vec![],
            idempotency: Some(true),
            body: Some(json_body(object(
                &["listing_id", "buyer_name", "buyer_phone", "quantity_kg", "amount", "delivery"],
                json!({
                 "listing_id": int, "buyer_name": { "type": "string", "maxLength": 80 },
                 "buyer_phone": { "type": "string", "description": "The buyer's Vietnamese mobile number \
                     (0912345678, 84912345678 or +84 912 345 678); stored as 84 + 9 digits." },
                 "quantity_kg": { "type": "integer", "minimum": 1, "maximum": 100_000,
                     "description": "In the product's unit (see the order's product.unit)." },
                 "amount": { "type": "integer", "minimum": 1, "description": "đồng: must be quantity_kg × the \
                     listing's price_per_kg (else 400 naming `amount`, with the expected figure)" },
                 "delivery": object(
                     &["name", "phone", "address", "commune_code"],
                     json!({
                         "name": { "type": "string", "maxLength": 80, "description": "The recipient." },
                         "phone": { "type": "string", "description": "The recipient's Vietnamese mobile number." },
                         "address": { "type": "string", "maxLength": 200,
                             "description": "House number, street, village or ward." },
                         "commune_code": { "type": "integer",
                             "description": "Commune or ward, official code of the 2025 list." } }),
                 ) }),
            ))),
            ok: ("201", r("Order")),
            errors: &["400", "404", "409", "413", "415"],
        },
        Op {
            method: "get",
            path: "/v1/orders/{id}",
            id: "getOrder",
            summary: "An order (orders:write: the partner's own).",
            tag: "partners",
            scopes: &["orders:write", "payments:write", "shipments:write"],
            params: vec![path_id("Order id.")],
            body: None,
            idempotency: None,
            ok: ("200", r("Order")),
            errors: &["400", "404"],
        },
        Op {
            method: "post",
            path: "/v1/orders/{id}/cancel",
            id: "cancelOrder",
            summary: "Call off an order the partner placed, while it is new or accepted (409 after); the \
                quantity goes back on the listing and the household is told by SMS.",
            tag: "partners",
            scopes: &["orders:write"],
            params: vec![path_id("Order id.")],
            idempotency: Some(true),
            body: Some(json_body(object(
                &["reason"],
                json!({ "reason": { "type": "string", "minLength": 1, "maxLength": 80,
                    "description": "Why; stored as the order's cancel_reason and told to the household." } }),
            ))),
            ok: ("200", r("Order")),
            errors: &["400", "404", "409", "413", "415"],
        },
        Op {
            method: "post",
            path: "/v1/payments",
            id: "recordPayment",
            summary: "Money received for a shipped or delivered order (→ paid); the household is told.",
            tag: "partners",
            scopes: &["payments:write"],
            params: vec![],
            idempotency: Some(true),
            body: Some(json_body(object(
                &["order_id", "amount"],
                json!({
                 "order_id": int, "amount": { "type": "integer", "description": "the order's amount" },
                 "reference": { "type": "string", "maxLength": 100 } }),
            ))),
            ok: ("201", r("Order")),
            errors: &["400", "404", "409", "413", "415"],
        },
        Op {
            method: "post",
            path: "/v1/shipments",
            id: "recordShipment",
            summary: "A post-office event: shipped (accepted → shipped) or delivered.",
            tag: "partners",
            scopes: &["shipments:write"],
            params: vec![],
            idempotency: Some(true),
            body: Some(json_body(object(
                &["order_id", "status"],
                json!({
                 "order_id": int, "status": { "enum": ["shipped", "delivered"] },
                 "tracking_code": { "type": "string", "maxLength": 100 } }),
            ))),
            ok: ("201", r("Order")),
            errors: &["400", "404", "409", "413", "415"],
        },
        Op {
            method: "get",
            path: "/v1/messages/{id}",
            id: "getMessage",
            summary: "The status of an SMS that told a household of the partner's order.",
            tag: "partners",
            scopes: &["orders:write"],
            params: vec![path_id("Message id (an order's message_id).")],
            body: None,
            idempotency: None,
            ok: ("200", r("Message")),
            errors: &["400", "404"],
        },
        Op {
            method: "get",
            path: "/v1/reports/communes",
            id: "communeReport",
            summary: "Progress per commune; JSON, or CSV with Accept: text/csv.",
            tag: "reports",
            scopes: &["reports:read"],
            params: report_params(false),
            body: None,
            idempotency: None,
            ok: ("200", r("Report")),
            errors: &["400"],
        },
        Op {
            method: "get",
            path: "/v1/reports/villages",
            id: "villageReport",
            summary: "Progress per village of a commune; JSON, or CSV with Accept: text/csv.",
            tag: "reports",
            scopes: &["reports:read"],
            params: report_params(true),
            body: None,
            idempotency: None,
            ok: ("200", r("Report")),
            errors: &["400", "404"],
        },
        Op {
            method: "get",
            path: "/v1/admin/households",
            id: "listHouseholds",
            summary: "Households.",
            tag: "admin",
            scopes: &["admin"],
            params: [
                vec![
                    commune_filter.clone(),
                    query("village_id", int.clone(), "Village id.", false),
                    query("msisdn", json!({ "type": "string" }), "MSISDN, any written form.", false),
                ],
                page(),
            ]
            .concat(),
            body: None,
            idempotency: None,
            ok: (
                "200",
                object(
                    &["households", "next_after"],
                    json!({
                 "households": { "type": "array", "items": r("Household") }, "next_after": { "type": ["integer", "null"] } }),
                ),
            ),
            errors: &["400"],
        },
        Op {
            method: "post",
            path: "/v1/admin/households",
            id: "createHousehold",
            summary: "Register a household (the village is created if new).",
            tag: "admin",
            scopes: &["admin"],
            params: vec![],
            idempotency: Some(false),
            body: Some(json_body(object(
                &["msisdn", "name", "commune_code", "village_name"],
                json!({
                 "msisdn": { "type": "string" }, "name": { "type": "string" }, "commune_code": int,
                 "village_name": { "type": "string" }, "language": { "enum": ["vi", "en"] },
                 "has_epay": { "type": "boolean" } }),
            ))),
            ok: ("201", r("Household")),
            errors: &["400", "409", "413", "415"],
        },
        Op {
            method: "post",
            path: "/v1/admin/households/import",
            id: "importHouseholds",
            summary: "Import households from CSV (msisdn,name,commune_code,village_name[,language][,has_epay]); all or none.",
            tag: "admin",
            scopes: &["admin"],
            params: vec![],
            idempotency: Some(false),
            body: Some(
                json!({ "required": true, "content": { "text/csv": { "schema": { "type": "string" } } } }),
            ),
            ok: ("200", r("ImportReport")),
            errors: &["400", "409", "413", "415"],
        },
        Op {
            method: "get",
            path: "/v1/admin/households/{id}",
            id: "getHousehold",
            summary: "A household.",
            tag: "admin",
            scopes: &["admin"],
            params: vec![path_id("Household id.")],
            body: None,
            idempotency: None,
            ok: ("200", r("Household")),
            errors: &["400", "404"],
        },
        Op {
            method: "patch",
            path: "/v1/admin/households/{id}",
            id: "updateHousehold",
            summary: "Change a household (name, language, e-payment, pending, village).",
            tag: "admin",
            scopes: &["admin"],
            params: vec![path_id("Household id.")],
            idempotency: Some(false),
            body: Some(json_body(object(
                &[],
                json!({
                 "name": { "type": "string" }, "language": { "enum": ["vi", "en"] }, "has_epay": { "type": "boolean" },
                 "pending": { "type": "boolean" }, "commune_code": int, "village_name": { "type": "string" } }),
            ))),
            ok: ("200", r("Household")),
            errors: &["400", "404", "409", "413", "415"],
        },
        Op {
            method: "get",
            path: "/v1/admin/villages",
            id: "listVillages",
            summary: "Villages.",
            tag: "admin",
            scopes: &["admin"],
            params: vec![commune_filter.clone()],
            body: None,
            idempotency: None,
            ok: (
                "200",
                object(&["villages"], json!({ "villages": { "type": "array", "items": r("Village") } })),
            ),
            errors: &["400"],
        },
        Op {
            method: "post",
            path: "/v1/admin/villages",
            id: "createVillage",
            summary: "Create a village, or confirm a pending one.",
            tag: "admin",
            scopes: &["admin"],
            params: vec![],
            idempotency: Some(false),
            body: Some(json_body(object(
                &["commune_code", "name"],
                json!({
                 "commune_code": int, "name": { "type": "string" } }),
            ))),
            ok: ("201", r("Village")),
            errors: &["400", "409", "413", "415"],
        },
        Op {
            method: "get",
            path: "/v1/admin/teams",
            id: "listTeams",
            summary: "Community technology teams.",
            tag: "admin",
            scopes: &["admin"],
            params: vec![commune_filter],
            body: None,
            idempotency: None,
            ok: ("200", object(&["teams"], json!({ "teams": { "type": "array", "items": r("Team") } }))),
            errors: &["400"],
        },
        Op {
            method: "post",
            path: "/v1/admin/leaders",
            id: "registerLeader",
            summary: "A village's team leader; creates the team.",
            tag: "admin",
            scopes: &["admin"],
            params: vec![],
            idempotency: Some(false),
            body: Some(json_body(object(
                &["msisdn", "name", "commune_code", "village_name"],
                json!({
                 "msisdn": { "type": "string" }, "name": { "type": "string" }, "commune_code": int,
                 "village_name": { "type": "string" }, "language": { "enum": ["vi", "en"] } }),
            ))),
            ok: ("201", r("Team")),
            errors: &["400", "409", "413", "415"],
        },
        Op {
            method: "post",
            path: "/v1/admin/teams/{id}/members",
            id: "addTeamMember",
            summary: "Add a household of the team's village to the team.",
            tag: "admin",
            scopes: &["admin"],
            params: vec![path_id("Team id.")],
            idempotency: Some(false),
            body: Some(json_body(object(&["household_id"], json!({ "household_id": int })))),
            ok: ("201", r("Team")),
            errors: &["400", "404", "409", "413", "415"],
        },
    ]
}

fn schemas() -> Value {
    let s = json!({ "type": "string" });
    let i = json!({ "type": "integer" });
    let ns = json!({ "type": ["string", "null"] });
    let ni = json!({ "type": ["integer", "null"] });
    let t = json!({ "type": "string", "format": "date-time" });
    let named = json!({ "type": "object", "properties": { "code": s, "name": s } });
    let product = json!({ "type": "object", "properties": { "code": s, "name_vi": s, "name_en": s } });
    let share = json!({ "type": ["number", "null"], "description": "count / households" });
    let counts = json!({
        "households": i, "with_listing": i, "with_listing_share": share, "with_epay": i, "with_epay_share": share,
        "orders": i, "revenue": { "type": "integer", "description": "đồng received in the period" } });
    json!({
        "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "object",
            "required": ["code", "message", "field"],
            "properties": { "code": s, "message": s, "field": ns } } } },
        "Order": { "type": "object", "properties": {
            "id": i, "code": s, "listing_id": i,
            "product": { "type": "object", "properties": { "code": s, "name_vi": s, "name_en": s, "unit": s } },
            "buyer_name": s,
            "buyer_phone": { "type": ["string", "null"], "description": "84 + 9 digits; null for orders not placed \
                over this API" },
            "delivery": { "type": ["object", "null"], "description": "null for orders not placed over this API",
                "properties": { "name": s, "phone": s, "address": s, "commune": named } },
            "quantity_kg": i, "amount": i,
            "status": { "enum": ["new", "accepted", "rejected", "shipped", "delivered", "paid", "cancelled"] },
            "created_at": t, "updated_at": t, "partner": ns, "message_id": ni,
            "tracking_code": { "type": ["string", "null"], "description": "The parcel's latest tracking code \
                (given by the household or the post office)" },
            "cancel_reason": { "type": ["string", "null"], "description": "Why it was cancelled" },
            "payment": { "type": ["object", "null"], "properties": { "amount": i, "paid_at": t, "channel": s, "reference": ns } },
            "shipment": { "type": ["object", "null"], "properties": { "status": s, "tracking_code": ns, "at": t, "partner": s } } } },
        "Listing": { "type": "object", "properties": {
            "id": i, "code": s, "product": product, "quantity_kg": i, "price_per_kg": i,
            "village": { "type": "object", "properties": { "id": i, "name": s } }, "commune": named, "created_at": t } },
        "Household": { "type": "object", "properties": {
            "id": i, "msisdn": s, "name": s, "village": { "type": "object", "properties": { "id": i, "name": s } },
            "commune": named, "language": { "enum": ["vi", "en"] }, "has_epay": { "type": "boolean" },
            "is_leader": { "type": "boolean" }, "has_pin": { "type": "boolean" }, "pending": { "type": "boolean" },
            "created_at": t } },
        "Village": { "type": "object", "properties": {
            "id": i, "name": s, "commune": named, "pending": { "type": "boolean" }, "households": i, "team_id": ni } },
        "Team": { "type": "object", "properties": {
            "id": i, "village": { "type": "object", "properties": { "id": i, "name": s } }, "commune": named,
            "leader": { "type": "object", "properties": { "household_id": i, "name": s, "msisdn": s } }, "members": i } },
        "Message": { "type": "object", "properties": {
            "id": i, "kind": s, "status": { "enum": ["queued", "sent", "delivered", "failed", "expired"] },
            "attempts": i, "parts": i, "created_at": t, "sent_at": { "type": ["string", "null"], "format": "date-time" },
            "done_at": { "type": ["string", "null"], "format": "date-time" }, "expires_at": t, "last_error": ns } },
        "ImportReport": { "type": "object", "properties": { "created": i, "existing": i, "rows": { "type": "array",
            "items": { "type": "object", "properties": { "line": i, "household_id": i,
                "status": { "enum": ["created", "existing"] } } } } } },
        "Report": { "type": "object", "description": "`communes` or `villages` rows, each with its id, name and the counts.",
            "properties": { "from": { "type": "string", "format": "date" }, "to": { "type": "string", "format": "date" },
                "timezone": s, "targets": { "type": "object", "properties": { "2025": { "type": "number" }, "2030": { "type": "number" } } },
                "communes": { "type": "array", "items": { "type": "object", "properties": counts } },
                "villages": { "type": "array", "items": { "type": "object", "properties": counts } },
                "total": { "type": "object", "properties": counts } } },
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in ops() {
        let mut responses = Map::new();
        responses.insert(
            op.ok.0.to_owned(),
            json!({ "description": "OK", "content": { "application/json": { "schema": op.ok.1 } } }),
        );
        let mut codes: Vec<&str> = op.errors.to_vec();
        if !op.scopes.is_empty() {
            codes.extend(["401", "403", "429"]);
        }
        codes.push("503");
        for code in codes {
            responses.insert(
                code.to_owned(),
                json!({ "description": error_text(code),
                        "content": { "application/json": { "schema": r("Error") } } }),
            );
        }
        let mut params = op.params;
        if let Some(required) = op.idempotency {
            params.push(json!({ "name": "Idempotency-Key", "in": "header", "required": required,
                "schema": { "type": "string", "minLength": 1, "maxLength": 100 },
                "description": "The same key with the same request returns the first response again \
                                (Idempotent-Replayed: true), without applying anything twice; with \
                                another request, 409. Keys are per partner; only successful \
                                responses are kept, so a refused request may be repeated." }));
        }
        let mut operation = json!({
            "operationId": op.id, "summary": op.summary, "tags": [op.tag], "parameters": params,
            "responses": responses,
        });
        if let Some(o) = operation.as_object_mut() {
            if let Some(body) = op.body {
                o.insert("requestBody".into(), body);
            }
            if op.scopes.is_empty() {
                o.insert("security".into(), json!([]));
            } else {
                o.insert("security".into(), json!([{ "bearer": op.scopes }]));
                o.insert("x-scopes".into(), json!(op.scopes));
            }
        }
        if let Some(entry) = paths.entry(op.path).or_insert_with(|| json!({})).as_object_mut() {
            entry.insert(op.method.to_owned(), operation);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "chogate HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Partners (e-commerce platforms, post offices, payment partners), community tech \
                teams and officials. Bearer tokens from `chogate tokens create --name NAME --scope SCOPE`; \
                scopes: orders:write, payments:write, shipments:write, reports:read, admin (admin may do \
                everything). Errors: {\"error\": {\"code\", \"message\", \"field\"}}. Times are UTC \
                (RFC 3339); report days are Vietnam time (UTC+7).",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas(),
        },
    })
}
