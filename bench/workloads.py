"""The objects the Python benchmark measures, and the contenders that serialize them.

- pyperformance's ``bm_pickle`` objects, reproduced exactly from its ``run_benchmark.py``
  (pyperformance 1.14: ``DICT``, ``TUPLE``, ``DICT_GROUP`` made by ``mutate_dict`` with
  ``random.Random(5)``, ``LIST``, ``MICRO_DICT``) and its loop shapes (20 calls per object for
  ``pickle``/``unpickle``, 10 for the lists, 5 for ``pickle_dict``);
- the data-science objects: records (a list of dicts), a DataFrame, a float64 array and a fitted
  RandomForest, each built deterministically from a seed.
"""

from __future__ import annotations

import datetime
import io
import os
import pickle
import random
import sys
import time

PROTOCOL = pickle.HIGHEST_PROTOCOL

# --------------------------------------------------------------------------------------------
# pyperformance bm_pickle (data and loops copied verbatim from pyperformance's
# bm_pickle/run_benchmark.py, kept as written there: `ruff format` leaves them alone)

# fmt: off

DICT = {
    'ads_flags': 0,
    'age': 18,
    'birthday': datetime.date(1980, 5, 7),
    'bulletin_count': 0,
    'comment_count': 0,
    'country': 'BR',
    'encrypted_id': 'G9urXXAJwjE',
    'favorite_count': 9,
    'first_name': '',
    'flags': 412317970704,
    'friend_count': 0,
    'gender': 'm',
    'gender_for_display': 'Male',
    'id': 302935349,
    'is_custom_profile_icon': 0,
    'last_name': '',
    'locale_preference': 'pt_BR',
    'member': 0,
    'tags': ['a', 'b', 'c', 'd', 'e', 'f', 'g'],
    'profile_foo_id': 827119638,
    'secure_encrypted_id': 'Z_xxx2dYx3t4YAdnmfgyKw',
    'session_number': 2,
    'signup_id': '201-19225-223',
    'status': 'A',
    'theme': 1,
    'time_created': 1225237014,
    'time_updated': 1233134493,
    'unread_message_count': 0,
    'user_group': '0',
    'username': 'collinwinter',
    'play_count': 9,
    'view_count': 7,
    'zip': ''}

TUPLE = (
    [265867233, 265868503, 265252341, 265243910, 265879514,
     266219766, 266021701, 265843726, 265592821, 265246784,
     265853180, 45526486, 265463699, 265848143, 265863062,
     265392591, 265877490, 265823665, 265828884, 265753032], 60)


def mutate_dict(orig_dict, random_source):
    new_dict = dict(orig_dict)
    for key, value in new_dict.items():  # noqa: B007 (verbatim from pyperformance)
        rand_val = random_source.random() * sys.maxsize
        if isinstance(key, (int, bytes, str)):
            new_dict[key] = type(key)(rand_val)
    return new_dict


random_source = random.Random(5)  # Fixed seed.
DICT_GROUP = [mutate_dict(DICT, random_source) for _ in range(3)]

LIST = [[list(range(10)), list(range(10))] for _ in range(10)]

MICRO_DICT = dict((key, dict.fromkeys(range(10))) for key in range(100))


# The loop bodies are unrolled exactly as pyperformance unrolls them: per-call overhead is what
# these workloads measure, so the calling code must be the same. Each function returns the
# seconds of `loops` outer iterations; pyperformance divides by loops * inner_loops.

def bench_pickle(loops, dumps, protocol):
    range_it = range(loops)
    objs = (DICT, TUPLE, DICT_GROUP)
    t0 = _clock()
    for _ in range_it:
        for obj in objs:
            # 20 dumps
            dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol)  # noqa: E702
            dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol)  # noqa: E702
            dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol)  # noqa: E702
            dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol)  # noqa: E702
            dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol)  # noqa: E702
    return _clock() - t0


def bench_unpickle(loops, loads, protocol):
    pickled_dict = pickle.dumps(DICT, protocol)
    pickled_tuple = pickle.dumps(TUPLE, protocol)
    pickled_dict_group = pickle.dumps(DICT_GROUP, protocol)
    range_it = range(loops)
    objs = (pickled_dict, pickled_tuple, pickled_dict_group)
    t0 = _clock()
    for _ in range_it:
        for obj in objs:
            # 20 loads dict
            loads(obj); loads(obj); loads(obj); loads(obj); loads(obj)  # noqa: E702
            loads(obj); loads(obj); loads(obj); loads(obj); loads(obj)  # noqa: E702
            loads(obj); loads(obj); loads(obj); loads(obj); loads(obj)  # noqa: E702
            loads(obj); loads(obj); loads(obj); loads(obj); loads(obj)  # noqa: E702
    return _clock() - t0


def bench_pickle_list(loops, dumps, protocol):
    range_it = range(loops)
    obj = LIST
    t0 = _clock()
    for _ in range_it:
        # 10 dumps list
        dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol)  # noqa: E702
        dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol)  # noqa: E702
        dumps(obj, protocol); dumps(obj, protocol)  # noqa: E702
    return _clock() - t0


