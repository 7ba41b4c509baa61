//! The hard deny-list: globals that are never allowed, whatever the policy says.
//!
//! This is the second line of defence behind the profiles (which are allow-lists): a name that
//! can run code, import modules by name, read or write files, open network connections, load
//! another pickle or reach any of those through attributes is refused even if a profile or a
//! user entry lists it. Names are checked as CPython would resolve them: the module as written
//! and under its Python 3 name (`__builtin__` → `builtins`), and the qualified name as a chain
//! of attributes, so `pathlib` + `os.system` is caught by the `os` component.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::encode::python3_name;

/// Modules (and their submodules) that are denied whole, with why.
const DENIED_MODULES: &[(&str, &str)] = &[
    ("os", "runs commands and touches files"),
    ("posix", "runs commands and touches files"),
    ("nt", "runs commands and touches files"),
    ("posixpath", "touches files"),
    ("ntpath", "touches files"),
    ("subprocess", "runs commands"),
    ("_posixsubprocess", "runs commands"),
    ("pty", "runs commands"),
    ("commands", "runs commands"),
    ("popen2", "runs commands"),
    ("multiprocessing", "starts processes"),
    ("concurrent", "starts processes and threads"),
    ("_winapi", "runs commands"),
    ("winreg", "touches the registry"),
    ("_winreg", "touches the registry"),
    ("msvcrt", "touches the console and files"),
    ("signal", "changes process state"),
    ("sys", "changes interpreter state"),
    ("_thread", "starts threads"),
    ("threading", "starts threads"),
    ("asyncio", "runs event loops and processes"),
    ("importlib", "imports modules by name"),
    ("imp", "imports modules by name"),
    ("zipimport", "imports modules by name"),
    ("_imp", "imports modules by name"),
    ("_frozen_importlib", "imports modules by name"),
    ("_frozen_importlib_external", "imports modules by name"),
    ("mmap", "maps files"),
    ("fcntl", "touches file descriptors"),
    ("select", "touches file descriptors"),
    ("selectors", "touches file descriptors"),
    ("_ssl", "opens network connections"),
    ("_sqlite3", "touches files"),
    ("_multiprocessing", "starts processes"),
    ("_posixshmem", "touches shared memory"),
    ("faulthandler", "changes interpreter state"),
    ("readline", "touches the terminal and files"),
    ("pkgutil", "imports modules by name"),
    ("pydoc", "imports modules by name"),
    ("runpy", "runs code"),
    ("code", "runs code"),
    ("codeop", "compiles code"),
    ("compileall", "compiles code"),
    ("py_compile", "compiles code"),
    ("pdb", "runs code"),
    ("bdb", "runs code"),
    ("timeit", "runs code"),
    ("trace", "runs code"),
    ("profile", "runs code"),
    ("cProfile", "runs code"),
    ("doctest", "runs code"),
    ("unittest", "runs code"),
    ("test", "runs code"),
    ("pytest", "runs code"),
    ("_pytest", "runs code"),
    ("inspect", "reaches into code objects"),
    ("gc", "reaches every object"),
    ("ctypes", "calls native code"),
    ("_ctypes", "calls native code"),
    ("cffi", "calls native code"),
    ("marshal", "loads code objects"),
    ("pickle", "loads pickles"),
    ("_pickle", "loads pickles"),
    ("cPickle", "loads pickles"),
    ("pickletools", "loads pickles"),
    ("copy_reg_unsafe", "loads pickles"),
    ("shelve", "loads pickles from files"),
    ("dill", "loads pickles"),
    ("cloudpickle", "loads pickles"),
    ("torch", "loads pickles and runs code"),
    ("this", "prints on import"),
    ("antigravity", "opens a web browser on import"),
    ("webbrowser", "opens a web browser"),
    ("turtle", "opens windows"),
    ("tkinter", "opens windows"),
    ("idlelib", "opens windows and runs code"),
    ("socket", "opens network connections"),
    ("_socket", "opens network connections"),
    ("ssl", "opens network connections"),
    ("http", "opens network connections"),
    ("urllib", "opens network connections"),
    ("urllib2", "opens network connections"),
    ("httplib", "opens network connections"),
    ("ftplib", "opens network connections"),
    ("smtplib", "opens network connections"),
    ("telnetlib", "opens network connections"),
    ("xmlrpc", "opens network connections"),
    ("requests", "opens network connections"),
    ("shutil", "touches files"),
    ("tempfile", "touches files"),
    ("glob", "touches files"),
    ("fileinput", "touches files"),
    ("zipfile", "touches files"),
    ("tarfile", "touches files"),
    ("gzip", "touches files"),
    ("bz2", "touches files"),
    ("lzma", "touches files"),
    ("dbm", "touches files"),
    ("sqlite3", "touches files"),
    ("logging", "touches files"),
    ("site", "changes interpreter state"),
    ("sysconfig", "reads the environment"),
    ("platform", "runs commands"),
    ("distutils", "runs commands"),
    ("setuptools", "runs commands"),
    ("pip", "installs packages"),
    ("ensurepip", "installs packages"),
    ("venv", "runs commands"),
    ("builtins.__loader__", "imports modules"),
    ("linecache", "reads files"),
    ("filecmp", "reads files"),
    ("atexit", "runs code when the interpreter exits"),
    // inside allowed libraries
    ("numpy.testing", "runs test suites and commands"),
    ("numpy.f2py", "compiles and runs code"),
    ("numpy.distutils", "runs commands"),
    ("numpy.ctypeslib", "calls native code"),
    ("numpy.lib.npyio", "reads files"),
    ("numpy.lib._npyio_impl", "reads files"),
    ("numpy.lib.format", "reads files"),
    ("numpy.lib._format_impl", "reads files"),
    ("numpy.lib._datasource", "opens files and URLs"),
    ("numpy._pytesttester", "runs test suites"),
    ("numpy._utils._inspect", "reaches into code objects"),
    ("pandas.io", "reads files and loads pickles"),
    ("pandas.core.computation", "evaluates expressions"),
    ("pandas._config", "changes library configuration"),
    ("pandas.util.testing", "runs test helpers"),
    ("pandas._testing", "runs test helpers"),
    ("pandas.testing", "runs test helpers"),
    ("pandas.util._tester", "runs test suites"),
    ("pandas.plotting", "opens windows"),
    ("joblib.numpy_pickle_compat", "loads pickles"),
    ("joblib.parallel", "starts processes"),
    ("joblib._parallel_backends", "starts processes"),
    ("joblib.externals", "loads pickles and starts processes"),
    ("joblib.memory", "touches files"),
    ("joblib.pool", "starts processes"),
    ("sklearn.utils._testing", "runs test helpers"),
    ("sklearn.datasets", "downloads and reads files"),
    ("scipy.io", "reads files"),
    ("scipy.weave", "compiles code"),
];

