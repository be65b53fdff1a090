//! Logging through the host, which tags each line with the plugin's name and
//! version. In native unit tests the lines go to standard error.

pub use crate::bindings::host::LogLevel as Level;

pub fn log(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    crate::bindings::host::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    eprintln!("[{level:?}] {message}");
}

pub fn debug(message: &str) {
    log(Level::Debug, message);
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn warn(message: &str) {
    log(Level::Warn, message);
}

pub fn error(message: &str) {
    log(Level::Error, message);
}
