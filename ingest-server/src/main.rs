fn main() {
    println!("ingest-server: not yet implemented");
}