/// Exact `module.qualname` names that are denied.
const DENIED_NAMES: &[(&str, &str, &str)] = &[
    ("builtins", "eval", "evaluates code"),
    ("builtins", "exec", "runs code"),
    ("builtins", "compile", "compiles code"),
    ("builtins", "open", "opens files"),
    ("builtins", "getattr", "reaches any attribute"),
    ("builtins", "setattr", "overwrites attributes"),
    ("builtins", "delattr", "deletes attributes"),
    ("builtins", "__import__", "imports modules by name"),
    ("builtins", "globals", "reaches interpreter state"),
    ("builtins", "locals", "reaches interpreter state"),
    ("builtins", "vars", "reaches interpreter state"),
    ("builtins", "breakpoint", "starts a debugger"),
    ("builtins", "input", "reads the terminal"),
    ("builtins", "print", "writes to the terminal"),
    ("builtins", "exit", "exits the interpreter"),
    ("builtins", "quit", "exits the interpreter"),
    ("builtins", "help", "imports modules by name"),
    ("builtins", "execfile", "runs code"),
    ("builtins", "reload", "imports modules"),
    ("builtins", "file", "opens files"),
    (
        "functools",
        "partialmethod",
        "calls what it wraps with stored arguments",
    ),
    ("functools", "reduce", "calls a function on every item"),
    ("builtins", "map", "calls a function on every item"),
    ("builtins", "filter", "calls a function on every item"),
    ("itertools", "starmap", "calls a function on every item"),
    ("itertools", "accumulate", "calls a function on every item"),
    ("weakref", "finalize", "calls a function later"),
    ("functools", "update_wrapper", "overwrites attributes"),
    ("functools", "wraps", "overwrites attributes"),
    ("functools", "singledispatch", "calls what it wraps"),
    ("operator", "attrgetter", "reaches any attribute"),
    ("operator", "methodcaller", "calls any method"),
    ("operator", "itemgetter", "reaches any item"),
    ("operator", "call", "calls anything"),
    ("operator", "getitem", "reaches any item"),
    ("operator", "setitem", "overwrites items"),
    ("operator", "delitem", "deletes items"),
    ("_operator", "attrgetter", "reaches any attribute"),
    ("_operator", "methodcaller", "calls any method"),
    ("_operator", "itemgetter", "reaches any item"),
    ("_operator", "call", "calls anything"),
    ("_operator", "getitem", "reaches any item"),
    ("_operator", "setitem", "overwrites items"),
    ("_operator", "delitem", "deletes items"),
    ("io", "open", "opens files"),
    ("io", "open_code", "opens files"),
    ("io", "FileIO", "opens files"),
    ("_io", "open", "opens files"),
    ("_io", "open_code", "opens files"),
    ("_io", "FileIO", "opens files"),
    ("codecs", "open", "opens files"),
    ("_codecs", "open", "opens files"),
    ("_codecs", "lookup", "imports codec modules"),
    ("codecs", "lookup", "imports codec modules"),
    ("types", "FunctionType", "creates functions from code"),
    ("types", "LambdaType", "creates functions from code"),
    ("types", "CodeType", "creates code objects"),
    ("types", "MethodType", "binds functions"),
    ("types", "ModuleType", "creates modules"),
    ("types", "new_class", "creates classes"),
    ("numpy", "load", "loads pickles from files"),
    ("numpy", "loads", "loads pickles"),
    ("numpy", "loadtxt", "reads files"),
    ("numpy", "genfromtxt", "reads files"),
    ("numpy", "fromfile", "reads files"),
    ("numpy", "fromregex", "reads files"),
    ("numpy", "memmap", "maps files"),
    ("numpy", "save", "writes files"),
    ("numpy", "savez", "writes files"),
    ("numpy", "savez_compressed", "writes files"),
    ("numpy", "savetxt", "writes files"),
    ("numpy", "test", "runs test suites"),
    ("numpy", "show_config", "prints"),
    ("numpy", "info", "imports modules by name"),
    ("numpy", "source", "reads source files"),
    ("numpy", "who", "reaches interpreter state"),
    ("numpy.core.multiarray", "fromfile", "reads files"),
    ("numpy._core.multiarray", "fromfile", "reads files"),
    ("numpy.core.records", "fromfile", "reads files"),
    ("numpy._core.records", "fromfile", "reads files"),
    ("pandas", "read_pickle", "loads pickles from files"),
    ("pandas", "eval", "evaluates expressions"),
    ("pandas", "test", "runs test suites"),
    ("pandas", "show_versions", "imports modules"),
    // pandas' public names for what it defines under `pandas.io` and `pandas._config` (a
    // pickle names the public one; the module deny-list above sees only where it is written)
    ("pandas", "ExcelFile", "reads files"),
    ("pandas", "ExcelWriter", "writes files"),
    ("pandas", "HDFStore", "reads and writes files"),
    ("pandas", "to_pickle", "writes files"),
    ("pandas", "read_clipboard", "reads the clipboard"),
    ("pandas", "read_csv", "reads files and URLs"),
    ("pandas", "read_excel", "reads files and URLs"),
    ("pandas", "read_feather", "reads files and URLs"),
    ("pandas", "read_fwf", "reads files and URLs"),
    ("pandas", "read_hdf", "reads files"),
    ("pandas", "read_html", "reads files and URLs"),
    ("pandas", "read_iceberg", "reads files and URLs"),
    ("pandas", "read_json", "reads files and URLs"),
    ("pandas", "read_orc", "reads files and URLs"),
    ("pandas", "read_parquet", "reads files and URLs"),
    ("pandas", "read_sas", "reads files and URLs"),
    ("pandas", "read_spss", "reads files"),
    ("pandas", "read_sql", "opens database connections"),
    ("pandas", "read_sql_query", "opens database connections"),
    ("pandas", "read_sql_table", "opens database connections"),
    ("pandas", "read_stata", "reads files and URLs"),
    ("pandas", "read_table", "reads files and URLs"),
    ("pandas", "read_xml", "reads files and URLs"),
    (
        "pandas",
        "json_normalize",
        "defined with the readers (pandas.io)",
    ),
    (
        "pandas",
        "set_eng_float_format",
        "changes library configuration",
    ),
    ("pandas", "set_option", "changes library configuration"),
    ("pandas", "reset_option", "changes library configuration"),
    ("pandas", "option_context", "changes library configuration"),
    ("pandas", "get_option", "reads library configuration"),
    ("pandas", "describe_option", "prints library configuration"),
    ("pandas.api.typing", "JsonReader", "reads files"),
    ("pandas.api.typing", "SASReader", "reads files"),
    ("pandas.api.typing", "StataReader", "reads files"),
    ("numpy", "DataSource", "opens files and URLs"),
    ("numpy", "show_runtime", "prints"),
    ("joblib", "load", "loads pickles from files"),
    ("joblib", "dump", "writes files"),
    ("joblib", "Parallel", "starts processes"),
    ("joblib", "Memory", "touches files"),
    ("joblib.numpy_pickle", "load", "loads pickles from files"),
    ("joblib.numpy_pickle", "dump", "writes files"),
    ("joblib.numpy_pickle", "NumpyUnpickler", "loads pickles"),
    ("scipy", "test", "runs test suites"),
    ("sklearn", "show_versions", "imports modules"),
];

