//! Users: the model, its queries, credentials and password hashing.

pub mod breached;
pub mod common_passwords;
pub mod credentials;
pub mod fold;
pub mod hasher;
pub mod model;
pub mod queries;

pub use credentials::{NewPassword, PasswordError, Username, UsernameError};
pub use hasher::{HashError, PasswordHasher};
pub use model::{NewUser, Principal, User, UserId};
