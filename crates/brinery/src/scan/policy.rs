//! What a pickle may reference and call: [`Policy`], built from [`Profile`]s and explicit names.
//!
//! A policy is a set of exact `(module, qualname)` pairs, each either callable or
//! reference-only ([`Access`]). There are no wildcards. The built-in profiles are data files
//! generated from the libraries' own inventories by `scripts/gen_profiles.py` and embedded in the
//! crate; the hard deny-list of [`super::deny`] is applied before any policy, so no profile and
//! no user entry can allow `os.system`, `numpy.load` or `builtins.eval`.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use super::machine::Special;

/// How a global may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// It may only appear as a value (passed as an argument, stored in a container).
    Ref,
    /// It may also be called: the target of REDUCE, NEWOBJ, NEWOBJ_EX, INST or OBJ, or the class
    /// whose instance receives state by BUILD.
    Call,
}

/// One of the built-in profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Profile {
    /// Standard-library data types: containers, datetime (with zoneinfo and timezone), decimal,
    /// fractions, uuid, collections, pure paths, ...
    StdlibData,
    /// numpy arrays, dtypes, scalars and random generators, with the `numpy.core` aliases.
    Numpy,
    /// pandas frames, series, indexes, extension arrays and their helpers, with old paths.
    Pandas,
    /// scikit-learn estimators and the helper types they hold.
    Sklearn,
}

impl Profile {
    /// The built-in profiles, in order; [`Policy::default`] uses all of them.
    pub const ALL: [Profile; 4] = [
        Profile::StdlibData,
        Profile::Numpy,
        Profile::Pandas,
        Profile::Sklearn,
    ];

    /// The name used on the command line and in Python: `stdlib-data`, `numpy`, `pandas`,
    /// `sklearn`.
    pub const fn name(self) -> &'static str {
        match self {
            Profile::StdlibData => "stdlib-data",
            Profile::Numpy => "numpy",
            Profile::Pandas => "pandas",
            Profile::Sklearn => "sklearn",
        }
    }

    /// The profile with this name (`stdlib` and `stdlib_data` are accepted for `stdlib-data`).
    pub fn from_name(name: &str) -> Option<Profile> {
        match name {
            "stdlib-data" | "stdlib_data" | "stdlib" => Some(Profile::StdlibData),
            "numpy" => Some(Profile::Numpy),
            "pandas" => Some(Profile::Pandas),
            "sklearn" | "scikit-learn" => Some(Profile::Sklearn),
            _ => None,
        }
    }

    /// The embedded data file of the profile.
    pub fn source(self) -> &'static str {
        match self {
            Profile::StdlibData => include_str!("profiles/stdlib-data.txt"),
            Profile::Numpy => include_str!("profiles/numpy.txt"),
            Profile::Pandas => include_str!("profiles/pandas.txt"),
            Profile::Sklearn => include_str!("profiles/sklearn.txt"),
        }
    }

    /// The entries of the profile, parsed once.
    pub fn entries(self) -> &'static HashMap<(&'static str, &'static str), Access> {
        static TABLES: [OnceLock<HashMap<(&'static str, &'static str), Access>>; 4] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        TABLES[self as usize].get_or_init(|| {
            let mut map = HashMap::new();
            // A line that does not parse is skipped here; `parse_profile` reports it, and a
            // test asserts that every line of every embedded profile parses.
            for (module, name, access) in parse_profile(self.source()).flatten() {
                let slot = map.entry((module, name)).or_insert(access);
                *slot = (*slot).max(access);
            }
            map
        })
    }
}

/// The entries of all built-in profiles in one table (the most permissive access of each).
fn all_entries() -> &'static HashMap<(&'static str, &'static str), Access> {
    static ALL: OnceLock<HashMap<(&'static str, &'static str), Access>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut map = HashMap::new();
        for p in Profile::ALL {
            for (&key, &access) in p.entries() {
                let slot = map.entry(key).or_insert(access);
                *slot = (*slot).max(access);
            }
        }
        map
    })
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A line of a profile file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} on line {line}")]
pub struct ProfileLineError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Parse a profile file: one `module<TAB>qualname<TAB>call|ref` entry per line, `#` comments and
/// blank lines ignored. Yields one result per entry line.
pub fn parse_profile(
    text: &str,
) -> impl Iterator<Item = Result<(&str, &str, Access), ProfileLineError>> {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            return None;
        }
        let err = |message: String| {
            Some(Err(ProfileLineError {
                line: i + 1,
                message,
            }))
        };
        let mut fields = line.split('\t');
        let (Some(module), Some(name), Some(access), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return err(format!(
                "expected module<TAB>qualname<TAB>call|ref, found {line:?}"
            ));
        };
        let access = match access {
            "call" => Access::Call,
            "ref" => Access::Ref,
            other => return err(format!("access must be call or ref, found {other:?}")),
        };
        if let Err(message) = check_module(module).and_then(|()| check_qualname(name)) {
            return err(message);
        }
        Some(Ok((module, name, access)))
    })
}

