//! Operations on the running cluster, driven through the admin API: chaos mode
//! ([`chaos`]). (Time-travel replay, the shadow comparator and the upgrade orchestrator are
//! still to come.)

pub mod chaos;
