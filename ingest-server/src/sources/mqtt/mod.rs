//! The MQTT source: devices publish Segment events to a broker; the server
//! subscribes (persistent session, manual acks) and acknowledges a message only
//! once its events are durable in the log. See `docs/PROTOCOL.md` (MQTT).

pub mod config;
mod payload;
mod source;

pub use config::MqttConfig;
pub use source::{Deps, spawn};
