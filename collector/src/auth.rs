//! Who is calling: the one place where RPCs are authorised.
//!
//! Each service is wrapped in an interceptor that reads the identity from
//! the verified client certificate (see [`canhgac_proto::identity`]) and
//! either refuses the call or attaches the caller to the request:
//!
//! * `Enrollment`: anyone who completed the TLS handshake (the token is the
//!   credential);
//! * `Telemetry`: agent certificates only, not revoked;
//! * `Operator`: operator certificates only.
//!
//! Revocation is checked at the handshake (new connections) and here (new
//! calls on a connection that was open before the revocation); open
//! telemetry streams are closed by [`crate::registry`].

use std::sync::Arc;

use canhgac_proto::identity::Identity;
use tonic::{Request, Status};

use crate::tls::Revoked;

/// The agent behind a telemetry call.
#[derive(Debug, Clone)]
pub struct AgentCaller {
    pub agent_id: String,
}

/// The operator behind an operator-API call.
#[derive(Debug, Clone)]
pub struct OperatorCaller {
    pub name: String,
}

/// Identity from the peer certificate, if the client presented one.
pub fn identity<T>(req: &Request<T>) -> Option<Identity> {
    let certs = req.peer_certs()?;
    Identity::from_cert_der(certs.first()?).ok()
}

#[derive(Clone)]
pub struct Auth {
    revoked: Arc<Revoked>,
}

impl Auth {
    pub fn new(revoked: Arc<Revoked>) -> Auth {
        Auth { revoked }
    }

    fn check(&self, req: &Request<()>) -> Result<Identity, Status> {
        let Some(id) = identity(req) else {
            return Err(Status::unauthenticated("a client certificate issued by this collector is required"));
        };
        if self.revoked.contains(&id) {
            return Err(Status::permission_denied(format!("{id} is revoked")));
        }
        Ok(id)
    }

    /// Interceptor for the telemetry service.
    pub fn agents(&self) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let auth = self.clone();
        move |mut req: Request<()>| match auth.check(&req)? {
            Identity::Agent(agent_id) => {
                req.extensions_mut().insert(AgentCaller { agent_id });
                Ok(req)
            }
            other => Err(Status::permission_denied(format!("{other} may not stream telemetry"))),
        }
    }

    /// Interceptor for the operator service.
    pub fn operators(&self) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let auth = self.clone();
        move |mut req: Request<()>| match auth.check(&req)? {
            Identity::Operator(name) => {
                req.extensions_mut().insert(OperatorCaller { name });
                Ok(req)
            }
            other => Err(Status::permission_denied(format!("{other} may not use the operator API"))),
        }
    }
}

/// The caller attached by the interceptor.
pub fn agent<T>(req: &Request<T>) -> Result<AgentCaller, Status> {
    req.extensions().get::<AgentCaller>().cloned().ok_or_else(|| Status::unauthenticated("no agent identity"))
}

pub fn operator<T>(req: &Request<T>) -> Result<OperatorCaller, Status> {
    req.extensions()
        .get::<OperatorCaller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no operator identity"))
}
