//! The analysis against tricky SQL: every place a change can hide, quoting, comments,
//! dollar quotes, `U&` strings, qualified names, and input PostgreSQL rejects.

use crate::*;

fn one(sql: &str) -> StatementFacts {
    let a = analyze(sql);
    assert!(a.error.is_none(), "{sql}: {:?}", a.error);
    assert_eq!(a.statements.len(), 1, "{sql}");
    a.statements.into_iter().next().unwrap()
}

fn t(name: &str) -> TableName {
    match name.split_once('.') {
        Some((s, n)) => TableName {
            schema: Some(s.into()),
            name: n.into(),
        },
        None => TableName {
            schema: None,
            name: name.into(),
        },
    }
}

#[test]
fn a_plain_select_is_a_read_with_its_filter_and_limit() {
    let f = one("SELECT abalance FROM pgbench_accounts WHERE aid = 5 LIMIT 10");
    assert_eq!(f.kind, "select");
    assert_eq!(f.class, StatementClass::Read);
    assert_eq!(f.reads, vec![t("pgbench_accounts")]);
    assert!(f.writes.is_empty() && f.modifications.is_empty());
    let b = &f.blocks[0];
    assert!(b.filter.present && !b.filter.constant);
    assert_eq!(
        b.filter.equalities,
        vec![Equality {
            column: "aid".into(),
            parameter: false
        }]
    );
    assert_eq!(b.limit, Limit::Count(10));
    assert_eq!(one("select * from t limit all").blocks[0].limit, Limit::All);
    assert_eq!(
        one("select * from t limit $1").blocks[0].limit,
        Limit::Expression
    );
    assert_eq!(
        one("select * from t fetch first 3 rows only").blocks[0].limit,
        Limit::Count(3)
    );
    assert_eq!(one("select * from t").blocks[0].limit, Limit::None);
}

#[test]
fn multi_statement_text_is_split_by_the_grammar() {
    let a = analyze("SELECT 'a;b' ; DROP TABLE users; -- trailing\n");
    assert_eq!(a.statements.len(), 2);
    assert_eq!(a.statements[0].text, "SELECT 'a;b'");
    assert_eq!(a.statements[1].kind, "drop");
    assert_eq!(a.statements[1].drops, vec!["table users".to_string()]);
    assert_eq!(a.statements[1].class, StatementClass::Ddl);
}

#[test]
fn comments_ended_by_a_carriage_return_hide_nothing() {
    // A lexer that ends `--` comments only at `\n` sees a comment here; PostgreSQL sees a DROP.
    let f = one("--\rDROP TABLE users");
    assert_eq!(f.kind, "drop");
}

#[test]
fn data_modifying_ctes_are_found_and_make_a_select_a_write() {
    let f = one("WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d");
    assert_eq!(f.class, StatementClass::Write);
    assert_eq!(f.modifications.len(), 1);
    let m = &f.modifications[0];
    assert_eq!(m.kind, ModificationKind::Delete);
    assert_eq!(m.table, t("orders"));
    assert_eq!(m.via, Via::Cte);
    assert!(!m.filter.present);
    assert!(f.writes.contains(&t("orders")));
    assert!(!f.reads.contains(&t("d")), "CTE names are not tables");
    let nested = one(
        "WITH a AS (SELECT 1), u AS (UPDATE s.accounts SET x = 1 WHERE true RETURNING 1) \
         SELECT * FROM a",
    );
    assert_eq!(nested.modifications[0].table, t("s.accounts"));
    assert!(nested.modifications[0].filter.constant);
}

#[test]
fn explain_analyze_runs_its_statement_and_plain_explain_does_not() {
    let f = one("EXPLAIN ANALYZE DELETE FROM users");
    assert_eq!(f.kind, "explain");
    assert_eq!(f.modifications[0].via, Via::ExplainAnalyze);
    assert_eq!(f.class, StatementClass::Write);
    let f = one("EXPLAIN (ANALYZE true, BUFFERS) UPDATE users SET a = 1");
    assert_eq!(f.modifications[0].kind, ModificationKind::Update);
    let f = one("EXPLAIN DELETE FROM users");
    assert!(f.modifications.is_empty());
    assert_eq!(f.class, StatementClass::Read);
    let f = one("EXPLAIN (ANALYZE off) DELETE FROM users");
    assert!(f.modifications.is_empty());
}

