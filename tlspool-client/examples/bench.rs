//! Benchmark client for `bench/run.sh`: bulk echo throughput, set-up latency and idle sessions,
//! each either through the TLS Pool, over plain TCP or as a direct TLS client on the same GnuTLS
//! session engine the daemon uses.
//!
//! Usage (every address is HOST:PORT, every run stops after its count or its time limit):
//!
//! ```text
//! bench bulk-pool  SOCKET ADDR REMOTE_ID BYTES     TLS client through the daemon
//! bench bulk-tls   ADDR NAME CAFILE PRIORITY BYTES direct GnuTLS client
//! bench bulk-tcp   ADDR BYTES                      plain TCP (into a TLS client such as stunnel)
//! bench latency-pool SOCKET ADDR REMOTE_ID COUNT
//! bench latency-tls  ADDR NAME CAFILE PRIORITY COUNT
//! bench idle SOCKET LOCAL_ID COUNT HOLD_FILE       COUNT client-server session pairs, held
//!                                                  until HOLD_FILE is removed
//! bench echo-server ADDR SECONDS                   plaintext echo backend
//! bench dtls-pool   SOCKET ADDR REMOTE_ID SIZE COUNT          DTLS client through the daemon
//! bench dtls-direct ADDR NAME CAFILE PRIORITY SIZE COUNT      direct GnuTLS DTLS client
//! ```
//!
//! With `BENCH_CLIENT_CERT` and `BENCH_CLIENT_KEY` set to PEM files, the direct client presents
//! that certificate, for servers that require one (`tlstunnel -s`).
//!
//! The bulk modes send BYTES to an echo peer and read them back with at most [`WINDOW`] bytes
//! in flight, so every path runs the same single-threaded loop. The DTLS modes send COUNT
//! datagrams of SIZE bytes to a UDP echo peer with at most [`DATAGRAM_WINDOW`] in flight, and
//! count a datagram whose echo does not come within [`IO_TIMEOUT`] as lost. Each mode prints
//! one line of `key=value` pairs on standard output.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use tlspool_client::StartTlsRequest;
use tlspool_core::tls::{
    Credentials, DtlsConfig, Encoding, HandshakeStatus, PrivateKeySource, ReadOutcome, Role,
    Session, SessionConfig, TrustAnchors,
};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Size of each plaintext write in the bulk modes.
const CHUNK: usize = 64 * 1024;
/// Maximum of bytes sent but not yet echoed back in the bulk modes.
const WINDOW: usize = 256 * 1024;
/// Time limit of one blocking read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Failed latency connections in a row after which a latency run stops.
const MAX_CONSECUTIVE_FAILURES: usize = 5;
/// Time limit of one bulk or latency run.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Maximum of datagrams sent but not yet echoed back in the DTLS modes.
const DATAGRAM_WINDOW: usize = 32;
/// Path MTU of the direct DTLS client, the same as `dtls_mtu` of the daemon in `bench/dtls.sh`.
const DTLS_MTU: u16 = 1400;

/// A byte stream the bulk and latency loops drive: plaintext of a TLS connection or TCP.
trait Stream {
    fn send(&mut self, data: &[u8]) -> BenchResult<()>;
    /// Reads at least one byte, or returns 0 at the end of the stream.
    fn recv(&mut self, buf: &mut [u8]) -> BenchResult<usize>;
}

/// Plain stream sockets: TCP, or the plaintext UNIX socket the daemon hands back.
struct Plain<S>(S);

impl<S: Read + Write> Stream for Plain<S> {
    fn send(&mut self, data: &[u8]) -> BenchResult<()> {
        Ok(self.0.write_all(data)?)
    }

    fn recv(&mut self, buf: &mut [u8]) -> BenchResult<usize> {
        Ok(self.0.read(buf)?)
    }
}

/// A direct TLS client: a GnuTLS [`Session`] over a blocking TCP socket.
struct DirectTls {
    session: Session,
    tcp: TcpStream,
    cipher_buf: Vec<u8>,
}

