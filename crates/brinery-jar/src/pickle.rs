//! What the jar needs to understand about the pickle stream: the globals it references, whether
//! it is well-formed, and how to rewrite its out-of-band buffers in-band for export.

use std::collections::HashMap;
use std::io::Write;

use brinery::decode::{Arg, Decoder};
use brinery::encode::{Encoder, FRAME_SIZE_TARGET};
use brinery::Opcode;

use crate::error::{Error, Result};

fn pickle_err(source: brinery::Error, context: &str) -> Error {
    Error::Pickle {
        error: source,
        context: context.to_string(),
    }
}

/// Walk the whole stream (up to `STOP`): checks it is well-formed and returns how many
/// `NEXT_BUFFER`s it has and which globals it references (`module.name`, in order of first use).
pub(crate) fn inspect(data: &[u8], context: &str) -> Result<(usize, Vec<String>)> {
    let mut dec = Decoder::new(data);
    let mut globals: Vec<String> = Vec::new();
    let mut push_global = |g: String| {
        if !globals.contains(&g) {
            globals.push(g);
        }
    };
    // A symbolic stack of what matters for STACK_GLOBAL: the strings pushed last, through the memo.
    let mut recent: Vec<Option<String>> = Vec::new();
    let mut memo: HashMap<u64, Option<String>> = HashMap::new();
    let mut buffers = 0usize;
    let mut stopped = false;
    while let Some(op) = dec.next_op().map_err(|e| pickle_err(e, context))? {
        let top = recent.last().cloned().flatten();
        match (op.opcode, op.arg) {
            (Opcode::STOP, _) => {
                stopped = true;
                break;
            }
            (Opcode::GLOBAL | Opcode::INST, Arg::TwoLines(m, n)) => {
                push_global(format!(
                    "{}.{}",
                    String::from_utf8_lossy(m),
                    String::from_utf8_lossy(n)
                ));
                recent.push(None);
            }
            (Opcode::STACK_GLOBAL, _) => {
                let n = recent.pop().flatten();
                let m = recent.pop().flatten();
                if let (Some(m), Some(n)) = (m, n) {
                    push_global(format!("{m}.{n}"));
                } else {
                    push_global("?.?".into());
                }
                recent.push(None);
            }
            (
                Opcode::SHORT_BINUNICODE
                | Opcode::BINUNICODE
                | Opcode::BINUNICODE8
                | Opcode::SHORT_BINSTRING
                | Opcode::BINSTRING,
                Arg::Bytes(b),
            ) => recent.push(Some(String::from_utf8_lossy(b).into_owned())),
            (Opcode::MEMOIZE, _) => {
                let idx = memo.len() as u64;
                memo.insert(idx, top);
            }
            (Opcode::BINPUT | Opcode::LONG_BINPUT, _) => {
                memo.insert(op.int() as u64, top);
            }
            (Opcode::PUT, Arg::Line(l)) => {
                if let Some(i) = std::str::from_utf8(l).ok().and_then(|s| s.parse().ok()) {
                    memo.insert(i, top);
                }
            }
            (Opcode::BINGET | Opcode::LONG_BINGET, _) => {
                recent.push(memo.get(&(op.int() as u64)).cloned().flatten());
            }
            (Opcode::GET, Arg::Line(l)) => {
                let i: Option<u64> = std::str::from_utf8(l).ok().and_then(|s| s.parse().ok());
                recent.push(i.and_then(|i| memo.get(&i).cloned().flatten()));
            }
            (Opcode::FRAME | Opcode::PROTO, _) => {}
            (Opcode::NEXT_BUFFER, _) => {
                buffers += 1;
                recent.push(None);
            }
            _ => recent.push(None),
        }
        if recent.len() > 64 {
            recent.drain(..32);
        }
    }
    if !stopped {
        return Err(Error::PickleShape {
            detail: format!("pickle ends without STOP at byte {}", data.len()),
            context: context.to_string(),
        });
    }
    Ok((buffers, globals))
}

