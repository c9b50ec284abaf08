use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixStream;

use tlspool_core::db::{DiscloseChange, Disclosure, Donai, Position, Selector};
use tlspool_proto::tokio::{RecordReader, RecordWriter, split};
use tlspool_proto::{ErrorCode, Identity, LidEntry, LidEntryFlags, Payload, Record};

use super::inquiry::{may_skip, read_answer};
use super::*;
use crate::callbacks::{CallbackResponse, CallbackTable, ConnectionId};
use crate::starttls::StartTlsError;

const HELPER: ConnectionId = ConnectionId(1);
const OTHER: ConnectionId = ConnectionId(2);

fn registration(flags: LidEntryFlags, timeout_s: u32) -> LidEntry {
    LidEntry {
        flags,
        maxlevels: 0,
        timeout: timeout_s,
        localid: Identity::empty(),
        remoteid: Identity::empty(),
    }
}

/// Panics with the refusal when the registration was refused.
fn expect_registered(refusal: Option<Record>) {
    assert!(refusal.is_none(), "registration refused: {refusal:?}");
}

fn helper_socket() -> (RecordWriter, RecordReader) {
    let (daemon, helper) = UnixStream::pair().expect("socket pair");
    let (_, daemon_writer) = split(daemon);
    let (helper_reader, _) = split(helper);
    (daemon_writer, helper_reader)
}

fn disclosure(selector: &str, step: u32, levels_up: u32, ids: &[&str]) -> Disclosure {
    Disclosure {
        selector: Selector::parse(selector).expect("selector"),
        step,
        levels_up,
        local_ids: ids
            .iter()
            .map(|id| Donai::parse(id).expect("DoNAI"))
            .collect(),
    }
}

fn answer(local_id: &str, selector: &str, flags: LidEntryFlags) -> LidEntry {
    LidEntry {
        flags,
        maxlevels: 0,
        timeout: 0,
        localid: Identity::for_field("localid", local_id).expect("fits"),
        remoteid: Identity::for_field("remoteid", selector).expect("fits"),
    }
}

/// Receives the next callback on `reader` and answers it through the callback table with
/// `reply`, built from the callback's payload; returns that payload.
async fn answer_next(
    reader: &mut RecordReader,
    callbacks: &Arc<CallbackTable>,
    reply: impl FnOnce(&LidEntry) -> Payload,
) -> LidEntry {
    let frame = reader.recv().await.expect("receive").expect("callback");
    let record = frame.decode().expect("decodes");
    let Payload::LidEntryCallback(entry) = record.payload else {
        panic!("expected LIDENTRY_CALLBACK, got {:?}", record.payload);
    };
    let mut response = Record::new(record.reqid, reply(&entry));
    response.cbid = record.cbid;
    let waiter = callbacks
        .take_answered(record.cbid, HELPER)
        .expect("callback outstanding");
    waiter.deliver(CallbackResponse {
        record: response,
        fd: None,
    });
    entry
}

#[tokio::test]
async fn second_registration_is_not_vacant() {
    let service = LidEntryService::new();
    let callbacks = CallbackTable::new();
    let (writer, _reader) = helper_socket();
    let entry = registration(LidEntryFlags::empty(), 10);
    expect_registered(service.register(HELPER, 1, &entry, writer.clone(), Arc::clone(&callbacks)));
    let refusal = service
        .register(OTHER, 2, &entry, writer, callbacks)
        .expect("a registration is waiting, so this one is refused");
    let Payload::Error(error) = refusal.payload else {
        panic!("expected ERROR");
    };
    assert_eq!(error.error_code(), Some(ErrorCode::LidEntryNotVacant));
    assert_eq!(refusal.reqid, 2);
}

#[tokio::test]
async fn release_frees_registration() {
    let service = LidEntryService::new();
    let callbacks = CallbackTable::new();
    let (writer, _reader) = helper_socket();
    let entry = registration(LidEntryFlags::empty(), 10);
    expect_registered(service.register(HELPER, 1, &entry, writer.clone(), Arc::clone(&callbacks)));
    assert!(service.is_available());
    service.release_connection(HELPER);
    assert!(!service.is_available());
    expect_registered(service.register(OTHER, 2, &entry, writer, callbacks));
}

#[tokio::test]
async fn window_of_other_connection_refuses() {
    let service = LidEntryService::new();
    let callbacks = CallbackTable::new();
    let (writer, _reader) = helper_socket();
    let entry = registration(LidEntryFlags::empty(), 30);
    expect_registered(service.register(HELPER, 1, &entry, writer.clone(), Arc::clone(&callbacks)));
    let _taken = service.take_registration().expect("waiting");
    assert!(service.is_available(), "the window keeps the helper");
    let refusal = service.register(OTHER, 2, &entry, writer.clone(), Arc::clone(&callbacks));
    assert!(refusal.is_some(), "another connection's window is open");
    expect_registered(service.register(HELPER, 3, &entry, writer, callbacks));
}

