"""draw_dot: the lecture's graph picture (placeholder)."""


def draw_dot(root, format="svg", rankdir="LR"):
    raise NotImplementedError