impl DirectTls {
    /// Connects to `addr`, runs the handshake and verifies the server's chain and `name`.
    fn connect(
        addr: &str,
        name: &str,
        anchors: &TrustAnchors,
        priority: &str,
    ) -> BenchResult<Self> {
        let tcp = tcp_connect(addr)?;
        let mut config = SessionConfig::new(Role::Client);
        config.priority = priority.to_owned();
        config.sni = Some(name.to_owned());
        let session = Session::new(config, &client_credentials()?)?;
        let mut tls = Self {
            session,
            tcp,
            cipher_buf: vec![0; CHUNK + 1024],
        };
        while tls.session.handshake()? == HandshakeStatus::WantRead {
            tls.flush()?;
            tls.fill()?;
        }
        tls.flush()?;
        tls.session.verify_peer_x509(anchors, Some(name))?;
        Ok(tls)
    }

    fn flush(&mut self) -> BenchResult<()> {
        let out = self.session.take_ciphertext();
        if !out.is_empty() {
            self.tcp.write_all(&out)?;
        }
        Ok(())
    }

    fn fill(&mut self) -> BenchResult<()> {
        let n = self.tcp.read(&mut self.cipher_buf)?;
        if n == 0 {
            self.session.feed_eof();
        } else {
            self.session.feed_ciphertext(&self.cipher_buf[..n]);
        }
        Ok(())
    }
}

impl Stream for DirectTls {
    fn send(&mut self, mut data: &[u8]) -> BenchResult<()> {
        while !data.is_empty() {
            let n = self.session.write_plaintext(data)?;
            data = &data[n..];
        }
        self.flush()
    }

    fn recv(&mut self, buf: &mut [u8]) -> BenchResult<usize> {
        loop {
            match self.session.read_plaintext(buf)? {
                ReadOutcome::Data(n) => return Ok(n),
                ReadOutcome::CloseNotify => return Ok(0),
                ReadOutcome::WantRead => {
                    self.flush()?;
                    self.fill()?;
                }
            }
        }
    }
}

/// A datagram channel the DTLS loop drives: the plaintext side of a pool session or a direct
/// DTLS client.
trait Datagrams {
    fn send(&mut self, datagram: &[u8]) -> BenchResult<()>;
    /// Receives one datagram, or returns `None` when none arrives within [`IO_TIMEOUT`].
    fn recv(&mut self, buf: &mut [u8]) -> BenchResult<Option<usize>>;
}

/// The plaintext `SOCK_SEQPACKET` socket of a pool DTLS session.
impl Datagrams for UnixStream {
    fn send(&mut self, datagram: &[u8]) -> BenchResult<()> {
        Ok(self.write_all(datagram)?)
    }

