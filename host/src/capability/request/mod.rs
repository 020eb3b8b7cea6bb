//! `skiff:request/context`: where the request an instance serves came from (the internal
//! listener or another service of this host, the admin API, the client's address), typed.
//!
//! The host decides it from how a request arrived, never from what the client sent: the router
//! and the admin API attach a [`RequestOrigin`] to the request as an `http` extension (which
//! nothing on the wire can set), and the service puts it in the instance's store before the
//! component runs. Every instance links it, like `wasi:http`: it is part of serving a request,
//! not a capability a service is configured with.

use std::net::IpAddr;
use wasmtime::component::{HasData, Linker};

use super::CapabilityStore;

// The only place the request world is turned into Rust.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "skiff:request/request-aware",
    });
}

use bindings::skiff::request::context;

/// Where a request came from, as the host established it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestOrigin {
    /// Arrived on the internal listener, or from another service of this host.
    pub internal: bool,
    /// Sent by the admin API, behind the admin token.
    pub admin: bool,
    /// The client's address as the host resolved it; none for requests the host makes itself.
    pub client_address: Option<IpAddr>,
}

impl RequestOrigin {
    /// A request from another service: internal, never an admin's, whatever its caller was.
    pub const FROM_ANOTHER_SERVICE: Self = Self { internal: true, admin: false, client_address: None };
    /// A request the admin API sends on an operator's behalf.
    pub const FROM_THE_ADMIN_API: Self = Self { internal: false, admin: true, client_address: None };

    /// The origin attached to `request`, or a public one without an address.
    pub fn of<B>(request: &http::Request<B>) -> Self {
        request.extensions().get::<Self>().copied().unwrap_or_default()
    }

    /// Attaches `self` to `request`, replacing any origin it had.
    pub fn attach<B>(self, request: &mut http::Request<B>) {
        request.extensions_mut().insert(self);
    }
}

struct HasOrigin;

impl HasData for HasOrigin {
    type Data<'a> = RequestOrigin;
}

impl context::Host for RequestOrigin {
    fn request_origin(&mut self) -> context::Origin {
        context::Origin {
            internal: self.internal,
            admin: self.admin,
            client_address: self.client_address.map(|address| address.to_string()),
        }
    }
}

/// Links `skiff:request/context`; a call answers with the origin of the instance's request.
pub fn add_to_linker<T: CapabilityStore>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    context::add_to_linker::<T, HasOrigin>(linker, |store| store.request_origin())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_an_origin_is_public_and_an_attached_one_replaces_the_old() {
        let mut request = http::Request::new(());
        assert_eq!(RequestOrigin::of(&request), RequestOrigin::default());
        RequestOrigin::FROM_THE_ADMIN_API.attach(&mut request);
        RequestOrigin::FROM_ANOTHER_SERVICE.attach(&mut request);
        let origin = RequestOrigin::of(&request);
        assert!(origin.internal && !origin.admin);
        let mut wire = context::Host::request_origin(&mut RequestOrigin {
            client_address: Some("203.0.113.7".parse().unwrap()),
            ..RequestOrigin::default()
        });
        assert_eq!(wire.client_address.take().as_deref(), Some("203.0.113.7"));
    }
}
