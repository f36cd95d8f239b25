//! The key rules every door (CLI, management API, portal) applies: who may put what
//! on a key. The lifecycle itself still lives with each door (issue 14 moves it
//! here as one `KeyService`).

pub mod policy;
