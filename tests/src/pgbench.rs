//! Reading pgbench's summary.

/// "number of transactions actually processed: N" of a pgbench run's output.
pub fn processed(out: &str) -> i64 {
    out.lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pgbench summary in:\n{out}"))
}
