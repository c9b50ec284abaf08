//! Connects to a TLS server through the TLS Pool, sends one line and prints what comes back.
//!
//! Usage: `cargo run -p tlspool-client --example starttls HOST:PORT REMOTE_ID [SOCKET]`, for
//! example against `gnutls-serv --echo` with the certificate of `REMOTE_ID`. Without `SOCKET`
//! the daemon's socket is located through `TLSPOOL_CONFIG_FILE` or `/etc/tlspool.conf`.

use std::path::PathBuf;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use tlspool_client::{Client, StartTlsRequest};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(server), Some(remote_id)) = (args.next(), args.next()) else {
        return Err("usage: starttls HOST:PORT REMOTE_ID [SOCKET]".into());
    };
    let socket = args.next().map(PathBuf::from);

    let client = Client::connect(socket.as_deref()).await?;
    let request = StartTlsRequest::client(remote_id).build()?;
    let tcp = std::net::TcpStream::connect(&server)?;
    let mut connection = client.starttls(tcp, &request).await?;
    println!("local-id: {}", connection.local_id);
    println!("remote-id: {}", connection.remote_id);

    connection
        .plaintext
        .write_all(b"hello through the TLS Pool\n")
        .await?;
    connection.plaintext.shutdown().await?;
    let mut reply = Vec::new();
    connection.plaintext.read_to_end(&mut reply).await?;
    print!("{}", String::from_utf8_lossy(&reply));
    Ok(())
}
