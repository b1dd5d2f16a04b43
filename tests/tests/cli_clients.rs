//! Real command-line clients through the proxy: psql and pgbench in every protocol mode.

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_scripts_and_copy_through_the_proxy() {
    let pg = shared_pg();
    create_database(pg, "cli_psql").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 2)).await;
    let port = proxy.local_addr.port().to_string();
    let dir = temp_dir("psql");
    let csv = dir.join("in.csv");
    std::fs::write(
        &csv,
        (1..=500)
            .map(|i| format!("{i},name{i}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let script = format!(
        "create table p(id int primary key, name text);\n\\copy p from '{}' csv\nselect count(*), sum(id) from p;\n\\copy (select * from p where id <= 3 order by id) to stdout csv\n",
        csv.display()
    );
    let (ok, out, err) = run_program(
        "psql",
        &[
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "cli_psql",
            "-c",
            &script,
        ],
        &[],
    )
    .await;
    // psql -c with backslash commands needs -f; fall back to a file.
    let (ok, out, err) = if ok {
        (ok, out, err)
    } else {
        let file = dir.join("script.sql");
        std::fs::write(&file, &script).unwrap();
        run_program(
            "psql",
            &[
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "cli_psql",
                "-f",
                file.to_str().unwrap(),
            ],
            &[],
        )
        .await
    };
    assert!(ok, "psql failed: {err}");
    assert!(out.contains("500|125250"), "{out}");
    assert!(out.contains("1,name1\n2,name2\n3,name3"), "{out}");
}

async fn pgbench(port: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["-h", "127.0.0.1", "-p", port, "-U", "postgres"];
    all.extend_from_slice(args);
    run_program("pgbench", &all, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_clean_in_simple_extended_and_prepared_mode() {
    let pg = shared_pg();
    create_database(pg, "cli_bench").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 3)).await;
    let port = proxy.local_addr.port().to_string();
    let (ok, _, err) = pgbench(&port, &["-i", "-s", "1", "-q", "cli_bench"]).await;
    assert!(ok, "pgbench -i through the proxy failed: {err}");
    for mode in ["simple", "extended", "prepared"] {
        // The default TPC-B-like script: BEGIN; UPDATE; SELECT; INSERT; END, 8 clients on 3
        // server connections.
        let (ok, out, err) = pgbench(
            &port,
            &[
                "-n",
                "-c",
                "8",
                "-j",
                "2",
                "-t",
                "150",
                "-M",
                mode,
                "cli_bench",
            ],
        )
        .await;
        assert!(ok, "pgbench -M {mode} failed: {err}\n{out}");
        assert!(
            out.contains("number of failed transactions: 0"),
            "{mode}: {out}"
        );
        assert!(
            out.contains("number of transactions actually processed: 1200/1200"),
            "{mode}: {out}"
        );
    }
    let m = proxy.shared.pools.all()[0].metrics();
    assert!(m.created <= 3, "{m:?}");
    let direct = connect(&pg.direct("cli_bench")).await.unwrap();
    let n: i64 = direct
        .query_one("select count(*) from pgbench_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3600, "every transaction committed exactly once");
}
