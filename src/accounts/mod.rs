//! Accounts and transactions (SPEC §3, Rinha de Backend 2024): credits and debits that can
//! never take a balance below `-limite`, the extrato with the latest ten, and the
//! `/transactions` views. A request is parsed into [`model`] types, applied by [`store`] in one
//! PostgreSQL statement, and answered as JSON written straight into a buffer.
pub mod model;
mod routes;
pub mod store;

pub use model::AccountsError;
pub use routes::{configure, Api};
pub use store::RESET_SQL;
