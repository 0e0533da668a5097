//! Errors that callers branch on. Everything else travels as `anyhow::Error` with context
//! naming the file or flag (see DESIGN.md, "Errors"); `main` maps these kinds to exit codes.

use thiserror::Error;

/// A failure a caller can act on: bad input (exit 2), a feature that is not compiled in (exit 2),
/// or a combination this build cannot run (recorded as skipped in a sweep).
#[derive(Debug, Error)]
pub enum LlmbenchError {
    /// The user gave something unusable: a flag value, a file, a prompt. The message says how to fix it.
    #[error("{0}")]
    InvalidInput(String),
    /// The user asked for a backend this binary was built without.
    #[error("{what} is not available in this build: rebuild with `cargo build --release --features {feature}`")]
    FeatureMissing { what: String, feature: &'static str },
    /// A valid request this model or strategy cannot serve.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl LlmbenchError {
    pub fn invalid(msg: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Self::InvalidInput(msg.into()))
    }
}

/// The first line of an error's message: candle appends a backtrace when RUST_BACKTRACE is set.
pub fn first_line<E: std::fmt::Display + ?Sized>(err: &E) -> String {
    err.to_string().lines().next().unwrap_or("").trim().to_string()
}

/// Exit code for an error chain: 2 when any cause is a usage or input error (an unsupported
/// combination included: it reaches here only when the user asked for it directly, a sweep
/// records it as skipped), 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    let is_input = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<LlmbenchError>(),
            Some(LlmbenchError::InvalidInput(_) | LlmbenchError::FeatureMissing { .. } | LlmbenchError::Unsupported(_))
        )
    });
    if is_input {
        2
    } else {
        1
    }
}

/// Shorthand for returning an input error with a formatted message.
#[macro_export]
macro_rules! bail_input {
    ($($arg:tt)*) => {
        return Err($crate::error::LlmbenchError::invalid(format!($($arg)*)))
    };
}
