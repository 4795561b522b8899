"""What a feature helper process does (see :mod:`stethoscope.features.processes`).

A helper is forked from the process that extracts features. It takes (job, buffer, chunk) messages
from its jobs pipe, computes each clip of the chunk into its shared buffer (or, when a result does
not fit, keeps it to send whole), writes the cache entries, and answers on its results pipe with
rows or an error per clip and the warnings raised. It leaves Ctrl-C to the parent, and ends when
the parent closes the jobs pipe.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
import warnings
from multiprocessing.connection import Connection

import numpy as np

from stethoscope import audio
from stethoscope.features.cache import FeatureCache
from stethoscope.features.registry import FeatureExtractor


def serve(jobs: Connection, conn: Connection, slots: list[np.ndarray]) -> None:
    """Answer chunks until the parent closes its end of ``jobs``; never raise past here."""
    import torch

    # Ctrl-C reaches the whole process group; the parent decides (it stops the helpers itself),
    # and an idle helper must not die of it and leave a traceback for the next job to read.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # one process per core is the parallelism
    logging.getLogger().handlers[:] = [logging.StreamHandler(sys.stderr)]
    extractor: FeatureExtractor | None = None
    store = FeatureCache(None)
    try:
        while True:
            try:
                job, slot_id, chunk = jobs.recv()
            except EOFError:
                return
            if job is not None:  # the first chunk of a call carries its job
                for k, v in job["env"].items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
                extractor = job["extractor"]
                # A fresh cache object per call: one switched off by a failed write in an earlier
                # call (e.g. a full disk since freed) is tried again.
                store = FeatureCache(job["cache"])
                dim = extractor.storage_layout(0)[1]
            buf = slots[slot_id]
            items, at = [], 0
            with warnings.catch_warnings(record=True) as caught:  # passed on to the parent
                warnings.simplefilter("always")
                for j, path, identity, rows in chunk:
                    room = min(rows * dim, buf.size - at) // dim
                    slot = buf[at:at + room * dim].reshape(room, dim)
                    n_rows, error, whole = compute_one(path, slot, extractor, store, identity)
                    items.append((j, n_rows, error, whole, at))
                    if error is None and whole is None:
                        at += n_rows * dim
            conn.send((slot_id, items, [(w.category, str(w.message)) for w in caught]))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        try:
            conn.send(traceback.format_exc())
        except Exception:  # noqa: BLE001 - the parent sees EOF and computes the rest itself
            pass
    finally:
        conn.close()
        jobs.close()


def compute_one(path: str, slot: np.ndarray, extractor: FeatureExtractor, store: FeatureCache,
         identity: str | None) -> tuple[int, str | None, np.ndarray | None]:
    """(rows, error, the array when it did not fit ``slot`` else None) of one clip."""
    try:
        stored = extractor.compute_stored(path, out=slot)
    except audio.AudioError as err:
        return 0, err.reason, None
    if identity is not None:
        store.store(extractor, identity, stored)
    if stored.size and not np.may_share_memory(stored, slot):  # did not fit its slot
        return stored.shape[0], None, np.ascontiguousarray(stored)
    return stored.shape[0], None, None
