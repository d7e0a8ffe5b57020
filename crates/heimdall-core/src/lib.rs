//! heimdall-core
