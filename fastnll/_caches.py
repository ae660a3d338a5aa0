"""The cache sizes that the kernels' choices depend on, as the operating system reports them.

The kernels never hard-code a size tuned to one machine: block sizes and the choice of
non-temporal stores come from here."""
import os


def _sysconf_bytes(name, default):
    """os.sysconf(name) where the OS reports it (a positive size), else `default`."""
    try:
        size = os.sysconf(name)
    except (AttributeError, ValueError, OSError):
        size = 0
    return size if size and size > 0 else default


# One core's L2 cache (1 MiB where it is not reported).
L2_BYTES = _sysconf_bytes("SC_LEVEL2_CACHE_SIZE", 2 ** 20)

# The last-level cache (the L3, 32 MiB where it is not reported).
LLC_BYTES = _sysconf_bytes("SC_LEVEL3_CACHE_SIZE", 32 * 2 ** 20)


def streams(out):
    """Whether a kernel should write the caller's output array `out` with non-temporal stores:
    when it is larger than the last-level cache, so that it could not stay cached for its next
    reader anyway, and each line would otherwise be read from memory before being overwritten.
    (Only for the caller's own out: a fresh array's pages are zeroed by the OS on first touch,
    and are better written through the cache.)"""
    return out.nbytes > LLC_BYTES
