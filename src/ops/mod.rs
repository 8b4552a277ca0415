//! Operations routes every replica serves: `/`, `/ping`, `/health`, and the replica's liveness
//! switch that `/fall` and `/revive` flip and long-polls can watch.
mod model;
mod routes;

pub use model::Liveness;
pub use routes::{configure, OpsBodies};
