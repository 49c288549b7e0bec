"""The package's imports point down the layers of docs/design.md, with no cycles."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "skclust_ot"

# Top to bottom; a unit may import only units listed after it. Subpackages are
# one unit each (their internal imports are checked for cycles only).
LAYERS = [
    "__main__", "cli", "_cli_io", "demo", "plotting", "__init__", "_versions",
    "_estimator", "_inference", "_builders", "_parallel", "_checks",
    "_memory", "_config", "_start", "_stats",
    "_defaults", "nn", "ot", "metrics", "datasets", "_sklearn_compat", "_version",
    "exceptions",
]


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts)


def unit(name):
    parts = name.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def imports_of(path):
    """Absolute names of the skclust_ot modules (or packages) a file imports."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("skclust_ot")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("skclust_ot"):
                continue
            if node.module is None:  # from . import _defaults
                found |= {f"{target}.{a.name}" for a in node.names}
            else:
                found.add(target)
    return found


def all_modules():
    return {module_name(p).removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")}


def test_imports_point_down_the_layers():
    rank = {u: i for i, u in enumerate(LAYERS)}
    violations = []
    modules = all_modules()
    for name, path in modules.items():
        here = unit(name) if name != "skclust_ot" else "__init__"
        assert here in rank, f"{name} is in no layer of LAYERS (docs/design.md's map)"
        for target in imports_of(path):
            if target not in modules:  # "from . import SP2OTClustering": a name, not a module
                target = target.rsplit(".", 1)[0]
            there = unit(target) if target != "skclust_ot" else "__init__"
            if there != here and rank[there] <= rank[here]:
                violations.append(f"{name} imports {target}")
    assert not violations, violations


def test_no_import_cycles():
    modules = all_modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for target in imports_of(path):
            # "from . import SP2OTClustering" names no module: keep only modules
            if target in modules and target != name:
                targets.add(target)
        graph[name] = targets
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):]
                                                                     + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_solvers_import_no_scikit_learn_or_skorch_directly():
    for path in (PACKAGE / "ot").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            bad = [n for n in names if n.split(".")[0] in ("sklearn", "skorch")]
            assert not bad, f"{path.name} imports {bad}"
