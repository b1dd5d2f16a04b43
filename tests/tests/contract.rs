//! Contract `helios:plugin@0.3.0` as users meet it: a component built against 0.2.0 still
//! loads and works, a component configured for a hook it lacks is refused at load, the
//! kernel caches the verdicts of hooks declared pure, and the statement class the router
//! sees comes from PostgreSQL's parser (hidden writes never go to a replica).

use std::sync::Arc;

use helios_tests::heliosproxy::config::{Config, Grant, HookName, PluginRuntimeConfig, PoolMode};
use helios_tests::heliosproxy::plugins::Runtime;
use helios_tests::heliosproxy::topology::Topology;
use helios_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_against_0_2_0_loads_and_reads_context_through_the_adapter() {
    let pg = shared_pg();
    create_database(pg, "contract_v02").await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.admin.api_key = Some("k".into());
    config
        .plugins
        .push(plugin("legacy", "helios-legacy-v02", &[], ""));
    let proxy = start_proxy(config).await;
    let c = connect(&via_proxy(&proxy, "postgres", "contract_v02"))
        .await
        .unwrap();
    let err = c
        .simple_query("select * from legacy_secret")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501");
    let msg = db_message(&err);
    assert!(
        msg.contains(
            "component legacy: 0.2.0 component refuses public.legacy_secret (StatementClass::Read)"
        ),
        "{msg}"
    );
    // Each statement of a multi-statement query reaches the 0.2.0 hook on its own.
    let err = c
        .simple_query("select 1; select * from s.legacy_secret")
        .await
        .unwrap_err();
    assert!(
        db_message(&err).contains("s.legacy_secret (StatementClass::Read)"),
        "{err}"
    );
    let r = c.simple_query("select 41 + 1").await.unwrap();
    assert_eq!(rows(&r)[0][0].as_deref(), Some("42"));
    // Unqualified names resolve against the search_path the session set.
    c.batch_execute("SET search_path TO vault, public")
        .await
        .unwrap();
    let err = c
        .simple_query("select * from legacy_secret")
        .await
        .unwrap_err();
    assert!(
        db_message(&err).contains("refuses vault.legacy_secret"),
        "{err}"
    );
    let (code, body) = admin_http(proxy.admin_addr, "GET", "/plugins", Some("k"), None).await;
    assert_eq!(code, 200);
    assert!(body.contains("\"contract\":\"0.2.0\""), "{body}");
}

