"""cim_mm: Corrupted Image Modeling (CIM, ICLR 2023) as an OpenMMLab plugin."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    lines = (HERE / 'requirements' / name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith('#')]


setup(
    name='cim_mm',
    version='0.1.0',
    description='Corrupted Image Modeling (CIM) for mmpretrain / mmsegmentation',
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=find_packages(include=['cim_mm', 'cim_mm.*']),
    # mmcv 2.x is installed first (mmcv-lite is enough for pre-training); see runtime.txt
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
    ] + read_requirements('runtime.txt'),
    extras_require={
        'seg': read_requirements('seg.txt'),  # mmsegmentation: cim_mm.seg
        'tests': read_requirements('tests.txt'),
    },
    license='Apache-2.0',
)
