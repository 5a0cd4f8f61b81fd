//! Session streams: the [`SessionHub`] that wakes open streams when a
//! session's completion is committed, and the [`Feed`] that replays a
//! session's retained completions, then follows live ones.
mod feed;
mod hub;

pub use feed::{Feed, FeedItem};
pub use hub::{SessionHub, Wake};
