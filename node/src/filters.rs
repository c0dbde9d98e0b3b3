//! Route filters: the checks that run after routing and before the route's action
//! (authentication, access control, rate limits, request inspection). Each filter either lets
//! the request continue (possibly annotating the context) or answers it. [`FilterRuntime`] is
//! the filters' state that outlives config generations (caches, key sets).

pub mod auth;
pub mod security;

use std::sync::{Arc, Weak};

use http::{Request, Response};
use meshgate_actors::NodeView;

use self::auth::{AuthRuntime, AuthStats};
use crate::proxy::body::ProxyBody;
use crate::server::context::RequestContext;

/// State the filters keep across reloads, one per node.
#[derive(Debug)]
pub struct FilterRuntime {
    pub auth: AuthRuntime,
    /// What the edge security checks refused or detected.
    pub security: Arc<security::SecurityStats>,
}

/// Why the filters' state could not be created.
#[derive(Debug, thiserror::Error)]
#[error("filters: {0}")]
pub struct FilterStartError(#[from] auth::digest::RandomUnavailable);

impl FilterRuntime {
    pub fn new() -> Result<Arc<Self>, FilterStartError> {
        Ok(Arc::new(Self {
            auth: AuthRuntime::new()?,
            security: Arc::default(),
        }))
    }

    /// Prepare the current config generation now, and each new one as it is applied, so that
    /// background work (JWKS fetches) starts with the config rather than with its first request.
    pub fn follow(self: &Arc<Self>, view: &Arc<NodeView>) {
        self.auth.prepare(&view.load().config.auth);
        let mut reloads = view.reloads();
        let filters: Weak<Self> = Arc::downgrade(self);
        let view: Weak<NodeView> = Arc::downgrade(view);
        tokio::spawn(async move {
            while reloads.changed().await.is_ok() {
                let (Some(filters), Some(view)) = (filters.upgrade(), view.upgrade()) else {
                    return;
                };
                filters.auth.prepare(&view.load().config.auth);
            }
        });
    }

    pub fn auth_stats(&self) -> AuthStats {
        self.auth.stats()
    }
}

/// Run the route's filters in order. `Err` is the response that ends the request.
pub async fn before_action<B>(
    filters: &FilterRuntime,
    ctx: &mut RequestContext,
    req: &mut Request<B>,
) -> Result<(), Response<ProxyBody>> {
    auth::authenticate(&filters.auth, ctx, req).await
}
