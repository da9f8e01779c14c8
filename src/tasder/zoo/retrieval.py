"""A labelled text-retrieval task built from the docstrings of Python and the project's dependencies.

Why this task: all-MiniLM-L6-v2 is a sentence-embedding model, so the honest way to measure
what a transformation (TASD, pruning) costs it is an embedding task with labels, and the only
real labelled text guaranteed to be on an offline machine is the documentation installed with
Python and with the packages tasder depends on.

**Data.** The docstrings of a fixed list of standard-library modules (:data:`STDLIB_MODULES`) and
of modules of numpy, torch, scikit-learn and transformers (:data:`PACKAGE_MODULES`; a package
that is not installed is skipped), and of the public functions, classes and methods *defined*
in them (re-exports skipped), visited in sorted order. A docstring is cleaned
(:func:`inspect.cleandoc`, a leading C signature line such as ``sub(pattern, repl, string) -> str``
dropped, whitespace collapsed) and split into

* the **query**: its first sentence (20–200 characters, at least 4 words), and
* the **target**: the rest of the docstring (at least 40 characters).

Pairs whose query or target repeats an earlier one are dropped (inherited or copied docstrings),
so every query has exactly one correct target. The pool (4,985 pairs on CPython 3.11.7 with the
pinned packages; the count depends on the Python and package versions, which the cache key and
the metadata record, so scores compare only within one environment) is shuffled with a fixed
seed and cut into disjoint splits (calibration, validation, test: see the ``minilm`` zoo entry).

**Metric.** Each query and each target is embedded the way sentence-transformers does for this
model: the encoder's last hidden state, mean-pooled over the attention mask, then L2-normalised
(queries truncated to 64 tokens, targets to their first 32). Each query is scored against a
*candidate pool* of :data:`DEFAULT_CANDIDATES` targets of its split — its own and 19 others drawn
with a fixed seed, the "1 in N" recall of response-selection benchmarks — by cosine similarity;
the task reports **recall@1** (the correct target ranks first in its pool) and the mean
reciprocal rank (MRR), and the hit of every query (:attr:`RetrievalScores.hits`, what a search's
paired confidence bound needs). A tie with the correct target counts against it, and non-finite
similarities count as the lowest, so a broken model scores low instead of high. Without pools
(``candidates=None``) every query ranks all targets of its split.

Why pools of 20 and 32-token targets: a search needs slack in *examples* (1 % of the original's
hits ≥ 10 on the validation split), and one evaluation embeds every query and target of the
split. Recall among all N targets falls as N grows (0.32 at N = 1,500), so the hits cost many
texts; a fixed pool keeps recall@1 at ≈ 0.75 whatever the split size, and the first 32 tokens of a
target keep most of what identifies it (recall@1 0.75 vs 0.89 at 128 tokens, in a third of the
tokens). Hits per embedded token, the currency of a search, are 2× those of 128-token targets.

The pool is built once per environment and cached as JSON (:mod:`tasder.zoo.cache`).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import platform
import random
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "DEFAULT_CANDIDATES",
    "DEFAULT_TASK_SIZE",
    "PACKAGE_MODULES",
    "STDLIB_MODULES",
    "DocstringPair",
    "RetrievalScores",
    "RetrievalTask",
    "all_modules",
    "build_docstring_pairs",
    "candidate_pools",
    "embed",
    "evaluate_retrieval",
    "load_docstring_pairs",
    "split_docstring",
]

#: The modules whose docstrings make the task: pure-Python or always-built modules with no
#: import side effects (no GUI, no ``this``/``antigravity``), sorted. A module missing from a
#: particular Python build is skipped (and listed in the task's metadata).
STDLIB_MODULES: tuple[str, ...] = tuple(sorted((
    "abc", "argparse", "array", "ast", "asyncio", "base64", "bdb", "binascii", "bisect", "builtins",
    "bz2", "calendar", "cmath", "cmd", "codecs", "codeop", "collections", "collections.abc",
    "colorsys", "compileall", "concurrent.futures", "configparser", "contextlib", "contextvars",
    "copy", "copyreg", "csv", "dataclasses", "datetime", "decimal", "difflib", "dis", "doctest",
    "email", "email.charset", "email.feedparser", "email.generator", "email.header",
    "email.headerregistry", "email.message", "email.mime.text", "email.parser", "email.policy",
    "email.utils", "enum", "faulthandler", "filecmp", "fileinput", "fnmatch", "fractions", "ftplib",
    "functools", "gc", "getopt", "getpass", "gettext", "glob", "graphlib", "gzip", "hashlib",
    "heapq", "hmac", "html", "html.parser", "http.client", "http.cookiejar", "http.cookies",
    "http.server", "imaplib", "importlib", "importlib.abc", "importlib.machinery",
    "importlib.metadata", "importlib.resources", "importlib.util", "inspect", "io", "ipaddress",
    "itertools", "json", "json.decoder", "json.encoder", "keyword", "linecache", "locale",
    "logging", "logging.config", "logging.handlers", "lzma", "mailbox", "marshal", "math",
    "mimetypes", "mmap", "modulefinder", "multiprocessing", "multiprocessing.connection",
    "multiprocessing.managers", "multiprocessing.pool", "multiprocessing.shared_memory", "netrc",
    "numbers", "operator", "optparse", "os", "os.path", "pathlib", "pdb", "pickle", "pickletools",
    "pkgutil", "platform", "plistlib", "poplib", "posixpath", "pprint", "profile", "pstats",
    "py_compile", "pyclbr", "pydoc", "queue", "quopri", "random", "re", "reprlib", "runpy",
    "sched", "secrets", "select", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib",
    "socket", "socketserver", "sqlite3", "ssl", "stat", "statistics", "string", "struct",
    "subprocess", "symtable", "sys", "sysconfig", "tabnanny", "tarfile", "tempfile", "textwrap",
    "threading", "time", "timeit", "token", "tokenize", "tomllib", "trace", "traceback",
    "tracemalloc", "types", "typing", "unicodedata", "unittest", "unittest.mock", "urllib.parse",
    "urllib.request", "urllib.robotparser", "uuid", "warnings", "wave", "weakref", "wsgiref.handlers",
    "wsgiref.simple_server", "wsgiref.util", "wsgiref.validate", "xml.dom", "xml.dom.minidom",
    "xml.dom.pulldom", "xml.etree.ElementTree", "xml.sax", "xml.sax.handler", "xml.sax.saxutils",
    "xml.sax.xmlreader", "xmlrpc.client", "xmlrpc.server", "zipfile", "zipimport", "zlib",
    "zoneinfo",
)))

#: Modules of the project's dependencies whose docstrings join the pool (per import name). They
#: are libraries tasder installs (transformers with the ``models`` extra, which MiniLM needs anyway).
PACKAGE_MODULES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy", "numpy.fft", "numpy.linalg", "numpy.ma", "numpy.polynomial", "numpy.polynomial.polynomial",
              "numpy.random", "numpy.lib.stride_tricks", "numpy.strings", "numpy.char", "numpy.rec",
              "numpy.exceptions"),
    "torch": ("torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.nn.utils",
              "torch.nn.utils.parametrize", "torch.linalg", "torch.fft", "torch.special", "torch.optim",
              "torch.optim.lr_scheduler", "torch.distributions", "torch.utils.data", "torch.autograd",
              "torch.autograd.functional", "torch.random", "torch.sparse", "torch.masked", "torch.func",
              "torch.amp", "torch.signal.windows", "torch.utils.checkpoint"),
    "sklearn": tuple("sklearn." + m for m in (
        "base", "calibration", "cluster", "compose", "covariance", "cross_decomposition", "datasets",
        "decomposition", "discriminant_analysis", "dummy", "ensemble", "exceptions", "feature_extraction",
        "feature_extraction.image", "feature_extraction.text", "feature_selection", "gaussian_process",
        "gaussian_process.kernels", "impute", "inspection", "isotonic", "kernel_approximation", "kernel_ridge",
        "linear_model", "manifold", "metrics", "metrics.pairwise", "mixture", "model_selection", "multiclass",
        "multioutput", "naive_bayes", "neighbors", "neural_network", "pipeline", "preprocessing",
        "random_projection", "semi_supervised", "svm", "tree", "utils", "utils.extmath", "utils.validation")),
    "transformers": tuple("transformers." + m for m in (
        "activations", "configuration_utils", "data.data_collator", "feature_extraction_utils",
        "generation.configuration_utils", "generation.utils", "hf_argparser", "image_processing_utils",
        "modeling_outputs", "modeling_utils", "models.bert.configuration_bert", "models.bert.modeling_bert",
        "optimization", "pipelines", "processing_utils", "tokenization_utils_base", "trainer", "trainer_callback",
        "training_args")),
}

#: Default size of the test split (the ``minilm`` zoo entry's ``evaluate``).
DEFAULT_TASK_SIZE = 2000
#: Candidate targets per query (its own and 19 others of the split).
DEFAULT_CANDIDATES = 20

_FORMAT_VERSION = 3  # bump whenever the collection code changes: it is part of the cache key
_SHUFFLE_SEED = 0
_QUERY_CHARS = (20, 200)
_MIN_QUERY_WORDS = 4
_MIN_TARGET_CHARS = 40
_MAX_TARGET_CHARS = 2000  # the target is truncated to 128 tokens anyway; keep the cache small
QUERY_MAX_TOKENS = 64
TARGET_MAX_TOKENS = 32
_POOL_SEED = 1  # the candidate pools of a task

_SIGNATURE_LINE = re.compile(r"^[\w.]+\(.*\)\s*(->.*)?$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`'\"(*])")


@dataclass(frozen=True)
class DocstringPair:
    """One labelled example: ``query`` (first sentence) should retrieve ``target`` (the rest)."""

    source: str  # qualified name of the documented object, e.g. "json.dumps"
    query: str
    target: str


@dataclass(frozen=True)
class RetrievalScores:
    """Scores of one evaluation: recall@1 and MRR over ``n`` queries; ``hits`` holds each query's hit@1
    (1.0 when its target ranks first among its candidates, else 0.0), float64, in query order."""

    recall_at_1: float
    mrr: float
    n: int
    hits: torch.Tensor | None = None


def split_docstring(doc: str) -> tuple[str, str] | None:
    """``(first sentence, rest)`` of a raw docstring, or None if it does not make a good pair."""
    lines = inspect.cleandoc(doc).splitlines()
    while lines and (not lines[0].strip() or _SIGNATURE_LINE.match(lines[0].strip())):
        lines = lines[1:]
    text = "\n".join(lines).strip()
    if not text:
        return None
    first_paragraph, _, after = text.partition("\n\n")
    first_paragraph = " ".join(first_paragraph.split())
    parts = _SENTENCE_END.split(first_paragraph, maxsplit=1)
    query = parts[0].strip()
    target = " ".join(" ".join(parts[1:]).split() + after.split()).strip()
    if not _QUERY_CHARS[0] <= len(query) <= _QUERY_CHARS[1] or len(query.split()) < _MIN_QUERY_WORDS:
        return None
    if len(target) < _MIN_TARGET_CHARS:
        return None
    return query, target[:_MAX_TARGET_CHARS]


def _belongs_to(obj: object, modname: str) -> bool:
    """Whether ``obj`` is defined by ``modname``: in it, in a submodule, or in a private
    (``_``-prefixed, often C) implementation module it re-exports (``_io``, ``posix``, ``_socket``)."""
    defined_in = getattr(obj, "__module__", None)
    if not isinstance(defined_in, str):
        return False
    return (
        defined_in == modname
        or defined_in.startswith(modname + ".")
        or defined_in.lstrip("_").split(".")[0] in (modname.split(".")[-1], "posix", "nt")
        or defined_in.startswith("_")
    )


def _documented_objects(module: Any, modname: str) -> Iterator[tuple[str, object]]:
    """``(qualified name, object)`` for the module and its public objects defined in it, sorted."""
    yield modname, module
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or not _belongs_to(obj, modname):
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        yield f"{modname}.{name}", obj
        if inspect.isclass(obj):
            for attr, member in sorted(vars(obj).items()):
                if attr.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                code = member.fget if isinstance(member, property) else member
                # Methods must come from the same place as their class: other libraries patch
                # stdlib classes (transformers adds logging.Logger.info_once), and the pool must
                # not depend on what else was imported.
                # C method descriptors have no __module__: they are the class's own.
                if inspect.isroutine(code) and (
                    getattr(code, "__module__", None) is None or _belongs_to(code, modname)
                ):
                    yield f"{modname}.{name}.{attr}", member


def all_modules() -> tuple[str, ...]:
    """The standard-library modules, then every package module, the order the pool is built in."""
    return STDLIB_MODULES + tuple(m for mods in PACKAGE_MODULES.values() for m in mods)


def _package_versions() -> dict[str, str | None]:
    """The installed version of each package the pool reads (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    dists = {"numpy": "numpy", "torch": "torch", "sklearn": "scikit-learn", "transformers": "transformers"}
    out: dict[str, str | None] = {}
    for name, dist in dists.items():
        try:
            out[name] = version(dist)
        except PackageNotFoundError:
            out[name] = None
    return out


def build_docstring_pairs(modules: Sequence[str] = STDLIB_MODULES) -> tuple[list[DocstringPair], list[str]]:
    """Collect the pool of pairs from ``modules`` (sorted order, duplicates dropped), unshuffled.

    Returns the pairs and the names of the modules that could not be imported.
    """
    pairs: list[DocstringPair] = []
    seen_queries: set[str] = set()
    seen_targets: set[str] = set()
    missing: list[str] = []
    seen_objects: set[int] = set()  # a re-exported object counts once, under the first module
    # Some modules and attributes warn (deprecations) or print on import or access (typing.io);
    # neither belongs in our output.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for modname in sorted(modules):
            try:
                module = importlib.import_module(modname)
            except Exception:
                missing.append(modname)
                continue
            for qualname, obj in _documented_objects(module, modname):
                if id(obj) in seen_objects:
                    continue
                seen_objects.add(id(obj))
                doc = getattr(obj, "__doc__", None)
                if not isinstance(doc, str):
                    continue
                split = split_docstring(doc)
                if split is None:
                    continue
                query, target = split
                q_key, t_key = query.lower(), target.lower()
                if q_key in seen_queries or t_key in seen_targets:
                    continue
                seen_queries.add(q_key)
                seen_targets.add(t_key)
                pairs.append(DocstringPair(qualname, query, target))
    return pairs, missing


def load_docstring_pairs() -> tuple[list[DocstringPair], dict[str, Any]]:
    """The shuffled pool of pairs (cached per Python version) and its metadata."""
    from tasder.zoo.cache import cached_json

    recipe = {
        "format": _FORMAT_VERSION,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "packages": _package_versions(),
        "modules": list(all_modules()),
        "seed": _SHUFFLE_SEED,
        "query_chars": list(_QUERY_CHARS),
        "min_query_words": _MIN_QUERY_WORDS,
        "min_target_chars": _MIN_TARGET_CHARS,
        "max_target_chars": _MAX_TARGET_CHARS,
    }

    def build() -> dict[str, Any]:
        pairs, missing = build_docstring_pairs(all_modules())
        random.Random(_SHUFFLE_SEED).shuffle(pairs)
        return {
            "recipe": recipe,
            "missing_modules": missing,
            "pairs": [[p.source, p.query, p.target] for p in pairs],
        }

    doc = cached_json("docstrings", recipe, build)
    if not isinstance(doc, Mapping) or doc.get("recipe") != recipe or not isinstance(doc.get("pairs"), list):
        raise ValueError("the cached docstring data set does not match its recipe")  # pragma: no cover
    pairs = [DocstringPair(str(s), str(q), str(t)) for s, q, t in doc["pairs"]]
    meta = {"python": recipe["python"], "packages": recipe["packages"], "pool_size": len(pairs),
            "missing_modules": list(doc["missing_modules"])}
    return pairs, meta


# ---------------------------------------------------------------------------------------------
# Embedding and scoring
# ---------------------------------------------------------------------------------------------


def _last_hidden_state(output: object) -> torch.Tensor:
    """The token embeddings from whatever a BERT-like forward returns (ModelOutput, tuple, tensor)."""
    hidden = getattr(output, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    if isinstance(output, Mapping) and isinstance(output.get("last_hidden_state"), torch.Tensor):
        return output["last_hidden_state"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError(f"cannot find token embeddings in a model output of type {type(output).__name__}")


def tokenize_batches(
    tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 64
) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Tokenized batches of ``texts`` sorted by length (little padding), with their original indices."""
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        batches.append((torch.tensor(idx), {k: v for k, v in enc.items()}))
    return batches


@torch.inference_mode()
def embed(model: nn.Module, batches: Sequence[tuple[torch.Tensor, Mapping[str, torch.Tensor]]]) -> torch.Tensor:
    """Mean-pooled (over the attention mask), L2-normalised embeddings, in the original text order."""
    was_training = model.training
    model.eval()
    try:
        total = sum(len(idx) for idx, _ in batches)
        out: torch.Tensor | None = None
        for idx, batch in batches:
            hidden = _last_hidden_state(model(**batch)).float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            if out is None:
                out = torch.empty(total, pooled.shape[-1])
            out[idx] = pooled
    finally:
        model.train(was_training)
    return out if out is not None else torch.empty(0, 0)


def candidate_pools(n: int, candidates: int | None, seed: int = _POOL_SEED) -> torch.Tensor | None:
    """(n, P) target indices per query, its own first and P − 1 others drawn without replacement with
    ``seed``; None for ``candidates=None`` (every target); P = min(candidates, n)."""
    if candidates is None:
        return None
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ValueError(f"`candidates` must be a positive integer or None; got {candidates!r}")
    p = min(candidates, n)
    g = torch.Generator().manual_seed(seed)
    pools = torch.empty(n, p, dtype=torch.long)
    for i in range(n):
        others = torch.randperm(n - 1, generator=g)[: p - 1]
        pools[i, 0] = i
        pools[i, 1:] = others + (others >= i).long()  # skip the query's own target
    return pools


def score_embeddings(queries: torch.Tensor, targets: torch.Tensor, pools: torch.Tensor | None = None
                     ) -> RetrievalScores:
    """Recall@1, MRR and per-query hits of query ``i`` retrieving target ``i`` (cosine), among the
    targets ``pools[i]`` (its own first) or, without pools, among all targets."""
    if pools is None:
        sims = queries @ targets.T
        own = torch.arange(len(queries))
    else:
        sims = torch.einsum("nd,npd->np", queries, targets[pools])
        own = torch.zeros(len(queries), dtype=torch.long)
    sims = torch.where(torch.isfinite(sims), sims, torch.full_like(sims, -torch.inf))
    correct = sims.gather(1, own.unsqueeze(1))
    # rank = 1 + how many candidates score at least as high (ties count against the correct one)
    ranks = (sims >= correct).sum(dim=1).clamp_min(1).float()
    ranks = torch.where(torch.isfinite(correct.squeeze(1)), ranks, torch.full_like(ranks, float(sims.shape[1])))
    n = len(ranks)
    hits = (ranks == 1).double()
    return RetrievalScores(
        recall_at_1=float(hits.mean()) if n else 0.0,
        mrr=float((1.0 / ranks).mean()) if n else 0.0,
        n=n,
        hits=hits,
    )


@dataclass(frozen=True)
class RetrievalTask:
    """``n`` docstring pairs, tokenized once, with each query's candidate pool (None: all targets),
    ready to score any model with BERT's forward signature."""

    pairs: list[DocstringPair]
    query_batches: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]
    target_batches: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]
    pools: torch.Tensor | None = None

    @classmethod
    def build(cls, tokenizer: Any, pairs: Sequence[DocstringPair], batch_size: int = 64,
              candidates: int | None = DEFAULT_CANDIDATES, seed: int = _POOL_SEED) -> RetrievalTask:
        return cls(
            pairs=list(pairs),
            query_batches=tokenize_batches(tokenizer, [p.query for p in pairs], QUERY_MAX_TOKENS, batch_size),
            target_batches=tokenize_batches(tokenizer, [p.target for p in pairs], TARGET_MAX_TOKENS, batch_size),
            pools=candidate_pools(len(pairs), candidates, seed),
        )

    @property
    def tokens(self) -> int:
        """Padded tokens one evaluation pushes through the encoder (what it costs)."""
        return sum(int(b["input_ids"].numel()) for _, b in self.query_batches + self.target_batches)

    def evaluate(self, model: nn.Module) -> RetrievalScores:
        """Embed every query and target with ``model`` and score the retrieval."""
        return score_embeddings(embed(model, self.query_batches), embed(model, self.target_batches), self.pools)


def evaluate_retrieval(model: nn.Module, tokenizer: Any, n: int = DEFAULT_TASK_SIZE,
                       candidates: int | None = DEFAULT_CANDIDATES) -> RetrievalScores:
    """Recall@1 and MRR of ``model`` on the first ``n`` pairs of the shuffled pool."""
    pairs, _ = load_docstring_pairs()
    if not 1 <= n <= len(pairs):
        raise ValueError(f"n must be in [1, {len(pairs)}] (the pool size here), got {n}")
    return RetrievalTask.build(tokenizer, pairs[:n], candidates=candidates).evaluate(model)
