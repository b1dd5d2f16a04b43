//! The client's portals that something later needs: the statement behind an `Execute` for
//! its session-state effect and its observers (PostQuery, the journal), and the parameters
//! the journal records; and the portals of statements a component answered, which the
//! proxy answers itself. Portals nobody needs are not kept, so the common `Bind`/`Execute`
//! pair costs nothing here.

use std::sync::Arc;

use crate::session::served::ServedPortal;
use crate::session::statements::Prepared;
use crate::session::steps::journal::BoundParams;

/// One bound portal.
#[derive(Debug)]
pub struct Portal {
    name: Box<[u8]>,
    /// The statement it was bound from.
    pub stmt: Arc<Prepared>,
    /// The bound parameters, when the journal records them.
    pub params: Option<BoundParams>,
}

/// The portals kept for later `Execute`s.
#[derive(Debug, Default)]
pub struct Portals {
    kept: Vec<Portal>,
    /// Portals of statements a component answered: the proxy answers them.
    served: Vec<ServedPortal>,
    /// What the kept portals hold, roughly, in bytes (for the client's memory budget).
    bytes: usize,
}

impl Portal {
    /// Its name and kept parameters, plus the entry itself, in bytes.
    fn cost(&self) -> usize {
        let params = self.params.as_ref().map_or(0, |p| {
            (p.formats.len() + p.result_formats.len()) * 2
                + p.values
                    .iter()
                    .map(|v| v.as_ref().map_or(8, |v| v.len() + 24))
                    .sum::<usize>()
        });
        self.name.len() + params + 96
    }
}

impl Portals {
    /// Notes that `name` was bound from `stmt`. It is kept when `observed` (PostQuery or the
    /// journal will want it) or when executing it changes session state; a previous portal
    /// of the same name is replaced either way.
    #[inline]
    pub fn bind(
        &mut self,
        name: &[u8],
        stmt: &Arc<Prepared>,
        observed: bool,
        params: impl FnOnce() -> Option<BoundParams>,
    ) {
        if !self.kept.is_empty() || !self.served.is_empty() {
            self.close(name);
        }
        if observed || stmt.effect.is_some() {
            let portal = Portal {
                name: name.into(),
                stmt: stmt.clone(),
                params: params(),
            };
            self.bytes += portal.cost();
            self.kept.push(portal);
        }
    }

    /// Roughly what the kept portals hold, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes + self.served.len() * 96
    }

    /// The portal an `Execute` names, when kept.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<&Portal> {
        if self.kept.is_empty() {
            return None;
        }
        self.kept.iter().find(|p| *p.name == *name)
    }

    /// Forgets a portal (client `Close`, or rebinding its name); whether it was served.
    pub fn close(&mut self, name: &[u8]) -> bool {
        let bytes = &mut self.bytes;
        self.kept.retain(|p| {
            let keep = *p.name != *name;
            if !keep {
                *bytes -= p.cost();
            }
            keep
        });
        let before = self.served.len();
        self.served.retain(|p| *p.name != *name);
        self.served.len() != before
    }

    /// Binds `name` to a served statement, replacing any portal of that name.
    pub fn bind_served(&mut self, portal: ServedPortal) {
        self.close(&portal.name);
        self.served.push(portal);
    }

    /// The served portal called `name`.
    #[inline]
    pub fn served_mut(&mut self, name: &[u8]) -> Option<&mut ServedPortal> {
        if self.served.is_empty() {
            return None;
        }
        self.served.iter_mut().find(|p| *p.name == *name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::statements::ClientStatements;
    use crate::wire::messages::ParseRef;

    fn stmt(sql: &str) -> Arc<Prepared> {
        ClientStatements::default().define(
            &ParseRef {
                name: b"",
                query: sql.as_bytes(),
                param_types: &[0, 0],
            },
            0,
        )
    }

    #[test]
    fn set_statements_carry_their_effect_to_the_portal() {
        let mut portals = Portals::default();
        portals.bind(b"", &stmt("SET search_path TO x"), false, || None);
        assert!(portals.get(b"").is_some_and(|p| p.stmt.effect.is_some()));
        portals.bind(b"", &stmt("select 1"), false, || None);
        assert!(portals.get(b"").is_none(), "rebinding replaced it");
    }

    #[test]
    fn observed_portals_keep_their_parameters_until_closed() {
        let mut portals = Portals::default();
        portals.bind(b"p1", &stmt("select $1"), true, || {
            Some(BoundParams {
                formats: vec![0],
                values: vec![Some(b"7".to_vec())],
                result_formats: vec![],
            })
        });
        let kept = portals.get(b"p1").expect("kept");
        assert_eq!(
            kept.params.as_ref().unwrap().values[0].as_deref(),
            Some(&b"7"[..])
        );
        portals.close(b"p1");
        assert!(portals.get(b"p1").is_none());
    }
}
