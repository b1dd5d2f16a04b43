//! `misbehave`: a test component that fails on purpose, to prove a bad component costs only
//! its own call. `mode` (config) picks the behaviour of its PreQuery hook:
//! `noop`, `loop` (never returns), `trap` (unreachable), `panic`, `hog` (allocates without
//! bound), `bad-rewrite` (returns SQL that does not parse), `block`, `respond`.
//! Two more modes exercise the other hooks: `audit` counts PostQuery outcomes in the `kv`
//! store (and, when configured to receive them, the first column of the result rows) and
//! answers `select helios_audit` with them; `gatekeeper` (Authenticate)
//! refuses the user `mallory` and gives everyone else the tenant `acme`.
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
        let hooks = match mode.as_str() {
            "audit" => Hooks::PRE_QUERY | Hooks::POST_QUERY,
            "gatekeeper" => Hooks::AUTHENTICATE,
            _ => Hooks::PRE_QUERY,
        };
        let _ = MODE.set(mode);
        Ok(hooks)
    }

    fn authenticate(request: &AuthRequest) -> AuthDecision {
        if request.user == "mallory" {
            return AuthDecision::Deny(refusal("28000", "mallory may not log in"));
        }
        AuthDecision::Allow(Identity {
            backend_role: None,
            tenant: Some("acme".into()),
            attributes: vec![("region".into(), "eu".into())],
        })
    }

    fn post_query(_call: &Call, stmt: &Statement, outcome: &Outcome) {
        let key = if outcome.error.is_some() {
            "failed"
        } else {
            "ok"
        };
        host::kv_incr(key, 1, None);
        host::kv_incr("rows", outcome.rows as i64, None);
        host::kv_set("last", stmt.sql.as_bytes(), None);
        // With `post_query_rows_bytes` configured, the rows themselves: the first column of
        // each row, comma-separated, with the column names and whether rows were left out.
        if let Some(result) = context::result_rows() {
            let firsts: Vec<String> = result
                .rows
                .iter()
                .map(|r| match r.first().cloned().flatten() {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None => "NULL".into(),
                })
                .collect();
            let seen = format!(
                "{}|{}|{}",
                result.columns.join(","),
                firsts.join(","),
                result.truncated
            );
            host::kv_set("seen_rows", seen.as_bytes(), None);
        }
    }

    fn pre_query(_call: &Call, stmt: &Statement) -> PreQueryAction {
        let mode = MODE.get().map(String::as_str).unwrap_or("noop");
        // `noop` does nothing at all: the benches measure the bare cost of a call with it.
        if mode == "noop" || stmt.sql.contains("spare-me") {
            return PreQueryAction::Proceed;
        }
        if mode == "audit" && stmt.sql.contains("helios_audit") {
            let count = |k: &str| {
                host::kv_get(k)
                    .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                    .map(i64::from_le_bytes)
                    .unwrap_or(0)
                    .to_string()
            };
            let last = host::kv_get("last").map(|v| String::from_utf8_lossy(&v).into_owned());
            let tenant = context::tenant();
            return PreQueryAction::Respond(ResultSet {
                columns: vec![
                    "ok".into(),
                    "failed".into(),
                    "rows".into(),
                    "last".into(),
                    "tenant".into(),
                    "seen_rows".into(),
                ],
                rows: vec![vec![
                    Some(count("ok")),
                    Some(count("failed")),
                    Some(count("rows")),
                    last,
                    tenant,
                    host::kv_get("seen_rows").map(|v| String::from_utf8_lossy(&v).into_owned()),
                ]],
                command_tag: "SELECT 1".into(),
            });
        }
        match mode {
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
                rows: vec![
                    vec![Some("42".into()), Some("component".into())],
                    vec![None, Some("null row".into())],
                ],
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
