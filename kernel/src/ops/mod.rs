//! Operations on the running cluster, driven through the admin API: chaos mode
//! ([`chaos`]), time-travel replay of the journal ([`replay`]), the shadow comparator
//! ([`shadow`]), the major-version upgrade orchestrator ([`upgrade`]), and what they share: where statements go ([`target`]) and how one runs
//! as its client sent it ([`statement`]).

pub mod chaos;
pub mod replay;
pub mod shadow;
pub mod statement;
pub mod target;
pub mod upgrade;
