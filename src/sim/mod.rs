//! A simulated USSD centre with virtual subscribers, built on chogate's own SMPP engine.
//!
//! Shared by two tools:
//! - `chogate phone` ([`phone`]): one subscriber typed by a person (or fed by a pipe), every
//!   screen shown as a feature phone would, with its encoding and length;
//! - `chogate loadtest` ([`loadtest`]): N virtual subscribers running scripts against
//!   chogate, as the USSD centre bound to it or as the SMSC it binds to, an SMSC sink
//!   for outbound SMS ([`sink`]), and a gateway that does no work ([`null_gateway`]), the
//!   ceiling the figures are read against.
//!
//! Pieces: [`ussd`] builds the subscriber's PDUs and decodes chogate's screens, [`link`]
//! makes the binds and routes screens to subscribers by MSISDN, [`subscriber`] runs one
//! subscriber's dialogues, [`stats`] counts and keeps the latency histogram.

pub mod link;
pub mod loadtest;
pub mod null_gateway;
pub mod phone;
pub mod sink;
pub mod stats;
pub mod subscriber;
pub mod ussd;

use std::net::{SocketAddr, ToSocketAddrs};

use crate::smpp::status;

/// Why a simulation could not run. Each message says its cause and none has a `source()`,
/// so a chain printed with `{:#}` says it once.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// `HOST:PORT` did not resolve.
    #[error("cannot resolve {0:?} (expected HOST:PORT)")]
    Resolve(String),
    /// The load generator talks to loopback addresses only.
    #[error("{0} is not a loopback address: the load generator only runs against this machine")]
    NotLoopback(SocketAddr),
    /// An option out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        /// where to.
        addr: SocketAddr,
        /// why.
        error: std::io::Error,
    },
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// where.
        addr: SocketAddr,
        /// why.
        error: std::io::Error,
    },
    /// chogate refused the bind.
    #[error("bind refused by chogate: {name} (0x{0:08X})", name = status::name(*.0))]
    BindRefused(u32),
    /// The bind did not complete.
    #[error("bind failed: {0}")]
    BindFailed(String),
    /// The bind went away during the run.
    #[error("connection to chogate lost")]
    ConnectionLost,
    /// Writing to the terminal or the progress stream failed.
    #[error("output: {0}")]
    Output(std::io::Error),
}

impl From<std::io::Error> for SimError {
    fn from(e: std::io::Error) -> Self {
        SimError::Output(e)
    }
}

/// Resolves `HOST:PORT` to its first address.
pub fn resolve(s: &str) -> Result<SocketAddr, SimError> {
    s.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| SimError::Resolve(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_should_take_ip_and_localhost_and_reject_garbage() {
        assert_eq!(resolve("127.0.0.1:2775").unwrap(), "127.0.0.1:2775".parse().unwrap());
        assert!(resolve("localhost:2775").unwrap().ip().is_loopback());
        assert!(matches!(resolve("no-port"), Err(SimError::Resolve(_))));
    }

    #[test]
    fn bind_refused_should_name_the_status() {
        let e = SimError::BindRefused(status::ESME_RINVPASWD);
        assert_eq!(e.to_string(), "bind refused by chogate: ESME_RINVPASWD (0x0000000E)");
    }
}
