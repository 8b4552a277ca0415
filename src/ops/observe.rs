//! The middleware every resource wears (added by `server::resource`): it knows its route
//! template statically, so each request is counted and logged under `/pessoas/{id}`, never
//! under the raw path, with no per-request lookup. ntex 3 discards the matched resource after
//! routing (no `match_pattern`), which is why the template travels with the resource instead.
//!
//! It is also the fallen-replica gate: while this replica is down (`/fall`) or stopping
//! (SIGTERM), a gated resource answers 503 with a static body *before* its handler runs —
//! nothing is read, written or published — which is what makes nginx's retry of a POST safe.
//! And it counts the requests being handled, which `serve` waits for on SIGTERM.
use std::rc::Rc;
use std::time::Instant;

use ntex::http::StatusCode;
use ntex::service::cfg::SharedCfg;
use ntex::service::{Middleware, Service, ServiceCtx};
use ntex::web::{WebRequest, WebResponse};

use super::metrics;
use crate::error::ApiError;
use crate::server::AppState;

/// What a fallen replica answers on every gated route (SPEC §1).
pub const FALLEN: ApiError = ApiError::from_static(
    StatusCode::SERVICE_UNAVAILABLE,
    r#"{"error":"system not available - not alive"}"#,
);

/// What a gated route answers once SIGTERM arrived: nginx retries it on another replica while
/// this one lets the requests already inside finish.
pub const STOPPING: ApiError = ApiError::from_static(
    StatusCode::SERVICE_UNAVAILABLE,
    r#"{"error":"system not available - shutting down"}"#,
);

/// Whether a resource still answers while the replica is fallen (or stopping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Answers 503 while fallen (every domain route, unknown paths).
    WhenFallen,
    /// Always answers: `/health`, `/fall`, `/revive`, `/metrics`.
    Never,
}

/// Middleware factory: one per resource, carrying its template.
#[derive(Clone, Debug)]
pub struct Observe(Rc<Route>);

#[derive(Debug)]
struct Route {
    template: &'static str,
    gate: Gate,
}

impl Observe {
    pub fn new(template: &'static str, gate: Gate) -> Self {
        Self(Rc::new(Route { template, gate }))
    }
}

impl<S> Middleware<S, SharedCfg> for Observe {
    type Service = Observed<S>;

    fn create(&self, service: S, _: SharedCfg) -> Self::Service {
        Observed {
            service,
            route: self.0.clone(),
        }
    }
}

pub struct Observed<S> {
    service: S,
    route: Rc<Route>,
}

impl<S, E> Service<WebRequest<E>> for Observed<S>
where
    S: Service<WebRequest<E>, Response = WebResponse>,
{
    type Response = WebResponse;
    type Error = S::Error;

    ntex::forward_poll!(service);
    ntex::forward_ready!(service);
    ntex::forward_shutdown!(service);

    async fn call(
        &self,
        req: WebRequest<E>,
        ctx: ServiceCtx<'_, Self>,
    ) -> Result<Self::Response, Self::Error> {
        let start = Instant::now();
        let method = req.method().clone();
        let (_in_flight, refusal) = match req.app_state::<AppState>() {
            Some(state) => {
                let refusal = match self.route.gate {
                    Gate::Never => None,
                    Gate::WhenFallen if !state.liveness.is_alive() => Some(FALLEN),
                    Gate::WhenFallen if state.shutdown.is_stopping() => Some(STOPPING),
                    Gate::WhenFallen => None,
                };
                (Some(state.shutdown.request()), refusal)
            }
            None => (None, None),
        };
        let result = match refusal {
            Some(refusal) => Ok(WebResponse::new(
                refusal.into_response(),
                req.into_parts().0,
            )),
            None => ctx.call(&self.service, req).await,
        };
        let elapsed = start.elapsed();
        // An Err here is rendered into a response by ntex after us; handlers convert their own
        // errors, so this is an extractor or framework failure: count it as a 500.
        let status = result.as_ref().map_or(500, |res| res.status().as_u16());
        metrics::observe_request(self.route.template, &method, status, elapsed);
        tracing::debug!(
            method = %method,
            route = self.route.template,
            status,
            micros = elapsed.as_micros() as u64,
            "request"
        );
        result
    }
}