#[tokio::test]
async fn expired_window_admits_other_connection() {
    let service = LidEntryService::new();
    let callbacks = CallbackTable::new();
    let (writer, _reader) = helper_socket();
    let entry = registration(LidEntryFlags::empty(), 1);
    expect_registered(service.register(HELPER, 1, &entry, writer.clone(), Arc::clone(&callbacks)));
    let _taken = service.take_registration().expect("waiting");
    // Sleeping past the one-second window ends it; a sleep is never shorter than requested.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!service.is_available(), "the window ended");
    expect_registered(service.register(OTHER, 2, &entry, writer, callbacks));
}

#[tokio::test]
async fn inquiry_answer_selects_and_renews() {
    let service = LidEntryService::new();
    let callbacks = CallbackTable::new();
    let (writer, mut reader) = helper_socket();
    let flags = LidEntryFlags::WANT_DBENTRY;
    expect_registered(service.register(
        HELPER,
        5,
        &registration(flags, 30),
        writer,
        Arc::clone(&callbacks),
    ));
    let remote = Donai::parse("peer.dev.example").expect("DoNAI");
    let found = disclosure(".dev.example", 1, 2, &["dev.example", "other.example"]);

    let helper_callbacks = Arc::clone(&callbacks);
    let helper = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            seen.push(
                answer_next(&mut reader, &helper_callbacks, |entry| {
                    Payload::LidEntryCallback(entry.clone())
                })
                .await,
            );
        }
        seen.push(
            answer_next(&mut reader, &helper_callbacks, |_| {
                Payload::LidEntryCallback(answer(
                    "other.example",
                    ".dev.example",
                    LidEntryFlags::DBINSERT,
                ))
            })
            .await,
        );
        seen
    });

    let selection = service
        .consult(&remote, Some(&found))
        .await
        .expect("consulted")
        .expect("not skipped");
    let seen = helper.await.expect("helper task");
    assert_eq!(seen[0].localid.as_str(), "dev.example");
    assert_eq!(seen[0].remoteid.as_str(), ".dev.example");
    assert!(seen[0].flags.contains(LidEntryFlags::DBENTRY));
    assert_eq!(seen[1].localid.as_str(), "other.example");
    assert_eq!(seen[2].remoteid.as_str(), "peer.dev.example");
    assert_eq!(seen[2].localid.as_str(), "dev.example", "suggestion");
    assert!(!seen[2].flags.contains(LidEntryFlags::DBENTRY));
    assert_eq!(seen[2].maxlevels, 1);
    assert_eq!(selection.choice, Choice::Stored("other.example".to_owned()));
    assert_eq!(
        selection.changes,
        [DiscloseChange::Insert {
            selector: Selector::parse(".dev.example").expect("selector"),
            local_id: Donai::parse("other.example").expect("DoNAI"),
            position: Position::Head,
        }]
    );
    assert!(service.is_available(), "the answer registers again");
}

#[tokio::test]
async fn silent_helper_times_out() {
    let service = LidEntryService::new();
    let callbacks = CallbackTable::new();
    let (writer, _reader) = helper_socket();
    expect_registered(service.register(
        HELPER,
        5,
        &registration(LidEntryFlags::empty(), 1),
        writer,
        callbacks,
    ));
    let remote = Donai::parse("peer.dev.example").expect("DoNAI");
    let error = service.consult(&remote, None).await.expect_err("no answer");
    let StartTlsError::LocalIdSelectionTimedOut { timeout } = error else {
        panic!("expected a timeout, got {error}");
    };
    assert_eq!(timeout, Duration::from_secs(1));
}

#[tokio::test]
async fn disconnect_during_inquiry_is_reported() {
    let service = Arc::new(LidEntryService::new());
    let callbacks = CallbackTable::new();
    let (writer, mut reader) = helper_socket();
    expect_registered(service.register(
        HELPER,
        5,
        &registration(LidEntryFlags::empty(), 30),
        writer,
        Arc::clone(&callbacks),
    ));
    let remote = Donai::parse("peer.dev.example").expect("DoNAI");
    let consulting = {
        let service = Arc::clone(&service);
        tokio::spawn(async move { service.consult(&remote, None).await })
    };
    reader.recv().await.expect("receive").expect("callback");
    // The connection task does both when the helper's socket closes.
    callbacks.release_connection(HELPER);
    service.release_connection(HELPER);

    let error = consulting.await.expect("task").expect_err("disconnected");
    assert!(
        matches!(error, StartTlsError::LocalIdSelectionDisconnected),
        "{error}"
    );
    assert!(!service.is_available(), "window released");
}

