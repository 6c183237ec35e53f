//! What a session reads and writes: a TCP connection, plain or in TLS (rustls on ring), cut
//! into a read side and a write side; and the TLS settings made from PEM files.
//!
//! A plain connection keeps tokio's owned halves (no lock between reader and writer, and the
//! writer's `try_write` fast path); a TLS stream is split with `tokio::io::split`.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{key} {path}: {reason}")]
    File {
        /// the setting that names the file.
        key: String,
        /// the file.
        path: PathBuf,
        /// what is wrong with it.
        reason: String,
    },
    /// rustls refused the certificate and key together, or the roots.
    #[error("{key}: {reason}")]
    Config {
        /// the setting.
        key: String,
        /// rustls's reason.
        reason: String,
    },
}

/// rustls on ring: no aws-lc, so no cmake or C toolchain beyond cc. rustls 0.23.48 marks the
/// ring provider deprecated because it lacks post-quantum key exchange, which operators'
/// SMSCs do not offer either; the classical groups and suites are kept.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |reason: String| TlsError::File { key: key.to_owned(), path: path.to_owned(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("no CERTIFICATE in the PEM file".into()));
    }
    Ok(certs)
}

/// The TLS listener's settings from a PEM certificate chain and a PEM private key (PKCS#8,
/// PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain = certificates("smpp_server.tls_cert", cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
        key: "smpp_server.tls_key".into(),
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| TlsError::Config {
            key: "smpp_server.tls_cert/tls_key".into(),
            reason: e.to_string(),
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// An SMSC's TLS settings: its certificate checked against `ca` (a PEM file) or, without
/// one, the system's trusted roots. `key` names the setting in errors (`smsc[0].tls_ca`).
pub fn client_config(key: &str, ca: Option<&Path>) -> Result<TlsConnector, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in certificates(key, path)? {
                roots.add(cert).map_err(|e| TlsError::File {
                    key: key.to_owned(),
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::Config {
                    key: key.to_owned(),
                    reason: "no tls_ca given and no trusted roots found on the system".into(),
                });
            }
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config { key: key.to_owned(), reason: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The name an SMSC's certificate must carry, from `tls_server_name` or its host.
pub fn server_name(key: &str, name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned())
        .map_err(|e| TlsError::Config { key: key.to_owned(), reason: format!("`{name}`: {e}") })
}

/// An SMSC's TLS: the connector and the name its certificate must carry.
#[derive(Clone)]
pub struct SmscTls {
    /// The client settings.
    pub connector: TlsConnector,
    /// The certificate's name.
    pub name: ServerName<'static>,
}

/// Every TLS setting of a configuration, read and checked (at start and by `check-config`).
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// The TLS listener's, when `[smpp_server] tls_listen` is set.
    pub server: Option<TlsAcceptor>,
    /// Each `[[smsc]]` with `tls = true`, by name.
    pub smsc: std::collections::HashMap<String, SmscTls>,
}

impl TlsSettings {
    /// Reads the certificates and keys the configuration names.
    pub fn load(config: &crate::config::Config) -> Result<Self, TlsError> {
        let server_cfg = &config.smpp_server;
        let server = match (server_cfg.tls_listen, &server_cfg.tls_cert, &server_cfg.tls_key) {
            (Some(_), Some(cert), Some(key)) => Some(server_config(cert, key)?),
            (Some(_), _, _) => {
                return Err(TlsError::Config {
                    key: "smpp_server.tls_listen".into(),
                    reason: "needs tls_cert and tls_key".into(),
                });
            }
            _ => None,
        };
        let mut smsc = std::collections::HashMap::new();
        for (i, s) in config.smsc.iter().enumerate().filter(|(_, s)| s.tls) {
            let connector = client_config(&format!("smsc[{i}].tls_ca"), s.tls_ca.as_deref())?;
            let name = server_name(
                &format!("smsc[{i}].tls_server_name"),
                s.tls_server_name.as_deref().unwrap_or(&s.host),
            )?;
            smsc.insert(s.name.clone(), SmscTls { connector, name });
        }
        Ok(TlsSettings { server, smsc })
    }
}

/// Any byte stream a session can run on besides plain TCP: TLS in either role, or an
/// in-memory pipe in tests.
pub trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// A connected socket: plain TCP, or another stream (TLS) with the peer's address.
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, or an in-memory pipe.
    Stream {
        /// The stream.
        io: Box<dyn Stream>,
        /// The peer's address.
        peer: SocketAddr,
    },
}

impl From<TcpStream> for Conn {
    fn from(s: TcpStream) -> Self {
        Conn::Plain(s)
    }
}

impl Conn {
    /// A TLS stream (either role) over TCP.
    pub fn tls(stream: TlsStream<TcpStream>) -> Conn {
        let tcp = stream.get_ref().0;
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Conn::Stream { io: Box::new(stream), peer }
    }

    /// The peer's address (0.0.0.0:0 if the socket no longer knows it).
    pub fn peer_addr(&self) -> SocketAddr {
        match self {
            Conn::Plain(s) => s.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            Conn::Stream { peer, .. } => *peer,
        }
    }

    /// Cuts the connection into what the reader and the writer own.
    pub fn split(self) -> (ReadSide, WriteSide) {
        match self {
            Conn::Plain(s) => {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (ReadSide::Plain(r), WriteSide::Plain(w))
            }
            Conn::Stream { io, .. } => {
                let (r, w) = tokio::io::split(io);
                (ReadSide::Stream(r), WriteSide::Stream(w))
            }
        }
    }
}

/// The reader's side of a connection.
pub enum ReadSide {
    /// Plain TCP.
    Plain(OwnedReadHalf),
    /// Another stream.
    Stream(ReadHalf<Box<dyn Stream>>),
}

impl AsyncRead for ReadSide {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadSide::Plain(r) => Pin::new(r).poll_read(cx, buf),
            ReadSide::Stream(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// The writer's side of a connection.
pub enum WriteSide {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// Another stream.
    Stream(WriteHalf<Box<dyn Stream>>),
}

impl WriteSide {
    /// Writes what the socket takes at once without waiting (plain TCP only; another stream
    /// takes nothing this way and leaves it all to the async write).
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WriteSide::Plain(w) => w.try_write(buf),
            WriteSide::Stream(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Whether what was written may wait in a buffer of the stream's own (TLS) until flushed.
    pub fn buffers(&self) -> bool {
        matches!(self, WriteSide::Stream(_))
    }
}

impl AsyncWrite for WriteSide {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_write(cx, buf),
            WriteSide::Stream(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteSide::Stream(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteSide::Stream(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
