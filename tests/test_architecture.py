"""The package's shape: no import circles, small modules, nothing done at import."""
import ast
import json
import os
import subprocess
import sys

import convt_blas

PACKAGE_DIR = os.path.dirname(os.path.abspath(convt_blas.__file__))
MAX_LINES = 600


def _modules():
    """{module name: path} of the package's Python modules (``convt_blas``, ``convt_blas.nn``)."""
    found = {}
    for name in os.listdir(PACKAGE_DIR):
        if name.endswith(".py"):
            stem = name[:-3]
            found["convt_blas" if stem == "__init__" else f"convt_blas.{stem}"] = os.path.join(
                PACKAGE_DIR, name)
    return found


def _submodules():
    """Names of every module of the package, extensions (kernels, _capi) included."""
    return {f"convt_blas.{name.split('.')[0]}" for name in os.listdir(PACKAGE_DIR)
            if name.endswith((".py", ".so", ".pyd")) and not name.startswith("__init__.")}


def _module_level_imports(module, path, known):
    """Package modules that ``module`` imports when it is imported: statements outside
    functions (an import inside a function runs on first call, not at import)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if module == "convt_blas" else module.rsplit(".", 1)[0]
    targets = set()

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                # A submodule, or a name the module (the package's __init__ too) defines.
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return sorted(t for t in targets if t in known and t != module)


def import_graph():
    """{module: the package's Python modules it imports at module level}."""
    modules = _modules()
    known = set(modules) | _submodules()
    return {name: [t for t in _module_level_imports(name, path, known) if t in modules]
            for name, path in modules.items()}


def test_no_import_circle_among_the_modules():
    graph = import_graph()
    assert graph["convt_blas._validation"] == ["convt_blas._memory"]  # below every path
    assert "convt_blas._functional" not in graph["convt_blas.cuda"]
    done, path = set(), []

    def visit(name):
        if name in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        path.append(name)
        for target in graph[name]:
            visit(target)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_paths_import_shared_names_not_private_ones_of_each_other():
    """nn, stream, dask and cuda use no private name of another module of the package."""
    modules = _modules()
    for name in ("nn", "stream", "dask", "cuda", "onnx"):
        with open(modules[f"convt_blas.{name}"], encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:  # not modules
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"convt_blas.{name} imports {private} from {node.module}"


def test_no_module_over_600_lines():
    long = {}
    for name, path in _modules().items():
        with open(path, encoding="utf-8") as f:
            lines = sum(1 for _ in f)
        if lines > MAX_LINES:
            long[name] = lines
    assert not long, f"modules over {MAX_LINES} lines: {long}"


# Loads the extension without running convt_blas/__init__.py (a bare package stands in
# for it), reads every setting the kernels hold, then imports convt_blas for real.
SETTINGS_SCRIPT = r"""
import importlib, json, sys, types
package = types.ModuleType("convt_blas")
package.__path__ = [sys.argv[1]]
sys.modules["convt_blas"] = package
kernels = importlib.import_module("convt_blas.kernels")
SHAPES = [(1, 512, 8, 256, 16, 8, 4, 0, 1, 1), (16, 512, 32, 512, 6, 3, 2, 1, 1, 512),
          (1, 256, 800, 128, 16, 8, 4, 0, 1, 1)]

def settings():
    workspace_target = kernels._set_winograd_workspace(0)
    kernels._set_winograd_workspace(workspace_target)
    return [kernels.blas_small_matrix_kernels(), kernels.winograd_enabled(), workspace_target,
            [list(kernels.plan_sizes(shape)) for shape in SHAPES]]

before = settings()
del sys.modules["convt_blas"]
import convt_blas
assert sys.modules["convt_blas.kernels"] is kernels
after_import = settings()
from convt_blas import _threads
looked_up = _threads._configured
import numpy as np
convt_blas.conv_transpose1d(np.ones((1, 2, 3), np.float32), np.ones((2, 2, 2), np.float32))
print(json.dumps([before, after_import, looked_up, _threads._configured, settings()]))
"""


def test_importing_convt_blas_changes_no_kernel_setting():
    result = subprocess.run([sys.executable, "-c", SETTINGS_SCRIPT, PACKAGE_DIR],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    before, after_import, looked_up, configured, after_a_call = json.loads(result.stdout)
    assert after_import == before
    assert not looked_up, "the BLAS was looked up at import"
    # The first call's planning configures the BLAS, as importing once did: its plans
    # are those of a process that has made calls.
    assert configured
    from convt_blas import _threads, kernels

    _threads.configure_blas()
    assert after_a_call[0] == kernels.blas_small_matrix_kernels()


def test_nothing_test_only_is_public():
    for name in convt_blas.__all__:
        assert not name.startswith("_") and "test" not in name.lower(), name
        assert hasattr(convt_blas, name)
