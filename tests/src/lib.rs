//! Support for the end-to-end tests: locating binaries, fixtures and the test services.
