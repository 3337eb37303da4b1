//! Answer bodies.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// A 200's body: how many events were accepted, and which were refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// Events accepted (durable on the server when the answer is sent).
    #[serde(default)]
    pub accepted: usize,
    /// Events refused, by their index in the request's `batch`.
    #[serde(default)]
    pub rejected: Vec<Rejection>,
}

/// An event refused by validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Index of the event in the batch (0 for single-event endpoints).
    pub index: usize,
    /// What is wrong and what to do.
    #[serde(default = "no_reason")]
    pub reason: String,
}

fn no_reason() -> String {
    "no reason given".into()
}

/// Every other answer's body: a machine word and a sentence saying what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The machine word.
    pub code: ErrorCode,
    /// What is wrong and what to do.
    pub error: String,
}

impl ErrorBody {
    /// An answer body for `code`.
    pub fn new(code: ErrorCode, error: impl Into<String>) -> Self {
        Self {
            code,
            error: error.into(),
        }
    }
}
