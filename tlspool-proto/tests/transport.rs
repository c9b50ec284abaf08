//! Records and descriptors over real UNIX stream socket pairs, through the blocking and the
//! tokio transport.

use std::fs::File;
use std::io::{IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use tlspool_proto::blocking::RecordStream;
use tlspool_proto::{ErrorCode, Frame, ProtoError, RECORD_LEN, Record};

/// Creates a pipe: reading the read end returns EOF once every copy of the write end is closed.
fn pipe() -> (File, OwnedFd) {
    let (read, write) = rustix::pipe::pipe().unwrap();
    (File::from(read), write)
}

fn assert_closed(read: &mut File) {
    let mut buffer = [0u8; 8];
    assert_eq!(
        read.read(&mut buffer).unwrap(),
        0,
        "a write end is still open"
    );
}

/// Writes `tag` through a received descriptor and checks it comes out of `read`.
fn assert_same_pipe(frame: &Frame, read: &mut File, tag: &[u8]) {
    let fd = frame
        .fd
        .as_ref()
        .expect("record arrived without its descriptor");
    let mut write = File::from(fd.try_clone().unwrap());
    write.write_all(tag).unwrap();
    let mut buffer = vec![0u8; tag.len()];
    read.read_exact(&mut buffer).unwrap();
    assert_eq!(buffer, tag);
}

/// Sends raw bytes with any number of descriptors in one `sendmsg`.
fn send_raw(socket: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    }
    let sent = rustix::net::sendmsg(
        socket,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .unwrap();
    assert_eq!(sent, data.len());
}

fn record_bytes(reqid: u16) -> [u8; RECORD_LEN] {
    Record::error_code(reqid, ErrorCode::CommandUnknown).encode()
}

#[test]
fn blocking_record_carries_descriptor() {
    let (left, right) = UnixStream::pair().unwrap();
    let (sender, mut receiver) = (RecordStream::new(left), RecordStream::new(right));
    let (mut read, write) = pipe();

    sender.send(&record_bytes(1), Some(write.as_fd())).unwrap();
    sender.send_record(&Record::success(2), None).unwrap();
    drop(write);

    let first = receiver.recv().unwrap().unwrap();
    assert_eq!(first.header().reqid, 1);
    assert_same_pipe(&first, &mut read, b"first");
    let second = receiver.recv().unwrap().unwrap();
    assert_eq!(second.decode().unwrap(), Record::success(2));
    assert!(second.fd.is_none());
    assert_eq!(receiver.discarded_descriptors(), 0);
}

#[test]
fn blocking_descriptors_stay_with_their_records() {
    let (left, right) = UnixStream::pair().unwrap();
    let (sender, mut receiver) = (RecordStream::new(left), RecordStream::new(right));
    let (mut read_a, write_a) = pipe();
    let (mut read_b, write_b) = pipe();

    sender
        .send(&record_bytes(10), Some(write_a.as_fd()))
        .unwrap();
    sender
        .send(&record_bytes(11), Some(write_b.as_fd()))
        .unwrap();

    let first = receiver.recv().unwrap().unwrap();
    let second = receiver.recv().unwrap().unwrap();
    assert_eq!(first.header().reqid, 10);
    assert_eq!(second.header().reqid, 11);
    assert_same_pipe(&first, &mut read_a, b"a");
    assert_same_pipe(&second, &mut read_b, b"b");
}

#[test]
fn blocking_surplus_descriptors_closed() {
    let (left, right) = UnixStream::pair().unwrap();
    let mut receiver = RecordStream::new(right);
    let (mut read_a, write_a) = pipe();
    let (mut read_b, write_b) = pipe();

    send_raw(&left, &record_bytes(3), &[write_a.as_fd(), write_b.as_fd()]);
    drop((write_a, write_b));

    let frame = receiver.recv().unwrap().unwrap();
    assert_eq!(frame.header().reqid, 3);
    assert!(frame.fd.is_none());
    assert_eq!(receiver.discarded_descriptors(), 2);
    assert_closed(&mut read_a);
    assert_closed(&mut read_b);
}

#[test]
fn blocking_descriptor_mid_record_closed() {
    let (left, right) = UnixStream::pair().unwrap();
    let queue = right.try_clone().unwrap();
    let mut receiver = RecordStream::new(right);
    let (mut read, write) = pipe();
    let bytes = record_bytes(4);

    std::thread::scope(|scope| {
        let receiving = scope.spawn(move || {
            let frame = receiver.recv().unwrap().unwrap();
            (frame, receiver.discarded_descriptors())
        });

        // Wait until the receiver has taken the first bytes, so the descriptor arrives with
        // a later read of the same record.
        send_raw(&left, &bytes[..100], &[]);
        while rustix::io::ioctl_fionread(&queue).unwrap() != 0 {
            std::thread::yield_now();
        }
        send_raw(&left, &bytes[100..], &[write.as_fd()]);

        let (frame, discarded) = receiving.join().unwrap();
        assert_eq!(frame.bytes, bytes);
        assert!(frame.fd.is_none());
        assert_eq!(discarded, 1);
    });
    drop(write);
    assert_closed(&mut read);
}

#[test]
fn blocking_record_in_single_byte_writes() {
    let (left, right) = UnixStream::pair().unwrap();
    let mut receiver = RecordStream::new(right);
    let (mut read, write) = pipe();
    let bytes = record_bytes(5);

    std::thread::scope(|scope| {
        // The receiver runs alongside, because 389 one-byte sends exceed the socket buffer.
        let receiving = scope.spawn(move || {
            let frame = receiver.recv().unwrap().unwrap();
            let next = receiver.recv().unwrap().unwrap();
            (frame, next)
        });

        send_raw(&left, &bytes[..1], &[write.as_fd()]);
        for byte in &bytes[1..] {
            send_raw(&left, std::slice::from_ref(byte), &[]);
        }
        send_raw(&left, &record_bytes(6), &[]);

        let (frame, next) = receiving.join().unwrap();
        assert_eq!(frame.bytes, bytes);
        assert_same_pipe(&frame, &mut read, b"x");
        assert_eq!(next.header().reqid, 6);
        assert!(next.fd.is_none());
    });
}

#[test]
fn blocking_eof_mid_record_is_error() {
    let (mut left, right) = UnixStream::pair().unwrap();
    let mut receiver = RecordStream::new(right);
    left.write_all(&record_bytes(7)).unwrap();
    left.write_all(&[0u8; 100]).unwrap();
    drop(left);

    assert_eq!(receiver.recv().unwrap().unwrap().header().reqid, 7);
    let error = receiver.recv().unwrap_err();
    assert!(
        matches!(error, ProtoError::UnexpectedEof { received: 100 }),
        "{error:?}"
    );
}

#[test]
fn blocking_eof_at_boundary_is_none() {
    let (left, right) = UnixStream::pair().unwrap();
    let mut receiver = RecordStream::new(right);
    RecordStream::new(left)
        .send(&record_bytes(8), None)
        .unwrap();

    assert!(receiver.recv().unwrap().is_some());
    assert!(receiver.recv().unwrap().is_none());
}

#[test]
fn blocking_send_reports_closed_peer() {
    let (left, right) = UnixStream::pair().unwrap();
    drop(right);
    let error = RecordStream::new(left)
        .send(&record_bytes(9), None)
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProtoError::Io {
                call: "sendmsg",
                ..
            }
        ),
        "{error:?}"
    );
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_concurrent_writers_keep_records_whole() {
    const TASKS: u16 = 8;
    const RECORDS: u16 = 200;
    let (left, right) = tokio::net::UnixStream::pair().unwrap();
    let (_left_reader, writer) = tlspool_proto::tokio::split(left);
    let (mut reader, _right_writer) = tlspool_proto::tokio::split(right);

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            for index in 0..RECORDS {
                let message = format!("task {task} record {index} {}", "x".repeat(90));
                let record = Record::error(task * RECORDS + index, i32::from(task), &message);
                writer.send_record(&record, None).await.unwrap();
            }
        }));
    }
    drop(writer);

    let mut next_index = [0u16; TASKS as usize];
    for _ in 0..TASKS * RECORDS {
        let frame = reader.recv().await.unwrap().unwrap();
        let record = frame.decode().unwrap();
        let tlspool_proto::Payload::Error(error) = &record.payload else {
            panic!("unexpected record {record:?}");
        };
        let task = usize::try_from(error.tlserrno).unwrap();
        let index = record.reqid % RECORDS;
        assert_eq!(
            index, next_index[task],
            "records of task {task} out of order"
        );
        assert!(
            error
                .message
                .starts_with(&format!("task {task} record {index} "))
        );
        next_index[task] += 1;
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn tokio_record_carries_descriptor() {
    let (left, right) = tokio::net::UnixStream::pair().unwrap();
    let (_left_reader, writer) = tlspool_proto::tokio::split(left);
    let (mut reader, _right_writer) = tlspool_proto::tokio::split(right);
    let (mut read, write) = pipe();

    writer
        .send(&record_bytes(20), Some(write.as_fd()))
        .await
        .unwrap();
    writer.send(&record_bytes(21), None).await.unwrap();
    drop(write);

    let first = reader.recv().await.unwrap().unwrap();
    assert_eq!(first.header().reqid, 20);
    assert_same_pipe(&first, &mut read, b"tokio");
    let second = reader.recv().await.unwrap().unwrap();
    assert!(second.fd.is_none());
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn tokio_eof_mid_record_is_error() {
    let (left, right) = UnixStream::pair().unwrap();
    right.set_nonblocking(true).unwrap();
    let (mut reader, _writer) =
        tlspool_proto::tokio::split(tokio::net::UnixStream::from_std(right).unwrap());
    send_raw(&left, &record_bytes(30)[..200], &[]);
    drop(left);

    let error = reader.recv().await.unwrap_err();
    assert!(
        matches!(error, ProtoError::UnexpectedEof { received: 200 }),
        "{error:?}"
    );
    assert!(reader.recv().await.is_err() || reader.discarded_descriptors() == 0);
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn tokio_eof_at_boundary_is_none() {
    let (left, right) = tokio::net::UnixStream::pair().unwrap();
    let (mut reader, _writer) = tlspool_proto::tokio::split(right);
    drop(left);
    assert!(reader.recv().await.unwrap().is_none());
}
