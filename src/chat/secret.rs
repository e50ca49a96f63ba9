//! Passwords and room answers as values that cannot leak.

use std::fmt;

/// A string that must never reach a log or a reply: a password or a room answer.
///
/// Its `Debug` output is redacted, so a request can be logged whole; comparing against it goes
/// through [`Secret::matches`], which takes the same time wherever the inputs differ.
#[derive(Clone, Default, Eq)]
pub struct Secret(Box<[u8]>);

impl Secret {
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Self {
        Secret(bytes.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes, for the one place that must see them: the password hasher.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes, for the password-length rule of `register`.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Constant-time equality: the time depends on the lengths only, never on where the bytes
    /// first differ, so a client cannot guess the server password or a room answer byte by byte
    /// from reply timings.
    pub fn matches(&self, given: &Secret) -> bool {
        let (secret, given) = (&self.0, &given.0);
        let mut diff = u8::from(secret.len() != given.len());
        for (i, &g) in given.iter().enumerate() {
            diff |= g ^ secret.get(i).copied().unwrap_or(0);
        }
        std::hint::black_box(diff) == 0
    }
}

/// Equality is [`Secret::matches`], so no comparison of secrets can leak timing.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.matches(other)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