def bench_unpickle_list(loops, loads, protocol):
    pickled_list = pickle.dumps(LIST, protocol)
    range_it = range(loops)
    t0 = _clock()
    for _ in range_it:
        # 10 loads list
        loads(pickled_list); loads(pickled_list); loads(pickled_list); loads(pickled_list)  # noqa: E702
        loads(pickled_list); loads(pickled_list); loads(pickled_list); loads(pickled_list)  # noqa: E702
        loads(pickled_list); loads(pickled_list)  # noqa: E702
    return _clock() - t0


def bench_pickle_dict(loops, dumps, protocol):
    range_it = range(loops)
    obj = MICRO_DICT
    t0 = _clock()
    for _ in range_it:
        # 5 dumps dict
        dumps(obj, protocol); dumps(obj, protocol); dumps(obj, protocol)  # noqa: E702
        dumps(obj, protocol); dumps(obj, protocol)  # noqa: E702
    return _clock() - t0
# fmt: on


def _clock():
    return CLOCK[0]()


def set_clock(fn):
    """The clock the micro workloads read (wall-clock by default; bench/run.py --clock cpu)."""
    CLOCK[0] = fn


CLOCK = [time.perf_counter]


#: name -> (function, inner_loops, "dumps" or "loads"): pyperformance's BENCHMARKS table.
MICRO = {
    "pickle": (bench_pickle, 20, "dumps"),
    "pickle_dict": (bench_pickle_dict, 5, "dumps"),
    "pickle_list": (bench_pickle_list, 10, "dumps"),
    "unpickle": (bench_unpickle, 20, "loads"),
    "unpickle_list": (bench_unpickle_list, 10, "loads"),
}

#: the objects each micro workload serializes (for byte-identity checks and instruction counts).
MICRO_OBJECTS = {
    "pickle": (DICT, TUPLE, DICT_GROUP),
    "pickle_dict": (MICRO_DICT,),
    "pickle_list": (LIST,),
    "unpickle": (DICT, TUPLE, DICT_GROUP),
    "unpickle_list": (LIST,),
}


def micro_contenders():
    """(name, dumps, loads) of the micro contenders: brinery, the C pickle, the pure-Python one."""
    import brinery

    return [
        ("brinery", brinery.dumps, brinery.loads),
        ("pickle", pickle.dumps, pickle.loads),
        ("pickle (pure Python)", pickle._dumps, pickle._loads),
    ]


# --------------------------------------------------------------------------------------------
# Data-science objects

COUNTRIES = ["BR", "US", "DE", "FR", "JP", "IN", "GB", "NG", "MX", "CA"]
TAGS = ["new", "vip", "beta", "churned", "trial", "admin", "mobile", "web"]


def make_records(n, seed=1):
    """A list of `n` dicts of ints, floats, strs (unique and shared), bools, None, short lists."""
    rng = random.Random(seed)
    out = []
    append = out.append
    for i in range(n):
        r = rng.random()
        append(
            {
                "id": i,
                "name": f"user-{i:07d}",
                "email": f"user{i}@example.com",
                "age": 18 + (i * 7919) % 70,
                "score": r * 100.0,
                "balance": round(rng.uniform(-1e4, 1e4), 2),
                "active": r > 0.3,
                "verified": (i % 3) == 0,
                "country": COUNTRIES[i % len(COUNTRIES)],
                "referrer": None if i % 4 else i // 2,
                "tags": [TAGS[(i + k) % len(TAGS)] for k in range(i % 4)],
                "scores": [round(r * k, 3) for k in range(3)],
            }
        )
    return out


