//! The configuration's tests: parsing, defaults, validation, overrides, paths.

use super::*;

const EXAMPLE: &str = r#"
[database]
url = "sqlite://chogate.db"
[http]
listen = "127.0.0.1:8080"
[smpp_server]
listen = "127.0.0.1:2775"
[[smpp_server.accounts]]
system_id = "ussdc"
password = "secret1"
[[smsc]]
name = "viettel"
host = "127.0.0.1"
port = 2776
system_id = "gw"
password = "secret"
bind = "transceiver"
window = 50
tps = 0
route_prefixes = ["8486", "8496"]
"#;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "test.toml", no_env())
}

fn parse_env(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "test.toml", env(pairs))
}

fn invalid_key(result: Result<Config, ConfigError>) -> (String, String) {
    match result {
        Err(ConfigError::Invalid { key, message }) => (key, message),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn env_error(result: Result<Config, ConfigError>) -> (String, String) {
    match result {
        Err(ConfigError::Env { var, message }) => (var, message),
        other => panic!("expected Env, got {other:?}"),
    }
}

fn smsc(name: &str, prefixes: &[&str]) -> String {
    let prefixes: Vec<String> = prefixes.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "[[smsc]]\nname = \"{name}\"\nhost = \"h\"\nport = 1\nsystem_id = \"gw\"\n\
         password = \"pw\"\nroute_prefixes = [{}]\n",
        prefixes.join(", ")
    )
}

#[test]
fn example_should_parse() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.database.url, "sqlite://chogate.db");
    assert_eq!(config.http.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.smpp_server.listen, "127.0.0.1:2775".parse().unwrap());
    let account = &config.smpp_server.accounts[0];
    assert_eq!(account.system_id, "ussdc");
    assert_eq!(account.password.expose(), "secret1");
    assert_eq!(account.max_binds, 8);
    assert_eq!(account.window, 50);
    assert_eq!(account.reply_pdu, ReplyPdu::DeliverSm);
    assert_eq!(account.dialogue_key, DialogueKey::ItsSessionInfo);
    assert_eq!(account.text_mode, TextMode::Ucs2);
    let smsc = &config.smsc[0];
    assert_eq!(smsc.name, "viettel");
    assert_eq!(smsc.port, 2776);
    assert_eq!(smsc.password, Secret::new("secret"));
    assert_eq!(smsc.bind, BindMode::Transceiver);
    assert_eq!(smsc.route_prefixes, ["8486", "8496"]);
    assert_eq!(smsc.system_type, "");
    assert_eq!(smsc.reconnect_min(), Duration::from_secs(1));
    assert_eq!(smsc.reconnect_max(), Duration::from_secs(60));
    assert_eq!(smsc.connect_timeout(), Duration::from_secs(5));
}

#[test]
fn empty_file_should_give_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config.database.url, "sqlite://chogate.db");
    assert_eq!(config.http.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.smpp_server.listen, "127.0.0.1:2775".parse().unwrap());
    assert!(config.smpp_server.accounts.is_empty());
    assert!(config.smsc.is_empty());
    assert_eq!(config.smpp.enquire_link(), Duration::from_secs(30));
    assert_eq!(config.smpp.response_timeout(), Duration::from_secs(10));
    assert_eq!(config.smpp.bind_timeout(), Duration::from_secs(10));
    assert_eq!(config.smpp.drain_timeout(), Duration::from_secs(5));
    assert_eq!(config.smpp.max_pdu_len, 65_536);
    assert_eq!(config.smpp.inbound_window, 1000);
    assert_eq!(config.smpp.failed_bind_delay(), Duration::from_millis(500));
    assert_eq!(config.smpp.failed_bind_max_delay(), Duration::from_secs(10));
    assert_eq!(config.ussd.session_timeout(), Duration::from_secs(120));
    assert_eq!(config.ussd.resume(), Duration::from_secs(300));
    assert_eq!(config.ussd.service_code, "*384#");
    assert_eq!(config.ussd.max_inputs_per_dial, 16);
    assert_eq!(config.log.filter, "info");
    assert_eq!(config.log.format, LogFormat::Text);
    // The Default impls agree with the serde defaults.
    let default = Config::default();
    assert_eq!(default.database.url, config.database.url);
    assert_eq!(default.smpp.max_pdu_len, config.smpp.max_pdu_len);
    assert_eq!(default.ussd.service_code, config.ussd.service_code);
    default.validate().unwrap();
}

