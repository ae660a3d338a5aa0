"""Command line: `python -m fastnll bench [...]`."""
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m fastnll bench [--help]"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        print("  bench   time fastnll against NumPy and installed peers (SciPy, PyTorch)")
        return 0 if argv else 2
    if argv[0] == "bench":
        from ._bench import main as bench
        return bench(argv[1:])
    print(f"unknown command {argv[0]!r}\n{usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
