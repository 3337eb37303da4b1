//! End-to-end support code (fault proxy, process harness).
