//! Session streams: the [`SessionHub`] that wakes open streams when a
//! session's completion is committed, and the [`Feed`] that replays a
//! session's retained completions, then follows live ones.
pub mod activity;
mod feed;
mod hub;

pub use activity::{Activity, ActivityKind};
pub use feed::{Feed, FeedItem};
pub use hub::{ActivitySink, SessionHub, Wake};