#[test]
fn all_enum_spellings_should_parse() {
    let text = "[[smpp_server.accounts]]\nsystem_id = \"a\"\npassword = \"\"\n\
                reply_pdu = \"data_sm\"\ndialogue_key = \"user_message_reference\"\n\
                text_mode = \"gsm\"\n\
                [[smpp_server.accounts]]\nsystem_id = \"b\"\npassword = \"\"\n\
                reply_pdu = \"submit_sm\"\ndialogue_key = \"msisdn\"\n\
                [log]\nformat = \"json\"\n";
    let text = format!("{text}{}bind = \"transmitter+receiver\"\n", smsc("s", &[]));
    let config = parse(&text).unwrap();
    let a = &config.smpp_server.accounts;
    assert_eq!(a[0].reply_pdu, ReplyPdu::DataSm);
    assert_eq!(a[0].dialogue_key, DialogueKey::UserMessageReference);
    assert_eq!(a[0].text_mode, TextMode::Gsm);
    assert_eq!(a[1].reply_pdu, ReplyPdu::SubmitSm);
    assert_eq!(a[1].dialogue_key, DialogueKey::Msisdn);
    assert_eq!(config.smsc[0].bind, BindMode::TransmitterReceiver);
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn syntax_error_should_report_line_and_column() {
    let err = parse("[http]\nlisten = \n").unwrap_err();
    let ConfigError::Parse { path, message } = &err else {
        panic!("expected Parse, got {err:?}");
    };
    assert_eq!(path, "test.toml");
    assert!(message.contains("line 2"), "{message}");
    assert!(err.to_string().starts_with("test.toml: "), "{err}");
}

#[test]
fn unknown_top_level_key_should_be_rejected_naming_it() {
    let (key, message) = invalid_key(parse("databse = 1\n"));
    assert!(key.contains("databse") || message.contains("databse"), "{key}: {message}");
}

#[test]
fn unknown_nested_key_should_be_rejected_naming_it() {
    let (key, message) = invalid_key(parse("[http]\nlisen = \"127.0.0.1:1\"\n"));
    assert!(key.starts_with("http"), "{key}: {message}");
    assert!(message.contains("lisen"), "{key}: {message}");
    let text = format!("{EXAMPLE}colour = \"blue\"\n");
    let (key, message) = invalid_key(parse(&text));
    assert!(key.starts_with("smsc[0]"), "{key}: {message}");
    assert!(message.contains("colour"), "{key}: {message}");
}

#[test]
fn bad_enum_value_should_be_named() {
    let text = EXAMPLE.replace("bind = \"transceiver\"", "bind = \"trx\"");
    let (key, message) = invalid_key(parse(&text));
    assert_eq!(key, "smsc[0].bind");
    assert!(message.contains("trx"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn wrong_type_should_name_the_key() {
    let text = EXAMPLE.replace("port = 2776", "port = \"x\"");
    let (key, _) = invalid_key(parse(&text));
    assert_eq!(key, "smsc[0].port");
    let text = EXAMPLE.replace("port = 2776", "port = 70000");
    let (key, _) = invalid_key(parse(&text));
    assert_eq!(key, "smsc[0].port");
    let (key, _) = invalid_key(parse("[http]\nlisten = \"nowhere\"\n"));
    assert_eq!(key, "http.listen");
}

#[test]
fn missing_required_key_should_be_reported() {
    let text = EXAMPLE.replace("host = \"127.0.0.1\"\n", "");
    let (key, message) = invalid_key(parse(&text));
    assert!(key.starts_with("smsc[0]"), "{key}: {message}");
    assert!(message.contains("host"), "{key}: {message}");
}

#[test]
fn env_override_should_set_nested_key() {
    let config = parse_env(EXAMPLE, &[("CHOGATE_DATABASE__URL", "postgres://db/chogate")]).unwrap();
    assert_eq!(config.database.url, "postgres://db/chogate");
}

#[test]
fn env_override_should_create_missing_tables() {
    let config = parse_env(
        "",
        &[
            ("CHOGATE_LOG__FILTER", "debug,chogate=trace"),
            ("CHOGATE_USSD__SERVICE_CODE", "*123#"),
            ("CHOGATE_HTTP__LISTEN", "0.0.0.0:9000"),
        ],
    )
    .unwrap();
    assert_eq!(config.log.filter, "debug,chogate=trace");
    assert_eq!(config.ussd.service_code, "*123#");
    assert_eq!(config.http.listen, "0.0.0.0:9000".parse().unwrap());
}

#[test]
fn env_override_should_set_a_number() {
    let config = parse_env("", &[("CHOGATE_SMPP__ENQUIRE_LINK_SECS", "5")]).unwrap();
    assert_eq!(config.smpp.enquire_link_secs, 5);
}

#[test]
fn env_override_should_set_array_element() {
    let config = parse_env(
        EXAMPLE,
        &[
            ("CHOGATE_SMSC__0__PASSWORD", "newpw"),
            ("CHOGATE_SMSC__0__PORT", "2999"),
            ("CHOGATE_SMPP_SERVER__ACCOUNTS__0__MAX_BINDS", "3"),
        ],
    )
    .unwrap();
    assert_eq!(config.smsc[0].password.expose(), "newpw");
    assert_eq!(config.smsc[0].port, 2999);
    assert_eq!(config.smpp_server.accounts[0].max_binds, 3);
}

#[test]
fn env_override_of_a_string_key_should_stay_a_string() {
    let config = parse_env(EXAMPLE, &[("CHOGATE_SMSC__0__PASSWORD", "12345678")]).unwrap();
    assert_eq!(config.smsc[0].password.expose(), "12345678");
}

#[test]
fn env_override_should_set_an_array() {
    let config = parse_env(EXAMPLE, &[("CHOGATE_SMSC__0__ROUTE_PREFIXES", r#"["8432", "8433"]"#)]).unwrap();
    assert_eq!(config.smsc[0].route_prefixes, ["8432", "8433"]);
}

#[test]
fn env_override_index_out_of_range_should_be_an_error() {
    let (var, message) = env_error(parse_env(EXAMPLE, &[("CHOGATE_SMSC__1__PORT", "1")]));
    assert_eq!(var, "CHOGATE_SMSC__1__PORT");
    assert!(message.contains("out of range"), "{message}");
    let (var, message) = env_error(parse_env("", &[("CHOGATE_SMSC__0__PORT", "1")]));
    assert_eq!(var, "CHOGATE_SMSC__0__PORT");
    assert!(message.contains("out of range"), "{message}");
}

#[test]
fn env_override_of_unknown_key_should_be_rejected() {
    let (key, message) = invalid_key(parse_env(EXAMPLE, &[("CHOGATE_HTTP__LISEN", "x")]));
    assert!(key.starts_with("http"), "{key}: {message}");
    assert!(message.contains("lisen"), "{key}: {message}");
}

#[test]
fn env_override_with_bad_value_should_name_the_variable() {
    let (key, message) = invalid_key(parse_env(EXAMPLE, &[("CHOGATE_SMSC__0__PORT", "abc")]));
    assert_eq!(key, "smsc[0].port");
    assert!(message.contains("CHOGATE_SMSC__0__PORT"), "{message}");
}

#[test]
fn env_override_into_a_scalar_should_be_an_error() {
    let (var, _) = env_error(parse_env(EXAMPLE, &[("CHOGATE_DATABASE__URL__X", "1")]));
    assert_eq!(var, "CHOGATE_DATABASE__URL__X");
    let (var, _) = env_error(parse_env(EXAMPLE, &[("CHOGATE_SMSC__X__PORT", "1")]));
    assert_eq!(var, "CHOGATE_SMSC__X__PORT");
    let (var, _) = env_error(parse_env(EXAMPLE, &[("CHOGATE_SMPP____WINDOW", "1")]));
    assert_eq!(var, "CHOGATE_SMPP____WINDOW");
}

#[test]
fn env_without_double_underscore_should_be_ignored() {
    let config = parse_env(
        EXAMPLE,
        &[("CHOGATE_CONFIG", "/etc/chogate.toml"), ("CHOGATE_LOG", "debug"), ("OTHER__THING", "1")],
    )
    .unwrap();
    assert_eq!(config.log.filter, "info");
}

#[test]
fn duplicate_system_id_should_be_rejected() {
    let text = format!("{EXAMPLE}[[smpp_server.accounts]]\nsystem_id = \"ussdc\"\npassword = \"x\"\n");
    let (key, message) = invalid_key(parse(&text));
    assert_eq!(key, "smpp_server.accounts[1].system_id");
    assert!(message.contains("duplicate"), "{message}");
}

#[test]
fn too_long_system_id_should_be_rejected() {
    let text = EXAMPLE.replace("system_id = \"ussdc\"", "system_id = \"abcdefghijklmnop\"");
    let (key, _) = invalid_key(parse(&text));
    assert_eq!(key, "smpp_server.accounts[0].system_id");
    let text = EXAMPLE.replace("system_id = \"gw\"", "system_id = \"\"");
    let (key, _) = invalid_key(parse(&text));
    assert_eq!(key, "smsc[0].system_id");
    let text = EXAMPLE.replace("system_id = \"ussdc\"", "system_id = \"abcdefghijklmno\"");
    parse(&text).unwrap();
}

#[test]
fn too_long_password_should_be_rejected() {
    let text = EXAMPLE.replace("password = \"secret1\"", "password = \"123456789\"");
    let (key, message) = invalid_key(parse(&text));
    assert_eq!(key, "smpp_server.accounts[0].password");
    assert!(!message.contains("123456789"), "{message}");
}

#[test]
fn port_zero_should_be_rejected() {
    let text = EXAMPLE.replace("port = 2776", "port = 0");
    let (key, _) = invalid_key(parse(&text));
    assert_eq!(key, "smsc[0].port");
}

#[test]
fn non_digit_prefix_should_be_rejected() {
    let text = EXAMPLE.replace("\"8496\"", "\"84x6\"");
    let (key, _) = invalid_key(parse(&text));
    assert_eq!(key, "smsc[0].route_prefixes[1]");
    let text = EXAMPLE.replace("\"8496\"", "\"\"");
    let (key, _) = invalid_key(parse(&text));
    assert_eq!(key, "smsc[0].route_prefixes[1]");
}

#[test]
fn bad_database_url_should_be_rejected() {
    let text = EXAMPLE.replace("sqlite://chogate.db", "mysql://u:hunter2@h/db");
    let (key, message) = invalid_key(parse(&text));
    assert_eq!(key, "database.url");
    assert!(!message.contains("hunter2"), "{message}");
    for ok in ["sqlite::memory:", "postgres://h/db", "postgresql://u:p@h/db"] {
        let text = EXAMPLE.replace("sqlite://chogate.db", ok);
        parse(&text).unwrap();
    }
}

#[test]
fn database_tuning_should_default_and_be_range_checked() {
    let config = parse("").unwrap();
    assert_eq!(config.database.read_pool, 4);
    assert_eq!(config.database.write_batch, 256);
    assert_eq!(config.database.write_queue, 4096);
    assert_eq!(config.database.sqlite_synchronous, SqliteSynchronous::Full);
    assert_eq!(config.database.busy_timeout(), Duration::from_secs(5));
    let config = parse("[database]\nsqlite_synchronous = \"normal\"\nwrite_batch = 10\n").unwrap();
    assert_eq!(config.database.sqlite_synchronous, SqliteSynchronous::Normal);
    assert_eq!(config.database.write_batch, 10);
    let cases = [
        ("[database]\nread_pool = 0\n", "database.read_pool"),
        ("[database]\nread_pool = 65\n", "database.read_pool"),
        ("[database]\nwrite_batch = 0\n", "database.write_batch"),
        ("[database]\nwrite_queue = 0\n", "database.write_queue"),
        ("[database]\nbusy_timeout_ms = 0\n", "database.busy_timeout_ms"),
        ("[database]\nsqlite_synchronous = \"off\"\n", "database.sqlite_synchronous"),
    ];
    for (text, expected) in cases {
        let (key, _) = invalid_key(parse(text));
        assert_eq!(key, expected, "{text}");
    }
}

#[test]
fn window_zero_should_be_rejected() {
    let text = EXAMPLE.replace("window = 50", "window = 0");
    let (key, _) = invalid_key(parse(&text));
    assert_eq!(key, "smsc[0].window");
    let text = EXAMPLE.replace("window = 50", "window = 10001");
    let (key, _) = invalid_key(parse(&text));
    assert_eq!(key, "smsc[0].window");
    let text = EXAMPLE.replace("password = \"secret1\"", "password = \"s\"\nwindow = 0");
    let (key, _) = invalid_key(parse(&text));
    assert_eq!(key, "smpp_server.accounts[0].window");
}

#[test]
fn other_ranges_should_be_checked() {
    let cases = [
        ("[smpp]\nmax_pdu_len = 63\n", "smpp.max_pdu_len"),
        ("[smpp]\nmax_pdu_len = 1048577\n", "smpp.max_pdu_len"),
        ("[smpp]\nenquire_link_secs = 0\n", "smpp.enquire_link_secs"),
        ("[smpp]\nresponse_timeout_secs = 0\n", "smpp.response_timeout_secs"),
        ("[smpp]\nbind_timeout_secs = 0\n", "smpp.bind_timeout_secs"),
        ("[smpp]\nresponse_timeout_secs = 9223372036854775807\n", "smpp.response_timeout_secs"),
        ("[smpp]\ndrain_timeout_secs = 9000000000\n", "smpp.drain_timeout_secs"),
        ("[ussd]\nresume_secs = 9000000000\n", "ussd.resume_secs"),
        ("[smpp]\ninbound_window = 0\n", "smpp.inbound_window"),
        ("[ussd]\nsession_timeout_secs = 0\n", "ussd.session_timeout_secs"),
        ("[ussd]\nmax_inputs_per_dial = 101\n", "ussd.max_inputs_per_dial"),
    ];
    for (text, expected) in cases {
        let (key, _) = invalid_key(parse(text));
        assert_eq!(key, expected, "{text}");
    }
    let smsc_cases = [
        ("reconnect_min_ms = 0\n", "smsc[0].reconnect_min_ms"),
        ("reconnect_max_ms = 999\n", "smsc[0].reconnect_max_ms"),
        ("connect_timeout_ms = 0\n", "smsc[0].connect_timeout_ms"),
        ("system_type = \"abcdefghijklm\"\n", "smsc[0].system_type"),
    ];
    for (extra, expected) in smsc_cases {
        let text = format!("{}{extra}", smsc("s", &[]));
        let (key, _) = invalid_key(parse(&text));
        assert_eq!(key, expected, "{extra}");
    }
    let text = format!("{}{}", smsc("a", &[]), smsc("a", &[]));
    let (key, _) = invalid_key(parse(&text));
    assert_eq!(key, "smsc[1].name");
    let (key, _) = invalid_key(parse(&smsc("bad name", &[])));
    assert_eq!(key, "smsc[0].name");
    let (key, _) = invalid_key(parse(&smsc("", &[])));
    assert_eq!(key, "smsc[0].name");
}

#[test]
fn hardening_settings_should_default_and_be_range_checked() {
    let c = parse("").unwrap();
    let h = &c.http;
    assert_eq!(
        (h.ops_listen, h.header_timeout_secs, h.idle_timeout_secs, h.request_timeout_secs),
        (None, 10, 60, 30)
    );
    assert_eq!((h.max_connections, h.grace_secs), (512, 10));
    assert_eq!((c.api.unauthenticated_rate_per_sec, c.api.unauthenticated_burst), (5, 50));
    assert_eq!((c.database.retention_days, c.security.pin_pepper_file.clone()), (30, None));
    let c = parse(
        "[http]\nops_listen = \"127.0.0.1:9090\"\n[security]\npin_pepper_file = \"/etc/chogate/pepper\"\n",
    )
    .unwrap();
    assert_eq!(c.http.ops_listen, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(c.security.pin_pepper_file, Some(PathBuf::from("/etc/chogate/pepper")));
    for (text, expected) in [
        ("[http]\nheader_timeout_secs = 0\n", "http.header_timeout_secs"),
        ("[http]\nidle_timeout_secs = 0\n", "http.idle_timeout_secs"),
        ("[http]\nrequest_timeout_secs = 0\n", "http.request_timeout_secs"),
        ("[http]\nmax_connections = 0\n", "http.max_connections"),
        ("[http]\ngrace_secs = 9000000000\n", "http.grace_secs"),
        ("[http]\nlisten = \"127.0.0.1:80\"\nops_listen = \"127.0.0.1:80\"\n", "http.ops_listen"),
        ("[api]\nunauthenticated_burst = 0\n", "api.unauthenticated_burst"),
        ("[database]\nretention_days = 0\n", "database.retention_days"),
        ("[security]\npepper = \"x\"\n", "security"),
    ] {
        let (key, _) = invalid_key(parse(text));
        assert!(key.starts_with(expected), "{text}: {key}");
    }
}

#[test]
fn debug_should_not_show_passwords() {
    let mut config = parse(EXAMPLE).unwrap();
    config.database.url = "postgres://chogate:dbpass@db.local/chogate".into();
    let debug = format!("{config:?}");
    assert!(!debug.contains("dbpass") && debug.contains("chogate:***@db.local"), "{debug}");
    assert!(!debug.contains("secret1"), "{debug}");
    assert!(!debug.contains("\"secret\""), "{debug}");
    assert!(debug.contains("Secret(***)"), "{debug}");
    assert_eq!(format!("{}", Secret::new("x")), "***");
}

#[test]
fn load_should_report_unreadable_file() {
    let err = Config::load(Path::new("/nonexistent/chogate.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/chogate.toml"), "{err}");
}

fn load_in(dir: &Path, text: &str, pairs: &[(&str, &str)]) -> Config {
    Config::parse(text, "test.toml", Some(dir), env(pairs)).unwrap()
}

#[test]
fn relative_paths_of_a_file_should_be_its_folders() {
    let etc = Path::new("/etc/chogate");
    let c = load_in(etc, "[database]\nurl = \"sqlite://chogate.db\"\n[ussd]\nmenus_dir = \"menus\"\n", &[]);
    assert_eq!(c.database.url, "sqlite:///etc/chogate/chogate.db");
    assert_eq!(c.ussd.menus_dir, Some(PathBuf::from("/etc/chogate/menus")));
    // The default is as if written in the file; no menus_dir: the built-in menus.
    let c = load_in(etc, "", &[]);
    assert_eq!(c.database.url, "sqlite:///etc/chogate/chogate.db");
    assert_eq!(c.ussd.menus_dir, None);
    for (url, resolved) in [
        ("sqlite:state/x.db?mode=rwc", "sqlite:///etc/chogate/state/x.db?mode=rwc"),
        ("sqlite://./x.db", "sqlite:///etc/chogate/./x.db"),
        ("sqlite:///var/lib/chogate/x.db", "sqlite:///var/lib/chogate/x.db"),
        ("sqlite::memory:", "sqlite::memory:"),
        ("postgres://chogate@db/chogate", "postgres://chogate@db/chogate"),
    ] {
        let c = load_in(etc, &format!("[database]\nurl = \"{url}\"\n"), &[]);
        assert_eq!(c.database.url, resolved, "{url}");
    }
    // A folder with characters a URL gives meaning to.
    let c = load_in(Path::new("/srv/a%b?c#d"), "", &[]);
    assert_eq!(c.database.url, "sqlite:///srv/a%25b%3Fc%23d/chogate.db");
    // The environment's paths are the working directory's.
    let c = load_in(
        etc,
        "[database]\nurl = \"sqlite://chogate.db\"\n",
        &[("CHOGATE_DATABASE__URL", "sqlite://env.db"), ("CHOGATE_USSD__MENUS_DIR", "m")],
    );
    assert_eq!(c.database.url, "sqlite://env.db");
    assert_eq!(c.ussd.menus_dir, Some(PathBuf::from("m")));
    // The TLS files too.
    let c = load_in(
        etc,
        "[smpp_server]\ntls_listen = \"127.0.0.1:0\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"/k.pem\"\n\
         [[smsc]]\nname = \"a\"\nhost = \"h\"\nport = 1\nsystem_id = \"s\"\npassword = \"p\"\ntls = true\n\
         tls_ca = \"ca.pem\"\n",
        &[],
    );
    assert_eq!(c.smpp_server.tls_cert, Some(PathBuf::from("/etc/chogate/tls/cert.pem")));
    assert_eq!(c.smpp_server.tls_key, Some(PathBuf::from("/k.pem")));
    assert_eq!(c.smsc[0].tls_ca, Some(PathBuf::from("/etc/chogate/ca.pem")));
    // Text alone (no file): as written.
    assert_eq!(parse("[ussd]\nmenus_dir = \"m\"\n").unwrap().ussd.menus_dir, Some(PathBuf::from("m")));
}

#[test]
fn load_should_take_relative_paths_from_the_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chogate.toml");
    std::fs::write(&path, "[ussd]\nmenus_dir = \"menus\"\n").unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.ussd.menus_dir, Some(dir.path().join("menus")));
}

#[test]
fn redact_url_should_hide_password() {
    assert_eq!(redact_url("mysql://u:pw@h/db"), "mysql://u:***@h/db");
    assert_eq!(redact_url("mysql://h/db"), "mysql://h/db");
    assert_eq!(redact_url("junk"), "junk");
}
