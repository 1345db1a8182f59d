//! Server-side sessions: the Diesel `SessionStore` and the session queries.

pub mod queries;
pub mod store;

pub use store::DbSessionStore;
