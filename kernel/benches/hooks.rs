//! Component call costs: a no-op PreQuery with a 200-byte statement and full session context,
//! and the whole chain (facts + PreQuery/Validate + Route) with router and llm-guardrail.
//! Builds the first-party components for wasm32-wasip2 first (in target/wasm).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use heliosproxy::config::{
    Config, Grant, HookName, NodeConfig, NodeRole, PluginConfig, PluginRuntimeConfig,
};
use heliosproxy::hooks::{self, Pipeline};
use heliosproxy::hooks::{CallScope, SessionInfo};
use heliosproxy::plugins::Runtime;
use heliosproxy::plugins::bindings::Call;
use heliosproxy::topology::Topology;
use std::hint::black_box;

fn components() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target").join("wasm");
    let status = std::process::Command::new(env!("CARGO"))
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--profile",
            "wasm",
            "--target",
            "wasm32-wasip2",
            "-q",
        ])
        .args([
            "-p",
            "helios-router",
            "-p",
            "helios-llm-guardrail",
            "-p",
            "helios-misbehave",
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building components failed");
    target.join("wasm32-wasip2").join("wasm")
}

fn plugin(dir: &Path, name: &str, file: &str, grants: &[Grant], config: &str) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        source: dir.join(file).display().to_string(),
        hooks: vec![],
        grants: grants.to_vec(),
        on_error: None,
        timeout_ms: 10,
        memory_mb: 16,
        instances: 1,
        config: toml::from_str(config).unwrap(),
        post_query_rows_bytes: 0,
        documents: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let dir = components();
    let mut config = Config::default();
    for (name, role) in [("pg1", NodeRole::Primary), ("pg2", NodeRole::Replica)] {
        config.nodes.push(NodeConfig {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 5432,
            role,
            tags: vec![],
            data_dir: None,
        });
    }
    let topology = Arc::new(Topology::new(&config, None));
    let runtime = Runtime::new(&PluginRuntimeConfig::default()).unwrap();
    let noop = runtime
        .load(
            &plugin(
                &dir,
                "noop",
                "helios_misbehave.wasm",
                &[Grant::Kv],
                "mode = \"noop\"",
            ),
            topology.clone(),
        )
        .unwrap();
    let session = SessionInfo {
        session_id: 42,
        user: "app_user".into(),
        database: "app_db".into(),
        application_name: "checkout-service".into(),
        client_addr: "10.1.2.3:54321".into(),
        tenant: Some("tenant-7".into()),
        attributes: vec![
            ("region".into(), "eu-west".into()),
            ("role".into(), "reader".into()),
        ],
        search_path: vec![],
    };
    let sql = "SELECT o.id, o.total, o.status, c.name, c.email FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.tenant_id = $1 AND o.created_at > now() - interval '7 days' ORDER BY o.created_at DESC LIMIT 50";
    assert!((185..=215).contains(&sql.len()), "{}", sql.len());
    let session = Arc::new(session);
    let stmt = hooks::statement(sql);
    let call = Call {
        session_id: 42,
        in_transaction: false,
    };
    let scope = CallScope {
        session: session.clone(),
        stmt: Some(stmt.clone()),
        rows: None,
    };
    c.bench_function("hooks/noop_pre_query_call", |b| {
        b.iter(|| {
            noop.call(HookName::PreQuery, Some(&scope), |p, s| {
                p.call_pre_query(s, black_box(call), black_box(&stmt.stmt))
            })
            .unwrap()
        })
    });
    let bare_session = SessionInfo {
        session_id: 42,
        user: String::new(),
        database: String::new(),
        application_name: String::new(),
        client_addr: String::new(),
        tenant: None,
        attributes: vec![],
        search_path: vec![],
    };
    let bare_stmt = hooks::statement("select 1");
    let bare_scope = CallScope {
        session: Arc::new(bare_session),
        stmt: Some(bare_stmt.clone()),
        rows: None,
    };
    c.bench_function("hooks/noop_pre_query_call_bare", |b| {
        b.iter(|| {
            noop.call(HookName::PreQuery, Some(&bare_scope), |p, s| {
                p.call_pre_query(s, black_box(call), black_box(&bare_stmt.stmt))
            })
            .unwrap()
        })
    });
    let router = runtime
        .load(
            &plugin(
                &dir,
                "router",
                "helios_router.wasm",
                &[Grant::Topology, Grant::Clock],
                "",
            ),
            topology.clone(),
        )
        .unwrap();
    let guard = runtime
        .load(
            &plugin(
                &dir,
                "guard",
                "helios_llm_guardrail.wasm",
                &[],
                "large_tables = [\"events\"]\ntenant_tables = [\"orders\"]",
            ),
            topology.clone(),
        )
        .unwrap();
    c.bench_function("hooks/router_route_call", |b| {
        b.iter(|| {
            router
                .call(HookName::Route, Some(&scope), |p, s| {
                    p.call_route(s, black_box(call), black_box(&stmt.stmt))
                })
                .unwrap()
        })
    });
    c.bench_function("hooks/guardrail_validate_call", |b| {
        b.iter(|| {
            guard
                .call(HookName::Validate, Some(&scope), |p, s| {
                    p.call_validate(s, black_box(call), black_box(&stmt.stmt))
                })
                .unwrap()
        })
    });
    let chain = Pipeline::new(vec![router, guard]);
    c.bench_function("hooks/router_and_guardrail_chain", |b| {
        b.iter(|| {
            let (decision, stmt) =
                chain.pre_query_and_validate(black_box(&session), false, black_box(sql), &|_| None);
            let route = chain.route(&session, false, &stmt);
            (matches!(decision, hooks::PreQuery::Proceed(None)), route)
        })
    });
    // Every statement new to the proxy: a parse by PostgreSQL's grammar, and the
    // guardrail's verdict computed rather than taken from the kernel's cache.
    let mut n = 0u64;
    c.bench_function("hooks/router_and_guardrail_chain_new_literal", |b| {
        b.iter(|| {
            n += 1;
            let sql = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {n}");
            let (decision, stmt) = chain.pre_query_and_validate(&session, false, &sql, &|_| None);
            let route = chain.route(&session, false, &stmt);
            (matches!(decision, hooks::PreQuery::Proceed(None)), route)
        })
    });
    c.bench_function("hooks/statement_facts_cached", |b| {
        b.iter(|| hooks::statement(black_box(sql)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
