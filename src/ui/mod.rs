//! What a person sees in a browser.

pub mod landing;
pub mod status;
