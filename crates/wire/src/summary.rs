//! One-line human summaries of frames, like tcpdump's, for capture and trace.

/// A one-line description of `frame`.
pub fn summarize(frame: &[u8]) -> String {
    format!("{} bytes", frame.len())
}
