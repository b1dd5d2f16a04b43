//! Analysis cost: a short SELECT (uncached and cached), a 2 KB multi-join statement.

use criterion::{Criterion, criterion_group, criterion_main};
use helios_analysis::{Analyzer, analyze};

fn long_statement() -> String {
    let mut sql = String::from("SELECT o.id, c.name, sum(l.amount) AS total");
    for i in 0..20 {
        sql.push_str(&format!(", coalesce(x{i}.v, 0) AS v{i}"));
    }
    sql.push_str(
        " FROM orders o JOIN customers c ON c.id = o.customer_id JOIN lines l ON l.order_id = o.id",
    );
    for i in 0..20 {
        sql.push_str(&format!(
            " LEFT JOIN extra_{i} x{i} ON x{i}.order_id = o.id AND x{i}.kind = 'k{i}'"
        ));
    }
    sql.push_str(" WHERE o.tenant_id = $1 AND o.created_at > now() - interval '30 days' AND c.region IN ('eu', 'us')");
    sql.push_str(" GROUP BY o.id, c.name HAVING sum(l.amount) > 100 ORDER BY total DESC LIMIT 50");
    sql
}

fn bench(c: &mut Criterion) {
    let short = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213";
    let long = long_statement();
    assert!(long.len() > 1800, "{}", long.len());
    c.bench_function("analysis: short SELECT, uncached", |b| {
        b.iter(|| analyze(std::hint::black_box(short)))
    });
    let cache = Analyzer::new(1000);
    cache.analyze(short);
    c.bench_function("analysis: short SELECT, cached", |b| {
        b.iter(|| cache.analyze(std::hint::black_box(short)))
    });
    c.bench_function("analysis: 2 KB multi-join, uncached", |b| {
        b.iter(|| analyze(std::hint::black_box(&long)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
