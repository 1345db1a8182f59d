//! Server-side sessions: the Diesel `SessionStore` and the session queries.

pub mod cache;
pub mod events;
pub mod queries;
pub mod store;

pub use store::DbSessionStore;

/// Marks a response whose session cookie must persist (remember me): the edge
/// middleware gives that cookie a `Max-Age` of the remember-me lifetime.
#[derive(Debug, Clone, Copy)]
pub struct Remembered;
