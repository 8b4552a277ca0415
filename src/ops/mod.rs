//! Operations every replica serves: `/`, `/ping`, `/health`, the liveness switch `/fall` and
//! `/revive` flip (a watch channel that the fallen-replica gate reads and long-polls can wait
//! on), `/metrics`, and the OpenAPI document with Swagger UI. [`observe`] is the middleware
//! every route wears (metrics, request log, fallen gate); [`metrics`] is the API other domains
//! report through.
pub mod metrics;
mod model;
pub mod observe;
pub mod openapi;
mod routes;

pub use model::{Liveness, OpsError};
pub use observe::{Gate, Observe};
pub use routes::{Api, OpsBodies};

use ntex::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
    openapi::configure(cfg);
}