fn is_identifier(part: &str) -> bool {
    let mut chars = part.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

fn check_module(module: &str) -> Result<(), String> {
    if module.split('.').all(is_identifier) {
        Ok(())
    } else {
        Err(format!("module {module:?} is not a dotted identifier"))
    }
}

fn check_qualname(name: &str) -> Result<(), String> {
    if name.split('.').all(is_identifier) {
        Ok(())
    } else {
        Err(format!("name {name:?} is not a dotted identifier"))
    }
}

/// A name given to [`PolicyBuilder::allow_dotted`] that cannot be split into module and name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The name is not `module.name` or `module:qualname` made of identifiers.
    #[error("{0:?} is not a global name: use module.name or module:qualified.name")]
    BadName(String),
    /// An unknown profile name.
    #[error(
        "unknown profile {0:?}: the built-in profiles are stdlib-data, numpy, pandas, sklearn"
    )]
    UnknownProfile(String),
}

/// Split a user-given global name into `(module, qualname)`.
///
/// `module:qualname` is split at the colon (as `pkgutil.resolve_name` does), so nested classes
/// can be named exactly: `mypkg.models:Outer.Inner`. Without a colon the name is split at its
/// last dot: `mypkg.models.Model` is `("mypkg.models", "Model")`, the longest module prefix,
/// which is what a pickler writes for a top-level class or function. Entries are exact: the
/// scan matches the pair, not a prefix.
///
/// ```
/// use brinery::scan::split_global_name;
/// assert_eq!(split_global_name("mypkg.models.Model").unwrap(), ("mypkg.models".into(), "Model".into()));
/// assert_eq!(split_global_name("mypkg:Outer.Inner").unwrap(), ("mypkg".into(), "Outer.Inner".into()));
/// assert!(split_global_name("Model").is_err());
/// ```
pub fn split_global_name(dotted: &str) -> Result<(String, String), PolicyError> {
    let bad = || PolicyError::BadName(dotted.to_owned());
    let (module, name) = match dotted.split_once(':') {
        Some(pair) => pair,
        None => dotted.rsplit_once('.').ok_or_else(bad)?,
    };
    check_module(module).map_err(|_| bad())?;
    check_qualname(name).map_err(|_| bad())?;
    Ok((module.to_owned(), name.to_owned()))
}

/// What a pickle may reference and call.
///
/// ```
/// use brinery::scan::{Access, Policy, Profile};
/// let policy = Policy::builder()
///     .profile(Profile::StdlibData)
///     .allow_call("mypkg.models", "Model")
///     .allow_dotted("mypkg.models.Helper")
///     .unwrap()
///     .build();
/// assert_eq!(policy.lookup("mypkg.models", "Model"), Some(Access::Call));
/// assert_eq!(policy.lookup("mypkg.models", "Other"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    profiles: Vec<Profile>,
    extra: HashMap<(String, String), Access>,
    /// The globals [`Policy::resolve`] let through (a pure function of the policy and the names).
    resolved: ResolveCache,
}

/// A global that a policy lets through, with everything a scan or a safe load decides from its
/// names alone (see [`Policy::resolve`]).
#[derive(Debug, Clone)]
pub struct Resolved {
    /// How it may be used.
    pub access: Access,
    /// `module:qualname`, shared by every load that resolves it.
    pub dotted: Arc<str>,
    /// Whether it is an unpickle helper whose arguments have rules ([`super::helper_arguments`]).
    pub has_argument_rules: bool,
    /// Its special role in the scan.
    pub(crate) special: Special,
}

/// How many globals a policy's [`Policy::resolve`] cache keeps (made-up names cannot grow it
/// beyond this).
const RESOLVED_CACHED: usize = 4096;

type ResolvedMap = HashMap<u64, Vec<(Box<str>, Box<str>, Resolved)>, BuildHasherDefault<KeyHasher>>;

/// The cache of [`Policy::resolve`]: part of a policy's value only as a memo of its verdicts, so
/// it compares equal always, and a clone starts empty.
#[derive(Default)]
struct ResolveCache(Mutex<ResolvedMap>);

