//! Log capture for the no-plaintext checks.

use std::sync::Arc;

/// A `tracing` writer that keeps everything for later inspection.
#[derive(Clone, Default)]
pub struct CapturedLogs(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl CapturedLogs {
    /// A new capture behind this process's global subscriber, at TRACE
    /// level with no colours, so that everything any thread logs from now
    /// on lands in it. Panics when a global subscriber is already set: one
    /// test per binary may own it.
    pub fn install_global_trace() -> Self {
        let logs = Self::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only subscriber in this test binary");
        logs
    }
}
