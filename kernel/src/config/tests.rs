//! Tests of the configuration: defaults, validation, the README's examples.
use super::*;

const MINIMAL: &str = r#"
    [[nodes]]
    name = "pg"
    host = "127.0.0.1"
    port = 5432
    [auth]
    method = "trust"
"#;

/// The README's configuration examples, as written, are accepted: users copy them.
#[test]
fn readme_config_examples_parse_as_written() {
    let readme = include_str!("../../../README.md");
    let blocks: Vec<&str> = readme
        .split("```toml")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(blocks.len() >= 2, "the README has its config examples");
    for block in blocks {
        let text = if block.contains("[[nodes]]") {
            block.to_owned()
        } else {
            format!("{MINIMAL}\n{block}")
        };
        let c = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{block}"));
        if block.contains("method = \"scram-sha-256\"") {
            assert_eq!(c.auth.method, AuthMethod::ScramSha256);
        }
    }
}

#[test]
fn product_page_spellings_are_accepted() {
    let c = Config::parse(&format!(
        "{}\n[[plugins]]\nname = \"a\"\nsource = \"a.wasm\"\nhooks = [\"Authenticate\", \"PreQuery\", \"PostQuery\"]\n",
        MINIMAL.replace("\"trust\"", "\"scram-sha-256\"")
    ))
    .unwrap();
    assert_eq!(c.auth.method, AuthMethod::ScramSha256);
    assert_eq!(
        c.plugins[0].hooks,
        vec![
            crate::config::plugins::HookName::Authenticate,
            crate::config::plugins::HookName::PreQuery,
            crate::config::plugins::HookName::PostQuery
        ]
    );
    let old = Config::parse(&MINIMAL.replace("\"trust\"", "\"scram-sha256\"")).unwrap();
    assert_eq!(old.auth.method, AuthMethod::ScramSha256);
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = Config::parse(MINIMAL).unwrap();
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    assert_eq!(c.listen_address, "127.0.0.1:6432");
    assert_eq!(c.admin_address, "127.0.0.1:9090");
    assert_eq!(c.pool.mode, PoolMode::Transaction);
}

#[test]
fn unknown_key_is_refused_with_its_path() {
    let err = Config::parse("[pool]\nmode = \"session\"\nmax_conections = 5\n").unwrap_err();
    assert!(err.contains("max_conections"), "{err}");
    assert!(err.contains("pool"), "{err}");
}

#[test]
fn bad_enum_value_names_the_key() {
    let err = Config::parse("[pool]\nmode = \"sessions\"\n").unwrap_err();
    assert!(err.contains("pool.mode"), "{err}");
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let c = Config::parse(
        "listen_address = \"nope\"\n[pool]\nserver_connections = 0\n[auth]\nmethod = \"md5\"\n",
    )
    .unwrap();
    let problems = c.validate();
    assert!(problems.iter().any(|p| p.starts_with("listen_address")));
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("pool.server_connections"))
    );
    assert!(problems.iter().any(|p| p.starts_with("nodes")));
    assert!(problems.iter().any(|p| p.starts_with("auth.users_file")));
}

#[test]
fn discovered_roles_need_the_ha_section_and_its_values_are_checked() {
    let auto =
        "[auth]\nmethod = \"trust\"\n[[nodes]]\nname = \"a\"\nhost = \"h\"\nrole = \"auto\"\n";
    let problems = Config::parse(auto).unwrap().validate();
    assert!(
        problems.iter().any(|p| p.contains("needs an [ha] section")),
        "{problems:?}"
    );
    let with_ha = format!("{auto}[ha]\nuser = \"monitor\"\nfailover = \"manual\"\n");
    let c = Config::parse(&with_ha).unwrap();
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    let ha = c.ha.unwrap();
    assert_eq!(ha.failover, FailoverMode::Manual);
    assert_eq!(ha.breaker_failures, 5, "product page default");
    assert_eq!(ha.breaker_reset_ms, 30_000);
    assert_eq!(ha.breaker_half_open_requests, 3);
    let bad = format!("{auto}[ha]\nfailure_threshold = 0\n[journal]\nsegment_bytes = 10\n");
    let problems = Config::parse(&bad).unwrap().validate();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("ha.failure_threshold"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("journal.segment_bytes"))
    );
    let upgrade = "[upgrade]\nfrom_backend = \"a\"\nto_backend = \"b\"\n\
                   [[nodes]]\nname = \"b\"\nhost = \"h\"\nrole = \"replica\"\n";
    let problems = Config::parse(&format!("{with_ha}{upgrade}"))
        .unwrap()
        .validate();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("upgrade: cannot run with [ha]")),
        "{problems:?}"
    );
    let typo = Config::parse("[ha]\nfailover = \"sometimes\"\n").unwrap_err();
    assert!(typo.contains("ha.failover"), "{typo}");
}