#[test]
fn merge_actions_carry_the_join_condition() {
    let f = one("MERGE INTO users u USING (SELECT 1 AS id) s ON true \
         WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (1)");
    let kinds: Vec<_> = f.modifications.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        vec![ModificationKind::Delete, ModificationKind::Insert]
    );
    assert!(f.modifications[0].filter.constant);
    assert_eq!(f.modifications[0].via, Via::Merge);
    // A source nothing restricts, joined on the key, matches every target row.
    let f = one("MERGE INTO users u USING src s ON u.id = s.id WHEN MATCHED THEN UPDATE SET a = 1");
    assert!(f.modifications[0].filter.constant);
    assert!(f.reads.contains(&t("src")));
}

#[test]
fn a_merge_is_filtered_only_by_what_a_constant_restricts() {
    let constant = |sql: &str| one(sql).modifications[0].filter.constant;
    assert!(constant(
        "MERGE INTO users u USING users s ON u.id = s.id WHEN MATCHED THEN UPDATE SET a = true"
    ));
    assert!(constant(
        "MERGE INTO users u USING (SELECT * FROM users) s ON u.id = s.id WHEN MATCHED THEN DELETE"
    ));
    for restricted in [
        "MERGE INTO users u USING (SELECT * FROM users WHERE id = 5) s ON u.id = s.id \
         WHEN MATCHED THEN DELETE",
        "MERGE INTO users u USING (VALUES (1)) v(id) ON u.id = v.id WHEN MATCHED THEN DELETE",
        "MERGE INTO users u USING (SELECT $1::int AS id) s ON u.id = s.id WHEN MATCHED THEN DELETE",
        "MERGE INTO users u USING src s ON u.id = s.id AND u.tenant = $1 WHEN MATCHED THEN DELETE",
        "MERGE INTO users u USING src s ON u.id = s.id WHEN MATCHED AND u.id = 3 THEN DELETE",
        "MERGE INTO users u USING (SELECT * FROM src LIMIT 10) s ON u.id = s.id \
         WHEN MATCHED THEN DELETE",
    ] {
        assert!(!constant(restricted), "{restricted}");
    }
}

#[test]
fn an_aggregate_level_without_group_by_returns_one_row() {
    let limit = |sql: &str| one(sql).blocks[0].limit;
    assert_eq!(limit("SELECT count(*) FROM events"), Limit::Count(1));
    assert_eq!(
        limit("SELECT max(id), pg_catalog.sum(id) FROM events"),
        Limit::Count(1)
    );
    assert_eq!(limit("SELECT array_agg(id) FROM events"), Limit::Count(1));
    assert_eq!(
        limit("SELECT count(*) FROM events LIMIT 5"),
        Limit::Count(5)
    );
    for unbounded in [
        "SELECT count(*) OVER () FROM events",
        "SELECT id, count(*) FROM events GROUP BY id",
        "SELECT count(*), 1 FROM events",
        "SELECT count(*), generate_series(1, 3) FROM events",
        "SELECT myschema.count(id) FROM events",
        "SELECT id FROM events",
    ] {
        assert_eq!(limit(unbounded), Limit::None, "{unbounded}");
    }
}

#[test]
fn upserts_and_merges_by_source_are_updates_and_deletes() {
    let f = one("INSERT INTO users SELECT * FROM users ON CONFLICT (id) DO UPDATE SET name = 'x'");
    let u = &f.modifications[1];
    assert_eq!(u.kind, ModificationKind::Update);
    assert!(!u.filter.present, "every row may be updated");
    let f = one("INSERT INTO users VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET name = 'x'");
    assert!(f.modifications[1].filter.present, "bounded by the VALUES");
    let f = one("INSERT INTO users VALUES (1) ON CONFLICT DO NOTHING");
    assert_eq!(f.modifications.len(), 1);
    let f = one("MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE");
    assert!(!f.modifications[0].filter.present);
}

#[test]
fn prepare_bodies_and_execute_names_are_reported() {
    let f = one("PREPARE wipe AS DELETE FROM users");
    assert_eq!(f.prepares.as_deref(), Some("wipe"));
    assert_eq!(f.modifications[0].via, Via::Prepare);
    assert_eq!(f.class, StatementClass::Session);
    let f = one("EXECUTE wipe");
    assert_eq!(f.executes.as_deref(), Some("wipe"));
    assert_eq!(f.class, StatementClass::Other);
}

