//! Logging setup and the masking of personal data in logs.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Masks an MSISDN for logs: `84912345567` → `8491****567`. Short or odd input is masked
/// all the same, never shown whole.
pub fn mask_msisdn(msisdn: &str) -> String {
    let chars: Vec<char> = msisdn.chars().collect();
    let n = chars.len();
    if n <= 7 {
        return "*".repeat(n.max(4));
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[n - 3..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(n - 7))
}

/// Installs the global subscriber: `RUST_LOG` wins over `[log] filter`; logs go to stderr.
/// Calling it twice is harmless (the second call does nothing).
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msisdn_should_be_masked_keeping_prefix_and_last_three() {
        assert_eq!(mask_msisdn("84912345567"), "8491****567");
        assert_eq!(mask_msisdn("0912345678"), "0912***678");
        assert_eq!(mask_msisdn("123"), "****");
        assert_eq!(mask_msisdn(""), "****");
    }
}
