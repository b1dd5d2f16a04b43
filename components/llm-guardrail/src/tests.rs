//! The guardrail's verdicts on the analysis the kernel would give, natively.

use super::*;
use helios_sdk::testing::session;

fn setup() {
    let _ = Guardrail::init(&Config::from_pairs([
        ("applications", ConfigValue::Texts(vec!["agent".into()])),
        ("large_tables", ConfigValue::Texts(vec!["events".into()])),
        ("tenant_tables", ConfigValue::Texts(vec!["orders".into()])),
    ]));
}

fn check(sql: &str) -> Verdict {
    Guardrail::validate(&session("agent"), &statement(sql))
}

#[test]
fn refuses_what_it_should_with_42501_and_the_reason() {
    setup();
    for (sql, reason) in [
        ("DROP TABLE users", "DROP"),
        ("truncate t", "TRUNCATE"),
        ("delete from users", "without a WHERE"),
        (
            "UPDATE users SET admin = true WHERE 1 = 1",
            "keeps every row",
        ),
        ("WITH d AS (DELETE FROM users RETURNING 1) SELECT 1", "CTE"),
        ("EXPLAIN ANALYZE DELETE FROM users", "EXPLAIN ANALYZE"),
        ("PREPARE p AS DELETE FROM users", "PREPARE"),
        ("DO $$ BEGIN TRUNCATE users; END $$", "opaque"),
        ("select * from events", "LIMIT"),
        ("select * from events limit all", "LIMIT"),
        ("select * from orders where id = 1", "tenant_id"),
        (
            "select * from orders where tenant_id = tenant_id",
            "tenant_id",
        ),
        (
            "select * from orders where tenant_id = 1 or true",
            "tenant_id",
        ),
        ("COPY users FROM PROGRAM 'id'", "program id"),
        ("COPY users TO '/tmp/x'", "file /tmp/x"),
        ("DROP OWNED BY CURRENT_USER", "DROP"),
        ("DROP ROLE IF EXISTS x", "DROP"),
        ("ALTER ROLE postgres SET role = x", "administration"),
        (
            "ALTER TABLE users ALTER COLUMN email TYPE int USING NULL",
            "column type",
        ),
        (
            "INSERT INTO users SELECT * FROM users ON CONFLICT (id) DO UPDATE SET name = 'x'",
            "UPDATE",
        ),
        (
            "DELETE FROM users WHERE coalesce(id, 0) = coalesce(id, 0)",
            "keeps every row",
        ),
        ("CREATE TABLE c AS SELECT * FROM events", "LIMIT"),
        (
            "SELECT query_to_xml('select * from orders', true, true, '')",
            "query_to_xml",
        ),
        ("SET ROLE postgres", "role"),
        (
            "select set_config('role', 'postgres', false)",
            "changing role",
        ),
        ("SELECT \"é", "cannot be analysed"),
        (
            "MERGE INTO users u USING users s ON u.id = s.id WHEN MATCHED THEN UPDATE SET a = true",
            "MERGE",
        ),
        ("ALTER TABLE users RENAME TO users_old", "RENAME"),
        ("ALTER TABLE users RENAME COLUMN email TO mail", "RENAME"),
        ("ALTER TABLE users SET SCHEMA archive", "SET SCHEMA"),
        ("SELECT array_agg(id) FROM events", "every value in one row"),
        (
            "SELECT string_agg(x, ',') FROM events LIMIT 1",
            "every value in one row",
        ),
        ("SELECT id, count(*) FROM events GROUP BY id", "LIMIT"),
        ("SELECT count(*) OVER () FROM events", "LIMIT"),
    ] {
        match check(sql) {
            Verdict::Deny(r) => {
                assert_eq!(r.sqlstate, "42501", "{sql}");
                assert!(r.message.contains(reason), "{sql}: {}", r.message);
            }
            Verdict::Allow => panic!("{sql} was allowed"),
        }
    }
}

#[test]
fn allows_safe_statements_and_other_applications() {
    setup();
    for sql in [
        "delete from users where id = 3",
        "select * from events limit 10",
        "select * from orders where tenant_id = 7 and id = 1",
        "select * from orders where tenant_id = $1",
        "insert into orders(tenant_id, id) values (1, 2)",
        "select 'drop table x'",
        "select \"DROP\" from t",
        "EXPLAIN DELETE FROM users",
        "SELECT count(*) FROM events",
        "SELECT max(id), avg(id) FROM events WHERE id > 3",
        "SELECT id % 3, count(*) FROM events GROUP BY 1 LIMIT 3",
        "MERGE INTO users u USING (VALUES (2, 'b')) v(id, name) ON u.id = v.id \
         WHEN MATCHED THEN UPDATE SET name = v.name",
        "",
        " ; -- nothing",
    ] {
        assert!(
            matches!(check(sql), Verdict::Allow),
            "{sql}: {:?}",
            check(sql)
        );
    }
    assert!(matches!(
        Guardrail::validate(&session("psql"), &statement("drop table t")),
        Verdict::Allow
    ));
}
