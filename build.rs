//! Rebuild when a migration is added: `sqlx::migrate!` embeds the
//! `migrations/` directory at compile time, and without this a new file
//! alone would not trigger a rebuild (a binary without the migration).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
