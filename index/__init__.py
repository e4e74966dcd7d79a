"""Nearest-neighbour index over show embeddings: backends, factory, and on-disk store.

Importing this package loads faiss but never torch: the torch backend imports torch when
it is built, and hardware detection imports it only when called on a machine with a GPU
driver.
"""

# the data layer's process environment (how OpenMP threads wait, ...) before faiss loads
from .. import pipelines as _pipelines  # noqa: F401
from .backends import (
    BackendPlan,
    FaissCpuIndex,
    FaissGpuIndex,
    IndexConfig,
    TorchExactIndex,
    VectorIndex,
    build_from_plan,
    build_index,
    choose_backend,
    l2_normalise,
    place_index,
    place_on_plan,
)
from .hardware import Hardware, Profile, detect_hardware, pick_profile
from .store import (
    IndexManifest,
    IndexMismatchError,
    ShowIndex,
    check_manifest,
    ids_content_hash,
    load_index,
    make_show_index,
    save_index,
)

__all__ = [
    "BackendPlan",
    "FaissCpuIndex",
    "FaissGpuIndex",
    "Hardware",
    "IndexConfig",
    "IndexManifest",
    "IndexMismatchError",
    "Profile",
    "ShowIndex",
    "TorchExactIndex",
    "VectorIndex",
    "build_from_plan",
    "build_index",
    "check_manifest",
    "choose_backend",
    "detect_hardware",
    "ids_content_hash",
    "l2_normalise",
    "load_index",
    "make_show_index",
    "pick_profile",
    "place_index",
    "place_on_plan",
    "save_index",
]
