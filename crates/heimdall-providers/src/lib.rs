//! heimdall-providers
