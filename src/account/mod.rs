//! The account: operations on it (shared by the pages and the command line),
//! and the signed-in user's pages and JSON routes.

pub mod confirm;
pub mod device_name;
pub mod factors;
pub mod ops;
pub mod page;
pub mod passkeys;
pub mod routes;
pub mod tokens;
pub mod welcome;

pub use routes::routes;
