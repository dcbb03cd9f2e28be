"""Pages of rows spilled to the driver's local disk, and the Ray Data source that reads them back.

A run over millions of inputs keeps no table of every input in the driver's memory: the plan writes its rows
a page (up to 16K rows) at a time to Arrow IPC files in a local scratch folder, and the run reads them back
a page at a time. Read tasks pinned to the driver's node read the pages, and a streaming repartition cuts
them into blocks of a few rows for the decode tasks, as the pipeline streams.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

PAGE_ROWS = 1 << 14


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
        """Each page, in order (the file is closed for writing first). Read, not memory-mapped: a mapped
        file's pages would stay in this process's resident memory once touched."""
        self.close()
        if not self.page_rows:
            return
        with pa.OSFile(self.path) as source:
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


def read_page(path: str, page: int) -> list[pa.Table]:
    """One page of a PageFile, as its own copy."""
    with pa.memory_map(path) as source:
        return [pa.Table.from_batches([ipc.open_file(source).get_batch(page)]).combine_chunks()]


def read_pages(pages: PageFile, rows_per_block: int):
    """A Ray Dataset of ``pages``' rows in blocks of ``rows_per_block``: a read task a page, on this (the
    driver's) node, where the file is; a streaming repartition then cuts the pages into blocks, so a decode
    task that dies loses only its own few rows. The driver holds a read task a page, not one a block."""
    import ray
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    pages.close()

    class Pages(Datasource):
        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(partial(read_page, pages.path, page),
                             BlockMetadata(num_rows=rows, size_bytes=None, exec_stats=None, input_files=None))
                    for page, rows in enumerate(pages.page_rows)]

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    ds = ray.data.read_datasource(Pages(), override_num_blocks=max(1, len(pages.page_rows)),
                                  ray_remote_args={"scheduling_strategy": here})
    return ds.repartition(target_num_rows_per_block=rows_per_block, strict=True)
