"""The package is the plugin: no benchmark code in it, no import cycle, no upward import."""
from __future__ import annotations

import ast
import os
import os.path as osp
from collections import defaultdict

import pytest
from helpers import REPO_ROOT

PACKAGE = osp.join(REPO_ROOT, 'cim_mm')
#: what each area of the package may import from the others (lower layers only)
ALLOWED = {
    'utils': set(),
    'compat': {'utils'},
    'datasets': {'utils'},
    'models': {'utils', 'compat'},
    'converters': {'utils', 'compat'},
    'visualization': {'utils', 'models'},
    'engine': {'utils', 'datasets', 'models', 'visualization'},
    'seg': {'utils', 'datasets'},  # the seg extra's entry point (mmseg's side)
}


def _module_name(path: str) -> str:
    rel = osp.relpath(path, REPO_ROOT)[:-3].replace(os.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def import_graph(package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules of ``package`` it imports}``, at any depth of the file
    (function bodies included), relative imports resolved; a package stands for its
    __init__."""
    modules = {}
    for folder, _, files in os.walk(package):
        for f in files:
            if f.endswith('.py'):
                modules[_module_name(osp.join(folder, f))] = osp.join(folder, f)
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split('.')[:len(package.split('.')) - node.level + 1]
                    target = '.'.join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ''
                found = [target] + [f'{target}.{a.name}' for a in node.names]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            graph[name].update(t for t in found if t in modules and t != name)
    return graph


def _area(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else ''


def test_no_benchmark_code_in_the_package():
    assert not osp.exists(osp.join(PACKAGE, 'benchmark'))
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith('.py'):
                text = open(osp.join(folder, f)).read()
                assert 'import benchmarks' not in text and 'from benchmarks' not in text, f


def _benchmark_only_names() -> set[str]:
    """The classes ``benchmarks/models`` defines and the options ``CIMAblation``
    adds to ``CIM``: names the package must not know."""
    import inspect

    import benchmarks.models.cim_ablation as ablation
    from cim_mm.models import CIM
    names = set()
    for f in os.listdir(osp.join(REPO_ROOT, 'benchmarks', 'models')):
        if f.endswith('.py'):
            tree = ast.parse(open(osp.join(REPO_ROOT, 'benchmarks', 'models', f)).read())
            names |= {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    added = (set(inspect.signature(ablation.CIMAblation).parameters)
             - set(inspect.signature(CIM).parameters) - {'args', 'kwargs'})
    assert added == {'generator_input', 'enhancer_input', 'generator_warmup'}
    return names | added


def test_the_package_names_nothing_of_the_benchmark():
    """No benchmark model's class name or option in the package's code: their
    checks live with them (e.g. ``CIMAblation.geometry``)."""
    import re
    names = _benchmark_only_names()
    assert 'CIMAblation' in names
    found = []
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith('.py'):
                text = open(osp.join(folder, f)).read()
                found += [(f, n) for n in names if re.search(rf'\b{n}\b', text)]
    assert found == []


def test_areas_import_only_lower_layers():
    upward = sorted((m, t) for m, targets in import_graph().items() for t in targets
                    if _area(m) and _area(t) and _area(m) != _area(t)
                    and _area(t) not in ALLOWED[_area(m)])
    assert upward == []


@pytest.mark.parametrize('package', ['cim_mm', 'benchmarks'])
def test_no_import_cycle(package):
    """No module reaches itself through the imports of others (package __init__
    files importing their own submodules excepted: that is how they register)."""
    graph = import_graph(osp.join(REPO_ROOT, package))

    def own_submodule(a: str, b: str) -> bool:
        return b.startswith(a + '.')

    edges = {m: {t for t in ts if not own_submodule(m, t)} for m, ts in graph.items()}
    cycles = []
    for start in edges:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    cycles.append(path)
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    assert cycles == []
