//! Tests of a session's state: what is replayed, hashed and restored.
use super::*;

fn set(name: &str, sql: &str) -> Effect {
    Effect {
        kind: SessionEffect::Set(name.into()),
        sql: sql.into(),
    }
}

#[test]
fn startup_values_equal_to_server_defaults_are_not_replayed() {
    let client = vec![
        ("user".into(), "u".into()),
        ("client_encoding".into(), "utf8".into()),
        ("application_name".into(), "app".into()),
    ];
    let server = vec![
        ("client_encoding".into(), "UTF8".into()),
        ("application_name".into(), "".into()),
    ];
    let s = SessionState::from_startup(&client, &server);
    assert_eq!(
        s.restore_settings_sql(PRISTINE, &[]),
        "SET application_name TO 'app';"
    );
    assert_ne!(s.hash(), PRISTINE);
    let plain = SessionState::from_startup(&[("user".into(), "u".into())], &server);
    assert_eq!(plain.hash(), PRISTINE);
}

#[test]
fn autocommit_set_applies_and_rollback_discards() {
    let mut s = SessionState::default();
    s.record(set("search_path", "SET search_path TO a"));
    assert_eq!(s.on_ready(b'T'), None);
    assert!(s.on_ready(b'I').is_some());
    assert_eq!(s.sets().collect::<Vec<_>>(), vec!["SET search_path TO a"]);
    assert_eq!(s.search_path(), Some(vec!["a".to_owned()]));
    s.record(set("search_path", "SET search_path TO b"));
    s.saw_rollback();
    assert_eq!(s.on_ready(b'I'), None);
    assert_eq!(s.sets().collect::<Vec<_>>(), vec!["SET search_path TO a"]);
    assert_eq!(s.search_path(), Some(vec!["a".to_owned()]));
}

#[test]
fn reset_all_restores_pristine_and_marks_server_dirty_when_startup_values_exist() {
    let mut s = SessionState::from_startup(&[("application_name".into(), "x".into())], &[]);
    s.record(set("a.b", "SET a.b = 1"));
    s.on_ready(b'I');
    s.record(Effect {
        kind: SessionEffect::ResetAll,
        sql: "RESET ALL".into(),
    });
    assert_eq!(s.on_ready(b'I'), Some(DIRTY));
    assert_eq!(s.sets().count(), 0);
    assert!(
        s.restore_settings_sql(DIRTY, &[])
            .starts_with("SET SESSION AUTHORIZATION DEFAULT;RESET ALL;")
    );
}

#[test]
fn sql_prepares_apply_at_once_survive_rollback_and_replace_the_servers_own() {
    let mut s = SessionState::default();
    s.record(Effect {
        kind: SessionEffect::Prepare("q".into()),
        sql: "PREPARE q AS SELECT 1".into(),
    });
    s.saw_rollback();
    let hash = s.on_ready(b'I').expect("changed");
    assert_ne!(hash, PRISTINE);
    assert_eq!(s.prepared_names(), vec!["q".to_owned()]);
    assert_eq!(
        s.restore_settings_sql(7, &["other".into()]),
        "DEALLOCATE other;SET SESSION AUTHORIZATION DEFAULT;RESET ALL;"
    );
    assert_eq!(
        s.prepares().collect::<Vec<_>>(),
        vec![("q", "PREPARE q AS SELECT 1")]
    );
    s.record(Effect {
        kind: SessionEffect::Deallocate("q".into()),
        sql: "DEALLOCATE q".into(),
    });
    assert_eq!(s.on_ready(b'I'), Some(PRISTINE));
}

#[test]
fn options_parameter_is_replayed() {
    let s = SessionState::from_startup(
        &[(
            "options".into(),
            "-c search_path=x --statement-timeout=5".into(),
        )],
        &[],
    );
    assert_eq!(
        s.restore_settings_sql(PRISTINE, &[]),
        "SET search_path TO 'x';SET statement_timeout TO '5';"
    );
}