impl Clone for ResolveCache {
    fn clone(&self) -> Self {
        ResolveCache::default()
    }
}

impl PartialEq for ResolveCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ResolveCache {}

impl fmt::Debug for ResolveCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResolveCache")
    }
}

/// A hasher for keys that already are hashes ([`names_key`] of names): the key itself.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A hash of both names, eight bytes at a time (each name's length mixed in after it, so the
/// split between module and name counts): the key of a (module, name) pair in the scan's tables
/// (the machine's interned globals, the policy's and the deny-list's verdict caches). A hit is
/// always checked against the entry's names, so a collision only costs a lookup. (FNV-1a, one
/// byte at a time through a chained iterator, was ~10 instructions per byte, and every global
/// of a safe load hashes its names three times.)
pub(crate) fn names_key(module: &str, qualname: &str) -> u64 {
    names_key_bytes(module.as_bytes(), qualname.as_bytes())
}

/// [`names_key`] of names given as their UTF-8 bytes (the same key for the same text).
#[inline]
pub(crate) fn names_key_bytes(module: &[u8], qualname: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    #[inline(always)]
    fn absorb(mut h: u64, bytes: &[u8]) -> u64 {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        let len = bytes.len() as u64;
        let tail = u64::from_le_bytes(w) ^ len.rotate_right(8);
        (h ^ tail).wrapping_mul(K).rotate_left(29)
    }
    let h = absorb(absorb(0xcbf2_9ce4_8422_2325, module), qualname);
    // a final mix (murmur3's): the machine's intern table uses the key as its own hash
    let h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Default for Policy {
    /// All built-in profiles, nothing else.
    fn default() -> Self {
        Policy {
            profiles: Profile::ALL.to_vec(),
            extra: HashMap::new(),
            resolved: ResolveCache::default(),
        }
    }
}

impl Policy {
    /// A builder starting from nothing: no profile, no entry.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            policy: Policy::empty(),
        }
    }

    /// A policy that allows nothing (every global is a finding).
    pub fn empty() -> Policy {
        Policy {
            profiles: Vec::new(),
            extra: HashMap::new(),
            resolved: ResolveCache::default(),
        }
    }

    /// The profiles the policy includes.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// The entries added by name, beyond the profiles, sorted.
    pub fn extra_entries(&self) -> Vec<(&str, &str, Access)> {
        let mut out: Vec<_> = self
            .extra
            .iter()
            .map(|((m, n), a)| (m.as_str(), n.as_str(), *a))
            .collect();
        out.sort();
        out
    }

    /// How `module.qualname` may be used under this policy, before the deny-list: `None` when
    /// the policy does not list it.
    pub fn lookup(&self, module: &str, qualname: &str) -> Option<Access> {
        let mut best: Option<Access> = None;
        // the builder never lists a profile twice: all of them is the merged table, one lookup
        let merged = (self.profiles.len() == Profile::ALL.len()).then(all_entries);
        if let Some(table) = merged {
            best = table.get(&(module, qualname)).copied();
        }
        for profile in self.profiles.iter().filter(|_| merged.is_none()) {
            let table: &HashMap<(&str, &str), Access> = profile.entries();
            if let Some(&a) = table.get(&(module, qualname)) {
                best = best.max(Some(a));
            }
        }
        if !self.extra.is_empty() {
            if let Some(&a) = self.extra.get(&(module.to_owned(), qualname.to_owned())) {
                best = best.max(Some(a));
            }
        }
        best
    }

    /// `module.qualname` as written in a pickle, when this policy lets it through with no
    /// finding: its name within [`super::MAX_NAME_LEN`] and [`super::MAX_NAME_PARTS`], not on
    /// the deny-list, listed, and every step of its attribute chain listed too. `None` for
    /// anything else, and for `builtins.getattr` (whose use is checked where it is called):
    /// the caller then takes its own full path, which names the finding. The names are
    /// resolved as written (a caller applies the Python 2 name mapping first, or takes its
    /// full path for names that have one). The verdicts are a pure function of the policy and
    /// the names, and are cached with the policy (up to 4096 names).
    pub fn resolve(&self, module: &str, qualname: &str) -> Option<Resolved> {
        self.resolve_keyed(names_key(module, qualname), module, qualname)
    }

    /// [`Self::resolve`] with the names' [`names_key`] at hand.
    pub(crate) fn resolve_keyed(&self, key: u64, module: &str, qualname: &str) -> Option<Resolved> {
        if let Some(r) = self.resolved_cached(key, module.as_bytes(), qualname.as_bytes()) {
            return Some(r);
        }
        let special = super::calls::special(module, qualname);
        if special == Special::Getattr
            || super::name_out_of_bounds(module, qualname).is_some()
            || super::deny::denied(module, qualname).is_some()
        {
            return None;
        }
        let access = self.lookup(module, qualname)?;
        let unlisted = qualname
            .match_indices('.')
            .any(|(i, _)| self.lookup(module, &qualname[..i]).is_none());
        if unlisted {
            return None;
        }
        let resolved = Resolved {
            access,
            dotted: format!("{module}:{qualname}").into(),
            has_argument_rules: !super::helper_arguments(module, qualname).is_empty(),
            special,
        };
        if let Ok(mut map) = self.resolved.0.lock() {
            if map.len() < RESOLVED_CACHED {
                map.entry(key).or_default().push((
                    module.into(),
                    qualname.into(),
                    resolved.clone(),
                ));
            }
        }
        Some(resolved)
    }

    /// The cached verdict of a global that [`Self::resolve_keyed`] already let through, looked
    /// up by the names' bytes and [`names_key_bytes`]. The cache holds only names that passed
    /// every check (valid text within the name bounds, not denied, listed at every step), so a
    /// caller holding raw bytes needs neither to decode nor to check them again when they match.
    #[inline]
    pub(crate) fn resolved_cached(
        &self,
        key: u64,
        module: &[u8],
        qualname: &[u8],
    ) -> Option<Resolved> {
        let map = self.resolved.0.lock().ok()?;
        map.get(&key)?
            .iter()
            .find(|(m, n, _)| m.as_bytes() == module && n.as_bytes() == qualname)
            .map(|(_, _, r)| r.clone())
    }

    /// How `module.qualname` may be used, after the deny-list: `None` when it is denied or not
    /// listed.
    pub fn allows(&self, module: &str, qualname: &str) -> Option<Access> {
        if super::deny::denied(module, qualname).is_some() {
            return None;
        }
        self.lookup(module, qualname)
    }
}