/// Attribute names that are dangerous wherever they appear in a qualified name, because they
/// reach code, globals or the import machinery (`Model.__init__.__globals__`).
const DENIED_ATTRIBUTES: &[&str] = &[
    "__globals__",
    "__builtins__",
    "__subclasses__",
    "__getattribute__",
    "__getattr__",
    "__setattr__",
    "__delattr__",
    "__dict__",
    "__class__",
    "__base__",
    "__bases__",
    "__mro__",
    "__code__",
    "__closure__",
    "__func__",
    "__self__",
    "__import__",
    "__loader__",
    "__spec__",
    "__reduce__",
    "__reduce_ex__",
    "__call__",
    "__init__",
    "__setstate__",
    "__setitem__",
    "__delitem__",
    "__get__",
    "__set__",
    "__init_subclass__",
    "__wrapped__",
    "__defaults__",
    "__kwdefaults__",
    "__module__",
    "eval",
    "exec",
    "system",
    "popen",
    "spawn",
    "open",
    "load",
    "loads",
    "read_pickle",
    "import_module",
    "resolve_name",
    "locate",
    "write_text",
    "write_bytes",
    "read_text",
    "read_bytes",
    "unlink",
    "rmdir",
    "rmtree",
    "touch",
    "chmod",
    "rename",
    "symlink_to",
    "hardlink_to",
    "mkdir",
    "tofile",
    "to_pickle",
    "to_csv",
    "dump",
];

