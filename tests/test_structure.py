"""The shape of the package: one direction of imports (layers), at most 7 levels, no cycles, no hidden imports of its
own modules, light plugin imports and a fast command line."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> import package (pyproject.toml's package-dir).
PACKAGES = {
    "benchmark": "fairfacebench",
    "datasets": "fairfacebench.datasets",
    "encoders": "fairfacebench.encoders",
    "methods": "fairfacebench.methods",
    "metrics": "fairfacebench.metrics",
    "leaderboard": "fairfacebench.leaderboard",
}
# The command line loads each command's implementation (torch, plugins) only when that command runs; the package
# loads `load_runs` (pandas) on first use, so importing one plugin stays light.
LAZY_IMPORTS_ALLOWED = {"fairfacebench.cli", "fairfacebench"}
MAX_LEVELS = 7
# Layers, lowest first; a module may import its own layer and the layers listed for it (docs/ARCHITECTURE.md).
BASE = {"fairfacebench.errors", "fairfacebench.plain", "fairfacebench.hookspecs"}
PLUGIN_PACKAGES = (
    "fairfacebench.datasets",
    "fairfacebench.methods",
    "fairfacebench.encoders",
    "fairfacebench.leaderboard.selection",
)
MAY_IMPORT = {
    "base": {"base"},
    "metrics": {"base", "metrics"},
    "core": {"base", "metrics", "core"},
    **{p: {"base", "metrics", "core", p} for p in PLUGIN_PACKAGES},
    "leaderboard": {"base", "metrics", "core", "leaderboard"},
    "cli": {"base", "metrics", "core", "leaderboard", "cli"},
}


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    if module == "fairfacebench.cli":
        return "cli"
    for package in (*PLUGIN_PACKAGES, "fairfacebench.metrics", "fairfacebench.leaderboard"):
        if module == package or module.startswith(package + "."):
            return (
                package.rpartition(".")[2]
                if package in ("fairfacebench.metrics", "fairfacebench.leaderboard")
                else package
            )
    return "core"


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def own_imports(path: Path, known: set[str]) -> tuple[set[str], list[tuple[int, str]]]:
    """Modules of the package imported at module level, and (line, module) of imports inside functions."""
    tree = ast.parse(path.read_text())
    top, nested = set(), []

    def targets(node: ast.AST) -> list[str]:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            return [m for m in (f"{node.module}.{a.name}" for a in node.names) if m in known] or [node.module]
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        return []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                continue
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            for name in targets(child):
                if name.startswith("fairfacebench"):
                    (nested.append((child.lineno, name)) if in_function else top.add(name))
            visit(child, inner)

    visit(tree, False)
    return {m for m in top if m in known}, nested


def test_the_module_import_graph_has_no_cycles():
    found = modules()
    graph = {name: own_imports(path, set(found))[0] - {name} for name, path in found.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)


def test_no_function_level_imports_of_the_packages_own_modules():
    found = modules()
    offenders = [
        f"{found[name].relative_to(ROOT)}:{line} imports {target}"
        for name in found
        if name not in LAZY_IMPORTS_ALLOWED
        for line, target in own_imports(found[name], set(found))[1]
    ]
    assert not offenders, "\n".join(offenders)


def test_help_answers_without_loading_torch():
    code = "import sys, fairfacebench.cli as c; c.parser().format_help(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    # the whole `--help` path, not only the parser (its speed is a benchmark's claim, not a timed test's)
    code = (
        "import sys, contextlib, io, fairfacebench.cli as c\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): c.main(['--help'])\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at module level or inside functions."""
    found = modules()
    graph = {}
    for name, path in found.items():
        top, nested = own_imports(path, set(found))
        graph[name] = (top | {m for _, m in nested if m in found}) - {name}
    return graph


def test_imports_go_one_way_and_no_plugin_imports_another():
    """The core imports no plugin package; a plugin imports the core and its own package, never another plugin."""
    offenders = [
        f"{module} ({layer(module)}) imports {target} ({layer(target)})"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if layer(target) not in MAY_IMPORT[layer(module)]
    ]
    assert not offenders, "\n".join(offenders)


def test_the_import_graph_has_at_most_seven_levels():
    """A module's level is one more than the highest level it imports (module-level imports; a leaf is level 1)."""
    found = modules()
    graph = {name: own_imports(path, set(found))[0] - {name} for name, path in found.items()}
    level: dict[str, int] = {}

    def of(name: str) -> int:
        if name not in level:
            level[name] = 1 + max((of(m) for m in graph[name]), default=0)
        return level[name]

    deepest = max(graph, key=of)
    chain = [deepest]
    while graph[chain[-1]]:
        chain.append(max(graph[chain[-1]], key=of))
    assert of(deepest) <= MAX_LEVELS, f"{of(deepest)} levels: {' -> '.join(chain)}"


def test_importing_one_method_loads_only_what_it_uses():
    code = (
        "import sys, fairfacebench.methods.erm; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('fairfacebench', 'pandas', 'scipy', "
        "'sklearn', 'jinja2', 'matplotlib', 'faiss', 'open_clip', 'timm')))))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    expected = {
        "fairfacebench",
        "fairfacebench.backbones",
        "fairfacebench.budget",
        "fairfacebench.context",
        "fairfacebench.data",
        "fairfacebench.errors",
        "fairfacebench.hookspecs",
        "fairfacebench.methods",
        "fairfacebench.methods.base",
        "fairfacebench.methods.common",
        "fairfacebench.methods.erm",
        "fairfacebench.progress",
        "fairfacebench.provenance",
        "fairfacebench.settings",
        "fairfacebench.speed",
        "fairfacebench.training",
        "fairfacebench.typed",
    }
    assert loaded <= expected, f"importing erm also loads {sorted(loaded - expected)}"
