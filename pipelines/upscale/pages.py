"""Pages of rows spilled to the driver's local disk, and the Ray Data source that reads them back.

A run over millions of inputs keeps no table of every input in the driver's memory: the plan writes its rows
a page (up to 64K rows) at a time to Arrow IPC files in a local scratch folder, and the run reads them back
a page at a time, memory-mapped. Read tasks pinned to the driver's node read blocks of a few rows from the
pages for the decode tasks as the pipeline streams.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

PAGE_ROWS = 1 << 16


class PageFile:
    """An Arrow IPC file written a page at a time (one record batch a page) and read back a page at a time."""

    def __init__(self, path: str, schema: pa.Schema):
        self.path, self.schema = path, schema
        self.page_rows: list[int] = []
        self._writer: ipc.RecordBatchFileWriter | None = None

    @property
    def rows(self) -> int:
        return sum(self.page_rows)

    def write(self, table: pa.Table) -> None:
        """Append ``table``'s rows (cast to the schema) as pages of at most PAGE_ROWS rows."""
        if not table.num_rows:
            return
        if self._writer is None:
            self._writer = ipc.new_file(self.path, self.schema)
        table = table.select(self.schema.names).cast(self.schema)
        for start in range(0, table.num_rows, PAGE_ROWS):
            page = table.slice(start, PAGE_ROWS).combine_chunks()
            self._writer.write_table(page, max_chunksize=PAGE_ROWS)
            self.page_rows.append(page.num_rows)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def pages(self) -> Iterator[pa.Table]:
        """Each page, in order (the file is closed for writing first)."""
        self.close()
        if not self.page_rows:
            return
        with pa.memory_map(self.path) as source:
            reader = ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield pa.Table.from_batches([reader.get_batch(i)])

    def table(self) -> pa.Table:
        """Every page as one table: for small files (tests, reports of a few rows)."""
        pages = list(self.pages())
        return pa.concat_tables(pages) if pages else self.schema.empty_table()

    def remove(self) -> None:
        self.close()
        if os.path.exists(self.path):
            os.remove(self.path)


def page_block(path: str, page: int, start: int, rows: int) -> list[pa.Table]:
    """``rows`` rows of one page of a PageFile from ``start``, as a copy (a slice would carry the whole
    page's buffers into the object store with it)."""
    with pa.memory_map(path) as source:
        batch = ipc.open_file(source).get_batch(page)
        return [pa.Table.from_batches([batch]).take(np.arange(start, start + rows))]


def read_pages(pages: PageFile, rows_per_block: int):
    """A Ray Dataset of ``pages``' rows in blocks of ``rows_per_block``, read from the file by tasks on this
    (the driver's) node, where the file is.

    One read task a block: Ray Data merges the blocks one read task yields, and a decode task that dies must
    lose only its own few rows. A read task is a few hundred bytes on the driver (the rows stay on disk).
    """
    import ray
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    pages.close()
    blocks = [(page, start, min(rows_per_block, n - start))
              for page, n in enumerate(pages.page_rows) for start in range(0, n, rows_per_block)]

    class Pages(Datasource):
        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(partial(page_block, pages.path, page, start, rows),
                             BlockMetadata(num_rows=rows, size_bytes=None, exec_stats=None, input_files=None))
                    for page, start, rows in blocks]

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.data.read_datasource(Pages(), override_num_blocks=max(1, len(blocks)),
                                    ray_remote_args={"scheduling_strategy": here})