/// Counts the bytes written through it.
struct Counting<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Write `data` to `out` with every out-of-band buffer put back in-band, so that the stock
/// `pickle.load` reads it without a `buffers=` argument: `NEXT_BUFFER READONLY_BUFFER` becomes
/// `bytes` and a lone `NEXT_BUFFER` becomes `BYTEARRAY8` (what CPython's pickler writes for a
/// read-only / writable `PickleBuffer` in-band). At protocol 4+ the stream is re-framed through
/// the core [`Encoder`] (old `FRAME`s dropped; new frames hold whole opcodes; payloads of 64 KiB
/// or more stay outside frames). A stream without `NEXT_BUFFER` is copied unchanged.
pub fn inline_buffers(
    data: &[u8],
    buffers: &mut dyn FnMut(usize) -> Result<Vec<u8>>,
    out: &mut dyn Write,
    context: &str,
) -> Result<u64> {
    let (count, _) = inspect(data, context)?;
    let io_err = |e: std::io::Error| Error::io("write", std::path::Path::new(context), e);
    if count == 0 {
        out.write_all(data).map_err(io_err)?;
        return Ok(data.len() as u64);
    }
    let mut dec = Decoder::new(data);
    let proto = match dec.next_op().map_err(|e| pickle_err(e, context))? {
        Some(op) if op.opcode == Opcode::PROTO => op.int() as u8,
        _ => 5,
    };
    let mut sink = Counting { inner: out, n: 0 };
    let mut enc =
        Encoder::with_sink(proto.max(5), &mut sink).map_err(|e| pickle_err(e, context))?;
    enc.start();
    let mut next_buffer = 0usize;
    let base = data.as_ptr() as usize;
    while let Some(op) = dec.next_op().map_err(|e| pickle_err(e, context))? {
        match op.opcode {
            Opcode::FRAME | Opcode::PROTO => continue,
            Opcode::STOP => break,
            _ => {}
        }
        enc.opcode_boundary().map_err(|e| pickle_err(e, context))?;
        if op.opcode == Opcode::NEXT_BUFFER {
            let payload = buffers(next_buffer)?;
            next_buffer += 1;
            let readonly = matches!(
                Decoder::at(data, dec.offset()).next_op(),
                Ok(Some(next)) if next.opcode == Opcode::READONLY_BUFFER
            );
            if readonly {
                dec.next_op().map_err(|e| pickle_err(e, context))?;
                enc.bytes(&payload)
            } else {
                enc.bytearray8(&payload)
            }
            .map_err(|e| pickle_err(e, context))?;
            continue;
        }
        let whole = &data[op.offset..dec.offset()];
        match op.arg {
            Arg::Bytes(payload) if payload.len() >= FRAME_SIZE_TARGET => {
                let start = payload.as_ptr() as usize - base;
                enc.write_bytes(&data[op.offset..start], payload)
                    .map_err(|e| pickle_err(e, context))?;
            }
            _ => enc.write_raw(whole),
        }
    }
    enc.finish().map_err(|e| pickle_err(e, context))?;
    Ok(sink.n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globals_through_stack_global_and_memo() {
        // protocol 4: collections.OrderedDict twice (second time through BINGET of memoized strings)
        let mut e = Encoder::new(4).unwrap();
        e.start();
        for _ in 0..2 {
            e.str(&"collections".into()).unwrap();
            e.opcode(Opcode::MEMOIZE);
            e.str(&"OrderedDict".into()).unwrap();
            e.opcode(Opcode::MEMOIZE);
            e.opcode(Opcode::STACK_GLOBAL);
            e.opcode(Opcode::POP);
        }
        e.opcode(Opcode::NONE);
        let data = e.finish().unwrap();
        let (n, globals) = inspect(&data, "test").unwrap();
        assert_eq!(n, 0);
        assert_eq!(globals, vec!["collections.OrderedDict".to_string()]);
        let (_, g2) = inspect(b"\x80\x02cnumpy\ndtype\nq\x00h\x00.", "t").unwrap();
        assert_eq!(g2, vec!["numpy.dtype".to_string()]);
    }

    #[test]
    fn missing_stop_is_an_error_naming_the_offset() {
        let e = inspect(b"\x80\x04N", "x.pkl").unwrap_err().to_string();
        assert_eq!(e, "pickle ends without STOP at byte 3 in x.pkl");
    }

    #[test]
    fn inline_rewrites_buffers_and_reframes() {
        // [NEXT_BUFFER, NEXT_BUFFER READONLY_BUFFER] as a list, in one frame.
        let mut e = Encoder::new(5).unwrap();
        e.start();
        e.empty_list();
        e.mark();
        e.opcode(Opcode::NEXT_BUFFER);
        e.opcode(Opcode::NEXT_BUFFER);
        e.opcode(Opcode::READONLY_BUFFER);
        e.opcode(Opcode::APPENDS);
        let data = e.finish().unwrap();
        let bufs = [vec![1u8; 10], vec![2u8; 100_000]];
        let mut out = Vec::new();
        let n = inline_buffers(&data, &mut |i| Ok(bufs[i].clone()), &mut out, "t").unwrap();
        assert_eq!(n as usize, out.len());
        let ops: Vec<_> = Decoder::new(&out)
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        let kinds: Vec<_> = ops.iter().map(|o| o.opcode).collect();
        assert_eq!(
            kinds,
            vec![
                Opcode::PROTO,
                Opcode::FRAME,
                Opcode::EMPTY_LIST,
                Opcode::MARK,
                Opcode::BYTEARRAY8,
                Opcode::BINBYTES,
                Opcode::APPENDS,
                Opcode::STOP
            ]
        );
        // The frame holds exactly the opcodes before the large payload.
        assert_eq!(ops[1].arg, Arg::U64(1 + 1 + 9 + 10));
        assert_eq!(ops[5].arg, Arg::Bytes(&bufs[1][..]));
        let e = inline_buffers(&data, &mut |_| Ok(vec![]), &mut Vec::new(), "t");
        assert!(e.is_ok());
    }
}
