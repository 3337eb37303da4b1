//! Event sources other than the HTTP front-end. Each one turns what it receives
//! into events through the same validation as HTTP (`http::validate::prepare`)
//! and appends them to the same [`crate::log::Broker`]; after that nothing
//! knows where an event came from but its `source` name.

pub mod mqtt;
