//! What the live path sends, shared by both deployments' notifiers (the local `/ws`
//! server's and the API Gateway one the Lambda functions use):
//!
//! - [`frames`]: the server's frames of the WebSocket contract, serialized once;
//! - [`delivery`]: who gets which frame of a change or an analysis, and whose access
//!   ends with it.

pub mod delivery;
pub mod frames;

pub use delivery::{ChangeDeliveries, Delivery};
pub use frames::Frame;
