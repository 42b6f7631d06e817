//! Names for what the table shows as numbers: remote addresses by reverse
//! DNS, ports by service name. Used by the views; the tracer knows nothing
//! of them.
pub mod dns;
pub mod hosts;
pub mod services;

pub use dns::Dns;
pub use services::Services;
