//! `misbehave`: a test component that fails on purpose, to prove a bad component costs only
//! its own call. `mode` (config) picks the behaviour of its PreQuery hook:
//! `noop`, `loop` (never returns), `trap` (unreachable), `panic`, `hog` (allocates without
//! bound), `bad-rewrite` (returns SQL that does not parse), `block`, `respond`.
//! Statements containing `spare-me` are always let through, so a test can show that the
//! component's next call works after a failure.

use std::sync::OnceLock;

use helios_sdk::*;

static MODE: OnceLock<String> = OnceLock::new();

/// The misbehaving component.
pub struct Misbehave;

impl Plugin for Misbehave {
    fn init(config: &Config) -> Result<Hooks, String> {
        let mode = config.text("mode").unwrap_or("noop").to_owned();
        let _ = MODE.set(mode);
        Ok(Hooks::PRE_QUERY)
    }

    fn pre_query(_session: &SessionInfo, stmt: &Statement) -> PreQueryAction {
        if stmt.sql.contains("spare-me") {
            return PreQueryAction::Proceed;
        }
        match MODE.get().map(String::as_str).unwrap_or("noop") {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "trap" => trap(),
            "panic" => panic!("misbehave: panicking on purpose"),
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "bad-rewrite" => PreQueryAction::Rewrite("SELEC this is (not sql".into()),
            "block" => PreQueryAction::Block(refusal("42501", "blocked on purpose")),
            "respond" => PreQueryAction::Respond(ResultSet {
                columns: vec!["answer".into(), "source".into()],
                rows: vec![vec![Some("42".into()), Some("component".into())], vec![None, Some("null row".into())]],
                command_tag: "SELECT 2".into(),
            }),
            _ => PreQueryAction::Proceed,
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}

export_plugin!(Misbehave);
