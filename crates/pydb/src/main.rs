//! The `pydb` command-line tool.

use pydb::storage::{MemoryStorage, StorageEngine};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = MemoryStorage::new();
    db.set(b"hello", b"world")?;
    println!("SET: hello = world");
    db.set(b"hello", b"all")?;
    println!("SET: hello = all");
    let value = db.get(b"hello")?.unwrap_or_default();
    println!("GET: hello = {}", String::from_utf8_lossy(&value));
    println!("{:?}", db.stats());
    Ok(())
}
