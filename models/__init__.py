"""tvrec models."""

# the data layer's process environment (how OpenMP threads wait, nothing downloads) is set
# before any model module imports torch
from .. import pipelines as _pipelines  # noqa: F401