/// [`DENIED_MODULES`] by name: (position in the list, why). Each global is checked on every
/// scan and every guarded load, so these are hash lookups rather than scans of the lists.
fn module_index() -> &'static HashMap<&'static str, (usize, &'static str)> {
    static INDEX: OnceLock<HashMap<&'static str, (usize, &'static str)>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut map = HashMap::new();
        for (i, &(m, why)) in DENIED_MODULES.iter().enumerate() {
            map.entry(m).or_insert((i, why));
        }
        map
    })
}

/// Whether `part` is in [`DENIED_ATTRIBUTES`] (a hash lookup).
fn denied_attribute(part: &str) -> bool {
    static SET: OnceLock<std::collections::HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| DENIED_ATTRIBUTES.iter().copied().collect())
        .contains(part)
}

/// [`DENIED_NAMES`] by module: the (name, why) pairs, in list order.
fn name_index() -> &'static HashMap<&'static str, Vec<(&'static str, &'static str)>> {
    static INDEX: OnceLock<HashMap<&'static str, Vec<(&'static str, &'static str)>>> =
        OnceLock::new();
    INDEX.get_or_init(|| {
        let mut map: HashMap<&'static str, Vec<(&'static str, &'static str)>> = HashMap::new();
        for &(m, n, why) in DENIED_NAMES {
            map.entry(m).or_default().push((n, why));
        }
        map
    })
}

