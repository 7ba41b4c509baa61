//! The 68 opcodes of pickle protocols 0–5.
//!
//! This table is the single source of truth for every consumer of the format: the decoder uses
//! [`Opcode::from_byte`] and [`Opcode::arg_kind`] to split a stream into operations, the encoder
//! uses [`Opcode::byte`], and the disassembler uses [`Opcode::name`] and [`Opcode::protocol`] to
//! print what `pickletools` prints. Names, codes, argument kinds and protocols follow the
//! `opcodes` list of CPython's `Lib/pickletools.py`.

use std::fmt;

/// How an opcode's argument is laid out in the stream (pickletools' `ArgumentDescriptor`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ArgKind {
    /// No argument.
    None,
    /// One unsigned byte (`uint1`).
    U1,
    /// Two bytes, unsigned little-endian (`uint2`).
    U2,
    /// Four bytes, unsigned little-endian (`uint4`).
    U4,
    /// Eight bytes, unsigned little-endian (`uint8`).
    U8,
    /// Four bytes, signed little-endian (`int4`).
    I4,
    /// A one-byte length, then that many bytes of little-endian two's complement (`long1`).
    Long1,
    /// A four-byte signed length, then that many bytes of two's complement (`long4`).
    Long4,
    /// A one-byte length, then that many bytes (`string1`, `bytes1`, `unicodestring1`).
    Counted1,
    /// A four-byte length (signed for `BINSTRING`, unsigned otherwise), then the bytes.
    Counted4,
    /// An eight-byte unsigned length, then the bytes (`bytes8`, `bytearray8`, `unicodestring8`).
    Counted8,
    /// A line of text ending in `\n` (`decimalnl_*`, `floatnl`, `stringnl*`, `unicodestringnl`).
    Line,
    /// Two lines of text, each ending in `\n` (`stringnl_noescape_pair`).
    TwoLines,
    /// Eight bytes, a big-endian IEEE 754 double (`float8`).
    F8,
}

