//! heimdall-testkit
