"""The layers are the folders of ``mixer/``: imports point one way, nothing imports in a cycle, and only the
engine creates pools.

Layers, lowest first, each a folder (or top module) of ``mixer/``; a module may import its own layer and
those below; every import counts, also one inside a function or under ``TYPE_CHECKING``:

core <- tokens <- readers <- sources <- recipe <- kernels <- stages <- engine <- report <- build <- train
<- generate <- cli (generate makes data with models, scores with reward models and trains SPIN's rounds through
train; train never calls generate)
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "mixer"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # records, errors, stats, tables, the work store, and the executor interface (a Protocol): stages
    # receive an executor, so its type is below them; the engines that implement it are above
    ("core", ("mixer.core",)),
    ("tokens", ("mixer.tokens",)),
    ("readers", ("mixer.readers",)),
    ("sources", ("mixer.sources",)),
    # the recipe loader validates adapter names and options against the sources' registry
    ("recipe", ("mixer.recipe",)),
    ("kernels", ("mixer.kernels",)),
    ("stages", ("mixer.stages",)),
    ("engine", ("mixer.engine",)),
    ("report", ("mixer.report",)),
    ("build", ("mixer.build",)),
    ("train", ("mixer.train",)),
    ("generate", ("mixer.generate",)),
    ("cli", ("mixer.cli", "mixer.__main__")),
]

#: imports that point down the wrong way, each with why it is tolerated for now
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()

#: where process and thread pools may be created
POOL_NAMES = ("ProcessPoolExecutor", "ThreadPoolExecutor", "get_context", "Pool")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))}


def _mixer_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """Every mixer module ``name`` imports, wherever the import statement is."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: -node.level] if not name.endswith("__init__") else name.split(".")
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # ``from mixer.stages import write`` imports the module mixer.stages.write
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        out.update(t for t in targets if t == "mixer" or t.startswith("mixer."))
    out.discard(name)
    return out


def _layer(module: str) -> int:
    if module == "mixer":  # the package's own __init__: only the version
        return 0
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS in tests/test_layers.py"
    return rank


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: {m for m in _mixer_imports(name, tree, known)} for name, tree in modules.items()}


def test_every_import_points_to_the_same_layer_or_below() -> None:
    wrong = []
    for module, imports in _graph().items():
        for target in imports:
            if _layer(target) > _layer(module) and not any(
                    module.startswith(a) and (target == b or target.startswith(b + ".")) for a, b in KNOWN_EXCEPTIONS):
                wrong.append(f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_module_imports_itself_through_others() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_pools_are_created_only_in_the_engine() -> None:
    found = []
    for name, tree in _modules().items():
        if name.startswith(("mixer.engine", "mixer.train")):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("concurrent.futures", "multiprocessing"):
                found.extend(f"{name}: imports {a.name} from {node.module}" for a in node.names
                             if a.name in POOL_NAMES)
            elif isinstance(node, ast.Import):
                found.extend(f"{name}: imports {a.name}" for a in node.names
                             if a.name in ("multiprocessing", "concurrent.futures", "threading"))
    assert not found, "\n".join(found)


def test_the_stage_modules_are_listed_in_pipeline_order() -> None:
    from mixer.stages import STAGES

    assert STAGES == ("read", "normalise", "filter", "exact_dedup", "near_dedup", "decontaminate", "select",
                      "write", "card")
    for stage in STAGES:
        assert (PACKAGE / "stages" / f"{stage}.py").exists(), stage


def _record_path() -> tuple[list[str], str]:
    """The files of docs/internals.md's "One record's path", in their order, and the section's text."""
    text = (ROOT / "docs" / "internals.md").read_text(encoding="utf-8")
    section = text.split("## One record's path", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\d+\. `(mixer/[^`]+\.py)`", section, re.M), section


def test_the_record_path_in_the_docs_names_existing_files_and_counts_them() -> None:
    files, section = _record_path()
    assert files and len(files) == len(set(files))
    missing = [f for f in files if not (ROOT / f).is_file()]
    missing += [f for f in re.findall(r"`(mixer/[^`]+\.py)`", section) if not (ROOT / f).is_file()]
    assert not missing, f"docs/internals.md names files that do not exist: {missing}"
    assert f"{len(files)} files on the record's own path" in section
    assert len(files) <= 12  # issue 22: the path reads in at most ~12 files


def test_the_record_path_lists_the_stages_in_the_order_the_build_runs_them() -> None:
    import dataclasses
    import sys

    from mixer.build import OUTPUT, pipeline
    from mixer.recipe.load import load_recipe
    from mixer.recipe.settings import DecontaminationSettings, NearDedupSettings
    from mixer.stages.read import record_stages

    recipe = load_recipe(ROOT / "recipes" / "v2-sample.yaml")
    recipe = dataclasses.replace(recipe, dedup=dataclasses.replace(recipe.dedup, near=NearDedupSettings()),
                                 decontaminate=DecontaminationSettings())
    stages = pipeline(recipe, selector=None)  # type: ignore[arg-type]  # the order only; nothing runs
    read, rest = stages[0], stages[1:]
    run = [read, *record_stages(recipe), *rest, *OUTPUT]  # the record-level stages run inside read's units
    order: list[str] = []
    for stage in run:
        path = Path(sys.modules[type(stage).__module__].__file__ or "").relative_to(ROOT).as_posix()
        if path.startswith("mixer/stages/") and path not in order:
            order.append(path)
    files, _ = _record_path()
    assert [f for f in files if f in order] == order