/// Builder for [`Policy`].
#[derive(Debug, Clone)]
pub struct PolicyBuilder {
    policy: Policy,
}

impl PolicyBuilder {
    /// Include a built-in profile.
    pub fn profile(mut self, profile: Profile) -> Self {
        if !self.policy.profiles.contains(&profile) {
            self.policy.profiles.push(profile);
        }
        self
    }

    /// Include every built-in profile.
    pub fn all_profiles(mut self) -> Self {
        for p in Profile::ALL {
            self = self.profile(p);
        }
        self
    }

    /// Include a built-in profile by name.
    pub fn profile_name(self, name: &str) -> Result<Self, PolicyError> {
        let profile =
            Profile::from_name(name).ok_or_else(|| PolicyError::UnknownProfile(name.to_owned()))?;
        Ok(self.profile(profile))
    }

    /// Allow `module.qualname` to be called (and referenced).
    pub fn allow_call(self, module: &str, qualname: &str) -> Self {
        self.allow(module, qualname, Access::Call)
    }

    /// Allow `module.qualname` to be referenced as a value, not called.
    pub fn allow_ref(self, module: &str, qualname: &str) -> Self {
        self.allow(module, qualname, Access::Ref)
    }

    /// Allow `module.qualname` with the given access (the wider access wins when a name is
    /// allowed twice). A nested name (`Outer.Inner`) also lists the steps of its attribute
    /// chain (`Outer`) as references, since the scan wants every step listed: naming the
    /// nested class is what a user who trusts it can be asked for.
    pub fn allow(mut self, module: &str, qualname: &str, access: Access) -> Self {
        for (i, _) in qualname.match_indices('.') {
            self.policy
                .extra
                .entry((module.to_owned(), qualname[..i].to_owned()))
                .or_insert(Access::Ref);
        }
        let slot = self
            .policy
            .extra
            .entry((module.to_owned(), qualname.to_owned()))
            .or_insert(access);
        *slot = (*slot).max(access);
        self
    }

    /// Allow a dotted name to be called, split by [`split_global_name`].
    pub fn allow_dotted(self, dotted: &str) -> Result<Self, PolicyError> {
        let (module, name) = split_global_name(dotted)?;
        Ok(self.allow(&module, &name, Access::Call))
    }

    /// Allow a dotted name to be referenced only, split by [`split_global_name`].
    pub fn allow_dotted_ref(self, dotted: &str) -> Result<Self, PolicyError> {
        let (module, name) = split_global_name(dotted)?;
        Ok(self.allow(&module, &name, Access::Ref))
    }

