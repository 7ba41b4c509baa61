//! Bounds on what reading an untrusted pickle may cost.
//!
//! The reader never trusts a length field: every counted argument is checked against the bytes
//! actually left before anything is sliced or allocated, so memory use is proportional to the
//! input. [`Limits`] adds absolute bounds on top of that, so that a service reading pickles from
//! strangers can also cap the input it accepts, how deeply values nest, how large the memo may
//! grow and how many bytes the decoded values may take.

/// Bounds applied while reading a pickle. Build one with [`Limits::builder`], or use the safe
/// [`Limits::default`].
///
/// ```
/// use brinery::Limits;
/// let limits = Limits::builder().max_depth(100).max_input(1 << 20).build();
/// assert_eq!(limits.max_depth(), 100);
/// let err = brinery::Pickle::from_slice_with(&[b'('; 200], &limits).unwrap_err();
/// assert!(err.to_string().starts_with("depth limit of 100 exceeded"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    max_depth: usize,
    max_alloc: u64,
    max_call_alloc: u64,
    max_memo: u64,
    max_input: u64,
}

impl Limits {
    /// Default nesting depth: how many MARKs may be open at once and how deeply the serde
    /// deserializer and other recursive consumers may descend.
    pub const DEFAULT_MAX_DEPTH: usize = 10_000;
    /// Default bound on the bytes the decoded values may occupy (4 GiB).
    pub const DEFAULT_MAX_ALLOC: u64 = 4 << 30;
    /// Default bound on what one allowed call may be asked to allocate from a size in its
    /// arguments (256 MiB): `bytearray(N)`, `bytes(N)`, numpy's `ndarray(shape, dtype)` and
    /// `_reconstruct`. Pickles written by Python and numpy never pass such sizes (they pass
    /// the data itself, whose size the input bounds); a crafted one asks for gigabytes in a few
    /// dozen bytes (red-team F7).
    pub const DEFAULT_MAX_CALL_ALLOC: u64 = 256 << 20;
    /// Default bound on the number of memo entries (16 Mi).
    pub const DEFAULT_MAX_MEMO: u64 = 1 << 24;
    /// Default bound on the input size (4 GiB).
    pub const DEFAULT_MAX_INPUT: u64 = 4 << 30;

    /// Start from the defaults and change what you need.
    pub fn builder() -> LimitsBuilder {
        LimitsBuilder {
            limits: Limits::default(),
        }
    }

    /// No bounds beyond the structural guarantee that memory use is proportional to the input.
    pub fn unlimited() -> Limits {
        Limits {
            max_depth: usize::MAX,
            max_alloc: u64::MAX,
            max_call_alloc: u64::MAX,
            max_memo: u64::MAX,
            max_input: u64::MAX,
        }
    }

    /// The maximum nesting depth.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// The maximum number of bytes decoded values may occupy.
    pub fn max_alloc(&self) -> u64 {
        self.max_alloc
    }

    /// The most bytes a safe scan lets one allowed call allocate from a size argument.
    pub fn max_call_alloc(&self) -> u64 {
        self.max_call_alloc
    }

    /// The maximum number of memo entries.
    pub fn max_memo(&self) -> u64 {
        self.max_memo
    }

    /// The maximum input size in bytes.
    pub fn max_input(&self) -> u64 {
        self.max_input
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_alloc: Self::DEFAULT_MAX_ALLOC,
            max_call_alloc: Self::DEFAULT_MAX_CALL_ALLOC,
            max_memo: Self::DEFAULT_MAX_MEMO,
            max_input: Self::DEFAULT_MAX_INPUT,
        }
    }
}

/// Builder for [`Limits`].
#[derive(Debug, Clone)]
pub struct LimitsBuilder {
    limits: Limits,
}

impl LimitsBuilder {
    /// Bound the nesting depth.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.limits.max_depth = depth;
        self
    }

    /// Bound the bytes that decoded values may occupy.
    pub fn max_alloc(mut self, bytes: u64) -> Self {
        self.limits.max_alloc = bytes;
        self
    }

    /// Bound what one allowed call may allocate from a size argument (see
    /// [`Limits::DEFAULT_MAX_CALL_ALLOC`]).
    pub fn max_call_alloc(mut self, bytes: u64) -> Self {
        self.limits.max_call_alloc = bytes;
        self
    }

    /// Bound the number of memo entries.
    pub fn max_memo(mut self, entries: u64) -> Self {
        self.limits.max_memo = entries;
        self
    }

    /// Bound the input size.
    pub fn max_input(mut self, bytes: u64) -> Self {
        self.limits.max_input = bytes;
        self
    }

    /// Finish.
    pub fn build(self) -> Limits {
        self.limits
    }
}
