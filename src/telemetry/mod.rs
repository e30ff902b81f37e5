//! What the process tells its operators besides logs: the metrics registry and its Prometheus
//! renderer (`metrics`). A leaf module: imports nothing of dirsync; every layer may report here.

pub mod metrics;
