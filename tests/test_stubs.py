"""The hand-written .pyi stubs of the compiled modules name exactly the functions and argument
names the bindings export (pybind11 writes each signature into the function's docstring)."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import xpress_fast

PACKAGE = Path(xpress_fast.__file__).parent
STUBS = sorted(PACKAGE.glob("_*.pyi"))


def _stub_signatures(path: Path) -> dict:
    tree = ast.parse(path.read_text())
    return {node.name: [a.arg for a in node.args.args] for node in tree.body if isinstance(node, ast.FunctionDef)}


def _binding_signatures(module) -> dict:
    out = {}
    for name in dir(module):
        obj = getattr(module, name)
        if name.startswith("__") or not callable(obj) or isinstance(obj, type):
            continue
        match = re.match(rf"{name}\((.*?)\)\s*->", (obj.__doc__ or "").splitlines()[0])
        assert match, f"{module.__name__}.{name} has no pybind11 signature line"
        out[name] = re.findall(r"(?:^|, )(\w+): ", match.group(1))
    return out


def test_every_compiled_module_has_a_stub():
    compiled = {p.name.split(".")[0] for p in PACKAGE.iterdir() if p.suffix in (".so", ".pyd")}
    assert compiled, "no compiled module found beside the package"
    assert compiled <= {p.stem for p in STUBS}


@pytest.mark.parametrize("stub", STUBS, ids=lambda p: p.stem)
def test_stub_matches_binding(stub):
    module = importlib.import_module(f"xpress_fast.{stub.stem}")
    assert _stub_signatures(stub) == _binding_signatures(module)
