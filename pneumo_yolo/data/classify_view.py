"""The classification view of a converted dataset: opacity / no opacity, made of symlinks, never of copies.

Ultralytics' classify task reads a folder ``<root>/{train,val}/<class>/<image>``. The image-level
gate trains on the same PNGs as the detector, labelled by whether their label file holds a box
(an empty or missing label file: no opacity), so ``train`` links them into

::

    <root>/classify/<yaml stem>/train/no_opacity/<patientId>.png  ->  ../../../../images/<split>/<patientId>.png
    <root>/classify/<yaml stem>/train/opacity/<patientId>.png
    <root>/classify/<yaml stem>/val/...

one view per dataset YAML (``data``, ``data_fold1``…), so that folds trained at the same time never
share one. Links are relative, so the view moves with the dataset folder. The class folders sort
as :data:`CLASS_NAMES`, the order Ultralytics numbers them in: class 1 is opacity.

:func:`build_classify_view` brings the view up to date on every run: links that are missing are
made, links that point elsewhere or name an image the YAML no longer lists are removed, and
correct links are left alone. It never deletes anything but its own links and Ultralytics' disk
cache of a removed link (``<patientId>.npy``); anything else in the view is refused, since
Ultralytics would train on it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .dataset import SPLITS, ConvertedDataset, label_path_of

CLASS_NAMES = ("no_opacity", "opacity")
"""The classifier's classes, by index; sorted, because Ultralytics numbers class folders in sorted order."""
OPACITY = CLASS_NAMES.index("opacity")
VIEW_DIR = "classify"
_CACHE_SUFFIX = ".npy"
"""Ultralytics' ``cache=disk`` files, written beside each image of the view."""


class ClassifyViewError(RuntimeError):
    """The view folder holds something that pneumo-yolo did not put there."""


def has_opacity(image: Path) -> bool:
    """True when the label file of a dataset PNG names at least one box (a missing file: no box, as for Ultralytics)."""
    label = label_path_of(image)
    return label.is_file() and bool(label.read_text().strip())


def classify_view_dir(dataset: ConvertedDataset) -> Path:
    """``<root>/classify/<yaml stem>``: the view of the dataset YAML that ``dataset`` was opened from (``data``: none)."""
    return dataset.root / VIEW_DIR / (dataset.yaml.stem if dataset.yaml else "data")


def build_classify_view(dataset: ConvertedDataset) -> Path:
    """Make (or bring up to date) the classification view of ``dataset``'s train and val images; return its folder.

    Raises :class:`ClassifyViewError` when the view holds files or folders that are not its own.
    """
    view = classify_view_dir(dataset)
    for split in SPLITS:
        folder = view / split
        wanted = {Path(CLASS_NAMES[has_opacity(image)], image.name): image.resolve() for image in dataset.listed(split)}
        links = {name: os.path.relpath(target, (folder / name).parent) for name, target in wanted.items()}
        _remove_stale(folder, links)
        for name, target in links.items():
            link = folder / name
            if not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(target)
        for class_name in CLASS_NAMES:
            (folder / class_name).mkdir(parents=True, exist_ok=True)  # Ultralytics counts classes by their folders
    return view


def _remove_stale(folder: Path, links: dict[Path, str]) -> None:
    """Remove the links under ``folder`` that are not in ``links`` (name → target), with their disk caches."""
    if not folder.is_dir():
        return
    foreign = []
    for class_dir in sorted(folder.iterdir()):
        if class_dir.name not in CLASS_NAMES or class_dir.is_symlink() or not class_dir.is_dir():
            foreign.append(class_dir)
            continue
        for entry in sorted(class_dir.iterdir()):
            name = entry.relative_to(folder)
            if entry.is_symlink():
                if links.get(name) != os.readlink(entry):
                    entry.unlink()
            elif entry.suffix == _CACHE_SUFFIX and entry.is_file():
                if name.with_suffix(".png") not in links:
                    entry.unlink()
            else:
                foreign.append(entry)
    if foreign:
        raise ClassifyViewError(
            f"{folder} is made by pneumo-yolo train and may hold only its own links, but it holds "
            f"{', '.join(str(path) for path in foreign[:3])}{' …' if len(foreign) > 3 else ''}: move them out of it"
        )