/// Why `module` or a package it is in is denied: the first entry of [`DENIED_MODULES`] that
/// is `module` itself or one of its dotted prefixes.
fn module_denied(module: &str) -> Option<&'static str> {
    let index = module_index();
    let prefixes = module
        .match_indices('.')
        .map(|(i, _)| &module[..i])
        .chain(std::iter::once(module));
    prefixes
        .filter_map(|p| index.get(p))
        .min_by_key(|&&(i, _)| i)
        .map(|&(_, why)| why)
}

fn exact_denied(module: &str, qualname: &str) -> Option<&'static str> {
    name_index()
        .get(module)?
        .iter()
        .find(|&&(n, _)| n == qualname)
        .map(|&(_, why)| why)
}

fn check(module: &str, qualname: &str) -> Option<&'static str> {
    if let Some(why) = module_denied(module).or_else(|| exact_denied(module, qualname)) {
        return Some(why);
    }
    // pandas.read_csv, pandas.read_parquet, ...: every reader of files.
    if (module == "pandas" || module.starts_with("pandas."))
        && qualname
            .rsplit('.')
            .next()
            .is_some_and(|n| n.starts_with("read_"))
    {
        return Some("reads files");
    }
    // uuid's private helpers run commands (`uuid._popen`, `uuid._get_command_stdout`).
    if module == "uuid" && qualname.starts_with('_') {
        return Some("runs commands");
    }
    let parts: Vec<&str> = qualname.split('.').collect();
    // An attribute chain: each step is a module reached by attribute (`pathlib` + `os.system`)
    // or an attribute that reaches code or files.
    for (i, part) in parts.iter().enumerate() {
        if denied_attribute(part) {
            return Some("reaches code, globals or files through an attribute");
        }
        // `part` used as a module reached by attribute, with something taken from it: the last
        // component alone is only a name (an enum member called `test` is not the module).
        if i + 1 < parts.len() {
            let rest = parts[i..].join(".");
            let (m, n) = match rest.rsplit_once('.') {
                Some(pair) => pair,
                None => (rest.as_str(), ""),
            };
            if let Some(why) = module_denied(&rest).or_else(|| exact_denied(m, n)) {
                return Some(why);
            }
            // `builtins` reached through an attribute, e.g. `copyreg` + `__builtins__.eval`.
            if i + 1 < parts.len() {
                let head = parts[i];
                let tail = parts[i + 1..].join(".");
                if matches!(head, "builtins" | "__builtin__")
                    && exact_denied("builtins", &tail).is_some()
                {
                    return Some("reaches a denied builtin through an attribute");
                }
            }
        }
    }
    None
}

/// Why `module.qualname` is on the deny-list, or `None` if it is not.
///
/// The module is checked as written and under its Python 3 name (what `fix_imports` maps it
/// to), so `__builtin__.eval`, `posix.system` and `nt.system` are caught like `builtins.eval`
/// and `os.system`.
///
/// ```
/// use brinery::scan::denied;
/// assert!(denied("os", "system").is_some());
/// assert!(denied("__builtin__", "eval").is_some());
/// assert!(denied("pathlib", "os.system").is_some());
/// assert!(denied("numpy", "load").is_some());
/// assert!(denied("pandas", "read_csv").is_some());
/// assert!(denied("collections", "OrderedDict").is_none());
/// ```
pub fn denied(module: &str, qualname: &str) -> Option<&'static str> {
    // The verdict is a pure function of the names, and the same few names come back at every
    // scan and load of a kind of pickle: a small cache keyed by a hash of both names (an entry
    // is checked against its names, so a collision costs only the check itself).
    let key = super::policy::names_key(module, qualname);
    let cache = VERDICTS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(map) = cache.lock() {
        if let Some((m, n, why)) = map.get(&key) {
            if **m == *module && **n == *qualname {
                return *why;
            }
        }
    }
    let why = denied_uncached(module, qualname);
    if let Ok(mut map) = cache.lock() {
        if map.len() < VERDICTS_CACHED {
            map.insert(key, (module.into(), qualname.into(), why));
        }
    }
    why
}

