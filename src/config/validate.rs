//! Semantic checks of a parsed configuration: lengths, ranges, uniqueness, URL scheme,
//! prefixes; each error names its key, like `smsc[0].window`.

use super::*;

/// Longest SMPP system_id in octets (C-Octet String of 16 including the NUL).
const MAX_SYSTEM_ID: usize = 15;
/// Longest SMPP password in octets (9 including the NUL).
const MAX_PASSWORD: usize = 8;
/// Longest SMPP system_type in octets (13 including the NUL).
const MAX_SYSTEM_TYPE: usize = 12;
/// Largest send window.
const MAX_WINDOW: u32 = 10_000;
/// Smallest and largest accepted `max_pdu_len`.
const PDU_LEN_RANGE: std::ops::RangeInclusive<u32> = 64..=1_048_576;

impl Config {
    /// Semantic checks (lengths, ranges, uniqueness, URL scheme, prefix digits);
    /// the error names the key path, like `smsc[0].window`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_notify()?;
        let url = &self.database.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                format!("`{}` must start with `sqlite:`, `postgres://` or `postgresql://`", redact_url(url)),
            ));
        }
        let db = &self.database;
        check_range("database.read_pool", u64::from(db.read_pool), 1, 64)?;
        check_range("database.write_batch", u64::from(db.write_batch), 1, 10_000)?;
        check_range("database.write_queue", u64::from(db.write_queue), 1, 1_000_000)?;
        check_ms("database.busy_timeout_ms", db.busy_timeout_ms, 1)?;
        check_range("database.retention_days", u64::from(db.retention_days), 1, 3650)?;

        for (i, account) in self.smpp_server.accounts.iter().enumerate() {
            let key = format!("smpp_server.accounts[{i}]");
            check_octets(&format!("{key}.system_id"), &account.system_id, 1, MAX_SYSTEM_ID)?;
            check_octets(&format!("{key}.password"), account.password.expose(), 0, MAX_PASSWORD)?;
            if let Some(j) =
                self.smpp_server.accounts[..i].iter().position(|other| other.system_id == account.system_id)
            {
                return Err(invalid(
                    format!("{key}.system_id"),
                    format!("duplicate system_id `{}` (also smpp_server.accounts[{j}])", account.system_id),
                ));
            }
            if account.max_binds == 0 {
                return Err(invalid(format!("{key}.max_binds"), "must be at least 1"));
            }
            check_window(&format!("{key}.window"), account.window)?;
            check_prefixes(&format!("{key}.msisdn_prefixes"), &account.msisdn_prefixes)?;
        }
        let server = &self.smpp_server;
        check_at_least_one("smpp_server.max_connections", u64::from(server.max_connections))?;
        check_at_least_one("smpp_server.max_connections_per_ip", u64::from(server.max_connections_per_ip))?;
        if server.tls_listen.is_some() {
            for (key, value) in
                [("smpp_server.tls_cert", &server.tls_cert), ("smpp_server.tls_key", &server.tls_key)]
            {
                if value.is_none() {
                    return Err(invalid(key, "is required with smpp_server.tls_listen"));
                }
            }
        }

        for (i, smsc) in self.smsc.iter().enumerate() {
            self.validate_smsc(i, smsc)?;
        }

        let smpp = &self.smpp;
        check_secs("smpp.enquire_link_secs", smpp.enquire_link_secs, 1)?;
        check_secs("smpp.response_timeout_secs", smpp.response_timeout_secs, 1)?;
        check_secs("smpp.bind_timeout_secs", smpp.bind_timeout_secs, 1)?;
        check_secs("smpp.drain_timeout_secs", smpp.drain_timeout_secs, 0)?;
        check_ms("smpp.failed_bind_max_delay_ms", smpp.failed_bind_max_delay_ms, 0)?;
        check_at_least_one("smpp.failed_bind_limit", u64::from(smpp.failed_bind_limit))?;
        check_secs("smpp.failed_bind_window_secs", smpp.failed_bind_window_secs, 1)?;
        check_secs("smpp.failed_bind_cooldown_secs", smpp.failed_bind_cooldown_secs, 1)?;
        if !PDU_LEN_RANGE.contains(&smpp.max_pdu_len) {
            return Err(invalid(
                "smpp.max_pdu_len",
                format!(
                    "must be between {} and {}, got {}",
                    PDU_LEN_RANGE.start(),
                    PDU_LEN_RANGE.end(),
                    smpp.max_pdu_len
                ),
            ));
        }
        check_at_least_one("smpp.inbound_window", u64::from(smpp.inbound_window))?;
        if smpp.failed_bind_max_delay_ms < smpp.failed_bind_delay_ms {
            return Err(invalid(
                "smpp.failed_bind_max_delay_ms",
                format!(
                    "must be at least smpp.failed_bind_delay_ms ({}), got {}",
                    smpp.failed_bind_delay_ms, smpp.failed_bind_max_delay_ms
                ),
            ));
        }

        check_secs("ussd.session_timeout_secs", self.ussd.session_timeout_secs, 1)?;
        check_secs("ussd.resume_secs", self.ussd.resume_secs, 0)?;
        check_range("ussd.max_dialogues", self.ussd.max_dialogues, 1, 10_000_000)?;
        check_range("ussd.max_inputs_per_dial", u64::from(self.ussd.max_inputs_per_dial), 0, 100)?;
        if self.ussd.service_code.trim().is_empty() {
            return Err(invalid("ussd.service_code", "must not be empty"));
        }
        check_range("api.max_body_bytes", self.api.max_body_bytes as u64, 1024, 16 * 1024 * 1024)?;
        check_range("api.rate_per_sec", u64::from(self.api.rate_per_sec), 1, 100_000)?;
        check_range("api.burst", u64::from(self.api.burst), 1, 100_000)?;
        let api = &self.api;
        check_range(
            "api.unauthenticated_rate_per_sec",
            u64::from(api.unauthenticated_rate_per_sec),
            1,
            100_000,
        )?;
        check_range("api.unauthenticated_burst", u64::from(api.unauthenticated_burst), 1, 100_000)?;
        let http = &self.http;
        check_secs("http.header_timeout_secs", http.header_timeout_secs, 1)?;
        check_secs("http.idle_timeout_secs", http.idle_timeout_secs, 1)?;
        check_secs("http.request_timeout_secs", http.request_timeout_secs, 1)?;
        check_secs("http.grace_secs", http.grace_secs, 0)?;
        check_range("http.max_connections", u64::from(http.max_connections), 1, 100_000)?;
        if http.ops_listen.is_some_and(|ops| ops == http.listen && ops.port() != 0) {
            return Err(invalid("http.ops_listen", "must differ from http.listen"));
        }
        Ok(())
    }

    fn validate_notify(&self) -> Result<(), ConfigError> {
        let n = &self.notify;
        if n.source_addr.is_empty() || n.source_addr.len() > 20 {
            return Err(invalid("notify.source_addr", "must be 1 to 20 characters"));
        }
        if let Some(d) = &n.default_smsc
            && !self.smsc.iter().any(|s| &s.name == d)
        {
            return Err(invalid("notify.default_smsc", format!("no [[smsc]] is named `{d}`")));
        }
        check_secs("notify.validity_secs", n.validity_secs, 1)?;
        check_secs("notify.lease_secs", n.lease_secs, 1)?;
        for (i, r) in n.retry.iter().enumerate() {
            if r.status_code().is_none() {
                return Err(invalid(
                    format!("notify.retry[{i}].status"),
                    format!("`{}` is not a status code", r.status),
                ));
            }
            check_ms(&format!("notify.retry[{i}].max_backoff_ms"), r.max_backoff_ms, 1)?;
            if r.backoff_ms == 0 || r.max_backoff_ms < r.backoff_ms {
                return Err(invalid(
                    format!("notify.retry[{i}]"),
                    "backoff_ms must be at least 1 and at most max_backoff_ms",
                ));
            }
        }
        Ok(())
    }

    fn validate_smsc(&self, i: usize, smsc: &SmscConfig) -> Result<(), ConfigError> {
        let key = format!("smsc[{i}]");
        if smsc.name.is_empty() {
            return Err(invalid(format!("{key}.name"), "must not be empty"));
        }
        if let Some(c) = smsc.name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
            return Err(invalid(
                format!("{key}.name"),
                format!("`{}` contains {c:?}; only letters, digits, `_` and `-` are allowed", smsc.name),
            ));
        }
        if let Some(j) = self.smsc[..i].iter().position(|other| other.name == smsc.name) {
            return Err(invalid(
                format!("{key}.name"),
                format!("duplicate name `{}` (also smsc[{j}])", smsc.name),
            ));
        }
        if smsc.host.trim().is_empty() {
            return Err(invalid(format!("{key}.host"), "must not be empty"));
        }
        if smsc.port == 0 {
            return Err(invalid(format!("{key}.port"), "must not be 0"));
        }
        check_octets(&format!("{key}.system_id"), &smsc.system_id, 1, MAX_SYSTEM_ID)?;
        check_octets(&format!("{key}.password"), smsc.password.expose(), 0, MAX_PASSWORD)?;
        check_octets(&format!("{key}.system_type"), &smsc.system_type, 0, MAX_SYSTEM_TYPE)?;
        check_window(&format!("{key}.window"), smsc.window)?;
        check_prefixes(&format!("{key}.route_prefixes"), &smsc.route_prefixes)?;
        check_prefixes(&format!("{key}.msisdn_prefixes"), &smsc.msisdn_prefixes)?;
        if !smsc.tls && (smsc.tls_ca.is_some() || smsc.tls_server_name.is_some()) {
            return Err(invalid(format!("{key}.tls"), "tls_ca and tls_server_name need tls = true"));
        }
        check_ms(&format!("{key}.reconnect_min_ms"), smsc.reconnect_min_ms, 1)?;
        check_ms(&format!("{key}.reconnect_max_ms"), smsc.reconnect_max_ms, 1)?;
        if smsc.reconnect_max_ms < smsc.reconnect_min_ms {
            return Err(invalid(
                format!("{key}.reconnect_max_ms"),
                format!(
                    "must be at least reconnect_min_ms ({}), got {}",
                    smsc.reconnect_min_ms, smsc.reconnect_max_ms
                ),
            ));
        }
        check_ms(&format!("{key}.connect_timeout_ms"), smsc.connect_timeout_ms, 1)?;
        Ok(())
    }
}

