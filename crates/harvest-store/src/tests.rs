use super::*;
use harvest_protocol::SessionState;
use std::sync::Arc;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("harvest.db")).unwrap();
    (dir, store)
}

fn new_session(store: &Store, id: &str) -> SessionId {
    let id = SessionId::from(id);
    store
        .create_session(&NewSession {
            id: id.clone(),
            name: "n".into(),
            sandbox: "local".into(),
            workspace: "/w".into(),
            spec: serde_json::json!({}),
        })
        .unwrap();
    id
}

fn text(t: &str) -> NewEvent {
    NewEvent::new(EventBody::AssistantText { text: t.into() })
}

#[test]
fn seq_starts_at_one_and_has_no_gaps_across_appends() {
    let (_d, store) = store();
    let id = new_session(&store, "a");
    store.append(&id, vec![text("1"), text("2")], None).unwrap();
    store
        .append(
            &id,
            vec![text("3")],
            Some(&serde_json::json!({"log_id": 2, "offset": 42})),
        )
        .unwrap();
    let seqs: Vec<u64> = store
        .read_from(&id, Seq(1), 100)
        .unwrap()
        .iter()
        .map(|e| e.seq.0)
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    let row = store.session(&id).unwrap().unwrap();
    assert_eq!(row.info.last_seq, Seq(3));
    assert_eq!(
        row.ingest["offset"], 42,
        "the checkpoint is committed with the events"
    );
}

#[test]
fn sessions_number_independently() {
    let (_d, store) = store();
    let a = new_session(&store, "a");
    let b = new_session(&store, "b");
    store.append(&a, vec![text("x")], None).unwrap();
    let evs = store.append(&b, vec![text("y")], None).unwrap();
    assert_eq!(evs[0].seq, Seq(1));
}

#[test]
fn concurrent_appenders_never_share_or_skip_a_seq() {
    let (_d, store) = store();
    let store = Arc::new(store);
    let id = new_session(&store, "a");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (store, id) = (store.clone(), id.clone());
            std::thread::spawn(move || {
                for _ in 0..50 {
                    store.append(&id, vec![text("x")], None).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let seqs: Vec<u64> = store
        .read_from(&id, Seq(1), 1000)
        .unwrap()
        .iter()
        .map(|e| e.seq.0)
        .collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
}

#[test]
fn totals_follow_the_events() {
    let (_d, store) = store();
    let id = new_session(&store, "a");
    let turn = |cost: f64| {
        NewEvent::new(EventBody::TurnResult {
            is_error: false,
            subtype: "success".into(),
            terminal_reason: None,
            interrupted: false,
            result: None,
            cost_usd: cost,
            input_tokens: 10,
            output_tokens: 5,
            duration_ms: 1,
            num_turns: 1,
        })
    };
    store
        .append(
            &id,
            vec![
                NewEvent::new(EventBody::Status {
                    state: SessionState::Idle,
                    reason: None,
                }),
                turn(0.5),
                turn(0.25),
            ],
            None,
        )
        .unwrap();
    let info = store.session(&id).unwrap().unwrap().info;
    assert_eq!(info.state, SessionState::Idle);
    assert!((info.cost_usd - 0.75).abs() < 1e-12);
    assert_eq!((info.input_tokens, info.output_tokens), (20, 10));
}

#[test]
fn stored_json_is_the_event_as_sent() {
    let (_d, store) = store();
    let id = new_session(&store, "a");
    let sent = store.append(&id, vec![text("hi")], None).unwrap();
    let stored = store.read_from(&id, Seq(1), 10).unwrap();
    assert_eq!(stored[0].json, sent[0].json);
    let back: Event = serde_json::from_str(&stored[0].json).unwrap();
    assert_eq!(back.body, EventBody::AssistantText { text: "hi".into() });
    assert_eq!(back.seq, Seq(1));
}

#[test]
fn raw_is_spliced_in_only_when_asked_for() {
    let (_d, store) = store();
    let id = new_session(&store, "a");
    let ev = NewEvent {
        body: EventBody::AssistantText { text: "hi".into() },
        raw: Some(serde_json::json!({"type": "assistant", "x": [1, 2]})),
    };
    store.append(&id, vec![ev], None).unwrap();
    let stored = &store.read_from(&id, Seq(1), 10).unwrap()[0];
    let with: Event = serde_json::from_str(&stored.to_json(true)).unwrap();
    assert_eq!(
        with.raw,
        Some(serde_json::json!({"type": "assistant", "x": [1, 2]}))
    );
    let without: Event = serde_json::from_str(&stored.to_json(false)).unwrap();
    assert_eq!(without.raw, None);
    assert_eq!(without.body, with.body);
}

#[test]
fn appending_to_an_unknown_session_is_an_error() {
    let (_d, store) = store();
    let err = store
        .append(&SessionId::from("nope"), vec![text("x")], None)
        .unwrap_err();
    assert!(matches!(err, StoreError::NoSession(_)));
}

#[test]
fn delete_removes_events_too() {
    let (_d, store) = store();
    let id = new_session(&store, "a");
    store.append(&id, vec![text("x")], None).unwrap();
    store.delete_session(&id).unwrap();
    assert!(store.session(&id).unwrap().is_none());
    assert!(store.read_from(&id, Seq(1), 10).unwrap().is_empty());
}

#[test]
fn previews_are_kept_as_events_arrive_and_capped() {
    let (_d, store) = store();
    let id = new_session(&store, "a");
    let long = "x".repeat(10_000);
    store
        .append(
            &id,
            vec![
                NewEvent::new(EventBody::UserMessage { text: long.clone() }),
                NewEvent::new(EventBody::AssistantText {
                    text: "reply".into(),
                }),
                NewEvent::new(EventBody::UserMessage {
                    text: "second".into(),
                }),
                NewEvent::new(EventBody::AgentRaw {}),
            ],
            None,
        )
        .unwrap();
    let info = store.session(&id).unwrap().unwrap().info;
    assert_eq!(
        info.first_prompt.as_deref(),
        Some(&long[..sessions::PREVIEW_CHARS])
    );
    assert_eq!(info.last_line.as_deref(), Some("second"));
}
