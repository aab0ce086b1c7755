"""Serve `import micrograd` from micrograd_fast (placeholder)."""


def install_as_micrograd():
    raise NotImplementedError


def uninstall_as_micrograd():
    raise NotImplementedError


def run_main(argv):
    raise SystemExit("run: not built yet")