#[test]
fn opaque_code_is_reported() {
    let f = one("DO $x$ BEGIN EXECUTE 'TRUNCATE users'; END $x$");
    assert_eq!(f.opaque[0].kind, "do");
    let f =
        one("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN TRUNCATE users; END $$");
    assert_eq!(f.opaque[0].kind, "create-function");
    assert_eq!(f.opaque[0].language.as_deref(), Some("plpgsql"));
    assert_eq!(f.class, StatementClass::Ddl);
    let f = one("CALL cleanup(1)");
    assert_eq!(f.opaque[0].name.as_deref(), Some("cleanup"));
}

#[test]
fn copy_direction_and_program() {
    let f = one("COPY users FROM PROGRAM 'curl evil'");
    assert_eq!(f.server_copy.as_deref(), Some("program curl evil"));
    assert_eq!(
        one("COPY users TO '/tmp/x'").server_copy.as_deref(),
        Some("file /tmp/x")
    );
    assert_eq!(f.modifications[0].kind, ModificationKind::CopyFrom);
    assert_eq!(f.class, StatementClass::Write);
    let f = one("COPY (DELETE FROM users RETURNING *) TO STDOUT");
    assert_eq!(f.modifications[0].via, Via::Copy);
    let f = one("COPY users TO STDOUT");
    assert_eq!(f.class, StatementClass::Read);
    assert!(f.modifications.is_empty());
}

#[test]
fn where_facts_see_through_tautologies() {
    for (sql, constant) in [
        ("DELETE FROM t WHERE 1 = 1", true),
        ("DELETE FROM t WHERE true", true),
        ("DELETE FROM t WHERE id = id", true),
        ("DELETE FROM t WHERE id > 5 OR true", true),
        ("DELETE FROM t WHERE id > 5 OR 'a' = 'a'", true),
        ("DELETE FROM t WHERE now() > '2000-01-01'", true),
        ("DELETE FROM t WHERE (SELECT true)", true),
        ("DELETE FROM t WHERE id IS NOT NULL OR id IS NULL", true),
        ("DELETE FROM t WHERE id = id + 0", false),
        (
            "DELETE FROM t WHERE coalesce(id, 0) = coalesce(id, 0)",
            true,
        ),
        ("DELETE FROM t WHERE NOT (id <> id)", true),
        ("DELETE FROM t WHERE (id = id) IS TRUE", true),
        ("DELETE FROM t WHERE id = 5", false),
        ("DELETE FROM t WHERE id = 5 AND 1 = 1", false),
        ("DELETE FROM t WHERE id = $1", false),
    ] {
        let f = one(sql);
        assert!(f.modifications[0].filter.present, "{sql}");
        assert_eq!(f.modifications[0].filter.constant, constant, "{sql}");
    }
}

#[test]
fn tenant_equalities_are_top_level_conjuncts_only() {
    let eq = |sql: &str| -> Vec<String> {
        one(sql).blocks[0]
            .filter
            .equalities
            .iter()
            .map(|e| e.column.clone())
            .collect()
    };
    assert_eq!(
        eq("select * from o where tenant_id = 7 and id = $1"),
        ["tenant_id", "id"]
    );
    assert_eq!(
        eq("select * from o where o.tenant_id = '7'::int"),
        ["tenant_id"]
    );
    assert!(eq("select * from o where tenant_id = 7 or true").is_empty());
    assert!(eq("select * from o where tenant_id = tenant_id").is_empty());
    assert!(eq("select * from o where tenant_id > 7").is_empty());
    assert!(eq("select * from o where tenant_id = null").is_empty());
}

#[test]
fn query_levels_cover_unions_subqueries_and_ctes() {
    let f = one("select * from orders where tenant_id = 1 union all select * from orders");
    assert_eq!(f.blocks.len(), 2);
    assert!(f.blocks[1].filter.equalities.is_empty());
    let f = one("select * from events union all select * from events limit 5");
    assert!(f.blocks.iter().all(|b| b.limit == Limit::Count(5)));
    let f = one("select * from (select * from orders) s where tenant_id = 1");
    assert!(
        f.blocks
            .iter()
            .any(|b| b.tables == vec![t("orders")] && !b.filter.present)
    );
    let f = one("with x as (select * from orders) select * from x");
    assert!(f.blocks.iter().any(|b| b.tables == vec![t("orders")]));
    let f = one("select (select max(id) from orders) from other where a = 1");
    assert!(f.blocks.iter().any(|b| b.tables == vec![t("orders")]));
}

