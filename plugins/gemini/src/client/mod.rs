//! The client side: a Gemini-speaking client served by any channel. Sluice
//! has no inbound Gemini endpoint yet; these complete the translator for it.
//! (The streaming direction is in `stream::from_canonical`.)

pub mod request;
pub mod response;
