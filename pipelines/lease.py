"""One run at a time per output prefix: a lease object that a second run finds, and a killed run's expires.

The lease is ``<output>/_reports/lease.json``: which run holds it, on which host, and until when. A run
creates it with an exclusive write (S3's ``If-None-Match: *``, or a hard link locally), renews it every
``ttl / 3`` seconds with a conditional write (``If-Match`` on its own ETag), and deletes it when done. A second
run finds it held and stops with :class:`LeaseHeld`. A run that was killed stops renewing: once its lease
has expired, the next run takes it over (again conditionally, so two runs cannot both take it). On the same
host a holder whose process has ended is gone at once, so a killed local run can be rerun straight away.

Holding the lease also tells a run that no other writer is at work under the prefix, so every temporary
upload it finds there was left by a writer that is gone and can be deleted.

Stores without conditional writes (other fsspec backends) get a best-effort lease: check, then write.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from srcore.atomic import unwritable

from .storage import OutputNotWritable, Store

LEASE_TTL_S = 300.0


class LeaseHeld(RuntimeError):
    """Another run holds the output prefix."""


@dataclass
class Lease:
    store: Store
    path: str
    run_id: str
    ttl_s: float = LEASE_TTL_S
    break_lease: bool = False  # take it even from a live-looking holder (an operator who knows it is dead)
    version: str = ""
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _body(self) -> bytes:
        now = time.time()
        return json.dumps({
            "run": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
            "renewed": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
            "expires_unix": now + self.ttl_s, "ttl_s": self.ttl_s,
        }).encode()

    def acquire(self) -> Lease:
        """Take the lease, or take over an expired one; LeaseHeld when a live run holds it."""
        try:
            self.version = self.store.create_exclusive(self.path, self._body())
        except PermissionError as exc:  # the run's first write: an output the credentials cannot write to
            raise OutputNotWritable(unwritable(self.store.location, exc)) from None
        except FileExistsError:
            held_version = self.store.version(self.path)
            holder = _read(self.store, self.path)
            if holder.get("run") == self.run_id:  # our own write, retried after its answer was lost
                self.version = held_version
            elif holder.get("expires_unix", 0) > time.time() and not self.break_lease and not _holder_gone(holder):
                until = datetime.fromtimestamp(holder["expires_unix"], timezone.utc).isoformat(timespec="seconds")
                left = max(1, round(holder["expires_unix"] - time.time()))
                raise LeaseHeld(
                    f"{self.store.uri(self.path)}: run {holder.get('run')} (host {holder.get('host')}, pid "
                    f"{holder.get('pid')}) is writing to this output; its lease expires in {left} s ({until}) "
                    f"unless that run renews it, as it does while it runs. Wait for it to finish, or write "
                    f"elsewhere; if that run was killed, rerun now with --break-lease, or in {left} s.") from None
            else:
                self._take_over(holder, held_version)
        self._thread = threading.Thread(target=self._renew_loop, name="srcore-lease", daemon=True)
        self._thread.start()
        return self

    def _take_over(self, holder: dict, held_version: str) -> None:
        """An expired lease (its run was killed): replace it conditionally, so of two runs one wins."""
        try:
            self.version = self.store.replace_if_version(self.path, self._body(), held_version)
        except OSError:
            if _read(self.store, self.path).get("run") != self.run_id:  # not our own retried write
                raise LeaseHeld(f"{self.store.uri(self.path)}: another run took over the expired lease "
                                "at the same moment") from None
            self.version = self.store.version(self.path)
        print(f"[srcore] took over the expired lease of run {holder.get('run')} (host {holder.get('host')})",
              flush=True)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.version = self.store.replace_if_version(self.path, self._body(), self.version)
            except Exception as exc:  # renewing failed: say so; the run goes on, its outputs are atomic
                try:
                    if _read(self.store, self.path).get("run") == self.run_id:  # our retried write went through
                        self.version = self.store.version(self.path)
                        continue
                except OSError:
                    pass
                self.lost = True
                print(f"[srcore] warning: could not renew the lease {self.store.uri(self.path)} ({exc}); "
                      "another run may start writing here", flush=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            if not self.lost and _read(self.store, self.path).get("run") == self.run_id:
                self.store.delete(self.path)
        except OSError:
            pass  # it expires by itself

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def held_elsewhere(store: Store, paths, own: str, name: str = "lease.json") -> list[str]:
    """Folders (with a trailing "/") under this store whose own live lease is not ``own``: a run writing to a
    nested output prefix. Its temporary uploads are its own business, even under ours."""
    roots = []
    for path in paths:
        if path != own and path.endswith(f"/_reports/{name}"):
            holder = _read(store, path)
            if holder.get("expires_unix", 0) > time.time() and not _holder_gone(holder):
                roots.append(path[: -len(f"_reports/{name}")])
    return roots


def _holder_gone(holder: dict) -> bool:
    """A holder on this host whose process has ended (killed, crashed) is gone before its lease expires."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _read(store: Store, path: str) -> dict:
    try:
        return json.loads(store.read(path))
    except (OSError, ValueError):
        return {}  # unreadable or half-written: treated as expired