/// Checks a list of MSISDN prefixes: each a non-empty string of digits.
fn check_prefixes(key: &str, prefixes: &[String]) -> Result<(), ConfigError> {
    for (p, prefix) in prefixes.iter().enumerate() {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                format!("{key}[{p}]"),
                format!("`{prefix}` must be a non-empty string of digits"),
            ));
        }
        if let Some(rest) = prefix.strip_prefix('0') {
            return Err(invalid(
                format!("{key}[{p}]"),
                format!("`{prefix}`: numbers are compared in their international form; write it as 84{rest}"),
            ));
        }
    }
    Ok(())
}

/// Checks an SMPP C-Octet string: length in octets within `min..=max`, no NUL.
fn check_octets(key: &str, value: &str, min: usize, max: usize) -> Result<(), ConfigError> {
    if value.contains('\0') {
        return Err(invalid(key, "must not contain a NUL character"));
    }
    let len = value.len();
    if len < min || len > max {
        let message = if min == 0 {
            format!("must be at most {max} octets (SMPP limit), got {len}")
        } else {
            format!("must be {min} to {max} octets (SMPP limit), got {len}")
        };
        return Err(invalid(key, message));
    }
    Ok(())
}

fn check_window(key: &str, window: u32) -> Result<(), ConfigError> {
    if window == 0 || window > MAX_WINDOW {
        return Err(invalid(key, format!("must be between 1 and {MAX_WINDOW}, got {window}")));
    }
    Ok(())
}

fn check_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(key, format!("must be between {min} and {max}, got {value}")));
    }
    Ok(())
}

/// The longest time any setting takes: a week (longer ones overflow the clock's arithmetic
/// long before they mean anything).
const MAX_SECS: u64 = 7 * 86_400;

/// A time in seconds, from `min` to [`MAX_SECS`].
fn check_secs(key: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    check_range(key, value, min, MAX_SECS)
}

/// A time in milliseconds, from `min` to [`MAX_SECS`] in milliseconds.
fn check_ms(key: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    check_range(key, value, min, MAX_SECS * 1000)
}

fn check_at_least_one(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(key, "must be at least 1"));
    }
    Ok(())
}
