//! The client role: chogate binds to operators' SMSCs (`[[smsc]]`), keeps each bind alive
//! and reconnects with capped, jittered exponential backoff when it drops.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::pdu::{Bind, BindKind};
use super::session::{self, Inbound, Registry, RoleParams, SessionEnd, SessionParams, Tuning};
use super::transport::{Conn, SmscTls};
use crate::config::{BindMode, SmppTuning, SmscConfig};

/// A bind that lasted this long counts as healthy: the next reconnect starts from the
/// minimum delay again.
const HEALTHY_BIND: Duration = Duration::from_secs(30);

/// The binds to open for one SMSC: one transceiver, or a transmitter and a receiver.
pub fn bind_kinds(mode: BindMode) -> &'static [BindKind] {
    match mode {
        BindMode::Transceiver => &[BindKind::Transceiver],
        BindMode::TransmitterReceiver => &[BindKind::Transmitter, BindKind::Receiver],
    }
}

/// Delay before reconnect attempt `attempt` (0-based): min·2^attempt capped at max, with
/// up to a quarter of jitter taken off so that many gateways do not reconnect in step.
pub fn backoff(min: Duration, max: Duration, attempt: u32, jitter: u64) -> Duration {
    let base = crate::time::doubling(min, max, attempt);
    let quarter = base.as_millis() as u64 / 4;
    let off = if quarter == 0 { 0 } else { jitter % (quarter + 1) };
    base.saturating_sub(Duration::from_millis(off))
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// What a bind loop needs.
#[derive(Clone)]
pub struct ClientContext {
    /// Engine settings.
    pub tuning: SmppTuning,
    /// Where the SMSC's requests (deliver_sm, data_sm) go.
    pub inbound: Inbound,
    /// Bound sessions, registered under the SMSC's name.
    pub registry: Arc<Registry>,
}

/// Connects, in TLS when `tls` is given, within the SMSC's connect timeout (the handshake
/// included).
async fn connect(addr: &str, tls: Option<&SmscTls>) -> std::io::Result<Conn> {
    let stream = TcpStream::connect(addr).await?;
    match tls {
        None => Ok(Conn::Plain(stream)),
        Some(t) => {
            let stream = t.connector.connect(t.name.clone(), stream).await?;
            Ok(Conn::tls(stream.into()))
        }
    }
}

/// Keeps one bind of `kind` to `smsc` up until shutdown (in TLS when `tls` is given).
pub async fn run_bind(
    smsc: SmscConfig,
    kind: BindKind,
    tls: Option<SmscTls>,
    ctx: ClientContext,
    shutdown: CancellationToken,
) {
    let span = info_span!("smsc", name = %smsc.name, bind = kind.as_str());
    async move {
        let addr = format!("{}:{}", smsc.host, smsc.port);
        let label: Arc<str> = Arc::from(smsc.name.as_str());
        let prefixes: Arc<[String]> = smsc.msisdn_prefixes.clone().into();
        let mut attempt: u32 = 0;
        loop {
            let connect = tokio::time::timeout(smsc.connect_timeout(), connect(&addr, tls.as_ref()));
            let connected = tokio::select! {
                () = shutdown.cancelled() => break,
                c = connect => c,
            };
            let started = Instant::now();
            match connected {
                Ok(Ok(stream)) => {
                    info!(%addr, tls = tls.is_some(), "connected, binding");
                    let mut bind = Bind::new(kind, smsc.system_id.clone(), smsc.password.expose());
                    bind.system_type = smsc.system_type.clone();
                    let params = SessionParams {
                        role: RoleParams::Client {
                            bind,
                            label: label.clone(),
                            msisdn_prefixes: prefixes.clone(),
                        },
                        tuning: Tuning::new(&ctx.tuning, smsc.window),
                        inbound: ctx.inbound.clone(),
                        registry: ctx.registry.clone(),
                        shutdown: shutdown.clone(),
                    };
                    let (_handle, run) = session::start(stream, params);
                    let end = run.await;
                    if end == SessionEnd::Shutdown || shutdown.is_cancelled() {
                        break;
                    }
                    warn!(?end, "bind lost");
                }
                Ok(Err(e)) => warn!(%addr, error = %e, "connect failed"),
                Err(_) => warn!(%addr, timeout = ?smsc.connect_timeout(), "connect timed out"),
            }
            if started.elapsed() >= HEALTHY_BIND {
                attempt = 0;
            }
            let delay = backoff(smsc.reconnect_min(), smsc.reconnect_max(), attempt, random_u64());
            attempt = attempt.saturating_add(1);
            info!(?delay, "reconnecting after delay");
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        info!("bind loop stopped");
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_should_double_and_cap() {
        let min = Duration::from_millis(1000);
        let max = Duration::from_millis(60_000);
        let d: Vec<u128> = (0..9).map(|a| backoff(min, max, a, 0).as_millis()).collect();
        assert_eq!(d, vec![1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
    }

    #[test]
    fn jitter_should_take_off_at_most_a_quarter() {
        let min = Duration::from_millis(1000);
        for j in [0, 1, 249, 250, 251, u64::MAX] {
            let d = backoff(min, min * 60, 0, j).as_millis();
            assert!((750..=1000).contains(&d), "{d}");
        }
    }

    #[test]
    fn bind_modes_should_map_to_binds() {
        assert_eq!(bind_kinds(BindMode::Transceiver), &[BindKind::Transceiver]);
        assert_eq!(bind_kinds(BindMode::TransmitterReceiver), &[BindKind::Transmitter, BindKind::Receiver]);
    }
}