#[test]
fn a_component_configured_for_a_hook_it_lacks_is_refused_at_load() {
    let runtime = Runtime::new(&PluginRuntimeConfig::default()).unwrap();
    let topology = Arc::new(Topology::new(&Config::default(), None));
    // The router under the guardrail's name, configured to validate: loading it silently
    // would leave the proxy without validation.
    let mut wrong = plugin(
        "guardrail",
        "helios-router",
        &[Grant::Topology, Grant::Clock],
        "",
    );
    wrong.hooks = vec![HookName::Validate];
    let err = match runtime.load(&wrong, topology.clone()) {
        Ok(_) => panic!("a router configured as a validator was loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("component guardrail")
            && err
                .contains("configured hooks [validate] but the component does not implement them"),
        "{err}"
    );
    let mut right = plugin("guardrail", "helios-llm-guardrail", &[], "");
    right.hooks = vec![HookName::Validate];
    let loaded = runtime.load(&right, topology).unwrap();
    assert!(loaded.has_hook(HookName::Validate));
    assert!(loaded.is_pure(HookName::Validate));
    assert_eq!(loaded.contract(), "0.3.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kernel_caches_pure_verdicts_per_statement_and_session_values() {
    let pg = shared_pg();
    create_database(pg, "contract_pure").await;
    let direct = connect(&pg.direct("contract_pure")).await.unwrap();
    direct
        .batch_execute("create table t(id int); insert into t values (1)")
        .await
        .unwrap();
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.admin.api_key = Some("k".into());
    config.plugins.push(plugin(
        "guardrail",
        "helios-llm-guardrail",
        &[],
        "applications = [\"agent\"]\n",
    ));
    let proxy = start_proxy(config).await;
    let url = |app: &str| {
        format!(
            "{} application_name={app}",
            via_proxy(&proxy, "postgres", "contract_pure")
        )
    };
    let agent = connect(&url("agent")).await.unwrap();
    for _ in 0..5 {
        agent
            .simple_query("select id from t where id = 1")
            .await
            .unwrap();
        let err = agent.simple_query("delete from t").await.unwrap_err();
        assert_eq!(err.code().unwrap().code(), "42501");
    }
    let stats = || async {
        let (_, body) = admin_http(proxy.admin_addr, "GET", "/plugins", Some("k"), None).await;
        let field = |name: &str| -> u64 {
            let at = body.find(&format!("\"{name}\":")).expect(name) + name.len() + 3;
            body[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        (field("calls"), field("cached_decisions"), body.clone())
    };
    let (calls, cached, body) = stats().await;
    assert!(body.contains("\"pure\":[\"validate\"]"), "{body}");
    assert_eq!(calls, 2, "one call per statement text: {body}");
    assert_eq!(
        cached, 8,
        "the other eight verdicts came from the cache: {body}"
    );
    // The guardrail read application_name: another application is asked again (and allowed).
    let other = connect(&url("psql")).await.unwrap();
    other
        .simple_query("delete from t where id = 99")
        .await
        .unwrap();
    other
        .simple_query("select id from t where id = 1")
        .await
        .unwrap();
    let (calls, _, body) = stats().await;
    assert_eq!(calls, 4, "{body}");
    // Literal variants share the analysis of their shape, and so the verdict.
    agent
        .simple_query("select id from t where id = 2")
        .await
        .unwrap();
    let err = agent
        .simple_query("delete from t where 7 = 7")
        .await
        .unwrap_err();
    assert!(db_message(&err).contains("keeps every row"), "{err}");
    let (calls, _, body) = stats().await;
    assert_eq!(
        calls, 5,
        "only the new shape `delete … where 7 = 7` was judged: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_write_behind_a_select_never_go_to_a_replica() {
    let (primary, replica) = start_primary_and_replica().await;
    let direct = connect(&primary.direct("postgres")).await.unwrap();
    direct
        .batch_execute(
            "create table kv(k int primary key, v text); insert into kv values (1, 'a'); \
             create sequence seq",
        )
        .await
        .unwrap();
    wait_for_replay(&primary, &replica).await;
    let mut config = proxy_config(&primary, PoolMode::Transaction, 3);
    add_replica(&mut config, &replica, "replica1", &[]);
    config.plugins.push(plugin(
        "router",
        "helios-router",
        &[Grant::Topology, Grant::Clock],
        "",
    ));
    let proxy = start_proxy(config).await;
    let c = connect(&via_proxy(&proxy, "postgres", "postgres"))
        .await
        .unwrap();
    let port = |sql: &'static str| {
        let c = &c;
        async move {
            let r = c.simple_query(sql).await.unwrap();
            rows(&r)[0][0].clone().unwrap()
        }
    };
    let (on_primary, on_replica) = (primary.port.to_string(), replica.port.to_string());
    assert_eq!(port("select inet_server_port()::text").await, on_replica);
    for sql in [
        "with d as (delete from kv where k = -1 returning 1) select inet_server_port()::text",
        "select inet_server_port()::text from kv where k = 1 for update",
        "select inet_server_port()::text from kv where k = 1 for share",
        "select inet_server_port()::text, nextval('seq')",
        "select inet_server_port()::text, set_config('app.x', '1', false)",
        "select inet_server_port()::text, pg_advisory_xact_lock(1)",
        "/* select */ select inet_server_port()::text, nextval('seq')",
    ] {
        assert_eq!(port(sql).await, on_primary, "{sql}");
    }
    // The same through the extended protocol.
    let r = c
        .query_one("select inet_server_port()::text, nextval('seq')", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), on_primary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_is_judged_by_the_statement_it_runs() {
    let pg = shared_pg();
    create_database(pg, "contract_execute").await;
    let direct = connect(&pg.direct("contract_execute")).await.unwrap();
    direct
        .batch_execute("create table t(id int); insert into t values (1), (2)")
        .await
        .unwrap();
    let mut config = proxy_config(pg, PoolMode::Session, 2);
    config.admin.api_key = Some("k".into());
    config
        .plugins
        .push(plugin("guardrail", "helios-llm-guardrail", &[], ""));
    let proxy = start_proxy(config).await;
    let post = |path: &'static str| admin_http(proxy.admin_addr, "POST", path, Some("k"), None);
    let c = connect(&via_proxy(&proxy, "postgres", "contract_execute"))
        .await
        .unwrap();
    // Prepared while the guardrail was off (or by an older component version) ...
    assert_eq!(post("/plugins/guardrail/disable").await.0, 200);
    c.batch_execute("PREPARE wipe AS DELETE FROM t")
        .await
        .unwrap();
    c.batch_execute("PREPARE one AS SELECT * FROM t WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(post("/plugins/guardrail/enable").await.0, 200);
    // ... EXECUTE runs it: the guardrail sees the DELETE it would run.
    let err = c.simple_query("EXECUTE wipe").await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501");
    let msg = db_message(&err);
    assert!(
        msg.contains("DELETE on public.t without a WHERE clause run by EXECUTE"),
        "{msg}"
    );
    let n: i64 = direct
        .query_one("select count(*) from t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "nothing was deleted");
    let r = c.simple_query("EXECUTE one").await.unwrap();
    assert_eq!(rows(&r).len(), 1);
}
