//! Loopback platform stub and shared test helpers (in progress).