#[test]
fn stateful_functions_and_locking_make_a_select_a_write() {
    assert_eq!(one("select nextval('s')").class, StatementClass::Write);
    assert_eq!(
        one("select set_config('app.tenant', '1', false)").class,
        StatementClass::Write
    );
    assert_eq!(
        one("select pg_advisory_lock(1)").class,
        StatementClass::Write
    );
    let f = one("select * from t for update skip locked");
    assert_eq!(f.locking, vec!["for update".to_string()]);
    assert_eq!(f.class, StatementClass::Write);
    assert_eq!(
        one("select * from t for share").locking,
        vec!["for share".to_string()]
    );
    let f = one("select coalesce(max(x), 0) from t where y in (select pg_catalog.nextval('q'))");
    assert!(
        f.functions.contains(&"pg_catalog.nextval".to_string()),
        "{:?}",
        f.functions
    );
    assert_eq!(f.class, StatementClass::Write);
    assert_eq!(
        one("select array[now()]").functions,
        vec!["now".to_string()]
    );
}

#[test]
fn quoting_is_the_grammar_s() {
    let f = one(r#"SELECT "DROP" FROM "Users""#);
    assert_eq!(f.kind, "select");
    assert_eq!(f.reads, vec![t("Users")]);
    let f = one(r#"DELETE FROM users WHERE name = E'x\' OR 1=1 --'"#);
    assert!(!f.modifications[0].filter.constant);
    let f = one("SELECT U&'d\\0061t\\+000061' FROM t");
    assert_eq!(f.class, StatementClass::Read);
    let f = one("select $é$ ; drop table x $é$");
    assert_eq!(f.kind, "select");
    let f = one("select 1 /* nested /* ; drop table x */ still */");
    assert_eq!(f.kind, "select");
}

#[test]
fn ddl_drops_and_settings() {
    let f = one("ALTER TABLE users DROP COLUMN email");
    assert_eq!(f.drops, vec!["column users.email".to_string()]);
    assert_eq!(f.class, StatementClass::Ddl);
    let f = one("TRUNCATE a, s.b");
    assert_eq!(f.modifications.len(), 2);
    assert_eq!(f.class, StatementClass::Ddl);
    assert_eq!(one("SET ROLE admin").setting.as_deref(), Some("role"));
    let f = one("ALTER ROLE app SET client_encoding = 'GBK'");
    assert_eq!(f.setting.as_deref(), Some("client_encoding"));
    assert_eq!(f.setting_value.as_deref(), Some("GBK"));
    let f = one("ALTER DATABASE app SET standard_conforming_strings TO off");
    assert_eq!(f.setting_value.as_deref(), Some("off"));
    let f = one("SET standard_conforming_strings = off");
    assert_eq!(f.setting_value.as_deref(), Some("off"));
    assert_eq!(
        one("set client_encoding to 'GBK'").setting_value.as_deref(),
        Some("GBK")
    );
    assert_eq!(
        one("ALTER TABLE users ALTER COLUMN email TYPE int USING NULL").drops,
        vec!["column type users.email".to_string()]
    );
    assert_eq!(
        one("SET SESSION AUTHORIZATION admin").setting.as_deref(),
        Some("session_authorization")
    );
    assert_eq!(
        one("ALTER SYSTEM SET work_mem = '1GB'").kind,
        "alter-system"
    );
    assert_eq!(one("drop view if exists v1, s.v2").writes.len(), 2);
}

#[test]
fn schema_resolution_uses_the_search_path() {
    let path = vec!["\"$user\"".to_string(), "app".into(), "public".into()];
    assert_eq!(t("orders").resolved(&path), "app.orders");
    assert_eq!(t("x.orders").resolved(&path), "x.orders");
    assert_eq!(t("orders").resolved(&[]), "public.orders");
}

#[test]
fn text_the_grammar_rejects_is_an_error_never_a_panic() {
    for sql in [
        "SELECT \"é",
        "SELECT 'é",
        "DELETE FROM",
        "select $$",
        "\0",
        "drop table x\0y",
        "/*",
    ] {
        let a = analyze(sql);
        assert!(a.error.is_some(), "{sql:?}");
        assert!(a.statements.is_empty());
    }
    assert!(analyze("").statements.is_empty());
    assert!(analyze(" ; -- nothing").error.is_none());
}

#[test]
fn fingerprints_ignore_constants_comments_and_case_only() {
    assert_eq!(
        fingerprint("select * from t where a = 1"),
        fingerprint("SELECT *  FROM t /* c */ WHERE a = 42")
    );
    assert_ne!(
        fingerprint("select * from t"),
        fingerprint("select * from \"T\"")
    );
    assert_ne!(fingerprint("select \"DROP\""), fingerprint("select drop"));
    assert_eq!(fingerprint("select 1").len(), 64);
}

#[test]
fn the_cache_parses_equal_text_once() {
    let a = Analyzer::new(100);
    let (k1, x) = a.analyze("select 1");
    let (k2, y) = a.analyze("select 1");
    assert_eq!(k1, k2);
    assert!(std::sync::Arc::ptr_eq(&x, &y));
    assert_ne!(a.analyze("select 2 + 2").0, k1);
}

#[test]
fn literal_variants_share_an_analysis_only_when_no_fact_reads_a_constant() {
    let a = Analyzer::new(100);
    let (k1, x) = a.analyze("SELECT abalance FROM t WHERE aid = 17");
    let (k2, y) = a.analyze("SELECT abalance FROM t WHERE aid = 18");
    assert_eq!(k1, shape("SELECT abalance FROM t WHERE aid = 17").unwrap());
    assert_eq!(k1, k2, "one analysis key for the shape");
    assert_eq!(a.analyze("SELECT abalance FROM t WHERE aid = 17").0, k1);
    assert!(std::sync::Arc::ptr_eq(&x, &y), "one analysis for the shape");
    assert_eq!(x.statements[0].reads, y.statements[0].reads);
    // A string and a number are different shapes; so are identifiers of another case
    // when quoted, and non-ASCII case.
    assert_ne!(
        shape("select * from t where a = 1"),
        shape("select * from t where a = '1'")
    );
    assert_ne!(shape("select * from \"T\""), shape("select * from t"));
    assert_ne!(shape("select * from É"), shape("select * from é"));
    assert_eq!(shape("SELECT * FROM T"), shape("select * from t"));
    // Facts that read constants are never shared.
    a.analyze("select * from events limit 10");
    let (_, l) = a.analyze("select * from events limit 100000");
    assert_eq!(l.statements[0].blocks[0].limit, Limit::Count(100000));
    a.analyze("select set_config('jit', 'off', false)");
    let (_, r) = a.analyze("select set_config('role', 'admin', false)");
    assert_eq!(r.statements[0].setting.as_deref(), Some("role"));
    a.analyze("EXPLAIN (ANALYZE 'off') DELETE FROM t");
    let (_, e) = a.analyze("EXPLAIN (ANALYZE 'on') DELETE FROM t");
    assert_eq!(e.statements[0].modifications.len(), 1);
}

#[test]
fn normalised_text_has_no_constants_or_comments() {
    assert_eq!(
        crate::normalize("select pg_sleep(0.2) /* secret */, 'hunter2' -- note\n").as_deref(),
        Some("select pg_sleep($1) , $2")
    );
    assert_eq!(crate::normalize("select 'open"), None);
}

#[test]
fn clock_and_role_keywords_count_as_functions() {
    for sql in [
        "select current_timestamp",
        "select 1 where localtime > '00:00'",
        "select current_user",
    ] {
        let a = crate::analyze(sql);
        assert!(
            a.statements[0]
                .functions
                .iter()
                .any(|f| f == "sql_value_function"),
            "{sql}: {:?}",
            a.statements[0].functions
        );
    }
}

#[test]
fn spellings_share_a_key_and_values_do_not() {
    use crate::spelling;
    let a = spelling("select * from t where a = 1 and b = 'x'");
    assert!(a.is_some());
    assert_eq!(
        a,
        spelling("SELECT *\n FROM t /* c */ WHERE a = 01 AND b = 'x' -- d")
    );
    assert_ne!(a, spelling("select * from t where a = 2 and b = 'x'"));
    assert_ne!(a, spelling("select * from t where a = 1 and b = 'X'"));
    assert_ne!(
        spelling("select 1.50"),
        spelling("select 1.5"),
        "numeric keeps its scale"
    );
    assert_ne!(spelling("select * from \"T\""), spelling("select * from t"));
    assert_ne!(
        spelling("select * from m where s = $1 and r = $2"),
        spelling("select * from m where s = $2 and r = $1"),
        "parameters keep their numbers"
    );
    assert_eq!(
        crate::shape("select * from m where s = $1 and r = $2"),
        crate::shape("select * from m where s = $2 and r = $1"),
        "a shape does not"
    );
}

#[test]
fn text_without_tokens_is_no_crash() {
    for text in ["", " ", "\n\t ", "\x0b\x0c"] {
        assert_eq!(crate::normalize(text).as_deref(), Some(""), "{text:?}");
        assert!(crate::shape(text).is_some(), "{text:?}");
        assert!(crate::spelling(text).is_some(), "{text:?}");
        let _ = crate::fingerprint(text);
    }
}
