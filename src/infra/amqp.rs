//! RabbitMQ: connections on the current tokio runtime.
use std::io;
use std::time::Duration;

use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};

/// How long the reachability probe waits for the broker's port to accept.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Opens a connection named after this process so the broker's UI says who holds it.
///
/// A plain TCP connect to the broker's port goes first, and lapin is only asked when that
/// succeeds. lapin 4.12 keeps about 10 KB of every connection attempt that fails (the pending
/// handshake reply holds the connection, which holds its channels: a cycle nothing frees).
/// During a RabbitMQ outage every POST /pessoas tries to reconnect, and a replica grew from
/// 36 to 172 MB in 8 s of refused attempts (7 000 POSTs) — an OOM kill at compose's 60 MB.
/// Refused here, the attempt costs one failed `connect(2)` and nothing stays behind.
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    probe(url).await?;
    let props = ConnectionProperties::default().with_connection_name(name.to_owned().into());
    Connection::connect_with_runtime(url, props, async_rs::Runtime::tokio_current()).await
}

/// Whether the broker's host and port accept a TCP connection (closed again at once). A URL
/// that does not parse is let through: lapin reports it in its own words.
async fn probe(url: &str) -> io::Result<()> {
    let Ok(uri) = url.parse::<AMQPUri>() else {
        return Ok(());
    };
    let addr = (uri.authority.host.as_str(), uri.authority.port);
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "RabbitMQ's port did not accept a connection in time",
        )),
    }
}
