"""docs/ is prose: the run artefacts live in benchmarks/results/, and every relative
link of the README, the docs, the config READMEs and the results READMEs resolves."""
from __future__ import annotations

import glob
import os
import os.path as osp
import re

from helpers import REPO_ROOT

#: ``[text](target)`` and ``![alt](target)``; the target up to a space or ``)``
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
#: the GPU results are kept by the GPU check's own folder, apart from this rule
GPU_DOCS = osp.join(REPO_ROOT, 'docs', 'gpu')


def linked_pages() -> list[str]:
    pages = [osp.join(REPO_ROOT, 'README.md')]
    pages += glob.glob(osp.join(REPO_ROOT, 'docs', '*.md'))
    pages += glob.glob(osp.join(REPO_ROOT, 'configs', '**', 'README.md'), recursive=True)
    pages += glob.glob(osp.join(REPO_ROOT, 'benchmarks', 'results', '**', 'README.md'),
                       recursive=True)
    return sorted(pages)


def broken_links(page: str) -> list[str]:
    """The relative link targets of ``page`` (a markdown file) that do not exist."""
    out = []
    for target in LINK.findall(open(page, encoding='utf-8').read()):
        path = target.split('#')[0]
        if not path or re.match(r'^[a-z]+:', target):
            continue  # an anchor in the page, or a URL
        if not osp.exists(osp.join(osp.dirname(page), path)):
            out.append(target)
    return out


def test_docs_hold_no_run_artefacts():
    found = [osp.relpath(osp.join(folder, f), REPO_ROOT)
             for folder, _, files in os.walk(osp.join(REPO_ROOT, 'docs'))
             if not (folder + os.sep).startswith(GPU_DOCS + os.sep)
             for f in files if f.endswith(('.json', '.csv'))]
    assert found == []


def test_relative_links_resolve():
    pages = linked_pages()
    assert osp.join(REPO_ROOT, 'benchmarks', 'results', 'README.md') in pages
    broken = {osp.relpath(p, REPO_ROOT): b for p in pages if (b := broken_links(p))}
    assert broken == {}


def test_broken_link_is_found(tmp_path):
    page = tmp_path / 'page.md'
    (tmp_path / 'there.md').write_text('x')
    page.write_text('[ok](there.md#a) [gone](../nowhere/results.md) [url](https://x.org) '
                    '![img](gone.png) [anchor](#b)')
    assert broken_links(str(page)) == ['../nowhere/results.md', 'gone.png']
