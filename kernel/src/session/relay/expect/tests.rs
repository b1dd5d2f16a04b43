//! The expected-response queue: ordering of the proxy's own answers, skips after errors,
//! COPY, resends and failures in flight.

use super::*;

fn emitted(q: &mut Expected, status: u8) -> Vec<u8> {
    let mut out = Vec::new();
    q.emit_synthetics(&mut out, status);
    out
}

#[test]
fn synthetic_answers_wait_for_the_server_answers_before_them() {
    let mut q = Expected::default();
    q.push(Expect::Bind);
    q.push_synthetic(Synthetic::CloseComplete);
    q.push_synthetic(Synthetic::ReadyForQuery);
    assert!(emitted(&mut q, b'I').is_empty(), "BindComplete comes first");
    q.pop_if(|e| matches!(e, Expect::Bind));
    let out = emitted(&mut q, b'T');
    let mut want = messages::CLOSE_COMPLETE.to_vec();
    messages::ready_for_query(&mut want, b'T');
    assert_eq!(out, want);
    assert!(q.is_empty());
}

#[test]
fn an_error_skips_the_rest_of_the_batch_and_forgets_its_parses() {
    let mut q = Expected::default();
    q.push(Expect::Bind);
    q.push(Expect::Parse {
        hidden: true,
        hash: 7,
    });
    q.push(Expect::Describe {
        columns_of: None,
        statement: None,
    });
    q.push(Expect::Sync);
    q.push(Expect::Bind);
    let mut forgotten = Vec::new();
    assert!(q.skip_to_sync(|h| forgotten.push(h)));
    assert_eq!(forgotten, [7]);
    assert!(matches!(q.pop(), Some(Expect::Sync)));
    assert!(matches!(q.pop(), Some(Expect::Bind)));
}

#[test]
fn syncs_sent_during_copy_in_expect_nothing() {
    let mut q = Expected::default();
    q.push(Expect::Execute {
        effect: None,
        post: None,
    });
    q.push(Expect::Sync);
    q.push(Expect::CopyEnd);
    q.push(Expect::Sync);
    assert!(!q.forget_syncs_during_copy_in(), "the copy's end was seen");
    assert!(matches!(q.pop(), Some(Expect::Execute { .. })));
    assert!(matches!(q.pop(), Some(Expect::Sync)));
    assert!(q.is_empty());

    q.push(Expect::Execute {
        effect: None,
        post: None,
    });
    q.push(Expect::Sync);
    assert!(q.forget_syncs_during_copy_in(), "still copying");
    assert!(matches!(q.pop(), Some(Expect::Execute { .. })));
    assert!(q.is_empty());
}

#[test]
fn a_resent_batch_answers_client_parses_itself() {
    let mut q = Expected::default();
    q.push(Expect::Parse {
        hidden: true,
        hash: 1,
    });
    q.push(Expect::Parse {
        hidden: false,
        hash: 2,
    });
    q.push(Expect::Bind);
    q.requeue_for_resend();
    assert!(matches!(
        q.pop(),
        Some(Expect::Synthetic(Synthetic::ParseComplete))
    ));
    assert!(matches!(q.pop(), Some(Expect::Bind)));
    assert!(q.is_empty());
}

#[test]
fn failing_in_flight_gives_one_error_per_batch_and_a_ready_for_each_sync() {
    let mut q = Expected::default();
    q.push(Expect::Bind);
    q.push(Expect::Execute {
        effect: None,
        post: None,
    });
    q.push(Expect::Sync);
    q.push(Expect::Query {
        effects: None,
        post: None,
        channels: None,
    });
    q.push(Expect::Bind);
    let open = q.fail_in_flight(&SqlError::new("40001", "retry"));
    assert!(open, "the last batch has no Sync yet");
    let out = emitted(&mut q, b'I');
    let kinds: Vec<u8> = messages_tags(&out);
    assert_eq!(kinds, b"EZEZE");
}

#[test]
fn the_servers_error_to_a_refused_batch_becomes_the_refusal() {
    let mut q = Expected::default();
    q.push(Expect::Refusal(SqlError::new("42501", "no")));
    q.push(Expect::Sync);
    assert!(q.refusal_answered());
    assert!(!q.refusal_answered(), "only once");
    let mut out = Vec::new();
    q.emit_synthetics(&mut out, b'I');
    let mut want = Vec::new();
    SqlError::new("42501", "no").encode(&mut want);
    assert_eq!(out, want);
    assert!(matches!(q.pop(), Some(Expect::Sync)));
}

fn messages_tags(mut out: &[u8]) -> Vec<u8> {
    let mut tags = Vec::new();
    while out.len() >= 5 {
        let len = u32::from_be_bytes(out[1..5].try_into().unwrap()) as usize;
        tags.push(out[0]);
        out = &out[1 + len..];
    }
    tags
}
