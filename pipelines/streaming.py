"""Training sets streamed from their Parquet parts, for trainers: a torch IterableDataset.

Each DataLoader worker reads its own share of the parts (part i goes to worker i mod n), one
record batch at a time, so memory holds a batch, never the training set.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from torch.utils.data import IterableDataset, get_worker_info


class TrainingRows(IterableDataset):
    """Batches of up to `batch_rows` rows: {column: (n,) numpy array} (strings as objects)."""

    def __init__(self, parts: list[Path], columns: list[str] | None, batch_rows: int) -> None:
        super().__init__()
        self.parts, self.columns, self.batch_rows = list(parts), columns, batch_rows

    def _my_parts(self) -> list[Path]:
        worker = get_worker_info()
        if worker is None:
            return self.parts
        return self.parts[worker.id :: worker.num_workers]

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for part in self._my_parts():
            reader = pq.ParquetFile(part)
            for batch in reader.iter_batches(self.batch_rows, columns=self.columns):
                names = batch.schema.names
                yield {
                    n: c.to_numpy(zero_copy_only=False, writable=True)
                    for n, c in zip(names, batch.columns, strict=True)
                }

    def __len__(self) -> int:
        """Rows in all parts (read from the Parquet footers)."""
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.parts)
