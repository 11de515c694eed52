//! The service as one caller reaches it.
//!
//! Every public operation is a method of [`Service`], which is
//! [`Machines`] bound to a [`Caller`] ([`Machines::as_caller`]). The
//! binding is a handle rather than a `&Caller` argument on each method for
//! two reasons:
//! - a front end binds once, where it learns who is calling (the API's
//!   auth middleware, each MCP request, the edge proxy's backends), and
//!   its calls stay as they were: the caller cannot be forgotten or mixed
//!   up call by call;
//! - the service's state is reachable from a `Service` only through
//!   [`Service::authorize`], the one check, whose fields are private to
//!   this module: an operation that skips the check does not compile.

use crate::error::{MachineError, Result};
use crate::{Inner, Machines};
use roost_lifecycle::{Caller, Right, Target};
use std::sync::Arc;

/// [`Machines`] acting for one caller. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
    caller: Caller,
}

impl Machines {
    /// The service acting for `caller`: every operation checks its rights.
    pub fn as_caller(&self, caller: &Caller) -> Service {
        Service {
            inner: Arc::clone(&self.inner),
            caller: caller.clone(),
        }
    }
}

impl Service {
    /// The one authorization of every operation, before it reads or
    /// changes anything: the caller must have `right` on `target`
    /// ([`Caller::may`]). Only then does the operation get the service.
    pub(crate) fn authorize(&self, right: Right, target: Target<'_>) -> Result<&Arc<Inner>> {
        self.caller.may(right, target).map_err(|refused| {
            tracing::info!(caller = %self.caller.who(), %right, %target, "call refused");
            MachineError::Forbidden(refused)
        })?;
        Ok(&self.inner)
    }
}
