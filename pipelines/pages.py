"""Pages of rows spilled to the driver's local disk, and the Ray Data source that reads them back.

A run over millions of inputs keeps no table of every input in the driver's memory: the plan writes its rows
a page (up to 16K rows) at a time to Arrow IPC files in a local scratch folder, and the run reads them back
a page at a time. Read tasks pinned to the driver's node read blocks of a few rows from the pages for the
decode tasks, as the pipeline streams.
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


READS_AT_ONCE = 2
MAX_READ_TASKS = 10_000  # a read task costs the driver a few KB (Ray's object and task records)


def page_rows(path: str, page: int, start: int, rows: int) -> list[pa.Table]:
    """``rows`` rows of one page of a PageFile from ``start``, as a copy (a slice would carry the whole
    page's buffers into the object store with it)."""
    with pa.memory_map(path) as source:
        batch = ipc.open_file(source).get_batch(page)
        return [pa.Table.from_batches([batch]).take(np.arange(start, start + rows))]


def read_pages(pages: PageFile, rows_per_block: int):
    """A Ray Dataset of ``pages``' rows, read from the file by tasks on this (the driver's) node, where the
    file is: one block (and so one decode task) a read task.

    A block is ``rows_per_block`` rows, so that a decode task that dies loses only its own few rows, up to
    MAX_READ_TASKS blocks; beyond that (over 80,000 inputs at 8 a batch) blocks hold several batches, so the
    driver's cost stays bounded: a read task costs it a few KB, the rows stay on disk. (Ray Data merges the
    blocks one read task yields, and its streaming repartition, which could cut them, holds a CPU per task
    that the decode tasks then lack: it halved a 2-core run's throughput.)
    """
    import ray
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    pages.close()
    batches = -(-pages.rows // rows_per_block)
    per_read = rows_per_block * max(1, -(-batches // MAX_READ_TASKS))
    blocks = [(page, start, min(per_read, n - start))
              for page, n in enumerate(pages.page_rows) for start in range(0, n, per_read)]

    class Pages(Datasource):
        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(partial(page_rows, pages.path, page, start, rows),
                             BlockMetadata(num_rows=rows, size_bytes=None, exec_stats=None, input_files=None))
                    for page, start, rows in blocks]

    here = {"ray.io/node-id": ray.get_runtime_context().get_node_id()}
    # no CPU of their own: a read takes milliseconds, and the CPUs are the actors' (a CPU node's actors hold
    # all of them); two at a time keep the next blocks ready
    return ray.data.read_datasource(Pages(), override_num_blocks=max(1, len(blocks)), label_selector=here,
                                    num_cpus=0, concurrency=READS_AT_ONCE)