    /// Finish.
    pub fn build(mut self) -> Policy {
        self.policy.resolved = ResolveCache::default();
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_name_allowed_by_the_user_lists_its_chain_as_references() {
        let p = Policy::builder()
            .allow_dotted("mypkg.models:Model.Inner")
            .unwrap()
            .build();
        assert_eq!(p.lookup("mypkg.models", "Model.Inner"), Some(Access::Call));
        assert_eq!(p.lookup("mypkg.models", "Model"), Some(Access::Ref));
        assert!(p.resolve("mypkg.models", "Model.Inner").is_some());
        // a step allowed wider before keeps its access
        let q = Policy::builder()
            .allow_call("mypkg.models", "Model")
            .allow_call("mypkg.models", "Model.Inner")
            .build();
        assert_eq!(q.lookup("mypkg.models", "Model"), Some(Access::Call));
    }

    #[test]
    fn resolve_lets_through_only_what_the_scan_would_and_caches_per_policy() {
        let p = Policy::default();
        for _ in 0..2 {
            // the second round answers from the cache: the same verdicts
            let r = p.resolve("collections", "OrderedDict").expect("listed");
            assert_eq!(r.access, Access::Call);
            assert_eq!(&*r.dotted, "collections:OrderedDict");
            assert!(p.resolve("posix", "system").is_none(), "denied");
            assert!(p.resolve("builtins", "eval").is_none(), "denied");
            assert!(
                p.resolve("builtins", "getattr").is_none(),
                "checked where used"
            );
            assert!(p.resolve("argparse", "Namespace").is_none(), "not listed");
            assert!(p.resolve("collections", "OrderedDict.fromkeys").is_none());
            let long = "a".repeat(crate::scan::MAX_NAME_LEN + 1);
            assert!(p.resolve(&long, "x").is_none(), "out of bounds");
        }
        // a verdict cached for one policy is never another policy's
        let allowing = Policy::builder()
            .all_profiles()
            .allow_call("argparse", "Namespace")
            .build();
        assert!(allowing.resolve("argparse", "Namespace").is_some());
        assert!(p.resolve("argparse", "Namespace").is_none());
        let narrow = Policy::builder().profile(Profile::StdlibData).build();
        assert!(p.resolve("numpy", "dtype").is_some());
        assert!(narrow.resolve("numpy", "dtype").is_none());
        // a clone starts with an empty cache and the same verdicts
        assert!(allowing.clone().resolve("argparse", "Namespace").is_some());
        assert_eq!(allowing.clone(), allowing);
    }

    #[test]
    fn every_line_of_every_embedded_profile_parses() {
        for p in Profile::ALL {
            for entry in parse_profile(p.source()) {
                if let Err(e) = entry {
                    panic!("profiles/{}.txt: {e}", p.name());
                }
            }
        }
    }

    #[test]
    fn embedded_profiles_contain_no_denied_name() {
        let mut bad = Vec::new();
        for p in Profile::ALL {
            for (m, n, _) in parse_profile(p.source()).flatten() {
                if let Some(why) = crate::scan::deny::denied(m, n) {
                    bad.push(format!("{}: {m}.{n} ({why})", p.name()));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "profiles list denied names:\n{}",
            bad.join("\n")
        );
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let errs: Vec<_> =
            parse_profile("# c\n\nos\tsystem\tcall\nx\ty\tmaybe\nbad line\na b\tc\tref\n")
                .filter_map(Result::err)
                .map(|e| e.to_string())
                .collect();
        assert_eq!(
            errs,
            vec![
                "access must be call or ref, found \"maybe\" on line 4",
                "expected module<TAB>qualname<TAB>call|ref, found \"bad line\" on line 5",
                "module \"a b\" is not a dotted identifier on line 6",
            ]
        );
    }

    #[test]
    fn wider_access_wins_and_names_are_exact() {
        let p = Policy::builder()
            .allow_ref("m", "A")
            .allow_call("m", "A")
            .allow_ref("m", "B")
            .build();
        assert_eq!(p.lookup("m", "A"), Some(Access::Call));
        assert_eq!(p.lookup("m", "B"), Some(Access::Ref));
        assert_eq!(p.lookup("m", "B.x"), None);
        assert_eq!(p.lookup("m.B", "x"), None);
        assert!(Policy::builder().profile_name("nope").is_err());
        assert_eq!(
            split_global_name("a.b:C.D").unwrap(),
            ("a.b".to_owned(), "C.D".to_owned())
        );
        assert!(split_global_name("a.b.").is_err());
        assert!(split_global_name("a b.c").is_err());
    }
}
