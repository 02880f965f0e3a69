//! The incremental decoder of the copilot's streamed answer.
//!
//! The body is a sequence of JSON objects `{"action": string|null, "output": string|null}` in one
//! of three framings, detected from its first non-whitespace byte:
//!
//! - concatenated: `{...}{...}` with no delimiter (whitespace between objects is allowed, so
//!   newline-delimited JSON is the same framing);
//! - server-sent events: `data: {...}` lines; `event:`, `id:`, `retry:` and `:` comment lines are
//!   ignored, `data: [DONE]` ends the answer, lines end with `\n`, `\r\n` or `\r`.
//!
//! Bytes arrive in network chunks split or merged anywhere: inside a string, inside an escape
//! sequence, inside a multi-byte UTF-8 character. The decoder never splits on `}`: a small state
//! machine tracks strings, escapes and nesting depth to find where an object ends, and only then
//! is the complete object parsed with `serde_json`. Because every byte goes through the same state
//! machine one at a time, the result does not depend on where the input was split.
//!
//! Memory is bounded: an object (or, for server-sent events, a line) longer than the configured
//! limit is an error, [`DecodeError::TooLarge`], not a bigger buffer. The decoder never panics.
//! After its first error it stops: later input is ignored.

use jiva_core::{CopilotChunk, CopilotError};
use serde::Deserialize;

/// The default largest object the decoder accepts, in bytes (1 MiB).
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 1024 * 1024;

/// Room an SSE line may take beyond the object it carries (`data: ` and the line ending).
const SSE_LINE_SLACK: usize = 64;

/// Why the decoder stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a stream of JSON objects of the expected shape. The text names what was
    /// wrong and where, never the content of the answer.
    #[error("undecodable copilot answer: {0}")]
    Invalid(String),
    /// One object (or one server-sent-events line) exceeded the limit, in bytes.
    #[error("a copilot answer object exceeded {0} bytes")]
    TooLarge(usize),
    /// The body ended inside an object.
    #[error("the copilot answer ended inside an object")]
    Truncated,
}

impl From<DecodeError> for CopilotError {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::Invalid(reason) => CopilotError::Decode(reason),
            DecodeError::TooLarge(limit) => CopilotError::TooLarge(limit),
            DecodeError::Truncated => CopilotError::Truncated,
        }
    }
}

/// What one call of [`ChunkDecoder::push`] or [`ChunkDecoder::finish`] produced: the chunks
/// decoded, in order; an error, if there is one, is the last item and nothing follows it.
pub type Decoded = Vec<Result<CopilotChunk, DecodeError>>;

/// One object as it is on the wire. Unknown fields are ignored, a missing field is `None`.
#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    output: Option<String>,
}

/// Finds where JSON objects written back to back begin and end, and parses each complete one.
#[derive(Debug)]
struct ObjectScanner {
    /// The bytes of the object being read, from its `{`.
    buf: Vec<u8>,
    /// Nesting depth; 0 between objects.
    depth: usize,
    in_string: bool,
    escaped: bool,
    max: usize,
    /// Objects completed so far, for error messages.
    objects: usize,
}

impl ObjectScanner {
    fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            depth: 0,
            in_string: false,
            escaped: false,
            max,
            objects: 0,
        }
    }

    /// Between two objects (nothing of an object is pending).
    fn at_boundary(&self) -> bool {
        self.depth == 0
    }

    /// Takes one byte. `Ok(Some(..))` when it completed an object.
    fn byte(&mut self, b: u8) -> Result<Option<CopilotChunk>, DecodeError> {
        if self.depth == 0 {
            return match b {
                b' ' | b'\t' | b'\n' | b'\r' => Ok(None),
                b'{' => {
                    self.depth = 1;
                    self.buf.clear();
                    self.append(b)?;
                    Ok(None)
                }
                _ => Err(DecodeError::Invalid(format!(
                    "expected '{{' to start object {}, found {}",
                    self.objects.saturating_add(1),
                    describe(b)
                ))),
            };
        }
        self.append(b)?;
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return Ok(None);
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth = self.depth.saturating_add(1),
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    return self.complete().map(Some);
                }
            }
            _ => {}
        }
        Ok(None)
    }

    fn append(&mut self, b: u8) -> Result<(), DecodeError> {
        if self.buf.len() >= self.max {
            return Err(DecodeError::TooLarge(self.max));
        }
        self.buf.push(b);
        Ok(())
    }

    fn complete(&mut self) -> Result<CopilotChunk, DecodeError> {
        self.objects = self.objects.saturating_add(1);
        let parsed = serde_json::from_slice::<WireChunk>(&self.buf);
        self.buf.clear();
        match parsed {
            Ok(wire) => Ok(CopilotChunk {
                action: wire.action,
                output: wire.output,
            }),
            // serde_json's message may quote the offending value, which is answer content: say
            // only what kind of error it was and where.
            Err(e) => Err(DecodeError::Invalid(format!(
                "object {} is not a valid chunk ({:?} error at column {})",
                self.objects,
                e.classify(),
                e.column()
            ))),
        }
    }
}

/// The framing of the body, decided by its first non-whitespace byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Only whitespace so far.
    Unknown,
    /// Objects back to back, optionally separated by whitespace (covers NDJSON).
    Json,
    /// Server-sent events.
    Sse,
}

/// Where the decoder is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// `data: [DONE]` was seen; the rest of the body is ignored.
    Done,
    /// An error was reported; the rest of the body is ignored.
    Failed,
}

