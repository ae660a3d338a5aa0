"""Perplexity over more logits than memory holds, with fastnll.dask
================================================================

Perplexity of a model over more logits than the workers' memory holds, with fastnll.dask.

Writes a memory-mapped .npy file of logits (and one of targets) in pieces, starts a Dask
LocalCluster whose workers together have less memory than the file, and computes the
perplexity ``exp(mean cross-entropy)`` chunk by chunk; each worker reads its chunks from the
file itself (fastnll.dask.from_npy), so nothing of the data passes through this process.

The targets are drawn from the softmax of the logits (the Gumbel-max trick), so the
perplexity is the exponential of the model's own mean entropy: well below the vocabulary size.

    python examples/perplexity_dask.py                    # 2 GB of float32 logits
    python examples/perplexity_dask.py --rows 20000       # a small run (CI)
    python examples/perplexity_dask.py --address tcp://scheduler:8786   # an existing cluster
"""
import argparse
import math
import os
import tempfile
import time

import numpy as np


def write_logits(path_x, path_t, rows, classes, piece=50_000, seed=0):
    """Logits (rows, classes) float32 and targets (rows,) int64, written piece by piece."""
    rng = np.random.default_rng(seed)
    x = np.lib.format.open_memmap(path_x, mode="w+", dtype=np.float32, shape=(rows, classes))
    t = np.lib.format.open_memmap(path_t, mode="w+", dtype=np.int64, shape=(rows,))
    for i in range(0, rows, piece):
        n = min(piece, rows - i)
        logits = rng.standard_normal((n, classes), dtype=np.float32) * 2.0
        x[i:i + n] = logits
        t[i:i + n] = np.argmax(logits + rng.gumbel(size=(n, classes)), axis=1)
    x.flush()
    t.flush()
    del x, t


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Perplexity over more logits than the workers' memory holds.")
    parser.add_argument("--rows", type=int, default=500_000, help="tokens (default 500000)")
    parser.add_argument("--classes", type=int, default=1000, help="vocabulary (default 1000)")
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", type=int, default=None, metavar="BYTES",
                        help="each LocalCluster worker's memory limit (default: a third of "
                             "the file over the workers, at least 250 MB; 0: none)")
    parser.add_argument("--address", help="the scheduler of an existing Dask cluster "
                        "(whose workers see the same file system); default: a LocalCluster")
    parser.add_argument("--dir", help="where to write the files (default: a temporary one)")
    args = parser.parse_args(argv)

    import dask.array as da
    import distributed

    import fastnll.dask

    directory = args.dir or tempfile.mkdtemp(prefix="fastnll-perplexity-")
    path_x = os.path.join(directory, "logits.npy")
    path_t = os.path.join(directory, "targets.npy")
    start = time.perf_counter()
    write_logits(path_x, path_t, args.rows, args.classes)
    size = os.path.getsize(path_x)
    print(f"wrote {size / 1e6:,.0f} MB of logits ({args.rows} x {args.classes} float32) "
          f"in {time.perf_counter() - start:.1f} s")

    if args.address:
        client = distributed.Client(args.address)
        cluster = None
    else:
        # each worker's limit: a third of the file over the workers, at least 250 MB
        limit = args.memory_limit
        if limit is None:
            limit = max(250_000_000, size // (3 * args.workers))
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                           memory_limit=limit, dashboard_address=":0")
        client = distributed.Client(cluster)
        print(f"LocalCluster: {args.workers} worker processes x 1 thread, "
              + (f"memory limit {limit / 1e6:,.0f} MB each ({args.workers * limit / size:.0%} "
                 "of the file)" if limit else "no memory limit"))
    try:
        x = fastnll.dask.from_npy(path_x, chunks=(args.chunk_rows, args.classes))
        t = fastnll.dask.from_npy(path_t, chunks=args.chunk_rows)
        loss = fastnll.dask.cross_entropy(x, t)
        start = time.perf_counter()
        value = float(loss.compute())
        seconds = time.perf_counter() - start
        entropy = fastnll.dask.entropy(fastnll.dask.softmax(x, axis=1), axis=1).mean()
        print(f"mean cross-entropy {value:.6f} nats: perplexity {math.exp(value):.3f} "
              f"(uniform: {args.classes}; model's mean entropy "
              f"{float(da.compute(entropy)[0]):.6f} nats), in {seconds:.2f} s "
              f"({size / seconds / 1e9:.2f} GB/s)")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        if not args.dir:
            for path in (path_x, path_t):
                os.remove(path)
            os.rmdir(directory)


if __name__ == "__main__":
    main()