macro_rules! opcodes {
    ($( $(#[$doc:meta])* $name:ident = $byte:literal, $proto:literal, $kind:ident; )*) => {
        /// One pickle opcode.
        ///
        /// The discriminant is the byte that encodes the opcode in a pickle stream.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        pub enum Opcode {
            $( $(#[$doc])* $name = $byte, )*
        }

        impl Opcode {
            /// Every opcode, in the order of pickletools' `opcodes` table.
            pub const ALL: &'static [Opcode] = &[ $( Opcode::$name, )* ];

            /// The name pickletools prints, e.g. `"BINUNICODE"`.
            pub const fn name(self) -> &'static str {
                match self { $( Opcode::$name => stringify!($name), )* }
            }

            /// The first protocol that defines this opcode.
            pub const fn protocol(self) -> u8 {
                match self { $( Opcode::$name => $proto, )* }
            }

            /// How the argument following the opcode byte is laid out.
            #[inline(always)]
            pub const fn arg_kind(self) -> ArgKind {
                ARG_KIND_BY_BYTE[self as usize]
            }
        }

        const OPCODE_BY_BYTE: [Option<Opcode>; 256] = {
            let mut table = [None; 256];
            $( table[$byte as usize] = Some(Opcode::$name); )*
            table
        };

        /// Argument layout by opcode byte: one load instead of a second `match` on the hot path.
        const ARG_KIND_BY_BYTE: [ArgKind; 256] = {
            let mut table = [ArgKind::None; 256];
            $( table[$byte as usize] = ArgKind::$kind; )*
            table
        };
    };
}

opcodes! {
    /// Push an integer or bool, written as decimal text (`I00` is False, `I01` is True).
    INT = b'I', 0, Line;
    /// Push a four-byte signed integer.
    BININT = b'J', 1, I4;
    /// Push a one-byte unsigned integer.
    BININT1 = b'K', 1, U1;
    /// Push a two-byte unsigned integer.
    BININT2 = b'M', 1, U2;
    /// Push a long integer, written as decimal text with an optional `L` suffix.
    LONG = b'L', 0, Line;
    /// Push a long integer, at most 255 bytes of two's complement.
    LONG1 = 0x8a, 2, Long1;
    /// Push a long integer of any size, in two's complement.
    LONG4 = 0x8b, 2, Long4;
    /// Push a Python 2 `str`, written as a quoted, escaped literal.
    STRING = b'S', 0, Line;
    /// Push a Python 2 `str` with a four-byte length.
    BINSTRING = b'T', 1, Counted4;
    /// Push a Python 2 `str` with a one-byte length.
    SHORT_BINSTRING = b'U', 1, Counted1;
    /// Push a `bytes` object with a four-byte length.
    BINBYTES = b'B', 3, Counted4;
    /// Push a `bytes` object with a one-byte length.
    SHORT_BINBYTES = b'C', 3, Counted1;
    /// Push a `bytes` object with an eight-byte length.
    BINBYTES8 = 0x8e, 4, Counted8;
    /// Push a `bytearray` object with an eight-byte length.
    BYTEARRAY8 = 0x96, 5, Counted8;
    /// Push the next out-of-band buffer.
    NEXT_BUFFER = 0x97, 5, None;
    /// Make the buffer on top of the stack read-only.
    READONLY_BUFFER = 0x98, 5, None;
    /// Push None.
    NONE = b'N', 0, None;
    /// Push True.
    NEWTRUE = 0x88, 2, None;
    /// Push False.
    NEWFALSE = 0x89, 2, None;
    /// Push a `str`, written in raw-unicode-escape encoding.
    UNICODE = b'V', 0, Line;
    /// Push a `str` of UTF-8 bytes with a one-byte length.
    SHORT_BINUNICODE = 0x8c, 4, Counted1;
    /// Push a `str` of UTF-8 bytes with a four-byte length.
    BINUNICODE = b'X', 1, Counted4;
    /// Push a `str` of UTF-8 bytes with an eight-byte length.
    BINUNICODE8 = 0x8d, 4, Counted8;
    /// Push a float, written as text.
    FLOAT = b'F', 0, Line;
    /// Push a float, written as an eight-byte big-endian double.
    BINFLOAT = b'G', 1, F8;
    /// Push an empty list.
    EMPTY_LIST = b']', 1, None;
    /// Append the top of the stack to the list below it.
    APPEND = b'a', 0, None;
    /// Extend the list below the topmost mark with the items above it.
    APPENDS = b'e', 1, None;
    /// Build a list from the items above the topmost mark.
    LIST = b'l', 0, None;
    /// Push an empty tuple.
    EMPTY_TUPLE = b')', 1, None;
    /// Build a tuple from the items above the topmost mark.
    TUPLE = b't', 0, None;
    /// Build a one-tuple from the top of the stack.
    TUPLE1 = 0x85, 2, None;
    /// Build a two-tuple from the top two stack items.
    TUPLE2 = 0x86, 2, None;
    /// Build a three-tuple from the top three stack items.
    TUPLE3 = 0x87, 2, None;
    /// Push an empty dict.
    EMPTY_DICT = b'}', 1, None;
    /// Build a dict from the key/value pairs above the topmost mark.
    DICT = b'd', 0, None;
    /// Set one key/value pair in the dict below them.
    SETITEM = b's', 0, None;
    /// Set the key/value pairs above the topmost mark in the dict below it.
    SETITEMS = b'u', 1, None;
    /// Push an empty set.
    EMPTY_SET = 0x8f, 4, None;
    /// Add the items above the topmost mark to the set below it.
    ADDITEMS = 0x90, 4, None;
    /// Build a frozenset from the items above the topmost mark.
    FROZENSET = 0x91, 4, None;
    /// Discard the top of the stack.
    POP = b'0', 0, None;
    /// Push a copy of the top of the stack.
    DUP = b'2', 0, None;
    /// Push the mark that TUPLE, LIST, DICT, APPENDS and friends collect up to.
    MARK = b'(', 0, None;
    /// Discard everything above and including the topmost mark.
    POP_MARK = b'1', 1, None;
    /// Push a memo entry; the index is decimal text.
    GET = b'g', 0, Line;
    /// Push a memo entry; one-byte index.
    BINGET = b'h', 1, U1;
    /// Push a memo entry; four-byte index.
    LONG_BINGET = b'j', 1, U4;
    /// Store the top of the stack in the memo; the index is decimal text.
    PUT = b'p', 0, Line;
    /// Store the top of the stack in the memo; one-byte index.
    BINPUT = b'q', 1, U1;
    /// Store the top of the stack in the memo; four-byte index.
    LONG_BINPUT = b'r', 1, U4;
    /// Store the top of the stack in the memo at the next free index.
    MEMOIZE = 0x94, 4, None;
    /// Push an object from the extension registry; one-byte code.
    EXT1 = 0x82, 2, U1;
    /// Push an object from the extension registry; two-byte code.
    EXT2 = 0x83, 2, U2;
    /// Push an object from the extension registry; four-byte code.
    EXT4 = 0x84, 2, I4;
    /// Push a global found by module and name, given as two lines of text.
    GLOBAL = b'c', 0, TwoLines;
    /// Push a global found by module and name, taken from the stack.
    STACK_GLOBAL = 0x93, 4, None;
    /// Call a callable with an argument tuple: `callable(*args)`.
    REDUCE = b'R', 0, None;
    /// Apply state to an object: `__setstate__` or a dict update.
    BUILD = b'b', 0, None;
    /// Build an instance of the class named by two lines of text from the marked arguments.
    INST = b'i', 0, TwoLines;
    /// Build an instance of the first marked item from the other marked items.
    OBJ = b'o', 1, None;
    /// `cls.__new__(cls, *args)`.
    NEWOBJ = 0x81, 2, None;
    /// `cls.__new__(cls, *args, **kwargs)`.
    NEWOBJ_EX = 0x92, 4, None;
    /// Stop: the top of the stack is the unpickled object.
    STOP = b'.', 0, None;
    /// Declare the protocol version.
    PROTO = 0x80, 2, U1;
    /// Declare the length of the next frame.
    FRAME = 0x95, 4, U8;
    /// Push an object by persistent id, given as a line of text.
    PERSID = b'P', 0, Line;
    /// Push an object by persistent id, taken from the stack.
    BINPERSID = b'Q', 1, None;
}

impl Opcode {
    /// The opcode encoded by `byte`, or `None` if no opcode uses that byte.
    #[inline]
    pub const fn from_byte(byte: u8) -> Option<Opcode> {
        OPCODE_BY_BYTE[byte as usize]
    }

    /// The byte that encodes this opcode.
    #[inline]
    pub const fn byte(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_68_opcodes_with_distinct_bytes() {
        assert_eq!(Opcode::ALL.len(), 68);
        let mut seen = std::collections::HashSet::new();
        for op in Opcode::ALL {
            assert!(seen.insert(op.byte()), "{op} reuses byte {:#x}", op.byte());
            assert_eq!(Opcode::from_byte(op.byte()), Some(*op));
        }
        assert_eq!((0..=255u8).filter_map(Opcode::from_byte).count(), 68);
    }

    #[test]
    fn protocols_match_pickletools() {
        assert_eq!(Opcode::BINBYTES.protocol(), 3);
        assert_eq!(Opcode::FRAME.protocol(), 4);
        assert_eq!(Opcode::NEXT_BUFFER.protocol(), 5);
        assert_eq!(Opcode::POP_MARK.protocol(), 1);
        assert_eq!(Opcode::LONG1.protocol(), 2);
        assert_eq!(Opcode::ALL.iter().map(|o| o.protocol()).max(), Some(5));
    }
}
