//! Incident ids: the one place where an internal error's detail (a database
//! driver's message, a connection error naming a host) is separated from
//! what a caller sees (docs/design.md §6 "Errors"; security review finding 20).
//!
//! The detail goes to the log at ERROR with a fresh id; the caller gets a
//! fixed text and the id, so a REST client, a tenant reading a Job's events
//! or a webhook deny reason learns nothing about the database, while an
//! operator can still find the cause by grepping the log for the id.

use std::fmt::Display;

/// Log `detail` under a new incident id and return the text a caller may
/// see: `"{what} (incident <id>)"`. `what` must be a fixed text (it is shown).
pub fn record(what: &str, detail: &dyn Display) -> String {
    let incident = uuid::Uuid::new_v4();
    tracing::error!(%incident, error = %detail, "{what}");
    format!("{what} (incident {incident})")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_caller_gets_the_id_and_the_log_gets_the_detail() {
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let shown = tracing::subscriber::with_default(subscriber, || {
            record(
                "database error",
                &"relation \"secrets\" does not exist at db.internal:5432",
            )
        });
        assert!(
            !shown.contains("db.internal") && !shown.contains("relation"),
            "{shown}"
        );
        let id = shown
            .strip_prefix("database error (incident ")
            .and_then(|r| r.strip_suffix(')'))
            .expect("fixed text and id");
        let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(
            log.contains(id) && log.contains("db.internal:5432"),
            "{log}"
        );
    }
}
