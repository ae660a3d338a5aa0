"""Command line: `python -m fastnll bench [...]`, `python -m fastnll demo`."""
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m fastnll {bench,demo} [--help]"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        print("  bench   time fastnll against NumPy and installed peers (SciPy, PyTorch, JAX)")
        print("  demo    worked examples: where negative log-likelihood comes from")
        return 0 if argv else 2
    if argv[0] == "bench":
        from ._bench import main as bench
        return bench(argv[1:])
    if argv[0] == "demo":
        from ._demo import main as demo
        return demo(argv[1:])
    print(f"unknown command {argv[0]!r}\n{usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