#[test]
fn skip_needs_dbentry_and_every_other_condition() {
    let concrete = disclosure("peer.dev.example", 0, 0, &["dev.example"]);
    let one_up = disclosure(".dev.example", 1, 2, &["dev.example"]);
    let root = disclosure(".", 3, 6, &["dev.example"]);
    let user_removed = disclosure("@dev.example", 1, 1, &["dev.example"]);

    assert!(!may_skip(LidEntryFlags::empty(), &concrete));
    assert!(may_skip(LidEntryFlags::SKIP_DBENTRY, &root));
    assert!(may_skip(LidEntryFlags::SKIP_DOMAIN_SAME, &concrete));
    assert!(!may_skip(LidEntryFlags::SKIP_DOMAIN_SAME, &one_up));
    assert!(may_skip(LidEntryFlags::SKIP_DOMAIN_ONEUP, &one_up));
    assert!(!may_skip(LidEntryFlags::SKIP_DOMAIN_ONEUP, &concrete));
    assert!(may_skip(LidEntryFlags::SKIP_DOMAIN_SUB, &concrete));
    assert!(may_skip(LidEntryFlags::SKIP_DOMAIN_SUB, &one_up));
    assert!(!may_skip(LidEntryFlags::SKIP_DOMAIN_SUB, &root));
    assert!(!may_skip(LidEntryFlags::SKIP_NOTROOT, &root));
    assert!(may_skip(LidEntryFlags::SKIP_NOTROOT, &one_up));
    assert!(!may_skip(LidEntryFlags::SKIP_USER, &user_removed));
    assert!(may_skip(LidEntryFlags::SKIP_USER, &concrete));
}

#[test]
fn answer_selector_stays_within_maxlevels() {
    let remote = Donai::parse("peer.dev.example").expect("DoNAI");
    let window = Duration::from_secs(5);
    let within = answer("dev.example", ".dev.example", LidEntryFlags::DBAPPEND);
    let selection = read_answer(&within, &remote, 1, window).expect("one step up");
    assert_eq!(
        selection.changes,
        [DiscloseChange::Insert {
            selector: Selector::parse(".dev.example").expect("selector"),
            local_id: Donai::parse("dev.example").expect("DoNAI"),
            position: Position::Tail,
        }]
    );

    let beyond = answer("dev.example", ".example", LidEntryFlags::DBINSERT);
    let error = read_answer(&beyond, &remote, 1, window).expect_err("two steps up");
    assert!(
        matches!(
            error,
            StartTlsError::LocalIdSelectionInvalid {
                field: "remoteid",
                ..
            }
        ),
        "{error}"
    );

    let concrete = answer("dev.example", "", LidEntryFlags::DBREORDER);
    let selection = read_answer(&concrete, &remote, 0, window).expect("concrete");
    assert_eq!(selection.changes.len(), 2, "insert if absent, then move");
    assert!(matches!(
        &selection.changes[1],
        DiscloseChange::Move { selector, position: Position::Head, .. }
            if selector.to_string() == "peer.dev.example"
    ));
}

#[test]
fn answer_flags_pick_the_choice() {
    let remote = Donai::parse("peer.dev.example").expect("DoNAI");
    let window = Duration::from_secs(5);
    let read = |entry: LidEntry| read_answer(&entry, &remote, 0, window).expect("valid");

    assert_eq!(
        read(answer("", "", LidEntryFlags::empty())).choice,
        Choice::Nothing
    );
    assert_eq!(
        read(answer("new.example", "", LidEntryFlags::NEW)).choice,
        Choice::New("new.example".to_owned())
    );
    let on_the_fly = read(answer(
        "fly.example",
        "",
        LidEntryFlags::ONTHEFLY | LidEntryFlags::DBINSERT,
    ));
    assert_eq!(
        on_the_fly.choice,
        Choice::OnTheFly("fly.example".to_owned())
    );
    assert!(
        on_the_fly.changes.is_empty(),
        "on-the-fly identities are not stored"
    );
    assert!(
        read_answer(
            &answer("@.", "", LidEntryFlags::empty()),
            &remote,
            0,
            window
        )
        .is_err()
    );
}

#[tokio::test]
async fn answer_flags_join_the_registration() {
    let service = LidEntryService::new();
    let callbacks = CallbackTable::new();
    let (writer, mut reader) = helper_socket();
    let entry = registration(LidEntryFlags::empty(), 30);
    expect_registered(service.register(HELPER, 5, &entry, writer, Arc::clone(&callbacks)));
    let remote = Donai::parse("peer.dev.example").expect("DoNAI");
    let found = disclosure(".dev.example", 1, 2, &["dev.example"]);

    let helper_callbacks = Arc::clone(&callbacks);
    let helper = tokio::spawn(async move {
        answer_next(&mut reader, &helper_callbacks, |_| {
            Payload::LidEntryCallback(answer("dev.example", "", LidEntryFlags::SKIP_DBENTRY))
        })
        .await
    });
    let first = service
        .consult(&remote, Some(&found))
        .await
        .expect("consulted");
    assert!(first.is_some(), "the first handshake asks");
    helper.await.expect("helper task");

    let second = service
        .consult(&remote, Some(&found))
        .await
        .expect("consulted");
    assert!(
        second.is_none(),
        "SKIP_DBENTRY from the answer lets the list be used"
    );
    assert!(service.is_available(), "the registration stays");
}
