//! Cursors declared `WITH HOLD`: they outlive their transaction, so in pooled modes the
//! session keeps its server connection while one is open, and when that server is lost the
//! cursor is declared again on the new one and moved to where the client was, so its next
//! `FETCH` continues with the next rows. Only forward movement is tracked; a cursor moved
//! backwards or absolutely is not restored.

use std::collections::VecDeque;

use crate::sql::{leading_words, skip_space_and_comments, split_statements};

/// A statement that changes cursors, waiting for its command tag.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Declare {
        name: String,
        sql: String,
        hold: bool,
    },
    Fetch {
        name: String,
        forward: bool,
    },
    Close {
        name: String,
    },
    CloseAll,
}

/// One open held cursor.
#[derive(Debug, Clone)]
struct Held {
    name: String,
    declare: String,
    position: u64,
    restorable: bool,
    /// Declared in the transaction still open (gone if it rolls back).
    uncommitted: bool,
}

/// The session's held cursors.
#[derive(Debug, Default)]
pub struct Cursors {
    held: Vec<Held>,
    ops: VecDeque<Op>,
}

/// Cheap check: could this SQL touch a cursor?
#[inline]
pub fn might_touch_cursors(sql: &str) -> bool {
    let b = sql.as_bytes();
    b.windows(6).any(|w| w.eq_ignore_ascii_case(b"cursor"))
        || b.windows(5)
            .any(|w| w.eq_ignore_ascii_case(b"fetch") || w.eq_ignore_ascii_case(b"close"))
        || b.windows(4).any(|w| w.eq_ignore_ascii_case(b"move"))
}

impl Cursors {
    /// Whether a held cursor is open (the session keeps its server).
    pub fn any(&self) -> bool {
        !self.held.is_empty()
    }

    /// Notes the cursor statements of a request about to be sent.
    pub fn note(&mut self, sql: &str) {
        if !might_touch_cursors(sql) {
            return;
        }
        for stmt in split_statements(sql) {
            let words = leading_words(stmt, 12);
            let op = match words.first().map(String::as_str) {
                Some("declare") if words.len() > 1 => {
                    let for_at = words.iter().position(|w| w == "for").unwrap_or(words.len());
                    let hold = words[..for_at]
                        .windows(2)
                        .any(|w| w[0] == "with" && w[1] == "hold");
                    Op::Declare {
                        name: words[1].clone(),
                        sql: skip_space_and_comments(stmt).trim_end().to_owned(),
                        hold,
                    }
                }
                Some("fetch" | "move") => {
                    let forward = !words.iter().skip(1).any(|w| {
                        matches!(
                            w.as_str(),
                            "prior" | "first" | "last" | "absolute" | "relative" | "backward"
                        )
                    }) && !stmt.contains('-');
                    match words.last() {
                        Some(name) if words.len() > 1 => Op::Fetch {
                            name: name.clone(),
                            forward,
                        },
                        _ => continue,
                    }
                }
                Some("close") if words.get(1).map(String::as_str) == Some("all") => Op::CloseAll,
                Some("close") if words.len() > 1 => Op::Close {
                    name: words[1].clone(),
                },
                _ => continue,
            };
            self.ops.push_back(op);
        }
    }

    /// A command tag from the server.
    pub fn on_tag(&mut self, tag: &[u8]) {
        let Some(op) = self.ops.front() else { return };
        let matches = match op {
            Op::Declare { .. } => tag == b"DECLARE CURSOR",
            Op::Fetch { .. } => tag.starts_with(b"FETCH ") || tag.starts_with(b"MOVE "),
            Op::Close { .. } | Op::CloseAll => tag.starts_with(b"CLOSE CURSOR"),
        };
        if !matches {
            return;
        }
        let op = self.ops.pop_front().expect("front");
        match op {
            Op::Declare { name, sql, hold } => {
                self.held.retain(|h| h.name != name);
                if hold {
                    self.held.push(Held {
                        name,
                        declare: sql,
                        position: 0,
                        restorable: true,
                        uncommitted: true,
                    });
                }
            }
            Op::Fetch { name, forward } => {
                let moved = std::str::from_utf8(tag)
                    .ok()
                    .and_then(|t| t.rsplit(' ').next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                if let Some(h) = self.held.iter_mut().find(|h| h.name == name) {
                    h.position += moved;
                    h.restorable &= forward;
                }
            }
            Op::Close { name } => self.held.retain(|h| h.name != name),
            Op::CloseAll => self.held.clear(),
        }
    }

    /// The request failed: its remaining statements did not run.
    pub fn on_error(&mut self) {
        self.ops.clear();
    }

    /// The transaction rolled back: cursors declared in it are gone.
    pub fn on_rollback(&mut self) {
        self.held.retain(|h| !h.uncommitted);
    }

    /// `ReadyForQuery` with this status.
    pub fn on_ready(&mut self, status: u8) {
        self.ops.clear();
        if status == b'I' {
            for h in &mut self.held {
                h.uncommitted = false;
            }
        }
    }

    /// SQL that re-creates every restorable cursor at its position on a new server; the
    /// others are forgotten (the client will be told the cursor does not exist). Cursors
    /// declared in the open transaction are left out: replaying the transaction declares them.
    pub fn restore_sql(&mut self) -> String {
        self.held.retain(|h| {
            if !h.restorable {
                tracing::warn!(cursor = %h.name, "cursor moved backwards; it cannot be restored");
            }
            h.restorable
        });
        let mut sql = String::new();
        for h in self.held.iter().filter(|h| !h.uncommitted) {
            sql.push_str(&h.declare);
            sql.push_str(";\n");
            if h.position > 0 {
                sql.push_str(&format!("MOVE FORWARD {} IN {};\n", h.position, h.name));
            }
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_a_held_cursor_and_its_position() {
        let mut c = Cursors::default();
        c.note("DECLARE c CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 10) g");
        c.on_tag(b"DECLARE CURSOR");
        c.on_ready(b'I');
        c.note("FETCH 3 FROM c");
        c.on_tag(b"FETCH 3");
        c.note("move forward 2 in c");
        c.on_tag(b"MOVE 2");
        assert!(c.any());
        let sql = c.restore_sql();
        assert!(
            sql.starts_with("DECLARE c CURSOR WITH HOLD FOR SELECT g"),
            "{sql}"
        );
        assert!(sql.contains("MOVE FORWARD 5 IN c;"), "{sql}");
        c.note("close c");
        c.on_tag(b"CLOSE CURSOR");
        assert!(!c.any());
    }

    #[test]
    fn cursors_without_hold_and_rolled_back_ones_are_not_kept() {
        let mut c = Cursors::default();
        c.note("begin; declare a cursor for select 1; declare b cursor with hold for select 2");
        c.on_tag(b"BEGIN");
        c.on_tag(b"DECLARE CURSOR");
        c.on_tag(b"DECLARE CURSOR");
        assert!(c.any());
        c.on_rollback();
        assert!(!c.any());
    }

    #[test]
    fn backward_moves_make_a_cursor_unrestorable() {
        let mut c = Cursors::default();
        c.note("declare c scroll cursor with hold for select 1");
        c.on_tag(b"DECLARE CURSOR");
        c.note("fetch prior from c");
        c.on_tag(b"FETCH 0");
        assert_eq!(c.restore_sql(), "");
    }
}
