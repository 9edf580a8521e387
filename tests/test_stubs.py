"""The hand-written .pyi stubs of the compiled modules declare exactly the functions the bindings
export, with the argument names, order and defaults of the bindings' signatures (pybind11 writes
each one, from the ``py::arg``s, as the first line of the function's docstring), and every
binding has a docstring after that line."""
from __future__ import annotations

import ast
import importlib
import re
import types
from pathlib import Path

import pytest

import xpress_fast

PACKAGE = Path(xpress_fast.__file__).parent
COMPILED = ("_segment", "_metrics")


def _stub_parameters(fn: ast.FunctionDef) -> list[str]:
    """A stub function's parameters as tokens: ``name`` or ``name=`` (has a default), and the
    markers ``/``, ``*``, ``*name``, ``**name`` as Python writes them."""
    a = fn.args
    positional = a.posonlyargs + a.args
    first_default = len(positional) - len(a.defaults)
    out = [p.arg + ("=" if i >= first_default else "") for i, p in enumerate(positional)]
    if a.posonlyargs:
        out.insert(len(a.posonlyargs), "/")
    if a.vararg:
        out.append("*" + a.vararg.arg)
    elif a.kwonlyargs:
        out.append("*")
    out += [p.arg + ("=" if d is not None else "") for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg:
        out.append("**" + a.kwarg.arg)
    return out


def _is_overload(fn: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "overload" or isinstance(d, ast.Attribute) and d.attr == "overload"
               for d in fn.decorator_list)


def stub_functions(source: str) -> dict[str, list[list[str]]]:
    """name -> the parameter tokens of each of its declarations (several only with @overload)."""
    out: dict[str, list[list[str]]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            decls = out.setdefault(node.name, [])
            if decls and not _is_overload(node):
                raise AssertionError(f"the stub declares {node.name} twice without @overload")
            decls.append(_stub_parameters(node))
    return out


def stub_runtime_classes(source: str) -> list[str]:
    """Classes the stub declares without ``@type_check_only`` (they would have to exist at run time)."""
    return [node.name for node in ast.parse(source).body if isinstance(node, ast.ClassDef)
            and not any(isinstance(d, ast.Name) and d.id == "type_check_only" for d in node.decorator_list)]


def _split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def binding_parameters(name: str, doc: str | None) -> list[str]:
    """The parameter tokens of a pybind11 function from its docstring's signature line,
    ``name(a: int, b: float = 1.0, *, c: str) -> None``."""
    lines = (doc or "").splitlines()
    assert lines, f"{name} has no docstring (pybind11 writes the signature there)"
    if lines[0].strip() == "Overloaded function.":
        raise AssertionError(f"{name} is an overloaded binding; extend {__name__} to compare each overload")
    head = lines[0]
    assert head.startswith(f"{name}("), f"{name}'s docstring does not start with its signature: {head!r}"
    depth, end = 0, None
    for i, ch in enumerate(head[len(name):], start=len(name)):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            end = i
            break
    assert end is not None and head[end + 1:].lstrip().startswith("->"), f"{name}: unreadable signature {head!r}"
    out = []
    for part in _split_top_level(head[len(name) + 1:end]):
        if part in ("/", "*"):
            out.append(part)
            continue
        match = re.match(r"(\*{0,2}\w+)\s*(:[^=]*)?(=.*)?$", part)
        assert match, f"{name}: unreadable parameter {part!r} in {head!r}"
        out.append(match.group(1) + ("=" if match.group(3) else ""))
    return out


def module_functions(module: types.ModuleType) -> dict[str, str | None]:
    """The public functions of a compiled module: name -> docstring."""
    return {name: getattr(module, name).__doc__ for name in dir(module)
            if not name.startswith("_") and callable(getattr(module, name)) and not isinstance(getattr(module, name), type)}


def problems(stub_source: str, functions: dict[str, str | None]) -> list[str]:
    """Every disagreement between a stub and a module's functions (name -> docstring)."""
    stubs = stub_functions(stub_source)
    out = [f"{name}: a binding without a stub" for name in sorted(set(functions) - set(stubs))]
    out += [f"{name}: in the stub, not in the module" for name in sorted(set(stubs) - set(functions))]
    for name in sorted(set(stubs) & set(functions)):
        bound = binding_parameters(name, functions[name])
        out += [f"{name}: the stub says ({', '.join(decl)}), the binding ({', '.join(bound)})"
                for decl in stubs[name] if decl != bound]
        if any(re.fullmatch(r"arg\d+=?", p) for p in bound):
            out.append(f"{name}: unnamed parameters ({', '.join(bound)}): give every argument a py::arg")
    out += [f"{name}: a class in the stub without @type_check_only" for name in stub_runtime_classes(stub_source)]
    return out


def test_every_compiled_module_has_a_stub():
    compiled = {p.name.split(".")[0] for p in PACKAGE.iterdir() if p.suffix in (".so", ".pyd")}
    assert compiled == set(COMPILED), "a compiled module was added or removed: update COMPILED and its stub"
    assert all((PACKAGE / f"{m}.pyi").is_file() for m in COMPILED)


@pytest.mark.parametrize("module_name", COMPILED)
def test_stub_matches_binding(module_name):
    module = importlib.import_module(f"xpress_fast.{module_name}")
    functions = module_functions(module)
    assert functions, f"{module_name} exports no function"
    found = problems((PACKAGE / f"{module_name}.pyi").read_text(), functions)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module_name", COMPILED)
def test_every_binding_has_a_docstring(module_name):
    """``help()`` shows ``name(arg: type, ...) -> ret`` and then what the function does."""
    module = importlib.import_module(f"xpress_fast.{module_name}")
    undocumented = [name for name, doc in module_functions(module).items()
                    if len([line for line in (doc or "").splitlines() if line.strip()]) < 2]
    assert not undocumented, f"bindings without a docstring after the signature: {undocumented}"


# -- the comparison itself, on made-up bindings: it must see each kind of drift ---------------

STUB = '''
from typing import TypedDict, overload, type_check_only

@type_check_only
class Out(TypedDict):
    n: int

def f(a: int, b: float = 1.0) -> Out: ...
@overload
def g(x: int) -> int: ...
@overload
def g(x: float) -> float: ...
'''
DOCS = {
    "f": 'f(a: typing.SupportsInt, b: typing.Annotated[collections.abc.Sequence[int], "FixedSize(3)"] = 1.0) -> dict\n'
         "\nWhat f does.\n",
    "g": "g(x: float) -> float\n\nWhat g does.\n",
}


def test_comparison_accepts_agreement():
    assert problems(STUB, DOCS) == []


@pytest.mark.parametrize("docs, expected", [
    ({**DOCS, "h": "h(a: int) -> int\n"}, "h: a binding without a stub"),
    ({"f": DOCS["f"]}, "g: in the stub, not in the module"),
    ({**DOCS, "f": "f(a: int, c: float = 1.0) -> dict\n"}, "f: the stub says (a, b=), the binding (a, c=)"),
    ({**DOCS, "f": "f(b: float = 1.0, a: int) -> dict\n"}, "f: the stub says (a, b=), the binding (b=, a)"),
    ({**DOCS, "f": "f(a: int, b: float) -> dict\n"}, "f: the stub says (a, b=), the binding (a, b)"),
    ({**DOCS, "g": "g(arg0: float) -> float\n"}, "g: unnamed parameters (arg0)"),
])
def test_comparison_reports_drift(docs, expected):
    assert any(p.startswith(expected) for p in problems(STUB, docs)), problems(STUB, docs)


def test_comparison_reports_a_stub_class_missing_at_run_time():
    assert problems(STUB + "\nclass Extra: ...\n", DOCS) == ["Extra: a class in the stub without @type_check_only"]


def test_binding_parameters_reads_markers_and_nested_brackets():
    doc = 'k(a: dict[str, tuple[int, int]], /, b: "x, y" = (1, 2), *, c: int = 3, **kw: object) -> None\n'
    assert binding_parameters("k", doc) == ["a", "/", "b=", "*", "c=", "**kw"]
    assert stub_functions("def k(a, /, b=(1, 2), *, c=3, **kw): ...")["k"] == [["a", "/", "b=", "*", "c=", "**kw"]]
