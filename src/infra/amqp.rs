//! RabbitMQ: connections on the current tokio runtime.
use lapin::{Connection, ConnectionProperties};

/// Opens a connection named after this process so the broker's UI says who holds it.
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(name.to_owned().into());
    Connection::connect_with_runtime(url, props, async_rs::Runtime::tokio_current()).await
}
