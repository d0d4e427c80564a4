//! Views: pure functions from state to lines and widgets. Nothing here touches the socket
//! or the disk; expensive work (markdown, highlighting, wrapping) happens when an item's
//! lines are built, and those are cached per item revision and width.

pub mod conversation;
pub mod diff;
pub mod items;
pub mod layout;
pub mod permission;
pub mod review;
pub mod screen;
pub mod tool;
