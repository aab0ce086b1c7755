"""python -m micrograd_fast bench (placeholder)."""


def main(argv=None):
    raise SystemExit("bench: not built yet")
