//! Route filters: the checks that run after routing and before the route's action
//! (authentication, access control, rate limits, request inspection). Each filter either lets
//! the request continue (possibly annotating the context) or answers it.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::proxy::body::ProxyBody;
use crate::server::context::RequestContext;

/// Run the route's filters in order. `Err` is the response that ends the request.
pub async fn before_action(
    _ctx: &mut RequestContext,
    _req: &mut Request<Incoming>,
) -> Result<(), Response<ProxyBody>> {
    Ok(())
}