    fn recv(&mut self, buf: &mut [u8]) -> BenchResult<Option<usize>> {
        match self.read(buf) {
            Ok(0) => Err("the DTLS session ended".into()),
            Ok(n) => Ok(Some(n)),
            Err(error) if is_timeout(&error) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A direct DTLS client: a GnuTLS DTLS [`Session`] over a connected UDP socket.
struct DirectDtls {
    session: Session,
    udp: UdpSocket,
    cipher_buf: Vec<u8>,
}

impl DirectDtls {
    /// Connects to `addr`, runs the handshake with retransmissions and verifies the server's
    /// chain and `name`.
    fn connect(
        addr: &str,
        name: &str,
        anchors: &TrustAnchors,
        priority: &str,
    ) -> BenchResult<Self> {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        udp.connect(addr)?;
        let mut config = SessionConfig::new(Role::Client);
        config.priority = priority.to_owned();
        config.sni = Some(name.to_owned());
        let session = Session::new_dtls(config, &client_credentials()?, DtlsConfig::new(DTLS_MTU))?;
        let mut dtls = Self {
            session,
            udp,
            cipher_buf: vec![0; 64 * 1024],
        };
        let start = Instant::now();
        while dtls.session.handshake()? == HandshakeStatus::WantRead {
            if start.elapsed() > RUN_LIMIT {
                return Err(format!("DTLS handshake exceeded {RUN_LIMIT:?}").into());
            }
            dtls.flush()?;
            let wait = dtls
                .session
                .retransmit_timeout()
                .filter(|wait| !wait.is_zero())
                .unwrap_or(IO_TIMEOUT);
            dtls.fill(wait)?;
        }
        dtls.flush()?;
        dtls.session.verify_peer_x509(anchors, Some(name))?;
        Ok(dtls)
    }

    fn flush(&mut self) -> BenchResult<()> {
        while let Some(datagram) = self.session.next_datagram() {
            self.udp.send(&datagram)?;
        }
        Ok(())
    }

    /// Feeds the session one datagram, or nothing when none arrives within `wait`.
    fn fill(&mut self, wait: Duration) -> BenchResult<bool> {
        self.udp.set_read_timeout(Some(wait))?;
        match self.udp.recv(&mut self.cipher_buf) {
            Ok(n) => {
                self.session.feed_datagram(&self.cipher_buf[..n]);
                Ok(true)
            }
            Err(error) if is_timeout(&error) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}

impl Datagrams for DirectDtls {
    fn send(&mut self, datagram: &[u8]) -> BenchResult<()> {
        self.session.send_datagram(datagram)?;
        self.flush()
    }

    fn recv(&mut self, buf: &mut [u8]) -> BenchResult<Option<usize>> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.session.read_plaintext(buf)? {
                ReadOutcome::Data(n) => return Ok(Some(n)),
                ReadOutcome::CloseNotify => return Err("the DTLS peer sent close_notify".into()),
                ReadOutcome::WantRead => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.fill(left)? {
                return Ok(None);
            }
        }
    }
}

/// Sends `count` datagrams of `size` bytes to a UDP echo peer and reads the echoes. Prints the
/// echoed datagrams and MiB of payload per second, and the number lost.
fn datagram_echo(channel: &mut dyn Datagrams, size: usize, count: usize) -> BenchResult<()> {
    // Each datagram is one line, like the data of the TCP bulk modes.
    let mut datagram = vec![b'D'; size];
    if let Some(last) = datagram.last_mut() {
        *last = b'\n';
    }
    let mut buf = vec![0_u8; 64 * 1024];

    let (mut sent, mut echoed, mut lost) = (0_usize, 0_usize, 0_usize);
    let start = Instant::now();
    while echoed + lost < count {
        if start.elapsed() > RUN_LIMIT {
            return Err(format!("DTLS run exceeded {RUN_LIMIT:?} at {echoed} echoes").into());
        }
        let in_flight = sent - echoed - lost;
        if sent < count && in_flight < DATAGRAM_WINDOW {
            channel.send(&datagram)?;
            sent += 1;
            continue;
        }
        match channel.recv(&mut buf)? {
            Some(n) if n == size => echoed += 1,
            Some(n) => return Err(format!("a {n}-byte echo of a {size}-byte datagram").into()),
            // Every datagram still in flight is counted lost, and the window starts again.
            None => lost += in_flight,
        }
    }

    let secs = start.elapsed().as_secs_f64();
    let per_s = echoed as f64 / secs;
    let mib_s = per_s * size as f64 / (1024.0 * 1024.0);
    println!(
        "datagrams={count} size={size} echoed={echoed} lost={lost} seconds={secs:.3} datagrams_per_s={per_s:.0} mib_per_s={mib_s:.2}"
    );
    Ok(())
}

/// Sends `total` bytes to an echo peer and reads them back; returns the elapsed time.
fn bulk(stream: &mut dyn Stream, total: usize) -> BenchResult<Duration> {
    // gnutls-serv --echo sends back whole lines only, so the data is lines of 1 KiB.
    let chunk: Vec<u8> = (0..CHUNK)
        .map(|i| if i % 1024 == 1023 { b'\n' } else { b'Z' })
        .collect();
    let mut buf = vec![0_u8; CHUNK];
    let (mut sent, mut received) = (0_usize, 0_usize);
    let start = Instant::now();
    while received < total {
        if start.elapsed() > RUN_LIMIT {
            return Err(format!("bulk run exceeded {RUN_LIMIT:?} at {received} bytes").into());
        }
        if sent < total && sent - received + CHUNK <= WINDOW {
            let len = CHUNK.min(total - sent);
            stream.send(&chunk[..len])?;
            sent += len;
            continue;
        }
        let n = stream.recv(&mut buf)?;
        if n == 0 {
            return Err(format!("echo peer closed after {received} of {total} bytes").into());
        }
        received += n;
    }
    Ok(start.elapsed())
}

fn print_bulk(elapsed: Duration, total: usize) {
    let secs = elapsed.as_secs_f64();
    let mib_s = total as f64 / secs / (1024.0 * 1024.0);
    println!("bytes={total} seconds={secs:.3} mib_per_s={mib_s:.1}");
}

/// Opens `count` connections one after the other, each timed from `connect` (inside
/// `open`) until its first echoed byte arrives; prints the median and quartiles.
fn latency(
    count: usize,
    mut open: impl FnMut() -> BenchResult<Box<dyn Stream>>,
) -> BenchResult<()> {
    let mut samples = Vec::with_capacity(count);
    let (mut failures, mut consecutive_failures) = (0_usize, 0_usize);
    let start = Instant::now();
    for _ in 0..count {
        if start.elapsed() > RUN_LIMIT {
            break;
        }
        let t0 = Instant::now();
        let mut stream = open()?;
        stream.send(b"x\n")?;
        let mut byte = [0_u8; 2];
        // A connection whose echo never arrives (a read timeout) is counted, not fatal.
        match stream.recv(&mut byte) {
            Ok(0) => return Err("echo peer closed before the first byte".into()),
            Ok(_) => {
                samples.push(t0.elapsed().as_secs_f64() * 1e6);
                consecutive_failures = 0;
            }
            Err(_) => {
                failures += 1;
                consecutive_failures += 1;
                if consecutive_failures == MAX_CONSECUTIVE_FAILURES {
                    break;
                }
            }
        }
    }
    if samples.is_empty() {
        println!("count=0 failures={failures} median_us=none");
        return Ok(());
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "count={} failures={failures} median_us={:.0} p25_us={:.0} p75_us={:.0}",
        samples.len(),
        at(0.5),
        at(0.25),
        at(0.75)
    );
    Ok(())
}

fn pool_connect(
    client: &tlspool_client::blocking::Client,
    addr: &str,
    remote_id: &str,
) -> BenchResult<UnixStream> {
    let tcp = tcp_connect(addr)?;
    let request = StartTlsRequest::client(remote_id).build()?;
    let plaintext = client.starttls(tcp, &request)?.plaintext;
    plaintext.set_read_timeout(Some(IO_TIMEOUT))?;
    plaintext.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(plaintext)
}

/// Connects over TCP with Nagle off and [`IO_TIMEOUT`] on reads and writes.
fn tcp_connect(addr: &str) -> BenchResult<TcpStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(tcp)
}

/// Builds the direct client's credentials: the certificate and key named by
/// `BENCH_CLIENT_CERT` and `BENCH_CLIENT_KEY`, or none.
fn client_credentials() -> BenchResult<Credentials> {
    let (Some(cert), Some(key)) = (
        std::env::var_os("BENCH_CLIENT_CERT"),
        std::env::var_os("BENCH_CLIENT_KEY"),
    ) else {
        return Ok(Credentials::anonymous_client()?);
    };
    let key = PrivateKeySource::Memory {
        data: std::fs::read(key)?.into(),
        encoding: Encoding::Pem,
    };
    Ok(Credentials::builder()
        .certificate_chain(&std::fs::read(cert)?, Encoding::Pem)
        .private_key(key)
        .build()?)
}

fn load_anchors(cafile: &str) -> BenchResult<TrustAnchors> {
    Ok(TrustAnchors::from_certificates(
        &std::fs::read(cafile)?,
        Encoding::Pem,
    )?)
}

/// Runs `count` STARTTLS pairs through one daemon (client role on one end of a loopback TCP
/// connection, server role on the other), prints `established=N` and holds them all open
/// until `hold_file` disappears or ten minutes pass.
async fn idle(socket: &Path, local_id: &str, count: usize, hold_file: &Path) -> BenchResult<()> {
    let client = tlspool_client::Client::connect(Some(socket)).await?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let client_request = StartTlsRequest::client(local_id).build()?;
    let server_request = StartTlsRequest::server(local_id).build()?;
    let mut open_sessions = Vec::with_capacity(2 * count);
    let start = Instant::now();
    for i in 0..count {
        if start.elapsed() > Duration::from_secs(240) {
            return Err(format!("only {i} of {count} session pairs within 240 s").into());
        }
        let outgoing = TcpStream::connect(addr)?;
        let (incoming, _) = listener.accept()?;
        let (a, b) = tokio::join!(
            client.starttls(outgoing, &client_request),
            client.starttls(incoming, &server_request)
        );
        open_sessions.push(a?.plaintext);
        open_sessions.push(b?.plaintext);
    }
    println!(
        "established={count} seconds={:.1}",
        start.elapsed().as_secs_f64()
    );
    std::io::stdout().flush()?;
    let hold_start = Instant::now();
    while hold_file.exists() && hold_start.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(open_sessions);
    Ok(())
}

/// Echoes every accepted connection on its own thread until `seconds` pass.
fn echo_server(addr: &str, seconds: u64) -> BenchResult<()> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        match listener.accept() {
            Ok((mut tcp, _)) => {
                tcp.set_nonblocking(false)?;
                tcp.set_nodelay(true)?;
                std::thread::spawn(move || {
                    let mut buf = vec![0_u8; CHUNK];
                    while let Ok(n) = tcp.read(&mut buf) {
                        if n == 0 || tcp.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    match strs.as_slice() {
        ["bulk-pool", socket, addr, remote_id, bytes] => {
            let client = tlspool_client::blocking::Client::connect(Some(Path::new(socket)))?;
            let mut stream = Plain(pool_connect(&client, addr, remote_id)?);
            let total = bytes.parse()?;
            print_bulk(bulk(&mut stream, total)?, total);
        }
        ["bulk-tls", addr, name, cafile, priority, bytes] => {
            let anchors = load_anchors(cafile)?;
            let mut stream = DirectTls::connect(addr, name, &anchors, priority)?;
            let total = bytes.parse()?;
            print_bulk(bulk(&mut stream, total)?, total);
        }
        ["bulk-tcp", addr, bytes] => {
            let tcp = tcp_connect(addr)?;
            let total = bytes.parse()?;
            print_bulk(bulk(&mut Plain(tcp), total)?, total);
        }
        ["latency-pool", socket, addr, remote_id, count] => {
            let client = tlspool_client::blocking::Client::connect(Some(Path::new(socket)))?;
            latency(count.parse()?, || {
                Ok(Box::new(Plain(pool_connect(&client, addr, remote_id)?)))
            })?;
        }
        ["latency-tls", addr, name, cafile, priority, count] => {
            let anchors = load_anchors(cafile)?;
            latency(count.parse()?, || {
                Ok(Box::new(DirectTls::connect(
                    addr, name, &anchors, priority,
                )?))
            })?;
        }
        ["idle", socket, local_id, count, hold_file] => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(idle(
                Path::new(socket),
                local_id,
                count.parse()?,
                Path::new(hold_file),
            ))?;
        }
        ["echo-server", addr, seconds] => echo_server(addr, seconds.parse()?)?,
        ["dtls-pool", socket, addr, remote_id, size, count] => {
            let client = tlspool_client::blocking::Client::connect(Some(Path::new(socket)))?;
            let udp = UdpSocket::bind("127.0.0.1:0")?;
            udp.connect(addr)?;
            let request = StartTlsRequest::client(*remote_id).dtls().build()?;
            let mut plaintext = client.starttls(udp, &request)?.plaintext;
            plaintext.set_read_timeout(Some(IO_TIMEOUT))?;
            plaintext.set_write_timeout(Some(IO_TIMEOUT))?;
            datagram_echo(&mut plaintext, size.parse()?, count.parse()?)?;
        }
        ["dtls-direct", addr, name, cafile, priority, size, count] => {
            let anchors = load_anchors(cafile)?;
            let mut dtls = DirectDtls::connect(addr, name, &anchors, priority)?;
            datagram_echo(&mut dtls, size.parse()?, count.parse()?)?;
        }
        _ => return Err("usage: see the module documentation of examples/bench.rs".into()),
    }
    Ok(())
}
