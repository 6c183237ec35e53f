//! `chogate tokens create|list|revoke`: API tokens from the command line.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::auth::{self, Scope};
use crate::config::Config;
use crate::market::Market;
use crate::time::rfc3339;

/// `chogate tokens ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TokensAction {
    /// Create a token for a partner and print it once (only its hash is stored).
    Create {
        /// The partner (1-40 of A-Z a-z 0-9 . _ -); its tokens share orders and keys.
        #[arg(long)]
        name: String,
        /// orders:write, payments:write, shipments:write, reports:read or admin; repeatable.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List tokens (public id, partner, scopes; never the tokens).
    List,
    /// Revoke a token by its public id (or the token itself).
    Revoke {
        /// The public id (the 12 hex digits after `cg_`).
        id: String,
    },
}

/// Runs a tokens command against the configured database.
pub fn run(config: &Config, action: &TokensAction) -> anyhow::Result<()> {
    if let TokensAction::Create { name, scopes } = action {
        // Refuse bad input before opening the database.
        auth::check_name(name).map_err(anyhow::Error::msg)?;
        auth::parse_scopes(scopes).map_err(anyhow::Error::msg)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        let market = Market::open_with(&config.database, &config.security, shutdown.clone())
            .await
            .context("database")?;
        let result = act(&market, action).await;
        shutdown.cancel();
        market.stopped().await;
        result
    })
}

async fn act(market: &Market, action: &TokensAction) -> anyhow::Result<()> {
    match action {
        TokensAction::Create { name, scopes } => {
            let scopes: Vec<Scope> = auth::parse_scopes(scopes).map_err(anyhow::Error::msg)?;
            let (stored, token) = auth::create_token(market, name, &scopes).await?;
            eprintln!(
                "token {} for {} ({}): store it now, it cannot be shown again",
                stored.public_id,
                stored.name,
                stored.scopes.join(" ")
            );
            println!("{token}");
        }
        TokensAction::List => {
            for t in market.api_tokens().await? {
                let state = match t.revoked_at_ms {
                    Some(ms) => format!("revoked {}", rfc3339(ms)),
                    None => "active".to_owned(),
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.public_id,
                    t.name,
                    t.scopes.join(","),
                    rfc3339(t.created_at_ms),
                    state
                );
            }
        }
        TokensAction::Revoke { id } => {
            auth::revoke_token(market, id).await?;
            eprintln!("token {id} revoked");
        }
    }
    Ok(())
}
