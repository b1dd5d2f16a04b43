//! Differential fuzzing of helios-sql's lexer against PostgreSQL's own scanner (libpg_query):
//! no entry point may panic on any text, and on text the scanner accepts the statement
//! boundaries and first tokens must agree (the property lives in `sql/tests/oracle/mod.rs`,
//! shared with the deterministic `scanner_agrees` test).
#![no_main]

#[path = "../../sql/tests/oracle/mod.rs"]
mod oracle;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The lexer takes `&str`; invalid UTF-8 never reaches it.
    if let Ok(sql) = std::str::from_utf8(data) {
        oracle::check(sql);
    }
});
