//! The services: the rules of the product over the ports, free of any transport.

mod documents;
pub mod merge_patch;
mod reads;

pub use documents::{DocumentService, NewDocument, Replacement};
pub use reads::{ReadService, readable};