/// Incremental decoder of the copilot's answer body; see the [module docs](self).
///
/// Feed it the body's bytes as they arrive with [`push`](Self::push), then call
/// [`finish`](Self::finish) at the end of the body.
#[derive(Debug)]
pub struct ChunkDecoder {
    framing: Framing,
    phase: Phase,
    scanner: ObjectScanner,
    /// The current server-sent-events line, without its line ending.
    line: Vec<u8>,
    /// The previous byte was a `\r` that ended a line (so a following `\n` belongs to it).
    after_cr: bool,
    /// A valid server-sent-events line was seen (before that, an unknown field is an error).
    sse_recognised: bool,
    max_object_bytes: usize,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_OBJECT_BYTES)
    }
}

impl ChunkDecoder {
    /// A decoder that accepts objects of at most `max_object_bytes` bytes (at least 1 is used).
    pub fn new(max_object_bytes: usize) -> Self {
        let max = max_object_bytes.max(1);
        Self {
            framing: Framing::Unknown,
            phase: Phase::Running,
            scanner: ObjectScanner::new(max),
            line: Vec::new(),
            after_cr: false,
            sse_recognised: false,
            max_object_bytes: max,
        }
    }

    /// The largest object accepted, in bytes.
    pub fn max_object_bytes(&self) -> usize {
        self.max_object_bytes
    }

    /// `data: [DONE]` was seen or an error was reported: later input is ignored, and the rest of
    /// the body need not be read.
    pub fn is_done(&self) -> bool {
        self.phase != Phase::Running
    }

    /// Bytes held for an incomplete object or line; never more than about twice the limit.
    pub fn buffered(&self) -> usize {
        self.scanner.buf.len().saturating_add(self.line.len())
    }

    /// Takes the next bytes of the body and returns what they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Decoded {
        let mut out = Vec::new();
        for &b in bytes {
            if self.phase != Phase::Running {
                break;
            }
            let step = match self.framing {
                Framing::Unknown => self.detect(b, &mut out),
                Framing::Json => self.json_byte(b, &mut out),
                Framing::Sse => self.sse_byte(b, &mut out),
            };
            if let Err(error) = step {
                self.fail(error, &mut out);
            }
        }
        out
    }

    /// Ends the body: returns what the last bytes completed, and [`DecodeError::Truncated`] if
    /// the body ended inside an object.
    pub fn finish(mut self) -> Decoded {
        let mut out = Vec::new();
        if self.phase != Phase::Running {
            return out;
        }
        if self.framing == Framing::Sse && !self.line.is_empty() {
            // The last line had no line ending; take it as if it had one.
            let line = std::mem::take(&mut self.line);
            if let Err(error) = self.sse_line(&line, &mut out) {
                self.fail(error, &mut out);
                return out;
            }
        }
        if !self.scanner.at_boundary() {
            self.fail(DecodeError::Truncated, &mut out);
        }
        out
    }

    fn fail(&mut self, error: DecodeError, out: &mut Decoded) {
        self.phase = Phase::Failed;
        self.scanner.buf = Vec::new();
        self.line = Vec::new();
        out.push(Err(error));
    }

    fn detect(&mut self, b: u8, out: &mut Decoded) -> Result<(), DecodeError> {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => Ok(()),
            b'{' => {
                self.framing = Framing::Json;
                self.json_byte(b, out)
            }
            _ => {
                self.framing = Framing::Sse;
                self.sse_byte(b, out)
            }
        }
    }

    fn json_byte(&mut self, b: u8, out: &mut Decoded) -> Result<(), DecodeError> {
        if let Some(chunk) = self.scanner.byte(b)? {
            out.push(Ok(chunk));
        }
        Ok(())
    }

    fn sse_byte(&mut self, b: u8, out: &mut Decoded) -> Result<(), DecodeError> {
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        match b {
            b'\n' if after_cr => Ok(()),
            b'\n' | b'\r' => {
                self.after_cr = b == b'\r';
                let line = std::mem::take(&mut self.line);
                let result = self.sse_line(&line, out);
                // Keep the allocation for the next line.
                self.line = line;
                self.line.clear();
                result
            }
            _ => {
                if self.line.len() >= self.max_object_bytes.saturating_add(SSE_LINE_SLACK) {
                    return Err(DecodeError::TooLarge(self.max_object_bytes));
                }
                self.line.push(b);
                Ok(())
            }
        }
    }

    /// Handles one complete server-sent-events line (without its line ending).
    fn sse_line(&mut self, line: &[u8], out: &mut Decoded) -> Result<(), DecodeError> {
        if line.is_empty() {
            // End of an event: its data must have held whole objects.
            if !self.scanner.at_boundary() {
                return Err(DecodeError::Invalid(
                    "a server-sent event ended inside an object".into(),
                ));
            }
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(colon) => {
                let (field, rest) = line.split_at(colon);
                // `rest` starts with the colon; one space after it is not part of the value.
                let value = rest.get(1..).unwrap_or_default();
                (field, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"" => {
                // A comment line.
                self.sse_recognised = true;
                Ok(())
            }
            b"event" | b"id" | b"retry" => {
                self.sse_recognised = true;
                Ok(())
            }
            b"data" => {
                self.sse_recognised = true;
                if self.scanner.at_boundary() && value.trim_ascii() == b"[DONE]" {
                    self.phase = Phase::Done;
                    return Ok(());
                }
                for &b in value {
                    self.json_byte(b, out)?;
                }
                // Lines of one event's data are joined with a newline.
                self.json_byte(b'\n', out)
            }
            _ if self.sse_recognised => Ok(()),
            _ => Err(DecodeError::Invalid(
                "the answer is neither JSON objects nor server-sent events".into(),
            )),
        }
    }
}

/// Names a byte for an error message without quoting answer text at length.
fn describe(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", char::from(b))
    } else {
        format!("byte 0x{b:02x}")
    }
}

#[cfg(test)]
mod tests;
