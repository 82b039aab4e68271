//! A plain WASI command: valid WebAssembly, a valid component, but no Rapport world, and it
//! imports the filesystem. The host must refuse it with a message that says so.

fn main() {
    let _ = std::fs::read_to_string("/etc/passwd");
    println!("not a plugin");
}
