//! The rules of the users service, free of WIT and HTTP so they are unit-tested natively.

mod email;
mod fields;
mod page;
pub mod password;
mod person_name;
mod phone;
pub mod time;
mod user;
pub mod uuid;

pub use email::Email;
pub use fields::{FieldError, JsonObject};
pub use page::{ListQuery, Page};
pub use password::Password;
pub use person_name::PersonName;
pub use phone::Phone;
pub use user::{NewUser, User, UserChanges};
