//! Server-side sessions: the Diesel `SessionStore`, its cache and the events
//! that keep every instance's cache honest, the session queries, remember-me.

pub mod cache;
pub mod current;
pub mod events;
pub mod fence;
pub mod queries;
pub mod remember;
pub mod store;

pub use store::DbSessionStore;
