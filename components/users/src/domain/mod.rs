//! The rules of the users service, free of WIT and HTTP so they are unit-tested natively.

mod credentials;
mod email;
mod page;
pub mod password;
mod person_name;
mod phone;
mod signup;
mod user;

pub use credentials::Credentials;
pub use email::Email;
pub use page::ListQuery;
pub use password::Password;
pub use person_name::PersonName;
pub use phone::Phone;
pub use service_kit::json::JsonObject;
pub use service_kit::problem::FieldError;
pub use service_kit::{time, uuid};
pub use signup::{EmailChangeThrottle, SignupThrottle};
pub use user::{NewUser, User, UserChanges};
