//! Route filters: the checks that run after routing and before the route's action
//! (authentication, access control, rate limits, request inspection). Each filter either lets
//! the request continue (possibly annotating the context) or answers it. [`FilterRuntime`] is
//! the filters' state that outlives config generations (caches, key sets).

pub mod auth;
pub mod rate_limit;
pub mod security;

use std::sync::{Arc, Weak};

use http::{Request, Response};
use meshgate_actors::NodeView;

use self::auth::{AuthRuntime, AuthStats};
use self::rate_limit::RateLimitRuntime;
use crate::proxy::body::ProxyBody;
use crate::server::context::RequestContext;
use crate::telemetry::metrics::rate_limit_store::RateLimitStoreMetrics;

/// State the filters keep across reloads, one per node.
#[derive(Debug)]
pub struct FilterRuntime {
    pub auth: AuthRuntime,
    pub rate_limit: RateLimitRuntime,
    /// What the edge security checks refused or detected.
    pub security: Arc<security::SecurityStats>,
}

/// Why the filters' state could not be created.
#[derive(Debug, thiserror::Error)]
#[error("filters: {0}")]
pub struct FilterStartError(#[from] auth::digest::RandomUnavailable);

impl FilterRuntime {
    pub fn new(
        rate_limit_metrics: Arc<RateLimitStoreMetrics>,
    ) -> Result<Arc<Self>, FilterStartError> {
        Ok(Arc::new(Self {
            auth: AuthRuntime::new()?,
            rate_limit: RateLimitRuntime::new(rate_limit_metrics),
            security: Arc::default(),
        }))
    }

    /// Prepare the current config generation now, and each new one as it is applied, so that
    /// background work (JWKS fetches) starts with the config rather than with its first request.
    pub fn follow(self: &Arc<Self>, view: &Arc<NodeView>) {
        self.auth.prepare(&view.load().config.auth);
        self.rate_limit.prepare(&view.load().config.rate_limiting);
        let mut reloads = view.reloads();
        let filters: Weak<Self> = Arc::downgrade(self);
        let view: Weak<NodeView> = Arc::downgrade(view);
        tokio::spawn(async move {
            while reloads.changed().await.is_ok() {
                let (Some(filters), Some(view)) = (filters.upgrade(), view.upgrade()) else {
                    return;
                };
                filters.auth.prepare(&view.load().config.auth);
                filters
                    .rate_limit
                    .prepare(&view.load().config.rate_limiting);
            }
        });
    }

    pub fn auth_stats(&self) -> AuthStats {
        self.auth.stats()
    }
}

/// Run the route's filters in order. `Err` is the response that ends the request.
/// Rate limits run after authentication, so that they can key on the consumer.
///
/// A route without auth or rate limits costs no more than stripping identity headers: the
/// filters' futures (which may wait on an IdP or Redis, and so are large) are boxed and only
/// built when the route has them, so the common request future stays small.
pub async fn before_action<B>(
    filters: &FilterRuntime,
    ctx: &mut RequestContext,
    req: &mut Request<B>,
) -> Result<(), Response<ProxyBody>> {
    let Some(route) = &ctx.route else {
        return Ok(());
    };
    let (authenticates, limited) = (route.auth.policy.is_some(), route.rate_limit.is_limited());
    if authenticates {
        let authenticated = Box::pin(auth::authenticate(&filters.auth, ctx, req)).await;
        if let Err(response) = &authenticated
            && matches!(response.status().as_u16(), 401 | 403)
            && let Some(metrics) = ctx.observe.route_metrics()
        {
            metrics.auth_rejected(req.method());
        }
        authenticated?;
    } else {
        auth::strip_identity_headers(route, req);
    }
    if limited {
        Box::pin(rate_limit::limit(&filters.rate_limit, ctx, req)).await?;
    }
    Ok(())
}
