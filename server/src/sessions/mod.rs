//! Session streams: the [`SessionHub`] that wakes open streams when a
//! session's completion is committed, and the [`Feed`] that replays a
//! session's retained completions, then follows live ones; [`Events`]
//! weaves running tasks' progress into a feed for `SessionEvents`, spaced
//! by a [`coalesce::Coalescer`] as the dashboard's are.
pub mod activity;
pub mod coalesce;
mod events;
mod feed;
mod hub;
#[cfg(test)]
pub(crate) mod testing;
mod window;

pub use activity::{Activity, ActivityKind};
pub use events::{Event, EventItem, Events, ProgressSource};
pub use feed::{Feed, FeedItem};
pub use hub::{ActivitySink, SessionHub, Wake};
pub use window::ByteWindow;
