//! `CHOGATE_<SECTION>__<KEY>` environment overrides, applied to the parsed TOML table
//! before it is deserialized.

use super::*;

/// The `CHOGATE_` variables of the process environment; a non-UTF-8 one is an error,
/// other non-UTF-8 variables are skipped.
pub(super) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let name_lossy = name.to_string_lossy();
        if !name_lossy.starts_with(ENV_PREFIX) {
            continue;
        }
        let name = name_lossy.into_owned();
        match value.into_string() {
            Ok(value) => vars.push((name, value)),
            Err(_) => {
                return Err(ConfigError::Env { var: name, message: "value is not valid UTF-8".to_owned() });
            }
        }
    }
    Ok(vars)
}

/// One override that was applied: the variable and the key path it set.
pub(super) struct AppliedOverride {
    var: String,
    key: String,
}

/// The variable that set `key` or one of its parents, if any.
pub(super) fn override_for_key<'a>(applied: &'a [AppliedOverride], key: &str) -> Option<&'a str> {
    applied
        .iter()
        .rev()
        .find(|o| {
            key == o.key
                || key
                    .strip_prefix(o.key.as_str())
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
        .map(|o| o.var.as_str())
}

/// Applies every `CHOGATE_A__B__C=value` variable to the table, in name order.
/// Variables without `__` after the prefix (like `CHOGATE_CONFIG`) are left to the CLI.
pub(super) fn apply_env_overrides(
    table: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<AppliedOverride>, ConfigError> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.strip_prefix(ENV_PREFIX).is_some_and(|rest| rest.contains(ENV_SEPARATOR)))
        .collect();
    vars.sort();

    let mut applied = Vec::with_capacity(vars.len());
    for (var, raw) in vars {
        let rest = var.strip_prefix(ENV_PREFIX).unwrap_or_default();
        let segments: Vec<String> = rest.split(ENV_SEPARATOR).map(str::to_ascii_lowercase).collect();
        if segments.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "empty key segment (use `__` only between keys)".to_owned(),
            });
        }
        match set_in_table(table, &segments, &raw, String::new()) {
            Ok(key) => applied.push(AppliedOverride { var, key }),
            Err(message) => return Err(ConfigError::Env { var, message }),
        }
    }
    Ok(applied)
}

/// Sets `segments` (non-empty) inside `table`; returns the key path that was set.
fn set_in_table(table: &mut Table, segments: &[String], raw: &str, parent: String) -> Result<String, String> {
    let Some((name, rest)) = segments.split_first() else {
        return Err("empty key".to_owned());
    };
    let key = if parent.is_empty() { name.clone() } else { format!("{parent}.{name}") };
    if rest.is_empty() {
        let value = override_value(raw, table.get(name));
        table.insert(name.clone(), value);
        return Ok(key);
    }
    if !table.contains_key(name) {
        if let Some(index) = rest.first().filter(|s| s.parse::<usize>().is_ok()) {
            return Err(format!("index {index} out of range: {key} is empty"));
        }
        table.insert(name.clone(), Value::Table(Table::new()));
    }
    match table.get_mut(name) {
        Some(child) => set_in_value(child, rest, raw, key),
        None => Err(format!("cannot create {key}")),
    }
}

/// Descends into `node` (a table or an array) along `segments` (non-empty).
fn set_in_value(node: &mut Value, segments: &[String], raw: &str, key: String) -> Result<String, String> {
    match node {
        Value::Table(table) => set_in_table(table, segments, raw, key),
        Value::Array(array) => {
            let Some((index, rest)) = segments.split_first() else {
                return Err("empty key".to_owned());
            };
            let Ok(i) = index.parse::<usize>() else {
                return Err(format!("{key} is an array: `{index}` must be a numeric index"));
            };
            let len = array.len();
            let item_key = format!("{key}[{i}]");
            let Some(item) = array.get_mut(i) else {
                return Err(format!(
                    "index {i} out of range: {key} has {len} element{}",
                    if len == 1 { "" } else { "s" }
                ));
            };
            if rest.is_empty() {
                *item = override_value(raw, Some(item));
                Ok(item_key)
            } else {
                set_in_value(item, rest, raw, item_key)
            }
        }
        other => Err(format!("{key} is a {}, not a table or array", other.type_str())),
    }
}

/// The TOML value for an override: an integer, float, boolean or array if the text
/// parses as one, otherwise a string. A key that the file already sets to a string
/// stays a string, so `CHOGATE_SMSC__0__PASSWORD=1234` keeps a numeric password textual.
fn override_value(raw: &str, existing: Option<&Value>) -> Value {
    if matches!(existing, Some(Value::String(_))) {
        return Value::String(raw.to_owned());
    }
    match raw.trim().parse::<Value>() {
        Ok(value @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Array(_))) => value,
        _ => Value::String(raw.to_owned()),
    }
}
