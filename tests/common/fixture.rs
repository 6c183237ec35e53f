//! The village most tests and benchmarks start from: one team leader, Hoàng Văn Minh
//! (84987000001) of Bản Chu, registered by the command line in the commune given.
#![allow(dead_code, clippy::unwrap_used)]

use chogate::market::{Actor, Channel, Household, IdemKey, Lang, Market};

/// The team leader's number.
pub const LEADER_MSISDN: &str = "84987000001";

/// Registers the village's team leader (idempotency key `l`) and returns them.
pub async fn leader(m: &Market, commune: u32) -> Household {
    let cli = Actor::new("test", Channel::Cli);
    m.register_leader(
        &cli,
        IdemKey("l".into()),
        LEADER_MSISDN,
        "Hoàng Văn Minh",
        commune,
        "Bản Chu",
        Lang::Vi,
    )
    .await
    .unwrap()
}
