//! chogate: an SMPP 3.4 / USSD gateway that lets feature-phone households run a digital
//! shop by dialling `*384#`.
//!
//! Layers, each with its own error enum:
//! - [`config`]: TOML configuration with `CHOGATE_` environment overrides.
//! - [`smpp`]: PDU codec, framing, the session actor shared by both roles, server and client.
//! - [`text`]: GSM 03.38 and UCS2 text, unaccented fallback, screen fitting, SMS splitting.
//! - [`market`]: households, villages, teams, listings, orders, payments: typed, audited,
//!   idempotent actions.
//! - [`store`]: the durable store (SQLite or PostgreSQL), migrations, the connections.
//! - [`api`]: the HTTP API (axum): partners, admin, reports, metrics, OpenAPI.
//! - [`ussd`], [`keywords`]: the two inbound channels of households: USSD dialogues over the
//!   menus, and SMS keywords (`DH`, `NHAN D000123`, ...).
//! - [`notify`]: SMS to households: the outbox drained to the SMSCs, delivery receipts.
//! - [`daemon`]: wires the listeners and binds together under one cancellation token.
//! - [`sim`]: a simulated USSD centre with virtual subscribers (`phone`, `loadtest`).
//! - [`manage`]: the operator's commands: `migrate`, `households import`/`export`, `seed-demo`, `stats` (`admin` names only the API's admin scope and routes).
//! - [`cli`]: the command line (`serve`, `check-config`, ...).
//! - [`thread`]: work on threads of its own (the SQLite writer, the HTTP API).
//! - [`files`]: the files chogate creates are the owner's alone (0600).
//! - [`metrics`], [`time`]: the ground floor every layer may use: the process-wide counters
//!   (rendered by [`api`] at `/metrics`) and the one clock with the Vietnam-date helpers.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod files;
pub mod keywords;
pub mod logging;
pub mod manage;
pub mod market;
pub mod menu;
pub mod metrics;
pub mod msisdn;
pub mod notify;
pub mod sim;
pub mod smpp;
pub mod store;
pub mod text;
pub mod thread;
pub mod time;
pub mod ussd;