/// How many names' verdicts [`denied`] keeps (a stream of made-up names cannot grow it more).
const VERDICTS_CACHED: usize = 4096;

type Verdicts = Mutex<HashMap<u64, (Box<str>, Box<str>, Option<&'static str>)>>;

static VERDICTS: OnceLock<Verdicts> = OnceLock::new();

fn denied_uncached(module: &str, qualname: &str) -> Option<&'static str> {
    if let Some(why) = check(module, qualname) {
        return Some(why);
    }
    if let Some((m, n)) = python3_name(module, qualname) {
        let n = n.unwrap_or(qualname);
        if let Some(why) = check(m, n) {
            return Some(why);
        }
    }
    // Old spellings that fix_imports does not map but older Pythons had.
    match module {
        "__builtin__" | "exceptions" => check("builtins", qualname),
        "copy_reg" => check("copyreg", qualname),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::denied;

    #[test]
    fn aliases_chains_and_library_internals_are_denied() {
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("nt", "system"),
            ("subprocess", "Popen"),
            ("builtins", "eval"),
            ("__builtin__", "exec"),
            ("__builtin__", "getattr"),
            ("_operator", "attrgetter"),
            ("operator", "methodcaller"),
            ("_io", "open"),
            ("io", "FileIO"),
            ("pathlib", "os.system"),
            ("numpy", "os.system"),
            ("copyreg", "__builtins__.eval"),
            ("collections", "OrderedDict.__init__.__globals__"),
            ("importlib", "import_module"),
            ("pkgutil", "resolve_name"),
            ("pydoc", "locate"),
            ("functools", "partialmethod"),
            ("numpy", "load"),
            ("numpy.testing", "run_module_suite"),
            ("numpy.testing._private.utils", "runstring"),
            ("pandas", "read_pickle"),
            ("pandas", "read_csv"),
            ("pandas.io.pickle", "read_pickle"),
            ("joblib", "load"),
            ("this", "s"),
            ("antigravity", "geohash"),
            ("webbrowser", "open"),
            ("runpy", "run_path"),
            ("code", "InteractiveInterpreter"),
            ("ctypes", "CDLL"),
            ("pickle", "loads"),
            ("_pickle", "loads"),
            ("dill", "loads"),
            ("marshal", "loads"),
            ("socket", "create_connection"),
            ("shutil", "rmtree"),
            ("sys", "modules"),
            ("uuid", "_popen"),
            ("pathlib", "Path.write_text"),
        ] {
            assert!(denied(m, n).is_some(), "{m}.{n} should be denied");
        }
    }

    #[test]
    fn data_names_are_not_denied() {
        for (m, n) in [
            ("collections", "OrderedDict"),
            ("copyreg", "_reconstructor"),
            ("copyreg", "__newobj__"),
            ("_codecs", "encode"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy.random._pickle", "__generator_ctor"),
            ("pandas.core.frame", "DataFrame"),
            ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
            ("sklearn.linear_model._base", "LinearRegression"),
            ("uuid", "UUID"),
            ("pathlib", "PurePosixPath"),
            ("datetime", "datetime"),
            ("zoneinfo", "ZoneInfo._unpickle"),
            ("joblib.numpy_pickle", "NumpyArrayWrapper"),
            ("mypkg", "Status.test"),
            ("mypkg", "Outer.code"),
        ] {
            assert_eq!(denied(m, n), None, "{m}.{n} should not be denied");
        }
    }
}
