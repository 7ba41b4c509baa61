//! `Unpickler(..., policy=...)`: the scan rules enforced during the load itself (defence in
//! depth behind `brinery.safe_load`'s scan).
//!
//! The machine calls [`Guard::before`] before each opcode and [`Guard::after`] after it. Globals
//! are checked against the deny-list and the policy *before* anything is imported; each global
//! object the policy let through is remembered (by identity, kept alive) with its access, so
//! REDUCE, NEWOBJ, NEWOBJ_EX, INST and OBJ may call only globals the policy marks callable, never
//! the result of another call; BUILD and the container opcodes may not touch a global;
//! `getattr` only as `getattr(<allowed global>, '<constant>')`; EXT codes and persistent ids are
//! refused, and so is a repeated PROTO. A refusal raises `brinery.UnsafePickleError`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use brinery::decode::{Arg, Op};
use brinery::scan::{self as core, Access, Rule};
use brinery::Opcode;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    Getattr,
    CodecsEncode,
    CallsFirstArgument,
}

fn special(module: &str, name: &str) -> Special {
    match (module, name) {
        ("builtins", "getattr") => Special::Getattr,
        ("_codecs", "encode") => Special::CodecsEncode,
        ("copyreg", "_reconstructor" | "__newobj__" | "__newobj_ex__")
        | ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
            Special::CallsFirstArgument
        }
        _ => Special::None,
    }
}

#[derive(Default)]
struct State {
    /// Global objects the policy let through, by address, with their access and dotted name.
    globals: HashMap<usize, (Access, Special, String)>,
    /// Keeps those objects alive so that no address is reused during the load.
    keep: Vec<Py<PyAny>>,
    /// What the opcode being executed pushes, registered by `after`.
    pending: Option<(Access, Special, String)>,
    seen_proto: bool,
}

/// The policy of one load.
pub(crate) struct Guard {
    policy: Arc<core::Policy>,
    state: RefCell<State>,
}

impl Guard {
    pub(crate) fn new(policy: Arc<core::Policy>) -> Self {
        Guard {
            policy,
            state: RefCell::new(State::default()),
        }
    }

    fn refuse(
        py: Python<'_>,
        rule: Rule,
        op: &Op<'_>,
        global: Option<(String, String)>,
        what: String,
    ) -> PyErr {
        // The input serves file streams in chunks, so `op.offset` is not a position in the
        // file: name the opcode only (the scan that precedes a safe load gives exact offsets).
        let message = format!("{what} ({} during the load)", op.opcode);
        crate::scan::unsafe_error(
            py,
            core::Finding {
                rule,
                offset: 0,
                opcode: Some(op.opcode),
                global,
                member: None,
                message,
            },
        )
    }

    /// Check a global before it is imported; remember what `after` registers.
    fn global(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        module: &str,
        name: &str,
        proto: u8,
        fix: bool,
    ) -> PyResult<(Access, Special)> {
        let (module, name) = match (fix && proto < 3)
            .then(|| brinery::encode::python3_name(module, name))
            .flatten()
        {
            Some((m, n)) => (m.to_owned(), n.unwrap_or(name).to_owned()),
            None => (module.to_owned(), name.to_owned()),
        };
        let sp = special(&module, &name);
        let pair = Some((module.clone(), name.clone()));
        let access = if sp == Special::Getattr {
            Access::Ref
        } else if let Some(why) = core::denied(&module, &name) {
            return Err(Self::refuse(
                py,
                Rule::DangerousGlobal,
                op,
                pair,
                format!("global {module}.{name} is never allowed: it {why}"),
            ));
        } else {
            let step = name
                .match_indices('.')
                .map(|(i, _)| &name[..i])
                .find(|step| self.policy.lookup(&module, step).is_none());
            if let Some(step) = step {
                return Err(Self::refuse(
                    py,
                    Rule::DisallowedGlobal,
                    op,
                    pair,
                    format!("global {module}.{name} is reached through {module}.{step}, which the policy does not allow"),
                ));
            }
            match self.policy.lookup(&module, &name) {
                Some(a) => a,
                None => {
                    return Err(Self::refuse(
                        py,
                        Rule::DisallowedGlobal,
                        op,
                        pair,
                        format!("global {module}.{name} is not allowed by the policy"),
                    ))
                }
            }
        };
        Ok((access, sp))
    }

