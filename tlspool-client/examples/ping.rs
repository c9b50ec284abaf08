//! Pings the TLS Pool daemon and prints its identity and facilities.
//!
//! Usage: `cargo run -p tlspool-client --example ping [SOCKET]`. Without `SOCKET` the socket
//! is located through `TLSPOOL_CONFIG_FILE` or `/etc/tlspool.conf`.

use std::path::PathBuf;

use tlspool_client::{Client, ClientError};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ClientError> {
    let socket = std::env::args_os().nth(1).map(PathBuf::from);
    let client = Client::connect(socket.as_deref()).await?;
    println!("connected to {}", client.socket_path().display());

    let reply = client.ping().await?;
    println!("producer: {}", reply.producer);
    println!("facilities: {:?}", reply.facilities);
    Ok(())
}
