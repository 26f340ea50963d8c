"""Load an OpenAPI document that may be split over several YAML files.

References to another file are inlined; a reference into the root file (``api.yaml#/...``)
becomes an internal ``#/...`` reference, so the bundled document keeps its named
components. :func:`dereference` then inlines everything, for validators.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import yaml

from apicrud.errors import ApicrudError

# libyaml's parser when present: half of start-up time is YAML parsing otherwise
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SpecError(ApicrudError):
    """The spec cannot be read or a reference cannot be resolved."""


def _pointer(doc: Any, pointer: str, where: str) -> Any:
    node = doc
    if pointer in ("", "/"):
        return node
    for part in pointer.lstrip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise SpecError(f"{where}: no such pointer #{pointer}") from None
    return node


class _Bundler:
    def __init__(self, root_file: str) -> None:
        self.root_file = os.path.abspath(root_file)
        self.files: dict[str, Any] = {}

    def load(self, path: str) -> Any:
        path = os.path.abspath(path)
        if path not in self.files:
            try:
                with open(path, encoding="utf-8") as fh:
                    # _Loader is yaml's (C)SafeLoader: no arbitrary objects (bandit B506)
                    self.files[path] = yaml.load(fh, Loader=_Loader)  # nosec B506 # a SafeLoader
            except OSError as exc:
                raise SpecError(f"cannot read {path}: {exc.strerror}") from None
            except yaml.YAMLError as exc:
                raise SpecError(f"{path}: invalid YAML: {exc}") from None
        return self.files[path]

    def bundle(self, node: Any, current: str, stack: tuple = ()) -> Any:
        if isinstance(node, list):
            return [self.bundle(item, current, stack) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            file_part, _, pointer = ref.partition("#")
            target = os.path.join(os.path.dirname(current), file_part) if file_part else current
            target = os.path.abspath(target)
            if target == self.root_file:
                return {"$ref": "#" + pointer}
            key = (target, pointer)
            if key in stack:
                raise SpecError(f"circular $ref {ref} in {current}")
            try:
                resolved = _pointer(self.load(target), pointer, target)
            except SpecError as exc:
                raise SpecError(f"{current}: $ref {ref!r}: {exc}") from None
            return self.bundle(copy.deepcopy(resolved), target, stack + (key,))
        return {k: self.bundle(v, current, stack) for k, v in node.items()}


def load_spec(path: str) -> dict[str, Any]:
    """Read the root document at ``path`` and bundle the files it references."""
    return load_spec_with_sources(path)[0]


def load_spec_with_sources(path: str) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`load_spec`, and the file each path item is written in (path -> file name).

    A path item given as ``$ref: "book.path.yaml#/item"`` comes from ``book.path.yaml``;
    one written in the root document from the root file. Start-up problems name it.
    """
    bundler = _Bundler(path)
    root = bundler.load(path)
    if not isinstance(root, dict) or "openapi" not in root:
        raise SpecError(f"{path}: not an OpenAPI document (no 'openapi' key)")
    sources: dict[str, str] = {}
    paths = root.get("paths")
    for name, item in (paths.items() if isinstance(paths, dict) else ()):
        ref = item.get("$ref") if isinstance(item, dict) else None
        file_part = ref.partition("#")[0] if isinstance(ref, str) else ""
        sources[name] = os.path.join(os.path.dirname(path), file_part) if file_part else path
    return bundler.bundle(root, bundler.root_file), sources


def dereference(node: Any, root: dict[str, Any], stack: tuple = ()) -> Any:
    """Inline every internal ``#/...`` reference of a bundled document."""
    if isinstance(node, list):
        return [dereference(item, root, stack) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        if ref in stack:
            raise SpecError(f"circular $ref {ref}")
        target = _pointer(root, ref[1:], "spec")
        merged = dereference(target, root, stack + (ref,))
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if siblings and isinstance(merged, dict):
            merged = {**merged, **dereference(siblings, root, stack)}
        return merged
    return {k: dereference(v, root, stack) for k, v in node.items()}
