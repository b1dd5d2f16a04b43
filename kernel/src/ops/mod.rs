//! Operations on the running cluster, driven through the admin API: chaos mode
//! ([`chaos`]), time-travel replay of the journal ([`replay`]), the shadow comparator
//! ([`shadow`]), and what they share: where statements go ([`target`]), how one runs as
//! its client sent it ([`statement`]), and times and durations as operators write them
//! ([`when`]).

pub mod chaos;
pub mod replay;
pub mod shadow;
pub mod statement;
pub mod target;
pub mod when;
