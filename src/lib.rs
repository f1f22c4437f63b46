//! regfs: a FUSE filesystem over a WSO2 Carbon registry stored in WSO2's own SQL schema.
//!
//! Layers, top to bottom: [`fuse`] (thin kernel adapter) → [`fs`] (inodes, handles, open files)
//! → [`registry`] (path operations) → [`mount_table`] → [`store`] (one per database).
//! [`config`] builds the mount table and stores; [`daemon`] runs a mount.

// Every unsafe block says why it is sound (the SQLite VFS on the durability path above all).
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod authz;
pub mod config;
#[doc(hidden)]
pub mod conformance;
pub mod content;
pub mod daemon;
pub mod dump;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod identity;
pub mod mount_opts;
pub mod mount_table;
pub mod path;
pub mod policy;
pub mod registry;
pub mod retry;
pub mod sql;
pub mod status;
pub mod store;
pub mod um;
pub mod watch;
pub mod wiring;
pub mod wso2conf;
pub mod xml;

pub use error::{Error, Result};
