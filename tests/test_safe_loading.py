"""Checkpoint loading stays safe: safetensors or ``torch.load(weights_only=True)`` only.

The project's code (``src/``, ``training/``, ``scripts/``, ``benchmarks/``) is parsed and
every call that can execute code from a file is refused: ``torch.load`` without a literal
``weights_only=True``, ``pickle``/``dill``/``cloudpickle``/``joblib``/``marshal``/``shelve``
loads, ``numpy.load(allow_pickle=...)`` other than ``False``, ``torch.jit.load``,
``yaml.load`` and ``pandas.read_pickle``. The scanner is itself tested on snippets.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("src", "training", "scripts", "benchmarks")
PICKLERS = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
PICKLE_LOADS = {"load", "loads", "Unpickler", "open"}

# Deliberate, user-opted-in exceptions: (path, line text that must stay as it is, why).
ALLOWED = {
    (
        "src/avbridge/eval/panns.py",
        'obj = torch.load(str(p), map_location="cpu", weights_only=not trust_pickle)',
    ): "PANNs' released training checkpoints pickle sampler state; unsafe loading happens only "
    "with the explicit trust_pickle=True / --trust-pickle, documented as for trusted files",
}


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` of a Name/Attribute chain ('' for anything else)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_loads(source: str) -> list[tuple[int, str]]:
    """``(line, reason)`` for every unsafe load in ``source``."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> module or module.function it stands for
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                if node.module.split(".")[0] in PICKLERS and a.name in PICKLE_LOADS:
                    found.append((node.lineno, f"imports {node.module}.{a.name}"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if not name:
            continue
        head, _, rest = name.partition(".")
        full = aliases.get(head, head) + ("." + rest if rest else "")
        mod, _, fn = full.rpartition(".")
        if full == "torch.load":
            if not _is_const(_kw(node, "weights_only"), True):
                found.append((node.lineno, "torch.load without weights_only=True"))
        elif full == "torch.jit.load":
            found.append((node.lineno, "torch.jit.load runs TorchScript code from the file"))
        elif mod.split(".")[0] in PICKLERS and fn in PICKLE_LOADS:
            found.append((node.lineno, f"{full} unpickles"))
        elif full in ("numpy.load", "np.load"):
            ap = _kw(node, "allow_pickle")
            if ap is not None and not _is_const(ap, False):
                found.append((node.lineno, "numpy.load with allow_pickle"))
        elif full == "yaml.load" or full == "yaml.unsafe_load":
            found.append((node.lineno, f"{full} (use yaml.safe_load)"))
        elif full in ("pandas.read_pickle", "pd.read_pickle"):
            found.append((node.lineno, "pandas.read_pickle unpickles"))
    return found


def _files() -> list[Path]:
    return sorted(p for d in SCANNED if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py"))


def test_the_project_loads_checkpoints_safely():
    files = _files()
    assert any(p.parts[-3:] == ("models", "binders", "imagebind.py") for p in files)  # the scan sees src/
    problems, used = [], set()
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for line, why in unsafe_loads(text):
            key = (rel, lines[line - 1].strip())
            if key in ALLOWED:
                used.add(key)
                continue
            problems.append(f"{rel}:{line}: {why}: {lines[line - 1].strip()}")
    assert not problems, "unsafe loading:\n" + "\n".join(problems)
    assert used == set(ALLOWED), f"stale allow-list entries: {set(ALLOWED) - used}"


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\ntorch.load('x.pt')",
        "import torch\ntorch.load('x.pt', weights_only=False)",
        "import torch\nsafe = True\ntorch.load('x.pt', weights_only=safe)",
        "import torch as th\nth.load('x.pt', map_location='cpu')",
        "from torch import load\nload('x.pt')",
        "import pickle\npickle.load(open('x', 'rb'))",
        "import pickle as pk\npk.loads(b'')",
        "from pickle import loads",
        "import dill\ndill.load(f)",
        "import joblib\njoblib.load('m.joblib')",
        "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
        "import numpy\nflag = True\nnumpy.load('x.npz', allow_pickle=flag)",
        "import torch\ntorch.jit.load('m.pt')",
        "import yaml\nyaml.load(s, Loader=yaml.Loader)",
        "import pandas as pd\npd.read_pickle('x.pkl')",
    ],
)
def test_scanner_flags_unsafe_loads(snippet):
    assert unsafe_loads(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\ntorch.load('x.pt', map_location='cpu', weights_only=True)",
        "import numpy as np\nnp.load('x.npy')",
        "import numpy as np\nnp.load('x.npy', allow_pickle=False)",
        "from safetensors.torch import load_file\nload_file('x.safetensors')",
        "import yaml\nyaml.safe_load(s)",
        "import json\njson.load(f)",
        "import pickle\npickle.dumps(1)",
    ],
)
def test_scanner_accepts_safe_loads(snippet):
    assert not unsafe_loads(snippet), snippet