def make_dataframe(n, seed=1):
    """A `n`-row DataFrame: float64, int64, object strings, category, tz-aware datetime, bool."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    cats = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return pd.DataFrame(
        {
            "price": rng.normal(100.0, 15.0, n),
            "quantity": rng.integers(0, 1_000_000, n, dtype=np.int64),
            "label": pd.Series([f"item-{i:07d}" for i in range(n)], dtype=object),
            "kind": pd.Categorical.from_codes(rng.integers(0, len(cats), n), categories=cats),
            "when": pd.date_range("2024-01-01", periods=n, freq="s", tz="Europe/Paris"),
            "flag": rng.random(n) < 0.5,
        }
    )


def make_array(nbytes, seed=1):
    """A float64 array of `nbytes` bytes, written in full (every page resident)."""
    import numpy as np

    n = max(1, nbytes // 8)
    arr = np.empty(n, dtype=np.float64)
    rng = np.random.default_rng(seed)
    chunk = 1 << 22
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        arr[start:stop] = rng.random(stop - start)
    return arr


def make_forest(trees, samples, cache_dir=None, seed=0):
    """A RandomForestClassifier of `trees` trees fitted on a synthetic classification problem.

    Fitting takes a while on two cores, so the fitted model is cached (as a stdlib pickle) in
    `cache_dir`, keyed by its parameters and scikit-learn's version.
    """
    import sklearn
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    path = None
    if cache_dir:
        path = os.path.join(cache_dir, f"forest-{trees}-{samples}-{seed}-sklearn{sklearn.__version__}.pkl")
        if os.path.exists(path):
            with open(path, "rb") as f:
                return pickle.load(f)
    x, y = make_classification(n_samples=samples, n_features=20, n_informative=10, random_state=seed)
    model = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=1).fit(x, y)
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = path + f".{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(model, f, PROTOCOL)
        os.replace(tmp, path)
    return model


def same_object(kind, a, b):
    """How a loaded object compares with the original: "exact", or what differs."""
    import numpy as np

    if kind == "records":
        ok = a == b
    elif kind == "dataframe":
        if a.equals(b) and list(a.dtypes) == list(b.dtypes):
            return "exact"
        import pandas as pd

        changed = [
            f"{col}: {a[col].dtype} -> {b[col].dtype}"
            for col in a.columns
            if col in b.columns and a[col].dtype != b[col].dtype
        ]
        try:
            pd.testing.assert_frame_equal(a, b, check_dtype=False, check_categorical=False)
        except AssertionError:
            return "VALUES DIFFER"
        return "same values; dtypes " + ", ".join(changed) if changed else "same values"
    elif kind == "array":
        ok = a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    elif kind == "forest":
        x = np.random.default_rng(3).normal(size=(200, a.n_features_in_))
        ok = np.array_equal(a.predict_proba(x), b.predict_proba(x))
    else:
        raise ValueError(kind)
    return "exact" if ok else "ROUND TRIP DIFFERS"


# --------------------------------------------------------------------------------------------
# Contenders for the data-science objects. Each has dumps(obj) -> bytes, loads(bytes) -> obj,
# dump(obj, binary file) and load(binary file) -> obj. Files are flushed and fsynced by the caller.


class Contender:
    """One way of serializing an object: in memory and to/from an open binary file."""

    def __init__(self, name, dumps, loads, dump=None, load=None):
        self.name = name
        self.dumps = dumps
        self.loads = loads
        self.dump = dump or (lambda obj, f: f.write(dumps(obj)))
        self.load = load or (lambda f: loads(f.read()))


def _via_bytesio(dump, load):
    def dumps(obj):
        bio = io.BytesIO()
        dump(obj, bio)
        return bio.getvalue()

    def loads(data):
        return load(io.BytesIO(data))

    return dumps, loads


def pickle_like(name, module):
    return Contender(
        name,
        lambda obj: module.dumps(obj, PROTOCOL),
        module.loads,
        lambda obj, f: module.dump(obj, f, PROTOCOL),
        module.load,
    )


def contenders_for(kind):
    """The contenders of a data-science workload, brinery and the stdlib first."""
    import brinery

    out = [pickle_like("brinery", brinery), pickle_like("pickle", pickle)]
    try:
        import cloudpickle

        out.append(
            Contender(
                "cloudpickle",
                lambda obj: cloudpickle.dumps(obj, PROTOCOL),
                cloudpickle.loads,
                lambda obj, f: cloudpickle.dump(obj, f, PROTOCOL),
                cloudpickle.load,
            )
        )
    except ImportError as e:
        out.append(_missing("cloudpickle", e))
    try:
        import joblib

        jdumps, jloads = _via_bytesio(lambda obj, f: joblib.dump(obj, f), joblib.load)
        out.append(Contender("joblib", jdumps, jloads, lambda obj, f: joblib.dump(obj, f), joblib.load))
    except ImportError as e:
        out.append(_missing("joblib", e))
    if kind == "records":
        try:
            import orjson

            out.append(Contender("orjson", orjson.dumps, orjson.loads))
        except ImportError as e:
            out.append(_missing("orjson", e))
        try:
            import msgspec

            enc, dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
            out.append(Contender("msgspec (msgpack)", enc.encode, dec.decode))
        except ImportError as e:
            out.append(_missing("msgspec (msgpack)", e))
    elif kind == "dataframe":
        try:
            import pandas as pd
            import pyarrow  # noqa: F401

            pq = _via_bytesio(lambda df, f: df.to_parquet(f), pd.read_parquet)
            out.append(Contender("parquet", *pq, lambda df, f: df.to_parquet(f), pd.read_parquet))
            fe = _via_bytesio(lambda df, f: df.to_feather(f), pd.read_feather)
            out.append(Contender("feather", *fe, lambda df, f: df.to_feather(f), pd.read_feather))
        except ImportError as e:
            out.append(_missing("parquet", e))
            out.append(_missing("feather", e))
    elif kind == "array":
        import numpy as np

        def save(a, f):
            np.save(f, a, allow_pickle=False)

        def load(f):
            return np.load(f, allow_pickle=False)

        out.append(Contender("numpy.save", *_via_bytesio(save, load), save, load))
    return out


def _missing(name, err):
    c = Contender(name, None, None, lambda obj, f: None, lambda f: None)
    c.missing = f"{type(err).__name__}: {err}"
    return c
