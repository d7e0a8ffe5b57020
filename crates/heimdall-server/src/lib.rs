//! heimdall-server
