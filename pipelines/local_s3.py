"""A real S3-protocol server on loopback (moto's server mode), for the demo, the tests and the benchmarks.

The jobs reach it exactly as they reach AWS S3 or MinIO: through ``AWS_ENDPOINT_URL`` and the standard
credential variables, with pyarrow, s3fs and boto3. Needs the ``dev`` extra (``moto[server]``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def local_s3_server(host: str = "127.0.0.1") -> Iterator[dict[str, str]]:
    """Start the server on a free port; while inside, ``os.environ`` points S3 clients at it.

    Yields the environment variables to hand to other processes (``AWS_ENDPOINT_URL`` and credentials).
    """
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request to stderr ("127.0.0.1 - - [...] GET ..."): it would drown the job's console
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    bound_host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{bound_host}:{port}", "AWS_ACCESS_KEY_ID": "srcore-local",
           "AWS_SECRET_ACCESS_KEY": "srcore-local", "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))


def upload_folder(folder: str | Path, bucket: str, prefix: str = "") -> list[str]:
    """Create ``bucket`` if needed and upload every file under ``folder`` to ``prefix``; returns the keys."""
    client = s3_client()
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)
    keys = []
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            key = "/".join(filter(None, [prefix.strip("/"), path.relative_to(folder).as_posix()]))
            client.upload_file(str(path), bucket, key)
            keys.append(key)
    return keys