    fn lookup(&self, obj: &Bound<'_, PyAny>) -> Option<(Access, Special, String)> {
        self.state
            .borrow()
            .globals
            .get(&(obj.as_ptr() as usize))
            .cloned()
    }

    /// Check a call of `callee` with `args` (a tuple, or None when not known yet).
    fn call(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        callee: &Bound<'_, PyAny>,
        args: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let Some((access, sp, name)) = self.lookup(callee) else {
            return Err(Self::refuse(
                py,
                Rule::CallOfComputed,
                op,
                None,
                format!("{} calls a value that is not an allowed global", op.opcode),
            ));
        };
        let split = || {
            name.split_once(':')
                .map(|(m, n)| (m.to_owned(), n.to_owned()))
        };
        let args = args.and_then(|a| a.cast::<PyTuple>().ok().cloned());
        match sp {
            Special::Getattr => {
                let ok = args.as_ref().is_some_and(|t| {
                    t.len() == 2
                        && t.get_item(0)
                            .is_ok_and(|o| self.lookup(&o).is_some_and(|g| g.1 != Special::Getattr))
                        && t.get_item(1)
                            .is_ok_and(|s| s.is_exact_instance_of::<PyString>())
                });
                if !ok {
                    return Err(Self::refuse(
                        py,
                        Rule::UnsafeGetattr,
                        op,
                        split(),
                        "getattr is called on something other than an allowed global and a constant name".into(),
                    ));
                }
                let t = args.expect("checked above");
                let base = self
                    .lookup(&t.get_item(0)?)
                    .map(|g| g.2)
                    .unwrap_or_default();
                let attr: String = t.get_item(1)?.extract()?;
                let (m, q) = base
                    .split_once(':')
                    .map(|(m, q)| (m.to_owned(), q.to_owned()))
                    .unwrap_or_default();
                let q = format!("{q}.{attr}");
                if let Some(why) = core::denied(&m, &q) {
                    return Err(Self::refuse(
                        py,
                        Rule::DangerousGlobal,
                        op,
                        Some((m.clone(), q.clone())),
                        format!("getattr reaches {m}.{q}, which is never allowed: it {why}"),
                    ));
                }
                let access = self.policy.lookup(&m, &q).unwrap_or(Access::Ref);
                self.state.borrow_mut().pending = Some((access, Special::None, format!("{m}:{q}")));
                return Ok(());
            }
            _ if access != Access::Call => {
                return Err(Self::refuse(
                    py,
                    Rule::RefOnlyCalled,
                    op,
                    split(),
                    format!(
                        "global {} is called but the policy allows it only as a reference",
                        name.replace(':', ".")
                    ),
                ));
            }
            Special::CodecsEncode => {
                let ok = args.as_ref().is_some_and(|t| {
                    (1..=2).contains(&t.len())
                        && t.iter().all(|a| a.is_exact_instance_of::<PyString>())
                });
                if !ok {
                    return Err(Self::refuse(
                        py,
                        Rule::UnsafeArguments,
                        op,
                        split(),
                        "_codecs.encode is called with other than constant strings".into(),
                    ));
                }
            }
            Special::CallsFirstArgument => {
                let first = args.as_ref().and_then(|t| t.get_item(0).ok());
                if !first.is_some_and(|c| self.lookup(&c).is_some_and(|g| g.0 == Access::Call)) {
                    return Err(Self::refuse(
                        py,
                        Rule::UnsafeArguments,
                        op,
                        split(),
                        format!(
                            "{} is given a class the policy does not allow to call",
                            name.replace(':', ".")
                        ),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn not_global(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        target: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        if let Some((_, _, name)) = target.and_then(|t| self.lookup(t)) {
            return Err(Self::refuse(
                py,
                Rule::GlobalMutation,
                op,
                None,
                format!(
                    "{} applied to the global {}",
                    op.opcode,
                    name.replace(':', ".")
                ),
            ));
        }
        Ok(())
    }

    /// Called before the machine runs `op` on `stack` (`marks` are the MARK positions).
    pub(crate) fn before(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        stack: &[Bound<'_, PyAny>],
        marks: &[usize],
        proto: u8,
        fix_imports: bool,
    ) -> PyResult<()> {
        use Opcode::*;
        let at = |back: usize| stack.len().checked_sub(back).and_then(|i| stack.get(i));
        let below_mark = || {
            marks
                .last()
                .and_then(|&m| m.checked_sub(1))
                .and_then(|i| stack.get(i))
        };
        match op.opcode {
            GLOBAL | INST => {
                let Arg::TwoLines(m, n) = op.arg else {
                    return Ok(());
                };
                let (m, n) = (String::from_utf8_lossy(m), String::from_utf8_lossy(n));
                let (access, sp) = self.global(py, op, &m, &n, proto, fix_imports)?;
                if op.opcode == INST && access != Access::Call {
                    return Err(Self::refuse(
                        py,
                        Rule::RefOnlyCalled,
                        op,
                        Some((m.to_string(), n.to_string())),
                        format!(
                            "global {m}.{n} is called but the policy allows it only as a reference"
                        ),
                    ));
                }
                if op.opcode == GLOBAL {
                    self.state.borrow_mut().pending = Some((access, sp, format!("{m}:{n}")));
                }
            }
            STACK_GLOBAL => {
                let (Some(m), Some(n)) = (at(2), at(1)) else {
                    return Ok(());
                };
                let (Ok(m), Ok(n)) = (m.extract::<String>(), n.extract::<String>()) else {
                    return Ok(()); // the machine raises "STACK_GLOBAL requires str"
                };
                let (access, sp) = self.global(py, op, &m, &n, proto, fix_imports)?;
                self.state.borrow_mut().pending = Some((access, sp, format!("{m}:{n}")));
            }
            REDUCE => {
                if let (Some(callee), Some(args)) = (at(2), at(1)) {
                    self.call(py, op, callee, Some(args))?;
                }
            }
            NEWOBJ => {
                if let (Some(cls), Some(args)) = (at(2), at(1)) {
                    self.call(py, op, cls, Some(args))?;
                }
            }
            NEWOBJ_EX => {
                if let (Some(cls), Some(args)) = (at(3), at(2)) {
                    self.call(py, op, cls, Some(args))?;
                }
            }
            OBJ => {
                if let Some(cls) = marks.last().and_then(|&m| stack.get(m)) {
                    self.call(py, op, cls, None)?;
                }
            }
            BUILD | APPEND => self.not_global(py, op, at(2))?,
            SETITEM => self.not_global(py, op, at(3))?,
            APPENDS | SETITEMS | ADDITEMS => self.not_global(py, op, below_mark())?,
            EXT1 | EXT2 | EXT4 => {
                return Err(Self::refuse(
                    py,
                    Rule::ExtensionCode,
                    op,
                    None,
                    "extension codes name globals through the copyreg registry and are not allowed"
                        .into(),
                ))
            }
            PERSID | BINPERSID => {
                return Err(Self::refuse(
                    py,
                    Rule::PersistentId,
                    op,
                    None,
                    "persistent ids are not allowed in a safe load".into(),
                ))
            }
            PROTO => {
                let mut st = self.state.borrow_mut();
                if st.seen_proto {
                    drop(st);
                    return Err(Self::refuse(
                        py,
                        Rule::BadProtocol,
                        op,
                        None,
                        "PROTO repeated".into(),
                    ));
                }
                st.seen_proto = true;
            }
            _ => {}
        }
        Ok(())
    }

    /// Called after the machine ran `op`: registers the global it pushed.
    pub(crate) fn after(&self, stack: &[Bound<'_, PyAny>]) {
        let mut st = self.state.borrow_mut();
        let Some((access, sp, name)) = st.pending.take() else {
            return;
        };
        if let Some(top) = stack.last() {
            st.globals.insert(top.as_ptr() as usize, (access, sp, name));
            st.keep.push(top.clone().unbind());
        }
    }
}
